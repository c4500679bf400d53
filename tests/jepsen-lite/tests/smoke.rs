//! The harness's own parts on a real 3-node cluster (debug binaries): node K
//! on 127.0.0.K, an nftables partition of the leader deposes it, healing
//! brings it back as a follower, and kill -9 / restart work through the pids.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use uptime_jepsen_lite::cluster::{Cluster, Signal};
use uptime_jepsen_lite::net::{Partitions, Shape};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Points the dev cluster at the debug binaries and makes the nftables
/// table; `None` (the test is skipped) without root or nft.
fn debug_nodes_and_nft() -> Option<Partitions> {
    let bins = root().join("target/debug");
    assert!(bins.join("uptime-node").exists(), "build the node first: cargo build -p uptime-node --bins");
    let Ok(parts) = Partitions::new() else {
        eprintln!("skipped: needs root and nft");
        return None;
    };
    std::env::set_var("DEV_CLUSTER_BIN_DIR", &bins);
    Some(parts)
}

/// Cuts the leader off (the others elect another), then heals (the old
/// leader follows a new one); returns (old leader, new leader).
async fn isolate_the_leader_and_heal(cluster: &Cluster, parts: &mut Partitions) -> (u64, u64) {
    let old = leader_seen_by(cluster, 1, None, Duration::from_secs(20)).await.expect("a leader");
    parts.apply(&Shape::Isolate { node: old }.cuts(3)).unwrap();
    let other = if old == 1 { 2 } else { 1 };
    let new = leader_seen_by(cluster, other, Some(old), Duration::from_secs(20)).await.expect("a new leader");
    assert_ne!(new, old);
    parts.heal().unwrap();
    let seen = leader_seen_by(cluster, old, Some(old), Duration::from_secs(20)).await;
    assert!(seen.is_some(), "the old leader should see the new leader after the heal");
    (old, new)
}

