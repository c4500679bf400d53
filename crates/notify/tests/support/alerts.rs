use uptime_notify::{Alert, AlertKind, Fencing, MonitorInfo, NodeView};

/// An incident on monitor `web`, as the dispatcher would hand it over.
pub fn alert(kind: AlertKind) -> Alert {
    let resolved = kind == AlertKind::Resolve;
    Alert {
        kind,
        notification_id: 34,
        incident_id: if kind == AlertKind::Test { 0 } else { 12 },
        title: "web is down".into(),
        state: if resolved { "resolved" } else { "triggered" }.into(),
        severity: "critical".into(),
        cause: "down".into(),
        monitor: Some(MonitorInfo {
            id: 7,
            name: "web".into(),
            kind: "http".into(),
            target: "https://example.test/health".into(),
        }),
        verdict: if resolved { "up" } else { "down" }.into(),
        nodes: vec![
            NodeView { node_id: 1, status: "down".into(), error: "connection refused".into(), latency_ms: None },
            NodeView { node_id: 2, status: "down".into(), error: "connection refused".into(), latency_ms: Some(31) },
            NodeView { node_id: 3, status: "up".into(), error: String::new(), latency_ms: Some(12) },
        ],
        error: "connection refused".into(),
        opened_at: "2024-05-01T10:00:00Z".into(),
        resolved_at: resolved.then(|| "2024-05-01T10:07:00Z".to_string()),
        acknowledged_at: None,
        at: "2024-05-01T10:00:05Z".into(),
        status_url: "https://status.example.test/".into(),
    }
}

/// A declared incident: no monitor, no nodes.
pub fn declared(kind: AlertKind) -> Alert {
    Alert {
        title: "Payments degraded at the provider".into(),
        cause: "declared".into(),
        monitor: None,
        nodes: Vec::new(),
        error: String::new(),
        verdict: "unknown".into(),
        status_url: String::new(),
        ..alert(kind)
    }
}

pub fn fencing() -> Fencing {
    Fencing::new(34, 5, 2, 901)
}
