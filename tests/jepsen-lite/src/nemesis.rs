//! Carries out a schedule's steps on a real cluster and records when each
//! fault began and ended (the run's `faults`). Every fault is undone before
//! the step returns, whatever happened meanwhile: killed nodes restarted,
//! paused nodes continued, partitions healed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Signal};
use crate::net::Partitions;
use crate::schedule::{Fault, Step, Target};

/// A fault as it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// `kill`, `pause`, `partition`.
    pub kind: String,
    /// What it hit: nodes, or the cuts of a partition (`a>b`).
    pub detail: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// What went wrong carrying it out or undoing it, if anything.
    pub error: Option<String>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The leader as the first answering node sees it.
pub async fn leader(cluster: &Cluster) -> Option<u64> {
    for k in 1..=cluster.nodes {
        if let Ok(c) = cluster.client(k) {
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), c.cluster_status()).await {
                if s.leader.is_some() {
                    return s.leader;
                }
            }
        }
    }
    None
}

fn nodes_of(target: &Target, leader: Option<u64>) -> BTreeSet<u64> {
    match target {
        Target::Leader => leader.into_iter().collect(),
        Target::Nodes(n) => n.clone(),
    }
}

/// How long libfaketime may keep an old offset (`FAKETIME_CACHE_DURATION`).
pub const CLOCK_REREAD: Duration = Duration::from_millis(1_500);

/// The file libfaketime reads node `k`'s clock offset from.
pub fn clock_file(cluster: &Cluster, k: u64) -> std::path::PathBuf {
    cluster.node_dir(k).join("faketime")
}

fn set_clock(cluster: &Cluster, k: u64, step_s: i64) -> Result<(), String> {
    let path = clock_file(cluster, k);
    // Written whole and renamed, so libfaketime never reads half a line.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{step_s:+}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("node {k}: setting its clock: {e}"))
}

fn filler(cluster: &Cluster, k: u64) -> std::path::PathBuf {
    cluster.node_dir(k).join("data").join("jepsen-filler")
}

