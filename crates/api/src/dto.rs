//! JSON shapes of the admin API. These are contracts (DESIGN.md): add fields
//! freely, never rename or remove one.

use serde::{Deserialize, Serialize};
use uptime_raft_store::quorum::QuorumRule;
use uptime_raft_store::{Monitor, Verdict};

pub fn quorum_str(q: QuorumRule) -> String {
    match q {
        QuorumRule::Majority => "majority".into(),
        QuorumRule::Any => "any".into(),
        QuorumRule::All => "all".into(),
        QuorumRule::Count(n) => n.to_string(),
    }
}

pub fn parse_quorum(s: &str) -> Option<QuorumRule> {
    Some(match s {
        "majority" => QuorumRule::Majority,
        "any" => QuorumRule::Any,
        "all" => QuorumRule::All,
        n => QuorumRule::Count(n.parse().ok().filter(|n| *n > 0)?),
    })
}

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
    /// The replicated state's clock on the answering node (Unix ms): the voters'
    /// median time as of its last applied entry.
    #[serde(default)]
    pub state_time_ms: u64,
    /// How far the answering node's own clock is from the voters' median, in ms
    /// (positive: ahead); null while it has not heard from a majority.
    #[serde(default)]
    pub clock_skew_ms: Option<i64>,
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Failing results in a row, per node, before it counts toward DOWN (default 2).
    #[serde(default)]
    pub confirmations: Option<u32>,
    /// Ok results in a row, per node, before it counts toward UP (default 1).
    #[serde(default)]
    pub recovery_confirmations: Option<u32>,
    /// `majority` (default), `any`, `all`, or a number of nodes.
    #[serde(default)]
    pub quorum: Option<String>,
    #[serde(default)]
    pub notify_on_recovery: Option<bool>,
    /// Reminder interval while unacknowledged ("30m"); absent or "0s" = never.
    #[serde(default)]
    pub renotify: Option<String>,
    #[serde(default)]
    pub channels: Vec<String>,
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
    /// `up`, `down`, `degraded`, `unknown` or `maintenance` (also while paused).
    pub state: String,
    /// When the state last changed (leader time, Unix ms).
    pub state_since_ms: u64,
    pub paused: bool,
    pub confirmations: u32,
    pub recovery_confirmations: u32,
    pub quorum: String,
    pub notify_on_recovery: bool,
    pub renotify_s: f64,
    pub channels: Vec<String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The full check specification.
    pub check: serde_json::Value,
}

impl MonitorView {
    pub fn new(m: &Monitor, verdict: &Verdict) -> Self {
        let p = &m.policy;
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
            state: verdict.state.as_str().to_string(),
            state_since_ms: verdict.since_ms,
            paused: !m.enabled,
            confirmations: p.confirmations,
            recovery_confirmations: p.recovery_confirmations,
            quorum: quorum_str(p.quorum),
            notify_on_recovery: p.notify_on_recovery,
            renotify_s: p.renotify_interval_ms as f64 / 1000.0,
            channels: p.channels.clone(),
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

/// Unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// One node's latest report on a monitor (`GET /api/v1/monitors/{id}/nodes`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub node_id: u64,
    /// `up`, `down` or `degraded`.
    pub status: String,
    /// Consecutive results in the same class (ok / failing).
    pub run: u32,
    pub at: String,
    pub at_ms: u64,
    /// Older than 3 intervals: it no longer votes.
    pub stale: bool,
    pub last_error: String,
    pub latency_ms: f64,
}

/// `GET /api/v1/monitors/{id}/history?range=24h`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    pub monitor_id: u64,
    pub name: String,
    /// `minute`, `hour` or `day`: the finest level that covers the range.
    pub level: String,
    pub from: String,
    pub to: String,
    /// Share of checks that did not fail, over the range; null without checks.
    pub uptime_percent: Option<f64>,
    pub checks: u64,
    pub failures: u64,
    pub buckets: Vec<BucketView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketView {
    pub start: String,
    pub start_ms: u64,
    pub checks: u64,
    pub failures: u64,
    pub latency_min_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub latency_avg_ms: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

/// An incident as the API shows it; `incident list -o json` is an array of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentView {
    pub id: u64,
    pub monitor_id: Option<u64>,
    pub title: String,
    /// `triggered`, `acknowledged` or `resolved`.
    pub state: String,
    pub severity: String,
    pub assignee: Option<String>,
    pub opened_at: String,
    pub acknowledged_at: Option<String>,
    pub resolved_at: Option<String>,
    pub opened_at_ms: u64,
    pub resolved_at_ms: Option<u64>,
    pub timeline: Vec<TimelineView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineView {
    pub at: String,
    pub by: String,
    pub kind: String,
    pub text: String,
}

impl From<&uptime_raft_store::Incident> for IncidentView {
    fn from(i: &uptime_raft_store::Incident) -> Self {
        IncidentView {
            id: i.id,
            monitor_id: i.monitor_id,
            title: i.title.clone(),
            state: i.state.as_str().into(),
            severity: i.severity.as_str().into(),
            assignee: i.assignee.clone(),
            opened_at: rfc3339(i.opened_at_ms),
            acknowledged_at: i.acknowledged_at_ms.map(rfc3339),
            resolved_at: i.resolved_at_ms.map(rfc3339),
            opened_at_ms: i.opened_at_ms,
            resolved_at_ms: i.resolved_at_ms,
            timeline: i
                .timeline
                .iter()
                .map(|e| TimelineView {
                    at: rfc3339(e.at_ms),
                    by: e.by.clone(),
                    kind: e.kind.clone(),
                    text: e.text.clone(),
                })
                .collect(),
        }
    }
}

/// `POST /api/v1/incidents`: declare one by hand.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclareIncident {
    pub title: String,
    /// critical (default), major, minor or info.
    #[serde(default)]
    pub severity: Option<String>,
    /// A monitor id or name, if the incident is about one.
    #[serde(default)]
    pub monitor: Option<String>,
}

/// The body of incident actions; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentAction {
    /// A note's text.
    #[serde(default)]
    pub text: Option<String>,
    /// For assign: a user name, or null to unassign.
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
}

/// A maintenance window as the API shows and takes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceView {
    #[serde(default)]
    pub id: u64,
    pub name: String,
    /// Monitor ids or names; empty = every monitor.
    #[serde(default)]
    pub monitors: Vec<String>,
    /// One-off: RFC 3339 start and end.
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    /// Recurring: an IANA time zone, a local start time "HH:MM", a duration, and
    /// optional weekdays (mon..sun; empty = every day).
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// Whether it covers the state clock now (output only).
    #[serde(default)]
    pub active: bool,
}
