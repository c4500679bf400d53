//! HTTP channels against a real local sink: each request as its service
//! documents it, the headers every request carries, outcomes by status, and
//! secrets kept out of errors.

mod support;

use support::alerts::{alert, fencing};
use support::http_sink::{HttpSink, Recorded};
use uptime_notify::send::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use uptime_notify::{deliver, verify_signature, AlertKind, ChannelKind, ChannelSpec, Header, Sender};

fn spec(kind: ChannelKind) -> ChannelSpec {
    ChannelSpec { kind, subject: None, body: None }
}

fn assert_delivery_headers(r: &Recorded) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("idempotency-key"), Some("34"));
    assert_eq!(r.header("x-uptime-fencing-token"), Some("5-2-901"));
    assert_eq!(r.header("user-agent"), Some(concat!("uptime-cluster/", env!("CARGO_PKG_VERSION"))));
}

#[tokio::test]
async fn t20_webhook_posts_the_alert_document_with_delivery_headers() {
    let sink = HttpSink::start().await;
    let s = spec(ChannelKind::Webhook {
        url: sink.url("/hooks/uptime?team=ops"),
        headers: vec![Header { name: "X-Team".into(), value: "ops".into() }],
        secret: None,
    });
    let delivered = deliver(&s, &alert(AlertKind::Open), &fencing(), &Sender::new()).await.unwrap();
    assert_eq!(delivered.status, Some(200));

    let r = sink.only();
    assert_delivery_headers(&r);
    assert_eq!(r.path, "/hooks/uptime?team=ops");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-team"), Some("ops"));
    assert_eq!(r.header(SIGNATURE_HEADER), None, "no secret, no signature");
    let doc = r.json();
    let keys: Vec<&str> = doc.as_object().unwrap().keys().map(String::as_str).collect();
    for key in [
        "version",
        "kind",
        "notification_id",
        "incident_id",
        "title",
        "state",
        "severity",
        "cause",
        "monitor",
        "verdict",
        "nodes",
        "error",
        "opened_at",
        "resolved_at",
        "acknowledged_at",
        "at",
        "status_url",
        "text",
    ] {
        assert!(keys.contains(&key), "{key} missing from {doc}");
    }
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["kind"], "open");
    assert_eq!(doc["incident_id"], 12);
    assert_eq!(doc["monitor"]["name"], "web");
    assert_eq!(doc["nodes"][1]["latency_ms"], 31);
    assert_eq!(doc["resolved_at"], serde_json::Value::Null);
    assert_eq!(doc["text"], "[DOWN] web (https://example.test/health) — incident #12");
}

#[tokio::test]
async fn t21_webhook_signature_verifies_with_the_secret_only() {
    let sink = HttpSink::start().await;
    let s = spec(ChannelKind::Webhook { url: sink.url("/in"), headers: vec![], secret: Some("sh4red-secret".into()) });
    deliver(&s, &alert(AlertKind::Resolve), &fencing(), &Sender::new()).await.unwrap();

    let r = sink.only();
    let timestamp = r.header(TIMESTAMP_HEADER).expect("a timestamp header").to_string();
    let signature = r.header(SIGNATURE_HEADER).expect("a signature header").to_string();
    assert!(timestamp.parse::<u64>().unwrap() > 1_600_000_000, "{timestamp}");
    assert!(signature.starts_with("sha256="), "{signature}");
    assert!(verify_signature("sh4red-secret", &timestamp, &r.body, &signature));
    assert!(!verify_signature("wrong-secret", &timestamp, &r.body, &signature));
    let later = (timestamp.parse::<u64>().unwrap() + 1).to_string();
    assert!(!verify_signature("sh4red-secret", &later, &r.body, &signature), "the timestamp is signed");
    assert!(!String::from_utf8_lossy(&r.body).contains("sh4red-secret"));
}

#[tokio::test]
async fn t22_slack_incoming_webhook_shape() {
    let sink = HttpSink::start().await;
    let s = spec(ChannelKind::Slack { url: sink.url("/services/T000/B000/XXXX") });
    deliver(&s, &alert(AlertKind::Open), &fencing(), &Sender::new()).await.unwrap();

    let r = sink.only();
    assert_delivery_headers(&r);
    assert_eq!(r.path, "/services/T000/B000/XXXX");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert_eq!(doc["text"], "[DOWN] web (https://example.test/health) — incident #12");
    let block = &doc["blocks"][0];
    assert_eq!(block["type"], "section");
    assert_eq!(block["text"]["type"], "mrkdwn");
    let text = block["text"]["text"].as_str().unwrap();
    assert!(text.starts_with(":red_circle: *[DOWN] web"), "{text}");
    assert!(text.contains("<https://status.example.test/|Status page>"), "{text}");
}

