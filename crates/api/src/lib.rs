//! Every wire format of uptime-cluster: the generated protobuf code, the peer RPC
//! (openraft's network, client and server), the admin REST API and the typed
//! [`Client`] that `uptimectl` and the tests use.
//!
//! Modules:
//! - `pb`: code generated from `proto/uptime/v1/*.proto`.
//! - `dto`: the JSON shapes of the admin API (DESIGN.md, "Public surface contract").
//! - `error`: [`ApiError`], the one place errors become HTTP responses and gRPC statuses.
//! - `network`: the Raft network client over tonic, with mutual TLS ([`PeerTls`]).
//! - `peer_server`: the `Peer` gRPC service.
//! - `clock`: [`ClusterClock`], the time the leader stamps entries with: the voters'
//!   median clock, so no single node's clock moves state time far.
//! - `cluster`: [`Cluster`], the node's handle on Raft: forwarded writes, linearizable
//!   reads, membership changes, status.
//! - `ops`: the admin operations, shared by REST and gRPC.
//! - `rest`: the axum router of the API port: REST, health, and `admin_grpc`, the
//!   admin gRPC service (`proto/uptime/v1/admin.proto`).
//! - `metrics`: `GET /metrics` in Prometheus text, with [`LocalMetrics`] for the node's own figures.
//! - `client`: the typed REST client.
//!
//! ```no_run
//! # async fn demo() -> Result<(), uptime_api::ClientError> {
//! let client = uptime_api::Client::new("http://127.0.0.1:8080", Some("secret".into()))?;
//! let status = client.cluster_status().await?;
//! println!("leader: {:?}", status.leader);
//! # Ok(()) }
//! ```

pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("uptime.v1");

    mod conv;
}

mod admin_grpc;
pub mod alerts;
mod client;
mod clock;
mod cluster;
pub mod dto;
mod error;
mod metrics;
mod network;
mod ops;
mod peer_server;
mod rest;

pub use client::{error_chain, Client, ClientError, Read};
pub use clock::{ClusterClock, SystemClock, Unconfirmed, WallClock};
pub use cluster::{with_idempotency_key, Cluster, ClusterConfig};
pub use error::{ApiError, ErrorCode};
pub use metrics::{LocalMetrics, MetricsWriter};
pub use network::{PeerFaults, PeerHealth, PeerNetworkFactory, PeerTls};
pub use peer_server::PeerService;
pub use rest::{router, router_with};
