//! The uptime-node daemon and the uptimectl CLI, as a library: the binaries in
//! `src/bin` only parse arguments and call in here.
//!
//! Modules:
//! - `config`: the node's TOML configuration, `UPTIME_*` environment overrides, validation.
//! - `certs`: the cluster CA and node certificates for peer mutual TLS.
//! - `server`: start-up in three phases (config, build, run until shutdown).
//! - `digest`: probe results folded into digests, the durable `DigestQueue`,
//!   proposals to the leader.
//! - `monitor_sync`: the probe scheduler follows the applied monitors.
//! - `leader`: what only the leader does on its own schedule (the tick).
//! - `dispatch`: the leader's fenced delivery of the outbox through channels.
//! - `safety`: the node's own notices outside the fence (lost quorum, dead man's switch).
//! - `ctl`: the `uptimectl` commands over the typed API client.
//!
//! ```no_run
//! # async fn demo() -> Result<(), uptime_node::Error> {
//! let config = uptime_node::Config::dev("/tmp/uptime-dev".into(), "127.0.0.1:8080".parse().unwrap(), "token".into());
//! let node = uptime_node::Node::build(config).await?;
//! node.run(tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```

pub mod certs;
mod config;
pub mod ctl;
pub mod digest;
pub mod dispatch;
mod error;
pub mod leader;
pub mod monitor_sync;
pub mod safety;
mod server;

pub use config::{
    AlertSettings, Config, DeadmanSettings, DigestSettings, LostQuorumSettings, PeerConfig, ProbeSettings, RaftTimings,
    TlsFiles,
};
pub use error::Error;
pub use server::{Node, Parts};
