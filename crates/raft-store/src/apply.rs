//! Deterministic apply of one command against the state machine's write
//! transaction. Reads no clock: `now` is the state clock, folded from the
//! leader's stamps (`max(previous, at_ms)`).
//!
//! Invariants kept here:
//! 1. At most one open (triggered or acknowledged) incident per monitor, listed
//!    in OPEN_INCIDENTS; an incident is never deleted.
//! 2. A digest seq at or below a node's last applied seq is dropped, so a digest
//!    re-sent after a leader change or a restart is applied once.
//! 3. During a maintenance window no incident opens and no notification is written
//!    for the affected monitors.

use std::collections::HashMap;

use redb::{ReadableTable, TableHandle, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::codec;
use crate::command::{Command, IncidentCommand, Rejection, Response, IDEMPOTENCY_WINDOW_MS};
use crate::error::{db, Error};
use crate::history::{Bucket, Level, Retention};
use crate::model::{
    AlertPolicy, Digest, Incident, IncidentState, MaintenanceWindow, Monitor, MonitorDraft, MonitorResult,
    Notification, NotificationKind, NotificationState, Observation, Severity, TimelineEvent, Verdict,
};
use crate::quorum::{self, CheckStatus, MonitorState, NodeReport};
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

/// The first answer to a keyed write (`Command::Idempotent`).
#[derive(Serialize, Deserialize)]
struct Remembered {
    at_ms: u64,
    /// SHA-256 of the command's encoding: the same key with another command is refused.
    fingerprint: [u8; 32],
    response: Response,
}

fn request_time_key(at_ms: u64, key: &str) -> Vec<u8> {
    let mut k = at_ms.to_be_bytes().to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

pub(crate) struct Apply<'t> {
    /// Every domain table, open for the whole transaction (in [`TABLES`] order):
    /// opening a redb table per access costs more than the access.
    tables: Vec<redb::Table<'t, &'static [u8], &'static [u8]>>,
    pub now: u64,
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
            Command::CreateMaintenance { name, monitors, schedule } => {
                for m in monitors {
                    if self.monitor(*m)?.is_none() {
                        return reject(Rejection::not_found(format!("no monitor with id {m}")));
                    }
                }
                let id = self.next_id(NEXT_MAINTENANCE)?;
                let w = MaintenanceWindow {
                    id,
                    name: name.clone(),
                    monitors: monitors.clone(),
                    schedule: schedule.clone(),
                };
                self.put(MAINTENANCE, &id_key(id), &w)?;
                self.reevaluate_all()?;
                Ok(Response::Maintenance(w))
            }
            Command::DeleteMaintenance { id } => {
                if !self.del(MAINTENANCE, &id_key(*id))? {
                    return reject(Rejection::not_found(format!("no maintenance window with id {id}")));
                }
                self.reevaluate_all()?;
                Ok(Response::Deleted { id: *id })
            }
        }
    }

    /// Applies `command` once per `key` (see `Command::Idempotent`).
    fn idempotent(&mut self, key: &str, command: &Command) -> Result<Response> {
        let fingerprint: [u8; 32] = Sha256::digest(codec::encode(command)?).into();
        if let Some(seen) = self.get::<Remembered>(REQUESTS, key.as_bytes())? {
            if self.now < seen.at_ms.saturating_add(IDEMPOTENCY_WINDOW_MS) {
                if seen.fingerprint == fingerprint {
                    return Ok(seen.response);
                }
                return reject(Rejection::conflict(
                    "idempotency_key",
                    "this key was used for a different request; use a new key per request",
                ));
            }
            self.forget_request(key, seen.at_ms)?;
        }
        let response = self.command(command)?;
        let remembered = Remembered { at_ms: self.now, fingerprint, response: response.clone() };
        self.put(REQUESTS, key.as_bytes(), &remembered)?;
        self.put_raw(REQUEST_TIMES, &request_time_key(self.now, key), &[])?;
        Ok(response)
    }

    fn forget_request(&mut self, key: &str, at_ms: u64) -> Result<()> {
        self.del(REQUESTS, key.as_bytes())?;
        self.del(REQUEST_TIMES, &request_time_key(at_ms, key))?;
        Ok(())
    }

    /// Forgets keys older than the window: the table stays as small as the
    /// keyed write rate times the window.
    fn expire_requests(&mut self) -> Result<()> {
        let cutoff = self.now.saturating_sub(IDEMPOTENCY_WINDOW_MS);
        let expired: Vec<Vec<u8>> = {
            let t = &self.tables[ix(REQUEST_TIMES)];
            let mut keys = Vec::new();
            for row in t.range::<&[u8]>(..cutoff.to_be_bytes().as_slice()).map_err(db)? {
                let (k, _) = row.map_err(db)?;
                keys.push(k.value().to_vec());
            }
            keys
        };
        for k in expired {
            self.del(REQUEST_TIMES, &k)?;
            self.del(REQUESTS, &k[8..])?;
        }
        Ok(())
    }

    fn create_monitor(&mut self, draft: &MonitorDraft) -> Result<Response> {
        if self.monitor_id_by_name(&draft.name)?.is_some() {
            return reject(Rejection::conflict("name", format!("a monitor named {:?} already exists", draft.name)));
        }
        let id = self.next_id(NEXT_MONITOR)?;
        let monitor = Monitor::from_draft(id, draft, self.now);
        self.put_raw(MONITOR_NAMES, monitor.name.as_bytes(), &id_key(id))?;
        self.put(MONITORS, &id_key(id), &monitor)?;
        let state = if monitor.enabled { MonitorState::Unknown } else { MonitorState::Maintenance };
        self.put(VERDICTS, &id_key(id), &Verdict { state, since_ms: self.now })?;
        Ok(Response::Monitor(monitor))
    }

    fn update_monitor(&mut self, id: u64, draft: &MonitorDraft) -> Result<Response> {
        let Some(old) = self.monitor(id)? else {
            return reject(Rejection::not_found(format!("no monitor with id {id}")));
        };
        if draft.name != old.name {
            if self.monitor_id_by_name(&draft.name)?.is_some() {
                return reject(Rejection::conflict("name", format!("a monitor named {:?} already exists", draft.name)));
            }
            self.del(MONITOR_NAMES, old.name.as_bytes())?;
            self.put_raw(MONITOR_NAMES, draft.name.as_bytes(), &id_key(id))?;
        }
        let monitor = Monitor { created_at_ms: old.created_at_ms, ..Monitor::from_draft(id, draft, self.now) };
        self.put(MONITORS, &id_key(id), &monitor)?;
        if monitor.check != old.check {
            // Reports about the old target say nothing about the new one.
            self.delete_prefix(OBSERVATIONS, &id_key(id))?;
        }
        self.evaluate(&monitor)?;
        Ok(Response::Monitor(monitor))
    }

    fn set_enabled(&mut self, id: u64, enabled: bool) -> Result<Response> {
        let Some(mut m) = self.monitor(id)? else {
            return reject(Rejection::not_found(format!("no monitor with id {id}")));
        };
        if m.enabled != enabled {
            m.enabled = enabled;
            m.updated_at_ms = self.now;
            self.put(MONITORS, &id_key(id), &m)?;
            // Reports from before a pause are stale by definition after it.
            self.delete_prefix(OBSERVATIONS, &id_key(id))?;
            self.evaluate(&m)?;
        }
        Ok(Response::Monitor(m))
    }

    fn delete_monitor(&mut self, id: u64) -> Result<Response> {
        let Some(m) = self.monitor(id)? else {
            return reject(Rejection::not_found(format!("no monitor with id {id}")));
        };
        if let Some(incident_id) = self.get::<u64>(OPEN_INCIDENTS, &id_key(id))? {
            self.close_incident(incident_id, SYSTEM, "monitor deleted", false)?;
        }
        self.del(MONITORS, &id_key(id))?;
        self.del(MONITOR_NAMES, m.name.as_bytes())?;
        self.del(VERDICTS, &id_key(id))?;
        self.delete_prefix(OBSERVATIONS, &id_key(id))?;
        self.delete_prefix(HISTORY, &id_key(id))?;
        Ok(Response::Deleted { id })
    }

    // --- digests and verdicts ---

    fn digests(&mut self, node_id: u64, digests: &[Digest]) -> Result<Response> {
        let last = self.get::<u64>(DIGEST_SEQS, &id_key(node_id))?.unwrap_or(0);
        let (mut applied, mut duplicates, mut high, mut checks) = (0u64, 0u64, last, 0u64);
        for d in digests {
            if d.seq <= high {
                duplicates += 1;
                continue;
            }
            high = d.seq;
            applied += 1;
            checks = d.results.iter().fold(checks, |sum, r| sum.saturating_add(r.checks));
            if d.coalesced > 0 {
                let c = self.counter(DIGESTS_COALESCED)?;
                self.set_counter(DIGESTS_COALESCED, c.saturating_add(u64::from(d.coalesced)))?;
            }
            for r in &d.results {
                self.result(node_id, r)?;
            }
        }
        if high > last {
            self.put(DIGEST_SEQS, &id_key(node_id), &high)?;
        }
        if applied > 0 {
            let key = format!("{CHECKS_RECEIVED}{node_id}");
            let c = self.counter(&key)?;
            self.set_counter(&key, c.saturating_add(checks))?;
        }
        if duplicates > 0 {
            let c = self.counter(DIGESTS_DUPLICATE)?;
            self.set_counter(DIGESTS_DUPLICATE, c.saturating_add(duplicates))?;
        }
        Ok(Response::Digests { applied, duplicates })
    }

    fn result(&mut self, node_id: u64, r: &MonitorResult) -> Result<()> {
        let Some(m) = self.monitor(r.monitor_id)? else { return Ok(()) };
        if !m.enabled {
            return Ok(());
        }
        let latency_us = r.latency.sum_us.checked_div(r.latency.count).unwrap_or(0);
        let obs = Observation {
            status: r.last_status,
            run: r.run.max(1),
            at_ms: self.now,
            last_error: r.last_error.chars().take(500).collect(),
            latency_us,
        };
        self.put(OBSERVATIONS, &pair_key(m.id, node_id), &obs)?;
        for level in Level::ALL {
            let key = history_key(m.id, level.code(), level.bucket_start(self.now));
            if !self.buckets.contains_key(&key) {
                let stored: Bucket = self.get(HISTORY, &key)?.unwrap_or_default();
                self.buckets.insert(key, stored);
            }
            if let Some(bucket) = self.buckets.get_mut(&key) {
                bucket.fold(r.checks, r.failures.min(r.checks), &r.latency);
            }
        }
        self.evaluate(&m)
    }

    fn in_maintenance(&self, monitor_id: u64) -> Result<bool> {
        if self.windows.borrow().is_none() {
            let all = self.scan::<MaintenanceWindow>(MAINTENANCE, &[])?.into_iter().map(|(_, w)| w).collect();
            *self.windows.borrow_mut() = Some(all);
        }
        let windows = self.windows.borrow();
        for w in windows.iter().flatten() {
            if (w.monitors.is_empty() || w.monitors.contains(&monitor_id)) && w.schedule.contains(self.now) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Recomputes a monitor's verdict and acts on a change.
    fn evaluate(&mut self, m: &Monitor) -> Result<()> {
        let current: Verdict =
            self.get(VERDICTS, &id_key(m.id))?.unwrap_or(Verdict { state: MonitorState::Unknown, since_ms: self.now });
        let next = if !m.enabled {
            MonitorState::Maintenance
        } else {
            let reports: Vec<NodeReport> = self
                .scan::<Observation>(OBSERVATIONS, &id_key(m.id))?
                .into_iter()
                .map(|(_, o)| NodeReport { status: o.status, run: o.run, at_ms: o.at_ms })
                .collect();
            let maintenance = self.in_maintenance(m.id)?;
            quorum::evaluate(current.state, &reports, self.now, &m.verdict_policy(), maintenance)
        };
        if next == current.state {
            return Ok(());
        }
        self.put(VERDICTS, &id_key(m.id), &Verdict { state: next, since_ms: self.now })?;
        match next {
            MonitorState::Down => {
                if self.get::<u64>(OPEN_INCIDENTS, &id_key(m.id))?.is_none() {
                    let errors = self.down_summary(m.id)?;
                    let title = format!("{} is down", m.name);
                    self.open_incident(Some(m), title, Severity::Critical, SYSTEM, &errors)?;
                }
            }
            MonitorState::Up => {
                if let Some(incident_id) = self.get::<u64>(OPEN_INCIDENTS, &id_key(m.id))? {
                    self.close_incident(incident_id, SYSTEM, "recovered", m.policy.notify_on_recovery)?;
                }
            }
            MonitorState::Degraded | MonitorState::Unknown | MonitorState::Maintenance => {}
        }
        Ok(())
    }

    /// "node 2: connection refused; node 3: timeout" from the nodes that see it down.
    fn down_summary(&self, monitor_id: u64) -> Result<String> {
        let parts: Vec<String> = self
            .scan::<Observation>(OBSERVATIONS, &id_key(monitor_id))?
            .into_iter()
            .filter(|(_, o)| o.status == CheckStatus::Down)
            .map(|(k, o)| format!("node {}: {}", read_u64(&k[8..]), o.last_error))
            .collect();
        Ok(parts.join("; "))
    }

    fn reevaluate_all(&mut self) -> Result<()> {
        for (_, m) in self.scan::<Monitor>(MONITORS, &[])? {
            self.evaluate(&m)?;
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<Response> {
        self.reevaluate_all()?;
        self.reminders()?;
        self.expire_requests()?;
        // Retention once per minute of state time is plenty for minute buckets.
        let last = self.counter(RETENTION_AT)?;
        if self.now >= last.saturating_add(60_000) {
            self.set_counter(RETENTION_AT, self.now)?;
            self.retention(&Retention::default())?;
        }
        Ok(Response::Done)
    }

    fn reminders(&mut self) -> Result<()> {
        for (_, incident_id) in self.scan::<u64>(OPEN_INCIDENTS, &[])? {
            let Some(mut inc) = self.get::<Incident>(INCIDENTS, &id_key(incident_id))? else { continue };
            if inc.state != IncidentState::Triggered {
                continue;
            }
            let Some(m) = inc.monitor_id.map(|id| self.monitor(id)).transpose()?.flatten() else { continue };
            let every = m.policy.renotify_interval_ms;
            if every == 0 || self.now < inc.last_notified_at_ms.saturating_add(every) || self.in_maintenance(m.id)? {
                continue;
            }
            inc.last_notified_at_ms = self.now;
            self.put(INCIDENTS, &id_key(inc.id), &inc)?;
            self.notify(&inc, Some(&m.policy), NotificationKind::Reminder)?;
        }
        Ok(())
    }

    fn retention(&mut self, retention: &Retention) -> Result<()> {
        let monitors: Vec<u64> = self.scan::<Monitor>(MONITORS, &[])?.into_iter().map(|(_, m)| m.id).collect();
        let now = self.now;
        let t = &mut self.tables[ix(HISTORY)];
        for id in monitors {
            for level in Level::ALL {
                let cutoff = now.saturating_sub(retention.of(level));
                let from = history_key(id, level.code(), 0);
                let to = history_key(id, level.code(), cutoff);
                t.retain_in::<&[u8], _>(from.as_slice()..to.as_slice(), |_, _| false).map_err(db)?;
            }
        }
        Ok(())
    }

    // --- incidents ---

    fn event(&self, by: &str, kind: &str, text: impl Into<String>) -> TimelineEvent {
        TimelineEvent { at_ms: self.now, by: by.to_string(), kind: kind.to_string(), text: text.into() }
    }

    fn open_incident(
        &mut self,
        monitor: Option<&Monitor>,
        title: String,
        severity: Severity,
        by: &str,
        text: &str,
    ) -> Result<Incident> {
        let id = self.next_id(NEXT_INCIDENT)?;
        let inc = Incident {
            id,
            monitor_id: monitor.map(|m| m.id),
            title,
            state: IncidentState::Triggered,
            severity,
            assignee: None,
            opened_at_ms: self.now,
            acknowledged_at_ms: None,
            resolved_at_ms: None,
            last_notified_at_ms: self.now,
            timeline: vec![self.event(by, "opened", text)],
        };
        self.put(INCIDENTS, &id_key(id), &inc)?;
        if let Some(m) = monitor {
            self.put(OPEN_INCIDENTS, &id_key(m.id), &id)?;
        }
        let silenced = match monitor {
            Some(m) => self.in_maintenance(m.id)?,
            None => false,
        };
        if !silenced {
            self.notify(&inc, monitor.map(|m| &m.policy), NotificationKind::Open)?;
        }
        Ok(inc)
    }

    /// Resolves incident `id`. An open-incident entry that names a missing
    /// incident is an inconsistency in the state: it is dropped, the same way on
    /// every node, rather than stopping apply (an `Err` here would stop every
    /// node at this entry at every replay).
    fn close_incident(&mut self, id: u64, by: &str, text: &str, notify: bool) -> Result<Option<Incident>> {
        let Some(mut inc) = self.get::<Incident>(INCIDENTS, &id_key(id))? else {
            let stale: Vec<Vec<u8>> = self
                .scan::<u64>(OPEN_INCIDENTS, &[])?
                .into_iter()
                .filter(|(_, open)| *open == id)
                .map(|(k, _)| k)
                .collect();
            for k in stale {
                self.del(OPEN_INCIDENTS, &k)?;
            }
            return Ok(None);
        };
        inc.state = IncidentState::Resolved;
        inc.resolved_at_ms = Some(self.now);
        inc.record(self.event(by, "resolved", text));
        self.put(INCIDENTS, &id_key(id), &inc)?;
        let monitor = match inc.monitor_id {
            Some(m) => {
                if self.get::<u64>(OPEN_INCIDENTS, &id_key(m))? == Some(id) {
                    self.del(OPEN_INCIDENTS, &id_key(m))?;
                }
                self.monitor(m)?
            }
            None => None,
        };
        let silenced = match &monitor {
            Some(m) => self.in_maintenance(m.id)?,
            None => false,
        };
        if notify && !silenced {
            self.notify(&inc, monitor.as_ref().map(|m| &m.policy), NotificationKind::Resolve)?;
        }
        Ok(Some(inc))
    }

    /// Writes one outbox record per channel of the policy (one for the default
    /// channels when it names none).
    fn notify(&mut self, inc: &Incident, policy: Option<&AlertPolicy>, kind: NotificationKind) -> Result<()> {
        let channels: Vec<Option<String>> = match policy {
            Some(p) if !p.channels.is_empty() => p.channels.iter().cloned().map(Some).collect(),
            _ => vec![None],
        };
        for channel in channels {
            let id = self.next_id(NEXT_NOTIFICATION)?;
            let n = Notification {
                id,
                incident_id: inc.id,
                channel,
                kind,
                state: NotificationState::Pending,
                created_at_ms: self.now,
            };
            self.put(OUTBOX, &id_key(id), &n)?;
        }
        Ok(())
    }

    fn incident(&mut self, c: &IncidentCommand) -> Result<Response> {
        if let IncidentCommand::Declare { title, severity, monitor_id, by } = c {
            let monitor = match monitor_id {
                Some(id) => match self.monitor(*id)? {
                    Some(m) => Some(m),
                    None => return reject(Rejection::not_found(format!("no monitor with id {id}"))),
                },
                None => None,
            };
            if let Some(m) = &monitor {
                if let Some(open) = self.get::<u64>(OPEN_INCIDENTS, &id_key(m.id))? {
                    return reject(Rejection::conflict(
                        "monitor",
                        format!("monitor {} already has open incident {open}", m.id),
                    ));
                }
            }
            let inc = self.open_incident(monitor.as_ref(), title.clone(), *severity, by, "declared")?;
            return Ok(Response::Incident(inc));
        }
        let id = match c {
            IncidentCommand::Acknowledge { id, .. }
            | IncidentCommand::Resolve { id, .. }
            | IncidentCommand::Reopen { id, .. }
            | IncidentCommand::Note { id, .. }
            | IncidentCommand::Assign { id, .. }
            | IncidentCommand::SetSeverity { id, .. } => *id,
            IncidentCommand::Declare { .. } => unreachable!("handled above"),
        };
        let Some(mut inc) = self.get::<Incident>(INCIDENTS, &id_key(id))? else {
            return reject(Rejection::not_found(format!("no incident with id {id}")));
        };
        match c {
            IncidentCommand::Acknowledge { by, .. } => {
                if inc.state != IncidentState::Triggered {
                    return reject(Rejection::conflict("state", format!("incident {id} is {}", inc.state.as_str())));
                }
                inc.state = IncidentState::Acknowledged;
                inc.acknowledged_at_ms = Some(self.now);
                inc.record(self.event(by, "acknowledged", ""));
            }
            IncidentCommand::Resolve { by, .. } => {
                if inc.state == IncidentState::Resolved {
                    return reject(Rejection::conflict("state", format!("incident {id} is already resolved")));
                }
                let notify = match inc.monitor_id.map(|m| self.monitor(m)).transpose()?.flatten() {
                    Some(m) => m.policy.notify_on_recovery,
                    None => true,
                };
                return Ok(match self.close_incident(id, by, "resolved by hand", notify)? {
                    Some(inc) => Response::Incident(inc),
                    None => Response::Rejected(Rejection::not_found(format!("no incident with id {id}"))),
                });
            }
            IncidentCommand::Reopen { by, .. } => {
                if inc.state != IncidentState::Resolved {
                    return reject(Rejection::conflict("state", format!("incident {id} is not resolved")));
                }
                if let Some(m) = inc.monitor_id {
                    if let Some(open) = self.get::<u64>(OPEN_INCIDENTS, &id_key(m))? {
                        return reject(Rejection::conflict(
                            "monitor",
                            format!("monitor {m} already has open incident {open}"),
                        ));
                    }
                    self.put(OPEN_INCIDENTS, &id_key(m), &id)?;
                }
                inc.state = IncidentState::Triggered;
                inc.resolved_at_ms = None;
                inc.acknowledged_at_ms = None;
                inc.last_notified_at_ms = self.now;
                inc.record(self.event(by, "reopened", ""));
                self.put(INCIDENTS, &id_key(id), &inc)?;
                let monitor = inc.monitor_id.map(|m| self.monitor(m)).transpose()?.flatten();
                self.notify(&inc, monitor.as_ref().map(|m| &m.policy), NotificationKind::Open)?;
                return Ok(Response::Incident(inc));
            }
            IncidentCommand::Note { by, text, .. } => inc.record(self.event(by, "note", text.clone())),
            IncidentCommand::Assign { by, assignee, .. } => {
                inc.assignee = assignee.clone();
                let text = assignee.clone().unwrap_or_else(|| "unassigned".into());
                inc.record(self.event(by, "assigned", text));
            }
            IncidentCommand::SetSeverity { by, severity, .. } => {
                inc.severity = *severity;
                inc.record(self.event(by, "severity", severity.as_str()));
            }
            IncidentCommand::Declare { .. } => unreachable!("handled above"),
        }
        self.put(INCIDENTS, &id_key(id), &inc)?;
        Ok(Response::Incident(inc))
    }
}
