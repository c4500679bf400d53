//! How much of a commit's latency the log store itself costs: times appends of
//! one SIZE-byte entry through [`LogStore::append_durably`] (the redb write
//! transaction and its fsync that openraft's `append` waits for), interleaved
//! with raw SIZE-byte appends + `fdatasync` to a plain file in the same
//! directory, so both see the same disk at the same moments. Used by
//! `scripts/bench-raft.sh`: the ratio of the two p99s is the floor a redb-backed
//! log puts under the "commit p99 within 2x of fsync p99" target.
//!
//! Usage: log-append-probe DIR [COUNT] [SIZE]   (defaults 1000, 1024)
//! DIR must exist; the probe's files are created in it and removed at the end.
//! Prints figures, then one JSON object as the last line.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use uptime_raft_store::typ::Entry;
use uptime_raft_store::{Command, LogStore, Request};

fn percentile(sorted: &[f64], pct: f64) -> f64 {
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn summary(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 50.0), percentile(&v, 99.0))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        anyhow::bail!("usage: log-append-probe DIR [COUNT] [SIZE]");
    };
    let count: u64 = args.get(2).map(|s| s.parse()).transpose().context("COUNT must be a number")?.unwrap_or(1000);
    let size: usize = args.get(3).map(|s| s.parse()).transpose().context("SIZE must be a number")?.unwrap_or(1024);
    anyhow::ensure!(count > 0, "COUNT must be at least 1");
    let work =
        tempfile::Builder::new().prefix("log-append-probe.").tempdir_in(dir).context("cannot create a work dir")?;

    let log = LogStore::open(&work.path().join("raft-log.redb"))?;
    let mut raw = OpenOptions::new().create(true).append(true).open(work.path().join("raw.data"))?;
    let value = "x".repeat(size);
    let block = vec![b'x'; size];
    let (mut log_ms, mut raw_ms) = (Vec::new(), Vec::new());
    for index in 1..=count {
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request {
                at_ms: index,
                command: Command::SetSetting { key: format!("k{}", index % 1000), value: value.clone() },
            }),
        };
        let t = Instant::now();
        log.append_durably(vec![entry])?;
        log_ms.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        raw.write_all(&block)?;
        raw.sync_data()?;
        raw_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (log_p50, log_p99) = summary(log_ms);
    let (raw_p50, raw_p99) = summary(raw_ms);
    println!("{count} appends of {size} B, interleaved:");
    println!("  raw append + fdatasync   p50 {raw_p50:.3} ms  p99 {raw_p99:.3} ms");
    println!(
        "  log store append (redb)  p50 {log_p50:.3} ms  p99 {log_p99:.3} ms  ({:.2}x raw p99)",
        log_p99 / raw_p99
    );
    println!(
        "{}",
        serde_json::json!({
            "count": count, "size": size,
            "raw_p50_ms": raw_p50, "raw_p99_ms": raw_p99,
            "log_append_p50_ms": log_p50, "log_append_p99_ms": log_p99,
            "log_append_p99_over_raw": log_p99 / raw_p99,
        })
    );
    Ok(())
}
