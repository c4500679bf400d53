//! Poison entries: no command from the log, however extreme its values, may
//! make apply panic or fail. A panic or an `Err` in apply stops every node at
//! the same entry, at every replay: one bad entry would take the whole cluster
//! down for good.
//!
//! Issue 9, defect 8: `renotify_interval` had no upper bound and
//! `last_notified_at_ms + every` overflowed in apply (a panic with overflow
//! checks, a reminder on every tick without).

mod support;

use proptest::prelude::*;
use support::{draft, Store};
use uptime_probe::CheckSpec;
use uptime_raft_store::history::LatencyStats;
use uptime_raft_store::quorum::{CheckStatus, QuorumRule};
use uptime_raft_store::{
    AlertPolicy, Command, Digest, IncidentCommand, MonitorDraft, MonitorResult, NotificationKind, Response, Schedule,
    Severity,
};

fn down(node: u64, seq: u64, monitor_id: u64, run: u32) -> Command {
    Command::Digests {
        node_id: node,
        digests: vec![Digest {
            seq,
            coalesced: 0,
            results: vec![MonitorResult {
                monitor_id,
                checks: 1,
                failures: 1,
                last_status: CheckStatus::Down,
                run,
                failing_run: run,
                last_error: "refused".into(),
                latency: LatencyStats::default(),
            }],
        }],
    }
}

#[tokio::test]
async fn a_huge_renotify_interval_is_refused_and_never_overflows() {
    let t0 = 1_800_000_000_000;
    let mut s = Store::new();
    s.run(t0, support::default_channel("hook")).await;
    let policy = AlertPolicy { confirmations: 1, renotify_interval_ms: u64::MAX, ..AlertPolicy::default() };
    let created = s.run(t0, Command::CreateMonitor(draft("m", policy))).await;
    assert!(
        matches!(&created, Response::Rejected(r) if r.field.as_deref() == Some("renotify_interval")),
        "{created:?}"
    );
    // The largest interval accepted is far from overflowing, and reminds on time.
    let policy = AlertPolicy { confirmations: 1, renotify_interval_ms: 7 * 86_400_000, ..AlertPolicy::default() };
    let Response::Monitor(m) = s.run(t0, Command::CreateMonitor(draft("m", policy))).await else { panic!() };
    for n in 1..=2 {
        s.run(t0 + 1_000, down(n, 1, m.id, 1)).await;
    }
    s.run(t0 + 2_000, Command::Tick).await;
    s.run(t0 + 3_000, Command::Tick).await;
    let kinds: Vec<_> = s.sm.reader().outbox().unwrap().iter().map(|n| n.kind).collect();
    assert_eq!(kinds, vec![NotificationKind::Open]);
}

/// Issue 9, defect 9: each note appended to the incident's row with no cap;
/// about 15k notes made a row larger than a snapshot reader accepts, so every
/// snapshot after it was unreadable, and each note rewrote the whole row.
#[tokio::test]
async fn an_incident_timeline_is_capped_and_keeps_its_first_and_latest_events() {
    let t0 = 1_800_000_000_000;
    let mut s = Store::new();
    let declared = s
        .run(
            t0,
            Command::Incident(IncidentCommand::Declare {
                title: "t".into(),
                severity: Severity::Minor,
                monitor_id: None,
                by: "ann".into(),
            }),
        )
        .await;
    let Response::Incident(inc) = declared else { panic!("{declared:?}") };
    for i in 0..600 {
        let note =
            IncidentCommand::Note { id: inc.id, by: "bob".into(), text: format!("note {i} {}", "x".repeat(1000)) };
        assert!(matches!(s.run(t0 + i, Command::Incident(note)).await, Response::Incident(_)));
    }
    let inc = s.sm.reader().get_incident(inc.id).unwrap().unwrap();
    assert!(inc.timeline.len() <= uptime_raft_store::MAX_TIMELINE, "{} events", inc.timeline.len());
    assert_eq!(inc.timeline[0].kind, "opened");
    assert!(inc.timeline.last().unwrap().text.starts_with("note 599 "));
}

