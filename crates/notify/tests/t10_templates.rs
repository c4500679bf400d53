//! Templates: every kind's defaults render for every alert kind, custom
//! templates see the documented variables, and mistakes are refused with
//! the field that holds them.

mod support;

use support::alerts::{alert, declared};
use uptime_notify::{check_templates, render, AlertKind, ChannelKind, ChannelSpec, SmtpSecurity, PAGERDUTY_EVENTS_URL};

const KINDS: [AlertKind; 4] = [AlertKind::Open, AlertKind::Resolve, AlertKind::Reminder, AlertKind::Test];

fn channels() -> Vec<ChannelKind> {
    vec![
        ChannelKind::Webhook { url: "https://hooks.example.test/in".into(), headers: vec![], secret: None },
        ChannelKind::Smtp {
            host: "mail.example.test".into(),
            port: 587,
            security: SmtpSecurity::StartTls,
            username: None,
            password: None,
            from: "uptime@example.test".into(),
            to: vec!["ops@example.test".into()],
        },
        ChannelKind::Slack { url: "https://hooks.slack.com/services/T0/B0/XYZ".into() },
        ChannelKind::Discord { url: "https://discord.com/api/webhooks/1/abc".into() },
        ChannelKind::PagerDuty { routing_key: "R0UTINGKEY".into(), url: PAGERDUTY_EVENTS_URL.into() },
        ChannelKind::Ntfy { url: "https://ntfy.sh/ops".into(), token: None, priority: None },
    ]
}

fn spec(kind: ChannelKind, subject: Option<&str>, body: Option<&str>) -> ChannelSpec {
    ChannelSpec { kind, subject: subject.map(str::to_string), body: body.map(str::to_string) }
}

#[test]
fn t10_defaults_render_for_every_kind_and_alert() {
    for channel in channels() {
        let s = spec(channel.clone(), None, None);
        check_templates(&s).unwrap();
        for kind in KINDS {
            for a in [alert(kind), declared(kind)] {
                let r = render(&s, &a).unwrap_or_else(|e| panic!("{} {kind:?}: {e:?}", channel.name()));
                let tag = match kind {
                    AlertKind::Open if a.monitor.is_some() => "[DOWN]",
                    AlertKind::Open => "[DECLARED]",
                    AlertKind::Resolve => "[RESOLVED]",
                    AlertKind::Reminder if a.monitor.is_some() => "[STILL DOWN]",
                    AlertKind::Reminder => "[STILL DECLARED]",
                    AlertKind::Test => "[TEST]",
                };
                assert!(r.subject.starts_with(tag), "{}: {}", channel.name(), r.subject);
                assert!(!r.subject.contains('\n'), "{}", r.subject);
                assert!(!r.body.trim().is_empty(), "{} {kind:?}", channel.name());
                if let ChannelKind::Webhook { .. } = channel {
                    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                    assert_eq!(doc["version"], 1);
                    assert_eq!(doc["kind"], kind.as_str());
                    assert_eq!(doc["text"], r.subject.as_str());
                }
            }
        }
    }
}

#[test]
fn t11_email_defaults_read_as_a_report() {
    let s = spec(channels().remove(1), None, None);
    let r = render(&s, &alert(AlertKind::Open)).unwrap();
    assert_eq!(r.subject, "[DOWN] web (https://example.test/health) — incident #12");
    for line in [
        "web is down",
        "Monitor:      web (http monitor #7)",
        "Target:       https://example.test/health",
        "State:        triggered (verdict: down)",
        "Severity:     critical",
        "Opened:       2024-05-01T10:00:00Z",
        "Error:        connection refused",
        "  node 1: down — connection refused",
        "  node 2: down, 31 ms — connection refused",
        "  node 3: up, 12 ms",
        "Status page: https://status.example.test/",
    ] {
        assert!(r.body.lines().any(|l| l == line), "no line {line:?} in\n{}", r.body);
    }
    assert!(!r.body.contains("Resolved:"), "{}", r.body);
    assert!(!r.body.contains("\n\n\n"), "{}", r.body);

    let resolved = render(&s, &alert(AlertKind::Resolve)).unwrap();
    assert_eq!(resolved.subject, "[RESOLVED] web (https://example.test/health) — incident #12");
    assert!(resolved.body.lines().any(|l| l == "Resolved:     2024-05-01T10:07:00Z"), "{}", resolved.body);

    let declared = render(&s, &declared(AlertKind::Open)).unwrap();
    assert_eq!(declared.subject, "[DECLARED] Payments degraded at the provider — incident #12");
    assert!(!declared.body.contains("Monitor:") && !declared.body.contains("Per node"), "{}", declared.body);
}

