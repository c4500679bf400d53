//! An alert receiver for the tests: records every request with its headers,
//! fails on demand, and fences on the leader id in `X-Uptime-Fencing-Token`
//! (`<term>-<node>-<index>`): it keeps the highest leader (term, node) it has
//! accepted and refuses, with 409, and counts, a request from an older one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// What the sink answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// (term, node) of the fencing token.
    pub fn leader(&self) -> Option<(u64, u64)> {
        let token = self.header("x-uptime-fencing-token")?;
        let mut parts = token.split('-').map(|p| p.parse::<u64>().ok());
        Some((parts.next()??, parts.next()??))
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Answer 500 to this many more requests.
    fail_next: usize,
    always_fail: bool,
    highest: Option<(u64, u64)>,
    stale_rejected: usize,
    /// Requests whose token names this term wait, unjudged, until released.
    hold_term: Option<u64>,
    held: usize,
}

#[derive(Clone)]
pub struct Sink {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<tokio::sync::Notify>,
    released: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Sink {
    pub async fn start() -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let sink = Sink {
            url,
            inner: Arc::default(),
            changed: Arc::default(),
            released: Arc::new(tokio::sync::watch::Sender::new(false)),
        };
        let app = Router::new().route("/{*path}", post(receive)).with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        sink
    }

    pub fn fail_next(&self, n: usize) {
        self.inner.lock().unwrap().fail_next = n;
    }

    pub fn always_fail(&self, on: bool) {
        self.inner.lock().unwrap().always_fail = on;
    }

    /// Holds, unanswered and unjudged, every request from leaders of `term`,
    /// as if they were slow on the wire.
    pub fn hold_term(&self, term: u64) {
        self.inner.lock().unwrap().hold_term = Some(term);
    }

    /// Lets held requests through to be judged.
    pub fn release(&self) {
        self.inner.lock().unwrap().hold_term = None;
        self.released.send_replace(true);
    }

    /// Requests waiting in [`Sink::hold_term`].
    pub fn held(&self) -> usize {
        self.inner.lock().unwrap().held
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Requests answered with success.
    pub fn accepted(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.status < 300).collect()
    }

    pub fn stale_rejected(&self) -> usize {
        self.inner.lock().unwrap().stale_rejected
    }

    /// Waits (bounded) until `pred` holds of the requests received.
    pub async fn wait_for(&self, what: &str, limit: std::time::Duration, pred: impl Fn(&[Received]) -> bool) {
        self.wait_until(what, limit, |s| pred(&s.received())).await
    }

    /// Waits (bounded) until `pred` holds of the sink.
    pub async fn wait_until(&self, what: &str, limit: std::time::Duration, pred: impl Fn(&Sink) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if pred(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out after {limit:?} waiting for {what}; received: {:#?}", self.received());
            }
        }
    }
}

async fn receive(State(sink): State<Sink>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let headers: BTreeMap<String, String> =
        headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let mut r =
        Received { path: uri.path().to_string(), headers, body: String::from_utf8_lossy(&body).into(), status: 200 };
    let hold = {
        let mut inner = sink.inner.lock().unwrap();
        let hold = r.leader().is_some_and(|(term, _)| Some(term) == inner.hold_term);
        inner.held += usize::from(hold);
        hold
    };
    if hold {
        sink.changed.notify_waiters();
        let mut rx = sink.released.subscribe();
        let _ = rx.wait_for(|released| *released).await;
        sink.inner.lock().unwrap().held -= 1;
    }
    let status = {
        let mut inner = sink.inner.lock().unwrap();
        let leader = r.leader();
        let status = match (leader, inner.highest) {
            (Some(l), Some(h)) if l < h => {
                inner.stale_rejected += 1;
                StatusCode::CONFLICT
            }
            _ if inner.always_fail => StatusCode::INTERNAL_SERVER_ERROR,
            _ if inner.fail_next > 0 => {
                inner.fail_next -= 1;
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => {
                if let Some(l) = leader {
                    inner.highest = Some(inner.highest.map_or(l, |h| h.max(l)));
                }
                StatusCode::OK
            }
        };
        r.status = status.as_u16();
        inner.received.push(r);
        status
    };
    sink.changed.notify_waiters();
    status
}
