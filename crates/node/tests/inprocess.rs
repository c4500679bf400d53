//! A 3-node cluster in one process: nodes built on listeners bound to port 0
//! (`Parts`), with faults injected on their peer RPCs (`PeerFaults`) instead of
//! firewall rules, so a partition test needs neither root nor processes.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uptime_api::dto::CreateMonitor;
use uptime_api::{Client, ClientError, PeerFaults};
use uptime_node::{Config, Node, Parts, PeerConfig};

const TOKEN: &str = "in-process-token-0123456789";

struct InProcess {
    _dir: tempfile::TempDir,
    apis: Vec<String>,
    faults: Vec<PeerFaults>,
    stop: CancellationToken,
    nodes: Vec<tokio::task::JoinHandle<Result<(), uptime_node::Error>>>,
}

impl InProcess {
    async fn start(n: u64) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..n {
            let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listeners.push((api, peer));
        }
        let peers: Vec<PeerConfig> = listeners
            .iter()
            .zip(1..)
            .map(|((api, peer), id)| PeerConfig {
                id,
                peer_addr: peer.local_addr().unwrap().to_string(),
                api_addr: format!("http://{}", api.local_addr().unwrap()),
            })
            .collect();
        let stop = CancellationToken::new();
        let (mut apis, mut faults, mut nodes) = (Vec::new(), Vec::new(), Vec::new());
        for ((api, peer), id) in listeners.into_iter().zip(1..) {
            let mut config = Config::dev(dir.path().join(format!("node{id}")), api.local_addr().unwrap(), TOKEN.into());
            config.node_id = id;
            config.peer_listen = peer.local_addr().unwrap();
            config.peers = peers.clone();
            apis.push(format!("http://{}", api.local_addr().unwrap()));
            let fault = PeerFaults::default();
            faults.push(fault.clone());
            let node =
                Node::build_with(config, Parts { api: Some(api), peer: Some(peer), faults: fault }).await.unwrap();
            nodes.push(tokio::spawn(node.run(stop.clone())));
        }
        InProcess { _dir: dir, apis, faults, stop, nodes }
    }

    fn client(&self, id: u64) -> Client {
        Client::new(&self.apis[id as usize - 1], Some(TOKEN.into())).unwrap()
    }

    /// Cuts node `id` off from every other node, both ways.
    fn isolate(&self, id: u64) {
        for other in 1..=self.apis.len() as u64 {
            if other != id {
                self.faults[id as usize - 1].block(other);
                self.faults[other as usize - 1].block(id);
            }
        }
    }

    fn heal(&self) {
        self.faults.iter().for_each(PeerFaults::heal);
    }

    async fn leader_seen_by(&self, id: u64, not: Option<u64>) -> u64 {
        let c = self.client(id);
        wait_until("a leader", || {
            let c = c.clone();
            async move { c.cluster_status().await.ok()?.leader.filter(|l| Some(*l) != not) }
        })
        .await
    }

    async fn stop(self) {
        self.stop.cancel();
        for n in self.nodes {
            n.await.unwrap().unwrap();
        }
    }
}

async fn wait_until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn monitor(name: &str) -> CreateMonitor {
    CreateMonitor {
        name: name.into(),
        kind: "tcp".into(),
        target: "127.0.0.1:9".into(),
        interval: Some("60s".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_cannot_commit_and_catches_up_after_the_heal() {
    let cluster = InProcess::start(3).await;
    let old = cluster.leader_seen_by(1, None).await;
    cluster.client(old).create_monitor(&monitor("before")).await.unwrap();

    cluster.isolate(old);
    let other = (1..=3).find(|id| *id != old).unwrap();
    let new = cluster.leader_seen_by(other, Some(old)).await;
    assert_ne!(new, old);
    cluster.client(new).create_monitor(&monitor("during")).await.unwrap();
    // The isolated node cannot commit anything: its write does not succeed.
    match cluster.client(old).create_monitor(&monitor("lost")).await {
        Err(ClientError::Api { status: 503, .. }) => {}
        other => panic!("an isolated node should not commit: {other:?}"),
    }

    cluster.heal();
    let c = cluster.client(old);
    wait_until("the old leader to catch up", || {
        let c = c.clone();
        async move { c.get_monitor("during").await.ok() }
    })
    .await;
    let hashes = wait_until("equal state hashes", || {
        let clients: Vec<_> = (1..=3).map(|id| cluster.client(id)).collect();
        async move {
            let mut hs = Vec::new();
            for c in clients {
                hs.push(c.state_hash().await.ok()?);
            }
            hs.windows(2).all(|w| w[0] == w[1]).then_some(hs)
        }
    })
    .await;
    assert_eq!(hashes.len(), 3);
    let names: Vec<String> =
        cluster.client(new).list_monitors(true).await.unwrap().into_iter().map(|m| m.name).collect();
    assert!(names.contains(&"before".to_string()) && names.contains(&"during".to_string()), "{names:?}");
    cluster.stop().await;
}

/// A write by name through a follower that has not yet applied the monitor's
/// creation still finds it: the name is resolved against every write committed
/// before the request (found by jepsen-lite's checker as a non-linearizable
/// "not found" from a lagging follower).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_name_through_a_lagging_follower_sees_every_committed_write() {
    let cluster = InProcess::start(3).await;
    let leader = cluster.leader_seen_by(1, None).await;
    let follower = if leader == 1 { 2 } else { 1 };
    // The leader's entries reach this follower late (under a heartbeat, so
    // that they still arrive: a slower RPC times out).
    cluster.faults[leader as usize - 1].delay(follower, Duration::from_millis(40));
    let lead = cluster.client(leader);
    let behind = cluster.client(follower);
    for i in 0..5 {
        let name = format!("lag{i}");
        lead.create_monitor(&monitor(&name)).await.unwrap();
        let mut m = monitor(&name);
        m.interval = Some("30s".into());
        let updated = behind.update_monitor(&name, &m).await;
        assert!(updated.is_ok(), "update of {name} through a lagging follower: {updated:?}");
        behind.pause_monitor(&name, true).await.unwrap();
        behind.delete_monitor(&name).await.unwrap();
    }
    cluster.heal();
    cluster.stop().await;
}
