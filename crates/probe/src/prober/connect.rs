//! Resolve, connect and handshake, each phase timed and capped: the steps the
//! HTTP, TCP and TLS checks share.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::Inner;
use crate::{CheckError, ErrorKind, Phase};

pub(super) fn fail(kind: ErrorKind, phase: Phase, message: impl Into<String>) -> CheckError {
    CheckError { kind, phase: Some(phase), message: message.into() }
}

/// When a phase with its own `limit` must end: its limit or the check's
/// deadline, whichever comes first.
pub(super) fn phase_deadline(deadline: Instant, limit: Duration) -> Instant {
    deadline.min(Instant::now() + limit)
}

/// Addresses for `host` (an IP literal needs no lookup, and reports no DNS
/// phase), with the time the lookup took.
pub(super) async fn resolve(
    p: &Inner,
    host: &str,
    deadline: Instant,
) -> Result<(Vec<IpAddr>, Option<Duration>), CheckError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((vec![ip], None));
    }
    let start = Instant::now();
    let lookup = timeout_at(phase_deadline(deadline, p.config.dns_timeout), p.resolver.lookup_ip(host))
        .await
        .map_err(|_| {
            fail(ErrorKind::Timeout, Phase::Dns, format!("resolving {host} timed out after {:?}", start.elapsed()))
        })?
        .map_err(|e| fail(ErrorKind::Dns, Phase::Dns, format!("resolving {host}: {e}")))?;
    let addrs: Vec<IpAddr> = lookup.iter().collect();
    if addrs.is_empty() {
        return Err(fail(ErrorKind::Dns, Phase::Dns, format!("{host} has no A or AAAA records")));
    }
    Ok((addrs, Some(start.elapsed())))
}

/// Connects to the first of `addrs` that answers on `port`. The connect time
/// covers every attempt, as a client trying them in turn would see it.
pub(super) async fn connect(
    p: &Inner,
    addrs: &[IpAddr],
    port: u16,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr, Duration), CheckError> {
    let start = Instant::now();
    let mut last = None;
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        let source = p.config.source_addrs.iter().find(|s| s.is_ipv4() == ip.is_ipv4()).copied();
        match timeout_at(phase_deadline(deadline, p.config.connect_timeout), connect_from(source, addr)).await {
            // No TCP_NODELAY: a check writes its request in one call, which
            // Nagle never holds back, and the syscall is a tenth of a check's.
            Ok(Ok(stream)) => return Ok((stream, addr, start.elapsed())),
            Ok(Err(e)) => last = Some(connect_error(addr, &e)),
            Err(_) => {
                last = Some(fail(
                    ErrorKind::Timeout,
                    Phase::Connect,
                    format!("connect to {addr} timed out after {:?}", start.elapsed()),
                ))
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(last.unwrap_or_else(|| fail(ErrorKind::Connect, Phase::Connect, "no address to connect to")))
}

/// Connects to `addr`, from `source` when one is configured for its family.
async fn connect_from(source: Option<IpAddr>, addr: SocketAddr) -> io::Result<TcpStream> {
    let Some(source) = source else { return TcpStream::connect(addr).await };
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

fn connect_error(addr: SocketAddr, e: &io::Error) -> CheckError {
    let kind = if e.kind() == io::ErrorKind::ConnectionRefused { ErrorKind::Refused } else { ErrorKind::Connect };
    fail(kind, Phase::Connect, format!("connect to {addr}: {e}"))
}

/// A TLS handshake over `tcp` presenting `server_name`. The configuration
/// accepts any certificate (see `tls::AcceptAnyCert`); callers verify the chain
/// afterwards so they can still read an invalid one.
pub(super) async fn handshake(
    p: &Inner,
    config: Arc<rustls::ClientConfig>,
    tcp: TcpStream,
    server_name: &str,
    deadline: Instant,
) -> Result<(TlsStream<TcpStream>, Duration), CheckError> {
    let start = Instant::now();
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| fail(ErrorKind::Tls, Phase::Tls, format!("{server_name:?} is not a TLS server name: {e}")))?;
    let stream =
        timeout_at(phase_deadline(deadline, p.config.tls_timeout), TlsConnector::from(config).connect(name, tcp))
            .await
            .map_err(|_| {
                fail(ErrorKind::Timeout, Phase::Tls, format!("TLS handshake timed out after {:?}", start.elapsed()))
            })?
            .map_err(|e| fail(ErrorKind::Tls, Phase::Tls, format!("TLS handshake with {server_name}: {e}")))?;
    Ok((stream, start.elapsed()))
}
