//! Table-driven tests of apply: quorum verdicts, hysteresis, stale reporters,
//! maintenance, retention, incidents, digests, time; and determinism.

mod support;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
use uptime_probe::CheckSpec;
use uptime_raft_store::history::{LatencyStats, Level};
use uptime_raft_store::quorum::{CheckStatus, MonitorState, QuorumRule};
use uptime_raft_store::typ::Entry;
use uptime_raft_store::{
    AlertPolicy, Command, Digest, IncidentCommand, IncidentState, MonitorDraft, MonitorResult, NotificationKind,
    Request, Response, Schedule, Severity, StateMachineStore, StateReader,
};

struct Sm {
    _dir: tempfile::TempDir,
    sm: StateMachineStore,
    reader: StateReader,
    index: u64,
    seqs: [u64; 8],
}

const MIN: u64 = 60_000;
const T0: u64 = 1_800_000_000_000;

impl Sm {
    fn new() -> Sm {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachineStore::open(dir.path()).unwrap();
        let reader = sm.reader();
        Sm { _dir: dir, sm, reader, index: 0, seqs: [0; 8] }
    }

    async fn run(&mut self, at_ms: u64, command: Command) -> Response {
        self.index += 1;
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
            payload: EntryPayload::Normal(Request { at_ms, command }),
        };
        self.sm.apply(vec![entry]).await.unwrap().pop().unwrap()
    }

    /// Creates a monitor; the first also creates a default channel, so that
    /// incidents queue notifications.
    async fn monitor(&mut self, name: &str, policy: AlertPolicy) -> u64 {
        if self.reader.list_channels().unwrap().is_empty() {
            self.run(T0, support::default_channel("hook")).await;
        }
        match self.run(T0, Command::CreateMonitor(MonitorDraft { policy, ..draft(name) })).await {
            Response::Monitor(m) => m.id,
            other => panic!("{other:?}"),
        }
    }

    /// Node `node` reports `status` with a run of `run` for monitor `id` at `at`.
    async fn report(&mut self, at: u64, node: u64, id: u64, status: CheckStatus, run: u32) -> Response {
        self.seqs[node as usize] += 1;
        let seq = self.seqs[node as usize];
        self.run(at, support::digest(node, seq, vec![support::result(id, status, run)])).await
    }

    fn state(&self, id: u64) -> MonitorState {
        self.reader.verdict(id).unwrap().state
    }

    fn incidents(&self) -> Vec<(Option<u64>, IncidentState)> {
        self.reader.list_incidents().unwrap().iter().map(|i| (i.monitor_id, i.state)).collect()
    }

    fn outbox_kinds(&self) -> Vec<NotificationKind> {
        self.reader.outbox().unwrap().iter().map(|n| n.kind).collect()
    }
}

/// A TCP monitor every 10 s with the default policy.
fn draft(name: &str) -> MonitorDraft {
    support::draft(name, AlertPolicy::default())
}

use CheckStatus::{Down as D, Up as U};

#[tokio::test]
async fn an_incident_opens_after_confirmations_from_a_majority_and_resolves_on_recovery() {
    let mut s = Sm::new();
    let id = s.monitor("web", AlertPolicy::default()).await;
    for n in 1..=3 {
        s.report(T0 + 1000, n, id, U, 1).await;
    }
    assert_eq!(s.state(id), MonitorState::Up);
    // First failure on every node: not confirmed yet (confirmations = 2).
    for n in 1..=3 {
        s.report(T0 + 11_000, n, id, D, 1).await;
    }
    assert_eq!(s.state(id), MonitorState::Up);
    assert!(s.incidents().is_empty());
    // Second failure on two nodes: a confirmed majority.
    s.report(T0 + 21_000, 1, id, D, 2).await;
    assert_eq!(s.state(id), MonitorState::Up);
    s.report(T0 + 21_000, 2, id, D, 2).await;
    assert_eq!(s.state(id), MonitorState::Down);
    assert_eq!(s.incidents(), vec![(Some(id), IncidentState::Triggered)]);
    assert_eq!(s.outbox_kinds(), vec![NotificationKind::Open]);
    let inc = &s.reader.list_incidents().unwrap()[0];
    assert!(inc.timeline[0].text.contains("node 1: connection refused"), "{:?}", inc.timeline);
    // Still down: no second incident.
    s.report(T0 + 31_000, 3, id, D, 3).await;
    assert_eq!(s.incidents().len(), 1);
    // Recovery from a majority resolves it.
    s.report(T0 + 41_000, 1, id, U, 1).await;
    assert_eq!(s.state(id), MonitorState::Down);
    s.report(T0 + 41_000, 2, id, U, 1).await;
    assert_eq!(s.state(id), MonitorState::Up);
    assert_eq!(s.incidents(), vec![(Some(id), IncidentState::Resolved)]);
    assert_eq!(s.outbox_kinds(), vec![NotificationKind::Open, NotificationKind::Resolve]);
}

