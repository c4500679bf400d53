//! The admin operations, shared by the REST routes and the admin gRPC service:
//! input checks, then the cluster call. Both transports stay thin. One file per
//! resource under `ops/`: `members`, `settings`, `monitors`, `incidents`,
//! `maintenance`.

use std::time::Duration;

use uptime_probe::{CheckSpec, HttpSpec, StatusRange};
use uptime_raft_store::history::{uptime_percent, Level, Retention};
use uptime_raft_store::quorum::QuorumRule;
use uptime_raft_store::{
    AlertPolicy, Command, IncidentCommand, IncidentState, MaintenanceWindow, Monitor, MonitorDraft, PeerNode, Response,
    Schedule, Severity,
};

use crate::cluster::Cluster;
use crate::dto::{
    parse_quorum, rfc3339, AddNode, BucketView, ClusterStatus, CreateMonitor, DeclareIncident, HistoryView,
    IncidentAction, IncidentView, MaintenanceView, MonitorView, NodeView, Setting, StateHashView,
};
use crate::error::{ApiError, ErrorCode};

/// Local reads by default; `linearizable` waits until this node reflects every
/// write committed before the call.
pub async fn read_barrier(cluster: &Cluster, linearizable: bool) -> Result<(), ApiError> {
    if linearizable {
        cluster.linearize().await
    } else {
        cluster.read_own_writes().await;
        Ok(())
    }
}

mod channels;
mod incidents;
mod maintenance;
mod members;
mod monitors;
mod settings;

pub use channels::*;
pub use incidents::*;
pub use maintenance::*;
pub use members::*;
pub use monitors::*;
pub use settings::*;