/// Writes zeros to `path` until the file system has no byte left; returns
/// how many were written.
async fn fill(path: &std::path::Path) -> std::io::Result<u64> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        let mut written = 0u64;
        for chunk in [1 << 20, 4096, 1] {
            let buf = vec![0u8; chunk];
            loop {
                match f.write(&buf) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.raw_os_error() == Some(28) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        // tmpfs allocates on write; nothing to sync.
        Ok(written)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The last line of node `k`'s log, for a record of why it stopped.
pub fn last_line(cluster: &Cluster, k: u64) -> String {
    std::fs::read_to_string(cluster.node_dir(k).join("log"))
        .ok()
        .and_then(|s| s.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.chars().take(300).collect()))
        .unwrap_or_default()
}

/// What a full disk makes a node say as it stops (`uptime-node`'s own line).
pub const FULL_DISK_STOP: &str = "Free space and restart the node";

/// Plays every node's service manager (`Restart=always`) until `stop`: a
/// node that stopped on its own, and that no nemesis holds, is started again
/// within a second. Returns each restart's node and the line it stopped with.
pub async fn supervise(
    cluster: std::sync::Arc<Cluster>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<(u64, String)> {
    let mut restarts = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for k in 1..=cluster.nodes {
            if !cluster.is_held(k) && !cluster.alive(k) {
                restarts.push((k, last_line(&cluster, k)));
                let c = cluster.clone();
                let _ = tokio::task::spawn_blocking(move || c.start(k)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    restarts
}

/// Runs one step: starts the fault, holds it, undoes it.
pub async fn run(cluster: &Cluster, parts: &mut Partitions, step: &Step) -> FaultRecord {
    let leader = leader(cluster).await;
    let start_ms = now_ms();
    let mut errors = Vec::new();
    let (kind, detail) = match &step.fault {
        Fault::Kill(t) => {
            let nodes = nodes_of(t, leader);
            for k in &nodes {
                cluster.hold(*k, true);
                if let Err(e) = cluster.signal(*k, Signal::Kill) {
                    errors.push(e);
                }
            }
            tokio::time::sleep(step.hold).await;
            for k in &nodes {
                if let Err(e) = cluster.start(*k) {
                    errors.push(e);
                }
                cluster.hold(*k, false);
            }
            ("kill", format!("{nodes:?}"))
        }
        Fault::Pause(t) => {
            let nodes = nodes_of(t, leader);
            for k in &nodes {
                if let Err(e) = cluster.signal(*k, Signal::Stop) {
                    errors.push(e);
                }
            }
            tokio::time::sleep(step.hold).await;
            for k in &nodes {
                if let Err(e) = cluster.signal(*k, Signal::Cont) {
                    errors.push(e);
                }
            }
            ("pause", format!("{nodes:?}"))
        }
        Fault::Partition(shape) => {
            let cuts = shape.resolve(leader).cuts(cluster.nodes);
            if let Err(e) = parts.apply(&cuts) {
                errors.push(e);
            }
            tokio::time::sleep(step.hold).await;
            if let Err(e) = parts.heal() {
                errors.push(e);
            }
            let detail: Vec<String> = cuts.iter().map(|(a, b)| format!("{a}>{b}")).collect();
            ("partition", detail.join(","))
        }
        Fault::Clock { target, step_s } => {
            let nodes = nodes_of(target, leader);
            for k in &nodes {
                if let Err(e) = set_clock(cluster, *k, *step_s) {
                    errors.push(e);
                }
            }
            // Shown to bite: the node itself sees its clock that far off the voters'.
            tokio::time::sleep(CLOCK_REREAD.min(step.hold)).await;
            let mut seen = Vec::new();
            for k in &nodes {
                let skew = match cluster.client(*k) {
                    Ok(c) => c.cluster_status().await.ok().and_then(|s| s.clock_skew_ms),
                    Err(_) => None,
                };
                match skew {
                    Some(ms) if (ms / 1000 - step_s).abs() > step_s.abs() / 10 + 5 => {
                        errors.push(format!("node {k}: its clock did not move: skew {ms} ms, step {step_s} s"))
                    }
                    Some(ms) => seen.push(format!("node {k} skew {} s", ms / 1000)),
                    None => seen.push(format!("node {k} skew unknown")),
                }
            }
            tokio::time::sleep(step.hold.saturating_sub(CLOCK_REREAD)).await;
            for k in &nodes {
                if let Err(e) = set_clock(cluster, *k, 0) {
                    errors.push(e);
                }
            }
            // libfaketime rereads the offset at most once a second.
            tokio::time::sleep(CLOCK_REREAD).await;
            ("clock", format!("{nodes:?} {step_s:+} s ({})", seen.join(", ")))
        }
        Fault::Disk(target) => {
            let nodes = nodes_of(target, leader);
            let mut filled = Vec::new();
            for k in &nodes {
                cluster.hold(*k, true);
                match fill(&filler(cluster, *k)).await {
                    Ok(bytes) => filled.push(format!("node {k}: {} MiB", bytes >> 20)),
                    Err(e) => errors.push(format!("node {k}: filling its disk: {e}")),
                }
            }
            // The node's service manager (`Restart=always`, `RestartSec=1`)
            // restarts it whenever it stops, full disk or not: a start on a
            // full disk must fail cleanly (or run), never damage the data.
            let until = tokio::time::Instant::now() + step.hold;
            let mut exits: BTreeMap<u64, (u32, String)> = BTreeMap::new();
            while tokio::time::Instant::now() < until {
                for k in &nodes {
                    if !cluster.alive(*k) {
                        let e = exits.entry(*k).or_default();
                        e.0 += 1;
                        e.1 = last_line(cluster, *k);
                        let _ = cluster.start(*k);
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            for k in &nodes {
                if let Err(e) = std::fs::remove_file(filler(cluster, *k)) {
                    errors.push(format!("node {k}: freeing its disk: {e}"));
                }
                // With space back, the next restart (if it is down) must
                // bring it back with its data.
                if !cluster.alive(*k) {
                    let e = exits.entry(*k).or_default();
                    e.0 += 1;
                    e.1 = last_line(cluster, *k);
                    if let Err(e) = cluster.start(*k) {
                        errors.push(format!("node {k} did not come back with its disk freed: {e}"));
                    }
                }
            }
            for (k, (n, line)) in &exits {
                filled.push(format!("node {k} stopped {n} time(s), restarted; last: {line}"));
            }
            for k in &nodes {
                cluster.hold(*k, false);
            }
            ("disk", format!("{nodes:?} {}", filled.join("; ")))
        }
    };
    FaultRecord {
        kind: kind.to_string(),
        detail,
        start_ms,
        end_ms: now_ms(),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}
