//! The typed admin API client used by `uptimectl` and the tests.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::dto::{
    AddNode, ChannelTestView, ChannelView, ClusterStatus, CreateMonitor, DeclareIncident, ErrorEnvelope, HistoryView,
    IncidentAction, IncidentView, MaintenanceView, MonitorView, NodeView, NotificationView, StateHashView,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error envelope.
    #[error("{message} (HTTP {status}, {code})")]
    Api { status: u16, code: String, message: String, field: Option<String> },
    #[error("cannot reach {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    #[error("bad endpoint {endpoint:?}: {message}")]
    Endpoint { endpoint: String, message: String },
    #[error("unexpected answer from the server: {message}")]
    Decode { message: String },
}

/// A key unique to one write of this process: pid, time and a counter.
fn idempotency_key() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("uptimectl-{:x}-{nanos:x}-{:x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Whether a write may have been applied although no answer said so.
/// How a [`ClientError::Transport`] message starts when no connection was made.
const NOT_CONNECTED: &str = "cannot connect: ";

impl ClientError {
    /// The request was certainly never sent: no connection could be made
    /// (refused, unroutable, no such host). A write that failed this way did
    /// not happen; any other transport error leaves its outcome in doubt.
    pub fn not_sent(&self) -> bool {
        matches!(self, ClientError::Transport { message, .. } if message.starts_with(NOT_CONNECTED))
    }
}

/// An answer to a retry that is about that attempt only: it was never sent,
/// or the node proposed nothing (no leader, not a member, installing, the
/// leader unreachable). A definite answer (success, a 4xx) is about the
/// write itself: the server answers a retried key with what it did.
fn says_nothing_of_earlier_attempts(e: &ClientError) -> bool {
    e.not_sent() || matches!(e, ClientError::Api { status: 503 | 504, code, .. } if code != "unknown_outcome")
}

fn outcome_unknown(e: &ClientError) -> bool {
    match e {
        ClientError::Api { status: 503, code, .. } => code == "unknown_outcome",
        ClientError::Transport { message, .. } => message.starts_with("no answer within"),
        _ => false,
    }
}

/// A read and its staleness: `stale` holds the server's `X-Uptime-Stale` age
/// (e.g. `"42.0s"`) when the answering node heard no leader, so the state it
/// read from may be behind the cluster.
#[derive(Clone, Debug)]
pub struct Read<T> {
    pub value: T,
    pub stale: Option<String>,
}

/// One answer: its status, the `X-Uptime-Stale` header and the body.
struct Answer {
    status: StatusCode,
    stale: Option<String>,
    bytes: Bytes,
}

type Http = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

fn http_client(local: Option<std::net::IpAddr>) -> Http {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(3)));
    connector.set_nodelay(true);
    connector.set_local_address(local);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector)
}

#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    /// Sent as `X-Uptime-User`: who incident actions are attributed to.
    user: Option<String>,
    http: Http,
    timeout: Duration,
}

