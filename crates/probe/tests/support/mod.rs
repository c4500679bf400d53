//! Real local servers for the check tests: a small HTTP/1.1 server (plain or
//! TLS) with routes for each behaviour a check must judge, certificates made
//! with rcgen, a DNS responder, and TCP listeners. Everything binds 127.0.0.1
//! (or ::1) on port 0.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;
use uptime_probe::{Config, Prober};

/// A prober that never asks the machine's resolvers: names resolve through
/// `nameservers` only (tests use IP literals or a local responder).
pub fn prober_with(nameservers: Vec<SocketAddr>, f: impl FnOnce(&mut Config)) -> Prober {
    let mut config = Config { nameservers, webpki_roots: false, ..Config::default() };
    if config.nameservers.is_empty() {
        // A discard address: nothing listens, so a stray lookup fails fast and locally.
        config.nameservers = vec!["127.0.0.1:9".parse().unwrap()];
    }
    f(&mut config);
    Prober::new(config).unwrap()
}

pub fn prober() -> Prober {
    prober_with(Vec::new(), |_| {})
}

// === HTTP ===

/// Routes:
/// - `/status/{code}`: that status.
/// - `/overloaded`: 503 with `Retry-After`.
/// - `/slow/{ms}`: 200 after `ms` milliseconds.
/// - `/redirect/{n}`: 302 to `/redirect/{n-1}`; `/redirect/0` is 200 "landed".
/// - `/absolute-redirect`: 301 to this server's `/status/200` as an absolute URL.
/// - `/loop`: 302 to itself.
/// - `/see-other`: 303 to `/echo`.
/// - `/body`: 200 "hello uptime world".
/// - `/huge-end`: 64 MiB body with `NEEDLE` in its last bytes.
/// - `/huge-start`: 64 MiB body starting with `NEEDLE`.
/// - `/trickle`: headers, then one body byte every 100 ms.
/// - `/echo`: 200 with the request head and body as the body.
/// - `/to/{port}/{path…}`: 302 to `http://127.0.0.1:{port}/{path…}`, another origin.
/// - `/gzip`, `/br`: 200 "hello uptime world", compressed, with `Content-Encoding`.
/// - `/gzip-bomb`: 64 MiB of zeros gzipped (64 KiB on the wire), no `NEEDLE`.
/// - `/gzip-long`: 2 MiB gzipped text ending in `</html>`.
/// - anything else: 404.
pub async fn http_server(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    http_server_on("127.0.0.1:0", tls).await
}

pub const NEEDLE: &str = "needle-7f3a";
const HUGE: usize = 64 << 20;

