//! What one run of a check found. A failed check is an [`Outcome`] with
//! [`Status::Down`], never an `Err`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The verdict of one check from one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    Up,
    /// Reachable but not healthy: a 429 (or a 503 with Retry-After) nobody expected, a certificate
    /// near expiry, round trips over the limit.
    Degraded,
    Down,
}

/// Why a check was not up, coarse enough to aggregate and alert on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// A phase or the whole check ran out of time.
    Timeout,
    /// The name did not resolve (or the DNS check's query failed).
    Dns,
    /// The connection was actively refused (nothing listens).
    Refused,
    /// Any other failure to connect: unreachable network, reset.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// The certificate is expired, expires soon, or its chain or name do not verify.
    Certificate,
    /// The server spoke, but not valid HTTP (or closed mid-answer).
    Protocol,
    /// An HTTP status that was not expected.
    Status,
    /// The body did not contain or match what was expected.
    Body,
    /// The TCP banner did not contain what was expected.
    Banner,
    /// ICMP requests went unanswered beyond the threshold.
    PacketLoss,
    /// Answered, but slower than the limit.
    Slow,
    /// The DNS answer lacked an expected value, or was empty.
    DnsAnswer,
    /// Too many redirects.
    Redirect,
    /// A local I/O error while talking to the target.
    Io,
}

/// Where in a check something happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    Dns,
    Connect,
    Tls,
    /// From sending the request to the first byte of the answer.
    FirstByte,
    /// Reading the body or banner.
    Body,
    /// The check as a whole.
    Total,
}

/// The error half of a non-up outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckError {
    pub kind: ErrorKind,
    /// The phase it happened in, where the check has phases.
    pub phase: Option<Phase>,
    /// One line for people: what was seen, and against what expectation.
    pub message: String,
}

/// How long each phase of a connection-oriented check took. A phase that did
/// not happen (no DNS for an IP literal, no TLS for `http://`, or a phase never
/// reached because an earlier one failed) is `None`. Across redirects each
/// phase is the sum over hops, as curl reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phases {
    pub dns: Option<Duration>,
    pub connect: Option<Duration>,
    pub tls: Option<Duration>,
    /// Request sent to response head received.
    pub first_byte: Option<Duration>,
    pub total: Duration,
}

/// What a check of a given kind saw besides its verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Detail {
    #[default]
    None,
    Http(HttpDetail),
    Tcp(TcpDetail),
    Tls(CertInfo),
    Icmp(IcmpDetail),
    Dns(DnsDetail),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpDetail {
    /// Status of the last answer, if one arrived.
    pub status_code: Option<u16>,
    /// Redirects followed.
    pub redirects: u8,
    /// Body bytes read; 0 when no body match asked for them.
    pub body_bytes: u64,
    /// The address of the last hop's connection.
    pub remote: Option<SocketAddr>,
    /// The URL that gave the last answer.
    pub final_url: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpDetail {
    pub remote: Option<SocketAddr>,
    /// The first bytes read (lossy UTF-8, capped), when a banner was expected.
    pub banner: Option<String>,
}

/// The leaf certificate a TLS check read, valid chain or not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// Whole days until `not_after`, negative once expired.
    pub days_left: i64,
    /// Whether the chain verified against the trusted roots for the server name.
    pub chain_valid: bool,
    /// Why it did not, when it did not.
    pub chain_error: Option<String>,
    pub remote: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpDetail {
    pub sent: u16,
    pub received: u16,
    pub rtt_min: Option<Duration>,
    pub rtt_avg: Option<Duration>,
    pub rtt_max: Option<Duration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsDetail {
    /// Answers in the form [`crate::DnsRecordType`] documents, sorted.
    pub answers: Vec<String>,
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    /// Present exactly when `status` is not `Up`.
    pub error: Option<CheckError>,
    /// Wall time of the whole check (for HTTP, all hops).
    pub latency: Duration,
    /// Phase timings, for HTTP and TLS checks.
    pub phases: Option<Phases>,
    pub detail: Detail,
}

// === impl Outcome ===

impl Outcome {
    pub fn up(latency: Duration) -> Outcome {
        Outcome { status: Status::Up, error: None, latency, phases: None, detail: Detail::None }
    }

    pub fn down(kind: ErrorKind, phase: Option<Phase>, message: impl Into<String>, latency: Duration) -> Outcome {
        Outcome::failed(Status::Down, kind, phase, message, latency)
    }

    pub fn degraded(kind: ErrorKind, phase: Option<Phase>, message: impl Into<String>, latency: Duration) -> Outcome {
        Outcome::failed(Status::Degraded, kind, phase, message, latency)
    }

    fn failed(
        status: Status,
        kind: ErrorKind,
        phase: Option<Phase>,
        message: impl Into<String>,
        latency: Duration,
    ) -> Outcome {
        Outcome {
            status,
            error: Some(CheckError { kind, phase, message: message.into() }),
            latency,
            phases: None,
            detail: Detail::None,
        }
    }

    /// A down outcome for `error`.
    pub fn from_error(error: CheckError, latency: Duration) -> Outcome {
        Outcome { status: Status::Down, error: Some(error), latency, phases: None, detail: Detail::None }
    }

    pub fn with_phases(mut self, phases: Phases) -> Outcome {
        self.phases = Some(phases);
        self
    }

    pub fn with_detail(mut self, detail: Detail) -> Outcome {
        self.detail = detail;
        self
    }

    /// The error kind, if the check was not up.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.error.as_ref().map(|e| e.kind)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Up => "up",
            Status::Degraded => "degraded",
            Status::Down => "down",
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {:?}", self.status, self.latency)?;
        if let Some(e) = &self.error {
            write!(f, ": {:?}", e.kind)?;
            if let Some(p) = e.phase {
                write!(f, " during {p:?}")?;
            }
            write!(f, ": {}", e.message)?;
        }
        Ok(())
    }
}