impl Client {
    /// `endpoint` is the API base URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Client, ClientError> {
        let base = endpoint.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(ClientError::Endpoint {
                endpoint: endpoint.to_string(),
                message: "expected an http:// URL (e.g. http://127.0.0.1:8080)".into(),
            });
        }
        base.parse::<http::Uri>()
            .map_err(|e| ClientError::Endpoint { endpoint: endpoint.to_string(), message: e.to_string() })?;
        Ok(Client { base, token, user: None, http: http_client(None), timeout: Duration::from_secs(15) })
    }

    /// Gives up on a request after `timeout` (default 15 s); a write that
    /// timed out may still apply.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Makes this client's connections from local address `addr` (the kernel
    /// picks the port), e.g. so that a test harness's requests are told apart
    /// from a node's own traffic on loopback.
    pub fn with_local_address(mut self, addr: std::net::IpAddr) -> Client {
        self.http = http_client(Some(addr));
        self
    }

    /// Attributes incident actions to `user`.
    pub fn with_user(mut self, user: impl Into<String>) -> Client {
        self.user = Some(user.into());
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Option<T>, ClientError> {
        Ok(self.request_read(method, path, body).await?.value)
    }

    async fn request_read<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Read<Option<T>>, ClientError> {
        let Answer { status, stale, bytes } = self.exchange(method, path, body).await?;
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return Ok(Read { value: None, stale });
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode { message: e.to_string() })?;
        Ok(Read { value: Some(value), stale })
    }

    /// Sends a request; a non-2xx answer becomes [`ClientError::Api`]. A write
    /// carries an `Idempotency-Key` of its own, and is sent again with the same
    /// key (twice at most) when its outcome is unknown: a timeout, or the
    /// server's `unknown_outcome`. The cluster applies it once either way.
    async fn exchange<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer, ClientError> {
        if method == Method::GET {
            return self.exchange_once(method, path, body, None).await;
        }
        let key = idempotency_key();
        let mut tries = 0;
        // The last attempt whose outcome was unknown: it may have applied.
        let mut doubt = None;
        loop {
            tries += 1;
            match self.exchange_once(method.clone(), path, body, Some(&key)).await {
                Err(e) if tries < 3 && outcome_unknown(&e) => doubt = Some(e),
                // A retry refused, or answered "nothing proposed", says
                // nothing of the earlier attempt: its doubt stands.
                Err(e) if doubt.is_some() && says_nothing_of_earlier_attempts(&e) => {
                    return Err(doubt.take().unwrap_or(e));
                }
                other => return other,
            }
        }
    }

    async fn exchange_once<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        key: Option<&str>,
    ) -> Result<Answer, ClientError> {
        let mut req = http::Request::builder().method(method).uri(format!("{}{}", self.base, path));
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(u) = &self.user {
            req = req.header("x-uptime-user", u.as_str());
        }
        let body = match body {
            Some(b) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(b).map_err(|e| ClientError::Decode { message: e.to_string() })?)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Endpoint { endpoint: self.base.clone(), message: e.to_string() })?;
        let transport = |message: String| ClientError::Transport { endpoint: self.base.clone(), message };
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| transport(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| {
                // Refused or unroutable: the request never left this process.
                if e.is_connect() {
                    transport(format!("{NOT_CONNECTED}{}", error_chain(&e)))
                } else {
                    transport(error_chain(&e))
                }
            })?;
        let status = resp.status();
        let stale = resp.headers().get("x-uptime-stale").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = resp.into_body().collect().await.map_err(|e| transport(e.to_string()))?.to_bytes();
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
                Ok(env) => ClientError::Api {
                    status: status.as_u16(),
                    code: env.error.code,
                    message: env.error.message,
                    field: env.error.field,
                },
                Err(_) => ClientError::Api {
                    status: status.as_u16(),
                    code: "http".into(),
                    message: String::from_utf8_lossy(&bytes).trim().chars().take(200).collect(),
                    field: None,
                },
            });
        }
        Ok(Answer { status, stale, bytes })
    }

    /// `GET /metrics`: the node's figures in Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let bytes = self.exchange::<()>(Method::GET, "/metrics", None).await?.bytes;
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::Decode { message: e.to_string() })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Ok(self.get_read(path).await?.value)
    }

    /// A GET and whether the server marked it stale.
    async fn get_read<T: DeserializeOwned>(&self, path: &str) -> Result<Read<T>, ClientError> {
        let Read { value, stale } = self.request_read::<(), T>(Method::GET, path, None).await?;
        let value = value.ok_or_else(|| ClientError::Decode { message: "empty body".into() })?;
        Ok(Read { value, stale })
    }

    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        self.get("/api/v1/cluster").await
    }

    pub async fn state_hash(&self) -> Result<StateHashView, ClientError> {
        self.get("/api/v1/cluster/state-hash").await
    }

    pub async fn add_node(&self, node: &AddNode) -> Result<ClusterStatus, ClientError> {
        self.request(Method::POST, "/api/v1/cluster/nodes", Some(node))
            .await?
            .ok_or_else(|| ClientError::Decode { message: "empty body".into() })
    }

    pub async fn remove_node(&self, id: u64) -> Result<ClusterStatus, ClientError> {
        self.request::<(), _>(Method::DELETE, &format!("/api/v1/cluster/nodes/{id}"), None)
            .await?
            .ok_or_else(|| ClientError::Decode { message: "empty body".into() })
    }

    pub async fn create_monitor(&self, monitor: &CreateMonitor) -> Result<MonitorView, ClientError> {
        self.request(Method::POST, "/api/v1/monitors", Some(monitor))
            .await?
            .ok_or_else(|| ClientError::Decode { message: "empty body".into() })
    }

    /// `linearizable`: the answer reflects every write committed before the call.
    pub async fn list_monitors(&self, linearizable: bool) -> Result<Vec<MonitorView>, ClientError> {
        Ok(self.list_monitors_read(linearizable).await?.value)
    }

    /// [`Client::list_monitors`] with its staleness.
    pub async fn list_monitors_read(&self, linearizable: bool) -> Result<Read<Vec<MonitorView>>, ClientError> {
        let q = if linearizable { "?consistency=linearizable" } else { "" };
        self.get_read(&format!("/api/v1/monitors{q}")).await
    }

    pub async fn get_monitor(&self, id_or_name: &str) -> Result<MonitorView, ClientError> {
        Ok(self.get_monitor_read(id_or_name).await?.value)
    }

    /// [`Client::get_monitor`], linearizable when asked: the answer reflects
    /// every write committed before the call.
    pub async fn get_monitor_consistent(
        &self,
        id_or_name: &str,
        linearizable: bool,
    ) -> Result<MonitorView, ClientError> {
        let q = if linearizable { "?consistency=linearizable" } else { "" };
        Ok(self.get_read(&format!("/api/v1/monitors/{}{q}", encode_path(id_or_name))).await?.value)
    }

    /// [`Client::get_monitor`] with its staleness.
    pub async fn get_monitor_read(&self, id_or_name: &str) -> Result<Read<MonitorView>, ClientError> {
        self.get_read(&format!("/api/v1/monitors/{}", encode_path(id_or_name))).await
    }

    pub async fn delete_monitor(&self, id_or_name: &str) -> Result<(), ClientError> {
        self.request::<(), serde_json::Value>(
            Method::DELETE,
            &format!("/api/v1/monitors/{}", encode_path(id_or_name)),
            None,
        )
        .await
        .map(|_| ())
    }
}