async fn leader_seen_by(c: &Cluster, k: u64, not: Option<u64>, limit: Duration) -> Option<u64> {
    let client = c.client(k).ok()?;
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(s) = client.cluster_status().await {
            if let Some(l) = s.leader.filter(|l| Some(*l) != not) {
                return Some(l);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_signals_and_restarts_on_a_real_cluster() {
    let bins = root().join("target/debug");
    if !bins.join("uptime-node").exists() {
        panic!("build the node first: cargo build -p uptime-node --bins");
    }
    let Ok(mut parts) = Partitions::new() else {
        eprintln!("skipped: needs root and nft");
        return;
    };
    std::env::set_var("DEV_CLUSTER_BIN_DIR", &bins);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::up(&root(), &dir.path().join("c"), 3, &Default::default()).unwrap();
    for k in 1..=3 {
        assert!(cluster.api_url(k).unwrap().contains(&format!("127.0.0.{k}:")), "node {k} is on 127.0.0.{k}");
    }
    let (old, new) = isolate_the_leader_and_heal(&cluster, &mut parts).await;

    // kill -9 and restart through the pid files.
    cluster.signal(new, Signal::Kill).unwrap();
    let after =
        leader_seen_by(&cluster, old, Some(new), Duration::from_secs(20)).await.expect("a leader after kill -9");
    assert_ne!(after, new);
    cluster.start(new).unwrap();
    assert!(leader_seen_by(&cluster, new, None, Duration::from_secs(20)).await.is_some());

    // The nemesis carries out one of each kind and undoes it: afterwards every
    // node answers and agrees on a leader.
    use uptime_jepsen_lite::schedule::{Fault, PartitionShape, Step, Target};
    let steps = [
        Fault::Pause(Target::Leader),
        Fault::Partition(PartitionShape::IsolateLeader),
        Fault::Kill(Target::Nodes([2].into())),
    ];
    for fault in steps {
        let step = Step { at: Duration::ZERO, hold: Duration::from_secs(2), fault };
        let record = uptime_jepsen_lite::nemesis::run(&cluster, &mut parts, &step).await;
        assert!(record.error.is_none(), "{record:?}");
        assert!(record.end_ms >= record.start_ms + 2_000, "{record:?}");
    }
    assert!(parts.active().is_empty(), "healed");
    let mut leaders = std::collections::BTreeSet::new();
    for k in 1..=3 {
        leaders.insert(leader_seen_by(&cluster, k, None, Duration::from_secs(20)).await.expect("a leader seen"));
    }
    assert_eq!(leaders.len(), 1, "every node sees the same leader: {leaders:?}");
}

/// The first end-to-end piece: monitor writes and linearizable reads from 4
/// clients through random nodes while the leader is isolated and then a node
/// is killed; the recorded history is linearizable, and every node ends with
/// the same state hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_a_short_workload_under_faults_is_linearizable() {
    use std::sync::Arc;
    use uptime_jepsen_lite::schedule::{Fault, PartitionShape, Step, Target};
    let Some(mut parts) = debug_nodes_and_nft() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(Cluster::up(&root(), &dir.path().join("c"), 3, &Default::default()).unwrap());
    leader_seen_by(&cluster, 1, None, Duration::from_secs(20)).await.expect("a leader");
    let work = tokio::spawn(uptime_jepsen_lite::workload::run(
        cluster.clone(),
        7,
        4,
        3,
        Duration::from_secs(12),
        "127.0.0.1:9".into(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    for fault in [Fault::Partition(PartitionShape::IsolateLeader), Fault::Kill(Target::Leader)] {
        let step = Step { at: Duration::ZERO, hold: Duration::from_secs(3), fault };
        let r = uptime_jepsen_lite::nemesis::run(&cluster, &mut parts, &step).await;
        assert!(r.error.is_none(), "{r:?}");
    }
    let ops = work.await.unwrap();
    let returned = ops.iter().filter(|o| o.ret().is_some()).count();
    assert!(returned > 50, "the workload made progress: {returned} of {} returned", ops.len());
    let verdict = uptime_jepsen_lite::check(&uptime_jepsen_lite::History::new(ops)).unwrap();
    assert!(verdict.is_linearizable(), "{verdict}");
    // Every node converges on the same state.
    assert!(uptime_jepsen_lite::run::hashes_agree(&cluster).await, "state hashes never agreed");
}

/// The clock and disk nemeses on a real cluster: a step of the leader's wall
/// clock a year ahead is seen by the node itself (its skew) and moves no
/// node's state time; a node whose data directory is filled stops cleanly,
/// is restarted by the nemesis as its service manager would, comes back with
/// its data once space returns, and the cluster ends with one state hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_a_clock_step_and_a_full_disk_are_carried_out_and_undone() {
    use uptime_jepsen_lite::schedule::{Fault, Nemesis, Step, Target};
    let Some(mut parts) = debug_nodes_and_nft() else { return };
    let setup = uptime_jepsen_lite::run::setup_for(&[Nemesis::Clock, Nemesis::Disk])
        .expect("libfaketime is installed (apt-get install libfaketime)");
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::up(&root(), &dir.path().join("c"), 3, &setup).unwrap();
    let leader = leader_seen_by(&cluster, 1, None, Duration::from_secs(20)).await.expect("a leader");

    let year_s = 365 * 24 * 3600;
    let step = Step {
        at: Duration::ZERO,
        hold: Duration::from_secs(4),
        fault: Fault::Clock { target: Target::Leader, step_s: year_s },
    };
    let record = uptime_jepsen_lite::nemesis::run(&cluster, &mut parts, &step).await;
    assert!(record.error.is_none(), "{record:?}");
    assert!(
        record.detail.contains(&format!("node {leader} skew 315")),
        "the leader saw its own clock move: {record:?}"
    );
    let real = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    for k in 1..=3 {
        let s = cluster.client(k).unwrap().cluster_status().await.unwrap();
        assert!(s.state_time_ms < real + 5_000, "node {k}: state time {} ran ahead of {real}", s.state_time_ms);
    }

    let victim = leader % 3 + 1;
    let client = cluster.client(leader).unwrap();
    let m = uptime_api::dto::CreateMonitor {
        name: "kept".into(),
        kind: "tcp".into(),
        target: "127.0.0.1:9".into(),
        ..Default::default()
    };
    client.create_monitor(&m).await.unwrap();
    let step =
        Step { at: Duration::ZERO, hold: Duration::from_secs(5), fault: Fault::Disk(Target::Nodes([victim].into())) };
    let record = uptime_jepsen_lite::nemesis::run(&cluster, &mut parts, &step).await;
    assert!(record.error.is_none(), "{record:?}");
    assert!(record.detail.contains(&format!("node {victim} stopped")), "the full disk stopped it: {record:?}");
    assert!(record.detail.contains("Free space and restart the node"), "it says what to do: {record:?}");
    assert!(cluster.alive(victim), "back with its disk freed");
    // Back with its data, it answers a linearizable read and agrees on the state.
    let back = cluster.client(victim).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(got) = back.get_monitor_consistent("kept", true).await {
            assert_eq!(got.name, "kept");
            break;
        }
        assert!(Instant::now() < deadline, "node {victim} did not serve reads after the disk was freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(uptime_jepsen_lite::run::hashes_agree(&cluster).await, "state hashes differ after the disk was freed");
    let log = std::fs::read_to_string(cluster.node_dir(victim).join("log")).unwrap();
    assert!(!log.contains("panicked at"), "node {victim} panicked on the full disk");
}

/// Partitions without root: every node's peer listener behind the harness's
/// proxy. Cutting the leader off through the proxy deposes it; healed, it
/// follows the new leader, as with the nftables rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_by_proxy_depose_the_isolated_leader_without_root() {
    let bins = root().join("target/debug");
    assert!(bins.join("uptime-node").exists(), "build the node first: cargo build -p uptime-node --bins");
    std::env::set_var("DEV_CLUSTER_BIN_DIR", &bins);
    let dir = tempfile::tempdir().unwrap();
    let (cluster, cuts) = Cluster::up_proxied(&root(), &dir.path().join("c"), 3, &Default::default()).await.unwrap();
    let mut parts = Partitions::proxied(cuts);
    let config = std::fs::read_to_string(cluster.node_dir(1).join("config.toml")).unwrap();
    let advertised = std::fs::read_to_string(cluster.node_dir(1).join("peer_addr")).unwrap();
    assert!(
        !config.contains(&format!("peer_listen = \"{}\"", advertised.trim())),
        "node 1 is known at the proxy's port, not its own: {advertised} in\n{config}"
    );
    isolate_the_leader_and_heal(&cluster, &mut parts).await;
}
