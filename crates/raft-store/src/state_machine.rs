//! Deterministic apply, snapshots and read access to the replicated state.
//!
//! Invariants:
//! 1. Apply is a pure function of (state, entry): it reads no clock, randomness or
//!    I/O beyond this store. Time comes from `Request::at_ms`, folded as
//!    `clock = max(clock, at_ms)`.
//! 2. A batch of entries is applied in one write transaction together with
//!    `last_applied`, so the state always sits at a batch boundary that agrees
//!    with `last_applied`.
//! 3. Apply commits are not fsynced one by one (`Durability::None`; every
//!    [`DURABLE_EVERY`]th batch is): the Raft log is the durable record, and after a
//!    crash openraft re-applies from the durable `last_applied` on. What makes that
//!    safe is invariant 4 and the restore in [`StateMachineStore::open`]: the log
//!    is purged only behind a snapshot, and a snapshot file is always durable, so
//!    if the state fell back behind the snapshot, open installs the snapshot first.
//! 4. A snapshot is read from one redb read transaction begun when openraft asks
//!    for a builder: it is a consistent cut, and apply goes on while it is built.
//!    Its file is written and fsynced before openraft may purge the log behind it.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, StorageIOError};
use redb::{Database, Durability, ReadTransaction, ReadableDatabase, TableDefinition, TableHandle, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::apply::Apply;
use crate::codec;
use crate::command::Response;
use crate::error::{db, Error};
use crate::history::{Bucket, Level};
use crate::model::{Incident, MaintenanceWindow, Monitor, Notification, Observation, Verdict};
use crate::quorum::MonitorState;
use crate::tables::{self, id_key, read_u64, Table, TABLES};
use crate::typ::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership};
use crate::TypeConfig;

/// Raft bookkeeping: not domain state, not hashed.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

const KEY_LAST_APPLIED: &str = "last_applied";
const KEY_MEMBERSHIP: &str = "membership";

const STATE_FILE: &str = "state.redb";
/// Every this many apply batches, one is committed durably, so redb can reclaim
/// pages freed by the non-durable ones (redb only reuses them after a durable commit).
pub const DURABLE_EVERY: u64 = 64;
const SNAPSHOT_FILE: &str = "snapshot.bin";

/// The domain state in a portable form: the body of a snapshot, and what the state
/// hash is computed over. Tables in [`TABLES`] order, rows in key order, so equal
/// states encode equally.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Dump {
    tables: Vec<(String, tables::Rows)>,
}

/// A snapshot as kept on disk beside the state file.
#[derive(Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The state machine half of the Raft storage. openraft owns this value; clones of
/// the inner database serve reads through [`StateReader`].
pub struct StateMachineStore {
    db: Arc<Database>,
    /// Apply batches since the last durable commit (invariant 3).
    since_durable: u64,
    dir: PathBuf,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    builds: Arc<AtomicU64>,
}

