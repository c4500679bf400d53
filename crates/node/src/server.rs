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
use tracing::{error, info, warn, Instrument};
use uptime_api::{Cluster, ClusterConfig, PeerHealth, PeerNetworkFactory, PeerService, PeerTls};
use uptime_raft_store::{LogStore, PeerNode, Raft, StateMachineStore};

use crate::config::Config;
use crate::error::Error;

/// A built node: stores open, sockets bound, Raft running.
pub struct Node {
    config: Config,
    queue: crate::digest::DigestQueue,
    raft: Raft,
    cluster: Cluster,
    token: String,
    tls: Option<PeerTls>,
    api: TcpListener,
    peer: TcpListener,
}

/// What a node is built with besides its config: listeners already bound
/// (tests bind port 0 and pass them in, so no port is picked ahead and raced
/// for), and faults on its peer RPCs (in-process fault tests).
#[derive(Default)]
pub struct Parts {
    pub api: Option<TcpListener>,
    pub peer: Option<TcpListener>,
    pub faults: uptime_api::PeerFaults,
}

impl Node {
    pub async fn build(config: Config) -> Result<Node, Error> {
        Node::build_with(config, Parts::default()).await
    }

    /// [`Node::build`] with pre-bound listeners and peer faults.
    pub async fn build_with(config: Config, parts: Parts) -> Result<Node, Error> {
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
        let queue = crate::digest::DigestQueue::open(&config.data_dir.join("digests.redb"))?;

        let api = match parts.api {
            Some(l) => l,
            None => bind(config.api_listen).await?,
        };
        let peer = match parts.peer {
            Some(l) => l,
            None => bind(config.peer_listen).await?,
        };

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
        let network = PeerNetworkFactory::with_faults(tls.as_ref(), health, parts.faults)
            .with_source_addr(config.peer_source_addr);
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network.clone(), log, sm)
            .await
            .map_err(|e| Error::raft("start", e))?;
        let cluster_config = ClusterConfig {
            node_id: config.node_id,
            // Long enough for a missed clock sample (every 500 ms; a follower's
            // only contact with its peers) and a missed election timeout.
            health_window: Duration::from_millis(
                r.election_timeout_max_ms.max(r.heartbeat_ms.saturating_mul(3)).max(1_000).saturating_add(500),
            ),
            ..ClusterConfig::default()
        };
        let cluster = Cluster::new(cluster_config, raft.clone(), reader, network);
        Ok(Node { config, queue, raft, cluster, token, tls, api, peer })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api.local_addr().expect("bound listener has an address")
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer.local_addr().expect("bound listener has an address")
    }

    /// Serves until `shutdown` fires, then drains: in-flight API requests finish,
    /// Raft stops (its storage is durable at every acknowledged step), and the
    /// listeners close, all within [`SHUTDOWN_GRACE`].
    ///
    /// Every long-running part runs in one supervised set. A part that stops
    /// before shutdown (a server that fails, a task that panics, the Raft core
    /// stopping on a fatal storage error) stops the node with a line naming it
    /// and an error, rather than leaving it half alive: a node whose Raft core
    /// has died must not keep answering as if it were a member.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let Node { config, queue, raft, cluster, token, tls, api, peer } = self;
        let api_addr = api.local_addr().map_err(|source| Error::Bind { addr: config.api_listen, source })?;
        let peer_addr = peer.local_addr().map_err(|source| Error::Bind { addr: config.peer_listen, source })?;
        info!(node = config.node_id, %api_addr, %peer_addr, tls = tls.is_some(), "uptime-node starting");

        // Build every part before anything is spawned.
        let mut peer_server = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            peer_server = peer_server.tls_config(tls.server_config()).map_err(|e| Error::build("peer TLS", e))?;
        }
        let peer_router = peer_server.add_service(PeerService::new(cluster.clone()).into_server());
        let local: Arc<dyn uptime_api::LocalMetrics> = Arc::new(queue.clone());
        let router = uptime_api::router_with(cluster.clone(), &token, Some(local));
        let digest_config = config.digest.to_config();
        let prober = uptime_probe::Prober::new(config.probe.to_config()?).map_err(|e| Error::build("prober", e))?;
        let (reports_tx, reports_rx) = tokio::sync::mpsc::channel(4096);
        let mut scheduling = config.probe.scheduler_config()?;
        // Running out of file descriptors is this node's trouble, not the
        // targets': raise the soft limit, and run no more checks at once than
        // the limit leaves room for.
        let open_files = uptime_probe::raise_open_file_limit().unwrap_or_else(|e| {
            warn!(error = %e, "cannot raise the open-file limit; sizing the probe's in-flight cap to the current one");
            uptime_probe::open_file_limit()
        });
        scheduling.max_in_flight = crate::config::in_flight_for(open_files, scheduling.max_in_flight);
        info!(open_files, max_in_flight = scheduling.max_in_flight.get(), "probe limits");
        let (scheduler, scheduler_handle) =
            uptime_probe::Scheduler::new(scheduling, prober, reports_tx).map_err(|e| Error::build("scheduler", e))?;
        let sealed = Arc::new(tokio::sync::Notify::new());

        let mut servers = Supervisor::default();
        let peer_stop = shutdown.clone();
        servers.spawn("peer server", async move {
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
                .map_err(|e| e.to_string())
        });
        let mut api_server = Supervisor::default();
        let api_stop = shutdown.clone();
        api_server.spawn("API server", async move {
            axum::serve(
                api.tap_io(|s| {
                    let _ = s.set_nodelay(true);
                }),
                router,
            )
            .with_graceful_shutdown(api_stop.cancelled_owned())
            .await
            .map_err(|e| e.to_string())
        });
        servers.spawn("raft", watch_raft(raft.clone(), shutdown.clone()));

        // A bootstrap error stops the node like any other failure.
        let mut failure = bootstrap(&config, &raft, peer_addr, api_addr).await.err();

        // Probing: scheduler -> digests -> digest queue -> leader; and the leader's tick.
        let mut probing = Supervisor::default();
        if failure.is_none() {
            let stop = shutdown.clone();
            probing.spawn("probe scheduler", async move {
                scheduler.run(stop.cancelled_owned()).await;
                Ok(())
            });
            let (o, d, n, s) = (queue.clone(), digest_config.clone(), sealed.clone(), shutdown.clone());
            probing.spawn("digest collector", ok(crate::digest::collect(reports_rx, o, d, n, s)));
            let (c, d, s) = (cluster.clone(), digest_config.clone(), shutdown.clone());
            probing.spawn("digest proposer", ok(crate::digest::propose(c, queue, d, sealed, s)));
            let (c, d, s) = (cluster.clone(), digest_config.clone(), shutdown.clone());
            probing.spawn("monitor sync", ok(crate::monitor_sync::sync_monitors(c, scheduler_handle, d, s)));
            probing.spawn("leader tick", ok(crate::leader::tick(cluster.clone(), digest_config, shutdown.clone())));
            let a = &config.alerts;
            let dispatch = crate::dispatch::DispatchConfig {
                backoff: Duration::from_millis(a.retry_backoff_ms),
                max_backoff: Duration::from_millis(a.retry_max_backoff_ms),
                send_timeout: Duration::from_millis(a.send_timeout_ms),
                ..crate::dispatch::DispatchConfig::for_election_timeout_max(Duration::from_millis(
                    config.raft.election_timeout_max_ms,
                ))
            };
            probing.spawn("dispatcher", ok(crate::dispatch::run(cluster.clone(), dispatch, shutdown.clone())));
            if let Some(l) = config.alerts.lost_quorum.clone() {
                probing
                    .spawn("lost-quorum notices", ok(crate::safety::lost_quorum(cluster.clone(), l, shutdown.clone())));
            }
            if let Some(d) = config.alerts.deadman.clone() {
                probing.spawn("dead man's switch", ok(crate::safety::deadman(cluster.clone(), d, shutdown.clone())));
            }

            failure = tokio::select! {
                biased;
                _ = shutdown.cancelled() => None,
                stopped = servers.next_stop() => Some(stopped),
                stopped = api_server.next_stop() => Some(stopped),
                stopped = probing.next_stop() => Some(stopped),
            };
        }
        // Parts end by themselves once shutdown has begun: that is no failure.
        if shutdown.is_cancelled() && !matches!(failure, Some(Error::Raft { .. })) {
            failure = None;
        }
        if let Some(e) = &failure {
            error!(error = %e, "stopping the node");
            shutdown.cancel();
        }

        let drain = async {
            info!("shutting down: stopping probes");
            probing.drain().await;
            info!("shutting down: draining API requests");
            api_server.drain().await;
            if let Err(e) = raft.shutdown().await {
                warn!(error = %e, "raft shutdown");
            }
            servers.drain().await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            warn!(grace = ?SHUTDOWN_GRACE, "shutdown did not finish within its grace period; stopping anyway");
        }
        info!("stopped");
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// How long a shutdown may take before the node stops regardless.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