#[tokio::test]
async fn down_from_a_minority_opens_nothing_and_the_per_node_view_shows_who() {
    let mut s = Sm::new();
    let id = s.monitor("web", AlertPolicy::default()).await;
    for round in 1..=4u32 {
        let at = T0 + u64::from(round) * 10_000;
        s.report(at, 1, id, D, round).await;
        s.report(at, 2, id, U, round).await;
        s.report(at, 3, id, U, round).await;
    }
    assert_eq!(s.state(id), MonitorState::Up);
    assert!(s.incidents().is_empty());
    let view: Vec<(u64, CheckStatus)> =
        s.reader.observations(id).unwrap().iter().map(|(n, o)| (*n, o.status)).collect();
    assert_eq!(view, vec![(1, D), (2, U), (3, U)]);
}

#[tokio::test]
async fn quorum_rules_any_all_and_count() {
    for (quorum, downs, want) in [
        (QuorumRule::Any, 1, MonitorState::Down),
        (QuorumRule::All, 2, MonitorState::Up),
        (QuorumRule::All, 3, MonitorState::Down),
        (QuorumRule::Count(2), 2, MonitorState::Down),
        (QuorumRule::Count(2), 1, MonitorState::Up),
    ] {
        let mut s = Sm::new();
        let id = s.monitor("m", AlertPolicy { quorum, confirmations: 1, ..AlertPolicy::default() }).await;
        for n in 1..=3u64 {
            s.report(T0 + 1000, n, id, U, 1).await;
        }
        assert_eq!(s.state(id), MonitorState::Up);
        for n in 1..=3u64 {
            let (status, run) = if n <= downs { (D, 1) } else { (U, 2) };
            s.report(T0 + 11_000, n, id, status, run).await;
        }
        assert_eq!(s.state(id), want, "{quorum:?} with {downs} down");
    }
}

#[tokio::test]
async fn stale_reporters_stop_voting_and_silence_is_unknown() {
    let mut s = Sm::new();
    let id = s.monitor("m", AlertPolicy::default()).await;
    s.report(T0 + 1000, 1, id, U, 1).await;
    s.report(T0 + 1000, 2, id, U, 1).await;
    assert_eq!(s.state(id), MonitorState::Up);
    // 3 intervals (30 s) later the reports are still fresh; after that, stale.
    s.run(T0 + 31_000, Command::Tick).await;
    assert_eq!(s.state(id), MonitorState::Up);
    s.run(T0 + 31_001, Command::Tick).await;
    assert_eq!(s.state(id), MonitorState::Unknown);
}

#[tokio::test]
async fn maintenance_suppresses_incidents_and_alerts() {
    let mut s = Sm::new();
    let id = s.monitor("m", AlertPolicy { confirmations: 1, ..AlertPolicy::default() }).await;
    let w = s
        .run(
            T0,
            Command::CreateMaintenance {
                name: "upgrade".into(),
                monitors: vec![id],
                all_monitors: false,
                schedule: Schedule::Once { start_ms: T0, end_ms: T0 + 10 * MIN },
            },
        )
        .await;
    assert!(matches!(w, Response::Maintenance(_)), "{w:?}");
    for n in 1..=3 {
        s.report(T0 + MIN, n, id, D, 5).await;
    }
    assert_eq!(s.state(id), MonitorState::Maintenance);
    assert!(s.incidents().is_empty() && s.outbox_kinds().is_empty());
    // The window ends: the confirmed quorum opens an incident on the next tick.
    s.run(T0 + 10 * MIN, Command::Tick).await;
    assert_eq!(s.state(id), MonitorState::Unknown, "reports from inside the window are stale by now");
    for n in 1..=3 {
        s.report(T0 + 10 * MIN + 1000, n, id, D, 6).await;
    }
    assert_eq!(s.state(id), MonitorState::Down);
    assert_eq!(s.outbox_kinds(), vec![NotificationKind::Open]);
}

