//! Deterministic apply of one command against the state machine's write
//! transaction. Reads no clock: `now` is the state clock, folded from the
//! leader's stamps (`max(previous, at_ms)`).
//!
//! Invariants kept here:
//! 1. At most one open incident per monitor is the verdict's (cause down,
//!    degraded or no data), listed in OPEN_INCIDENTS; only the verdict resolves
//!    it on its own. Declared incidents never take that place, so a person's
//!    incident can neither hide an outage nor be resolved by a recovery. An
//!    incident is never deleted.
//! 2. A digest seq at or below a node's last applied seq is dropped, so a digest
//!    re-sent after a leader change or a restart is applied once.
//! 3. During a maintenance window no incident opens and no notification is written
//!    for the affected monitors.
//!
//! This file holds the transaction's table access and the dispatch of
//! commands; each concern is a file of its own under `apply/`: `monitors`,
//! `verdicts` (digests, observations, history, the quorum verdict), `incidents`,
//! `maintenance`, `notify` (the outbox), `time` (ticks: staleness, reminders,
//! retention) and `requests` (idempotency keys).

mod channels;
mod incidents;
mod maintenance;
mod members;
mod monitors;
mod notify;
mod outbox;
mod requests;
pub(crate) use requests::Remembered;
mod time;
mod verdicts;

use std::collections::HashMap;

use redb::{ReadableTable, TableHandle, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::codec;
use crate::command::{
    Command, IncidentCommand, OutboxCommand, Rejection, Response, Settlement, IDEMPOTENCY_WINDOW_MS, MAX_ATTEMPTS,
    MAX_RETRY_MS, MIN_RETRY_MS,
};
use crate::error::{db, Error};
use crate::history::{Bucket, Level, Retention};
use crate::model::{
    AlertPolicy, Channel, Delivery, DeliveryOutcome, Digest, Incident, IncidentCause, IncidentState, MaintenanceWindow,
    Monitor, MonitorDraft, MonitorResult, Notification, NotificationKind, NotificationState, Observation, Severity,
    TimelineEvent, Verdict,
};
use crate::quorum::{self, CheckStatus, MonitorState, NodeReport, QuorumRule};
use crate::tables::*;

pub(crate) const CLOCK: &str = "clock_ms";
const NEXT_MONITOR: &str = "next_monitor_id";
const NEXT_INCIDENT: &str = "next_incident_id";
const NEXT_NOTIFICATION: &str = "next_notification_id";
const NEXT_MAINTENANCE: &str = "next_maintenance_id";
const RETENTION_AT: &str = "retention_at_ms";
pub(crate) const DIGESTS_COALESCED: &str = "digests_coalesced";
pub(crate) const DIGESTS_DUPLICATE: &str = "digests_duplicate";
/// Prefix of the per-node counters of checks received in applied digests
/// (`checks_received/<node id>`), whether or not the monitor still took them.
pub(crate) const CHECKS_RECEIVED: &str = "checks_received/";

const SYSTEM: &str = "system";

pub(crate) struct Apply<'t> {
    /// Every domain table, open for the whole transaction (in [`TABLES`] order):
    /// opening a redb table per access costs more than the access.
    tables: Vec<redb::Table<'t, &'static [u8], &'static [u8]>>,
    pub now: u64,
    /// The log id of the entry being applied: a claim records it as its
    /// fencing token. None outside a log entry (tests that apply directly).
    pub log_id: Option<crate::typ::LogId>,
    /// Decoded rows read in this transaction, dropped on any write to their
    /// table: a digest entry touches each monitor once per node.
    monitors: std::cell::RefCell<HashMap<u64, Option<Monitor>>>,
    windows: std::cell::RefCell<Option<Vec<MaintenanceWindow>>>,
    /// History buckets folded by digests in this transaction, written back by
    /// [`Apply::flush`]: one read and one write per bucket, however many nodes
    /// reported the monitor in the batch.
    buckets: HashMap<[u8; 17], Bucket>,
}

/// Position of `table` in [`TABLES`].
fn ix(table: Table) -> usize {
    TABLES.iter().position(|t| t.name() == table.name()).expect("every domain table is listed in TABLES")
}

type Result<T> = std::result::Result<T, Error>;

fn reject(r: Rejection) -> Result<Response> {
    Ok(Response::Rejected(r))
}

