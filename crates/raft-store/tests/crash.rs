//! Crash images of the two stores taken inside the windows openraft leaves
//! open, reopened the way a restarted node would reopen them.
//!
//! Issue 9, defect 1: openraft 0.9 asks the log store to purge behind a
//! received snapshot as soon as it has queued the install, while the install
//! is still checking and fsyncing the file. The purge used to run at once, so a
//! crash in that window left the old state and snapshot beside a log purged
//! past both. The log store now purges no further than the latest durable,
//! published snapshot (its `SnapshotFloor`).

use std::path::Path;
use std::time::Duration;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
mod support;

use openraft::{RaftLogReader, RaftSnapshotBuilder};
use support::entry;
use uptime_raft_store::{LogStore, StateMachineStore};

/// A node with entries 1..=10 in its log and its state, and a snapshot of
/// another node's state at index 300 to receive.
struct Lagging {
    dir: tempfile::TempDir,
    log: LogStore,
    sm: StateMachineStore,
    snapshot: openraft::Snapshot<uptime_raft_store::TypeConfig>,
    _source: tempfile::TempDir,
}

async fn lagging() -> Lagging {
    let source = tempfile::tempdir().unwrap();
    let mut leader = StateMachineStore::open(source.path()).unwrap();
    leader.apply((1..=300).map(entry).collect::<Vec<_>>()).await.unwrap();
    let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    {
        // Applied and closed, so the state at 10 is durable (a checkpoint).
        let mut sm = StateMachineStore::open(&dir.path().join("state")).unwrap();
        sm.apply((1..=10).map(entry).collect::<Vec<_>>()).await.unwrap();
    }
    let sm = StateMachineStore::open(&dir.path().join("state")).unwrap();
    let log = LogStore::open(&dir.path().join("raft-log.redb")).unwrap().with_snapshot_floor(sm.snapshot_floor());
    log.append_durably((1..=10).map(entry).collect()).unwrap();
    Lagging { dir, log, sm, snapshot, _source: source }
}

/// All of `snapshot`'s chunks received, not yet installed.
async fn receive(
    sm: &mut StateMachineStore,
    snapshot: &openraft::Snapshot<uptime_raft_store::TypeConfig>,
) -> Box<uptime_raft_store::SnapshotFile> {
    let mut received = sm.begin_receiving_snapshot().await.unwrap();
    let bytes = std::fs::read(snapshot.snapshot.path()).unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut *received, &bytes).await.unwrap();
    received
}

/// What kill -9 now would leave on disk, as a fresh directory.
fn crash_image(dir: &Path) -> tempfile::TempDir {
    let image = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("raft-log.redb"), image.path().join("raft-log.redb")).unwrap();
    std::fs::create_dir(image.path().join("state")).unwrap();
    for f in std::fs::read_dir(dir.join("state")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), image.path().join("state").join(f.file_name())).unwrap();
    }
    image
}

#[tokio::test]
async fn a_purge_asked_for_before_the_install_is_durable_waits_for_it() {
    let Lagging { dir, mut log, mut sm, snapshot, _source } = lagging().await;
    let upto = snapshot.meta.last_log_id.unwrap();

    // openraft's order: the install is queued, the purge runs at once.
    let received = receive(&mut sm, &snapshot).await;
    log.purge(upto).await.unwrap();

    // A crash here: the log must still reach the state it sits beside.
    let image = crash_image(dir.path());
    {
        let mut sm = StateMachineStore::open(&image.path().join("state")).unwrap();
        let mut log = LogStore::open(&image.path().join("raft-log.redb")).unwrap();
        let (applied, _) = sm.applied_state().await.unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(10));
        assert!(
            state.last_purged_log_id <= applied,
            "the log was purged to {:?} past the state at {applied:?}",
            state.last_purged_log_id
        );
        assert_eq!(log.try_get_log_entries(1..=10).await.unwrap().len(), 10);
    }

    // The install completes: the next append finishes the purge.
    sm.install_snapshot(&snapshot.meta, received).await.unwrap();
    log.append_durably(vec![entry(301)]).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(upto));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(301));
    assert!(log.try_get_log_entries(1..=300).await.unwrap().is_empty());
}

/// An append right behind a deferred purge would leave a hole in the log on
/// disk (openraft cannot start from a log with holes): it waits for the
/// install instead.
#[tokio::test]
async fn an_append_that_would_leave_a_hole_waits_for_the_install() {
    let Lagging { dir: _dir, mut log, mut sm, snapshot, _source } = lagging().await;
    let upto = snapshot.meta.last_log_id.unwrap();
    let received = receive(&mut sm, &snapshot).await;
    log.purge(upto).await.unwrap();

    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let appender = {
        let log = log.clone();
        std::thread::spawn(move || {
            let result = log.append_durably(vec![entry(301)]);
            done_tx.send(()).unwrap();
            result
        })
    };
    // A negative check needs a bound: the append is still waiting 300 ms on.
    assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err(), "the append left a hole in the log");
    assert!(log.try_get_log_entries(301..=301).await.unwrap().is_empty());
    sm.install_snapshot(&snapshot.meta, received).await.unwrap();
    appender.join().unwrap().unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(upto));
    assert_eq!(log.try_get_log_entries(..).await.unwrap().len(), 1);
}