#[tokio::test]
async fn t23_discord_webhook_shape_and_limits() {
    let sink = HttpSink::start().await;
    let s = ChannelSpec {
        kind: ChannelKind::Discord { url: sink.url("/api/webhooks/1/tok") },
        subject: Some("{% for i in range(600) %}{{ monitor.name }} {% endfor %}".into()),
        body: None,
    };
    deliver(&s, &alert(AlertKind::Resolve), &fencing(), &Sender::new()).await.unwrap();

    let r = sink.only();
    assert_delivery_headers(&r);
    let doc = r.json();
    let content = doc["content"].as_str().unwrap();
    assert_eq!(content.chars().count(), 2000, "content is cut to Discord's limit");
    assert!(content.ends_with('…'));
    let embed = &doc["embeds"][0];
    assert_eq!(embed["title"], "web is down");
    assert!(embed["description"].as_str().unwrap().contains("**Resolved:** 2024-05-01T10:07:00Z"), "{embed}");
    assert_eq!(embed["color"], 0x2ECC71, "green for a resolve");
    assert_eq!(doc["allowed_mentions"]["parse"], serde_json::json!([]));
}

#[tokio::test]
async fn t24_pagerduty_trigger_then_resolve_share_the_dedup_key() {
    let sink = HttpSink::start_with(None, |_| (202, r#"{"status":"success","dedup_key":"12"}"#.into())).await;
    let s = spec(ChannelKind::PagerDuty { routing_key: "R0UTING-KEY-123".into(), url: sink.url("/v2/enqueue") });
    let sender = Sender::new();
    let delivered = deliver(&s, &alert(AlertKind::Open), &fencing(), &sender).await.unwrap();
    assert_eq!(delivered.status, Some(202));
    deliver(&s, &alert(AlertKind::Resolve), &fencing(), &sender).await.unwrap();

    let seen = sink.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_delivery_headers(r);
        assert_eq!(r.path, "/v2/enqueue");
    }
    let trigger = seen[0].json();
    assert_eq!(trigger["routing_key"], "R0UTING-KEY-123");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "12");
    let payload = &trigger["payload"];
    assert_eq!(payload["summary"], "[DOWN] web (https://example.test/health) — incident #12");
    assert_eq!(payload["source"], "https://example.test/health");
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["timestamp"], "2024-05-01T10:00:05Z");
    assert_eq!(payload["custom_details"]["incident_id"], 12);
    assert_eq!(payload["custom_details"]["nodes"].as_array().unwrap().len(), 3);

    let resolve = seen[1].json();
    assert_eq!(
        resolve,
        serde_json::json!({"routing_key": "R0UTING-KEY-123", "event_action": "resolve", "dedup_key": "12"})
    );
}

#[tokio::test]
async fn t25_pagerduty_maps_severities() {
    let sink = HttpSink::replying(202, "{}").await;
    let s = spec(ChannelKind::PagerDuty { routing_key: "R0UTING-KEY-123".into(), url: sink.url("/v2/enqueue") });
    let sender = Sender::new();
    for severity in ["critical", "major", "minor", "info"] {
        let mut a = alert(AlertKind::Reminder);
        a.severity = severity.into();
        deliver(&s, &a, &fencing(), &sender).await.unwrap();
    }
    let got: Vec<String> =
        sink.requests().iter().map(|r| r.json()["payload"]["severity"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, ["critical", "error", "warning", "info"]);
    assert!(sink.requests().iter().all(|r| r.json()["event_action"] == "trigger"), "a reminder triggers again");
}

#[tokio::test]
async fn t26_ntfy_publish_with_headers_and_a_non_ascii_title() {
    let sink = HttpSink::start().await;
    let s = ChannelSpec {
        kind: ChannelKind::Ntfy { url: sink.url("/ops-alerts"), token: Some("tk_n7fyT0ken".into()), priority: None },
        subject: Some("Störung: {{ monitor.name }} — ✗".into()),
        body: None,
    };
    deliver(&s, &alert(AlertKind::Open), &fencing(), &Sender::new()).await.unwrap();

    let r = sink.only();
    assert_delivery_headers(&r);
    assert_eq!(r.path, "/ops-alerts");
    assert_eq!(r.header("authorization"), Some("Bearer tk_n7fyT0ken"));
    assert_eq!(r.header("priority"), Some("5"), "critical is ntfy's max");
    assert_eq!(r.header("tags"), Some("rotating_light"));
    assert_eq!(r.header("click"), Some("https://status.example.test/"));
    let title = r.header("title").unwrap();
    assert!(title.starts_with("=?UTF-8?B?"), "{title}");
    assert_eq!(
        support::mail::Mail::parse(&format!("Title: {title}\r\n\r\n")).decoded("Title").unwrap(),
        "Störung: web — ✗"
    );
    assert_eq!(r.text(), "web is down: connection refused\ncritical · incident #12 · opened 2024-05-01T10:00:00Z");

    let sink = HttpSink::start().await;
    let s = spec(ChannelKind::Ntfy { url: sink.url("/t"), token: None, priority: Some(2) });
    deliver(&s, &alert(AlertKind::Resolve), &fencing(), &Sender::new()).await.unwrap();
    let r = sink.only();
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("priority"), Some("2"), "the channel's priority wins");
    assert_eq!(r.header("tags"), Some("white_check_mark"));
    assert!(r.header("title").unwrap().starts_with("=?UTF-8?B?"), "the default subject has an em dash");
}

