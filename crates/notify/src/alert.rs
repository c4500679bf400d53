//! What a notification says: the variables templates see, and the delivery's
//! identity (idempotency key and fencing token) every request carries.

use serde::{Deserialize, Serialize};

/// Why the notification exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// An incident opened (or reopened).
    Open,
    /// An incident resolved.
    Resolve,
    /// An unacknowledged incident, again.
    Reminder,
    /// `channel test`: synthetic, no incident behind it.
    Test,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Open => "open",
            AlertKind::Resolve => "resolve",
            AlertKind::Reminder => "reminder",
            AlertKind::Test => "test",
        }
    }
}

/// One node's view of the monitor when the notification was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub node_id: u64,
    /// `up`, `down`, `degraded`, `not_checked`, or `stale`.
    pub status: String,
    pub error: String,
    pub latency_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorInfo {
    pub id: u64,
    pub name: String,
    /// `http`, `tcp`, `icmp`, `dns`, `tls`.
    pub kind: String,
    pub target: String,
}

/// The template variables, serialised as they are named in templates
/// (documented in docs/alerting.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub notification_id: u64,
    pub incident_id: u64,
    /// The incident's title.
    pub title: String,
    /// `triggered`, `acknowledged` or `resolved`.
    pub state: String,
    /// `critical`, `major`, `minor`, `info`.
    pub severity: String,
    /// `down`, `degraded`, `no_data` or `declared`.
    pub cause: String,
    /// None for a declared incident not tied to a monitor.
    pub monitor: Option<MonitorInfo>,
    /// The monitor's verdict: `up`, `down`, `degraded`, `unknown`, `maintenance`, `paused`.
    pub verdict: String,
    pub nodes: Vec<NodeView>,
    /// The first failing node's last error, empty when none.
    pub error: String,
    /// RFC 3339, UTC.
    pub opened_at: String,
    pub resolved_at: Option<String>,
    pub acknowledged_at: Option<String>,
    /// When the notification was written (RFC 3339, UTC).
    pub at: String,
    /// Link to the status page (the node's configured public URL), empty when unset.
    pub status_url: String,
}

/// The delivery's identity, the same on every attempt of one notification
/// except the fencing token, which names the claim this attempt runs under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fencing {
    /// `Idempotency-Key`: the notification id, stable across attempts and leaders.
    pub idempotency_key: String,
    /// `X-Uptime-Fencing-Token`: `<term>-<node>-<index>` of the claim's log id.
    pub token: String,
    pub term: u64,
    pub node_id: u64,
    pub index: u64,
}

impl Fencing {
    pub fn new(notification_id: u64, term: u64, node_id: u64, index: u64) -> Fencing {
        Fencing {
            idempotency_key: notification_id.to_string(),
            token: format!("{term}-{node_id}-{index}"),
            term,
            node_id,
            index,
        }
    }
}
