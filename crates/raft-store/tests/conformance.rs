//! openraft's own storage test suite against the redb log and state machine.

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;
use uptime_raft_store::typ::StorageError;
use uptime_raft_store::{LogStore, StateMachineStore, TypeConfig};

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("raft-log.redb")).expect("open log");
        let sm = StateMachineStore::open(&dir.path().join("sm")).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(RedbBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
