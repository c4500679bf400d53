//! Email through lettre's async SMTP client: one connection per message (no
//! pool: notifications are rare and a pooled connection would outlive the
//! dispatcher's lease).

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{chain, Delivered, Scrub, SendError, Trust, CONNECT_TIMEOUT};
use crate::alert::{Alert, Fencing};
use crate::render::Rendered;
use crate::spec::{ChannelKind, ChannelSpec, SmtpSecurity};

pub(crate) async fn send(
    spec: &ChannelSpec,
    rendered: &Rendered,
    alert: &Alert,
    fencing: &Fencing,
    trust: &Trust,
    scrub: &Scrub,
) -> Result<Delivered, SendError> {
    let ChannelKind::Smtp { host, port, security, username, password, from, to } = &spec.kind else {
        unreachable!("smtp::send is only called for SMTP channels");
    };
    let fail = |message: String, retryable: bool, status: Option<u16>| SendError {
        message: scrub.apply(&format!("SMTP {host}:{port}: {message}")),
        retryable,
        status,
    };

    let message = message(rendered, alert, fencing, from, to).map_err(|m| fail(m, false, None))?;
    let tls = match security {
        SmtpSecurity::Plain => Tls::None,
        SmtpSecurity::StartTls => Tls::Required(tls_parameters(host, trust).map_err(|m| fail(m, false, None))?),
        SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(host, trust).map_err(|m| fail(m, false, None))?),
    };
    // lettre applies `timeout` to the TCP connect only.
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(*port)
        .tls(tls)
        .timeout(Some(CONNECT_TIMEOUT));
    if let (Some(username), Some(password)) = (username, password) {
        transport = transport
            .credentials(Credentials::new(username.clone(), password.clone()))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    let transport = transport.build();

    match transport.send(message).await {
        Ok(response) => Ok(Delivered {
            status: Some(code(&response.code())),
            detail: scrub.apply(&format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" "))),
        }),
        Err(e) => {
            let status = e.status().map(|c| code(&c));
            // A 5xx reply, a reply lettre could not parse, or a refusal on
            // our side (no STARTTLS on offer, no usable auth mechanism) will
            // repeat; a 4xx, a timeout or a broken connection may not.
            let retryable =
                e.is_transient() || e.is_timeout() || !(e.is_permanent() || e.is_client() || e.is_response());
            Err(fail(chain(&e), retryable, status))
        }
    }
}

fn code(c: &lettre::transport::smtp::response::Code) -> u16 {
    c.to_string().parse().unwrap_or(0)
}

fn tls_parameters(host: &str, trust: &Trust) -> Result<TlsParameters, String> {
    let store = if trust.webpki { CertificateStore::WebpkiRoots } else { CertificateStore::None };
    let mut builder = TlsParameters::builder(host.to_string()).certificate_store(store);
    for der in &trust.extra {
        let cert = Certificate::from_der(der.to_vec()).map_err(|e| format!("CA certificate: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| format!("TLS configuration: {}", chain(&e)))
}

/// A plain-text message. The idempotency key becomes the Message-ID, so a
/// retried notification is the same message to every mail client.
fn message(
    rendered: &Rendered,
    alert: &Alert,
    fencing: &Fencing,
    from: &str,
    to: &[String],
) -> Result<Message, String> {
    let mailbox = |field: &str, address: &str| -> Result<Mailbox, String> {
        address.parse::<Mailbox>().map_err(|e| format!("{field} {address:?}: {e}"))
    };
    let mut builder = Message::builder()
        .from(mailbox("from", from)?)
        .subject(rendered.subject.clone())
        .message_id(Some(format!("<notification-{}@uptime-cluster>", fencing.idempotency_key)))
        .date_now()
        .user_agent(super::USER_AGENT.to_string())
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Idempotency-Key"),
            fencing.idempotency_key.clone(),
        ))
        .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("X-Uptime-Fencing-Token"), fencing.token.clone()))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Uptime-Alert"),
            alert.kind.as_str().to_string(),
        ));
    for address in to {
        builder = builder.to(mailbox("to", address)?);
    }
    builder
        .header(ContentType::TEXT_PLAIN)
        .body(rendered.body.clone())
        .map_err(|e| format!("building the message: {e}"))
}
