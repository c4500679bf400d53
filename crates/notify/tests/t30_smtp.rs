//! Email through a real SMTP conversation with a local server: plain,
//! STARTTLS with AUTH PLAIN and LOGIN, implicit TLS, and the failures that
//! must not fall back or leak.

mod support;

use support::alerts::{alert, fencing};
use support::mail::Mail;
use support::smtp_server::{SmtpConfig, SmtpServer};
use support::tls::{self_signed, TestCert};
use uptime_notify::{deliver, render, AlertKind, ChannelKind, ChannelSpec, Sender, SmtpSecurity};

fn smtp(server: &SmtpServer, security: SmtpSecurity, auth: Option<(&str, &str)>) -> ChannelSpec {
    ChannelSpec {
        kind: ChannelKind::Smtp {
            host: "127.0.0.1".into(),
            port: server.addr.port(),
            security,
            username: auth.map(|(u, _)| u.to_string()),
            password: auth.map(|(_, p)| p.to_string()),
            from: "uptime@example.test".into(),
            to: vec!["ops@example.test".into(), "oncall@example.test".into(), "boss@example.test".into()],
        },
        subject: None,
        body: None,
    }
}

fn trusting(cert: &TestCert) -> Sender {
    Sender::with_roots([cert.der.clone()]).unwrap()
}

fn with_auth(config: SmtpConfig, mechanisms: Vec<&'static str>) -> SmtpConfig {
    SmtpConfig { auth: Some(("alice".into(), "c0rrect-h0rse".into())), mechanisms, ..config }
}

#[tokio::test]
async fn t10_plain_relay_gets_every_recipient_and_the_rendered_text() {
    let server = SmtpServer::start(SmtpConfig::plain()).await;
    let mut spec = smtp(&server, SmtpSecurity::Plain, None);
    spec.subject = Some("[{{ severity }}] {{ monitor.name }} is {{ verdict }}".into());
    spec.body = Some("Incident {{ incident_id }} on {{ monitor.target }}.\n{{ error }}".into());
    let delivered = deliver(&spec, &alert(AlertKind::Open), &fencing(), &Sender::new()).await.unwrap();
    assert_eq!(delivered.status, Some(250));
    assert!(delivered.detail.contains("queued as 1"), "{delivered:?}");

    let received = server.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert!(!got.tls);
    assert_eq!(got.auth, None);
    assert_eq!(got.mail_from, "uptime@example.test");
    assert_eq!(got.rcpt_to, ["ops@example.test", "oncall@example.test", "boss@example.test"]);

    let mail = Mail::parse(&got.data);
    assert_eq!(mail.decoded("Subject").unwrap(), "[critical] web is down");
    assert_eq!(mail.text(), "Incident 12 on https://example.test/health.\nconnection refused");
    assert_eq!(mail.header("From"), Some("uptime@example.test"));
    let to = mail.header("To").unwrap();
    for address in ["ops@example.test", "oncall@example.test", "boss@example.test"] {
        assert!(to.contains(address), "{to}");
    }
    assert_eq!(mail.header("Message-ID"), Some("<notification-34@uptime-cluster>"));
    assert_eq!(mail.header("Idempotency-Key"), Some("34"));
    assert_eq!(mail.header("X-Uptime-Fencing-Token"), Some("5-2-901"));
    assert!(mail.header("Date").is_some());
    assert!(mail.header("Content-Type").unwrap().starts_with("text/plain"), "{:?}", mail.headers);
}

#[tokio::test]
async fn t20_starttls_then_auth_plain_with_the_default_templates() {
    let cert = self_signed();
    let server = SmtpServer::start(with_auth(
        SmtpConfig { starttls: Some(cert.server.clone()), ..SmtpConfig::plain() },
        vec!["PLAIN", "LOGIN"],
    ))
    .await;
    let spec = smtp(&server, SmtpSecurity::StartTls, Some(("alice", "c0rrect-h0rse")));
    let a = alert(AlertKind::Resolve);
    deliver(&spec, &a, &fencing(), &trusting(&cert)).await.unwrap();

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls, "the transaction ran after STARTTLS");
    assert_eq!(received[0].auth, Some(("PLAIN".to_string(), "alice".to_string())));
    assert_eq!(received[0].rcpt_to.len(), 3);
    let commands = server.commands();
    let starttls = commands.iter().position(|c| c == "STARTTLS").expect("STARTTLS was used");
    let auth = commands.iter().position(|c| c.starts_with("AUTH")).unwrap();
    assert!(starttls < auth, "credentials only after TLS: {commands:?}");

    let rendered = render(&spec, &a).unwrap();
    let mail = Mail::parse(&received[0].data);
    assert_eq!(mail.decoded("Subject").unwrap(), rendered.subject);
    assert_eq!(mail.decoded("Subject").unwrap(), "[RESOLVED] web (https://example.test/health) — incident #12");
    assert_eq!(mail.text(), rendered.body.replace("\r\n", "\n"));
    assert!(mail.text().contains("Resolved:     2024-05-01T10:07:00Z"), "{}", mail.text());
}

