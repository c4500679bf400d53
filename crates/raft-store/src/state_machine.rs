//! Deterministic apply, snapshots and read access to the replicated state.
//!
//! Invariants:
//! 1. Apply is a pure function of (state, entry): it reads no clock, randomness or
//!    I/O beyond this store. Time comes from `Request::at_ms`, folded as
//!    `clock = max(clock, at_ms)`.
//! 2. A batch of entries is applied in one write transaction together with
//!    `last_applied`, so the state always sits at a batch boundary that agrees
//!    with `last_applied`.
//! 3. Apply commits are never fsynced (`Durability::None`): the Raft log is the
//!    durable record, and after a crash openraft re-applies from the durable
//!    `last_applied` on. A checkpoint thread makes what is applied durable with an
//!    empty durable commit every [`CHECKPOINT_INTERVAL`], off the commit path: a
//!    write's answer never waits for the state file's fsync. What makes that
//!    safe is invariant 4 and the restore in [`StateMachineStore::open`]: the log
//!    is purged only behind a snapshot, and a snapshot file is always durable, so
//!    if the state fell back behind the snapshot, open installs the snapshot first.
//! 4. A snapshot is read from one redb read transaction begun when openraft asks
//!    for a builder: it is a consistent cut, and apply goes on while it is built.
//!    Its file is written and fsynced, and published only if it is newer than the
//!    current one, before the log may be purged behind it (the [`SnapshotFloor`]).
//! 5. Readers ([`StateReader`]) see the state before an install or after it,
//!    never the slices in between: during an install they get
//!    [`Error::Installing`] (the [`InstallGate`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, StorageIOError};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::apply::Apply;
use crate::codec;
use crate::command::Response;
use crate::error::{db, Error};
use crate::floor::SnapshotFloor;
use crate::history::{Bucket, Level};
use crate::model::{Channel, Delivery, Incident, MaintenanceWindow, Monitor, Notification, Observation, Verdict};
use crate::quorum::MonitorState;
use crate::snapshot::{self, Reader, Record, SnapshotFile};
use crate::tables::{self, id_key, read_u64, Table, TABLES};
use crate::typ::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership};
use crate::{blocking, TypeConfig};

/// Raft bookkeeping: not domain state, not hashed.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

const KEY_LAST_APPLIED: &str = "last_applied";
const KEY_MEMBERSHIP: &str = "membership";

const STATE_FILE: &str = "state.redb";
/// Default redb page cache of the state file (redb's own default is 1 GiB per
/// file). The live working set (monitors, verdicts, current buckets) is a small
/// part of a large state; history and snapshot reads stream through it.
pub const DEFAULT_STATE_CACHE: usize = 256 << 20;
/// How often the checkpoint thread commits durably, if anything was applied:
/// this bounds the re-apply after a crash and lets redb reclaim the pages freed
/// by the non-durable commits (it only reuses them after a durable one). Time,
/// not a count of batches: a busy cluster applies hundreds of small batches a
/// second, an idle one a large digest batch every two.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// The latest snapshot (see [`crate::snapshot`] for the layout).
const SNAPSHOT_FILE: &str = "snapshot.data";
/// Prefixes of snapshot files being built or received; left-overs of a crash are
/// removed at open.
const BUILDING: &str = "snapshot.build-";
const RECEIVING: &str = "snapshot.recv-";
/// Where a damaged latest snapshot found at open is moved.
const DAMAGED: &str = "snapshot.damaged";
/// Installing a snapshot commits every this many bytes of rows, so a large one
/// never sits in one write transaction.
const INSTALL_TXN_BYTES: usize = 64 << 20;

/// The state machine half of the Raft storage. openraft owns this value; clones of
/// the inner database serve reads through [`StateReader`].
pub struct StateMachineStore {
    db: Arc<Database>,
    /// Tells readers an install is under way (invariant 5).
    gate: InstallGate,
    checkpoints: Checkpoints,
    snapshots: Arc<Snapshots>,
}

/// The checkpoint thread (invariant 3): every interval ([`CHECKPOINT_INTERVAL`]) in which
/// something was applied it commits an empty write transaction durably, which
/// persists every non-durable commit before it. Dropping this makes a last
/// checkpoint and joins the thread, so the file is closed (and may be reopened)
/// once the store is dropped.
struct Checkpoints {
    /// Set by apply, cleared by the checkpoint that covers it.
    dirty: Arc<AtomicBool>,
    /// Dropped to stop the thread.
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The snapshot directory: the latest snapshot's meta, guarded together with the
/// file it describes, so a reader never pairs one snapshot's meta with another's
/// data.
struct Snapshots {
    dir: PathBuf,
    current: Mutex<Option<SnapshotMeta>>,
    /// Raised with every publish: the log store purges no further.
    floor: SnapshotFloor,
    /// Names temporary files uniquely.
    seq: AtomicU64,
}

/// Read access to the applied state, for the API. Cheap to clone.
#[derive(Clone)]
pub struct StateReader {
    db: Arc<Database>,
    gate: InstallGate,
}

/// An install's epoch: odd while a snapshot's rows are being committed in
/// slices, bumped to even when the last slice is in. A reader that saw the same
/// even epoch before and after beginning its read transaction read a state no
/// install had begun to change (redb's transaction locks order the epoch
/// stores before the slice commits and after them); any other reader is told
/// the node is installing ([`Error::Installing`]).
#[derive(Clone, Default)]
struct InstallGate(Arc<AtomicU64>);

impl InstallGate {
    fn begin(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// After the last slice. An install that failed leaves the gate shut: the
    /// state is partial until the next open restores the snapshot.
    fn end(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// Begins a read transaction that sees a whole state, or refuses.
    fn read(&self, db: &Database) -> Result<ReadTransaction, Error> {
        let before = self.0.load(Ordering::SeqCst);
        if before % 2 == 1 {
            return Err(Error::Installing);
        }
        let txn = db.begin_read().map_err(db_)?;
        if self.0.load(Ordering::SeqCst) != before {
            return Err(Error::Installing);
        }
        Ok(txn)
    }
}

/// The state hash of one node at its applied index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHash {
    pub applied_index: u64,
    pub hash: String,
}

// === impl StateMachineStore ===

impl StateMachineStore {
    /// Opens (or creates) the state machine in `dir`: `state.redb` and the latest
    /// snapshot, `snapshot.data`.
    pub fn open(dir: &Path) -> Result<StateMachineStore, Error> {
        StateMachineStore::open_with_cache(dir, DEFAULT_STATE_CACHE)
    }