pub async fn http_server_on(bind: &str, tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            serve(tls, addr).await;
                        }
                    }
                    None => serve(stream, addr).await,
                }
            });
        }
    });
    addr
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, me: SocketAddr) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let content_length = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; content_length];
    if s.read_exact(&mut body).await.is_err() {
        return;
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let _ = match parts.as_slice() {
        ["status", code] => {
            respond(&mut s, code.parse().unwrap_or(500), &[], format!("status {code}").as_bytes()).await
        }
        ["overloaded"] => respond(&mut s, 503, &[("Retry-After", "30")], b"busy").await,
        ["slow", ms] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            respond(&mut s, 200, &[], b"slow but here").await
        }
        ["redirect", "0"] => respond(&mut s, 200, &[], b"landed").await,
        ["redirect", n] => {
            let next = format!("/redirect/{}", n.parse::<u32>().unwrap_or(1) - 1);
            respond(&mut s, 302, &[("Location", &next)], b"").await
        }
        ["absolute-redirect"] => {
            let to = format!("http://{me}/status/200");
            respond(&mut s, 301, &[("Location", &to)], b"").await
        }
        ["loop"] => respond(&mut s, 302, &[("Location", "/loop")], b"").await,
        ["see-other"] => respond(&mut s, 303, &[("Location", "/echo")], b"").await,
        ["body"] => respond(&mut s, 200, &[], b"hello uptime world").await,
        ["huge-end"] => huge(&mut s, false).await,
        ["huge-start"] => huge(&mut s, true).await,
        ["trickle"] => {
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if s.write_all(b"x").await.is_err() || s.flush().await.is_err() {
                    return;
                }
            }
            Ok(())
        }
        ["to", port, rest @ ..] => {
            let to = format!("http://127.0.0.1:{port}/{}", rest.join("/"));
            respond(&mut s, 302, &[("Location", &to)], b"").await
        }
        ["gzip"] => respond(&mut s, 200, &[("Content-Encoding", "gzip")], &gzip(b"hello uptime world")).await,
        ["br"] => respond(&mut s, 200, &[("Content-Encoding", "br")], &brotli_stored(b"hello uptime world")).await,
        ["gzip-bomb"] => respond(&mut s, 200, &[("Content-Encoding", "gzip")], &gzip(&vec![0u8; HUGE])).await,
        ["gzip-long"] => {
            let mut page = vec![b'x'; 2 << 20];
            page.extend_from_slice(b"</html>");
            respond(&mut s, 200, &[("Content-Encoding", "gzip")], &gzip(&page)).await
        }
        ["echo"] => {
            let mut all = head.clone();
            all.extend_from_slice(&body);
            respond(&mut s, 200, &[], &all).await
        }
        _ => respond(&mut s, 404, &[], b"not found").await,
    };
    let _ = s.shutdown().await;
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A brotli stream (RFC 7932) holding `data` in one uncompressed meta-block:
/// no encoder needed, and every decoder must read it.
pub fn brotli_stored(data: &[u8]) -> Vec<u8> {
    assert!(!data.is_empty() && data.len() <= 1 << 16);
    let l = (data.len() - 1) as u32;
    // WBITS=16 (bit 0 = 0), ISLAST=0, MNIBBLES=4 (00), MLEN-1 in 16 bits, ISUNCOMPRESSED=1.
    let bits: u32 = (l << 4) | (1 << 20);
    let mut out = vec![bits as u8, (bits >> 8) as u8, (bits >> 16) as u8];
    out.extend_from_slice(data);
    // ISLAST=1, ISLASTEMPTY=1.
    out.push(0b11);
    out
}

async fn respond<S: AsyncWrite + Unpin>(
    s: &mut S,
    code: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let reason = http::StatusCode::from_u16(code).ok().and_then(|c| c.canonical_reason()).unwrap_or("Unknown");
    let mut out = format!("HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).await?;
    s.flush().await
}

/// Streams a 64 MiB body; stops quietly when the client hangs up, which a
/// check that found (or gave up on) its match does.
async fn huge<S: AsyncWrite + Unpin>(s: &mut S, needle_first: bool) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {HUGE}\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await?;
    let chunk = vec![b'.'; 64 * 1024];
    let mut left = HUGE;
    if needle_first {
        s.write_all(NEEDLE.as_bytes()).await?;
        left -= NEEDLE.len();
    }
    while left > if needle_first { 0 } else { NEEDLE.len() } {
        let reserve = if needle_first { 0 } else { NEEDLE.len() };
        let n = chunk.len().min(left - reserve);
        s.write_all(&chunk[..n]).await?;
        left -= n;
    }
    if !needle_first {
        s.write_all(NEEDLE.as_bytes()).await?;
    }
    s.flush().await
}

// === TLS ===

/// Unix time of the test certificates' `not_after` for [`Pki::leaf`] with `expired: false`.
pub const VALID_UNTIL: u64 = 4_102_444_800; // 2100-01-01T00:00:00Z

/// A private CA and leaves it signs.
pub struct Pki {
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    pub ca: CertificateDer<'static>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "Uptime Test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap().der().clone();
        Pki { ca_params: params, ca_key: key, ca }
    }

    /// A server config presenting a leaf for `names`, valid 2000–2100, or
    /// expired since 2001 when `expired`.
    pub fn server(&self, names: &[&str], expired: bool) -> Arc<rustls::ServerConfig> {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = if expired { rcgen::date_time_ymd(2001, 1, 1) } else { rcgen::date_time_ymd(2100, 1, 1) };
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let leaf = params.signed_by(&key, &issuer).unwrap().der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf, self.ca.clone()], key)
            .unwrap();
        Arc::new(config)
    }
}

