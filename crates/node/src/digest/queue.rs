//! The durable queue of sealed digests (`data/digests.redb`): digests wait here
//! until the leader has applied them (invariants 1 to 3 of `digest`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use uptime_raft_store::codec;
use uptime_raft_store::history::LatencyStats;
use uptime_raft_store::{Digest, MonitorResult};

use tracing::warn;

use crate::error::Error;

const DIGESTS: TableDefinition<u64, &[u8]> = TableDefinition::new("digests");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";
/// redb page cache of the digest queue file (redb defaults to 1 GiB per file).
const OUTBOX_CACHE: usize = 16 << 20;
/// Totals since the queue was created, for `/metrics`.
const DIGESTS_SEALED: &str = "digests_sealed";
const CHECKS_SEALED: &str = "checks_sealed";

fn store_err(e: impl Into<redb::Error>) -> Error {
    Error::Store(uptime_raft_store::Error::Storage { source: e.into() })
}

/// Digests this node has sealed and the leader has not yet confirmed applied.
#[derive(Clone)]
pub struct DigestQueue {
    db: Arc<Database>,
    /// The highest seq that may have reached a leader (sent, answer perhaps
    /// lost): digests up to it are never coalesced (invariant 3). At open every
    /// digest already in the queue counts as sent: the last run may have sent it.
    sent: Arc<AtomicU64>,
    /// Checks this node could not run since it started (see `Window::fold`).
    not_run: Arc<AtomicU64>,
}

impl DigestQueue {
    pub fn open(path: &Path) -> Result<DigestQueue, Error> {
        uptime_raft_store::refuse_empty_file(path)?;
        let db = Database::builder()
            .set_cache_size(OUTBOX_CACHE)
            .create(path)
            .map_err(|source| Error::Store(uptime_raft_store::Error::Open { path: path.to_owned(), source }))?;
        let txn = db.begin_write().map_err(store_err)?;
        txn.open_table(DIGESTS).map_err(store_err)?;
        txn.open_table(META).map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        let last = {
            let txn = db.begin_read().map_err(store_err)?;
            let table = txn.open_table(DIGESTS).map_err(store_err)?;
            let last = table.last().map_err(store_err)?.map(|(k, _)| k.value());
            last.unwrap_or(0)
        };
        Ok(DigestQueue { db: Arc::new(db), sent: Arc::new(AtomicU64::new(last)), not_run: Arc::default() })
    }

    /// Records that digests up to `seq` are about to be sent to a leader.
    pub fn mark_sent(&self, seq: u64) {
        self.sent.fetch_max(seq, Ordering::AcqRel);
    }

    /// Seals `results` as the next digest, durably.
    pub fn push(&self, results: Vec<MonitorResult>) -> Result<u64, Error> {
        let txn = uptime_raft_store::begin_durable(&self.db)?;
        let seq;
        {
            let mut meta = txn.open_table(META).map_err(store_err)?;
            let stored = meta.get(NEXT_SEQ).map_err(store_err)?.map(|v| v.value()).unwrap_or(0);
            let clock_seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64 * 1000);
            seq = stored.max(clock_seed).max(1);
            meta.insert(NEXT_SEQ, seq + 1).map_err(store_err)?;
            let checks: u64 = results.iter().map(|r| r.checks).sum();
            for (key, add) in [(DIGESTS_SEALED, 1), (CHECKS_SEALED, checks)] {
                let total = meta.get(key).map_err(store_err)?.map(|v| v.value()).unwrap_or(0);
                meta.insert(key, total.saturating_add(add)).map_err(store_err)?;
            }
            let digest = Digest { seq, coalesced: 0, results };
            let bytes = codec::encode(&digest).map_err(|e| Error::Store(e.into()))?;
            txn.open_table(DIGESTS).map_err(store_err)?.insert(seq, bytes.as_slice()).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        Ok(seq)
    }

