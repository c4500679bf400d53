use std::path::PathBuf;

use crate::SpecError;

/// The prober itself could not run. A target that is down is not an error: it
/// is an [`Outcome`](crate::Outcome) with [`Status::Down`](crate::Status::Down).
/// A node that gets an `Err` for a check knows nothing about the target and
/// must not vote on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid probe configuration: {field}: {message}")]
    Config { field: &'static str, message: String },

    #[error("cannot read the system DNS configuration: {message}")]
    ResolverConfig { message: String },

    #[error("cannot load CA certificates from {path}: {message}")]
    CaFile { path: PathBuf, message: String },

    #[error("cannot build the TLS client: {message}")]
    Tls { message: String },

    /// Neither an unprivileged ICMP datagram socket nor a raw socket could be
    /// opened; `message` says which knob fixes it.
    #[error("cannot open an ICMP socket: {message}")]
    IcmpUnavailable { message: String },

    /// A spec reached the prober without passing validation (an older node
    /// wrote it, or it was built in code).
    #[error("invalid check spec: {0}")]
    Spec(#[from] SpecError),

    #[error("the scheduler has stopped")]
    SchedulerStopped,

    /// A run's timeout passed while it waited for the per-endpoint cap, and
    /// the endpoint kept answering the checks in flight: this node's cap held
    /// the run up, so it says nothing about the target (raise
    /// `max_in_flight_per_endpoint`, or the interval).
    #[error(
        "not checked within its {timeout:?} timeout: {in_flight} checks to {endpoint} were in flight \
         (the per-endpoint cap) and it was answering them; the node's cap, not the target"
    )]
    EndpointBusy { endpoint: String, in_flight: usize, timeout: std::time::Duration },
}
