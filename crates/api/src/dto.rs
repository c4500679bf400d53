//! JSON shapes of the admin API. These are contracts (DESIGN.md): add fields
//! freely, never rename or remove one.

use serde::{Deserialize, Serialize};
use uptime_raft_store::Monitor;

/// `uptimectl cluster status -o json`, `GET /api/v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub members: Vec<Member>,
    pub last_applied: u64,
    pub last_log_index: u64,
    /// Index of the last entry covered by the latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Index of the last entry purged from the log.
    pub purged_index: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    /// Peer (node-to-node) address.
    pub addr: String,
    pub api_addr: String,
    pub voter: bool,
    /// The leader heard from it recently (the leader itself is healthy).
    pub healthy: bool,
}

/// `POST /api/v1/cluster/nodes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddNode {
    pub id: u64,
    pub peer_addr: String,
    pub api_addr: String,
}

/// `POST /api/v1/monitors`. Durations are humantime strings ("30s", "1m").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateMonitor {
    pub name: String,
    pub kind: String,
    pub target: String,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub expect: Vec<u16>,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A monitor as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorView {
    pub id: u64,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub interval_s: f64,
    pub timeout_s: f64,
    pub enabled: bool,
    pub public: bool,
    pub tags: Vec<String>,
    /// `up`, `down`, `degraded`, `unknown` or `maintenance`. Probing is not wired yet,
    /// so every monitor is `unknown` (or `maintenance` while paused).
    pub state: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The full check specification.
    pub check: serde_json::Value,
}

impl From<&Monitor> for MonitorView {
    fn from(m: &Monitor) -> Self {
        MonitorView {
            id: m.id,
            name: m.name.clone(),
            kind: m.check.kind().to_string(),
            target: m.check.target(),
            interval_s: m.interval_ms as f64 / 1000.0,
            timeout_s: m.timeout_ms as f64 / 1000.0,
            enabled: m.enabled,
            public: m.public,
            tags: m.tags.clone(),
            state: if m.enabled { "unknown" } else { "maintenance" }.to_string(),
            created_at_ms: m.created_at_ms,
            updated_at_ms: m.updated_at_ms,
            check: serde_json::to_value(&m.check).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// `GET /api/v1/cluster/state-hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHashView {
    pub applied_index: u64,
    pub hash: String,
}

/// The error envelope of every 4xx/5xx: `{"error": {"code", "message", "field"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

/// A cluster setting, `GET|PUT /api/v1/settings/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub key: String,
    pub value: String,
}

/// The body of `PUT /api/v1/settings/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingValue {
    pub value: String,
}
