//! The outbox as the dispatcher drives it: which channels a notification goes
//! to, and claims and outcomes under the fencing protocol (DESIGN.md), applied
//! the same way whatever order leaders' entries arrive in.

mod support;

use support::{channel, default_channel, digest, draft, result, Store};
use uptime_raft_store::quorum::CheckStatus;
use uptime_raft_store::{
    AlertPolicy, Command, DeliveryOutcome, IncidentState, Notification, NotificationState, OutboxCommand, RejectCode,
    Response, Settlement, MAX_ATTEMPTS,
};

/// A monitor taken down by two nodes' digests at `at_ms`; returns its id.
async fn down(s: &mut Store, name: &str, policy: AlertPolicy, at_ms: u64) -> u64 {
    let Response::Monitor(m) = s.run(at_ms, Command::CreateMonitor(draft(name, policy))).await else {
        panic!("monitor not created")
    };
    for node in [1, 2] {
        let seq = s.sm.reader().digest_seq(node).unwrap() + 1;
        s.run(at_ms + 1, digest(node, seq, vec![result(m.id, CheckStatus::Down, 2)])).await;
    }
    m.id
}

fn channels_of(s: &Store) -> Vec<String> {
    s.sm.reader().outbox().unwrap().into_iter().map(|n| n.channel.unwrap()).collect()
}

fn claim(ids: &[u64]) -> Command {
    Command::Outbox(OutboxCommand::Claim { ids: ids.to_vec() })
}

fn settle(id: u64, claim_index: u64, outcome: DeliveryOutcome) -> Settlement {
    Settlement { id, claim_index, outcome, status: None, error: String::new(), retry_after_ms: 1_000, took_ms: 3 }
}

fn note(s: &Store, id: u64) -> Notification {
    s.sm.reader().notification(id).unwrap().unwrap()
}

#[tokio::test]
async fn a_notification_goes_to_the_monitors_channels_and_the_defaults_unless_it_opts_out() {
    let mut s = Store::new();
    s.run(1_000, default_channel("everyone")).await;
    s.run(1_000, channel("team", false)).await;
    s.run(1_000, channel("unused", false)).await;
    let with_defaults = AlertPolicy { channels: vec!["team".into()], ..AlertPolicy::default() };
    down(&mut s, "web", with_defaults, 2_000).await;
    assert_eq!(channels_of(&s), ["everyone", "team"]);

    let own_only = AlertPolicy { channels: vec!["team".into()], default_channels: false, ..AlertPolicy::default() };
    down(&mut s, "db", own_only, 3_000).await;
    assert_eq!(channels_of(&s), ["everyone", "team", "team"]);
    // Every record starts pending and due.
    let due = s.sm.reader().outbox_due().unwrap();
    assert_eq!(due.len(), 3);
    assert!(due.iter().all(|n| n.state == NotificationState::Pending));
}

#[tokio::test]
async fn with_no_channel_nothing_is_queued_and_the_timeline_says_so() {
    let mut s = Store::new();
    down(&mut s, "web", AlertPolicy::default(), 2_000).await;
    assert!(s.sm.reader().outbox().unwrap().is_empty());
    let inc = s.sm.reader().list_incidents().unwrap().pop().unwrap();
    assert!(inc.timeline.iter().any(|e| e.kind == "notification" && e.text.contains("no channel")), "{inc:?}");
}

#[tokio::test]
async fn unknown_channels_are_refused_and_a_used_channel_cannot_be_deleted() {
    let mut s = Store::new();
    let policy = AlertPolicy { channels: vec!["nope".into()], ..AlertPolicy::default() };
    let Response::Rejected(r) = s.run(1_000, Command::CreateMonitor(draft("web", policy))).await else {
        panic!("an unknown channel was accepted")
    };
    assert_eq!(r.field.as_deref(), Some("channels"));
    assert!(s.sm.reader().list_monitors().unwrap().is_empty(), "a refused write changed the state");

    s.run(1_000, channel("team", false)).await;
    let policy = AlertPolicy { channels: vec!["team".into()], ..AlertPolicy::default() };
    s.run(1_000, Command::CreateMonitor(draft("web", policy.clone()))).await;
    s.run(1_000, Command::CreateMonitor(draft("api", policy))).await;
    let Response::Rejected(r) = s.run(2_000, Command::DeleteChannel { name: "team".into() }).await else {
        panic!("a channel in use was deleted")
    };
    assert_eq!(r.code, RejectCode::Conflict);
    assert!(r.message.contains("web") && r.message.contains("api"), "{}", r.message);
    assert!(s.sm.reader().get_channel("team").unwrap().is_some());

    let Response::Rejected(r) = s.run(2_000, channel("team", true)).await else {
        panic!("a duplicate name was accepted")
    };
    assert_eq!(r.code, RejectCode::Conflict);
    s.run(2_000, Command::DeleteMonitor { id: 1 }).await;
    s.run(2_000, Command::DeleteMonitor { id: 2 }).await;
    assert_eq!(s.run(3_000, Command::DeleteChannel { name: "team".into() }).await, Response::Done);
}

