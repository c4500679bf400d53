//! Deterministic apply, snapshots and read access to the replicated state.
//!
//! Invariants:
//! 1. Apply is a pure function of (state, entry): it reads no clock, randomness or
//!    I/O beyond this store. Time comes from `Request::at_ms`, folded as
//!    `clock = max(clock, at_ms)`.
//! 2. A batch of entries is applied in one write transaction together with
//!    `last_applied`, so a crash leaves the state at a batch boundary that agrees
//!    with `last_applied`, and openraft re-applies the rest from the log.
//! 3. A snapshot is read from one redb read transaction begun when openraft asks
//!    for a builder: it is a consistent cut, and apply goes on while it is built.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, StorageIOError};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec;
use crate::command::{Command, Rejection, Request, Response};
use crate::error::{db, Error};
use crate::model::Monitor;
use crate::typ::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership};
use crate::TypeConfig;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
const MONITORS: TableDefinition<u64, &[u8]> = TableDefinition::new("monitors");
const MONITOR_NAMES: TableDefinition<&str, u64> = TableDefinition::new("monitor_names");
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");

const KEY_LAST_APPLIED: &str = "last_applied";
const KEY_MEMBERSHIP: &str = "membership";
const KEY_CLOCK: &str = "clock_ms";
const KEY_NEXT_MONITOR_ID: &str = "next_monitor_id";

const STATE_FILE: &str = "state.redb";
const SNAPSHOT_FILE: &str = "snapshot.bin";

