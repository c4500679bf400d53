//! Reopening the state machine: state survives, and a state that fell behind
//! its durable snapshot (apply commits are not fsynced one by one) is restored
//! from the snapshot at open.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
use uptime_raft_store::typ::Entry;
use uptime_raft_store::{Command, Request, StateMachineStore};

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            at_ms: 1_000 * index,
            command: Command::SetSetting { key: format!("k{index}"), value: "v".repeat(100) },
        }),
    }
}

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
    std::fs::copy(a.path().join("snapshot.bin"), c.path().join("snapshot.bin")).unwrap();
    let mut restored = StateMachineStore::open(c.path()).unwrap();
    let (applied, membership) = restored.applied_state().await.unwrap();
    assert_eq!(applied.unwrap().index, 150);
    assert_eq!(membership, Default::default());
    assert_eq!(restored.reader().state_hash().unwrap(), hash_at_snapshot);
    assert_eq!(restored.reader().setting("k150").unwrap().as_deref(), Some("v".repeat(100).as_str()));
}