    /// [`StateMachineStore::open`] with a redb page cache of `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<StateMachineStore, Error> {
        StateMachineStore::open_with(dir, cache_bytes, CHECKPOINT_INTERVAL)
    }

    /// [`StateMachineStore::open_with_cache`] with checkpoints every `checkpoint_interval`.
    pub fn open_with(
        dir: &Path,
        cache_bytes: usize,
        checkpoint_interval: Duration,
    ) -> Result<StateMachineStore, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::SnapshotFile { path: dir.to_owned(), source })?;
        let path = dir.join(STATE_FILE);
        crate::log_store::refuse_empty_file(&path)?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|source| Error::Open { path: path.clone(), source })?;
        let txn = db.begin_write().map_err(db_)?;
        txn.open_table(META).map_err(db_)?;
        for t in TABLES {
            txn.open_table(t).map_err(db_)?;
        }
        txn.commit().map_err(db_)?;

        let snapshots = Snapshots::open(dir)?;
        let db = Arc::new(db);
        let checkpoints = Checkpoints::start(db.clone(), checkpoint_interval)?;
        let store = StateMachineStore { db, gate: InstallGate::default(), checkpoints, snapshots: Arc::new(snapshots) };
        store.restore_behind_snapshot()?;
        Ok(store)
    }

    /// After a crash the state may have fallen back behind the latest snapshot
    /// (its last commits were not fsynced, or an install was cut short), and the
    /// log behind the snapshot may be purged: reinstall the snapshot so openraft
    /// can re-apply from the log.
    fn restore_behind_snapshot(&self) -> Result<(), Error> {
        let Some(meta) = self.snapshots.current() else { return Ok(()) };
        let applied = {
            let txn = self.db.begin_read().map_err(db_)?;
            applied_state(&txn)?.0
        };
        if meta.last_log_id > applied {
            // Verified whole before the first destructive step: a damaged file
            // must not clear tables that a replay of the log could still use.
            if let Err(e) = Reader::verify(&self.snapshots.path()) {
                self.snapshots.set_aside(&e);
                return Ok(());
            }
            tracing::info!(?applied, snapshot = ?meta.last_log_id, "state behind the snapshot after a crash: restoring it");
            load_snapshot(&self.db, &self.gate, &self.snapshots.path(), INSTALL_TXN_BYTES)?;
        }
        Ok(())
    }

    /// How far the log may be purged: give it to [`crate::LogStore::with_snapshot_floor`].
    pub fn snapshot_floor(&self) -> SnapshotFloor {
        self.snapshots.floor.clone()
    }

    pub fn reader(&self) -> StateReader {
        StateReader { db: self.db.clone(), gate: self.gate.clone() }
    }

    fn apply_blocking(db: &Database, entries: Vec<Entry>) -> Result<Vec<Response>, Error> {
        let mut txn = db.begin_write().map_err(db_)?;
        txn.set_durability(Durability::None).map_err(|e| db_(redb::Error::from(e)))?;
        let mut responses = Vec::with_capacity(entries.len());
        // Every node named by the applied membership, voters and learners.
        let mut members: BTreeSet<u64> = {
            let stored: Option<StoredMembership> = read_meta_in(&txn, KEY_MEMBERSHIP)?;
            stored.map(|m| m.membership().nodes().map(|(id, _)| *id).collect()).unwrap_or_default()
        };
        {
            let mut apply = Apply::new(&txn)?;
            let mut last_applied = None;
            let mut membership = None;
            for entry in entries {
                last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Response::Done,
                    EntryPayload::Membership(m) => {
                        let next: BTreeSet<u64> = m.nodes().map(|(id, _)| *id).collect();
                        let gone: BTreeSet<u64> = members.difference(&next).copied().collect();
                        apply.forget_nodes(&gone)?;
                        members = next;
                        membership = Some(StoredMembership::new(Some(entry.log_id), m));
                        Response::Done
                    }
                    EntryPayload::Normal(request) => {
                        failpoint_fail_apply(&request.command)?;
                        apply.advance_clock(request.at_ms)?;
                        apply.log_id = Some(entry.log_id);
                        match without_strangers(&request.command, &members) {
                            Some(command) => apply.command(&command)?,
                            None => apply.command(&request.command)?,
                        }
                    }
                };
                responses.push(response);
            }
            apply.flush()?;
            if let Some(last) = last_applied {
                put_meta(&txn, KEY_LAST_APPLIED, &Some(last))?;
            }
            if let Some(m) = membership {
                put_meta(&txn, KEY_MEMBERSHIP, &m)?;
            }
        }
        txn.commit().map_err(db_)?;
        Ok(responses)
    }
}

// === impl Checkpoints ===

impl Checkpoints {
    fn start(db: Arc<Database>, interval: Duration) -> Result<Checkpoints, Error> {
        let dirty = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let flag = dirty.clone();
        let thread = std::thread::Builder::new()
            .name("state-checkpoint".into())
            .spawn(move || loop {
                let stopping = !matches!(stopped.recv_timeout(interval), Err(RecvTimeoutError::Timeout));
                if flag.swap(false, Ordering::AcqRel) {
                    checkpoint(&db);
                }
                if stopping {
                    return;
                }
            })
            .map_err(|e| Error::Task { message: format!("cannot start the checkpoint thread: {e}") })?;
        Ok(Checkpoints { dirty, stop: Some(stop), thread: Some(thread) })
    }
}