impl<'t> Apply<'t> {
    pub fn new(txn: &'t WriteTransaction) -> Result<Apply<'t>> {
        let tables = TABLES.iter().map(|t| txn.open_table(*t).map_err(db)).collect::<Result<Vec<_>>>()?;
        let mut a = Apply {
            tables,
            now: 0,
            log_id: None,
            monitors: Default::default(),
            windows: Default::default(),
            buckets: HashMap::new(),
        };
        a.now = a.counter(CLOCK)?;
        Ok(a)
    }

    /// Advances the state clock to `at_ms` unless it is already later.
    pub fn advance_clock(&mut self, at_ms: u64) -> Result<()> {
        if at_ms > self.now {
            self.now = at_ms;
            self.set_counter(CLOCK, at_ms)?;
        }
        Ok(())
    }

    // --- table access ---

    fn get<T: DeserializeOwned>(&self, table: Table, key: &[u8]) -> Result<Option<T>> {
        let v = self.tables[ix(table)].get(key).map_err(db)?;
        Ok(match v {
            Some(v) => Some(codec::decode(v.value())?),
            None => None,
        })
    }

    /// Drops cached rows of `table` before it changes.
    fn invalidate(&mut self, table: Table) {
        if table.name() == MONITORS.name() {
            self.monitors.get_mut().clear();
        } else if table.name() == MAINTENANCE.name() {
            *self.windows.get_mut() = None;
        }
    }

    fn put<T: Serialize>(&mut self, table: Table, key: &[u8], value: &T) -> Result<()> {
        self.invalidate(table);
        let bytes = codec::encode(value)?;
        self.tables[ix(table)].insert(key, bytes.as_slice()).map_err(db)?;
        Ok(())
    }

    fn put_raw(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        self.tables[ix(table)].insert(key, value).map_err(db)?;
        Ok(())
    }

    fn del(&mut self, table: Table, key: &[u8]) -> Result<bool> {
        self.invalidate(table);
        let removed = self.tables[ix(table)].remove(key).map_err(db)?.is_some();
        Ok(removed)
    }

    /// Rows whose key starts with `prefix`, decoded.
    fn scan<T: DeserializeOwned>(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>> {
        scan_prefix(&self.tables[ix(table)], prefix)
    }

    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<()> {
        let keys: Vec<Vec<u8>> = {
            let t = &self.tables[ix(table)];
            let mut keys = Vec::new();
            for row in t.range::<&[u8]>(prefix..).map_err(db)? {
                let (k, _) = row.map_err(db)?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                keys.push(k.value().to_vec());
            }
            keys
        };
        let t = &mut self.tables[ix(table)];
        for k in keys {
            t.remove(k.as_slice()).map_err(db)?;
        }
        Ok(())
    }

    fn counter(&self, name: &str) -> Result<u64> {
        Ok(self.get::<u64>(COUNTERS, name.as_bytes())?.unwrap_or(0))
    }

    fn set_counter(&mut self, name: &str, value: u64) -> Result<()> {
        self.put(COUNTERS, name.as_bytes(), &value)
    }

    /// The next id from counter `name`, starting at 1.
    fn next_id(&mut self, name: &str) -> Result<u64> {
        let id = self.counter(name)?.max(1);
        self.set_counter(name, id.saturating_add(1))?;
        Ok(id)
    }

    fn monitor(&self, id: u64) -> Result<Option<Monitor>> {
        if let Some(m) = self.monitors.borrow().get(&id) {
            return Ok(m.clone());
        }
        let m: Option<Monitor> = self.get(MONITORS, &id_key(id))?;
        self.monitors.borrow_mut().insert(id, m.clone());
        Ok(m)
    }

    fn monitor_id_by_name(&self, name: &str) -> Result<Option<u64>> {
        let v = self.tables[ix(MONITOR_NAMES)].get(name.as_bytes()).map_err(db)?;
        Ok(v.map(|v| read_u64(v.value())))
    }

    // --- commands ---

    /// Writes back the history buckets digests folded. Called before anything
    /// else reads or changes history, and before the transaction commits.
    pub fn flush(&mut self) -> Result<()> {
        let buckets = std::mem::take(&mut self.buckets);
        let mut keys: Vec<&[u8; 17]> = buckets.keys().collect();
        keys.sort();
        for key in keys {
            self.put(HISTORY, key, &buckets[key])?;
        }
        Ok(())
    }

    pub fn command(&mut self, command: &Command) -> Result<Response> {
        if let Err(r) = command.validate() {
            return reject(r);
        }
        if !matches!(command, Command::Digests { .. } | Command::Batch(_)) {
            self.flush()?;
        }
        match command {
            Command::CreateMonitor(draft) => self.create_monitor(draft),
            Command::UpdateMonitor { id, draft } => self.update_monitor(*id, draft),
            Command::SetMonitorEnabled { id, enabled } => self.set_enabled(*id, *enabled),
            Command::DeleteMonitor { id } => self.delete_monitor(*id),
            Command::SetSetting { key, value } => {
                self.put_raw(SETTINGS, key.as_bytes(), value.as_bytes())?;
                Ok(Response::Done)
            }
            Command::Digests { node_id, digests } => self.digests(*node_id, digests),
            Command::Tick => self.tick(),
            Command::Batch(commands) => {
                let mut out = Vec::with_capacity(commands.len());
                for c in commands {
                    out.push(self.command(c)?);
                }
                Ok(Response::Batch(out))
            }
            Command::Incident(c) => self.incident(c),
            Command::Idempotent { key, command } => self.idempotent(key, command),
            Command::CreateMaintenance { name, monitors, all_monitors, schedule } => {
                self.create_maintenance(name, monitors, *all_monitors, schedule)
            }
            Command::DeleteMaintenance { id } => self.delete_maintenance(*id),
            Command::PutChannel { name, spec, default, create } => self.put_channel(name, spec, *default, *create),
            Command::DeleteChannel { name } => self.delete_channel(name),
            Command::Outbox(OutboxCommand::Claim { ids }) => self.claim(ids),
            Command::Outbox(OutboxCommand::Settle { results }) => self.settle(results),
        }
    }
}
