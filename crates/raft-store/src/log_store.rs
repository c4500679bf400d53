//! The Raft log, the vote and the committed index, in a redb file of their own.
//!
//! Durability invariants, relied on by openraft:
//! 1. `append` reports completion (the flush callback) only after the write
//!    transaction holding the entries has committed with `Durability::Immediate`.
//! 2. `save_vote` returns only after the vote is durable.
//! 3. `purge` records the last purged log id in the same transaction that removes
//!    the entries, so `get_log_state` never sees a gap it cannot explain.
//! 4. With a [`SnapshotFloor`], nothing is purged past the latest durable,
//!    published snapshot: a purge beyond it is deferred and done by the first
//!    append or purge after the floor has caught up, and an append that would
//!    leave a hole behind a deferred purge waits for the floor first (the log
//!    on disk is always contiguous from its last purged id).
//!
//! The committed index is a hint for re-applying after a restart: `save_committed`
//! only records it in memory, and the next append writes it in its own (durable)
//! transaction. A write transaction of its own would wait for an append's fsync
//! (redb has one writer per file) on openraft's core task, stalling replication
//! for that long; a committed index on disk that lags is safe (openraft learns
//! the rest from the leader).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogId, RaftLogReader, StorageIOError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::codec;
use crate::error::{db, Error};
use crate::floor::SnapshotFloor;
use crate::typ::{Entry, LogId, StorageError, Vote};
use crate::TypeConfig;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// How long an append that would leave a hole behind a deferred purge waits for
/// the snapshot install that will cover it.
const FLOOR_WAIT: Duration = Duration::from_secs(300);

/// Default redb page cache of the log file (redb's own default is 1 GiB per
/// file): appends and the recent tail replicated to followers.
pub const DEFAULT_LOG_CACHE: usize = 64 << 20;

/// The redb-backed Raft log. Cheap to clone: clones share the database, and serve
/// as the log reader openraft hands to replication tasks.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// The latest committed log id given to `save_committed`, when newer than
    /// the one on disk: written by the next append.
    committed: Arc<Mutex<Option<Option<LogId>>>>,
    /// No purge goes past it (invariant 4); none with no floor (openraft's
    /// storage suite, tools).
    floor: Option<SnapshotFloor>,
    /// A purge asked for beyond the floor, done once the floor covers it.
    deferred: Arc<Mutex<Option<LogId>>>,
}

impl LogStore {
    pub fn open(path: &Path) -> Result<LogStore, Error> {
        LogStore::open_with_cache(path, DEFAULT_LOG_CACHE)
    }