/// The domain state in a portable form: the body of a snapshot, and what the state
/// hash is computed over. Rows are in key order, so equal states encode equally.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Dump {
    clock_ms: u64,
    next_monitor_id: u64,
    monitors: Vec<Monitor>,
    settings: Vec<(String, String)>,
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
        txn.open_table(MONITORS).map_err(db_)?;
        txn.open_table(MONITOR_NAMES).map_err(db_)?;
        txn.open_table(SETTINGS).map_err(db_)?;
        txn.commit().map_err(db_)?;

        let snap_path = dir.join(SNAPSHOT_FILE);
        let current = match std::fs::read(&snap_path) {
            Ok(bytes) => Some(codec::decode::<StoredSnapshot>(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(Error::SnapshotFile { path: snap_path, source }),
        };
        Ok(StateMachineStore {
            db: Arc::new(db),
            dir: dir.to_owned(),
            current: Arc::new(Mutex::new(current)),
            builds: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn reader(&self) -> StateReader {
        StateReader { db: self.db.clone() }
    }

    fn apply_blocking(db: &Database, entries: Vec<Entry>) -> Result<Vec<Response>, Error> {
        let txn = db.begin_write().map_err(db_)?;
        let mut responses = Vec::with_capacity(entries.len());
        {
            let mut clock: u64 = get_meta(&txn, KEY_CLOCK)?.unwrap_or(0);
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
                        clock = clock.max(request.at_ms);
                        apply_request(&txn, clock, &request)?
                    }
                };
                responses.push(response);
            }
            put_meta(&txn, KEY_CLOCK, &clock)?;
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
        let dump: Dump = codec::decode(&stored.data)?;
        let txn = self.db.begin_write().map_err(db_)?;
        txn.delete_table(MONITORS).map_err(db_)?;
        txn.delete_table(MONITOR_NAMES).map_err(db_)?;
        txn.delete_table(SETTINGS).map_err(db_)?;
        {
            let mut monitors = txn.open_table(MONITORS).map_err(db_)?;
            let mut names = txn.open_table(MONITOR_NAMES).map_err(db_)?;
            for m in &dump.monitors {
                monitors.insert(m.id, codec::encode(m)?.as_slice()).map_err(db_)?;
                names.insert(m.name.as_str(), m.id).map_err(db_)?;
            }
            let mut settings = txn.open_table(SETTINGS).map_err(db_)?;
            for (k, v) in &dump.settings {
                settings.insert(k.as_str(), v.as_str()).map_err(db_)?;
            }
            put_meta(&txn, KEY_CLOCK, &dump.clock_ms)?;
            put_meta(&txn, KEY_NEXT_MONITOR_ID, &dump.next_monitor_id)?;
            put_meta(&txn, KEY_LAST_APPLIED, &stored.meta.last_log_id)?;
            put_meta(&txn, KEY_MEMBERSHIP, &stored.meta.last_membership)?;
        }
        txn.commit().map_err(db_)?;
        save_snapshot_file(&self.dir, &stored)?;
        *self.current.lock().expect("snapshot lock poisoned") = Some(stored);
        Ok(())
    }
}

fn db_<E: Into<redb::Error>>(e: E) -> Error {
    db(e)
}

fn get_meta<T: serde::de::DeserializeOwned>(txn: &WriteTransaction, key: &str) -> Result<Option<T>, Error> {
    let table = txn.open_table(META).map_err(db)?;
    let value = table.get(key).map_err(db)?;
    Ok(match value {
        Some(v) => Some(codec::decode(v.value())?),
        None => None,
    })
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

/// Applies one command at state time `now`. `Err` is reserved for storage
/// failures; a refused command is `Ok(Response::Rejected)`.
fn apply_request(txn: &WriteTransaction, now: u64, request: &Request) -> Result<Response, Error> {
    if let Err(rejection) = request.command.validate() {
        return Ok(Response::Rejected(rejection));
    }
    match &request.command {
        Command::CreateMonitor(draft) => {
            let mut names = txn.open_table(MONITOR_NAMES).map_err(db)?;
            if names.get(draft.name.as_str()).map_err(db)?.is_some() {
                return Ok(Response::Rejected(Rejection::conflict(
                    "name",
                    format!("a monitor named {:?} already exists", draft.name),
                )));
            }
            let id: u64 = get_meta(txn, KEY_NEXT_MONITOR_ID)?.unwrap_or(1);
            put_meta(txn, KEY_NEXT_MONITOR_ID, &(id + 1))?;
            let monitor = Monitor {
                id,
                name: draft.name.clone(),
                check: draft.check.clone(),
                interval_ms: draft.interval_ms,
                timeout_ms: draft.timeout_ms,
                enabled: draft.enabled,
                public: draft.public,
                tags: draft.tags.clone(),
                created_at_ms: now,
                updated_at_ms: now,
            };
            names.insert(monitor.name.as_str(), id).map_err(db)?;
            txn.open_table(MONITORS).map_err(db)?.insert(id, codec::encode(&monitor)?.as_slice()).map_err(db)?;
            Ok(Response::Monitor(monitor))
        }
        Command::DeleteMonitor { id } => {
            let mut monitors = txn.open_table(MONITORS).map_err(db)?;
            let removed = monitors.remove(*id).map_err(db)?.map(|v| codec::decode::<Monitor>(v.value()));
            match removed {
                Some(m) => {
                    txn.open_table(MONITOR_NAMES).map_err(db)?.remove(m?.name.as_str()).map_err(db)?;
                    Ok(Response::Deleted { id: *id })
                }
                None => Ok(Response::Rejected(Rejection::not_found(format!("no monitor with id {id}")))),
            }
        }
        Command::SetSetting { key, value } => {
            txn.open_table(SETTINGS).map_err(db)?.insert(key.as_str(), value.as_str()).map_err(db)?;
            Ok(Response::Done)
        }
    }
}

fn dump(txn: &ReadTransaction) -> Result<Dump, Error> {
    let mut out = Dump {
        clock_ms: read_meta(txn, KEY_CLOCK)?.unwrap_or(0),
        next_monitor_id: read_meta(txn, KEY_NEXT_MONITOR_ID)?.unwrap_or(1),
        ..Dump::default()
    };
    for row in txn.open_table(MONITORS).map_err(db)?.iter().map_err(db)? {
        let (_, v) = row.map_err(db)?;
        out.monitors.push(codec::decode(v.value())?);
    }
    for row in txn.open_table(SETTINGS).map_err(db)?.iter().map_err(db)? {
        let (k, v) = row.map_err(db)?;
        out.settings.push((k.value().to_string(), v.value().to_string()));
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
        match tokio::task::spawn_blocking(move || StateMachineStore::apply_blocking(&db, entries)).await {
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
    pub fn list_monitors(&self) -> Result<Vec<Monitor>, Error> {
        let txn = self.db.begin_read().map_err(db)?;
        let mut out = Vec::new();
        for row in txn.open_table(MONITORS).map_err(db)?.iter().map_err(db)? {
            let (_, v) = row.map_err(db)?;
            out.push(codec::decode(v.value())?);
        }
        Ok(out)
    }

    pub fn get_monitor(&self, id: u64) -> Result<Option<Monitor>, Error> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(MONITORS).map_err(db)?;
        let value = table.get(id).map_err(db)?;
        Ok(match value {
            Some(v) => Some(codec::decode(v.value())?),
            None => None,
        })
    }

    /// Looks a monitor up by id (all digits) or by name.
    pub fn find_monitor(&self, id_or_name: &str) -> Result<Option<Monitor>, Error> {
        if let Ok(id) = id_or_name.parse::<u64>() {
            return self.get_monitor(id);
        }
        let id = {
            let txn = self.db.begin_read().map_err(db)?;
            let table = txn.open_table(MONITOR_NAMES).map_err(db)?;
            let value = table.get(id_or_name).map_err(db)?;
            value.map(|v| v.value())
        };
        match id {
            Some(id) => self.get_monitor(id),
            None => Ok(None),
        }
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>, Error> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(SETTINGS).map_err(db)?;
        let value = table.get(key).map_err(db)?;
        Ok(value.map(|v| v.value().to_string()))
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
