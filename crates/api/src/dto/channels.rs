//! Notification channels and the deliveries of notifications.

use super::*;

/// A channel as the API takes it (create and replace) and shows it. One flat
/// shape for every kind; the fields a kind does not use stay absent. On every
/// read, secrets (webhook secret and credential headers, SMTP password,
/// PagerDuty routing key, ntfy token, the path of Slack and Discord webhook
/// URLs) read as `<redacted>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    pub name: String,
    /// `webhook`, `smtp`, `slack`, `discord`, `pagerduty` or `ntfy`.
    pub kind: String,
    /// Notified for every monitor that does not opt out of default channels.
    #[serde(default)]
    pub default: bool,
    /// webhook, slack, discord, pagerduty (optional), ntfy (the topic URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// webhook: extra request headers.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    /// webhook: signs each body (HMAC-SHA256, docs/alerting.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// smtp
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// smtp: `starttls` (default), `tls` or `plain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// pagerduty: the integration's routing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// ntfy: access token, and priority 1 to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Templates (docs/alerting.md); absent = the kind's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Output only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub updated_at: String,
    /// Monitors that name the channel (output only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}

/// What `POST /api/v1/channels/{name}/test` answers: the outcome of one real
/// send of a synthetic alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTestView {
    pub channel: String,
    pub ok: bool,
    /// The receiver's HTTP status, when it answered over HTTP.
    pub status: Option<u16>,
    /// What the receiver said, or why it failed (secrets scrubbed).
    pub detail: String,
    pub took_ms: u64,
}

/// A notification record and its delivery attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationView {
    pub id: u64,
    pub incident_id: u64,
    pub channel: Option<String>,
    /// `open`, `resolve`, `reminder`.
    pub kind: String,
    /// `pending`, `claimed`, `sent`, `failed` (will be retried), `dead`.
    pub state: String,
    pub created_at: String,
    /// Failed: when the next attempt is due.
    pub next_attempt_at: Option<String>,
    pub attempts: u32,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    pub attempt: u32,
    pub at: String,
    /// `sent`, `failed`, `abandoned`, `undeliverable`, `interrupted`, `deferred`.
    pub outcome: String,
    pub status: Option<u16>,
    pub error: String,
    /// The claim the attempt ran under: `<term>-<node>-<index>`, as sent in
    /// `X-Uptime-Fencing-Token`.
    pub fencing_token: String,
    pub took_ms: u64,
}

impl NotificationView {
    pub fn new(n: &uptime_raft_store::Notification, deliveries: &[uptime_raft_store::Delivery]) -> NotificationView {
        let next_attempt_at = match n.state {
            uptime_raft_store::NotificationState::Failed { next_at_ms, .. } => Some(rfc3339(next_at_ms)),
            _ => None,
        };
        NotificationView {
            id: n.id,
            incident_id: n.incident_id,
            channel: n.channel.clone(),
            kind: n.kind.as_str().into(),
            state: n.state.as_str().into(),
            created_at: rfc3339(n.created_at_ms),
            next_attempt_at,
            attempts: u32::try_from(deliveries.len()).unwrap_or(u32::MAX),
            deliveries: deliveries
                .iter()
                .map(|d| DeliveryView {
                    attempt: d.attempt,
                    at: rfc3339(d.at_ms),
                    outcome: d.outcome.as_str().into(),
                    status: d.status,
                    error: d.error.clone(),
                    fencing_token: format!("{}-{}-{}", d.term, d.node_id, d.index),
                    took_ms: d.took_ms,
                })
                .collect(),
        }
    }
}
