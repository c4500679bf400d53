//! Delivery: one notification through its channel's real protocol.
//!
//! [`deliver`] renders the alert ([`mod@crate::render`]) and sends it once. It sets
//! no overall deadline (the dispatcher runs it under its lease's deadline),
//! only a connect timeout of [`CONNECT_TIMEOUT`].
//!
//! # What every HTTP request carries
//!
//! - `Idempotency-Key`: the notification id, the same on every attempt, so a
//!   receiver can drop a duplicate after a retry or a leader change.
//! - `X-Uptime-Fencing-Token`: `<term>-<node>-<index>` of the claim the
//!   attempt runs under; a receiver that remembers the highest token it saw
//!   can refuse a stale leader's late attempt.
//! - `User-Agent: uptime-cluster/<version>`.
//!
//! Email carries the first two as headers too, and a `Message-ID` of
//! `<notification-<id>@uptime-cluster>`, so mail clients fold duplicates.
//!
//! # Webhook signatures
//!
//! A webhook with a `secret` also gets
//!
//! ```text
//! X-Uptime-Timestamp: <unix seconds>
//! X-Uptime-Signature: sha256=<lowercase hex of HMAC-SHA256(secret, "<timestamp>.<body>")>
//! ```
//!
//! where `<body>` is the exact request body. A receiver recomputes the HMAC
//! over the timestamp header, a `.`, and the raw body, compares it in constant
//! time ([`verify_signature`] does both), and refuses a timestamp too far from
//! its clock (five minutes is usual): the timestamp is signed, so a captured
//! request cannot be replayed later with a fresh one.
//!
//! # Outcomes
//!
//! 2xx is delivered. 408, 429, 5xx and failures to connect or to read a reply
//! are [`SendError::retryable`]; any other status is not (the request was
//! understood and refused, so sending it again will not help). An error
//! carries the status and at most [`EXCERPT_BYTES`] of the reply's body.
//! Every error text has the channel's secrets ([`ChannelSpec::secrets`])
//! replaced by [`REDACTED`]: a dependency that echoes a URL cannot leak a
//! Slack webhook's path.

mod http_client;
mod payload;
mod signature;
mod smtp;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::alert::{Alert, Fencing};
use crate::render;
use crate::spec::{ChannelKind, ChannelSpec, REDACTED};

pub use signature::{verify_signature, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// How long to wait for a TCP connection to a channel's server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of a reply's body an error or a [`Delivered`] quotes.
pub const EXCERPT_BYTES: usize = 200;

/// What the receiving side said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The HTTP status, or the SMTP reply code to the message.
    pub status: Option<u16>,
    /// A short, scrubbed excerpt of the reply, for the delivery log.
    pub detail: String,
}

/// A failed attempt. The message never contains one of the spec's secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendError {
    pub message: String,
    /// Whether the same request may succeed later (a 5xx, a 429, a refused
    /// connection), as opposed to a refusal that will repeat (a 400, a 401).
    pub retryable: bool,
    /// The HTTP status or SMTP reply code, when the server answered.
    pub status: Option<u16>,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SendError {}

/// A reusable client: one HTTP connection pool and one TLS trust set, shared
/// by every delivery. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    http: http_client::HttpClient,
    trust: Arc<Trust>,
}

/// Which certificate authorities a channel's server may present a chain to.
/// Kept as certificates rather than a rustls `RootCertStore` because lettre
/// builds its own TLS configuration from certificates.
struct Trust {
    /// Mozilla's roots, from `webpki-roots`.
    webpki: bool,
    /// Added authorities (a private CA, a test's self-signed certificate).
    extra: Vec<CertificateDer<'static>>,
}

// === impl Sender ===

impl Sender {
    /// Trusts Mozilla's root authorities (the `webpki-roots` crate).
    pub fn new() -> Sender {
        Sender::build(Trust { webpki: true, extra: Vec::new() }).expect("the webpki roots are valid trust anchors")
    }

    /// Trusts only the given authorities (DER), e.g. a test's self-signed certificate.
    pub fn with_roots(roots: impl IntoIterator<Item = CertificateDer<'static>>) -> Result<Sender, SendError> {
        Sender::build(Trust { webpki: false, extra: roots.into_iter().collect() })
    }

    /// Trusts Mozilla's roots and the certificates in `pem` (a private CA).
    pub fn with_extra_ca_pem(pem: &[u8]) -> Result<Sender, SendError> {
        let extra = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| permanent(format!("reading CA certificates: {e}")))?;
        if extra.is_empty() {
            return Err(permanent("no CERTIFICATE block in the CA PEM".to_string()));
        }
        Sender::build(Trust { webpki: true, extra })
    }

    fn build(trust: Trust) -> Result<Sender, SendError> {
        let mut roots = rustls::RootCertStore::empty();
        if trust.webpki {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in &trust.extra {
            roots.add(cert.clone()).map_err(|e| permanent(format!("CA certificate refused: {e}")))?;
        }
        let http = http_client::build(roots).map_err(|e| permanent(format!("TLS configuration: {e}")))?;
        Ok(Sender { http, trust: Arc::new(trust) })
    }
}

