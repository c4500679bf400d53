//! An HTTP/1.1 server that records each request and answers with a status
//! and body chosen by the test.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::AbortOnDrop;

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("an ASCII header"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a UTF-8 body")
    }
}

type Reply = Arc<dyn Fn(&Recorded) -> (u16, String) + Send + Sync>;

pub struct HttpSink {
    pub addr: SocketAddr,
    scheme: &'static str,
    seen: Arc<Mutex<Vec<Recorded>>>,
    _task: AbortOnDrop,
}

impl HttpSink {
    /// Answers every request `200 ok`.
    pub async fn start() -> HttpSink {
        HttpSink::start_with(None, |_| (200, "ok".into())).await
    }

    /// Answers every request with `status` and `body`.
    pub async fn replying(status: u16, body: &str) -> HttpSink {
        let body = body.to_string();
        HttpSink::start_with(None, move |_| (status, body.clone())).await
    }

    /// `tls`: serve HTTPS with this configuration.
    pub async fn start_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        reply: impl Fn(&Recorded) -> (u16, String) + Send + Sync + 'static,
    ) -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply: Reply = Arc::new(reply);
        let acceptor = tls.map(TlsAcceptor::from);
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let task = tokio::spawn(accept_loop(listener, acceptor, seen.clone(), reply));
        HttpSink { addr, scheme, seen, _task: AbortOnDrop(task) }
    }

    /// `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// The one request the sink saw.
    pub fn only(&self) -> Recorded {
        let seen = self.requests();
        assert_eq!(seen.len(), 1, "expected exactly one request, saw {seen:?}");
        seen.into_iter().next().unwrap()
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    seen: Arc<Mutex<Vec<Recorded>>>,
    reply: Reply,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { return };
        let (seen, reply, acceptor) = (seen.clone(), reply.clone(), acceptor.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, seen.clone(), reply.clone()));
            let http = hyper::server::conn::http1::Builder::new();
            // A client that gives up mid-request is not the sink's failure.
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = http.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                }
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Recorded>>>,
    reply: Reply,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    let (status, text) = reply(&recorded);
    seen.lock().unwrap().push(recorded);
    Ok(Response::builder().status(status).body(Full::new(Bytes::from(text))).unwrap())
}
