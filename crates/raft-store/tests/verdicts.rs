//! Issue 10: verdicts that tell the truth. Each test here reproduces a way the
//! state used to lie (an outage with no incident, a window that silences for
//! good, a resolve that hides an outage) and pins the rule that replaced it.

mod support;

use support::Store;
use uptime_raft_store::history::{LatencyStats, Level};
use uptime_raft_store::quorum::{CheckStatus, MonitorState};
use uptime_raft_store::{
    AlertPolicy, Command, IncidentCommand, IncidentState, MonitorResult, NotificationKind, Response, Schedule, Severity,
};

const MIN: u64 = 60_000;
const T0: u64 = 1_800_000_000_000;

struct Sm {
    s: Store,
    seqs: [u64; 8],
}

impl Sm {
    fn new() -> Sm {
        Sm { s: Store::new(), seqs: [0; 8] }
    }

    async fn run(&mut self, at: u64, c: Command) -> Response {
        self.s.run(at, c).await
    }

    /// Creates a monitor; the first also creates a default channel, so that
    /// incidents queue notifications.
    async fn monitor(&mut self, name: &str, policy: AlertPolicy) -> u64 {
        if self.s.sm.reader().list_channels().unwrap().is_empty() {
            self.run(T0, support::default_channel("hook")).await;
        }
        match self.run(T0, Command::CreateMonitor(support::draft(name, policy))).await {
            Response::Monitor(m) => m.id,
            other => panic!("{other:?}"),
        }
    }

    async fn report(&mut self, at: u64, node: u64, id: u64, status: CheckStatus, run: u32) {
        self.seqs[node as usize] += 1;
        let seq = self.seqs[node as usize];
        let r = self.run(at, support::digest(node, seq, vec![support::result(id, status, run)])).await;
        assert!(matches!(r, Response::Digests { .. }), "{r:?}");
    }

    /// Every node of three reports `status` (a confirmed run of 5).
    async fn all(&mut self, at: u64, id: u64, status: CheckStatus) {
        for n in 1..=3 {
            self.report(at, n, id, status, 5).await;
        }
    }

    fn state(&self, id: u64) -> MonitorState {
        self.s.sm.reader().verdict(id).unwrap().state
    }

    fn outbox(&self) -> Vec<(u64, NotificationKind)> {
        self.s.sm.reader().outbox().unwrap().iter().map(|n| (n.incident_id, n.kind)).collect()
    }

    fn incident(&self, id: u64) -> uptime_raft_store::Incident {
        self.s.sm.reader().get_incident(id).unwrap().unwrap()
    }

    fn incidents(&self) -> Vec<uptime_raft_store::Incident> {
        self.s.sm.reader().list_incidents().unwrap()
    }

    async fn declare(&mut self, at: u64, monitor: u64, severity: Severity) -> u64 {
        let r = self
            .run(
                at,
                Command::Incident(IncidentCommand::Declare {
                    title: "slow logins".into(),
                    severity,
                    monitor_id: Some(monitor),
                    by: "alice".into(),
                }),
            )
            .await;
        let Response::Incident(i) = r else { panic!("{r:?}") };
        i.id
    }
}

fn quick() -> AlertPolicy {
    AlertPolicy { confirmations: 1, ..AlertPolicy::default() }
}

/// Point 15: a hand-declared incident took the monitor's only open-incident
/// slot; the real outage then left no incident and no notification, and the
/// recovery resolved the human's incident.
#[tokio::test]
async fn a_declared_incident_does_not_hide_a_real_outage() {
    let mut s = Sm::new();
    let id = s.monitor("web", quick()).await;
    s.all(T0 + 1000, id, CheckStatus::Up).await;
    let declared = s.declare(T0 + 2000, id, Severity::Info).await;
    let before = s.outbox().len();
    s.all(T0 + 10_000, id, CheckStatus::Down).await;
    assert_eq!(s.state(id), MonitorState::Down);
    let opened: Vec<_> = s.outbox()[before..].to_vec();
    assert!(
        opened.iter().any(|(_, k)| *k == NotificationKind::Open),
        "a confirmed DOWN wrote no notification: {opened:?}"
    );
    let outage = s
        .incidents()
        .into_iter()
        .find(|i| i.id != declared && i.state == IncidentState::Triggered)
        .expect("the outage has an incident of its own");
    assert_eq!(outage.severity, Severity::Critical);
    // The recovery resolves what the verdict opened, and only that.
    s.all(T0 + 20_000, id, CheckStatus::Up).await;
    assert_eq!(s.incident(outage.id).state, IncidentState::Resolved);
    assert_eq!(s.incident(declared).state, IncidentState::Triggered, "the human's incident is theirs to resolve");
}

