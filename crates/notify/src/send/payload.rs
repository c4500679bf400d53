//! The request each HTTP service expects, built from the rendered text and
//! the alert. No I/O here.

use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use serde_json::{json, Value};

use super::{signature, truncate, SendError};
use crate::alert::{Alert, AlertKind};
use crate::render::Rendered;
use crate::spec::Header;

/// One POST, before the headers every request carries.
pub(crate) struct Request {
    pub url: String,
    pub content_type: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

const JSON: &str = "application/json";

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), SendError> {
    let refused = || SendError {
        message: format!("header {name} has a value HTTP cannot carry"),
        retryable: false,
        status: None,
    };
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| refused())?;
    let value = HeaderValue::from_str(value).map_err(|_| refused())?;
    Ok((name, value))
}

/// The rendered body as is (the default is the JSON document), the spec's
/// headers, and a signature when the channel has a secret.
pub(crate) fn webhook(
    url: &str,
    headers: &[Header],
    secret: Option<&str>,
    body: String,
    now_unix: u64,
) -> Result<Request, SendError> {
    let mut out = headers.iter().map(|h| header(&h.name, &h.value)).collect::<Result<Vec<_>, _>>()?;
    if let Some(secret) = secret {
        let timestamp = now_unix.to_string();
        out.push(header(signature::TIMESTAMP_HEADER, &timestamp)?);
        out.push(header(signature::SIGNATURE_HEADER, &signature::sign(secret, &timestamp, body.as_bytes()))?);
    }
    Ok(Request { url: url.to_string(), content_type: JSON, headers: out, body: body.into_bytes() })
}

/// Slack's section text holds at most 3000 characters.
const SLACK_SECTION: usize = 3000;

/// An incoming-webhook message: `text` is the notification's fallback line,
/// the section block the message.
pub(crate) fn slack(url: &str, rendered: &Rendered) -> Result<Request, SendError> {
    let body = json!({
        "text": rendered.subject,
        "blocks": [{
            "type": "section",
            "text": { "type": "mrkdwn", "text": truncate_chars(&rendered.body, SLACK_SECTION) },
        }],
    });
    Ok(Request { url: url.to_string(), content_type: JSON, headers: Vec::new(), body: body.to_string().into_bytes() })
}

/// Discord's limits: content 2000 characters, embed title 256, description 4096.
const DISCORD_CONTENT: usize = 2000;
const DISCORD_TITLE: usize = 256;
const DISCORD_DESCRIPTION: usize = 4096;

/// Red, green, orange, blue.
fn discord_colour(kind: AlertKind) -> u32 {
    match kind {
        AlertKind::Open => 0xE7_4C_3C,
        AlertKind::Resolve => 0x2E_CC_71,
        AlertKind::Reminder => 0xE6_7E_22,
        AlertKind::Test => 0x34_98_DB,
    }
}

/// `content` is the headline (what a phone's notification shows), the embed
/// the details. Mentions are switched off: an error text quoting `@everyone`
/// must not ping a server.
pub(crate) fn discord(url: &str, rendered: &Rendered, alert: &Alert) -> Result<Request, SendError> {
    let body = json!({
        "content": truncate_chars(&rendered.subject, DISCORD_CONTENT),
        "embeds": [{
            "title": truncate_chars(&alert.title, DISCORD_TITLE),
            "description": truncate_chars(&rendered.body, DISCORD_DESCRIPTION),
            "color": discord_colour(alert.kind),
        }],
        "allowed_mentions": { "parse": [] },
    });
    Ok(Request { url: url.to_string(), content_type: JSON, headers: Vec::new(), body: body.to_string().into_bytes() })
}

/// Events API v2 caps the summary at 1024 characters.
const PAGERDUTY_SUMMARY: usize = 1024;

/// Our severities onto PagerDuty's four.
fn pagerduty_severity(severity: &str) -> &'static str {
    match severity {
        "critical" => "critical",
        "minor" => "warning",
        "info" => "info",
        // "major", and anything newer than this code.
        _ => "error",
    }
}

/// The incident id deduplicates: every trigger of one incident (open,
/// reminders) folds into one PagerDuty alert, and the resolve closes it. A
/// test has no incident, so it gets its own key.
pub(crate) fn pagerduty_dedup_key(alert: &Alert) -> String {
    match alert.kind {
        AlertKind::Test => format!("test-{}", alert.notification_id),
        _ => alert.incident_id.to_string(),
    }
}