#[tokio::test]
async fn t30_status_classes() {
    let cases = [(500, true), (503, true), (429, true), (408, true), (400, false), (401, false), (404, false)];
    for (status, retryable) in cases {
        let sink = HttpSink::replying(status, "  upstream\n said   no  ").await;
        let s = spec(ChannelKind::Webhook { url: sink.url("/in"), headers: vec![], secret: None });
        let e = deliver(&s, &alert(AlertKind::Open), &fencing(), &Sender::new()).await.unwrap_err();
        assert_eq!(e.status, Some(status), "{e:?}");
        assert_eq!(e.retryable, retryable, "{status}: {e:?}");
        assert!(e.message.contains(&format!("HTTP {status}: upstream said no")), "{e:?}");
        assert_eq!(sink.requests().len(), 1);
    }
}

#[tokio::test]
async fn t31_a_long_reply_is_quoted_short() {
    let sink = HttpSink::replying(502, &"x".repeat(10_000)).await;
    let s = spec(ChannelKind::Discord { url: sink.url("/api/webhooks/1/tok") });
    let e = deliver(&s, &alert(AlertKind::Open), &fencing(), &Sender::new()).await.unwrap_err();
    let quoted = e.message.rsplit(": ").next().unwrap();
    assert_eq!(quoted.len(), 200, "{e:?}");
    assert!(e.retryable);
}

#[tokio::test]
async fn t40_a_secret_url_path_stays_out_of_a_connection_error() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = spec(ChannelKind::Slack { url: format!("http://127.0.0.1:{port}/services/T0SECRET/B0SECRET/hunter2xyz") });
    let e = deliver(&s, &alert(AlertKind::Open), &fencing(), &Sender::new()).await.unwrap_err();
    assert!(e.retryable, "{e:?}");
    assert_eq!(e.status, None);
    for secret in ["T0SECRET", "B0SECRET", "hunter2xyz"] {
        assert!(!e.message.contains(secret), "{secret} leaked: {}", e.message);
    }
    assert!(e.message.contains("127.0.0.1"), "the target's host still shows: {}", e.message);
}

#[tokio::test]
async fn t41_a_reply_echoing_the_secret_path_is_scrubbed() {
    let sink = HttpSink::start_with(None, |r| (404, format!("no such hook: {}", r.path))).await;
    let s = spec(ChannelKind::Slack { url: sink.url("/services/T0SECRET/B0SECRET/hunter2xyz") });
    let e = deliver(&s, &alert(AlertKind::Open), &fencing(), &Sender::new()).await.unwrap_err();
    assert!(!e.retryable);
    assert!(e.message.contains("no such hook: <redacted>"), "{}", e.message);
    assert!(!e.message.contains("hunter2xyz"), "{}", e.message);

    let sink = HttpSink::start_with(None, |r| (401, format!("bad {}", r.header("authorization").unwrap()))).await;
    let s = spec(ChannelKind::Ntfy { url: sink.url("/t"), token: Some("tk_n7fyT0ken".into()), priority: None });
    let e = deliver(&s, &alert(AlertKind::Open), &fencing(), &Sender::new()).await.unwrap_err();
    assert!(!e.message.contains("tk_n7fyT0ken"), "{}", e.message);
}

#[tokio::test]
async fn t50_https_with_a_self_signed_certificate() {
    let cert = support::tls::self_signed();
    let sink = HttpSink::start_with(Some(cert.server.clone()), |_| (200, "ok".into())).await;
    let s = spec(ChannelKind::Webhook { url: sink.url("/in"), headers: vec![], secret: None });
    assert!(sink.url("/in").starts_with("https://127.0.0.1:"));

    // Not trusted by default: a TLS failure, before any request is seen.
    let e = deliver(&s, &alert(AlertKind::Open), &fencing(), &Sender::new()).await.unwrap_err();
    assert!(e.message.to_lowercase().contains("certificate"), "{e:?}");
    assert!(sink.requests().is_empty());

    let trusted = Sender::with_roots([cert.der.clone()]).unwrap();
    deliver(&s, &alert(AlertKind::Open), &fencing(), &trusted).await.unwrap();
    let also = Sender::with_extra_ca_pem(cert.pem.as_bytes()).unwrap();
    deliver(&s, &alert(AlertKind::Resolve), &fencing(), &also).await.unwrap();
    let seen = sink.requests();
    assert_eq!(seen.len(), 2);
    assert_delivery_headers(&seen[0]);
    assert_eq!(seen[1].json()["kind"], "resolve");
}