// === random and extreme commands ===

fn extreme_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(i64::MAX as u64),
        Just(i64::MAX as u64 + 1),
        0u64..100,
        1_700_000_000_000u64..1_900_000_000_000,
        any::<u64>(),
    ]
}

fn extreme_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(1), Just(u32::MAX), 0u32..200, any::<u32>()]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".into()),
        "[a-z0-9]{1,12}",
        ".{0,40}",
        (0usize..3).prop_map(|k| "x".repeat([5_000, 70_000, 300_000][k])),
    ]
}

fn latency() -> impl Strategy<Value = LatencyStats> {
    (extreme_u64(), extreme_u64(), extreme_u64(), extreme_u64(), prop::collection::vec(extreme_u32(), 0..40))
        .prop_map(|(count, min_us, max_us, sum_us, hist)| LatencyStats { count, min_us, max_us, sum_us, hist })
}

fn status() -> impl Strategy<Value = CheckStatus> {
    prop_oneof![Just(CheckStatus::Up), Just(CheckStatus::Down), Just(CheckStatus::Degraded)]
}

fn policy() -> impl Strategy<Value = AlertPolicy> {
    (
        extreme_u32(),
        extreme_u32(),
        prop_oneof![
            Just(QuorumRule::Majority),
            Just(QuorumRule::Any),
            Just(QuorumRule::All),
            extreme_u32().prop_map(QuorumRule::Count)
        ],
        any::<bool>(),
        prop_oneof![Just(0u64), Just(60_000), extreme_u64()],
        prop::collection::vec(text(), 0..3),
        (prop_oneof![Just(0u64), Just(60_000), extreme_u64()], any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                confirmations,
                recovery_confirmations,
                quorum,
                notify_on_recovery,
                renotify_interval_ms,
                channels,
                (no_data_after_ms, alert_on_degraded, default_channels),
            )| AlertPolicy {
                confirmations,
                recovery_confirmations,
                quorum,
                notify_on_recovery,
                renotify_interval_ms,
                channels,
                no_data_after_ms,
                no_data_severity: uptime_raft_store::Severity::Minor,
                alert_on_degraded,
                default_channels,
            },
        )
}

fn monitor_draft() -> impl Strategy<Value = MonitorDraft> {
    (
        prop_oneof![Just("web".to_string()), text()],
        prop_oneof![Just(10_000u64), extreme_u64()],
        prop_oneof![Just(5_000u64), extreme_u64()],
        any::<bool>(),
        prop::collection::vec(text(), 0..3),
        policy(),
    )
        .prop_map(|(name, interval_ms, timeout_ms, enabled, tags, policy)| MonitorDraft {
            name,
            check: CheckSpec::from_target("tcp", "127.0.0.1:9").unwrap(),
            interval_ms,
            timeout_ms,
            enabled,
            public: false,
            tags,
            policy,
        })
}

fn schedule() -> impl Strategy<Value = Schedule> {
    prop_oneof![
        (extreme_u64(), extreme_u64()).prop_map(|(start_ms, end_ms)| Schedule::Once { start_ms, end_ms }),
        (
            prop_oneof![Just("UTC".to_string()), Just("Europe/Berlin".to_string()), text()],
            prop::collection::vec(any::<u8>(), 0..9),
            extreme_u32(),
            extreme_u64()
        )
            .prop_map(|(time_zone, weekdays, start_minute, duration_ms)| Schedule::Recurring {
                time_zone,
                weekdays,
                start_minute,
                duration_ms
            }),
    ]
}