pub(crate) fn pagerduty(
    url: &str,
    routing_key: &str,
    rendered: &Rendered,
    alert: &Alert,
) -> Result<Request, SendError> {
    let dedup_key = pagerduty_dedup_key(alert);
    let body = if alert.kind == AlertKind::Resolve {
        json!({ "routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key })
    } else {
        let source = alert.monitor.as_ref().map_or("uptime-cluster", |m| m.target.as_str());
        let mut event = json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "client": "uptime-cluster",
            "payload": {
                "summary": truncate_chars(&rendered.subject, PAGERDUTY_SUMMARY),
                "source": source,
                "severity": pagerduty_severity(&alert.severity),
                "timestamp": alert.at,
                "class": alert.cause,
                "custom_details": {
                    "text": rendered.body,
                    "kind": alert.kind,
                    "incident_id": alert.incident_id,
                    "notification_id": alert.notification_id,
                    "state": alert.state,
                    "verdict": alert.verdict,
                    "error": alert.error,
                    "monitor": alert.monitor,
                    "nodes": alert.nodes,
                    "opened_at": alert.opened_at,
                },
            },
        });
        if let Some(m) = &alert.monitor {
            event["payload"]["component"] = Value::from(m.name.as_str());
        }
        if !alert.status_url.is_empty() {
            event["client_url"] = Value::from(alert.status_url.as_str());
        }
        event
    };
    Ok(Request { url: url.to_string(), content_type: JSON, headers: Vec::new(), body: body.to_string().into_bytes() })
}

/// ntfy turns a body past 4096 bytes into an attachment; stay a message.
const NTFY_MESSAGE: usize = 4096;

/// ntfy's priority: the channel's if set, else by severity for alerts that
/// want attention, and the default (3) for a resolve or a test.
fn ntfy_priority(priority: Option<u8>, alert: &Alert) -> u8 {
    if let Some(p) = priority {
        return p;
    }
    match (alert.kind, alert.severity.as_str()) {
        (AlertKind::Resolve | AlertKind::Test, _) => 3,
        (_, "critical") => 5,
        (_, "major") => 4,
        (_, "info") => 2,
        _ => 3,
    }
}

fn ntfy_tags(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Open => "rotating_light",
        AlertKind::Resolve => "white_check_mark",
        AlertKind::Reminder => "warning",
        AlertKind::Test => "test_tube",
    }
}

/// A plain publish to the topic URL: the message in the body, the rest in
/// headers. A title that is not ASCII is sent as RFC 2047 encoded words,
/// which ntfy decodes (HTTP header values are not UTF-8).
pub(crate) fn ntfy(
    url: &str,
    token: Option<&str>,
    priority: Option<u8>,
    rendered: &Rendered,
    alert: &Alert,
) -> Result<Request, SendError> {
    let mut headers = vec![
        header("Title", &encode_word(&rendered.subject))?,
        header("Priority", &ntfy_priority(priority, alert).to_string())?,
        header("Tags", ntfy_tags(alert.kind))?,
    ];
    if alert.status_url.starts_with("http") && HeaderValue::from_str(&alert.status_url).is_ok() {
        headers.push(header("Click", &alert.status_url)?);
    }
    if let Some(token) = token {
        headers.push(header("Authorization", &format!("Bearer {token}"))?);
    }
    Ok(Request {
        url: url.to_string(),
        content_type: "text/plain; charset=utf-8",
        headers,
        body: truncate(&rendered.body, NTFY_MESSAGE).as_bytes().to_vec(),
    })
}

/// RFC 2047 `B` encoding when `s` is not printable ASCII. Each encoded word
/// stays within the RFC's 75 characters: 45 bytes of UTF-8 (never split
/// inside a character) make 60 of base64.
pub(crate) fn encode_word(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) && !s.contains("=?") {
        return s.to_string();
    }
    let mut words = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let mut chunk = truncate(rest, 45);
        if chunk.is_empty() {
            // A single character is at most 4 bytes, so this only guards the loop.
            chunk = &rest[..rest.chars().next().map_or(rest.len(), char::len_utf8)];
        }
        words.push(format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(chunk)));
        rest = &rest[chunk.len()..];
    }
    words.join(" ")
}

/// At most `max` characters (the services count characters, not bytes), with
/// an ellipsis when cut.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_round_trip_and_stay_short() {
        assert_eq!(encode_word("web is down"), "web is down");
        let title = "[DOWN] café — «web» ".repeat(5);
        let encoded = encode_word(&title);
        let mut decoded = Vec::new();
        for word in encoded.split(' ') {
            assert!(word.len() <= 75, "{word}");
            let b64 = word.strip_prefix("=?UTF-8?B?").and_then(|w| w.strip_suffix("?=")).unwrap();
            decoded.extend(base64::engine::general_purpose::STANDARD.decode(b64).unwrap());
        }
        assert_eq!(String::from_utf8(decoded).unwrap(), title);
        assert!(encoded.is_ascii());
    }

    #[test]
    fn severities_map_onto_pagerduty() {
        let table = [("critical", "critical"), ("major", "error"), ("minor", "warning"), ("info", "info")];
        for (ours, theirs) in table {
            assert_eq!(pagerduty_severity(ours), theirs);
        }
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("ééé", 3), "ééé");
        assert_eq!(truncate_chars("éééé", 3), "éé…");
    }
}
