//! The cluster under test: real `uptime-node` processes started by
//! `scripts/dev-cluster.sh` with `DEV_CLUSTER_DISTINCT_ADDRS=1` (node K on
//! 127.0.0.K), reached only through the public API (the typed client) and
//! through signals to their pids, as an operator would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use uptime_api::Client;

/// Where the harness's requests come from: not a node's address, so a
/// partition between nodes never cuts the harness off from a node.
pub const CLIENT_ADDR: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 100));

/// How the nodes are set up beyond the dev cluster's defaults.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// TOML appended to every node's config (`@K@` is the node id).
    pub extra_toml: String,
    /// Environment of every node's process (`@K@` is the node id, `@NODE@` its directory).
    pub node_env: Vec<(String, String)>,
    /// A tmpfs of this size (e.g. `64m`) as every node's data directory.
    pub data_tmpfs: Option<String>,
    /// `DEV_CLUSTER_PEER_PROXY` (advertised:listen port per node), set by
    /// [`Cluster::up_proxied`].
    pub peer_proxy_ports: Option<String>,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: u64,
    script: PathBuf,
    token: String,
    /// Stopped after the nodes (fields drop after [`Drop::drop`]).
    _proxy: Option<crate::proxy::PeerProxy>,
    /// Nodes a nemesis holds down (or restarts itself): the supervisor leaves them alone.
    held: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

/// A signal the nemesis sends to a node's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Kill,
    Stop,
    Cont,
}

impl Signal {
    fn flag(self) -> &'static str {
        match self {
            Signal::Kill => "-KILL",
            Signal::Stop => "-STOP",
            Signal::Cont => "-CONT",
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Cluster {
    /// Starts `nodes` nodes in `dir` (release binaries unless
    /// `DEV_CLUSTER_PROFILE` says otherwise) and returns once a leader is elected.
    pub fn up(root: &Path, dir: &Path, nodes: u64, setup: &Setup) -> Result<Cluster, String> {
        let script = root.join("scripts/dev-cluster.sh");
        let mut cmd = Command::new(&script);
        cmd.args(["up", &nodes.to_string()])
            .arg(dir)
            .env("DEV_CLUSTER_DISTINCT_ADDRS", "1")
            .env("DEV_CLUSTER_EXTRA_TOML", &setup.extra_toml)
            .env("DEV_CLUSTER_NODE_ENV", setup.node_env.iter().map(|(k, v)| format!("{k}={v}\n")).collect::<String>());
        if let Some(size) = &setup.data_tmpfs {
            cmd.env("DEV_CLUSTER_DATA_TMPFS", size);
        }
        if let Some(ports) = &setup.peer_proxy_ports {
            cmd.env("DEV_CLUSTER_PEER_PROXY", ports);
        }
        if let Err(e) = run(&mut cmd) {
            let _ = run(Command::new(&script).arg("down").arg(dir));
            let _ = run(Command::new(&script).arg("unmount").arg(dir));
            return Err(e);
        }
        let token = std::fs::read_to_string(dir.join("token")).map_err(|e| e.to_string())?.trim().to_string();
        Ok(Cluster { dir: dir.to_path_buf(), nodes, script, token, _proxy: None, held: Default::default() })
    }

    /// [`Cluster::up`] with every node's peer listener behind the harness's
    /// proxy, whose cuts are returned for [`crate::net::Partitions::proxied`]:
    /// partitions without root.
    pub async fn up_proxied(
        root: &Path,
        dir: &Path,
        nodes: u64,
        setup: &Setup,
    ) -> Result<(Cluster, crate::proxy::Cuts), String> {
        use std::net::{IpAddr, Ipv4Addr, SocketAddr};
        let mut links = Vec::new();
        for k in 1..=nodes {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, k as u8));
            let real = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("a port on {ip}: {e}"))?;
            links.push(crate::proxy::Link { node: k, advertised: SocketAddr::new(ip, 0), real });
        }
        let (proxy, cuts) = crate::proxy::start(&links).await.map_err(|e| format!("peer proxy: {e}"))?;
        let pairs: Vec<String> =
            proxy.links.iter().map(|l| format!("{}:{}", l.advertised.port(), l.real.port())).collect();
        let (root, dir) = (root.to_path_buf(), dir.to_path_buf());
        let setup = Setup { peer_proxy_ports: Some(pairs.join(" ")), ..setup.clone() };
        let mut cluster = tokio::task::spawn_blocking(move || Cluster::up(&root, &dir, nodes, &setup))
            .await
            .map_err(|e| e.to_string())??;
        cluster._proxy = Some(proxy);
        Ok((cluster, cuts))
    }

    fn node_file(&self, k: u64, name: &str) -> Result<String, String> {
        let path = self.dir.join(format!("node{k}")).join(name);
        std::fs::read_to_string(&path).map(|s| s.trim().to_string()).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn api_url(&self, k: u64) -> Result<String, String> {
        self.node_file(k, "api_url")
    }

    pub fn pid(&self, k: u64) -> Result<u32, String> {
        self.node_file(k, "pid")?.parse().map_err(|e| format!("node {k} pid: {e}"))
    }

    /// A client of node `k`, with a short timeout: a request to a node cut
    /// off or paused must come back as "unknown", not hang the workload.
    pub fn client(&self, k: u64) -> Result<Client, String> {
        let c = Client::new(&self.api_url(k)?, Some(self.token.clone())).map_err(|e| e.to_string())?;
        Ok(c.with_timeout(Duration::from_secs(5)).with_local_address(CLIENT_ADDR))
    }

    /// Node `k`'s directory.
    pub fn node_dir(&self, k: u64) -> PathBuf {
        self.dir.join(format!("node{k}"))
    }

    /// Whether node `k`'s process is alive (not exited, not a zombie).
    pub fn alive(&self, k: u64) -> bool {
        let Ok(pid) = self.pid(k) else { return false };
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()))
            .is_some_and(|state| state != 'Z' && state != 'X')
    }

    /// Marks node `k` as held by a nemesis (true) or released (false).
    pub fn hold(&self, k: u64, held: bool) {
        let mut h = self.held.lock().expect("held nodes");
        if held {
            h.insert(k);
        } else {
            h.remove(&k);
        }
    }

    pub fn is_held(&self, k: u64) -> bool {
        self.held.lock().expect("held nodes").contains(&k)
    }

    pub fn signal(&self, k: u64, signal: Signal) -> Result<(), String> {
        run(Command::new("kill").args([signal.flag(), &self.pid(k)?.to_string()]))
    }

    /// Restarts node `k` (after a kill) with its data; returns once it answers.
    pub fn start(&self, k: u64) -> Result<(), String> {
        run(Command::new(&self.script).args(["start", &k.to_string()]).arg(&self.dir))
    }

    pub fn down(&self) -> Result<(), String> {
        // A paused node ignores SIGTERM until it runs again.
        for k in 1..=self.nodes {
            let _ = self.signal(k, Signal::Cont);
        }
        run(Command::new(&self.script).arg("down").arg(&self.dir))?;
        run(Command::new(&self.script).arg("unmount").arg(&self.dir))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.down();
    }
}