    /// (digests, checks) sealed into the queue since it was created.
    pub fn sealed(&self) -> Result<(u64, u64), Error> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let meta = txn.open_table(META).map_err(store_err)?;
        let get = |key| -> Result<u64, Error> { Ok(meta.get(key).map_err(store_err)?.map(|v| v.value()).unwrap_or(0)) };
        Ok((get(DIGESTS_SEALED)?, get(CHECKS_SEALED)?))
    }

    /// The oldest `limit` unsent digests, in seq order.
    pub fn pending(&self, limit: usize) -> Result<Vec<Digest>, Error> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(DIGESTS).map_err(store_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(store_err)?.take(limit) {
            let (_, v) = row.map_err(store_err)?;
            out.push(codec::decode(v.value()).map_err(|e| Error::Store(e.into()))?);
        }
        Ok(out)
    }

    /// The oldest digests to send in one proposal: up to `limit` of them, and no
    /// more than `max_bytes` of encoded digests (always at least one), so the
    /// proposal fits one log entry ([`uptime_raft_store::MAX_ENTRY_BYTES`]).
    pub fn next_batch(&self, limit: usize, max_bytes: usize) -> Result<Vec<Digest>, Error> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(DIGESTS).map_err(store_err)?;
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        for row in table.iter().map_err(store_err)?.take(limit) {
            let (_, v) = row.map_err(store_err)?;
            bytes = bytes.saturating_add(v.value().len());
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(codec::decode(v.value()).map_err(|e| Error::Store(e.into()))?);
        }
        Ok(out)
    }

    pub fn len(&self) -> Result<usize, Error> {
        let txn = self.db.begin_read().map_err(store_err)?;
        Ok(txn.open_table(DIGESTS).map_err(store_err)?.len().map_err(store_err)? as usize)
    }

    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }

    /// Drops every digest with a seq up to `seq`: the leader has applied them.
    pub fn ack(&self, seq: u64) -> Result<(), Error> {
        let txn = uptime_raft_store::begin_durable(&self.db)?;
        txn.open_table(DIGESTS).map_err(store_err)?.retain_in(..=seq, |_, _| false).map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        Ok(())
    }

    /// Folds the oldest unsent digests into one so at most `max` remain, as far
    /// as unsent digests allow (invariant 3). The merged digest keeps the newest
    /// seq of those it replaces, so seqs stay increasing. A digest that may have
    /// been sent is never folded: it may have been applied with its answer
    /// lost, and folded into a digest with a newer seq its checks would enter
    /// the history twice; sent alone again, apply drops it as seen.
    pub fn coalesce(&self, max: usize) -> Result<usize, Error> {
        let len = self.len()?;
        if len <= max {
            return Ok(0);
        }
        let fold = len - max + 1;
        let sent = self.sent.load(Ordering::Acquire);
        let oldest: Vec<Digest> = {
            let txn = self.db.begin_read().map_err(store_err)?;
            let table = txn.open_table(DIGESTS).map_err(store_err)?;
            let mut out = Vec::new();
            for row in table.range(sent.saturating_add(1)..).map_err(store_err)?.take(fold) {
                let (_, v) = row.map_err(store_err)?;
                out.push(codec::decode(v.value()).map_err(|e| Error::Store(e.into()))?);
            }
            out
        };
        if oldest.len() < 2 {
            return Ok(0);
        }
        let (Some(first), Some(last)) = (oldest.first(), oldest.last()) else { return Ok(0) };
        let mut merged: BTreeMap<u64, MonitorResult> = BTreeMap::new();
        let mut windows = 0u32;
        for d in &oldest {
            windows += 1 + d.coalesced;
            for r in &d.results {
                match merged.get_mut(&r.monitor_id) {
                    None => {
                        merged.insert(r.monitor_id, r.clone());
                    }
                    Some(m) => {
                        m.checks += r.checks;
                        m.failures += r.failures;
                        m.last_status = r.last_status;
                        m.run = r.run;
                        m.failing_run = r.failing_run;
                        m.last_error.clone_from(&r.last_error);
                        merge_latency(&mut m.latency, &r.latency);
                    }
                }
            }
        }
        let digest = Digest { seq: last.seq, coalesced: windows - 1, results: merged.into_values().collect() };
        let bytes = codec::encode(&digest).map_err(|e| Error::Store(e.into()))?;
        let txn = uptime_raft_store::begin_durable(&self.db)?;
        {
            let mut t = txn.open_table(DIGESTS).map_err(store_err)?;
            t.retain_in(first.seq..=last.seq, |_, _| false).map_err(store_err)?;
            t.insert(last.seq, bytes.as_slice()).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        Ok(oldest.len() - 1)
    }
}

fn merge_latency(into: &mut LatencyStats, from: &LatencyStats) {
    if from.count == 0 {
        return;
    }
    if into.count == 0 {
        *into = from.clone();
        return;
    }
    into.count += from.count;
    into.min_us = into.min_us.min(from.min_us);
    into.max_us = into.max_us.max(from.max_us);
    into.sum_us += from.sum_us;
    for (a, b) in into.hist.iter_mut().zip(&from.hist) {
        *a = a.saturating_add(*b);
    }
}

impl DigestQueue {
    /// Counts `n` checks this node could not run, for `/metrics`.
    pub(crate) fn count_not_run(&self, n: u64) {
        self.not_run.fetch_add(n, Ordering::Relaxed);
    }
}

/// This node's side of the digest flow on `/metrics`.
impl uptime_api::LocalMetrics for DigestQueue {
    fn write(&self, out: &mut uptime_api::MetricsWriter) {
        match (self.sealed(), self.len()) {
            (Ok((digests, checks)), Ok(pending)) => {
                out.counter(
                    "uptime_digests_sealed_total",
                    "Digests this node sealed into its digest queue.",
                    &[],
                    digests,
                );
                out.counter(
                    "uptime_digest_checks_sealed_total",
                    "Checks in the digests this node sealed.",
                    &[],
                    checks,
                );
                out.gauge(
                    "uptime_digest_queue_pending",
                    "Digests waiting for the leader to apply them.",
                    &[],
                    pending as u64,
                );
            }
            (Err(e), _) | (_, Err(e)) => warn!(error = %e, "cannot read the digest queue for /metrics"),
        }
        out.counter(
            "uptime_checks_not_run_total",
            "Checks this node could not run (no permission, no file descriptors, a missing source address): \
             reported as not checked, no vote.",
            &[],
            self.not_run.load(Ordering::Relaxed),
        );
    }
}