    /// [`LogStore::open`] with a redb page cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<LogStore, Error> {
        refuse_empty_file(path)?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|source| Error::Open { path: path.to_owned(), source })?;
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(LOG).map_err(db_err)?;
        txn.open_table(META).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(LogStore {
            db: Arc::new(db),
            committed: Arc::new(Mutex::new(None)),
            floor: None,
            deferred: Arc::new(Mutex::new(None)),
        })
    }

    /// Purges no further than the latest durable snapshot of the state machine
    /// that owns `floor` (invariant 4).
    pub fn with_snapshot_floor(mut self, floor: SnapshotFloor) -> LogStore {
        self.floor = Some(floor);
        self
    }

    /// The physically purged log id, as `get_log_state` reports it.
    pub fn last_purged(&self) -> Result<Option<LogId>, Error> {
        self.read_meta(KEY_LAST_PURGED)
    }

    /// A deferred purge that the floor now covers, if any.
    fn purge_now(&self) -> Option<LogId> {
        let deferred = *self.deferred.lock().expect("deferred purge lock poisoned");
        deferred.filter(|p| self.floor.as_ref().is_none_or(|f| f.covers(p.index)))
    }

    /// Before appending `first..`: if a deferred purge is pending and the append
    /// would leave a hole between what is on disk and `first`, waits for the
    /// snapshot install that covers the purge (invariant 4).
    fn wait_for_floor_before(&self, first: u64) -> Result<(), Error> {
        let Some(pending) = *self.deferred.lock().expect("deferred purge lock poisoned") else { return Ok(()) };
        let Some(floor) = &self.floor else { return Ok(()) };
        if floor.covers(pending.index) {
            return Ok(());
        }
        let on_disk = {
            let txn = self.db.begin_read().map_err(db)?;
            let table = txn.open_table(LOG).map_err(db)?;
            let last = table.last().map_err(db)?.map(|(k, _)| k.value());
            let purged: Option<LogId> = self.last_purged()?;
            last.max(purged.map(|p| p.index))
        };
        if on_disk.map_or(0, |i| i + 1) >= first {
            return Ok(());
        }
        tracing::info!(first, pending = pending.index, "append waits for the snapshot install behind it");
        if floor.wait_to_cover(pending.index, FLOOR_WAIT) {
            Ok(())
        } else {
            Err(Error::Task {
                message: format!(
                    "no durable snapshot covers index {} after {FLOOR_WAIT:?}; the log is kept whole instead",
                    pending.index
                ),
            })
        }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(META).map_err(db)?;
        let value = table.get(key).map_err(db)?;
        Ok(match value {
            Some(v) => Some(codec::decode(v.value())?),
            None => None,
        })
    }

    /// Writes one meta value durably (redb's default durability fsyncs).
    fn write_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = codec::encode(value)?;
        let txn = begin_durable(&self.db)?;
        txn.open_table(META).map_err(db)?.insert(key, bytes.as_slice()).map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(())
    }

    fn entries<R: RangeBounds<u64>>(&self, range: R) -> Result<Vec<Entry>, Error> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(LOG).map_err(db)?;
        let mut out = Vec::new();
        for row in table.range((range.start_bound().cloned(), range.end_bound().cloned())).map_err(db)? {
            let (_, v) = row.map_err(db)?;
            out.push(codec::decode(v.value())?);
        }
        Ok(out)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, Error> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(LOG).map_err(db)?;
        let last = table.last().map_err(db)?;
        Ok(match last {
            Some((_, v)) => Some(*codec::decode::<Entry>(v.value())?.get_log_id()),
            None => None,
        })
    }

    /// Appends `entries` in one write transaction and returns once it is durable
    /// (invariant 1): what openraft's `append` runs off the async threads. Public
    /// for `log-append-probe`, which times it against a raw fsync.
    pub fn append_durably(&self, entries: Vec<Entry>) -> Result<(), Error> {
        if let Some(first) = entries.first() {
            self.wait_for_floor_before(first.log_id.index)?;
        }
        let purge = self.purge_now();
        let txn = begin_durable(&self.db)?;
        {
            let mut table = txn.open_table(LOG).map_err(db)?;
            if let Some(p) = purge {
                table.retain_in(..=p.index, |_, _| false).map_err(db)?;
                let bytes = codec::encode(&p)?;
                txn.open_table(META).map_err(db)?.insert(KEY_LAST_PURGED, bytes.as_slice()).map_err(db)?;
            }
            for entry in &entries {
                let bytes = codec::encode(entry)?;
                table.insert(entry.log_id.index, bytes.as_slice()).map_err(db)?;
            }
            let committed = *self.committed.lock().expect("committed lock poisoned");
            if let Some(committed) = committed {
                let bytes = codec::encode(&committed)?;
                txn.open_table(META).map_err(db)?.insert(KEY_COMMITTED, bytes.as_slice()).map_err(db)?;
            }
        }
        txn.commit().map_err(db)?;
        if let Some(p) = purge {
            self.finish_deferred(p);
        }
        Ok(())
    }

    /// Clears the deferred purge once a purge up to `done` is on disk.
    fn finish_deferred(&self, done: LogId) {
        let mut deferred = self.deferred.lock().expect("deferred purge lock poisoned");
        if deferred.is_some_and(|d| d <= done) {
            *deferred = None;
        }
    }

    /// Purges up to `log_id`, or as far as the floor allows and the rest later
    /// (invariant 4).
    fn purge_blocking(&self, log_id: LogId) -> Result<(), Error> {
        if self.floor.as_ref().is_some_and(|f| !f.covers(log_id.index)) {
            let mut deferred = self.deferred.lock().expect("deferred purge lock poisoned");
            *deferred = (*deferred).max(Some(log_id));
            tracing::info!(upto = log_id.index, "purge deferred until a durable snapshot covers it");
            return Ok(());
        }
        self.remove_blocking((Bound::Unbounded, Bound::Included(log_id.index)), Some(log_id))?;
        self.finish_deferred(log_id);
        Ok(())
    }

    /// Removes entries with an index in `range`; with `purged`, records it as the last
    /// purged log id in the same transaction (invariant 3).
    fn remove_blocking(&self, range: (Bound<u64>, Bound<u64>), purged: Option<LogId>) -> Result<(), Error> {
        let txn = begin_durable(&self.db)?;
        {
            let mut table = txn.open_table(LOG).map_err(db)?;
            table.retain_in(range, |_, _| false).map_err(db)?;
            if let Some(purged) = purged {
                let bytes = codec::encode(&purged)?;
                txn.open_table(META).map_err(db)?.insert(KEY_LAST_PURGED, bytes.as_slice()).map_err(db)?;
            }
        }
        txn.commit().map_err(db)?;
        Ok(())
    }

    /// Runs blocking redb work without stalling the tasks that serve the network
    /// (see [`crate::blocking`]).
    async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(LogStore) -> Result<T, Error> + Send + 'static,
    {
        let this = self.clone();
        crate::blocking(move || f(this)).await
    }
}

