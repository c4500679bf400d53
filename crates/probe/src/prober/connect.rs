//! Resolve, connect and handshake, each phase timed and bounded by the check's
//! deadline: the steps the HTTP, TCP and TLS checks share.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};

use super::Inner;
use crate::error::local;
use crate::{CheckError, Error, ErrorKind, LocalCause, Phase};

/// How long the other address family may still answer once one has (RFC 8305
/// §3 recommends 50 ms).
const RESOLUTION_DELAY: Duration = Duration::from_millis(50);

/// The addresses in an A or AAAA answer (a CNAME chain's other records aside).
fn addresses(lookup: &Lookup) -> impl Iterator<Item = IpAddr> + '_ {
    lookup.answers().iter().filter_map(|r| match &r.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    })
}

pub(super) fn fail(kind: ErrorKind, phase: Phase, message: impl Into<String>) -> CheckError {
    CheckError { kind, phase: Some(phase), message: message.into() }
}

/// Why a step did not succeed: the target's doing (a down outcome), or this
/// node's own trouble (an `Err`: "could not check", no vote).
#[derive(Debug)]
pub(super) enum Failure {
    Target(CheckError),
    Local(Error),
}

impl From<CheckError> for Failure {
    fn from(e: CheckError) -> Self {
        Failure::Target(e)
    }
}

impl Failure {
    /// The outcome of a check that ended in this failure after `latency`.
    pub(super) fn outcome(self, latency: Duration) -> Result<crate::Outcome, Error> {
        match self {
            Failure::Target(e) => Ok(crate::Outcome::from_error(e, latency)),
            Failure::Local(e) => Err(e),
        }
    }
}

/// A resolver error that is this node's trouble (no descriptor for the query's
/// socket), not the name's.
pub(super) fn local_dns_failure(host: &str, e: &NetError) -> Option<Failure> {
    let NetError::Io(io) = e else { return None };
    let cause = LocalCause::of(io, false)?;
    Some(Failure::Local(local(cause, format_args!("resolving {host}"), io)))
}

/// Addresses for `host` (an IP literal needs no lookup, and reports no DNS
/// phase), with the time the lookup took.
pub(super) async fn resolve(
    p: &Inner,
    host: &str,
    deadline: Instant,
) -> Result<(Vec<IpAddr>, Option<Duration>), Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((vec![ip], None));
    }
    let start = Instant::now();
    let timed_out_error =
        || fail(ErrorKind::Timeout, Phase::Dns, format!("resolving {host} timed out after {:?}", start.elapsed()));
    // Both families are asked at once and the first that answers with
    // addresses is used (RFC 8305 §3): a resolver that drops AAAA queries, or
    // a slow one, does not hold the check. The other family gets
    // `RESOLUTION_DELAY` more, so a dual-stack name keeps both.
    let mut v4 = std::pin::pin!(super::lookup(&p.resolver, host, RecordType::A, deadline));
    let mut v6 = std::pin::pin!(super::lookup(&p.resolver, host, RecordType::AAAA, deadline));
    let (mut a, mut aaaa) = (None, None);
    let has_addrs =
        |r: &Option<Option<Result<Lookup, NetError>>>| matches!(r, Some(Some(Ok(l))) if addresses(l).next().is_some());
    while a.is_none() || aaaa.is_none() {
        tokio::select! {
            r = &mut v4, if a.is_none() => a = Some(r),
            r = &mut v6, if aaaa.is_none() => aaaa = Some(r),
        }
        if has_addrs(&a) || has_addrs(&aaaa) {
            let grace = deadline.min(Instant::now() + RESOLUTION_DELAY);
            if a.is_none() {
                a = timeout_at(grace, &mut v4).await.ok();
            }
            if aaaa.is_none() {
                aaaa = timeout_at(grace, &mut v6).await.ok();
            }
            break;
        }
    }
    let mut addrs = Vec::new();
    for r in [&a, &aaaa] {
        if let Some(Some(Ok(l))) = r {
            addrs.extend(addresses(l));
        }
    }
    if addrs.is_empty() {
        let error = |r: Option<Option<Result<Lookup, NetError>>>| match r {
            Some(Some(Err(e))) => Some(e),
            _ => None,
        };
        let timed_out = matches!(a, Some(None)) || matches!(aaaa, Some(None));
        let (a, aaaa) = (error(a), error(aaaa));
        if let Some(local) = a.iter().chain(aaaa.iter()).find_map(|e| local_dns_failure(host, e)) {
            return Err(local);
        }
        // The A answer's error is the one people expect to read.
        return Err(Failure::Target(match a.or(aaaa) {
            Some(e) if e.is_nx_domain() => {
                fail(ErrorKind::Dns, Phase::Dns, format!("{host} does not exist (NXDOMAIN)"))
            }
            Some(e) if !e.is_no_records_found() => fail(ErrorKind::Dns, Phase::Dns, format!("resolving {host}: {e}")),
            _ if timed_out => timed_out_error(),
            _ => fail(ErrorKind::Dns, Phase::Dns, format!("{host} has no A or AAAA records")),
        }));
    }
    Ok((addrs, Some(start.elapsed())))
}