#[tokio::test]
async fn a_digest_seq_is_applied_once() {
    let mut s = Sm::new();
    let id = s.monitor("m", AlertPolicy::default()).await;
    s.report(T0 + 1000, 1, id, U, 1).await;
    // The same digest again (a re-send after a leader change): dropped.
    s.seqs[1] -= 1;
    let r = s.report(T0 + 1000, 1, id, U, 1).await;
    assert_eq!(r, Response::Digests { applied: 0, duplicates: 1 });
    let buckets = s.reader.history(id, Level::Minute, 0, u64::MAX).unwrap();
    assert_eq!(buckets.len(), 1);
    assert_eq!(buckets[0].1.checks, 1);
    assert_eq!(s.reader.digest_seq(1).unwrap(), 1);
}

#[tokio::test]
async fn an_entry_stamped_earlier_than_the_previous_does_not_move_time_back() {
    let mut s = Sm::new();
    s.run(T0 + 5000, Command::Tick).await;
    let id = s.monitor("m", AlertPolicy::default()).await; // stamped T0, earlier
    let m = s.reader.get_monitor(id).unwrap().unwrap();
    assert_eq!(m.created_at_ms, T0 + 5000);
    assert_eq!(s.reader.clock_ms().unwrap(), T0 + 5000);
}

#[tokio::test]
async fn retention_drops_old_buckets_per_level() {
    let mut s = Sm::new();
    let id = s.monitor("m", AlertPolicy::default()).await;
    s.report(T0, 1, id, U, 1).await;
    s.report(T0 + 7 * 3_600_000, 1, id, U, 1).await;
    s.run(T0 + 7 * 3_600_000 + MIN, Command::Tick).await;
    // Minute buckets are kept 6 h: the first is gone; hour and day buckets stay.
    assert_eq!(s.reader.history(id, Level::Minute, 0, u64::MAX).unwrap().len(), 1);
    assert_eq!(s.reader.history(id, Level::Hour, 0, u64::MAX).unwrap().len(), 2);
    assert!(!s.reader.history(id, Level::Day, 0, u64::MAX).unwrap().is_empty());
}

#[tokio::test]
async fn incident_lifecycle_by_hand() {
    let mut s = Sm::new();
    let id = s.monitor("m", AlertPolicy::default()).await;
    let by = || "alice".to_string();
    let declared = s
        .run(
            T0,
            Command::Incident(IncidentCommand::Declare {
                title: "db slow".into(),
                severity: Severity::Major,
                monitor_id: Some(id),
                by: by(),
            }),
        )
        .await;
    let Response::Incident(inc) = declared else { panic!("{declared:?}") };
    let iid = inc.id;
    // Declared incidents are people's notes on a monitor, not its verdict:
    // a second one for the same monitor is fine.
    let again = s
        .run(
            T0,
            Command::Incident(IncidentCommand::Declare {
                title: "x".into(),
                severity: Severity::Minor,
                monitor_id: Some(id),
                by: by(),
            }),
        )
        .await;
    assert!(matches!(again, Response::Incident(_)), "{again:?}");

    for (cmd, want) in [
        (IncidentCommand::Acknowledge { id: iid, by: by() }, Some(IncidentState::Acknowledged)),
        (IncidentCommand::Acknowledge { id: iid, by: by() }, None),
        (IncidentCommand::Note { id: iid, by: by(), text: "looking".into() }, Some(IncidentState::Acknowledged)),
        (
            IncidentCommand::Assign { id: iid, by: by(), assignee: Some("bob".into()) },
            Some(IncidentState::Acknowledged),
        ),
        (IncidentCommand::Resolve { id: iid, by: by() }, Some(IncidentState::Resolved)),
        (IncidentCommand::Resolve { id: iid, by: by() }, None),
        (IncidentCommand::Reopen { id: iid, by: by() }, Some(IncidentState::Triggered)),
        (IncidentCommand::Note { id: 999, by: by(), text: "x".into() }, None),
        (IncidentCommand::Note { id: iid, by: by(), text: "  ".into() }, None),
    ] {
        let r = s.run(T0 + 1000, Command::Incident(cmd.clone())).await;
        match (want, r) {
            (Some(state), Response::Incident(i)) => assert_eq!(i.state, state, "{cmd:?}"),
            (None, Response::Rejected(_)) => {}
            (want, r) => panic!("{cmd:?}: wanted {want:?}, got {r:?}"),
        }
    }
    let inc = s.reader.get_incident(iid).unwrap().unwrap();
    let kinds: Vec<&str> = inc.timeline.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["opened", "acknowledged", "note", "assigned", "resolved", "reopened"]);
    assert_eq!(inc.assignee.as_deref(), Some("bob"));
    assert!(inc.timeline.iter().skip(1).all(|e| e.by == "alice"));
}

