//! The replicated state of uptime-cluster: what the Raft log carries, how it is
//! applied, and how both are kept in redb.
//!
//! This crate knows the replicated state and its storage, not the network: the
//! peer transport lives in `uptime-api`.
//!
//! Modules:
//! - `types`: the openraft [`TypeConfig`] and the node address record.
//! - `codec`: the versioned envelope every stored or replicated value is written in.
//! - `model`: monitors and the settings table.
//! - `command`: the commands a log entry carries and what apply answers.
//! - `log_store`: the Raft log, vote and committed index in their own redb file.
//! - `floor`: how far the log may be purged (behind a durable snapshot only).
//! - `state_machine`: deterministic apply, snapshots, and read access to the state.
//!
//! ```no_run
//! # async fn demo() -> Result<(), uptime_raft_store::Error> {
//! let dir = std::path::Path::new("/var/lib/uptime");
//! let sm = uptime_raft_store::StateMachineStore::open(dir)?;
//! let log = uptime_raft_store::LogStore::open(&dir.join("raft-log.redb"))?.with_snapshot_floor(sm.snapshot_floor());
//! let reader = sm.reader();
//! println!("{} monitors", reader.list_monitors()?.len());
//! # Ok(()) }
//! ```

mod apply;
pub mod codec;
mod command;
mod error;
mod floor;
pub mod history;
mod log_store;
mod model;
pub mod quorum;
mod snapshot;
mod state_machine;
mod tables;
mod types;

pub use command::IncidentCommand;
pub use command::{
    channel_name, Command, OutboxCommand, RejectCode, Rejection, Request, Response, Settlement, IDEMPOTENCY_WINDOW_MS,
    MAX_ATTEMPTS, MAX_BATCH, MAX_ENTRY_BYTES, MAX_OUTBOX_BATCH, MAX_RETRY_MS, MIN_RETRY_MS,
};
pub use error::Error;
pub use floor::SnapshotFloor;
pub use log_store::{begin_durable, refuse_empty_file, LogStore, DEFAULT_LOG_CACHE};
pub use model::{
    AlertPolicy, Channel, Delivery, DeliveryOutcome, Digest, Incident, IncidentCause, IncidentState, MaintenanceWindow,
    Monitor, MonitorDraft, MonitorResult, Notification, NotificationKind, NotificationState, Observation, Schedule,
    Severity, TimelineEvent, Verdict, DEFAULT_NO_DATA_MS, MAX_TIMELINE, MIN_TIMEOUT_MS,
};
pub use snapshot::SnapshotFile;
pub use state_machine::{StateHash, StateMachineStore, StateReader, DEFAULT_STATE_CACHE};
pub use types::{NodeId, PeerNode, Raft, TypeConfig};

/// Aliases of the openraft types bound to [`TypeConfig`], so callers do not repeat
/// the generic parameters.
pub mod typ {
    use crate::{NodeId, PeerNode, TypeConfig};

    pub type Entry = openraft::Entry<TypeConfig>;
    pub type LogId = openraft::LogId<NodeId>;
    pub type Vote = openraft::Vote<NodeId>;
    pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, PeerNode>;
    pub type StoredMembership = openraft::StoredMembership<NodeId, PeerNode>;
    pub type StorageError = openraft::StorageError<NodeId>;
    pub type RaftMetrics = openraft::RaftMetrics<NodeId, PeerNode>;
    pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
    pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, PeerNode>;
    pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;
    pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
    pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<NodeId>;
    pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
    pub type VoteResponse = openraft::raft::VoteResponse<NodeId>;
    pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
    pub type InstallSnapshotResponse = openraft::raft::InstallSnapshotResponse<NodeId>;
    pub type InstallSnapshotError = openraft::error::InstallSnapshotError;
}

/// Runs blocking storage work (a redb transaction, often with an fsync) on
/// tokio's blocking pool, so it never stalls the tasks that serve the network.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(join) => Err(Error::Task { message: join.to_string() }),
    }
}

/// The tracing target of the commit-path stage events: one TRACE event per
/// stage a write passes on each node (propose, log append, replication send and
/// ack, the follower's RPC, apply), each with the log index it concerns.
/// `scripts/bench-commit-path.sh` turns on `UPTIME_LOG=...,commit_path=trace`
/// and reads the timestamps back into a per-stage latency table. Off (and
/// nearly free) unless that target is enabled.
pub const COMMIT_PATH: &str = "commit_path";

/// Emits one commit-path stage event (see [`COMMIT_PATH`]).
#[macro_export]
macro_rules! commit_path {
    ($stage:literal, $index:expr $(, $field:ident = $value:expr)*) => {
        ::tracing::trace!(target: $crate::COMMIT_PATH, index = $index $(, $field = $value)*, $stage)
    };
}