#[tokio::test]
async fn a_claim_records_its_log_id_and_only_the_current_claims_outcome_counts() {
    let mut s = Store::new();
    s.run(1_000, default_channel("hook")).await;
    down(&mut s, "web", AlertPolicy::default(), 2_000).await;
    let id = s.sm.reader().outbox_due().unwrap()[0].id;

    // Leader 1 of term 3 claims it.
    let Response::Claimed { term, node_id, index, ids } = s.run_as(3, 1, 3_000, claim(&[id, id, 999])).await else {
        panic!("no claim")
    };
    assert_eq!((term, node_id, ids.clone()), (3, 1, vec![id]), "a record listed twice or unknown is claimed once");
    assert_eq!(note(&s, id).state, NotificationState::Claimed { term: 3, node_id: 1, index });

    // Leader 2 of term 4 takes over with no outcome from leader 1: its claim
    // records the interrupted attempt, and leader 1's late outcome is ignored.
    let Response::Claimed { index: index2, ids, .. } = s.run_as(4, 2, 4_000, claim(&[id])).await else {
        panic!("no re-claim")
    };
    assert_eq!(ids, vec![id]);
    let late = Command::Outbox(OutboxCommand::Settle { results: vec![settle(id, index, DeliveryOutcome::Sent)] });
    assert_eq!(s.run_as(4, 2, 4_100, late).await, Response::Settled { applied: 0, stale: 1 });
    assert_eq!(note(&s, id).state, NotificationState::Claimed { term: 4, node_id: 2, index: index2 });

    let ok = Command::Outbox(OutboxCommand::Settle { results: vec![settle(id, index2, DeliveryOutcome::Sent)] });
    assert_eq!(s.run_as(4, 2, 4_200, ok).await, Response::Settled { applied: 1, stale: 0 });
    assert_eq!(note(&s, id).state, NotificationState::Sent);
    assert!(s.sm.reader().outbox_due().unwrap().is_empty());
    let d = s.sm.reader().deliveries(id).unwrap();
    let seen: Vec<_> = d.iter().map(|d| (d.attempt, d.outcome, d.term, d.node_id)).collect();
    assert_eq!(seen, [(1, DeliveryOutcome::Interrupted, 3, 1), (2, DeliveryOutcome::Sent, 4, 2)]);

    // A sent record is never claimed again.
    let Response::Claimed { ids, .. } = s.run_as(5, 3, 5_000, claim(&[id])).await else { panic!() };
    assert!(ids.is_empty());
}

#[tokio::test]
async fn failures_back_off_and_the_record_dies_at_the_attempt_cap() {
    let mut s = Store::new();
    s.run(1_000, default_channel("hook")).await;
    down(&mut s, "web", AlertPolicy::default(), 2_000).await;
    let id = s.sm.reader().outbox_due().unwrap()[0].id;
    let mut at = 10_000;
    for attempt in 1..=MAX_ATTEMPTS {
        let Response::Claimed { index, ids, .. } = s.run_as(2, 1, at, claim(&[id])).await else { panic!() };
        assert_eq!(ids, vec![id], "attempt {attempt} not claimed");
        let mut fail = settle(id, index, DeliveryOutcome::Failed);
        fail.status = Some(500);
        fail.error = "HTTP 500".into();
        fail.retry_after_ms = 1; // clamped up by apply
        s.run_as(2, 1, at + 10, Command::Outbox(OutboxCommand::Settle { results: vec![fail] })).await;
        let state = note(&s, id).state;
        if attempt < MAX_ATTEMPTS {
            assert_eq!(state, NotificationState::Failed { attempts: attempt, next_at_ms: at + 10 + 500 });
        } else {
            assert_eq!(state, NotificationState::Dead);
        }
        at += 1_000;
    }
    assert!(s.sm.reader().outbox_due().unwrap().is_empty());
    assert_eq!(s.sm.reader().deliveries(id).unwrap().len(), MAX_ATTEMPTS as usize);
    let inc = s.sm.reader().list_incidents().unwrap().pop().unwrap();
    assert_eq!(inc.state, IncidentState::Triggered);
    assert!(
        inc.timeline.iter().any(|e| e.kind == "notification" && e.text.contains("given up after 8 attempts")),
        "{:?}",
        inc.timeline
    );
}