#[test]
fn t12_custom_templates_see_the_alert() {
    let s = spec(
        channels().remove(3),
        Some("{{ monitor.name|upper }} on {{ nodes|length }} nodes"),
        Some("{{ monitor.name }}: {% for n in nodes %}{{ n.node_id }}={{ n.status }} {% endfor %}"),
    );
    check_templates(&s).unwrap();
    let r = render(&s, &alert(AlertKind::Open)).unwrap();
    assert_eq!(r.subject, "WEB on 3 nodes");
    assert_eq!(r.body, "web: 1=down 2=down 3=up ");
}

#[test]
fn t13_a_webhook_body_template_replaces_the_document() {
    let s = spec(channels().remove(0), None, Some(r#"{"who": {{ monitor.name|tojson }}, "id": {{ incident_id }}}"#));
    let r = render(&s, &alert(AlertKind::Open)).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap(),
        serde_json::json!({"who": "web", "id": 12})
    );
}

#[test]
fn t14_mistakes_name_their_field() {
    let cases = [
        (None, Some("{{ nope }}"), "body"),
        (None, Some("{{ monitor.nmae }}"), "body"),
        (None, Some("{{ title|nosuchfilter }}"), "body"),
        (Some("{{ monitor.name "), None, "subject"),
        (Some("{% if kind %}open"), None, "subject"),
    ];
    for (subject, body, field) in cases {
        let s = spec(channels().remove(2), subject, body);
        let e = check_templates(&s).expect_err(&format!("{subject:?} {body:?} should be refused"));
        assert_eq!(e.field, field, "{e:?}");
        assert!(e.message.starts_with("template:"), "{e:?}");
    }
}

#[test]
fn t15_slack_escapes_values_but_not_the_template() {
    let mut a = alert(AlertKind::Open);
    a.error = "<b>bad</b> & worse".into();
    let r = render(&spec(channels().remove(2), None, None), &a).unwrap();
    assert!(r.body.contains("&lt;b&gt;bad&lt;/b&gt; &amp; worse"), "{}", r.body);
    assert!(r.body.contains("<https://status.example.test/|Status page>"), "{}", r.body);
    // Other media are plain text.
    let email = render(&spec(channels().remove(1), None, None), &a).unwrap();
    assert!(email.body.contains("<b>bad</b> & worse"), "{}", email.body);
}

#[test]
fn t16_a_subject_is_one_line() {
    let s = spec(channels().remove(5), Some("{{ monitor.name }}\n  is\n{{ verdict }}\n"), None);
    assert_eq!(render(&s, &alert(AlertKind::Open)).unwrap().subject, "web is down");
}

#[test]
fn t17_an_unguarded_monitor_fails_for_a_declared_incident() {
    let s = spec(channels().remove(0), None, Some("{{ monitor.name }}"));
    check_templates(&s).unwrap();
    assert!(render(&s, &alert(AlertKind::Open)).is_ok());
    assert_eq!(render(&s, &declared(AlertKind::Open)).unwrap_err().field, "body");
    let guarded =
        spec(channels().remove(0), None, Some("{% if monitor %}{{ monitor.name }}{% else %}{{ title }}{% endif %}"));
    assert_eq!(render(&guarded, &declared(AlertKind::Open)).unwrap().body, "Payments degraded at the provider");
}

/// The example in docs/alerting.md ("Templates") is accepted and renders as shown.
#[test]
fn t19_the_documented_example_renders() {
    let body = r#"{"text": {{ (monitor.name ~ " is " ~ verdict ~ " on " ~ (nodes | length) ~ " nodes") | tojson }}}"#;
    let s = spec(channels().remove(0), None, Some(body));
    check_templates(&s).unwrap();
    let r = render(&s, &alert(AlertKind::Open)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["text"], format!("web is {} on 3 nodes", alert(AlertKind::Open).verdict));
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/alerting.md")).unwrap();
    assert!(doc.contains(body), "docs/alerting.md no longer shows this example");
}
