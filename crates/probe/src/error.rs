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

    /// This node lacks something it needs to run the check: file descriptors,
    /// buffer space, memory, a local address, permission. It says nothing
    /// about the target, so the node must not vote on it; `message` names the
    /// local cause and what fixes it.
    #[error("this node could not run the check: {message}")]
    LocalResource { cause: LocalCause, message: String },

    /// A `body_regex` check whose body was longer than `max_body_bytes`. A
    /// regex over a prefix can match what the whole body would not (`$`, a
    /// greedy class), so no verdict is given. This is "could not check", not
    /// DOWN: the target answered and may be fine; what is missing is this
    /// node's read limit, which is the operator's to raise (or the spec's to
    /// change to `body_contains`). A DOWN would page for an outage that is not
    /// there. The node shows and counts it like any check it could not run.
    #[error(
        "body longer than {limit} bytes (max_body_bytes): body_regex needs the whole body to be judged; \
         raise max_body_bytes or use body_contains"
    )]
    BodyTooLong { limit: usize },

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

/// What the probing node ran out of, or lacks, in [`Error::LocalResource`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LocalCause {
    /// The process or the system open-file limit (EMFILE, ENFILE).
    FileDescriptors,
    /// The kernel's socket buffers (ENOBUFS).
    BufferSpace,
    /// Memory (ENOMEM).
    Memory,
    /// A configured source address the host does not have, or no free local
    /// port (EADDRNOTAVAIL).
    LocalAddress,
    /// The node may not send this kind of packet (EPERM, EACCES on an ICMP send).
    Permission,
}

impl LocalCause {
    /// The cause of `e` when it is the node's own trouble, not the target's.
    /// Address and permission errors depend on the call, so the caller says
    /// whether they count (`bind_or_send`).
    pub(crate) fn of(e: &std::io::Error, bind_or_send: bool) -> Option<LocalCause> {
        use rustix::io::Errno;
        let errno = Errno::from_io_error(e)?;
        Some(match errno {
            Errno::MFILE | Errno::NFILE => LocalCause::FileDescriptors,
            Errno::NOBUFS => LocalCause::BufferSpace,
            Errno::NOMEM => LocalCause::Memory,
            Errno::ADDRNOTAVAIL => LocalCause::LocalAddress,
            Errno::PERM | Errno::ACCESS if bind_or_send => LocalCause::Permission,
            _ => return None,
        })
    }

    /// What it means and how to fix it, for people.
    pub(crate) fn explain(self) -> &'static str {
        match self {
            LocalCause::FileDescriptors => {
                "out of file descriptors: raise the node's open-file limit (RLIMIT_NOFILE, LimitNOFILE= in systemd) \
                 or lower its concurrency"
            }
            LocalCause::BufferSpace => "the kernel has no socket buffer space left on this node",
            LocalCause::Memory => "this node is out of memory",
            LocalCause::LocalAddress => "a local address is not available on this node",
            LocalCause::Permission => "this node is not permitted to send the probe",
        }
    }
}

/// The error for `cause`, seen while doing `what` (`connect to …`).
pub(crate) fn local(cause: LocalCause, what: impl std::fmt::Display, e: &std::io::Error) -> Error {
    Error::LocalResource { cause, message: format!("{}: {what}: {e}", cause.explain()) }
}
