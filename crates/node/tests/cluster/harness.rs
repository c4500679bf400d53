//! Real `uptime-node` processes on loopback for the cluster tests: each node gets
//! its own data dir, config file, certificate and free ports. Every wait is a
//! bounded poll of what an operator would look at (the API), never a fixed sleep.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use uptime_api::dto::{AddNode, ClusterStatus, CreateMonitor, MonitorView};
use uptime_api::Client;

pub const TOKEN: &str = "test-token-0123456789";

pub struct NodeProc {
    pub id: u64,
    pub dir: PathBuf,
    pub peer_addr: String,
    pub api_url: String,
    child: Option<Child>,
}

pub struct TestCluster {
    pub root: TempDir,
    pub nodes: BTreeMap<u64, NodeProc>,
    /// Extra raft settings for every node's config (TOML lines under [raft]).
    raft_toml: String,
    /// Extra TOML tables appended to every node's config.
    extra_toml: String,
    /// Extra lines under every node's [probe].
    probe_toml: String,
}

/// A port for a node to listen on, handed out below the kernel's ephemeral
/// range: a port the kernel picked for us (bind to port 0) can be taken by
/// any outgoing connection before the node binds it, and tests that make
/// thousands of connections make that likely. Each test process takes ports
/// from its own slice (by pid) and skips those already bound.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const SLICE: u32 = 32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_start.max(10_000 + 64 * SLICE));
    let slices = (high - low) / SLICE;
    let base = low + (std::process::id() % slices) * SLICE;
    for _ in 0..SLICE {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % SLICE;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    // Every port of this slice is taken: fall back to one the kernel picks.
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestCluster {
    /// Starts `n` nodes bootstrapping from the same peer list.
    pub async fn start(n: u64) -> TestCluster {
        TestCluster::start_with(n, "").await
    }

    pub async fn start_with(n: u64, raft_toml: &str) -> TestCluster {
        TestCluster::start_with_tables(n, raft_toml, "").await
    }

    /// [`TestCluster::start_with`], with whole TOML tables (`[alerts]` ...) added to each config.
    pub async fn start_with_tables(n: u64, raft_toml: &str, extra_toml: &str) -> TestCluster {
        TestCluster::start_custom(n, raft_toml, "", extra_toml).await
    }

    /// [`TestCluster::start_with_tables`], with lines under `[probe]` too.
    pub async fn start_custom(n: u64, raft_toml: &str, probe_toml: &str, extra_toml: &str) -> TestCluster {
        let root = tempfile::tempdir().unwrap();
        uptime_node::certs::init_ca(&root.path().join("certs")).unwrap();
        let mut cluster = TestCluster {
            root,
            nodes: BTreeMap::new(),
            raft_toml: raft_toml.to_string(),
            extra_toml: extra_toml.to_string(),
            probe_toml: probe_toml.to_string(),
        };
        for id in 1..=n {
            cluster.prepare(id);
        }
        let peers = cluster.peer_list();
        for id in 1..=n {
            cluster.write_config(id, &peers, false);
            cluster.spawn(id);
        }
        cluster.wait_healthy(n as usize).await;
        cluster.wait_members().await;
        cluster
    }

    fn prepare(&mut self, id: u64) {
        let dir = self.root.path().join(format!("node{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        uptime_node::certs::issue_node(&self.root.path().join("certs"), id, &["127.0.0.1".into()]).unwrap();
        let node = NodeProc {
            id,
            dir,
            peer_addr: format!("127.0.0.1:{}", free_port()),
            api_url: format!("http://127.0.0.1:{}", free_port()),
            child: None,
        };
        self.nodes.insert(id, node);
    }

    fn peer_list(&self) -> String {
        let entries: Vec<String> = self
            .nodes
            .values()
            .map(|n| format!("{{ id = {}, peer_addr = \"{}\", api_addr = \"{}\" }}", n.id, n.peer_addr, n.api_url))
            .collect();
        format!("[{}]", entries.join(", "))
    }

    fn write_config(&self, id: u64, peers: &str, join: bool) {
        let n = &self.nodes[&id];
        let certs = self.root.path().join("certs");
        let config = format!(
            r#"node_id = {id}
data_dir = "data"
api_listen = "{api}"
peer_listen = "{peer}"
api_token = "{TOKEN}"
join = {join}
peers = {peers}

[tls]
ca = "{ca}"
cert = "{cert}"
key = "{key}"

[probe]
source_addrs = ["127.0.0.{id}"]
{probe}

[digest]
window_ms = 500
tick_ms = 500

[raft]
{raft}

{extra}
"#,
            api = n.api_url.trim_start_matches("http://"),
            peer = n.peer_addr,
            ca = certs.join("ca.pem").display(),
            cert = certs.join(format!("node{id}.pem")).display(),
            key = certs.join(format!("node{id}.key")).display(),
            raft = self.raft_toml,
            extra = self.extra_toml,
            probe = self.probe_toml,
        );
        std::fs::write(n.dir.join("config.toml"), config).unwrap();
    }

    /// Starts (or restarts) node `id` from its config and data.
    pub fn spawn(&mut self, id: u64) {
        self.spawn_with_env(id, &[]);
    }

    /// [`Self::spawn`] with extra environment variables (failpoints).
    pub fn spawn_with_env(&mut self, id: u64, env: &[(&str, &str)]) {
        let n = self.nodes.get_mut(&id).unwrap();
        assert!(n.child.is_none(), "node {id} is already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(n.dir.join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_uptime-node"))
            .args(["run", "--config"])
            .arg(n.dir.join("config.toml"))
            .env("UPTIME_LOG", "info,openraft=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        n.child = Some(child);
    }

    /// Restarts every node, one at a time and waiting for a healthy cluster
    /// after each, with extra environment variables (failpoints).
    pub async fn restart_all_with_env(&mut self, env: &[(&str, &str)]) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        self.wait_healthy(ids.len()).await;
        for id in &ids {
            assert_eq!(self.terminate(*id).await.code(), Some(0));
            self.spawn_with_env(*id, env);
            self.wait_healthy(ids.len()).await;
        }
    }

    /// Adds a fresh node that waits to be added (join = true) and starts it.
    pub fn spawn_joiner(&mut self, id: u64) {
        self.prepare_joiner(id);
        self.spawn(id);
    }

    /// Prepares a fresh node that will wait to be added, without starting it.
    pub fn prepare_joiner(&mut self, id: u64) {
        self.prepare(id);
        self.write_config(id, "[]", true);
    }

    pub fn add_node_body(&self, id: u64) -> AddNode {
        let n = &self.nodes[&id];
        AddNode { id, peer_addr: n.peer_addr.clone(), api_addr: n.api_url.clone() }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to node `id`.
    #[allow(dead_code)] // used by the alert tests, which share this harness
    pub fn signal(&self, id: u64, signal: &str) {
        let pid = self.nodes[&id].child.as_ref().expect("node running").id();
        let status = Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// kill -9.
    pub fn kill(&mut self, id: u64) {
        let mut child = self.nodes.get_mut(&id).unwrap().child.take().expect("node running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, and the exit status once it has stopped (bounded wait).
    pub async fn terminate(&mut self, id: u64) -> ExitStatus {
        let mut child = self.nodes.get_mut(&id).unwrap().child.take().expect("node running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        wait_until("node to exit after SIGTERM", Duration::from_secs(20), || {
            let done = child.try_wait().unwrap();
            async move { done }
        })
        .await
    }

    /// Waits until nodes `ids` report the same applied index and state hash.
    pub async fn wait_equal_hashes(&self, ids: &[u64]) -> Vec<uptime_api::dto::StateHashView> {
        wait_until("equal state hashes at an equal index", Duration::from_secs(30), || {
            let clients: Vec<Client> = ids.iter().map(|id| self.client(*id)).collect();
            async move {
                let mut hashes = Vec::new();
                for c in clients {
                    hashes.push(c.state_hash().await.ok()?);
                }
                hashes.windows(2).all(|w| w[0] == w[1]).then_some(hashes)
            }
        })
        .await
    }

    /// Waits (bounded) for node `id` to exit by itself; `None` if it still runs.
    pub async fn wait_exit(&mut self, id: u64, limit: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let n = self.nodes.get_mut(&id).unwrap();
            let child = n.child.as_mut().expect("node running");
            if let Some(status) = child.try_wait().unwrap() {
                n.child = None;
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn client(&self, id: u64) -> Client {
        Client::new(&self.nodes[&id].api_url, Some(TOKEN.into())).unwrap()
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.nodes[&id].dir.join("log")).unwrap_or_default()
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.nodes[&id].dir.join("data")
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes.values().filter(|n| n.child.is_some()).map(|n| n.id).collect()
    }

    /// Waits until some running node reports a leader and `n` healthy members.
    pub async fn wait_healthy(&self, n: usize) -> ClusterStatus {
        let running = self.running();
        let what = format!("a leader and {n} healthy members (running: {running:?})");
        let found = tokio::time::timeout(
            Duration::from_secs(30),
            wait_until(&what, Duration::from_secs(31), || {
                let clients: Vec<Client> = running.iter().map(|id| self.client(*id)).collect();
                async move {
                    for c in clients {
                        if let Ok(s) = c.cluster_status().await {
                            if s.leader.is_some() && s.members.iter().filter(|m| m.healthy).count() >= n {
                                return Some(s);
                            }
                        }
                    }
                    None
                }
            }),
        )
        .await;
        match found {
            Ok(status) => status,
            Err(_) => {
                let tails: Vec<String> = self
                    .nodes
                    .keys()
                    .map(|id| {
                        let log = self.log(*id);
                        let tail: Vec<&str> = log.lines().rev().take(15).collect();
                        format!("--- node {id}:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
                    })
                    .collect();
                panic!("timed out after 30s waiting for {what}\n{}", tails.join("\n"))
            }
        }
    }

    /// Waits until every running node knows it is a member and knows a leader.
    /// [`TestCluster::wait_healthy`] is satisfied by any one node, and a node
    /// the first membership entry has not reached yet answers `not_member`.
    pub async fn wait_members(&self) {
        let clients: Vec<(u64, Client)> = self.running().into_iter().map(|id| (id, self.client(id))).collect();
        for (id, c) in clients {
            wait_until(&format!("node {id} to know it is a member with a leader"), Duration::from_secs(30), || {
                let c = c.clone();
                async move { c.cluster_status().await.ok().filter(|s| s.leader.is_some()) }
            })
            .await;
        }
    }

    /// The leader as seen by node `via`, once it knows one other than `not`.
    pub async fn leader(&self, via: u64, not: Option<u64>) -> u64 {
        let c = self.client(via);
        wait_until("a leader", Duration::from_secs(20), || {
            let c = c.clone();
            async move { c.cluster_status().await.ok().and_then(|s| s.leader).filter(|l| Some(*l) != not) }
        })
        .await
    }

    pub async fn wait_for_monitor(&self, id: u64, name: &str) -> MonitorView {
        let c = self.client(id);
        wait_until(&format!("monitor {name} on node {id}"), Duration::from_secs(30), || {
            let c = c.clone();
            async move { c.get_monitor(name).await.ok() }
        })
        .await
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

pub fn monitor(name: &str) -> CreateMonitor {
    CreateMonitor {
        name: name.into(),
        kind: "http".into(),
        target: "http://127.0.0.1:9/".into(),
        interval: Some("60s".into()),
        timeout: None,
        ..Default::default()
    }
}

/// Polls `f` every 50 ms until it yields a value; panics after `limit`.
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `uptime-node run` on a config and returns its exit status and stderr,
/// or `None` if it was still running after `limit` (it is then killed).
pub async fn run_until_exit(config: &Path, limit: Duration) -> Option<(ExitStatus, String)> {
    let err_path = config.with_extension("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_uptime-node"))
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some((status, std::fs::read_to_string(&err_path).unwrap()));
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
