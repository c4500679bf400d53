//! Notification channels, their test sends, and the outbox's records.

use std::collections::BTreeMap;

use uptime_notify::{ChannelKind, ChannelSpec, Header, SmtpSecurity, PAGERDUTY_EVENTS_URL};
use uptime_raft_store::{Channel, NotificationState};

use super::*;
use crate::dto::{ChannelTestView, ChannelView, NotificationView};

fn required(field: &str, v: Option<String>) -> Result<String, ApiError> {
    v.filter(|s| !s.trim().is_empty()).ok_or_else(|| ApiError::invalid(field, "required for this kind of channel"))
}

/// Fields a kind does not take are refused, so a typo'd kind or a stray
/// `--secret` on a Slack channel is not silently ignored.
fn refuse_unused(body: &ChannelView, allowed: &[&str]) -> Result<(), ApiError> {
    let present = [
        ("url", body.url.is_some()),
        ("headers", !body.headers.is_empty()),
        ("secret", body.secret.is_some()),
        ("host", body.host.is_some()),
        ("port", body.port.is_some()),
        ("security", body.security.is_some()),
        ("username", body.username.is_some()),
        ("password", body.password.is_some()),
        ("from", body.from.is_some()),
        ("to", !body.to.is_empty()),
        ("routing_key", body.routing_key.is_some()),
        ("token", body.token.is_some()),
        ("priority", body.priority.is_some()),
    ];
    for (field, set) in present {
        if set && !allowed.contains(&field) {
            return Err(ApiError::invalid(field, format!("a {} channel does not take {field}", body.kind)));
        }
    }
    Ok(())
}

/// The stored spec an API body describes.
pub(crate) fn spec_of(body: &ChannelView) -> Result<ChannelSpec, ApiError> {
    let b = body.clone();
    let kind = match b.kind.as_str() {
        "webhook" => {
            refuse_unused(body, &["url", "headers", "secret"])?;
            ChannelKind::Webhook {
                url: required("url", b.url)?,
                headers: b.headers.into_iter().map(|(name, value)| Header { name, value }).collect(),
                secret: b.secret,
            }
        }
        "smtp" => {
            refuse_unused(body, &["host", "port", "security", "username", "password", "from", "to"])?;
            let security = match b.security.as_deref() {
                None => SmtpSecurity::StartTls,
                Some(s) => SmtpSecurity::parse(s)
                    .ok_or_else(|| ApiError::invalid("security", format!("{s:?}: expected starttls, tls or plain")))?,
            };
            ChannelKind::Smtp {
                host: required("host", b.host)?,
                port: b.port.unwrap_or(security.default_port()),
                security,
                username: b.username,
                password: b.password,
                from: required("from", b.from)?,
                to: b.to,
            }
        }
        "slack" => {
            refuse_unused(body, &["url"])?;
            ChannelKind::Slack { url: required("url", b.url)? }
        }
        "discord" => {
            refuse_unused(body, &["url"])?;
            ChannelKind::Discord { url: required("url", b.url)? }
        }
        "pagerduty" => {
            refuse_unused(body, &["url", "routing_key"])?;
            ChannelKind::PagerDuty {
                routing_key: required("routing_key", b.routing_key)?,
                url: b.url.unwrap_or_else(|| PAGERDUTY_EVENTS_URL.to_string()),
            }
        }
        "ntfy" => {
            refuse_unused(body, &["url", "token", "priority"])?;
            ChannelKind::Ntfy { url: required("url", b.url)?, token: b.token, priority: b.priority }
        }
        other => {
            return Err(ApiError::invalid(
                "kind",
                format!("{other:?}: expected webhook, smtp, slack, discord, pagerduty or ntfy"),
            ))
        }
    };
    let spec = ChannelSpec { kind, subject: b.subject, body: b.body };
    spec.validate().map_err(|e| ApiError::invalid(e.field, e.message))?;
    uptime_notify::check_templates(&spec).map_err(|e| ApiError::invalid(e.field, e.message))?;
    Ok(spec)
}

