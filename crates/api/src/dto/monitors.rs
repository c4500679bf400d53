//! Monitors: what is sent to create one, what reads show, the per-node view and history.

use super::*;

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
    /// Channels notified besides the cluster's default channels.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Whether the cluster's default channels are notified too (default true).
    #[serde(default)]
    pub default_channels: Option<bool>,
    /// UNKNOWN (no node reports a check it ran) for this long opens a
    /// "no data" incident ("10m", the default); "0s" = never.
    #[serde(default)]
    pub no_data_after: Option<String>,
    /// Severity of that incident: critical, major, minor (default) or info.
    #[serde(default)]
    pub no_data_severity: Option<String>,
    /// Whether a DEGRADED verdict opens an incident too (default false).
    #[serde(default)]
    pub alert_on_degraded: Option<bool>,
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
    /// `up`, `down`, `degraded`, `unknown` (no node reports a check it ran),
    /// `maintenance` or `paused`.
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
    pub default_channels: bool,
    /// 0 = no "no data" incidents.
    pub no_data_after_s: f64,
    pub no_data_severity: String,
    pub alert_on_degraded: bool,
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
            default_channels: p.default_channels,
            no_data_after_s: p.no_data_after_ms as f64 / 1000.0,
            no_data_severity: p.no_data_severity.as_str().into(),
            alert_on_degraded: p.alert_on_degraded,
            created_at_ms: m.created_at_ms,
            updated_at_ms: m.updated_at_ms,
            check: serde_json::to_value(&m.check).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// One node's latest report on a monitor (`GET /api/v1/monitors/{id}/nodes`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub node_id: u64,
    /// `up`, `down`, `degraded`, or `not_checked`: the node could not run the
    /// check (`last_error` says why) and does not vote.
    pub status: String,
    /// Consecutive results with this same status.
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
