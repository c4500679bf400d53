//! Start-up in three phases: read config (done by the caller), build (open the
//! stores, bind the sockets, start Raft), then run until the shutdown token fires.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uptime_api::{Cluster, ClusterConfig, PeerHealth, PeerNetworkFactory, PeerService, PeerTls};
use uptime_raft_store::{LogStore, PeerNode, Raft, StateMachineStore};

use crate::config::Config;
use crate::error::Error;

/// A built node: stores open, sockets bound, Raft running.
pub struct Node {
    config: Config,
    outbox: crate::digest::Outbox,
    raft: Raft,
    cluster: Cluster,
    token: String,
    tls: Option<PeerTls>,
    api: TcpListener,
    peer: TcpListener,
}

impl Node {
    pub async fn build(config: Config) -> Result<Node, Error> {
        let token = config.token()?;
        let tls = match (&config.tls, config.insecure) {
            (Some(files), _) => Some(read_tls(files)?),
            (None, true) => None,
            (None, false) => return Err(Error::config("tls: required unless insecure")),
        };
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| Error::WriteFile { path: config.data_dir.clone(), source })?;
        let st = &config.storage;
        let log_path = config.data_dir.join("raft-log.redb");
        let state_path = config.data_dir.join("state").join("state.redb");
        if !log_path.exists() && state_path.exists() {
            return Err(Error::MissingLog { log: log_path, state: state_path });
        }
        let sm =
            StateMachineStore::open_with_cache(&config.data_dir.join("state"), (st.state_cache_mb as usize) << 20)?;
        let log = LogStore::open_with_cache(&log_path, (st.log_cache_mb as usize) << 20)?
            .with_snapshot_floor(sm.snapshot_floor());
        let reader = sm.reader();
        let outbox = crate::digest::Outbox::open(&config.data_dir.join("digests.redb"))?;

        let api = bind(config.api_listen).await?;
        let peer = bind(config.peer_listen).await?;

        let r = &config.raft;
        let raft_config = openraft::Config {
            cluster_name: "uptime-cluster".into(),
            heartbeat_interval: r.heartbeat_ms,
            election_timeout_min: r.election_timeout_min_ms,
            election_timeout_max: r.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(r.snapshot_every),
            max_in_snapshot_log_to_keep: r.keep_logs,
            // Install a snapshot instead of replaying when a follower lags by more than this.
            replication_lag_threshold: r.snapshot_every.max(1_000),
            snapshot_max_chunk_size: 1 << 20,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::config(format!("raft: {e}")))?;