impl Client {
    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.request(method, path, body).await?.ok_or_else(|| ClientError::Decode { message: "empty body".into() })
    }

    /// Replaces a monitor's definition; `monitor` is the whole new definition.
    pub async fn update_monitor(&self, id_or_name: &str, monitor: &CreateMonitor) -> Result<MonitorView, ClientError> {
        self.send(Method::PUT, &format!("/api/v1/monitors/{}", encode_path(id_or_name)), Some(monitor)).await
    }

    pub async fn pause_monitor(&self, m: &str, paused: bool) -> Result<MonitorView, ClientError> {
        let action = if paused { "pause" } else { "resume" };
        self.send::<(), _>(Method::POST, &format!("/api/v1/monitors/{}/{action}", encode_path(m)), None).await
    }

    pub async fn monitor_nodes(&self, m: &str) -> Result<Vec<NodeView>, ClientError> {
        Ok(self.monitor_nodes_read(m).await?.value)
    }

    /// [`Client::monitor_nodes`] with its staleness.
    pub async fn monitor_nodes_read(&self, m: &str) -> Result<Read<Vec<NodeView>>, ClientError> {
        self.get_read(&format!("/api/v1/monitors/{}/nodes", encode_path(m))).await
    }

    pub async fn history(&self, m: &str, range: &str) -> Result<HistoryView, ClientError> {
        self.get(&format!("/api/v1/monitors/{}/history?range={}", encode_path(m), encode_path(range))).await
    }

    /// `state`: open, triggered, acknowledged, resolved or all.
    pub async fn list_incidents(&self, state: Option<&str>) -> Result<Vec<IncidentView>, ClientError> {
        match state {
            Some(s) => self.get(&format!("/api/v1/incidents?state={}", encode_path(s))).await,
            None => self.get("/api/v1/incidents").await,
        }
    }

    pub async fn get_incident(&self, id: &str) -> Result<IncidentView, ClientError> {
        self.get(&format!("/api/v1/incidents/{}", encode_path(id))).await
    }

    pub async fn declare_incident(&self, body: &DeclareIncident) -> Result<IncidentView, ClientError> {
        self.send(Method::POST, "/api/v1/incidents", Some(body)).await
    }

    /// `action`: ack, resolve, reopen, notes, assign or severity.
    pub async fn incident_action(
        &self,
        id: &str,
        action: &str,
        body: &IncidentAction,
    ) -> Result<IncidentView, ClientError> {
        self.send(Method::POST, &format!("/api/v1/incidents/{}/{action}", encode_path(id)), Some(body)).await
    }

    pub async fn list_maintenance(&self) -> Result<Vec<MaintenanceView>, ClientError> {
        self.get("/api/v1/maintenance").await
    }

    pub async fn create_maintenance(&self, body: &MaintenanceView) -> Result<MaintenanceView, ClientError> {
        self.send(Method::POST, "/api/v1/maintenance", Some(body)).await
    }

    pub async fn delete_maintenance(&self, id: &str) -> Result<(), ClientError> {
        self.request::<(), serde_json::Value>(Method::DELETE, &format!("/api/v1/maintenance/{}", encode_path(id)), None)
            .await
            .map(|_| ())
    }

    pub async fn list_channels(&self) -> Result<Vec<ChannelView>, ClientError> {
        self.get("/api/v1/channels").await
    }

    pub async fn get_channel(&self, name: &str) -> Result<ChannelView, ClientError> {
        self.get(&format!("/api/v1/channels/{}", encode_path(name))).await
    }

    pub async fn create_channel(&self, body: &ChannelView) -> Result<ChannelView, ClientError> {
        self.send(Method::POST, "/api/v1/channels", Some(body)).await
    }

    /// Replaces a channel; secrets left out or sent back as `<redacted>` keep their stored value.
    pub async fn replace_channel(&self, body: &ChannelView) -> Result<ChannelView, ClientError> {
        self.send(Method::PUT, &format!("/api/v1/channels/{}", encode_path(&body.name)), Some(body)).await
    }

    pub async fn delete_channel(&self, name: &str) -> Result<(), ClientError> {
        self.request::<(), serde_json::Value>(Method::DELETE, &format!("/api/v1/channels/{}", encode_path(name)), None)
            .await
            .map(|_| ())
    }

    /// Sends a synthetic alert through the channel; the answer says how it went.
    pub async fn test_channel(&self, name: &str) -> Result<ChannelTestView, ClientError> {
        self.send::<(), _>(Method::POST, &format!("/api/v1/channels/{}/test", encode_path(name)), None).await
    }

    pub async fn incident_deliveries(&self, id: &str) -> Result<Vec<NotificationView>, ClientError> {
        self.get(&format!("/api/v1/incidents/{}/deliveries", encode_path(id))).await
    }

    /// `state`: pending, claimed, sent, failed, dead, due or all.
    pub async fn list_outbox(&self, state: Option<&str>) -> Result<Vec<NotificationView>, ClientError> {
        match state {
            Some(s) => self.get(&format!("/api/v1/outbox?state={}", encode_path(s))).await,
            None => self.get("/api/v1/outbox").await,
        }
    }
}

