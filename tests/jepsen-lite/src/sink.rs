//! The alert sink every run delivers to: it records each request (arrival
//! time, path, headers, body) and fences on the leader in
//! `X-Uptime-Fencing-Token: <term>-<node>-<index>`: it keeps the highest
//! (term, node) it has accepted and refuses, with 409, and counts, a request
//! whose token names an older leader. What it accepted is what a receiver that
//! fences would have acted on; the checkers count duplicates by
//! `Idempotency-Key` over the accepted requests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

/// One request as the sink saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Wall clock at arrival, Unix milliseconds.
    pub at_ms: u64,
    pub path: String,
    pub idempotency_key: Option<String>,
    /// (term, node, index) from the fencing token, when it has one.
    pub fence: Option<(u64, u64, u64)>,
    pub accepted: bool,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// Parses `<term>-<node>-<index>`.
pub fn parse_fence(token: &str) -> Option<(u64, u64, u64)> {
    let mut parts = token.split('-').map(|p| p.parse::<u64>().ok());
    let fence = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(fence)
}

/// The fencing rule, apart from the transport.
#[derive(Debug, Default)]
pub struct Fence {
    highest: Option<(u64, u64)>,
    pub stale_rejected: u64,
}

impl Fence {
    /// Whether a request under `fence` is accepted; a request without a
    /// token (an unfenced notice) always is.
    pub fn admit(&mut self, fence: Option<(u64, u64, u64)>) -> bool {
        let Some((term, node, _)) = fence else { return true };
        let leader = (term, node);
        if self.highest.is_some_and(|h| leader < h) {
            self.stale_rejected += 1;
            return false;
        }
        self.highest = Some(self.highest.map_or(leader, |h| h.max(leader)));
        true
    }
}

#[derive(Default)]
struct Inner {
    fence: Fence,
    deliveries: Vec<Delivery>,
}

#[derive(Clone)]
pub struct Sink {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Sink {
    /// Listens on `addr` (`127.0.0.1:0` for any free port).
    pub async fn start(addr: &str) -> std::io::Result<Sink> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let sink = Sink { url, inner: Arc::default() };
        let app = Router::new().route("/{*path}", post(receive)).with_state(sink.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(sink)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.lock().unwrap().deliveries.clone()
    }

    pub fn stale_rejected(&self) -> u64 {
        self.inner.lock().unwrap().fence.stale_rejected
    }

    /// Every delivery as one JSON object a line.
    pub fn to_jsonl(&self) -> String {
        self.deliveries().iter().filter_map(|d| serde_json::to_string(d).ok()).map(|l| l + "\n").collect()
    }
}

async fn receive(State(sink): State<Sink>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let headers: BTreeMap<String, String> =
        headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let fence = headers.get("x-uptime-fencing-token").and_then(|t| parse_fence(t));
    let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut inner = sink.inner.lock().unwrap();
    let accepted = inner.fence.admit(fence);
    inner.deliveries.push(Delivery {
        at_ms,
        path: uri.path().to_string(),
        idempotency_key: headers.get("idempotency-key").cloned(),
        fence,
        accepted,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if accepted {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_keeps_the_highest_leader_and_refuses_older_ones() {
        let mut f = Fence::default();
        assert!(f.admit(Some((3, 1, 10))));
        assert!(f.admit(Some((3, 1, 12))), "the same leader, a later claim");
        assert!(f.admit(Some((4, 2, 15))), "a newer leader");
        assert!(!f.admit(Some((3, 1, 20))), "the old leader, even with a higher index");
        assert!(!f.admit(Some((4, 1, 21))), "same term, lower node: another leader in openraft terms");
        assert!(f.admit(None), "an unfenced notice");
        assert_eq!(f.stale_rejected, 2);
        assert_eq!(parse_fence("7-3-99"), Some((7, 3, 99)));
        assert_eq!(parse_fence("unfenced"), None);
        assert_eq!(parse_fence("1-2-3-4"), None);
    }

    #[tokio::test]
    async fn the_sink_records_and_refuses_over_http() {
        let sink = Sink::start("127.0.0.1:0").await.unwrap();
        let post = |token: &'static str| {
            let url = format!("{}/hook", sink.url);
            async move {
                let body = format!("POST /hook HTTP/1.1\r\nhost: x\r\nidempotency-key: 5\r\nx-uptime-fencing-token: {token}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}");
                let addr = url.trim_start_matches("http://").split('/').next().unwrap().to_string();
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                s.write_all(body.as_bytes()).await.unwrap();
                let mut reply = String::new();
                s.read_to_string(&mut reply).await.unwrap();
                reply
            }
        };
        assert!(post("5-2-40").await.starts_with("HTTP/1.1 200"));
        assert!(post("4-1-41").await.starts_with("HTTP/1.1 409"));
        let d = sink.deliveries();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].idempotency_key.as_deref(), Some("5"));
        assert_eq!((d[0].accepted, d[1].accepted), (true, false));
        assert_eq!(sink.stale_rejected(), 1);
        assert_eq!(sink.to_jsonl().lines().count(), 2);
    }
}