/// An empty durable commit: redb persists the non-durable commits before it.
/// A failure is logged, not fatal: the log still holds everything applied, and
/// the next checkpoint tries again.
fn checkpoint(db: &Database) {
    let result = db.begin_write().map_err(redb::Error::from).and_then(|txn| txn.commit().map_err(redb::Error::from));
    if let Err(e) = result {
        tracing::warn!(error = %e, "state checkpoint failed; the Raft log still holds what it would have made durable");
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// === impl Snapshots ===

impl Snapshots {
    fn open(dir: &Path) -> Result<Snapshots, Error> {
        let io = |source| Error::SnapshotFile { path: dir.to_owned(), source };
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(BUILDING) || name.starts_with(RECEIVING) {
                std::fs::remove_file(entry.path()).map_err(io)?;
            }
        }
        let path = dir.join(SNAPSHOT_FILE);
        let snapshots = Snapshots {
            dir: dir.to_owned(),
            current: Mutex::new(None),
            floor: SnapshotFloor::default(),
            seq: AtomicU64::new(0),
        };
        match std::fs::metadata(&path) {
            Ok(_) => match Reader::meta(&path) {
                Ok(meta) => *snapshots.current.lock().expect("snapshot lock poisoned") = Some(meta),
                Err(e @ Error::Corrupt { .. }) => snapshots.set_aside(&e),
                Err(e) => return Err(e),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::SnapshotFile { path, source }),
        }
        snapshots.floor.raise(snapshots.current().and_then(|m| m.last_log_id));
        Ok(snapshots)
    }

    /// Moves a damaged `snapshot.data` out of the way (kept for a post-mortem as
    /// `snapshot.damaged`) and forgets it: the state and the log stay as they are,
    /// openraft replays the log onto the state, and a new snapshot is built or
    /// received in its place.
    fn set_aside(&self, damage: &Error) {
        let from = self.path();
        let to = self.dir.join(DAMAGED);
        tracing::error!(error = %damage, moved_to = %to.display(), "the latest snapshot is damaged; setting it aside and keeping the state");
        if let Err(e) = std::fs::rename(&from, &to) {
            tracing::error!(error = %e, "cannot move the damaged snapshot aside");
        }
        *self.current.lock().expect("snapshot lock poisoned") = None;
    }

    fn path(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_FILE)
    }

    fn current(&self) -> Option<SnapshotMeta> {
        self.current.lock().expect("snapshot lock poisoned").clone()
    }

    /// A new temporary file in the snapshot directory, open for reading and writing.
    fn temp(&self, prefix: &str) -> Result<(std::fs::File, PathBuf), Error> {
        let path = self.dir.join(format!("{prefix}{}", self.seq.fetch_add(1, Ordering::Relaxed)));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|source| Error::SnapshotFile { path: path.clone(), source })?;
        Ok((file, path))
    }

    /// Makes the complete, synced file at `from` the latest snapshot if it is
    /// newer than the current one, and says whether it did; an older or equal
    /// one is left where it is. openraft 0.9 builds snapshots while it installs others,
    /// so a build that began before an install may finish after it: publishing
    /// it would put `snapshot.data` behind a log already purged past it.
    fn publish(&self, from: &Path, meta: SnapshotMeta) -> Result<bool, Error> {
        let to = self.path();
        let io = |source| Error::SnapshotFile { path: to.clone(), source };
        let mut current = self.current.lock().expect("snapshot lock poisoned");
        if current.as_ref().is_some_and(|c| c.last_log_id >= meta.last_log_id) {
            return Ok(false);
        }
        std::fs::rename(from, &to).map_err(io)?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)?;
        self.floor.raise(meta.last_log_id);
        *current = Some(meta);
        Ok(true)
    }

    /// The latest snapshot, opened: its own handle, so concurrent senders each
    /// read at their own offset, and a newer snapshot replacing the file does not
    /// disturb them.
    fn open_current(&self) -> Result<Option<(SnapshotMeta, SnapshotFile)>, Error> {
        let current = self.current.lock().expect("snapshot lock poisoned");
        let Some(meta) = current.clone() else { return Ok(None) };
        let path = self.path();
        let file = std::fs::File::open(&path).map_err(|source| Error::SnapshotFile { path: path.clone(), source })?;
        Ok(Some((meta, SnapshotFile::new(file, path))))
    }

    /// Builds a snapshot of `txn` into a temporary file, then publishes it.
    fn build(&self, txn: &ReadTransaction) -> Result<(SnapshotMeta, SnapshotFile), Error> {
        let (last_log_id, last_membership) = applied_state(txn)?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{seq}", id.leader_id.term, id.index),
            None => format!("0-0-{seq}"),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        let (file, path) = self.temp(BUILDING)?;
        let written = snapshot::write_file(txn, &meta, &file, &path);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        if !self.publish(&path, meta.clone())? {
            // A newer snapshot was installed meanwhile: that one is the latest.
            drop(file);
            let _ = std::fs::remove_file(&path);
            return self
                .open_current()?
                .ok_or_else(|| Error::Task { message: "the newer snapshot disappeared".into() });
        }
        // The handle still refers to the published file; rewind it for the reader.
        let mut file = file;
        std::io::Seek::rewind(&mut file).map_err(|source| Error::SnapshotFile { path: self.path(), source })?;
        Ok((meta, SnapshotFile::new(file, self.path())))
    }

    /// Checks a received snapshot and makes it the latest: a file received into
    /// this directory is moved into place, any other is copied first. Returns
    /// the file to load: the published one, or (for a snapshot no newer than
    /// the current one, which openraft does not install) the staged file, which
    /// the caller removes after loading.
    fn accept(&self, meta: &SnapshotMeta, received: &Path) -> Result<Staged, Error> {
        let staged = if received.parent() == Some(self.dir.as_path())
            && received.file_name().is_some_and(|n| n.to_string_lossy().starts_with(RECEIVING))
        {
            received.to_owned()
        } else {
            let (file, path) = self.temp(RECEIVING)?;
            drop(file);
            let io = |source| Error::SnapshotFile { path: path.clone(), source };
            std::fs::copy(received, &path).map_err(io)?;
            std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io)?;
            path
        };
        let inside = match Reader::verify(&staged) {
            Ok(inside) => inside,
            Err(e) => {
                let _ = std::fs::remove_file(&staged);
                return Err(e);
            }
        };
        if inside.snapshot_id != meta.snapshot_id || inside.last_log_id != meta.last_log_id {
            let _ = std::fs::remove_file(&staged);
            return Err(Error::Corrupt {
                path: staged,
                reason: format!("holds snapshot {} but {} was announced", inside.snapshot_id, meta.snapshot_id),
            });
        }
        Ok(match self.publish(&staged, meta.clone())? {
            true => Staged::Published(self.path()),
            false => Staged::Unpublished(staged),
        })
    }
}

