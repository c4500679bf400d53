//! Writes a client cannot tell the outcome of (a timeout, a leader that stopped
//! under the write) may be sent again. Issue 9, defect 6: a create or a note
//! sent again was applied twice. A write carrying an idempotency key is applied
//! once per key within a bounded window of state time; a repeat gets the first
//! answer.

mod support;

use support::Store;
use uptime_raft_store::{Command, IncidentCommand, RejectCode, Response, Severity, IDEMPOTENCY_WINDOW_MS};

const T0: u64 = 1_800_000_000_000;

fn declare(title: &str) -> Command {
    Command::Incident(IncidentCommand::Declare {
        title: title.into(),
        severity: Severity::Minor,
        monitor_id: None,
        by: "ann".into(),
    })
}

fn keyed(key: &str, command: Command) -> Command {
    Command::Idempotent { key: key.into(), command: Box::new(command) }
}

#[tokio::test]
async fn a_keyed_write_sent_twice_is_applied_once_and_answered_the_same() {
    let mut s = Store::new();
    let first = s.run(T0, keyed("k1", declare("db slow"))).await;
    assert!(matches!(first, Response::Incident(_)), "{first:?}");
    let again = s.run(T0 + 1_000, keyed("k1", declare("db slow"))).await;
    assert_eq!(again, first);
    assert_eq!(s.sm.reader().list_incidents().unwrap().len(), 1);

    // Another key is another write.
    s.run(T0 + 2_000, keyed("k2", declare("db slow"))).await;
    assert_eq!(s.sm.reader().list_incidents().unwrap().len(), 2);

    // A key reused for a different write is refused and changes nothing.
    let reused = s.run(T0 + 3_000, keyed("k1", declare("other"))).await;
    assert!(matches!(&reused, Response::Rejected(r) if r.code == RejectCode::Conflict), "{reused:?}");
    assert_eq!(s.sm.reader().list_incidents().unwrap().len(), 2);
}

#[tokio::test]
async fn keys_are_remembered_for_a_bounded_window_of_state_time() {
    let mut s = Store::new();
    s.run(T0, keyed("k1", declare("a"))).await;
    s.run(T0 + IDEMPOTENCY_WINDOW_MS - 1, Command::Tick).await;
    s.run(T0 + IDEMPOTENCY_WINDOW_MS - 1, keyed("k1", declare("a"))).await;
    assert_eq!(s.sm.reader().list_incidents().unwrap().len(), 1, "still within the window");
    s.run(T0 + IDEMPOTENCY_WINDOW_MS + 1, Command::Tick).await;
    assert_eq!(s.sm.reader().remembered_requests().unwrap(), 0, "the tick forgets expired keys");
    s.run(T0 + IDEMPOTENCY_WINDOW_MS + 2, keyed("k1", declare("a"))).await;
    assert_eq!(s.sm.reader().list_incidents().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_keys_and_nesting_are_refused() {
    let mut s = Store::new();
    for cmd in [
        keyed("", declare("a")),
        keyed(&"k".repeat(200), declare("a")),
        keyed("k", keyed("k", declare("a"))),
        keyed("k", Command::Batch(vec![declare("a")])),
        keyed("k", Command::Tick),
    ] {
        assert!(matches!(s.run(T0, cmd).await, Response::Rejected(_)));
    }
    assert!(s.sm.reader().list_incidents().unwrap().is_empty());
}
