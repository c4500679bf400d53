//! The monitoring domain's apply path, measured (issue 4): digest entries
//! folded into state through the real `RaftStateMachine::apply`, on redb files
//! in a temporary directory, batched as the real path batches them (one entry
//! per node per digest window, one result per monitor checked in the window).
//!
//! Usage: domain-bench [MONITORS] [SECONDS]   (defaults 10000, 10)
//! Prints readable figures, then one JSON object as the last line.

use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
use uptime_raft_store::history::{Bucket, LatencyStats, Level, Retention};
use uptime_raft_store::quorum::CheckStatus;
use uptime_raft_store::typ::Entry;
use uptime_raft_store::{codec, Command, Digest, MonitorResult, Request, StateMachineStore};

const NODES: u64 = 3;
const INTERVAL_MS: u64 = 10_000;
const WINDOW_MS: u64 = 2_000;
const T0: u64 = 1_800_000_000_000;

fn entry(index: u64, at_ms: u64, command: Command) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request { at_ms, command }),
    }
}

fn result(monitor_id: u64, i: u64) -> MonitorResult {
    let mut latency = LatencyStats::default();
    latency.record(5_000 + (monitor_id * 7919 + i * 104_729) % 50_000);
    let down = (monitor_id + i).is_multiple_of(97);
    MonitorResult {
        monitor_id,
        checks: 1,
        failures: u64::from(down),
        last_status: if down { CheckStatus::Down } else { CheckStatus::Up },
        run: 1,
        failing_run: 1,
        last_error: if down { "connection refused".into() } else { String::new() },
        latency,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let monitors: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let seconds: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let dir = tempfile::tempdir()?;
    let mut sm = StateMachineStore::open(dir.path())?;
    let mut index = 0;

    // The monitors, created in batches as the API's group commit would.
    let ids: Vec<u64> = (1..=monitors).collect();
    for batch in uptime_benches::tcp_monitors(&ids, "m", INTERVAL_MS) {
        index += 1;
        sm.apply(vec![entry(index, T0, batch)]).await?;
    }

    // Each window, every node reports the monitors whose check fell in it.
    let per_window = (monitors * WINDOW_MS / INTERVAL_MS).max(1);
    let (mut results, mut window, mut seq) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        let at = T0 + window * WINDOW_MS;
        let first = (window * per_window) % monitors;
        seq += 1;
        let mut entries = Vec::new();
        for node in 1..=NODES {
            let batch: Vec<MonitorResult> =
                (0..per_window).map(|k| result(1 + (first + k) % monitors, window + node)).collect();
            results += batch.len() as u64;
            index += 1;
            let digest = Digest { seq, coalesced: 0, results: batch };
            entries.push(entry(index, at, Command::Digests { node_id: node, digests: vec![digest] }));
        }
        sm.apply(entries).await?;
        window += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let per_s = results as f64 / elapsed;

    // The leader's tick re-evaluates every monitor: time a few.
    let ticks = 5u64;
    let t = Instant::now();
    for k in 0..ticks {
        index += 1;
        let at = T0 + window * WINDOW_MS + k * WINDOW_MS;
        sm.apply(vec![entry(index, at, Command::Tick)]).await?;
    }
    let tick_ms = t.elapsed().as_secs_f64() * 1000.0 / ticks as f64;

    // History at default retention, per monitor: full levels of realistic buckets.
    let mut lat = LatencyStats::default();
    for i in 0..6u64 {
        lat.record(3_000 + i * 9_000);
    }
    let mut bucket = Bucket::default();
    bucket.fold(6, 1, &lat);
    let r = Retention::default();
    let rows: u64 = Level::ALL.iter().map(|l| r.of(*l) / l.width_ms()).sum();
    let row_bytes = codec::encode(&bucket)?.len() as u64 + 17;
    let history_bytes_per_monitor = rows * row_bytes;

    // A snapshot of what the run built.
    let t = Instant::now();
    let snap = sm.get_snapshot_builder().await.build_snapshot().await?;
    let snapshot_build_s = t.elapsed().as_secs_f64();
    let snapshot_bytes = std::fs::metadata(snap.snapshot.path())?.len();
    let state_bytes = std::fs::metadata(dir.path().join("state.redb"))?.len();

    println!("monitors {monitors}, {NODES} nodes, {} s windows, interval {} s", WINDOW_MS / 1000, INTERVAL_MS / 1000);
    println!(
        "apply: {results} results in {elapsed:.2} s = {per_s:.0} results/s ({window} windows, {} per entry)",
        per_window
    );
    println!(
        "history at default retention: {rows} buckets x {row_bytes} B = {history_bytes_per_monitor} B per monitor"
    );
    println!(
        "snapshot of {} simulated minutes: {:.1} MB in {snapshot_build_s:.2} s; state file {:.1} MB",
        window * WINDOW_MS / 60_000,
        snapshot_bytes as f64 / 1e6,
        state_bytes as f64 / 1e6
    );
    println!(
        "{{\"monitors\": {monitors}, \"apply_results_per_s\": {per_s:.0}, \"history_bytes_per_monitor\": {history_bytes_per_monitor}, \"snapshot_mb\": {:.2}, \"snapshot_build_s\": {snapshot_build_s:.3}, \"state_file_mb\": {:.2}, \"tick_ms\": {tick_ms:.1}}}",
        snapshot_bytes as f64 / 1e6,
        state_bytes as f64 / 1e6
    );
    Ok(())
}