        let health = PeerHealth::default();
        let network = PeerNetworkFactory::new(tls.as_ref(), health);
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network.clone(), log, sm)
            .await
            .map_err(|e| Error::Raft { message: e.to_string() })?;
        let cluster_config = ClusterConfig {
            node_id: config.node_id,
            health_window: Duration::from_millis(r.election_timeout_max_ms.max(3 * r.heartbeat_ms) + 500),
            ..ClusterConfig::default()
        };
        let cluster = Cluster::new(cluster_config, raft.clone(), reader, network);
        Ok(Node { config, outbox, raft, cluster, token, tls, api, peer })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api.local_addr().expect("bound listener has an address")
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer.local_addr().expect("bound listener has an address")
    }

    /// Serves until `shutdown` fires, then drains: in-flight API requests finish,
    /// Raft stops (its storage is durable at every acknowledged step), and the
    /// listeners close.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let Node { config, outbox, raft, cluster, token, tls, api, peer } = self;
        let api_addr = api.local_addr().map_err(|source| Error::Bind { addr: config.api_listen, source })?;
        let peer_addr = peer.local_addr().map_err(|source| Error::Bind { addr: config.peer_listen, source })?;
        info!(node = config.node_id, %api_addr, %peer_addr, tls = tls.is_some(), "uptime-node starting");

        let mut peer_server = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            peer_server = peer_server
                .tls_config(tls.server_config())
                .map_err(|e| Error::Serve { message: format!("peer TLS: {e}") })?;
        }
        let peer_router = peer_server.add_service(PeerService::new(cluster.clone()).into_server());
        let peer_stop = shutdown.clone();
        let peer_task = tokio::spawn(async move {
            peer_router
                .serve_with_incoming_shutdown(
                    // Small RPCs (votes, heartbeats, acks) must not wait for Nagle.
                    tokio_stream::wrappers::TcpListenerStream::new(peer).map(|s| {
                        s.inspect(|s| {
                            let _ = s.set_nodelay(true);
                        })
                    }),
                    peer_stop.cancelled_owned(),
                )
                .await
        });

        let local: Arc<dyn uptime_api::LocalMetrics> = Arc::new(outbox.clone());
        let router = uptime_api::router_with(cluster.clone(), &token, Some(local));
        let api_stop = shutdown.clone();
        let api_task = tokio::spawn(async move {
            axum::serve(
                api.tap_io(|s| {
                    let _ = s.set_nodelay(true);
                }),
                router,
            )
            .with_graceful_shutdown(api_stop.cancelled_owned())
            .await
        });

        bootstrap(&config, &raft, peer_addr, api_addr).await?;

        // Probing: scheduler -> digests -> outbox -> leader; and the leader's tick.
        let digest_config = config.digest.to_config();
        let prober = uptime_probe::Prober::new(config.probe.to_config()?)
            .map_err(|e| Error::Serve { message: format!("prober: {e}") })?;
        let (reports_tx, reports_rx) = tokio::sync::mpsc::channel(4096);
        let (scheduler, scheduler_handle) =
            uptime_probe::Scheduler::new(uptime_probe::SchedulerConfig::default(), prober, reports_tx)
                .map_err(|e| Error::Serve { message: format!("scheduler: {e}") })?;
        let sealed = Arc::new(tokio::sync::Notify::new());
        let mut probing = tokio::task::JoinSet::new();
        probing.spawn(scheduler.run(shutdown.clone().cancelled_owned()));
        probing.spawn(crate::digest::collect(
            reports_rx,
            outbox.clone(),
            digest_config.clone(),
            sealed.clone(),
            shutdown.clone(),
        ));
        probing.spawn(crate::digest::propose(cluster.clone(), outbox, digest_config.clone(), sealed, shutdown.clone()));
        probing.spawn(crate::digest::sync_monitors(
            cluster.clone(),
            scheduler_handle,
            digest_config.clone(),
            shutdown.clone(),
        ));
        probing.spawn(crate::digest::tick(cluster.clone(), digest_config, shutdown.clone()));

        shutdown.cancelled().await;
        info!("shutting down: stopping probes");
        while probing.join_next().await.is_some() {}
        info!("shutting down: draining API requests");
        match api_task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "API server stopped with an error"),
            Err(e) => warn!(error = %e, "API server task failed"),
        }
        if let Err(e) = raft.shutdown().await {
            warn!(error = %e, "raft shutdown");
        }
        match peer_task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "peer server stopped with an error"),
            Err(e) => warn!(error = %e, "peer server task failed"),
        }
        info!("stopped");
        Ok(())
    }
}

/// On the first start of a node listed in `peers` (or of a dev node), initializes
/// the cluster with the configured membership. Every listed node does the same
/// with the same list, which openraft allows; a restarted node or a joining one
/// skips it.
async fn bootstrap(config: &Config, raft: &Raft, peer_addr: SocketAddr, api_addr: SocketAddr) -> Result<(), Error> {
    if config.join {
        info!("waiting to be added to a cluster (join = true)");
        return Ok(());
    }
    let initialized = raft.is_initialized().await.map_err(|e| Error::Raft { message: e.to_string() })?;
    if initialized {
        return Ok(());
    }
    let members: BTreeMap<u64, PeerNode> = if config.peers.is_empty() {
        BTreeMap::from([(
            config.node_id,
            PeerNode { peer_addr: peer_addr.to_string(), api_addr: format!("http://{api_addr}") },
        )])
    } else {
        config
            .peers
            .iter()
            .map(|p| (p.id, PeerNode { peer_addr: p.peer_addr.clone(), api_addr: p.api_addr.clone() }))
            .collect()
    };
    info!(members = ?members.keys().collect::<Vec<_>>(), "initializing the cluster");
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        // Another member's initialization reached us first: nothing to do.
        Err(openraft::error::RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(Error::Raft { message: format!("initialize: {e}") }),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })
}

fn read_tls(files: &crate::config::TlsFiles) -> Result<PeerTls, Error> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|source| Error::ReadFile { path: p.to_owned(), source });
    Ok(PeerTls { ca_pem: read(&files.ca)?, cert_pem: read(&files.cert)?, key_pem: read(&files.key)? })
}
