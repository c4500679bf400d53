//! Carries out a schedule's steps on a real cluster and records when each
//! fault began and ended (the run's `faults`). Every fault is undone before
//! the step returns, whatever happened meanwhile: killed nodes restarted,
//! paused nodes continued, partitions healed.

use std::collections::BTreeSet;
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

/// Runs one step: starts the fault, holds it, undoes it.
pub async fn run(cluster: &Cluster, parts: &mut Partitions, step: &Step) -> FaultRecord {
    let leader = leader(cluster).await;
    let start_ms = now_ms();
    let mut errors = Vec::new();
    let (kind, detail) = match &step.fault {
        Fault::Kill(t) => {
            let nodes = nodes_of(t, leader);
            for k in &nodes {
                if let Err(e) = cluster.signal(*k, Signal::Kill) {
                    errors.push(e);
                }
            }
            tokio::time::sleep(step.hold).await;
            for k in &nodes {
                if let Err(e) = cluster.start(*k) {
                    errors.push(e);
                }
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
    };
    FaultRecord {
        kind: kind.to_string(),
        detail,
        start_ms,
        end_ms: now_ms(),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}