/// Connects to the first of `addrs` that answers on `port`. The connect time
/// covers every attempt, as a client trying them in turn would see it.
///
/// Each attempt gets an equal share of what is left of the deadline, so one
/// address that hangs does not use up the time of those after it. A local
/// failure on one address (its family has no source address here, say) moves
/// on to the next; it is the answer only when no address gave one about the
/// target.
pub(super) async fn connect(
    p: &Inner,
    addrs: &[IpAddr],
    port: u16,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr, Duration), Failure> {
    let start = Instant::now();
    let mut last = None;
    let mut local_failure = None;
    for (i, ip) in addrs.iter().enumerate() {
        let addr = SocketAddr::new(*ip, port);
        let source = p.config.source_addrs.iter().find(|s| s.is_ipv4() == ip.is_ipv4()).copied();
        let left = u32::try_from(addrs.len() - i).unwrap_or(u32::MAX).max(1);
        let attempt_deadline = Instant::now() + deadline.saturating_duration_since(Instant::now()) / left;
        match timeout_at(attempt_deadline, connect_from(source, addr)).await {
            // No TCP_NODELAY: a check writes its request in one call, which
            // Nagle never holds back, and the syscall is a tenth of a check's.
            Ok(Ok(stream)) => return Ok((stream, addr, start.elapsed())),
            Ok(Err(ConnectError::Bind(source, e))) => {
                let cause = LocalCause::of(&e, true).unwrap_or(LocalCause::LocalAddress);
                local_failure = Some(local(
                    cause,
                    format_args!(
                        "binding the configured source address {source} (probe.source_addrs) to connect to {addr}"
                    ),
                    &e,
                ));
            }
            Ok(Err(ConnectError::Connect(e))) => match LocalCause::of(&e, false) {
                Some(cause) => local_failure = Some(local(cause, format_args!("connecting to {addr}"), &e)),
                None => last = Some(connect_error(addr, &e)),
            },
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
    match (last, local_failure) {
        (Some(target), _) => Err(Failure::Target(target)),
        (None, Some(local)) => Err(Failure::Local(local)),
        (None, None) => Err(Failure::Target(fail(ErrorKind::Connect, Phase::Connect, "no address to connect to"))),
    }
}

enum ConnectError {
    /// The configured source address could not be bound: nothing was sent.
    Bind(IpAddr, io::Error),
    Connect(io::Error),
}

/// Connects to `addr`, from `source` when one is configured for its family.
async fn connect_from(source: Option<IpAddr>, addr: SocketAddr) -> Result<TcpStream, ConnectError> {
    let Some(source) = source else { return TcpStream::connect(addr).await.map_err(ConnectError::Connect) };
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
        .map_err(ConnectError::Connect)?;
    socket.bind(SocketAddr::new(source, 0)).map_err(|e| ConnectError::Bind(source, e))?;
    socket.connect(addr).await.map_err(ConnectError::Connect)
}

fn connect_error(addr: SocketAddr, e: &io::Error) -> CheckError {
    let kind = if e.kind() == io::ErrorKind::ConnectionRefused { ErrorKind::Refused } else { ErrorKind::Connect };
    fail(kind, Phase::Connect, format!("connect to {addr}: {e}"))
}

/// A TLS handshake over `tcp` presenting `server_name`. The configuration
/// accepts any certificate (see `tls::AcceptAnyCert`); callers verify the chain
/// afterwards so they can still read an invalid one.
pub(super) async fn handshake(
    config: Arc<rustls::ClientConfig>,
    tcp: TcpStream,
    server_name: &str,
    deadline: Instant,
) -> Result<(TlsStream<TcpStream>, Duration), CheckError> {
    let start = Instant::now();
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| fail(ErrorKind::Tls, Phase::Tls, format!("{server_name:?} is not a TLS server name: {e}")))?;
    let stream = timeout_at(deadline, TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| {
            fail(ErrorKind::Timeout, Phase::Tls, format!("TLS handshake timed out after {:?}", start.elapsed()))
        })?
        .map_err(|e| fail(ErrorKind::Tls, Phase::Tls, format!("TLS handshake with {server_name}: {e}")))?;
    Ok((stream, start.elapsed()))
}