/// `e` and its sources, each once: a source whose text its parent already
/// printed (`#[error("...: {0}")]` with `#[source]`) is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Percent-encodes a path segment (names may hold spaces or slashes).
fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod not_sent_tests {
    use super::*;

    /// A refused connection is a request never sent; one that was sent and
    /// got no answer (the server closed it) is in doubt.
    #[tokio::test]
    async fn a_refused_connection_is_not_sent_and_a_dropped_answer_is_in_doubt() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let refused = Client::new(&format!("http://{addr}"), None).unwrap().cluster_status().await.unwrap_err();
        assert!(refused.not_sent(), "{refused}");
        assert!(refused.to_string().contains("cannot connect: "), "{refused}");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
                drop(s);
            }
        });
        let dropped = Client::new(&format!("http://{addr}"), None).unwrap().cluster_status().await.unwrap_err();
        assert!(!dropped.not_sent(), "{dropped}");
    }

    /// Issue 12 (jepsen-lite, 30-minute run): a write through a node whose
    /// disk filled was answered `unknown_outcome` (its Raft stopped after the
    /// write was proposed); the client sent it again, the node was gone, and
    /// the client reported the refused retry, "cannot connect", as if nothing
    /// had been sent. The write had committed: a read then saw it. A retry
    /// that says nothing of the write (not sent, no leader) must not hide an
    /// earlier attempt's unknown outcome.
    #[tokio::test]
    async fn a_refused_retry_does_not_hide_an_unknown_first_attempt() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // One answer, then nobody listens: the retry is refused.
            let (mut s, _) = listener.accept().await.unwrap();
            drop(listener);
            let mut buf = vec![0u8; 8192];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"error":{"code":"unknown_outcome","message":"raft stopped after the write was proposed; it may have committed"}}"#;
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(answer.as_bytes()).await.unwrap();
            let _ = s.shutdown().await;
        });
        let client = Client::new(&format!("http://{addr}"), None).unwrap();
        let e = client.delete_monitor("web").await.unwrap_err();
        assert!(!e.not_sent(), "the first attempt may have applied: {e}");
        assert!(
            matches!(&e, ClientError::Api { status: 503, code, .. } if code == "unknown_outcome"),
            "the earlier attempt's unknown outcome: {e}"
        );
    }
}