/// Read access to the applied state, for the API. Cheap to clone.
#[derive(Clone)]
pub struct StateReader {
    db: Arc<Database>,
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
    /// snapshot, `snapshot.bin`.
    pub fn open(dir: &Path) -> Result<StateMachineStore, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::SnapshotFile { path: dir.to_owned(), source })?;
        let path = dir.join(STATE_FILE);
        crate::log_store::refuse_empty_file(&path)?;
        let db = Database::create(&path).map_err(|source| Error::Open { path: path.clone(), source })?;
        let txn = db.begin_write().map_err(db_)?;
        txn.open_table(META).map_err(db_)?;
        for t in TABLES {
            txn.open_table(t).map_err(db_)?;
        }
        txn.commit().map_err(db_)?;

        let snap_path = dir.join(SNAPSHOT_FILE);
        let current = match std::fs::read(&snap_path) {
            Ok(bytes) => Some(codec::decode::<StoredSnapshot>(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(Error::SnapshotFile { path: snap_path, source }),
        };
        let store = StateMachineStore {
            db: Arc::new(db),
            since_durable: 0,
            dir: dir.to_owned(),
            current: Arc::new(Mutex::new(current)),
            builds: Arc::new(AtomicU64::new(0)),
        };
        store.restore_behind_snapshot()?;
        Ok(store)
    }

    /// After a crash the state may have fallen back behind the latest snapshot
    /// (its last commits were not fsynced), and the log behind the snapshot may be
    /// purged: reinstall the snapshot so openraft can re-apply from the log.
    fn restore_behind_snapshot(&self) -> Result<(), Error> {
        let Some(snapshot) = self.current.lock().expect("snapshot lock poisoned").clone() else { return Ok(()) };
        let applied = {
            let txn = self.db.begin_read().map_err(db_)?;
            applied_state(&txn)?.0
        };
        if snapshot.meta.last_log_id > applied {
            tracing::info!(?applied, snapshot = ?snapshot.meta.last_log_id, "state behind the snapshot after a crash: restoring it");
            self.load_snapshot(&snapshot)?;
        }
        Ok(())
    }

    pub fn reader(&self) -> StateReader {
        StateReader { db: self.db.clone() }
    }

    fn apply_blocking(db: &Database, entries: Vec<Entry>, durable: bool) -> Result<Vec<Response>, Error> {
        let mut txn = db.begin_write().map_err(db_)?;
        if !durable {
            txn.set_durability(Durability::None).map_err(|e| db_(redb::Error::from(e)))?;
        }
        let mut responses = Vec::with_capacity(entries.len());
        {
            let mut apply = Apply::new(&txn)?;
            let mut last_applied = None;
            let mut membership = None;
            for entry in entries {
                last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Response::Done,
                    EntryPayload::Membership(m) => {
                        membership = Some(StoredMembership::new(Some(entry.log_id), m));
                        Response::Done
                    }
                    EntryPayload::Normal(request) => {
                        apply.advance_clock(request.at_ms)?;
                        apply.command(&request.command)?
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

    fn install_blocking(&self, stored: StoredSnapshot) -> Result<(), Error> {
        self.load_snapshot(&stored)?;
        save_snapshot_file(&self.dir, &stored)?;
        *self.current.lock().expect("snapshot lock poisoned") = Some(stored);
        Ok(())
    }

    /// Replaces the domain state with a snapshot's, durably.
    fn load_snapshot(&self, stored: &StoredSnapshot) -> Result<(), Error> {
        let dump: Dump = codec::decode(&stored.data)?;
        let txn = self.db.begin_write().map_err(db_)?;
        for t in TABLES {
            txn.delete_table(t).map_err(db_)?;
            txn.open_table(t).map_err(db_)?;
        }
        for (name, rows) in &dump.tables {
            let Some(def) = TABLES.iter().find(|t| t.name() == name) else {
                return Err(Error::Corrupt {
                    path: self.dir.join(SNAPSHOT_FILE),
                    reason: format!("unknown table {name:?} in snapshot"),
                });
            };
            let mut table = txn.open_table(*def).map_err(db_)?;
            for (k, v) in rows {
                table.insert(k.as_slice(), v.as_slice()).map_err(db_)?;
            }
        }
        put_meta(&txn, KEY_LAST_APPLIED, &stored.meta.last_log_id)?;
        put_meta(&txn, KEY_MEMBERSHIP, &stored.meta.last_membership)?;
        txn.commit().map_err(db_)?;
        Ok(())
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

fn read_meta<T: serde::de::DeserializeOwned>(txn: &ReadTransaction, key: &str) -> Result<Option<T>, Error> {
    let table = txn.open_table(META).map_err(db)?;
    let value = table.get(key).map_err(db)?;
    Ok(match value {
        Some(v) => Some(codec::decode(v.value())?),
        None => None,
    })
}

fn dump(txn: &ReadTransaction) -> Result<Dump, Error> {
    let mut out = Dump::default();
    for t in TABLES {
        let table = txn.open_table(t).map_err(db)?;
        out.tables.push((t.name().to_string(), tables::rows(&table).map_err(db)?));
    }
    Ok(out)
}

fn applied_state(txn: &ReadTransaction) -> Result<(Option<LogId>, StoredMembership), Error> {
    let last: Option<LogId> = read_meta::<Option<LogId>>(txn, KEY_LAST_APPLIED)?.flatten();
    let membership = read_meta(txn, KEY_MEMBERSHIP)?.unwrap_or_default();
    Ok((last, membership))
}

/// Writes the snapshot beside the state so a restarted node can serve it: to a
/// temporary file, fsync, then rename over the old one.
fn save_snapshot_file(dir: &Path, stored: &StoredSnapshot) -> Result<(), Error> {
    let path = dir.join(SNAPSHOT_FILE);
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let io = |source| Error::SnapshotFile { path: path.clone(), source };
    let bytes = codec::encode(stored)?;
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

fn sm_read_err(e: Error) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn sm_write_err(e: Error) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
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
        let db = self.db.clone();
        self.since_durable += 1;
        let durable = self.since_durable >= DURABLE_EVERY;
        if durable {
            self.since_durable = 0;
        }
        match tokio::task::spawn_blocking(move || StateMachineStore::apply_blocking(&db, entries, durable)).await {
            Ok(result) => result.map_err(sm_write_err),
            Err(join) => Err(sm_write_err(Error::Task { message: join.to_string() })),
        }
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            txn: self.db.begin_read().map_err(db),
            dir: self.dir.clone(),
            current: self.current.clone(),
            seq: self.builds.fetch_add(1, Ordering::Relaxed),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let stored = StoredSnapshot { meta: meta.clone(), data: snapshot.into_inner() };
        self.install_blocking(stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.current.lock().expect("snapshot lock poisoned").clone();
        Ok(current.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

/// Builds a snapshot from a read transaction taken when openraft asked for the
/// builder (invariant 3).
pub struct SnapshotBuilder {
    txn: Result<ReadTransaction, Error>,
    dir: PathBuf,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let txn = match &self.txn {
            Ok(txn) => txn,
            Err(e) => return Err(sm_read_err(Error::Task { message: e.to_string() })),
        };
        let (last_log_id, last_membership) = applied_state(txn).map_err(sm_read_err)?;
        let data = dump(txn).and_then(|d| Ok(codec::encode(&d)?)).map_err(sm_read_err)?;
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.seq),
            None => format!("0-0-{}", self.seq),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data };
        save_snapshot_file(&self.dir, &stored).map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))
        })?;
        let data = stored.data.clone();
        *self.current.lock().expect("snapshot lock poisoned") = Some(stored);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

// === impl StateReader ===

impl StateReader {
    fn get<T: serde::de::DeserializeOwned>(&self, table: Table, key: &[u8]) -> Result<Option<T>, Error> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(table).map_err(db)?;
        let v = t.get(key).map_err(db)?;
        Ok(match v {
            Some(v) => Some(codec::decode(v.value())?),
            None => None,
        })
    }

    /// Rows of `table` whose key starts with `prefix`, decoded.
    fn scan<T: serde::de::DeserializeOwned>(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>, Error> {
        let txn = self.db.begin_read().map_err(db)?;
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
            let txn = self.db.begin_read().map_err(db)?;
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

    /// The state clock: the latest leader time applied.
    pub fn clock_ms(&self) -> Result<u64, Error> {
        self.counter(crate::apply::CLOCK)
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>, Error> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(tables::SETTINGS).map_err(db)?;
        let value = table.get(key.as_bytes()).map_err(db)?;
        Ok(value.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// A hash of the domain state (not of Raft bookkeeping) with the applied index
    /// it was read at, from one read transaction.
    pub fn state_hash(&self) -> Result<StateHash, Error> {
        let txn = self.db.begin_read().map_err(db)?;
        let (last, _) = applied_state(&txn)?;
        let bytes = codec::encode(&dump(&txn)?)?;
        let hash = Sha256::digest(&bytes);
        Ok(StateHash {
            applied_index: last.map(|l| l.index).unwrap_or(0),
            hash: hash.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}