/// A received snapshot, checked and ready to load.
enum Staged {
    /// Now the latest snapshot.
    Published(PathBuf),
    /// No newer than the latest: loaded from its temporary file, then removed.
    Unpublished(PathBuf),
}

/// Replaces the domain state with the snapshot file's. Rows are committed in
/// slices of `slice_bytes` ([`INSTALL_TXN_BYTES`]); the first slice clears `last_applied`, and
/// only the last (durable) one sets it, so a crash in between leaves a state
/// behind the snapshot, which the next open restores again.
fn load_snapshot(db: &Database, gate: &InstallGate, path: &Path, slice_bytes: usize) -> Result<(), Error> {
    let (mut reader, meta) = Reader::open(path)?;
    gate.begin();
    let mut table: Option<Table> = None;
    let mut first = true;
    loop {
        let mut txn = db.begin_write().map_err(db_)?;
        txn.set_durability(Durability::None).map_err(|e| db_(redb::Error::from(e)))?;
        if first {
            for t in TABLES {
                txn.delete_table(t).map_err(db_)?;
                txn.open_table(t).map_err(db_)?;
            }
            put_meta(&txn, KEY_LAST_APPLIED, &None::<LogId>)?;
            first = false;
        }
        let mut bytes = 0usize;
        let mut ended = false;
        {
            let mut open = match table {
                Some(def) => Some(txn.open_table(def).map_err(db_)?),
                None => None,
            };
            while bytes < slice_bytes {
                match reader.next()? {
                    Record::Table(def) => {
                        drop(open.take());
                        open = Some(txn.open_table(def).map_err(db_)?);
                        table = Some(def);
                    }
                    Record::Row(k, v) => {
                        let Some(t) = open.as_mut() else {
                            return Err(Error::Corrupt {
                                path: path.to_owned(),
                                reason: "row before any table".into(),
                            });
                        };
                        bytes += k.len() + v.len();
                        t.insert(k, v).map_err(db_)?;
                    }
                    Record::End => {
                        ended = true;
                        break;
                    }
                }
            }
        }
        if ended {
            put_meta(&txn, KEY_LAST_APPLIED, &meta.last_log_id)?;
            put_meta(&txn, KEY_MEMBERSHIP, &meta.last_membership)?;
            txn.set_durability(Durability::Immediate).map_err(|e| db_(redb::Error::from(e)))?;
            txn.commit().map_err(db_)?;
            gate.end();
            return Ok(());
        }
        txn.commit().map_err(db_)?;
    }
}

fn db_<E: Into<redb::Error>>(e: E) -> Error {
    db(e)
}

fn put_meta<T: Serialize>(txn: &WriteTransaction, key: &str, value: &T) -> Result<(), Error> {
    let bytes = codec::encode(value)?;
    txn.open_table(META).map_err(db)?.insert(key, bytes.as_slice()).map_err(db)?;
    Ok(())
}

/// [`read_meta`] inside a write transaction (before its tables are opened for apply).
fn read_meta_in<T: serde::de::DeserializeOwned>(txn: &WriteTransaction, key: &str) -> Result<Option<T>, Error> {
    let table = txn.open_table(META).map_err(db)?;
    let value = table.get(key).map_err(db)?;
    Ok(match value {
        Some(v) => Some(codec::decode(v.value())?),
        None => None,
    })
}

/// `command` without the digests of nodes outside the membership (`None`:
/// nothing to drop). A removed node may still send its last windows; applied,
/// they would put its observations back into the verdicts. Dropped digests
/// answer as if empty. No membership known yet (a fresh state): nothing dropped.
fn without_strangers(command: &crate::Command, members: &BTreeSet<u64>) -> Option<crate::Command> {
    use crate::Command;
    let stranger = |c: &Command| matches!(c, Command::Digests { node_id, .. } if !members.contains(node_id));
    if members.is_empty() {
        return None;
    }
    match command {
        Command::Digests { node_id, .. } if stranger(command) => {
            Some(Command::Digests { node_id: *node_id, digests: Vec::new() })
        }
        Command::Batch(items) if items.iter().any(stranger) => Some(Command::Batch(
            items.iter().map(|c| without_strangers(c, members).unwrap_or_else(|| c.clone())).collect(),
        )),
        _ => None,
    }
}

fn read_meta<T: serde::de::DeserializeOwned>(txn: &ReadTransaction, key: &str) -> Result<Option<T>, Error> {
    let table = txn.open_table(META).map_err(db)?;
    let value = table.get(key).map_err(db)?;
    Ok(match value {
        Some(v) => Some(codec::decode(v.value())?),
        None => None,
    })
}

fn applied_state(txn: &ReadTransaction) -> Result<(Option<LogId>, StoredMembership), Error> {
    let last: Option<LogId> = read_meta::<Option<LogId>>(txn, KEY_LAST_APPLIED)?.flatten();
    let membership = read_meta(txn, KEY_MEMBERSHIP)?.unwrap_or_default();
    Ok((last, membership))
}

fn sm_read_err(e: Error) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn sm_write_err(e: Error) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snapshot_err(meta: Option<&SnapshotMeta>, e: Error) -> StorageError {
    StorageIOError::write_snapshot(meta.map(|m| m.signature()), AnyError::new(&e)).into()
}