/// A stored channel as every read path shows it: secrets redacted.
pub(crate) fn channel_view(c: &Channel, used_by: Vec<String>) -> ChannelView {
    let spec = c.spec.redacted();
    let mut v = ChannelView {
        name: c.name.clone(),
        kind: spec.kind.name().into(),
        default: c.default,
        subject: spec.subject,
        body: spec.body,
        created_at: rfc3339(c.created_at_ms),
        updated_at: rfc3339(c.updated_at_ms),
        used_by,
        ..Default::default()
    };
    match spec.kind {
        ChannelKind::Webhook { url, headers, secret } => {
            v.url = Some(url);
            v.headers = headers.into_iter().map(|h| (h.name, h.value)).collect::<BTreeMap<_, _>>();
            v.secret = secret;
        }
        ChannelKind::Smtp { host, port, security, username, password, from, to } => {
            v.host = Some(host);
            v.port = Some(port);
            v.security = Some(security.as_str().into());
            v.username = username;
            v.password = password;
            v.from = Some(from);
            v.to = to;
        }
        ChannelKind::Slack { url } | ChannelKind::Discord { url } => v.url = Some(url),
        ChannelKind::PagerDuty { routing_key, url } => {
            v.routing_key = Some(routing_key);
            v.url = Some(url);
        }
        ChannelKind::Ntfy { url, token, priority } => {
            v.url = Some(url);
            v.token = token;
            v.priority = priority;
        }
    }
    v
}

fn users_of(monitors: &[Monitor], name: &str) -> Vec<String> {
    monitors.iter().filter(|m| m.policy.channels.iter().any(|c| c == name)).map(|m| m.name.clone()).collect()
}

pub async fn list_channels(cluster: &Cluster) -> Result<Vec<ChannelView>, ApiError> {
    cluster.read_own_writes().await;
    let monitors = cluster.reader().list_monitors()?;
    Ok(cluster.reader().list_channels()?.iter().map(|c| channel_view(c, users_of(&monitors, &c.name))).collect())
}

fn channel_name(name: &str) -> Result<(), ApiError> {
    uptime_raft_store::channel_name(name).map_err(ApiError::from)
}

pub async fn get_channel(cluster: &Cluster, name: &str) -> Result<ChannelView, ApiError> {
    cluster.read_own_writes().await;
    channel_name(name)?;
    let Some(c) = cluster.reader().get_channel(name)? else {
        return Err(ApiError::not_found(format!("no channel named {name:?}")));
    };
    let monitors = cluster.reader().list_monitors()?;
    Ok(channel_view(&c, users_of(&monitors, name)))
}

/// Creates a channel (`replace` false: refused if the name exists) or replaces
/// one. A replace may leave a secret out (or send it back as `<redacted>`) to
/// keep the stored one, so a GET → edit → PUT round trip keeps its secrets.
pub async fn put_channel(cluster: &Cluster, mut body: ChannelView, replace: bool) -> Result<ChannelView, ApiError> {
    channel_name(&body.name)?;
    if replace {
        if let Some(old) = cluster.reader().get_channel(&body.name)? {
            keep_secrets(&mut body, &old.spec);
        }
    }
    let spec = spec_of(&body)?;
    let cmd = Command::PutChannel { name: body.name.clone(), spec, default: body.default, create: !replace };
    match cluster.write(cmd).await? {
        Response::Channel(c) => Ok(channel_view(&c, users_of(&cluster.reader().list_monitors()?, &c.name))),
        other => Err(ApiError::internal(format!("unexpected answer from apply: {other:?}"))),
    }
}