#[tokio::test]
async fn unacknowledged_incidents_remind_on_their_interval() {
    let mut s = Sm::new();
    let id = s
        .monitor("m", AlertPolicy { confirmations: 1, renotify_interval_ms: 10 * MIN, ..AlertPolicy::default() })
        .await;
    for n in 1..=2 {
        s.report(T0 + 1000, n, id, D, 1).await;
    }
    for n in 1..=2 {
        s.report(T0 + 9 * MIN, n, id, D, 2).await;
    }
    s.run(T0 + 9 * MIN, Command::Tick).await;
    assert_eq!(s.outbox_kinds(), vec![NotificationKind::Open]);
    for n in 1..=2 {
        s.report(T0 + 10 * MIN + 1000, n, id, D, 3).await;
    }
    s.run(T0 + 10 * MIN + 1000, Command::Tick).await;
    assert_eq!(s.outbox_kinds(), vec![NotificationKind::Open, NotificationKind::Reminder]);
    // Acknowledged: no more reminders.
    let iid = s.reader.list_incidents().unwrap()[0].id;
    s.run(T0 + 11 * MIN, Command::Incident(IncidentCommand::Acknowledge { id: iid, by: "a".into() })).await;
    for n in 1..=2 {
        s.report(T0 + 25 * MIN, n, id, D, 4).await;
    }
    s.run(T0 + 25 * MIN, Command::Tick).await;
    assert_eq!(s.outbox_kinds().len(), 2);
}

#[tokio::test]
async fn invalid_entries_are_refused_the_same_way_and_change_nothing() {
    let mut s = Sm::new();
    let before = s.reader.state_hash().unwrap().hash;
    let bad = draft("123");
    for cmd in [
        Command::CreateMonitor(bad),
        Command::DeleteMonitor { id: 42 },
        Command::Digests { node_id: 0, digests: vec![] },
        Command::CreateMaintenance {
            name: "w".into(),
            monitors: vec![],
            all_monitors: false,
            schedule: Schedule::Once { start_ms: 2, end_ms: 1 },
        },
    ] {
        assert!(matches!(s.run(T0, cmd).await, Response::Rejected(_)));
    }
    // The clock advanced (entries carry time); the domain otherwise did not change.
    let after = s.reader.state_hash().unwrap().hash;
    assert_ne!(before, after);
    assert!(s.reader.list_monitors().unwrap().is_empty());
}

