//! The checks every node runs, and the scheduler that runs them.
//!
//! This crate owns the vocabulary of checks ([`CheckSpec`], [`Outcome`]) and
//! knows nothing of Raft: the replicated store keeps specs, every node runs
//! them and folds the outcomes into digests. It never depends on openraft or redb.
//!
//! Layout:
//! - `spec`: check specifications, their validation (each error names its
//!   field) and the short `kind`/`target` form the CLI and the API speak.
//! - `outcome`: what one check found: status, error kind, latency, phase
//!   timings, per-kind detail. A down target is an outcome, not an error.
//! - `config`: the prober's node-wide settings.
//! - `prober`: the executors (HTTP(S), TCP, TLS expiry, DNS, ICMP) behind
//!   [`Prober::check`].
//! - `scheduler`: runs a changing set of monitors at their intervals with
//!   jitter and concurrency caps, sending a [`Report`] per run on a channel.
//! - `error`: [`Error`], for when the prober itself cannot run (among them
//!   [`Error::LocalResource`]: the node's own trouble, not the target's).
//! - `rlimit`: [`raise_open_file_limit`], for the node to call at start.
//!
//! ```
//! use uptime_probe::CheckSpec;
//! let spec = CheckSpec::from_target("http", "http://127.0.0.1:8080/health").unwrap();
//! assert_eq!(spec.kind(), "http");
//! assert_eq!(spec.target(), "http://127.0.0.1:8080/health");
//! ```
//!
//! Running one check:
//!
//! ```no_run
//! # async fn f() -> Result<(), uptime_probe::Error> {
//! use std::time::Duration;
//! use uptime_probe::{CheckSpec, Config, Prober, Status};
//! let prober = Prober::new(Config::default())?;
//! let spec = CheckSpec::from_target("tcp", "127.0.0.1:22").unwrap();
//! let outcome = prober.check(&spec, Duration::from_secs(5)).await?;
//! if outcome.status != Status::Up {
//!     println!("{outcome}");
//! }
//! # Ok(()) }
//! ```
//!
//! Running monitors: the scheduler takes an executor (a [`Prober`]) and a
//! channel for its [`Report`]s, and is changed through its handle.
//!
//! ```no_run
//! # async fn f(shutdown: impl std::future::Future<Output = ()>) -> Result<(), uptime_probe::Error> {
//! use std::time::Duration;
//! use uptime_probe::{CheckSpec, Config, Job, Prober, Scheduler, SchedulerConfig};
//! let (tx, mut reports) = tokio::sync::mpsc::channel(4096);
//! let (scheduler, handle) = Scheduler::new(SchedulerConfig::default(), Prober::new(Config::default())?, tx)?;
//! handle.upsert(Job {
//!     id: 1,
//!     spec: CheckSpec::from_target("http", "http://127.0.0.1:8080/health").unwrap(),
//!     interval: Duration::from_secs(30),
//!     timeout: Duration::from_secs(10),
//! })?;
//! tokio::spawn(async move {
//!     while let Some(report) = reports.recv().await {
//!         println!("monitor {}: {:?}", report.monitor_id, report.result.map(|o| o.status));
//!     }
//! });
//! scheduler.run(shutdown).await;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod outcome;
mod prober;
mod rlimit;
mod scheduler;
mod spec;

pub use config::{Config, DEFAULT_DNS_CACHE_MAX_TTL};
pub use error::{Error, LocalCause};
pub use outcome::{
    CertInfo, CheckError, Detail, DnsDetail, ErrorKind, HttpDetail, IcmpDetail, Outcome, Phase, Phases, Status,
    TcpDetail,
};
pub use prober::{Clock, Prober, ProberBuilder};
pub use rlimit::{open_file_limit, raise_open_file_limit};
pub use scheduler::{
    Execute, Job, MonitorId, Report, Scheduler, SchedulerConfig, SchedulerHandle, Stats, MAX_INTERVAL, MIN_INTERVAL,
};
pub use spec::{
    CheckSpec, DnsRecordType, DnsSpec, Header, HttpAuth, HttpSpec, IcmpSpec, SpecError, StatusRange, TcpSpec, TlsSpec,
    REDACTED,
};
