//! Creates node 1's data directory for a single-node cluster (as its first start
//! would) and fills it with MONITORS monitors and DAYS days of history, through
//! Raft on the node's own redb files, then has Raft
//! build a snapshot and purge the log behind it, as a long-running cluster would
//! have. Used by `scripts/bench-snapshot.sh` to measure snapshot size, build time
//! and a new node's catch-up at a realistic state size.
//!
//! A live cluster stamps entries with the leader's clock, so 30 days of history
//! cannot be produced in a bounded run; here the entries carry simulated leader
//! times ending a minute before now, so the node carries on from them when it
//! starts again. Older history comes in hourly digests (360 checks each), the
//! last 6 hours in minute digests (6 checks each), and the leader's tick runs
//! every simulated hour so retention applies as it would. The monitors are
//! paused at the end, so the node does not probe 10k targets during the
//! measurement that follows.
//!
//! Usage: seed-history DATA_DIR PEER_ADDR API_URL [MONITORS] [DAYS]   (defaults 10000, 30)
//! DATA_DIR must not exist yet; PEER_ADDR and API_URL are node 1's, as in its
//! config. Prints figures, then one JSON object as the last line.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use uptime_raft_store::history::LatencyStats;
use uptime_raft_store::quorum::CheckStatus;
use uptime_raft_store::{
    Command, Digest, LogStore, MonitorResult, PeerNode, Raft, Request, StateMachineStore, MAX_BATCH,
};

const HOUR_MS: u64 = 3_600_000;
const MINUTE_MS: u64 = 60_000;
/// Results per log entry, about what a digest window of a large cluster holds.
const RESULTS_PER_ENTRY: usize = 5_000;
/// Reporting nodes, as in a 3-node cluster.
const REPORTERS: u64 = 3;

fn result(monitor_id: u64, step: u64, checks: u64) -> MonitorResult {
    let mut latency = LatencyStats::default();
    for k in 0..checks.min(8) {
        latency.record(2_000 + (monitor_id * 7919 + step * 104_729 + k * 31) % 60_000);
    }
    // Scale the sampled histogram to the number of checks it stands for.
    let scale = checks / checks.clamp(1, 8);
    latency.count *= scale;
    latency.sum_us *= scale;
    for slot in &mut latency.hist {
        *slot *= scale as u32;
    }
    let failures = u64::from((monitor_id + step).is_multiple_of(211));
    MonitorResult {
        monitor_id,
        checks,
        failures,
        last_status: CheckStatus::Up,
        run: 1,
        failing_run: 1,
        last_error: String::new(),
        latency,
    }
}

async fn write(raft: &Raft, at_ms: u64, command: Command) -> anyhow::Result<()> {
    raft.client_write(Request { at_ms, command }).await.context("client_write")?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: seed-history DATA_DIR PEER_ADDR API_URL [MONITORS] [DAYS]";
    let dir = std::path::PathBuf::from(args.next().context(usage)?);
    let peer_addr = args.next().context(usage)?;
    let api_addr = args.next().context(usage)?;
    anyhow::ensure!(!dir.exists(), "{} exists: the seed starts a cluster from nothing", dir.display());
    let monitors: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let days: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(30);

    std::fs::create_dir_all(&dir)?;
    let log = LogStore::open(&dir.join("raft-log.redb"))?;
    let sm = StateMachineStore::open(&dir.join("state"))?;
    let reader = sm.reader();
    let config = openraft::Config {
        cluster_name: "uptime-cluster".into(),
        heartbeat_interval: 50,
        election_timeout_min: 250,
        election_timeout_max: 400,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    }
    .validate()?;
    let network = uptime_api::PeerNetworkFactory::new(None, Default::default());
    let raft = Raft::new(1, Arc::new(config), network, log, sm).await?;
    raft.initialize(std::collections::BTreeMap::from([(1, PeerNode { peer_addr, api_addr })])).await?;
    raft.wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader == Some(1), "leader")
        .await
        .context("node 1 did not become leader")?;

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let end = now - MINUTE_MS;
    let start = end - days * 24 * HOUR_MS;
    let t = Instant::now();

    let ids: Vec<u64> = (1..=monitors).collect();
    for batch in uptime_benches::tcp_monitors(&ids, "seeded-", 10_000) {
        write(&raft, start, batch).await?;
    }

    // Seqs from the simulated clock (ms × 1000), as nodes seed theirs from the
    // wall clock: the real nodes' later seqs are larger.
    let mut results = 0u64;
    let mut entries = 0u64;
    let mut report = |at: u64, step: u64, checks: u64, reporters: u64| {
        let mut cmds = Vec::new();
        for node in 1..=reporters {
            for (k, chunk) in ids.chunks(RESULTS_PER_ENTRY).enumerate() {
                let digest = Digest {
                    seq: at * 1000 + k as u64,
                    coalesced: 0,
                    results: chunk.iter().map(|id| result(*id, step + node, checks)).collect(),
                };
                results += chunk.len() as u64;
                cmds.push(Command::Digests { node_id: node, digests: vec![digest] });
            }
        }
        entries += cmds.len() as u64;
        cmds
    };
    let minutes_from = end - 6 * HOUR_MS;
    let mut at = start;
    let mut step = 0;
    while at < minutes_from {
        // One reporter suffices for the hourly part; all of them for the last hours.
        for cmd in report(at, step, 360, 1) {
            write(&raft, at, cmd).await?;
        }
        write(&raft, at, Command::Tick).await?;
        at += HOUR_MS;
        step += 1;
    }
    while at < end {
        for cmd in report(at, step, 6, REPORTERS) {
            write(&raft, at, cmd).await?;
        }
        if at.is_multiple_of(HOUR_MS / 6) {
            write(&raft, at, Command::Tick).await?;
        }
        at += MINUTE_MS;
        step += 1;
    }
    write(&raft, end, Command::Tick).await?;
    for chunk in ids.chunks(MAX_BATCH) {
        let cmds = chunk.iter().map(|id| Command::SetMonitorEnabled { id: *id, enabled: false }).collect();
        write(&raft, end, Command::Batch(cmds)).await?;
    }
    let seed_s = t.elapsed().as_secs_f64();

    let applied = raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0);
    let t = Instant::now();
    raft.trigger().snapshot().await?;
    raft.wait(Some(Duration::from_secs(600)))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "snapshot built")
        .await
        .context("snapshot")?;
    let snapshot_build_s = t.elapsed().as_secs_f64();
    raft.wait(Some(Duration::from_secs(60)))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= applied), "log purged")
        .await
        .context("purge")?;
    let hash = reader.state_hash()?;
    raft.shutdown().await?;

    let snapshot_bytes = std::fs::metadata(dir.join("state/snapshot.data"))?.len();
    let state_bytes = std::fs::metadata(dir.join("state/state.redb"))?.len();
    println!("seeded {monitors} monitors x {days} days: {results} results in {entries} digest entries, {seed_s:.1} s");
    println!(
        "snapshot at index {applied}: {:.1} MB in {snapshot_build_s:.2} s; state file {:.1} MB; hash {}",
        snapshot_bytes as f64 / 1e6,
        state_bytes as f64 / 1e6,
        hash.hash
    );
    println!(
        "{{\"monitors\": {monitors}, \"days\": {days}, \"seed_s\": {seed_s:.1}, \"snapshot_mb\": {:.1}, \"snapshot_build_s\": {snapshot_build_s:.2}, \"state_file_mb\": {:.1}, \"applied_index\": {applied}}}",
        snapshot_bytes as f64 / 1e6,
        state_bytes as f64 / 1e6
    );
    Ok(())
}
