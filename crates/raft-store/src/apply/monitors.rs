//! Monitors: create, replace, pause and resume, delete.

use super::*;

impl Apply<'_> {
    pub(super) fn create_monitor(&mut self, draft: &MonitorDraft) -> Result<Response> {
        if let Err(r) = self.check_channels(&draft.policy)? {
            return reject(r);
        }
        if self.monitor_id_by_name(&draft.name)?.is_some() {
            return reject(Rejection::conflict("name", format!("a monitor named {:?} already exists", draft.name)));
        }
        let id = self.next_id(NEXT_MONITOR)?;
        let monitor = Monitor::from_draft(id, draft, self.now);
        self.put_raw(MONITOR_NAMES, monitor.name.as_bytes(), &id_key(id))?;
        self.put(MONITORS, &id_key(id), &monitor)?;
        let state = if monitor.enabled { MonitorState::Unknown } else { MonitorState::Paused };
        self.put(VERDICTS, &id_key(id), &Verdict { state, since_ms: self.now })?;
        Ok(Response::Monitor(monitor))
    }

    pub(super) fn update_monitor(&mut self, id: u64, draft: &MonitorDraft) -> Result<Response> {
        let Some(old) = self.monitor(id)? else {
            return reject(Rejection::not_found(format!("no monitor with id {id}")));
        };
        if let Err(r) = self.check_channels(&draft.policy)? {
            return reject(r);
        }
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

    pub(super) fn set_enabled(&mut self, id: u64, enabled: bool) -> Result<Response> {
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

    pub(super) fn delete_monitor(&mut self, id: u64) -> Result<Response> {
        let Some(m) = self.monitor(id)? else {
            return reject(Rejection::not_found(format!("no monitor with id {id}")));
        };
        if let Some(incident_id) = self.get::<u64>(OPEN_INCIDENTS, &id_key(id))? {
            self.close_incident(incident_id, SYSTEM, "monitor deleted", false)?;
        }
        for (k, ()) in self.scan::<()>(DECLARED_OPEN, &id_key(id))? {
            self.close_incident(read_u64(&k[8..]), SYSTEM, "monitor deleted", false)?;
        }
        self.del(MONITORS, &id_key(id))?;
        self.del(MONITOR_NAMES, m.name.as_bytes())?;
        self.del(VERDICTS, &id_key(id))?;
        self.delete_prefix(OBSERVATIONS, &id_key(id))?;
        self.delete_prefix(HISTORY, &id_key(id))?;
        Ok(Response::Deleted { id })
    }
}