#[tokio::test]
async fn an_undeliverable_record_dies_at_once() {
    let mut s = Store::new();
    s.run(1_000, default_channel("hook")).await;
    down(&mut s, "web", AlertPolicy::default(), 2_000).await;
    let id = s.sm.reader().outbox_due().unwrap()[0].id;
    let Response::Claimed { index, .. } = s.run_as(2, 1, 3_000, claim(&[id])).await else { panic!() };
    let gone =
        Settlement { error: "channel hook was deleted".into(), ..settle(id, index, DeliveryOutcome::Undeliverable) };
    s.run_as(2, 1, 3_100, Command::Outbox(OutboxCommand::Settle { results: vec![gone] })).await;
    assert_eq!(note(&s, id).state, NotificationState::Dead);
}

#[tokio::test]
async fn a_thousand_records_are_claimed_and_settled_in_one_entry_each() {
    let mut s = Store::new();
    s.run(1_000, default_channel("hook")).await;
    for i in 0..1_000 {
        s.run(1_000, Command::CreateMonitor(draft(&format!("m{i}"), AlertPolicy::default()))).await;
    }
    let results = |status| (1..=1_000).map(|id| result(id, status, 2)).collect::<Vec<_>>();
    s.run(2_000, digest(1, 1, results(CheckStatus::Down))).await;
    s.run(2_000, digest(2, 1, results(CheckStatus::Down))).await;
    let due: Vec<u64> = s.sm.reader().outbox_due().unwrap().iter().map(|n| n.id).collect();
    assert_eq!(due.len(), 1_000);
    let Response::Claimed { index, ids, .. } = s.run_as(2, 1, 3_000, claim(&due)).await else { panic!() };
    assert_eq!(ids.len(), 1_000);
    let results = ids.iter().map(|id| settle(*id, index, DeliveryOutcome::Sent)).collect();
    let answer = s.run_as(2, 1, 3_100, Command::Outbox(OutboxCommand::Settle { results })).await;
    assert_eq!(answer, Response::Settled { applied: 1_000, stale: 0 });
    assert!(s.sm.reader().outbox_due().unwrap().is_empty());
}

#[tokio::test]
async fn a_claim_outside_a_log_entry_and_oversized_batches_are_refused() {
    let mut s = Store::new();
    let Response::Rejected(r) = s.run(1_000, claim(&[])).await else { panic!("an empty claim was accepted") };
    assert_eq!(r.field.as_deref(), Some("ids"));
    let huge: Vec<u64> = (0..5_000).collect();
    let Response::Rejected(_) = s.run(1_000, claim(&huge)).await else { panic!("an oversized claim was accepted") };
    let bad_name = Command::DeleteChannel { name: "has space".into() };
    let Response::Rejected(r) = s.run(1_000, bad_name).await else { panic!() };
    assert_eq!(r.field.as_deref(), Some("name"));
}

#[tokio::test]
async fn a_send_that_never_started_does_not_count_toward_the_cap() {
    let mut s = Store::new();
    s.run(1_000, default_channel("hook")).await;
    down(&mut s, "web", AlertPolicy::default(), 2_000).await;
    let id = s.sm.reader().outbox_due().unwrap()[0].id;
    for i in 0..(MAX_ATTEMPTS + 2) {
        let at = 10_000 + u64::from(i) * 1_000;
        let Response::Claimed { index, .. } = s.run_as(2, 1, at, claim(&[id])).await else { panic!() };
        let deferred = settle(id, index, DeliveryOutcome::Deferred);
        s.run_as(2, 1, at + 1, Command::Outbox(OutboxCommand::Settle { results: vec![deferred] })).await;
    }
    assert_eq!(note(&s, id).state, NotificationState::Failed { attempts: 0, next_at_ms: 19_001 + 1_000 });
}
