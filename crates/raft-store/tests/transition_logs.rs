//! Issue 10, point 24: monitor transitions and incidents were not logged, so
//! an operator reading a node's log could not see an outage begin or end.
//! They are logged at INFO. One test in its own binary: it installs the
//! process-wide subscriber (apply runs on a blocking thread).

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use support::Store;
use uptime_raft_store::quorum::CheckStatus;
use uptime_raft_store::{AlertPolicy, Command, Response};

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn transitions_and_incidents_are_logged_at_info() {
    let lines = Lines::default();
    let writer = lines.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let mut s = Store::new();
    let policy = AlertPolicy { confirmations: 1, ..AlertPolicy::default() };
    let Response::Monitor(m) = s.run(1_000, Command::CreateMonitor(support::draft("web", policy))).await else {
        panic!()
    };
    for (seq, status) in [(1, CheckStatus::Down), (2, CheckStatus::Up)] {
        s.run(1_000 + seq * 10_000, support::digest(1, seq, vec![support::result(m.id, status, 1)])).await;
    }
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let info: Vec<&str> = text.lines().filter(|l| l.contains(" INFO ")).collect();
    for want in ["from=\"unknown\" to=\"down\"", "incident opened", "from=\"down\" to=\"up\"", "incident resolved"] {
        assert!(info.iter().any(|l| l.contains(want)), "no INFO line with {want:?} in:\n{text}");
    }
}