fn digest() -> impl Strategy<Value = Digest> {
    (
        extreme_u64(),
        extreme_u32(),
        prop::collection::vec(
            (1u64..4, extreme_u64(), extreme_u64(), status(), extreme_u32(), text(), latency()),
            0..4,
        ),
    )
        .prop_map(|(seq, coalesced, results)| Digest {
            seq,
            coalesced,
            results: results
                .into_iter()
                .map(|(monitor_id, checks, failures, last_status, run, last_error, latency)| MonitorResult {
                    monitor_id,
                    checks,
                    failures,
                    last_status,
                    run,
                    failing_run: run,
                    last_error,
                    latency,
                })
                .collect(),
        })
}

fn severity() -> impl Strategy<Value = Severity> {
    prop_oneof![Just(Severity::Critical), Just(Severity::Major), Just(Severity::Minor), Just(Severity::Info)]
}

fn incident_command() -> impl Strategy<Value = IncidentCommand> {
    let id = prop_oneof![1u64..4, extreme_u64()];
    prop_oneof![
        (text(), severity(), prop::option::of(1u64..4), text())
            .prop_map(|(title, severity, monitor_id, by)| IncidentCommand::Declare { title, severity, monitor_id, by }),
        (id.clone(), text()).prop_map(|(id, by)| IncidentCommand::Acknowledge { id, by }),
        (id.clone(), text()).prop_map(|(id, by)| IncidentCommand::Resolve { id, by }),
        (id.clone(), text()).prop_map(|(id, by)| IncidentCommand::Reopen { id, by }),
        (id.clone(), text(), text()).prop_map(|(id, by, text)| IncidentCommand::Note { id, by, text }),
        (id.clone(), text(), prop::option::of(text())).prop_map(|(id, by, assignee)| IncidentCommand::Assign {
            id,
            by,
            assignee
        }),
        (id, text(), severity()).prop_map(|(id, by, severity)| IncidentCommand::SetSeverity { id, by, severity }),
    ]
}

fn single_command() -> impl Strategy<Value = Command> {
    let id = prop_oneof![1u64..4, extreme_u64()];
    prop_oneof![
        monitor_draft().prop_map(Command::CreateMonitor),
        (id.clone(), monitor_draft()).prop_map(|(id, draft)| Command::UpdateMonitor { id, draft }),
        (id.clone(), any::<bool>()).prop_map(|(id, enabled)| Command::SetMonitorEnabled { id, enabled }),
        id.clone().prop_map(|id| Command::DeleteMonitor { id }),
        (text(), text()).prop_map(|(key, value)| Command::SetSetting { key, value }),
        (prop_oneof![1u64..4, extreme_u64()], prop::collection::vec(digest(), 0..3))
            .prop_map(|(node_id, digests)| Command::Digests { node_id, digests }),
        Just(Command::Tick),
        Just(Command::Tick),
        incident_command().prop_map(Command::Incident),
        (text(), prop::collection::vec(prop_oneof![1u64..4, extreme_u64()], 0..3), any::<bool>(), schedule()).prop_map(
            |(name, monitors, all_monitors, schedule)| Command::CreateMaintenance {
                name,
                monitors,
                all_monitors,
                schedule
            }
        ),
        id.prop_map(|id| Command::DeleteMaintenance { id }),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => single_command(),
        1 => prop::collection::vec(single_command(), 0..4).prop_map(Command::Batch),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any sequence of commands stamped with any times applies without a panic
    /// or an error, and two stores that apply it agree to the byte.
    #[test]
    fn random_and_extreme_commands_never_stop_apply(
        steps in prop::collection::vec((extreme_u64(), command()), 1..24)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let (mut a, mut b) = (Store::new(), Store::new());
            for (at_ms, command) in &steps {
                let ra = a.run(*at_ms, command.clone()).await;
                let rb = b.run(*at_ms, command.clone()).await;
                assert_eq!(ra, rb);
            }
            assert_eq!(a.sm.reader().state_hash().unwrap(), b.sm.reader().state_hash().unwrap());
        });
    }
}