fn keep_secrets(body: &mut ChannelView, old: &ChannelSpec) {
    let redacted = |v: &Option<String>| v.as_deref().is_none_or(|s| s == uptime_notify::REDACTED);
    match &old.kind {
        ChannelKind::Webhook { url, headers, secret } => {
            if body.secret.as_deref() == Some(uptime_notify::REDACTED) {
                body.secret = secret.clone();
            }
            if body.url.as_deref().is_some_and(|u| u.contains(uptime_notify::REDACTED)) {
                body.url = Some(url.clone());
            }
            for (name, value) in body.headers.iter_mut() {
                if value == uptime_notify::REDACTED {
                    if let Some(h) = headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)) {
                        value.clone_from(&h.value);
                    }
                }
            }
        }
        ChannelKind::Smtp { password, .. } => {
            if body.password.as_deref() == Some(uptime_notify::REDACTED) {
                body.password = password.clone();
            }
        }
        ChannelKind::Slack { url } | ChannelKind::Discord { url } => {
            if body.url.as_deref().is_none_or(|u| u.contains(uptime_notify::REDACTED)) {
                body.url = Some(url.clone());
            }
        }
        ChannelKind::PagerDuty { routing_key, .. } => {
            if redacted(&body.routing_key) {
                body.routing_key = Some(routing_key.clone());
            }
        }
        ChannelKind::Ntfy { token, .. } => {
            if body.token.as_deref() == Some(uptime_notify::REDACTED) {
                body.token = token.clone();
            }
        }
    }
}

pub async fn delete_channel(cluster: &Cluster, name: &str) -> Result<(), ApiError> {
    channel_name(name)?;
    cluster.write(Command::DeleteChannel { name: name.to_string() }).await?;
    Ok(())
}

/// Sends a synthetic alert through the real channel from this node, outside
/// the outbox (nothing is stored) and outside the fence (it is no alert).
pub async fn test_channel(cluster: &Cluster, name: &str) -> Result<ChannelTestView, ApiError> {
    cluster.read_own_writes().await;
    channel_name(name)?;
    let Some(c) = cluster.reader().get_channel(name)? else {
        return Err(ApiError::not_found(format!("no channel named {name:?}")));
    };
    let now = cluster.reader().clock_ms()?;
    let alert = crate::alerts::test_alert(cluster.reader(), now);
    // Test sends get their own key space, so a receiver that deduplicates
    // never mistakes one for a real notification.
    let mut fencing = uptime_notify::Fencing::new(0, 0, cluster.node_id(), 0);
    fencing.idempotency_key = format!("test-{}-{now}", cluster.node_id());
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(15), crate::alerts::deliver(&c.spec, &alert, &fencing)).await;
    let took_ms = started.elapsed().as_millis() as u64;
    Ok(match result {
        Ok(Ok(d)) => ChannelTestView { channel: c.name, ok: true, status: d.status, detail: d.detail, took_ms },
        Ok(Err(e)) => ChannelTestView { channel: c.name, ok: false, status: e.status, detail: e.message, took_ms },
        Err(_) => {
            ChannelTestView { channel: c.name, ok: false, status: None, detail: "no answer within 15s".into(), took_ms }
        }
    })
}

fn notification_views(
    cluster: &Cluster,
    ns: Vec<uptime_raft_store::Notification>,
) -> Result<Vec<NotificationView>, ApiError> {
    ns.iter().map(|n| Ok(NotificationView::new(n, &cluster.reader().deliveries(n.id)?))).collect()
}

/// `GET /api/v1/incidents/{id}/deliveries`
pub async fn incident_deliveries(cluster: &Cluster, id: &str) -> Result<Vec<NotificationView>, ApiError> {
    cluster.read_own_writes().await;
    let id = incident_id(id)?;
    if cluster.reader().get_incident(id)?.is_none() {
        return Err(ApiError::not_found(format!("no incident {id}")));
    }
    notification_views(cluster, cluster.reader().incident_notifications(id)?)
}

/// `GET /api/v1/outbox[?state=pending|claimed|sent|failed|dead|due]`: newest first.
pub async fn list_outbox(cluster: &Cluster, state: Option<&str>) -> Result<Vec<NotificationView>, ApiError> {
    cluster.read_own_writes().await;
    let keep = |s: &NotificationState| match state {
        None | Some("all") => Ok(true),
        Some("due") => Ok(!s.is_final()),
        Some(want @ ("pending" | "claimed" | "sent" | "failed" | "dead")) => Ok(s.as_str() == want),
        Some(other) => Err(ApiError::invalid(
            "state",
            format!("{other:?}: expected pending, claimed, sent, failed, dead, due or all"),
        )),
    };
    let mut out = Vec::new();
    for n in cluster.reader().outbox()?.into_iter().rev() {
        if keep(&n.state)? {
            out.push(n);
        }
    }
    notification_views(cluster, out)
}