// === impl RaftStateMachine ===

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let txn = self.db.begin_read().map_err(|e| sm_read_err(db(e)))?;
        applied_state(&txn).map_err(sm_read_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let last = entries.last().map(|e| e.log_id.index).unwrap_or(0);
        crate::commit_path!("apply", last);
        let db = self.db.clone();
        let responses =
            blocking(move || StateMachineStore::apply_blocking(&db, entries)).await.map_err(sm_write_err)?;
        // After the commit, so the checkpoint that clears the flag covers this batch.
        self.checkpoints.dirty.store(true, Ordering::Release);
        crate::commit_path!("apply_done", last);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder { txn: Some(self.db.begin_read().map_err(db)), snapshots: self.snapshots.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let (file, path) = self.snapshots.temp(RECEIVING).map_err(|e| snapshot_err(None, e))?;
        Ok(Box::new(SnapshotFile::temporary(file, path)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        failpoint_park_install().await;
        let received = snapshot.path().to_owned();
        snapshot
            .sync()
            .await
            .map_err(|source| snapshot_err(Some(meta), Error::SnapshotFile { path: received.clone(), source }))?;
        let received = (*snapshot).keep();
        let (db, gate, snapshots, owned) = (self.db.clone(), self.gate.clone(), self.snapshots.clone(), meta.clone());
        blocking(move || match snapshots.accept(&owned, &received)? {
            Staged::Published(path) => load_snapshot(&db, &gate, &path, INSTALL_TXN_BYTES),
            Staged::Unpublished(path) => {
                let loaded = load_snapshot(&db, &gate, &path, INSTALL_TXN_BYTES);
                let _ = std::fs::remove_file(&path);
                loaded
            }
        })
        .await
        .map_err(|e| snapshot_err(Some(meta), e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.snapshots.open_current().map_err(sm_read_err)?;
        Ok(current.map(|(meta, file)| Snapshot { meta, snapshot: Box::new(file) }))
    }
}

/// Debug builds only: with `UPTIMETEST_FAIL_APPLY_MONITOR=<name>`, applying the
/// creation of a monitor of that name fails as a storage error would, so a test
/// can watch what the node does when its Raft core stops for good.
#[cfg(debug_assertions)]
fn failpoint_fail_apply(command: &crate::Command) -> Result<(), Error> {
    use crate::Command;
    // Read once: apply runs this for every entry.
    static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(name) = NAME.get_or_init(|| std::env::var("UPTIMETEST_FAIL_APPLY_MONITOR").ok()) else { return Ok(()) };
    let hit = |c: &Command| matches!(c, Command::CreateMonitor(d) if &d.name == name);
    let hit = match command {
        Command::Batch(cs) => cs.iter().any(hit),
        Command::Idempotent { command, .. } => hit(command),
        c => hit(c),
    };
    if hit {
        return Err(Error::Task { message: "failpoint: apply fails".into() });
    }
    Ok(())
}

#[cfg(not(debug_assertions))]
fn failpoint_fail_apply(_: &crate::Command) -> Result<(), Error> {
    Ok(())
}

/// Debug builds only: with `UPTIMETEST_PARK_SNAPSHOT_INSTALL=1` an install
/// parks for good once the last chunk has arrived, before the received file is
/// checked or published, so a test can kill the node inside the window in
/// which openraft has already asked the log store to purge behind it.
#[cfg(debug_assertions)]
async fn failpoint_park_install() {
    if std::env::var_os("UPTIMETEST_PARK_SNAPSHOT_INSTALL").is_some_and(|v| v == "1") {
        tracing::warn!("failpoint: snapshot install parked");
        std::future::pending::<()>().await;
    }
}

#[cfg(not(debug_assertions))]
async fn failpoint_park_install() {}

/// Builds a snapshot from a read transaction taken when openraft asked for the
/// builder (invariant 4), streaming it to a file off the async threads.
pub struct SnapshotBuilder {
    txn: Option<Result<ReadTransaction, Error>>,
    snapshots: Arc<Snapshots>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let txn = match self.txn.take() {
            Some(Ok(txn)) => txn,
            Some(Err(e)) => return Err(sm_read_err(e)),
            None => return Err(sm_read_err(Error::Task { message: "snapshot builder used twice".into() })),
        };
        let snapshots = self.snapshots.clone();
        let (meta, file) = blocking(move || snapshots.build(&txn)).await.map_err(|e| snapshot_err(None, e))?;
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

// === impl StateReader ===

impl StateReader {
    fn get<T: serde::de::DeserializeOwned>(&self, table: Table, key: &[u8]) -> Result<Option<T>, Error> {
        let txn = self.gate.read(&self.db)?;
        let t = txn.open_table(table).map_err(db)?;
        let v = t.get(key).map_err(db)?;
        Ok(match v {
            Some(v) => Some(codec::decode(v.value())?),
            None => None,
        })
    }

    /// Rows of `table` whose key starts with `prefix`, decoded.
    fn scan<T: serde::de::DeserializeOwned>(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>, Error> {
        let txn = self.gate.read(&self.db)?;
        tables::scan_prefix(&txn.open_table(table).map_err(db)?, prefix)
    }

    pub fn list_monitors(&self) -> Result<Vec<Monitor>, Error> {
        Ok(self.scan::<Monitor>(tables::MONITORS, &[])?.into_iter().map(|(_, m)| m).collect())
    }

    pub fn get_monitor(&self, id: u64) -> Result<Option<Monitor>, Error> {
        self.get(tables::MONITORS, &id_key(id))
    }

    /// Looks a monitor up by id (all digits) or by name.
    pub fn find_monitor(&self, id_or_name: &str) -> Result<Option<Monitor>, Error> {
        if let Ok(id) = id_or_name.parse::<u64>() {
            return self.get_monitor(id);
        }
        let id = {
            let txn = self.gate.read(&self.db)?;
            let table = txn.open_table(tables::MONITOR_NAMES).map_err(db)?;
            let value = table.get(id_or_name.as_bytes()).map_err(db)?;
            value.map(|v| read_u64(v.value()))
        };
        match id {
            Some(id) => self.get_monitor(id),
            None => Ok(None),
        }
    }

    /// The monitor's verdict (UNKNOWN before any).
    pub fn verdict(&self, monitor_id: u64) -> Result<Verdict, Error> {
        Ok(self
            .get(tables::VERDICTS, &id_key(monitor_id))?
            .unwrap_or(Verdict { state: MonitorState::Unknown, since_ms: 0 }))
    }

    /// Each node's latest report on a monitor, by node id.
    pub fn observations(&self, monitor_id: u64) -> Result<Vec<(u64, Observation)>, Error> {
        Ok(self
            .scan::<Observation>(tables::OBSERVATIONS, &id_key(monitor_id))?
            .into_iter()
            .map(|(k, o)| (read_u64(&k[8..]), o))
            .collect())
    }

    pub fn list_incidents(&self) -> Result<Vec<Incident>, Error> {
        Ok(self.scan::<Incident>(tables::INCIDENTS, &[])?.into_iter().map(|(_, i)| i).collect())
    }

    pub fn get_incident(&self, id: u64) -> Result<Option<Incident>, Error> {
        self.get(tables::INCIDENTS, &id_key(id))
    }

    pub fn list_maintenance(&self) -> Result<Vec<MaintenanceWindow>, Error> {
        Ok(self.scan::<MaintenanceWindow>(tables::MAINTENANCE, &[])?.into_iter().map(|(_, w)| w).collect())
    }

    pub fn outbox(&self) -> Result<Vec<Notification>, Error> {
        Ok(self.scan::<Notification>(tables::OUTBOX, &[])?.into_iter().map(|(_, n)| n).collect())
    }

    /// The first answer to the keyed write `key` (`Command::Idempotent`), if
    /// apply remembers it: a retry whose first attempt applied gets it.
    pub fn remembered_response(&self, key: &str) -> Result<Option<Response>, Error> {
        let r: Option<crate::apply::Remembered> = self.get(tables::REQUESTS, key.as_bytes())?;
        Ok(r.map(|r| r.response))
    }

    /// Records not yet sent or dead, in id order: what the dispatcher works on.
    pub fn outbox_due(&self) -> Result<Vec<Notification>, Error> {
        let mut out = Vec::new();
        for (k, ()) in self.scan::<()>(tables::OUTBOX_DUE, &[])? {
            if let Some(n) = self.get::<Notification>(tables::OUTBOX, &k)? {
                out.push(n);
            }
        }
        Ok(out)
    }

    pub fn notification(&self, id: u64) -> Result<Option<Notification>, Error> {
        self.get(tables::OUTBOX, &id_key(id))
    }

    /// The attempts to deliver notification `id`, first first.
    pub fn deliveries(&self, id: u64) -> Result<Vec<Delivery>, Error> {
        Ok(self.scan::<Delivery>(tables::DELIVERIES, &id_key(id))?.into_iter().map(|(_, d)| d).collect())
    }

    /// Every recorded delivery attempt, counted by outcome.
    pub fn delivery_counts(&self) -> Result<std::collections::BTreeMap<&'static str, u64>, Error> {
        let mut out = std::collections::BTreeMap::new();
        for (_, d) in self.scan::<Delivery>(tables::DELIVERIES, &[])? {
            *out.entry(d.outcome.as_str()).or_insert(0) += 1;
        }
        Ok(out)
    }

    /// An incident's notifications, in id order.
    pub fn incident_notifications(&self, incident_id: u64) -> Result<Vec<Notification>, Error> {
        Ok(self.outbox()?.into_iter().filter(|n| n.incident_id == incident_id).collect())
    }

    pub fn list_channels(&self) -> Result<Vec<Channel>, Error> {
        Ok(self.scan::<Channel>(tables::CHANNELS, &[])?.into_iter().map(|(_, c)| c).collect())
    }

    pub fn get_channel(&self, name: &str) -> Result<Option<Channel>, Error> {
        self.get(tables::CHANNELS, name.as_bytes())
    }

    /// History buckets of one level with a start in [from_ms, to_ms), as (start, bucket).
    pub fn history(
        &self,
        monitor_id: u64,
        level: Level,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<(u64, Bucket)>, Error> {
        let mut prefix = id_key(monitor_id).to_vec();
        prefix.push(level.code());
        Ok(self
            .scan::<Bucket>(tables::HISTORY, &prefix)?
            .into_iter()
            .map(|(k, b)| (read_u64(&k[9..]), b))
            .filter(|(start, _)| (from_ms..to_ms).contains(start))
            .collect())
    }

    /// The last digest seq applied from `node_id`.
    pub fn digest_seq(&self, node_id: u64) -> Result<u64, Error> {
        Ok(self.get(tables::DIGEST_SEQS, &id_key(node_id))?.unwrap_or(0))
    }

    pub fn counter(&self, name: &str) -> Result<u64, Error> {
        Ok(self.get(tables::COUNTERS, name.as_bytes())?.unwrap_or(0))
    }

    /// Checks received from each node in the digests applied so far, by node id.
    pub fn checks_received(&self) -> Result<Vec<(u64, u64)>, Error> {
        let prefix = crate::apply::CHECKS_RECEIVED.as_bytes();
        let mut out: Vec<(u64, u64)> = self
            .scan::<u64>(tables::COUNTERS, prefix)?
            .into_iter()
            .filter_map(|(k, n)| std::str::from_utf8(&k[prefix.len()..]).ok()?.parse().ok().map(|node| (node, n)))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Digests apply dropped because it had applied their seq already.
    pub fn digests_duplicate(&self) -> Result<u64, Error> {
        self.counter(crate::apply::DIGESTS_DUPLICATE)
    }

    /// Digest windows nodes folded together because of a backlog.
    pub fn digests_coalesced(&self) -> Result<u64, Error> {
        self.counter(crate::apply::DIGESTS_COALESCED)
    }

    /// Idempotency keys apply remembers now (see `Command::Idempotent`).
    pub fn remembered_requests(&self) -> Result<u64, Error> {
        let txn = self.gate.read(&self.db)?;
        txn.open_table(tables::REQUESTS).map_err(db)?.len().map_err(db)
    }

    /// The state clock: the latest leader time applied.
    pub fn clock_ms(&self) -> Result<u64, Error> {
        self.counter(crate::apply::CLOCK)
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>, Error> {
        let txn = self.gate.read(&self.db)?;
        let table = txn.open_table(tables::SETTINGS).map_err(db)?;
        let value = table.get(key.as_bytes()).map_err(db)?;
        Ok(value.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// A hash of the domain state (not of Raft bookkeeping) with the applied index
    /// it was read at, from one read transaction. Streamed: it is the hash a
    /// snapshot taken at the same index ends with.
    pub fn state_hash(&self) -> Result<StateHash, Error> {
        let txn = self.gate.read(&self.db)?;
        let (last, _) = applied_state(&txn)?;
        let (hash, _) = snapshot::write_records(&txn, std::io::sink())?;
        Ok(StateHash { applied_index: last.map(|l| l.index).unwrap_or(0), hash: snapshot::hex(&hash) })
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, RaftSnapshotBuilder};

    use super::*;
    use crate::command::Command;
    use crate::Request;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request {
                at_ms: 1_000 * index,
                command: Command::SetSetting { key: format!("k{index}"), value: "v".repeat(200) },
            }),
        }
    }

    /// Issue 10, point 19: a removed node's last report stayed in every
    /// monitor's observations (and so in the verdicts and the per-node view)
    /// for ever. The membership entry that drops a node deletes them, and
    /// digests the node still sends afterwards are not applied.
    #[tokio::test]
    async fn a_membership_that_drops_a_node_drops_its_observations_and_later_digests() {
        use crate::history::LatencyStats;
        use crate::model::{AlertPolicy, Digest, MonitorDraft, MonitorResult};
        use crate::quorum::CheckStatus;

        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::open(dir.path()).unwrap();
        let mut index = 0;
        let mut next = |payload: EntryPayload<TypeConfig>| {
            index += 1;
            Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload }
        };
        let membership = |ids: &[u64]| {
            let nodes: std::collections::BTreeMap<u64, crate::PeerNode> =
                ids.iter().map(|id| (*id, crate::PeerNode::default())).collect();
            EntryPayload::Membership(openraft::Membership::new(vec![ids.iter().copied().collect()], nodes))
        };
        let normal = |at_ms: u64, command: Command| EntryPayload::Normal(Request { at_ms, command });
        let draft = MonitorDraft {
            name: "m".into(),
            check: uptime_probe::CheckSpec::from_target("tcp", "127.0.0.1:9").unwrap(),
            interval_ms: 10_000,
            timeout_ms: 5_000,
            enabled: true,
            public: false,
            tags: vec![],
            policy: AlertPolicy::default(),
        };
        let first = vec![next(membership(&[1, 2, 3])), next(normal(1_000, Command::CreateMonitor(draft)))];
        sm.apply(first).await.unwrap();
        let id = sm.reader().list_monitors().unwrap()[0].id;
        let digest = |node_id: u64, seq: u64| Command::Digests {
            node_id,
            digests: vec![Digest {
                seq,
                coalesced: 0,
                results: vec![MonitorResult {
                    monitor_id: id,
                    checks: 1,
                    failures: 1,
                    last_status: CheckStatus::Down,
                    run: 3,
                    failing_run: 3,
                    last_error: "refused".into(),
                    latency: LatencyStats::default(),
                }],
            }],
        };
        let reporters = |sm: &StateMachineStore| -> Vec<u64> {
            sm.reader().observations(id).unwrap().into_iter().map(|(node, _)| node).collect()
        };
        let reports: Vec<Entry> = (1..=3).map(|n| next(normal(2_000, digest(n, 1)))).collect();
        sm.apply(reports).await.unwrap();
        assert_eq!(reporters(&sm), vec![1, 2, 3]);

        // Joint, then final: node 3 leaves at the final configuration.
        let nodes: std::collections::BTreeMap<u64, crate::PeerNode> =
            (1..=3).map(|id| (id, crate::PeerNode::default())).collect();
        let joint = openraft::Membership::new(vec![[1, 2, 3].into(), [1, 2].into()], nodes);
        sm.apply(vec![next(EntryPayload::Membership(joint))]).await.unwrap();
        assert_eq!(reporters(&sm), vec![1, 2, 3], "still a member in the joint configuration");
        sm.apply(vec![next(membership(&[1, 2]))]).await.unwrap();
        assert_eq!(reporters(&sm), vec![1, 2], "the removed node's report leaves");

        let late = vec![next(normal(3_000, Command::Batch(vec![digest(3, 2), digest(1, 2)])))];
        sm.apply(late).await.unwrap();
        assert_eq!(reporters(&sm), vec![1, 2], "a digest from a removed node is not applied");
    }

    /// A store that applied entries 1..=`n`, and its snapshot (the directory
    /// must outlive both).
    async fn source_with_snapshot(n: u64) -> (tempfile::TempDir, StateMachineStore, Snapshot<TypeConfig>) {
        let dir = tempfile::tempdir().unwrap();
        let mut source = StateMachineStore::open(dir.path()).unwrap();
        source.apply((1..=n).map(entry).collect::<Vec<_>>()).await.unwrap();
        let snapshot = source.get_snapshot_builder().await.build_snapshot().await.unwrap();
        (dir, source, snapshot)
    }

    /// An install cut short after some slices were committed leaves the state
    /// behind the snapshot, and the next open restores the snapshot whole.
    #[tokio::test]
    async fn an_install_cut_short_is_completed_at_the_next_open() {
        let (_a, source, snap) = source_with_snapshot(300).await;
        let expected = source.reader().state_hash().unwrap();

        let b = tempfile::tempdir().unwrap();
        let truncated = b.path().join("truncated");
        {
            let mut target = StateMachineStore::open(b.path()).unwrap();
            target.apply((1..=10).map(entry).collect::<Vec<_>>()).await.unwrap();
            std::fs::copy(snap.snapshot.path(), b.path().join(SNAPSHOT_FILE)).unwrap();
            let bytes = std::fs::read(snap.snapshot.path()).unwrap();
            std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
            // Small slices: several commits happen before the damage is found.
            let err = load_snapshot(&target.db, &target.gate, &truncated, 4 << 10).unwrap_err();
            assert!(err.to_string().contains("truncated"), "{err}");
            let (applied, _) = target.applied_state().await.unwrap();
            assert_eq!(applied, None, "a partial install is never taken for a complete state");
        }
        let reopened = StateMachineStore::open(b.path()).unwrap();
        assert_eq!(reopened.reader().state_hash().unwrap(), expected);
    }

    /// What a crash now would leave: a copy of the state file as it is on disk
    /// (non-durable commits live only in redb's memory until a durable one),
    /// opened as a store.
    async fn applied_after_a_crash(dir: &Path) -> Option<u64> {
        let image = tempfile::tempdir().unwrap();
        std::fs::copy(dir.join(STATE_FILE), image.path().join(STATE_FILE)).unwrap();
        let mut sm = StateMachineStore::open(image.path()).unwrap();
        sm.applied_state().await.unwrap().0.map(|l| l.index)
    }

    /// Apply never waits for an fsync: a write is durable only once a checkpoint
    /// (or a clean close) has covered it.
    #[tokio::test]
    async fn applied_entries_become_durable_at_a_checkpoint_not_at_apply() {
        let a = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::open_with(a.path(), DEFAULT_STATE_CACHE, Duration::from_secs(3600)).unwrap();
        sm.apply((1..=20).map(entry).collect::<Vec<_>>()).await.unwrap();
        assert_eq!(sm.reader().setting("k20").unwrap().as_deref(), Some("v".repeat(200).as_str()));
        assert_eq!(applied_after_a_crash(a.path()).await, None, "apply committed without fsync");
        drop(sm);
        assert_eq!(applied_after_a_crash(a.path()).await, Some(20), "closing the store checkpoints");

        let b = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::open_with(b.path(), DEFAULT_STATE_CACHE, Duration::from_millis(20)).unwrap();
        sm.apply((1..=20).map(entry).collect::<Vec<_>>()).await.unwrap();
        // With no further write and the store still open, the checkpoint thread
        // alone makes the batch durable.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while applied_after_a_crash(b.path()).await != Some(20) {
            assert!(std::time::Instant::now() < deadline, "no checkpoint covered the batch within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Issue 9, defect 2: openraft 0.9 builds snapshots concurrently with
    /// installs, and a build that began before an install and finished after it
    /// used to replace the installed (newer) snapshot, leaving `snapshot.data`
    /// behind a log already purged past it. Only a newer snapshot is published.
    #[tokio::test]
    async fn a_build_that_finishes_after_a_newer_install_does_not_replace_it() {
        let (_a, _source, newer) = source_with_snapshot(300).await;

        let b = tempfile::tempdir().unwrap();
        let mut target = StateMachineStore::open(b.path()).unwrap();
        target.apply((1..=10).map(entry).collect::<Vec<_>>()).await.unwrap();
        // The build's consistent cut is taken now, at index 10...
        let mut older_build = target.get_snapshot_builder().await;
        // ...an install of index 300 completes...
        let mut received = target.begin_receiving_snapshot().await.unwrap();
        let bytes = std::fs::read(newer.snapshot.path()).unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut *received, &bytes).await.unwrap();
        target.install_snapshot(&newer.meta, received).await.unwrap();
        // ...and only then does the build of index 10 finish.
        older_build.build_snapshot().await.unwrap();

        let current = target.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id, newer.meta.last_log_id);
        let on_disk = Reader::verify(&b.path().join(SNAPSHOT_FILE)).unwrap();
        assert_eq!(on_disk.last_log_id, newer.meta.last_log_id, "snapshot.data went back to an older snapshot");
        assert_eq!(temp_files(b.path()), Vec::<String>::new());
    }

    /// Issue 9, defect 3: a damaged `snapshot.data` found at open used to clear
    /// the domain tables before its hash was checked, destroying the state the
    /// log could still have been replayed onto. The file is verified whole
    /// before anything is changed; a damaged one is set aside and the state kept.
    #[tokio::test]
    async fn a_damaged_snapshot_at_open_leaves_the_state_alone() {
        let (_a, _source, snap) = source_with_snapshot(300).await;

        let b = tempfile::tempdir().unwrap();
        let expected = {
            let mut target = StateMachineStore::open(b.path()).unwrap();
            target.apply((1..=10).map(entry).collect::<Vec<_>>()).await.unwrap();
            target.reader().state_hash().unwrap()
        };
        let mut bytes = std::fs::read(snap.snapshot.path()).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(b.path().join(SNAPSHOT_FILE), &bytes).unwrap();

        let reopened = StateMachineStore::open(b.path()).unwrap();
        assert_eq!(reopened.reader().state_hash().unwrap(), expected, "the state was changed by a damaged snapshot");
        assert!(!b.path().join(SNAPSHOT_FILE).exists(), "the damaged snapshot should be set aside");
        drop(reopened);
        let again = StateMachineStore::open(b.path()).unwrap();
        assert_eq!(again.reader().state_hash().unwrap(), expected);
    }

    /// Issue 9, defect 5: an install commits the snapshot's rows in slices, and
    /// readers (the API, the state hash, the scheduler's monitor sync) used to
    /// see emptied or partly filled tables in between. A reader sees the old
    /// state or the new one, or is told the node is installing.
    #[tokio::test]
    async fn readers_never_see_a_half_installed_state() {
        let (_a, source, snap) = source_with_snapshot(3000).await;
        let new = source.reader().state_hash().unwrap().hash;

        let b = tempfile::tempdir().unwrap();
        let mut target = StateMachineStore::open(b.path()).unwrap();
        target.apply((1..=10).map(entry).collect::<Vec<_>>()).await.unwrap();
        let old = target.reader().state_hash().unwrap().hash;
        let reader = target.reader();
        let db = target.db.clone();
        let gate = target.gate.clone();
        let path = snap.snapshot.path().to_owned();
        let install = std::thread::spawn(move || load_snapshot(&db, &gate, &path, 4 << 10));
        let (mut seen, mut refused) = (0, 0);
        while !install.is_finished() {
            match reader.state_hash() {
                Ok(h) => {
                    assert!(h.hash == old || h.hash == new, "a reader saw a half-installed state");
                    seen += 1;
                }
                Err(Error::Installing) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        install.join().unwrap().unwrap();
        assert_eq!(reader.state_hash().unwrap().hash, new);
        assert!(seen + refused > 0);
    }

    /// Issue 9, defect 4: receive files of abandoned transfers were removed only
    /// at the next start, so repeated leader changes could fill the disk.
    #[tokio::test]
    async fn an_abandoned_snapshot_transfer_leaves_no_file() {
        let a = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::open(a.path()).unwrap();
        for _ in 0..3 {
            let mut received = sm.begin_receiving_snapshot().await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut *received, b"half a snapshot").await.unwrap();
            drop(received);
        }
        assert_eq!(temp_files(a.path()), Vec::<String>::new());
    }

    fn temp_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(BUILDING) || n.starts_with(RECEIVING))
            .collect();
        names.sort();
        names
    }

    /// A snapshot's last 32 bytes are the state hash of the state it holds.
    #[tokio::test]
    async fn a_snapshot_ends_with_the_state_hash() {
        let a = tempfile::tempdir().unwrap();
        let mut sm = StateMachineStore::open(a.path()).unwrap();
        sm.apply((1..=20).map(entry).collect::<Vec<_>>()).await.unwrap();
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let bytes = std::fs::read(snap.snapshot.path()).unwrap();
        let tail: [u8; 32] = bytes[bytes.len() - 32..].try_into().unwrap();
        assert_eq!(snapshot::hex(&tail), sm.reader().state_hash().unwrap().hash);
    }
}
