//! The pooled HTTP(S) client and one POST with its outcome classified.
//!
//! hyper-util's pooled client with hyper-rustls reuses the workspace's hyper
//! 1, rustls 0.23 (ring) and tokio-rustls; reqwest would bring its own stack
//! (tower, url, encoding helpers) for nothing these requests need.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request as HttpRequest};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::payload::Request;
use super::{chain, excerpt, retryable_status, Delivered, Scrub, SendError, CONNECT_TIMEOUT};
use crate::alert::Fencing;
use crate::spec::{ChannelKind, ChannelSpec};

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Enough of a reply to quote [`super::EXCERPT_BYTES`] of it after
/// collapsing whitespace; the rest is not read.
const READ_AT_MOST: usize = 4096;

pub(crate) fn build(roots: rustls::RootCertStore) -> Result<HttpClient, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    tcp.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// `redacted` is the spec as read paths show it: its URL names the target in
/// error messages without its secret parts.
pub(crate) async fn post(
    client: &HttpClient,
    request: Request,
    fencing: &Fencing,
    redacted: &ChannelSpec,
    scrub: &Scrub,
) -> Result<Delivered, SendError> {
    let target = redacted_url(redacted);
    let fail = |message: String, retryable: bool, status: Option<u16>| SendError {
        message: scrub.apply(&format!("POST {target}: {message}")),
        retryable,
        status,
    };
    let uri: http::Uri = request.url.parse().map_err(|_| fail("not a valid URL".into(), false, None))?;
    let mut builder = HttpRequest::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, request.content_type)
        .header(USER_AGENT, super::USER_AGENT);
    for (name, value) in [("Idempotency-Key", &fencing.idempotency_key), ("X-Uptime-Fencing-Token", &fencing.token)] {
        let value =
            HeaderValue::from_str(value).map_err(|_| fail(format!("{name} is not a header value"), false, None))?;
        builder = builder.header(name, value);
    }
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    let http_request =
        builder.body(Full::new(Bytes::from(request.body))).map_err(|e| fail(e.to_string(), false, None))?;

    // A failure here is before any reply: the connection, TLS, or the
    // request's transmission. The receiver may or may not have acted on it;
    // retrying is safe because of the idempotency key.
    let response = client.request(http_request).await.map_err(|e| fail(chain(&e), true, None))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut raw = Vec::new();
    while raw.len() < READ_AT_MOST {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    raw.extend_from_slice(&data);
                }
            }
            // A body cut short still has its status; what was read is quoted.
            Some(Err(_)) | None => break,
        }
    }
    let quoted = excerpt(scrub, &raw);
    if (200..=299).contains(&status) {
        let detail = if quoted.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {quoted}") };
        return Ok(Delivered { status: Some(status), detail });
    }
    let message = if quoted.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {quoted}") };
    Err(fail(message, retryable_status(status), Some(status)))
}

fn redacted_url(spec: &ChannelSpec) -> String {
    match &spec.kind {
        ChannelKind::Webhook { url, .. }
        | ChannelKind::Slack { url }
        | ChannelKind::Discord { url }
        | ChannelKind::PagerDuty { url, .. }
        | ChannelKind::Ntfy { url, .. } => url.clone(),
        ChannelKind::Smtp { host, port, .. } => format!("{host}:{port}"),
    }
}