type TaskResult = Result<(), String>;

/// A task that cannot fail: its ending is all there is to report.
async fn ok(f: impl std::future::Future<Output = ()>) -> TaskResult {
    f.await;
    Ok(())
}

/// Named long-running tasks; the first to stop is reported by name.
#[derive(Default)]
struct Supervisor {
    tasks: tokio::task::JoinSet<TaskResult>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Supervisor {
    fn spawn(&mut self, name: &'static str, task: impl std::future::Future<Output = TaskResult> + Send + 'static) {
        let handle = self.tasks.spawn(task.instrument(tracing::info_span!("task", name)));
        self.names.insert(handle.id(), name);
    }

    /// Waits for the first task to end and says which and why. Pending for
    /// ever when there are no tasks.
    async fn next_stop(&mut self) -> Error {
        let Some(ended) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (name, reason) = match ended {
            Ok((id, Ok(()))) => (self.names.get(&id).copied(), "it ended before shutdown".to_string()),
            Ok((id, Err(e))) => (self.names.get(&id).copied(), e),
            Err(e) => {
                (self.names.get(&e.id()).copied(), if e.is_panic() { "it panicked".into() } else { e.to_string() })
            }
        };
        Error::Stopped { task: name.unwrap_or("a task"), reason }
    }

    /// Waits for every task to end (they watch the shutdown token).
    async fn drain(&mut self) {
        while let Some(ended) = self.tasks.join_next_with_id().await {
            match ended {
                Ok((_, Ok(()))) => {}
                Ok((id, Err(e))) => warn!(task = self.names.get(&id).copied(), error = %e, "stopped with an error"),
                Err(e) => warn!(task = self.names.get(&e.id()).copied(), error = %e, "task failed"),
            }
        }
    }
}

/// Why the Raft core stopped, in words an operator can act on. openraft keeps
/// a storage error only as text, so a full disk (ENOSPC, or EDQUOT for a
/// quota) is recognised by the OS error number the text ends with.
fn stop_reason(fatal: &str) -> String {
    const AFTER: &str = "stopping without writing more. Free space and restart the node (a service manager \
                         with Restart=always does): it comes back with its data.";
    if fatal.contains("(os error 28)") || fatal.contains("(os error 122)") {
        format!("the disk holding the data directory is full; {AFTER} Cause: {fatal}")
    } else if fatal.contains("Previous I/O error occurred") {
        // redb refuses every write after one failed (often a checkpoint on
        // a full disk, logged as a warning before this line).
        format!("an earlier write to the data directory failed (most often: the disk is full); {AFTER} Cause: {fatal}")
    } else {
        format!("raft stopped: {fatal}")
    }
}

/// Ends with an error when the Raft core stops on its own (a fatal storage
/// error, a panic in it); ends quietly on shutdown.
async fn watch_raft(raft: Raft, shutdown: CancellationToken) -> TaskResult {
    let mut metrics = raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow_and_update().running_state {
            return Err(stop_reason(&fatal.to_string()));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            changed = metrics.changed() => {
                if changed.is_err() {
                    return if shutdown.is_cancelled() { Ok(()) } else { Err("raft stopped".into()) };
                }
            }
        }
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
    let initialized = raft.is_initialized().await.map_err(|e| Error::raft("read the membership", e))?;
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
        Err(e) => Err(Error::raft("initialize", e)),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })
}

fn read_tls(files: &crate::config::TlsFiles) -> Result<PeerTls, Error> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|source| Error::ReadFile { path: p.to_owned(), source });
    Ok(PeerTls { ca_pem: read(&files.ca)?, cert_pem: read(&files.cert)?, key_pem: read(&files.key)? })
}

#[cfg(test)]
mod tests {
    use super::stop_reason;

    #[test]
    fn a_full_disk_is_named_with_what_to_do() {
        let fatal = "when Write Logs: storage: I/O error: No space left on device (os error 28)";
        let line = stop_reason(fatal);
        assert!(line.starts_with("the disk holding the data directory is full"), "{line}");
        assert!(line.contains("Free space and restart the node") && line.ends_with(fatal), "{line}");
        assert!(
            stop_reason("when Write Logs: storage: I/O error: Disk quota exceeded (os error 122)").contains("is full")
        );
        let poisoned = stop_reason(
            "when Write StateMachine: storage: Previous I/O error occurred. Please close and re-open the database.",
        );
        assert!(poisoned.starts_with("an earlier write to the data directory failed"), "{poisoned}");
        assert!(poisoned.contains("Free space and restart the node"), "{poisoned}");
        assert_eq!(stop_reason("panicked"), "raft stopped: panicked");
    }
}