/// Point 16: resolving by hand while the target is still down left an outage
/// with no incident and no reminder until it flapped. The rule chosen: refused,
/// with the reason.
#[tokio::test]
async fn resolving_an_outage_by_hand_while_it_is_still_down_is_refused() {
    let mut s = Sm::new();
    let id = s.monitor("web", quick()).await;
    s.all(T0 + 1000, id, CheckStatus::Down).await;
    let inc = s.incidents()[0].id;
    let r = s.run(T0 + 2000, Command::Incident(IncidentCommand::Resolve { id: inc, by: "alice".into() })).await;
    let Response::Rejected(why) = r else { panic!("resolving a live outage was accepted: {r:?}") };
    assert!(why.message.contains("still down"), "{}", why.message);
    assert_eq!(s.incident(inc).state, IncidentState::Triggered);
    // Once it recovers, it resolves itself.
    s.all(T0 + 3000, id, CheckStatus::Up).await;
    assert_eq!(s.incident(inc).state, IncidentState::Resolved);
}

/// Point 14: a monitor nobody reports on stayed UNKNOWN forever and never alerted.
#[tokio::test]
async fn no_data_for_longer_than_the_bound_opens_an_incident_of_its_own_and_data_resolves_it() {
    let mut s = Sm::new();
    let id = s.monitor("web", AlertPolicy::default()).await;
    for minute in 1..=30 {
        s.run(T0 + minute * MIN, Command::Tick).await;
    }
    assert_eq!(s.state(id), MonitorState::Unknown);
    let open: Vec<_> = s.incidents().into_iter().filter(|i| i.state == IncidentState::Triggered).collect();
    assert_eq!(open.len(), 1, "30 minutes without data opened no incident");
    assert!(open[0].title.contains("no data"), "{}", open[0].title);
    assert!(s.outbox().iter().any(|(i, k)| *i == open[0].id && *k == NotificationKind::Open));
    // Data returns: the no-data incident resolves.
    s.all(T0 + 31 * MIN, id, CheckStatus::Up).await;
    assert_eq!(s.incident(open[0].id).state, IncidentState::Resolved);
}

/// Point 17: a paused monitor read "maintenance".
#[tokio::test]
async fn paused_is_a_state_of_its_own() {
    let mut s = Sm::new();
    let id = s.monitor("web", quick()).await;
    s.run(T0 + 1000, Command::SetMonitorEnabled { id, enabled: false }).await;
    assert_eq!(s.state(id).as_str(), "paused");
}

/// Point 17: failures inside a maintenance window counted against uptime.
#[tokio::test]
async fn failures_inside_a_maintenance_window_do_not_count_against_uptime() {
    let mut s = Sm::new();
    let id = s.monitor("web", quick()).await;
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
    s.all(T0 + MIN, id, CheckStatus::Down).await;
    let buckets = s.s.sm.reader().history(id, Level::Day, 0, u64::MAX).unwrap();
    let failures: u64 = buckets.iter().map(|(_, b)| b.failures).sum();
    assert_eq!(failures, 0, "failures inside a maintenance window counted as downtime");
}