#[tokio::test]
async fn t21_auth_login_when_it_is_the_only_mechanism() {
    let cert = self_signed();
    let server = SmtpServer::start(with_auth(
        SmtpConfig { starttls: Some(cert.server.clone()), ..SmtpConfig::plain() },
        vec!["LOGIN"],
    ))
    .await;
    let spec = smtp(&server, SmtpSecurity::StartTls, Some(("alice", "c0rrect-h0rse")));
    deliver(&spec, &alert(AlertKind::Open), &fencing(), &trusting(&cert)).await.unwrap();
    assert_eq!(server.received()[0].auth, Some(("LOGIN".to_string(), "alice".to_string())));
}

#[tokio::test]
async fn t30_implicit_tls() {
    let cert = self_signed();
    let server = SmtpServer::start(with_auth(
        SmtpConfig { implicit_tls: Some(cert.server.clone()), ..SmtpConfig::plain() },
        vec!["PLAIN"],
    ))
    .await;
    let spec = smtp(&server, SmtpSecurity::Tls, Some(("alice", "c0rrect-h0rse")));
    deliver(&spec, &alert(AlertKind::Reminder), &fencing(), &trusting(&cert)).await.unwrap();
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls);
    assert!(!server.commands().iter().any(|c| c == "STARTTLS"));
    assert!(Mail::parse(&received[0].data).decoded("Subject").unwrap().starts_with("[STILL DOWN] web"));
}

#[tokio::test]
async fn t40_a_wrong_password_is_a_clear_error_without_the_password() {
    let cert = self_signed();
    let server = SmtpServer::start(with_auth(
        SmtpConfig { starttls: Some(cert.server.clone()), ..SmtpConfig::plain() },
        vec!["PLAIN", "LOGIN"],
    ))
    .await;
    let spec = smtp(&server, SmtpSecurity::StartTls, Some(("alice", "wr0ng-passw0rd")));
    let e = deliver(&spec, &alert(AlertKind::Open), &fencing(), &trusting(&cert)).await.unwrap_err();
    assert_eq!(e.status, Some(535), "{e:?}");
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("authentication credentials invalid"), "{e:?}");
    assert!(e.message.contains(&format!("127.0.0.1:{}", server.addr.port())), "{e:?}");
    assert!(!e.message.contains("wr0ng-passw0rd"), "{e:?}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn t41_starttls_required_but_not_offered_sends_nothing_in_the_clear() {
    let server = SmtpServer::start(with_auth(SmtpConfig::plain(), vec!["PLAIN"])).await;
    let spec = smtp(&server, SmtpSecurity::StartTls, Some(("alice", "c0rrect-h0rse")));
    let e = deliver(&spec, &alert(AlertKind::Open), &fencing(), &Sender::new()).await.unwrap_err();
    assert!(e.message.contains("STARTTLS"), "{e:?}");
    assert!(!e.retryable, "{e:?}");
    let commands = server.commands();
    assert!(commands.iter().any(|c| c.starts_with("EHLO")), "{commands:?}");
    assert!(!commands.iter().any(|c| c.starts_with("AUTH") || c.starts_with("MAIL")), "{commands:?}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn t42_an_untrusted_certificate_is_refused() {
    let cert = self_signed();
    let server = SmtpServer::start(SmtpConfig { starttls: Some(cert.server.clone()), ..SmtpConfig::plain() }).await;
    let spec = smtp(&server, SmtpSecurity::StartTls, None);
    let e = deliver(&spec, &alert(AlertKind::Open), &fencing(), &Sender::new()).await.unwrap_err();
    assert!(e.message.to_lowercase().contains("certificate"), "{e:?}");
    assert!(server.received().is_empty());
}