impl Default for Sender {
    fn default() -> Sender {
        Sender::new()
    }
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("webpki_roots", &self.trust.webpki)
            .field("extra_roots", &self.trust.extra.len())
            .finish_non_exhaustive()
    }
}

/// Renders `alert` for the channel and sends it once.
///
/// A template that fails to render is a non-retryable error (it will fail the
/// same way again); [`crate::check_templates`] refuses such templates when a
/// channel is written, so this only happens for an alert unlike the sample.
pub async fn deliver(
    spec: &ChannelSpec,
    alert: &Alert,
    fencing: &Fencing,
    client: &Sender,
) -> Result<Delivered, SendError> {
    let scrub = Scrub::new(spec);
    let rendered = render::render(spec, alert).map_err(|e| SendError {
        message: scrub.apply(&format!("{}: {}", e.field, e.message)),
        retryable: false,
        status: None,
    })?;
    let request = match &spec.kind {
        ChannelKind::Smtp { .. } => {
            return smtp::send(spec, &rendered, alert, fencing, &client.trust, &scrub).await;
        }
        ChannelKind::Webhook { url, headers, secret } => {
            payload::webhook(url, headers, secret.as_deref(), rendered.body, unix_now())
        }
        ChannelKind::Slack { url } => payload::slack(url, &rendered),
        ChannelKind::Discord { url } => payload::discord(url, &rendered, alert),
        ChannelKind::PagerDuty { routing_key, url } => payload::pagerduty(url, routing_key, &rendered, alert),
        ChannelKind::Ntfy { url, token, priority } => payload::ntfy(url, token.as_deref(), *priority, &rendered, alert),
    }?;
    http_client::post(&client.http, request, fencing, &spec.redacted(), &scrub).await
}

/// A JSON document POSTed to `url` outside the outbox and its fence: a node's
/// own notices (lost quorum, the dead man's switch). It carries
/// `Idempotency-Key: <key>` and `X-Uptime-Fencing-Token: unfenced`.
pub async fn post_json(client: &Sender, url: &str, body: String, key: &str) -> Result<Delivered, SendError> {
    let spec = ChannelSpec {
        kind: ChannelKind::Webhook { url: url.to_string(), headers: Vec::new(), secret: None },
        subject: None,
        body: None,
    };
    let scrub = Scrub::new(&spec);
    let request = payload::webhook(url, &[], None, body, unix_now())?;
    let fencing =
        Fencing { idempotency_key: key.to_string(), token: "unfenced".to_string(), term: 0, node_id: 0, index: 0 };
    http_client::post(&client.http, request, &fencing, &spec.redacted(), &scrub).await
}

/// Replaces a spec's secrets in text that a dependency or a server produced.
pub(crate) struct Scrub(Vec<String>);

impl Scrub {
    fn new(spec: &ChannelSpec) -> Scrub {
        let mut secrets = spec.secrets();
        // A server quoting a URL path in JSON may escape its slashes.
        let escaped: Vec<String> = secrets.iter().filter(|s| s.contains('/')).map(|s| s.replace('/', "\\/")).collect();
        secrets.extend(escaped);
        // A whole URL contains its path: replace the longer secret first.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Scrub(secrets)
    }

    pub(crate) fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

/// At most [`EXCERPT_BYTES`] of a reply, on one line, secrets scrubbed.
pub(crate) fn excerpt(scrub: &Scrub, raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = scrub.apply(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    truncate(&text, EXCERPT_BYTES).to_string()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The HTTP status classes: see the module docs.
pub(crate) fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// `message` followed by each error's sources, `a: b: c`.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The signature's timestamp: the receiver compares it with its own clock,
/// so this is the wall clock, not an injected one.
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn permanent(message: String) -> SendError {
    SendError { message, retryable: false, status: None }
}

pub(crate) const USER_AGENT: &str = concat!("uptime-cluster/", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        for (status, retry) in
            [(400, false), (401, false), (404, false), (408, true), (429, true), (500, true), (503, true)]
        {
            assert_eq!(retryable_status(status), retry, "{status}");
        }
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn scrub_replaces_the_longest_secret_first() {
        let spec = ChannelSpec {
            kind: ChannelKind::Slack { url: "https://hooks.slack.com/services/T0/B0/XYZW".into() },
            subject: None,
            body: None,
        };
        let scrub = Scrub::new(&spec);
        assert_eq!(
            scrub.apply("error sending https://hooks.slack.com/services/T0/B0/XYZW and /services/T0/B0/XYZW"),
            "error sending <redacted> and <redacted>"
        );
        assert_eq!(scrub.apply(r#"{"error":"no hook \/services\/T0\/B0\/XYZW"}"#), r#"{"error":"no hook <redacted>"}"#);
    }
}