/// Point 17: windows that silence everything for good, or everything by accident.
#[tokio::test]
async fn maintenance_windows_that_silence_for_good_are_refused() {
    let mut s = Sm::new();
    let id = s.monitor("web", quick()).await;
    let recurring = |weekdays: Vec<u8>, hours: u64| Schedule::Recurring {
        time_zone: "UTC".into(),
        weekdays,
        start_minute: 0,
        duration_ms: hours * 3_600_000,
    };
    for (monitors, schedule, field) in [
        (vec![id], recurring(vec![], 25), "duration"),
        (vec![id], recurring(vec![], 24), "duration"),
        (vec![id], recurring(vec![2], 7 * 24), "duration"),
        (vec![id], recurring(vec![0, 1], 30), "duration"),
        (vec![], Schedule::Once { start_ms: T0, end_ms: T0 + MIN }, "monitors"),
    ] {
        let r = s
            .run(
                T0,
                Command::CreateMaintenance {
                    name: "w".into(),
                    monitors,
                    all_monitors: false,
                    schedule: schedule.clone(),
                },
            )
            .await;
        match r {
            Response::Rejected(why) => assert_eq!(why.field.as_deref(), Some(field), "{schedule:?}: {why:?}"),
            other => panic!("{schedule:?} was accepted: {other:?}"),
        }
    }
    assert!(s.s.sm.reader().list_maintenance().unwrap().is_empty());
    // What is fine stays fine: a weekday window that does not reach its next start.
    let ok = s
        .run(
            T0,
            Command::CreateMaintenance {
                name: "w".into(),
                monitors: vec![id],
                all_monitors: false,
                schedule: recurring(vec![0, 2], 40),
            },
        )
        .await;
    assert!(matches!(ok, Response::Maintenance(_)), "{ok:?}");
}

/// Point 13: what a node could not check is visible (status and reason), is
/// not a vote and not a check in the history, and a monitor nobody can check
/// ends in a "no data" incident that says why.
#[tokio::test]
async fn checks_no_node_could_run_are_shown_and_end_in_a_no_data_incident_that_says_why() {
    let mut s = Sm::new();
    let id = s.monitor("ping", AlertPolicy { no_data_after_ms: 5 * MIN, ..quick() }).await;
    for minute in 0..=6 {
        for n in 1..=3 {
            s.seqs[n as usize] += 1;
            let not_checked = MonitorResult {
                checks: 0,
                failures: 0,
                last_error: "this node could not run the check: raw sockets need CAP_NET_RAW".into(),
                latency: LatencyStats::default(),
                ..support::result(id, CheckStatus::NotChecked, 1 + minute as u32)
            };
            s.run(T0 + 1000 + minute * MIN, support::digest(n, s.seqs[n as usize], vec![not_checked])).await;
        }
        s.run(T0 + 1000 + minute * MIN, Command::Tick).await;
    }
    assert_eq!(s.state(id), MonitorState::Unknown, "a node that cannot check does not vote");
    let seen = s.s.sm.reader().observations(id).unwrap();
    assert!(seen.iter().all(|(_, o)| o.status == CheckStatus::NotChecked && o.last_error.contains("CAP_NET_RAW")));
    let history = s.s.sm.reader().history(id, Level::Day, 0, u64::MAX).unwrap();
    assert_eq!(history.iter().map(|(_, b)| b.checks).sum::<u64>(), 0, "no check of the target happened");
    let inc = s.incidents().into_iter().find(|i| i.state == IncidentState::Triggered).expect("a no-data incident");
    assert!(inc.timeline[0].text.contains("could not check") && inc.timeline[0].text.contains("CAP_NET_RAW"));
}

/// Point 14: a degraded verdict alerts when the monitor asks for it, and a
/// later DOWN escalates that incident (severity, title, a new notification).
#[tokio::test]
async fn degraded_alerts_by_opt_in_and_escalates_to_down() {
    let mut s = Sm::new();
    let quiet = s.monitor("quiet", quick()).await;
    let loud = s.monitor("loud", AlertPolicy { alert_on_degraded: true, ..quick() }).await;
    for id in [quiet, loud] {
        s.all(T0 + 1000, id, CheckStatus::Degraded).await;
        assert_eq!(s.state(id), MonitorState::Degraded);
    }
    let open: Vec<_> = s.incidents().into_iter().filter(|i| i.state == IncidentState::Triggered).collect();
    assert_eq!(open.iter().map(|i| i.monitor_id).collect::<Vec<_>>(), vec![Some(loud)]);
    assert_eq!(open[0].severity, Severity::Minor);
    s.all(T0 + 2000, loud, CheckStatus::Down).await;
    let inc = s.incident(open[0].id);
    assert_eq!((inc.severity, inc.title.as_str()), (Severity::Critical, "loud is down"));
    let opens = s.outbox().iter().filter(|(i, k)| *i == inc.id && *k == NotificationKind::Open).count();
    assert_eq!(opens, 2, "the escalation is notified");
    assert_eq!(s.incidents().len(), 1, "one incident for one outage");
    s.all(T0 + 3000, loud, CheckStatus::Up).await;
    assert_eq!(s.incident(inc.id).state, IncidentState::Resolved);
}

