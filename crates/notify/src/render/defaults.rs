//! The default subject and body of each channel kind. A line of the form
//! `{% if x %}…\n{% endif %}` keeps its newline inside the condition, so an
//! unset value leaves no blank line.

use crate::spec::ChannelKind;

/// `[DOWN] web (https://x) — incident #12`: what happened, to what, which incident.
macro_rules! headline {
    () => {
        concat!(
            r#"{% if kind == "resolve" %}[RESOLVED]{% elif kind == "test" %}[TEST]"#,
            r#"{% elif kind == "reminder" %}[STILL {{ cause|replace("_", " ")|upper }}]"#,
            r#"{% else %}[{{ cause|replace("_", " ")|upper }}]{% endif %} "#,
            r#"{% if monitor %}{{ monitor.name }} ({{ monitor.target }}){% else %}{{ title }}{% endif %}"#,
            r#"{% if kind == "test" %} — test notification{% else %} — incident #{{ incident_id }}{% endif %}"#,
        )
    };
}

/// `node 2: down, 31 ms — connection refused`, one per line, with a prefix.
macro_rules! node_lines {
    ($prefix:literal) => {
        concat!(
            "{% for n in nodes %}",
            $prefix,
            "node {{ n.node_id }}: {{ n.status }}",
            "{% if n.latency_ms is not none %}, {{ n.latency_ms }} ms{% endif %}",
            "{% if n.error %} — {{ n.error }}{% endif %}\n",
            "{% endfor %}",
        )
    };
}

const SUBJECT: &str = headline!();

const EMAIL_BODY: &str = concat!(
    "{{ title }}\n",
    "\n",
    "{% if monitor %}Monitor:      {{ monitor.name }} ({{ monitor.kind }} monitor #{{ monitor.id }})\n",
    "Target:       {{ monitor.target }}\n{% endif %}",
    "State:        {{ state }} (verdict: {{ verdict }})\n",
    "Severity:     {{ severity }}\n",
    "Cause:        {{ cause }}\n",
    "Opened:       {{ opened_at }}\n",
    "{% if acknowledged_at %}Acknowledged: {{ acknowledged_at }}\n{% endif %}",
    "{% if resolved_at %}Resolved:     {{ resolved_at }}\n{% endif %}",
    "{% if error %}Error:        {{ error }}\n{% endif %}",
    "{% if nodes %}\nPer node:\n",
    node_lines!("  "),
    "{% endif %}",
    "{% if status_url %}\nStatus page: {{ status_url }}\n{% endif %}",
    "\n-- \n",
    "{% if kind == \"test\" %}A test notification{% else %}Incident #{{ incident_id }}{% endif %}, ",
    "notification #{{ notification_id }} ({{ kind }}), written {{ at }} by uptime-cluster.\n",
);

const SLACK_BODY: &str = concat!(
    r#"{% if kind == "resolve" %}:large_green_circle:{% elif kind == "test" %}:test_tube:"#,
    r#"{% elif kind == "reminder" %}:warning:{% else %}:red_circle:{% endif %} "#,
    "*",
    headline!(),
    "*\n",
    "{% if monitor %}*Monitor:* {{ monitor.name }} · `{{ monitor.target }}`\n{% endif %}",
    "*State:* {{ state }} · *Severity:* {{ severity }} · *Cause:* {{ cause }}\n",
    "*Opened:* {{ opened_at }}{% if resolved_at %} · *Resolved:* {{ resolved_at }}{% endif %}\n",
    "{% if error %}*Error:* `{{ error }}`\n{% endif %}",
    node_lines!("• "),
    "{% if status_url %}<{{ status_url }}|Status page>{% endif %}",
);

const DISCORD_BODY: &str = concat!(
    "{% if monitor %}**Monitor:** {{ monitor.name }} (`{{ monitor.target }}`)\n{% endif %}",
    "**State:** {{ state }} · **Severity:** {{ severity }} · **Cause:** {{ cause }}\n",
    "**Opened:** {{ opened_at }}{% if resolved_at %} · **Resolved:** {{ resolved_at }}{% endif %}\n",
    "{% if error %}**Error:** `{{ error }}`\n{% endif %}",
    node_lines!("- "),
    "{% if status_url %}[Status page]({{ status_url }}){% endif %}",
);

/// ntfy shows a few lines on a phone's lock screen: keep it short.
const NTFY_BODY: &str = concat!(
    "{% if kind == \"resolve\" %}Resolved{% else %}{{ title }}{% endif %}",
    "{% if error and kind != \"resolve\" %}: {{ error }}{% endif %}\n",
    "{{ severity }} · {% if kind == \"test\" %}test{% else %}incident #{{ incident_id }}{% endif %}",
    " · opened {{ opened_at }}{% if resolved_at %} · resolved {{ resolved_at }}{% endif %}",
);

/// PagerDuty's summary is the subject; the body goes into custom details.
const PAGERDUTY_BODY: &str = EMAIL_BODY;

/// `(subject, body)` for the kind. A webhook's default body is not a template
/// (it is the JSON document), so its entry is only used for a custom subject.
pub(super) fn templates(kind: &ChannelKind) -> (&'static str, &'static str) {
    let body = match kind {
        ChannelKind::Webhook { .. } | ChannelKind::Smtp { .. } => EMAIL_BODY,
        ChannelKind::Slack { .. } => SLACK_BODY,
        ChannelKind::Discord { .. } => DISCORD_BODY,
        ChannelKind::PagerDuty { .. } => PAGERDUTY_BODY,
        ChannelKind::Ntfy { .. } => NTFY_BODY,
    };
    (SUBJECT, body)
}