/// redb turns an empty file into a fresh database; for a store that existed, an
/// empty file means it was truncated, and starting empty would lose acknowledged
/// entries. Only a missing file starts fresh.
pub fn refuse_empty_file(path: &Path) -> Result<(), Error> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => Err(Error::Corrupt {
            path: path.to_owned(),
            reason: "the file is empty (truncated?); restore it, or delete the node's data and add it back".into(),
        }),
        _ => Ok(()),
    }
}

/// A write transaction that fsyncs on commit. redb's default is the same today;
/// invariants 1-3 rely on it, so it is said, not assumed.
pub fn begin_durable(db: &Database) -> Result<redb::WriteTransaction, Error> {
    let mut txn = db.begin_write().map_err(db_err)?;
    txn.set_durability(redb::Durability::Immediate).map_err(|e| db_err(redb::Error::from(e)))?;
    Ok(txn)
}

fn db_err<E: Into<redb::Error>>(e: E) -> Error {
    db(e)
}

fn read_err(e: Error) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: Error) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

// === impl RaftLogReader ===

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.entries(range).map_err(read_err)
    }
}

// === impl RaftLogStorage ===

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(KEY_LAST_PURGED).map_err(read_err)?;
        let last = self.last_entry_log_id().map_err(read_err)?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |s| s.write_meta(KEY_VOTE, &vote))
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE).map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        *self.committed.lock().expect("committed lock poisoned") = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        if let Some(pending) = *self.committed.lock().expect("committed lock poisoned") {
            return Ok(pending);
        }
        Ok(self.read_meta::<Option<LogId>>(KEY_COMMITTED).map_err(read_err)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let last = entries.last().map(|e| e.log_id.index).unwrap_or(0);
        crate::commit_path!("log_append", last);
        let result = self
            .blocking(move |s| {
                crate::commit_path!("log_append_running", last);
                let result = s.append_durably(entries);
                crate::commit_path!("log_append_durable", last);
                result
            })
            .await;
        crate::commit_path!("log_append_done", last);
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |s| s.remove_blocking((Bound::Included(log_id.index), Bound::Unbounded), None))
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::info!(upto = log_id.index, "log purge requested");
        self.blocking(move |s| s.purge_blocking(log_id)).await.map_err(write_err)
    }
}
