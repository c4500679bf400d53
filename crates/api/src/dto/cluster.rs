//! Cluster status, membership and the state hash.

use super::*;

/// `uptimectl cluster status -o json`, `GET /api/v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: u64,
    /// The leader as the answering node knows it: `None` ("no leader known")
    /// once it has not heard from the leader within the health window (a
    /// leader itself: from a majority of voters), whatever Raft last recorded.
    pub leader: Option<u64>,
    pub term: u64,
    pub members: Vec<Member>,
    pub last_applied: u64,
    pub last_log_index: u64,
    /// Index of the last entry covered by the latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Index of the last entry purged from the log.
    pub purged_index: Option<u64>,
    /// The replicated state's clock on the answering node (Unix ms): the voters'
    /// median time as of its last applied entry.
    #[serde(default)]
    pub state_time_ms: u64,
    /// How far the answering node's own clock is from the voters' median, in ms
    /// (positive: ahead); null while it has not heard from a majority.
    #[serde(default)]
    pub clock_skew_ms: Option<i64>,
    /// Log index of the membership the members list comes from (a newer one
    /// wins when views are combined).
    #[serde(default)]
    pub membership_index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    /// Peer (node-to-node) address.
    pub addr: String,
    pub api_addr: String,
    pub voter: bool,
    /// The answering node heard from it within the health window (the
    /// answering node itself is healthy).
    pub healthy: bool,
    /// How long ago the answering node last heard from it, in ms; null if it
    /// never has (or for the answering node itself).
    #[serde(default)]
    pub last_contact_ms: Option<u64>,
}

/// `POST /api/v1/cluster/nodes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddNode {
    pub id: u64,
    pub peer_addr: String,
    pub api_addr: String,
}

/// `GET /api/v1/cluster/state-hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHashView {
    pub applied_index: u64,
    pub hash: String,
}

/// Why a read may be behind the cluster: `X-Uptime-Stale: <age>s` on the
/// response, and this as the `stale` field of each monitor read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleView {
    /// How far the state's clock (the time of its last applied entry) is
    /// behind this node's clock, in ms.
    pub age_ms: u64,
    pub reason: String,
}
