//! What a notification says, built from the replicated state when it is sent,
//! and the one HTTP/SMTP sender this node delivers through.

use std::sync::OnceLock;

use uptime_notify::{Alert, AlertKind, ChannelSpec, Delivered, Fencing, MonitorInfo, NodeView, SendError, Sender};
use uptime_raft_store::{Notification, NotificationKind, StateReader};

use crate::dto::rfc3339;

/// The cluster setting holding the status page's public URL, which alerts link to.
pub const STATUS_URL_SETTING: &str = "status_url";

/// The node's sender: one connection pool and TLS configuration for every channel.
pub fn sender() -> &'static Sender {
    static SENDER: OnceLock<Sender> = OnceLock::new();
    SENDER.get_or_init(Sender::new)
}

pub async fn deliver(spec: &ChannelSpec, alert: &Alert, fencing: &Fencing) -> Result<Delivered, SendError> {
    uptime_notify::deliver(spec, alert, fencing, sender()).await
}

fn kind(k: NotificationKind) -> AlertKind {
    match k {
        NotificationKind::Open => AlertKind::Open,
        NotificationKind::Resolve => AlertKind::Resolve,
        NotificationKind::Reminder => AlertKind::Reminder,
    }
}

/// The alert for notification `n`, from the state as it is now (the incident's
/// times and state, the monitor's nodes); None when its incident is gone.
pub fn alert_for(reader: &StateReader, n: &Notification) -> Result<Option<Alert>, uptime_raft_store::Error> {
    let Some(inc) = reader.get_incident(n.incident_id)? else { return Ok(None) };
    let monitor = match inc.monitor_id {
        Some(id) => reader.get_monitor(id)?,
        None => None,
    };
    let (verdict, nodes) = match &monitor {
        Some(m) => {
            let verdict = reader.verdict(m.id)?.state.as_str().to_string();
            let nodes = reader
                .observations(m.id)?
                .into_iter()
                .map(|(node_id, o)| NodeView {
                    node_id,
                    status: o.status.as_str().into(),
                    error: o.last_error,
                    latency_ms: (o.latency_us > 0).then_some(o.latency_us / 1000),
                })
                .collect::<Vec<_>>();
            (verdict, nodes)
        }
        None => (String::new(), Vec::new()),
    };
    let error = nodes.iter().find(|v| !v.error.is_empty()).map(|v| v.error.clone()).unwrap_or_default();
    Ok(Some(Alert {
        kind: kind(n.kind),
        notification_id: n.id,
        incident_id: inc.id,
        title: inc.title.clone(),
        state: inc.state.as_str().into(),
        severity: inc.severity.as_str().into(),
        cause: inc.cause.as_str().into(),
        monitor: monitor.as_ref().map(|m| MonitorInfo {
            id: m.id,
            name: m.name.clone(),
            kind: m.check.kind().to_string(),
            target: m.check.target(),
        }),
        verdict,
        nodes,
        error,
        opened_at: rfc3339(inc.opened_at_ms),
        resolved_at: inc.resolved_at_ms.map(rfc3339),
        acknowledged_at: inc.acknowledged_at_ms.map(rfc3339),
        at: rfc3339(n.created_at_ms),
        status_url: reader.setting(STATUS_URL_SETTING)?.unwrap_or_default(),
    }))
}

/// The synthetic alert `channel test` sends: plainly marked as a test.
pub fn test_alert(reader: &StateReader, now_ms: u64) -> Alert {
    Alert {
        kind: AlertKind::Test,
        notification_id: 0,
        incident_id: 0,
        title: "Test notification from uptime-cluster".into(),
        state: "triggered".into(),
        severity: "info".into(),
        cause: "declared".into(),
        monitor: Some(MonitorInfo {
            id: 0,
            name: "channel-test".into(),
            kind: "http".into(),
            target: "https://example.invalid/".into(),
        }),
        verdict: "down".into(),
        nodes: vec![NodeView { node_id: 1, status: "down".into(), error: "this is a test".into(), latency_ms: None }],
        error: "this is a test".into(),
        opened_at: rfc3339(now_ms),
        resolved_at: None,
        acknowledged_at: None,
        at: rfc3339(now_ms),
        status_url: reader.setting(STATUS_URL_SETTING).ok().flatten().unwrap_or_default(),
    }
}