/// A small deterministic generator, so a failing case is reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_command(rng: &mut Rng, seqs: &mut [u64; 4]) -> Command {
    let monitor = 1 + rng.below(4);
    match rng.below(10) {
        0 => Command::CreateMonitor(MonitorDraft {
            name: format!("m{}", rng.below(6)),
            check: CheckSpec::from_target("tcp", "127.0.0.1:9").unwrap(),
            interval_ms: 1000 * (1 + rng.below(30)),
            timeout_ms: 500,
            enabled: rng.below(4) != 0,
            public: false,
            tags: vec![],
            policy: AlertPolicy {
                confirmations: 1 + rng.below(3) as u32,
                renotify_interval_ms: 60_000,
                ..AlertPolicy::default()
            },
        }),
        1 => Command::SetMonitorEnabled { id: monitor, enabled: rng.below(2) == 0 },
        2 if rng.below(4) == 0 => Command::DeleteMonitor { id: monitor },
        3 => Command::Tick,
        4 => Command::Incident(IncidentCommand::Acknowledge { id: 1 + rng.below(3), by: "x".into() }),
        5 => Command::Incident(IncidentCommand::Resolve { id: 1 + rng.below(3), by: "x".into() }),
        6 if rng.below(3) == 0 => Command::CreateMaintenance {
            name: "w".into(),
            monitors: vec![monitor],
            all_monitors: false,
            schedule: Schedule::Once { start_ms: T0 + rng.below(100_000), end_ms: T0 + 100_000 + rng.below(100_000) },
        },
        _ => {
            let node = 1 + rng.below(3);
            // Sometimes a re-send of an old seq.
            let seq = if rng.below(5) == 0 { seqs[node as usize] } else { seqs[node as usize] + 1 };
            seqs[node as usize] = seqs[node as usize].max(seq);
            let status = [CheckStatus::Up, CheckStatus::Down, CheckStatus::Degraded][rng.below(3) as usize];
            let mut latency = LatencyStats::default();
            latency.record(rng.below(2_000_000));
            Command::Digests {
                node_id: node,
                digests: vec![Digest {
                    seq,
                    coalesced: 0,
                    results: vec![MonitorResult {
                        monitor_id: monitor,
                        checks: 1,
                        failures: u64::from(status != CheckStatus::Up),
                        last_status: status,
                        run: 1 + rng.below(4) as u32,
                        failing_run: 1 + rng.below(4) as u32,
                        last_error: "e".into(),
                        latency,
                    }],
                }],
            }
        }
    }
}

#[tokio::test]
async fn the_same_random_commands_on_two_fresh_stores_give_equal_hashes() {
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (mut a, mut b) = (Sm::new(), Sm::new());
        let mut seqs = [0u64; 4];
        let mut at = T0;
        for _ in 0..60 {
            // Time mostly moves forward, sometimes a stamp is earlier than the last.
            at = if rng.below(8) == 0 { at.saturating_sub(rng.below(5_000)) } else { at + rng.below(20_000) };
            let cmd = random_command(&mut rng, &mut seqs);
            let ra = a.run(at, cmd.clone()).await;
            let rb = b.run(at, cmd).await;
            assert_eq!(ra, rb, "seed {seed}");
        }
        assert_eq!(a.reader.state_hash().unwrap(), b.reader.state_hash().unwrap(), "seed {seed}");

        // A snapshot of one installed into a third store gives the same hash too.
        let snap = a.sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let mut c = Sm::new();
        c.sm.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
        assert_eq!(c.reader.state_hash().unwrap(), a.reader.state_hash().unwrap(), "seed {seed}");
    }
}

#[tokio::test]
async fn a_batch_applies_each_command_on_its_own() {
    let mut s = Sm::new();
    let r = s
        .run(
            T0,
            Command::Batch(vec![
                Command::CreateMonitor(draft("a")),
                Command::CreateMonitor(draft("a")),
                Command::SetSetting { key: "k".into(), value: "v".into() },
            ]),
        )
        .await;
    let Response::Batch(rs) = r else { panic!("{r:?}") };
    assert!(matches!(rs[0], Response::Monitor(_)));
    assert!(matches!(rs[1], Response::Rejected(_)), "the duplicate is refused alone");
    assert_eq!(rs[2], Response::Done);
    assert_eq!(s.reader.setting("k").unwrap().as_deref(), Some("v"));
    // Nested and empty batches are refused whole.
    for bad in [Command::Batch(vec![]), Command::Batch(vec![Command::Batch(vec![Command::Tick])])] {
        assert!(matches!(s.run(T0, bad).await, Response::Rejected(_)));
    }
}