/// A clock at `secs` after the Unix epoch.
pub fn clock_at(secs: u64) -> uptime_probe::Clock {
    Arc::new(move || UNIX_EPOCH + Duration::from_secs(secs))
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// === TCP ===

/// A listener that writes `banner` (if any) to each connection, then echoes
/// what it reads.
pub async fn tcp_server(banner: Option<&'static str>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                if let Some(b) = banner {
                    if s.write_all(b.as_bytes()).await.is_err() {
                        return;
                    }
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// An address nothing listens on: bound, then released.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// === DNS ===

/// A UDP DNS responder answering from a table the test may change; NXDOMAIN
/// for names it does not know. `queries` counts what it received.
pub struct DnsServer {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    table: Arc<std::sync::Mutex<Table>>,
    /// The SOA minimum of negative answers: how long resolvers may cache them.
    pub negative_ttl: Arc<std::sync::atomic::AtomicU32>,
    /// Reads AAAA queries and never answers them, as some broken resolvers do.
    pub drop_aaaa: Arc<std::sync::atomic::AtomicBool>,
}

type Table = HashMap<(String, RecordType), Vec<Record>>;

fn key(name: &str) -> (String, Name) {
    let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).unwrap();
    (fqdn.to_ascii().to_ascii_lowercase(), fqdn)
}

impl DnsServer {
    /// Adds a record.
    pub fn insert(&self, name: &str, ttl: u32, data: RData) {
        let (k, fqdn) = key(name);
        let mut table = self.table.lock().unwrap();
        table.entry((k, data.record_type())).or_default().push(Record::from_rdata(fqdn, ttl, data));
    }

    /// Removes every record of `name`.
    pub fn remove(&self, name: &str) {
        let (k, _) = key(name);
        self.table.lock().unwrap().retain(|(n, _), _| *n != k);
    }
}

pub async fn dns_server(records: Vec<(&str, u32, RData)>) -> DnsServer {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let server = DnsServer {
        addr,
        queries: Arc::new(AtomicUsize::new(0)),
        table: Arc::default(),
        negative_ttl: Arc::new(std::sync::atomic::AtomicU32::new(300)),
        drop_aaaa: Arc::default(),
    };
    for (name, ttl, data) in records {
        server.insert(name, ttl, data);
    }
    let counter = server.queries.clone();
    let table = server.table.clone();
    let negative_ttl = server.negative_ttl.clone();
    let drop_aaaa = server.drop_aaaa.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
            let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            reply.metadata.recursion_desired = query.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            reply.metadata.authoritative = true;
            if let Some(q) = query.queries.first() {
                if q.query_type() == RecordType::AAAA && drop_aaaa.load(Ordering::SeqCst) {
                    continue;
                }
                reply.add_query(q.clone());
                let name = q.name().to_ascii().to_ascii_lowercase();
                let table = table.lock().unwrap().clone();
                match table.get(&(name.clone(), q.query_type())) {
                    Some(answers) => {
                        reply.add_answers(answers.iter().cloned());
                    }
                    // Negative answers carry an SOA, whose minimum is how long
                    // resolvers may cache them (RFC 2308).
                    None => {
                        if !table.keys().any(|(n, _)| *n == name) {
                            reply.metadata.response_code = ResponseCode::NXDomain;
                        }
                        let ttl = negative_ttl.load(Ordering::SeqCst);
                        let zone = Name::from_ascii("test.").unwrap();
                        let soa = SOA::new(zone.clone(), Name::from_ascii("admin.test.").unwrap(), 1, 60, 60, 60, ttl);
                        reply.authorities.push(Record::from_rdata(zone, ttl, RData::SOA(soa)));
                    }
                }
            }
            let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
        }
    });
    server
}

/// A UDP socket that reads queries and never answers.
pub async fn silent_udp() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while socket.recv_from(&mut buf).await.is_ok() {}
    });
    addr
}

/// A TCP listener that accepts and then neither reads nor writes.
pub async fn silent_tcp() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

/// A listener whose accept queue is full and never drained, so the kernel
/// drops further SYNs and a connect hangs. Returns the address and the
/// sockets that must stay alive for it to stay full.
pub async fn full_backlog() -> (SocketAddr, Vec<tokio::net::TcpStream>, tokio::net::TcpListener) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    // A backlog of 1 holds two completed connections; a few more make sure
    // the queue is full whatever the kernel rounds it to.
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(100), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
    }
    (addr, fillers, listener)
}
