//! Reopening the state machine: state survives, and a state that fell behind
//! its durable snapshot (apply commits are not fsynced one by one) is restored
//! from the snapshot at open.

use openraft::storage::RaftStateMachine;
mod support;

use openraft::RaftSnapshotBuilder;
use support::entry;
use uptime_raft_store::StateMachineStore;

#[tokio::test]
async fn state_survives_reopen_and_a_state_behind_its_snapshot_is_restored() {
    let a = tempfile::tempdir().unwrap();
    let (hash_at_snapshot, hash_at_end) = {
        let mut sm = StateMachineStore::open(a.path()).unwrap();
        for i in 1..=150 {
            sm.apply(vec![entry(i)]).await.unwrap();
        }
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.unwrap().index, 150);
        let at_snapshot = sm.reader().state_hash().unwrap();
        for i in 151..=160 {
            sm.apply(vec![entry(i)]).await.unwrap();
        }
        (at_snapshot, sm.reader().state_hash().unwrap())
    };
    let mut sm = StateMachineStore::open(a.path()).unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.unwrap().index, 160);
    assert_eq!(sm.reader().state_hash().unwrap(), hash_at_end);
    assert!(sm.get_current_snapshot().await.unwrap().is_some(), "the snapshot survives a reopen");

    // A node whose state file lost everything after the snapshot (here: all of it).
    let c = tempfile::tempdir().unwrap();
    std::fs::copy(a.path().join("snapshot.data"), c.path().join("snapshot.data")).unwrap();
    let mut restored = StateMachineStore::open(c.path()).unwrap();
    let (applied, membership) = restored.applied_state().await.unwrap();
    assert_eq!(applied.unwrap().index, 150);
    assert_eq!(membership, Default::default());
    assert_eq!(restored.reader().state_hash().unwrap(), hash_at_snapshot);
    assert_eq!(restored.reader().setting("k150").unwrap().as_deref(), Some("v".repeat(100).as_str()));
}

/// A received snapshot that is truncated or altered is refused before it replaces
/// anything: the state, its hash and the current snapshot stay as they were.
#[tokio::test]
async fn a_damaged_received_snapshot_is_refused_and_changes_nothing() {
    use tokio::io::AsyncWriteExt;

    let a = tempfile::tempdir().unwrap();
    let mut source = StateMachineStore::open(a.path()).unwrap();
    for i in 1..=50 {
        source.apply(vec![entry(i)]).await.unwrap();
    }
    let snap = source.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let good = std::fs::read(snap.snapshot.path()).unwrap();

    let b = tempfile::tempdir().unwrap();
    let mut target = StateMachineStore::open(b.path()).unwrap();
    for i in 1..=5 {
        target.apply(vec![entry(i)]).await.unwrap();
    }
    let own = target.get_snapshot_builder().await.build_snapshot().await.unwrap().meta;
    let before = target.reader().state_hash().unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let damaged = [("truncated", good[..good.len() - 7].to_vec()), ("checksum", flipped)];
    for (what, bytes) in damaged {
        let mut rx = target.begin_receiving_snapshot().await.unwrap();
        rx.write_all(&bytes).await.unwrap();
        let err = target.install_snapshot(&snap.meta, rx).await.unwrap_err();
        assert!(err.to_string().contains(what), "{what}: {err}");
        assert_eq!(target.reader().state_hash().unwrap(), before);
        let current = target.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, own, "the current snapshot is still our own");
    }

    // The intact bytes install.
    let mut rx = target.begin_receiving_snapshot().await.unwrap();
    rx.write_all(&good).await.unwrap();
    target.install_snapshot(&snap.meta, rx).await.unwrap();
    assert_eq!(target.reader().state_hash().unwrap(), source.reader().state_hash().unwrap());
    assert_eq!(target.get_current_snapshot().await.unwrap().unwrap().meta, snap.meta);
    let leftovers: Vec<_> = std::fs::read_dir(b.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snapshot.") && n != "snapshot.data")
        .collect();
    assert!(leftovers.is_empty(), "temporary snapshot files left: {leftovers:?}");
}