/// Review of point 15: a reopened incident took a new outage's DOWN as a
/// timeline line only, with no notification.
#[tokio::test]
async fn a_new_outage_on_a_reopened_incident_is_notified_again() {
    let mut s = Sm::new();
    let id = s.monitor("web", quick()).await;
    s.all(T0 + 1000, id, CheckStatus::Down).await;
    let inc = s.incidents()[0].id;
    s.all(T0 + 2000, id, CheckStatus::Up).await;
    let r = s.run(T0 + 3000, Command::Incident(IncidentCommand::Reopen { id: inc, by: "alice".into() })).await;
    assert!(matches!(r, Response::Incident(_)), "{r:?}");
    let r = s.run(T0 + 3500, Command::Incident(IncidentCommand::Acknowledge { id: inc, by: "alice".into() })).await;
    assert!(matches!(r, Response::Incident(_)), "{r:?}");
    let before = s.outbox().iter().filter(|(i, k)| *i == inc && *k == NotificationKind::Open).count();
    s.all(T0 + 4000, id, CheckStatus::Down).await;
    let after = s.outbox().iter().filter(|(i, k)| *i == inc && *k == NotificationKind::Open).count();
    assert_eq!(after, before + 1, "the new outage was not notified");
    assert_eq!(s.incident(inc).state, IncidentState::Triggered, "a new outage needs a new acknowledgement");
}

/// Review of point 16: pausing a monitor is the advice for silencing an
/// outage, so a paused monitor's incident sends no reminders.
#[tokio::test]
async fn a_paused_monitor_sends_no_reminders_and_its_incident_can_then_be_resolved() {
    let mut s = Sm::new();
    let id = s.monitor("web", AlertPolicy { renotify_interval_ms: 10 * MIN, ..quick() }).await;
    s.all(T0 + 1000, id, CheckStatus::Down).await;
    let inc = s.incidents()[0].id;
    s.run(T0 + 2000, Command::SetMonitorEnabled { id, enabled: false }).await;
    for minute in 1..=30 {
        s.run(T0 + minute * MIN, Command::Tick).await;
    }
    assert!(!s.outbox().iter().any(|(_, k)| *k == NotificationKind::Reminder), "{:?}", s.outbox());
    let r = s.run(T0 + 31 * MIN, Command::Incident(IncidentCommand::Resolve { id: inc, by: "alice".into() })).await;
    assert!(matches!(r, Response::Incident(_)), "{r:?}");
}

/// Review of point 14: turning the no-data alert off is the advice the
/// refusal gives, so it must close the open no-data incident.
#[tokio::test]
async fn turning_the_no_data_alert_off_closes_its_incident() {
    let mut s = Sm::new();
    let id = s.monitor("web", AlertPolicy { no_data_after_ms: 5 * MIN, ..quick() }).await;
    for minute in 1..=6 {
        s.run(T0 + minute * MIN, Command::Tick).await;
    }
    let inc = s.incidents()[0].id;
    let draft = support::draft("web", AlertPolicy { no_data_after_ms: 0, ..quick() });
    let r = s.run(T0 + 7 * MIN, Command::UpdateMonitor { id, draft }).await;
    assert!(matches!(r, Response::Monitor(_)), "{r:?}");
    s.run(T0 + 8 * MIN, Command::Tick).await;
    assert_eq!(s.incident(inc).state, IncidentState::Resolved);
}

/// Review of point 15: once declared incidents left the verdict's slot they
/// lost their reminders, and deleting their monitor left them open for good.
#[tokio::test]
async fn a_declared_incident_is_reminded_and_closed_with_its_monitor() {
    let mut s = Sm::new();
    let id = s.monitor("web", AlertPolicy { renotify_interval_ms: 10 * MIN, ..quick() }).await;
    let declared = s.declare(T0 + 1000, id, Severity::Major).await;
    for minute in 1..=25 {
        s.run(T0 + minute * MIN, Command::Tick).await;
    }
    let reminders = s.outbox().iter().filter(|(i, k)| *i == declared && *k == NotificationKind::Reminder).count();
    assert_eq!(reminders, 2, "{:?}", s.outbox());
    s.run(T0 + 26 * MIN, Command::DeleteMonitor { id }).await;
    assert_eq!(s.incident(declared).state, IncidentState::Resolved, "its monitor is gone");
}
