use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Request, Response};

pub type NodeId = u64;

/// Where a cluster member can be reached. Stored in membership entries, so every
/// node learns every other node's addresses from the log itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// Node-to-node gRPC address (`host:port`).
    pub peer_addr: String,
    /// Admin API base URL (`http://host:port`), used to point clients at the leader.
    pub api_addr: String,
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer={} api={}", self.peer_addr, self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// The openraft type configuration of uptime-cluster.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
