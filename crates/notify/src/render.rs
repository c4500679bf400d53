//! What a notification says: a channel's subject and body templates rendered
//! against an [`Alert`].
//!
//! Templates are [minijinja] (Jinja2 syntax). Undefined variables are errors,
//! not empty strings, so a typo such as `{{ monitor.nmae }}` is refused when
//! the channel is written ([`check_templates`]) rather than sent as a blank.
//! Output is not escaped, except in Slack's channel where every interpolated
//! value has `&`, `<` and `>` escaped as Slack's mrkdwn requires (the
//! template's own text is left alone, so `<{{ status_url }}|status page>`
//! still makes a link).
//!
//! # Variables
//!
//! The serde fields of [`Alert`]:
//!
//! | variable | value |
//! | --- | --- |
//! | `kind` | `open`, `resolve`, `reminder` or `test` |
//! | `notification_id`, `incident_id` | integers (`incident_id` is 0 for a test) |
//! | `title` | the incident's title |
//! | `state` | `triggered`, `acknowledged` or `resolved` |
//! | `severity` | `critical`, `major`, `minor` or `info` |
//! | `cause` | `down`, `degraded`, `no_data` or `declared` |
//! | `monitor` | `none` for a declared incident, else `.id`, `.name`, `.kind` (`http`, `tcp`, …), `.target` |
//! | `verdict` | `up`, `down`, `degraded`, `unknown`, `maintenance` or `paused` |
//! | `nodes` | a list; each `.node_id`, `.status`, `.error` (may be empty), `.latency_ms` (may be `none`) |
//! | `error` | the first failing node's last error, empty when none |
//! | `opened_at`, `at` | RFC 3339 UTC times |
//! | `resolved_at`, `acknowledged_at` | RFC 3339 UTC times, or `none` |
//! | `status_url` | link to the status page, empty when unset |
//!
//! Optional values are `none`, so guard them: `{% if monitor %}{{ monitor.name }}{% endif %}`.
//! The builtin filters are available (`upper`, `replace`, `default`, `join`,
//! `tojson`, …); `tojson` is the way to put a value into a JSON webhook body.
//!
//! # Defaults
//!
//! Each kind has a subject and a body written for its medium: a one-line
//! subject such as `[DOWN] web (https://x) — incident #12`; a plain-text
//! email body; Slack mrkdwn; Discord markdown; a short ntfy message. A
//! webhook's default body is a JSON document: every variable above plus
//! `"version": 1` and `"text"`, the rendered subject.

mod defaults;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use crate::alert::{Alert, AlertKind, MonitorInfo, NodeView};
use crate::spec::{ChannelKind, ChannelSpec, Invalid};

/// A notification's text, ready for its channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The email subject; the title or headline elsewhere.
    pub subject: String,
    /// The message text; for a webhook, the request body.
    pub body: String,
}

/// The escaping mode that makes interpolated values safe inside Slack mrkdwn.
const SLACK_ESCAPE: &str = "slack";

/// Refuses a template that does not parse, or that fails when rendered
/// against a sample alert (an undefined variable, an unknown filter).
///
/// The sample has every optional value set, including `monitor`; a template
/// that reads `monitor.name` unguarded passes here and fails to render for a
/// declared incident, which has no monitor.
pub fn check_templates(spec: &ChannelSpec) -> Result<(), Invalid> {
    let env = environment(&spec.kind);
    let sample = Value::from(Serde(sample_alert()));
    for (field, source) in [("subject", &spec.subject), ("body", &spec.body)] {
        let Some(source) = source else { continue };
        let template = env.template_from_str(source).map_err(|e| template_error(field, &e))?;
        template.render(&sample).map_err(|e| template_error(field, &e))?;
    }
    Ok(())
}

/// Renders the spec's templates (or its kind's defaults) for one alert.
pub fn render(spec: &ChannelSpec, alert: &Alert) -> Result<Rendered, Invalid> {
    let env = environment(&spec.kind);
    let ctx = Value::from(Serde(alert));
    let (default_subject, default_body) = defaults::templates(&spec.kind);
    let subject = render_one(&env, "subject", spec.subject.as_deref().unwrap_or(default_subject), &ctx)?;
    // The subject is one line everywhere it is used (a mail header, an HTTP header, a title).
    let subject = subject.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    let body = match (&spec.body, &spec.kind) {
        (Some(source), _) => render_one(&env, "body", source, &ctx)?,
        (None, ChannelKind::Webhook { .. }) => webhook_document(alert, &subject),
        (None, _) => render_one(&env, "body", default_body, &ctx)?.trim_end().to_string(),
    };
    Ok(Rendered { subject, body })
}

fn render_one(env: &Environment<'_>, field: &str, source: &str, ctx: &Value) -> Result<String, Invalid> {
    env.render_str(source, ctx).map_err(|e| template_error(field, &e))
}

fn template_error(field: &str, e: &minijinja::Error) -> Invalid {
    Invalid { field: field.to_string(), message: format!("template: {e}") }
}

/// A fresh environment per call: templates come from specs, are short, and
/// are rendered once per notification, so caching compiled ones buys nothing.
fn environment(kind: &ChannelKind) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    if matches!(kind, ChannelKind::Slack { .. }) {
        env.set_auto_escape_callback(|_| AutoEscape::Custom(SLACK_ESCAPE.into()));
        env.set_formatter(|out, state, value| {
            if matches!(state.auto_escape(), AutoEscape::Custom(name) if name == SLACK_ESCAPE) && !value.is_safe() {
                out.write_str(&escape_slack(&value.to_string()))?;
                Ok(())
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
    } else {
        env.set_auto_escape_callback(|_| AutoEscape::None);
    }
    env
}

/// Slack's mrkdwn treats `<…>` as links and mentions and `&` as an entity.
fn escape_slack(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The default webhook body: the alert's fields, a version for receivers to
/// branch on, and a human line (`text`, which chat tools that accept
/// Slack-style webhooks display).
fn webhook_document(alert: &Alert, subject: &str) -> String {
    let mut doc = match serde_json::to_value(alert) {
        Ok(serde_json::Value::Object(map)) => map,
        // Alert is a plain struct: it always serialises to an object.
        _ => serde_json::Map::new(),
    };
    doc.insert("version".into(), 1.into());
    doc.insert("text".into(), subject.into());
    serde_json::Value::Object(doc).to_string()
}

/// Every optional field set, so a template that only works with one of them
/// unset (or set) still renders once at check time.
fn sample_alert() -> Alert {
    Alert {
        kind: AlertKind::Open,
        notification_id: 1,
        incident_id: 1,
        title: "web is down".into(),
        state: "triggered".into(),
        severity: "critical".into(),
        cause: "down".into(),
        monitor: Some(MonitorInfo {
            id: 1,
            name: "web".into(),
            kind: "http".into(),
            target: "https://example.com/".into(),
        }),
        verdict: "down".into(),
        nodes: vec![NodeView {
            node_id: 1,
            status: "down".into(),
            error: "connection refused".into(),
            latency_ms: Some(12),
        }],
        error: "connection refused".into(),
        opened_at: "2024-01-01T00:00:00Z".into(),
        resolved_at: Some("2024-01-01T00:05:00Z".into()),
        acknowledged_at: Some("2024-01-01T00:01:00Z".into()),
        at: "2024-01-01T00:00:00Z".into(),
        status_url: "https://status.example.com/".into(),
    }
}
