//! The vocabulary of checks: what a monitor asks a node to probe.
//!
//! This crate knows checks, not Raft: the replicated store keeps [`CheckSpec`]s
//! and every node runs them. It never depends on openraft or redb.
//!
//! Modules:
//! - `spec`: check specifications, their validation and the short `kind`/`target`
//!   form the CLI and the API speak.
//!
//! ```
//! use uptime_probe::CheckSpec;
//! let spec = CheckSpec::from_target("http", "http://127.0.0.1:8080/health").unwrap();
//! assert_eq!(spec.kind(), "http");
//! assert_eq!(spec.target(), "http://127.0.0.1:8080/health");
//! ```

mod spec;

pub use spec::{CheckSpec, DnsSpec, HttpSpec, IcmpSpec, SpecError, TcpSpec, TlsSpec};
