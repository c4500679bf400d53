//! What happens as state time passes: staleness on each tick, reminders, retention.

use super::*;

impl Apply<'_> {
    pub(super) fn tick(&mut self) -> Result<Response> {
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

    pub(super) fn reminders(&mut self) -> Result<()> {
        let declared = self.scan::<()>(DECLARED_OPEN, &[])?.into_iter().map(|(k, _)| read_u64(&k[8..]));
        let open: Vec<u64> =
            self.scan::<u64>(OPEN_INCIDENTS, &[])?.into_iter().map(|(_, id)| id).chain(declared).collect();
        for incident_id in open {
            let Some(mut inc) = self.get::<Incident>(INCIDENTS, &id_key(incident_id))? else { continue };
            if inc.state != IncidentState::Triggered {
                continue;
            }
            let Some(m) = inc.monitor_id.map(|id| self.monitor(id)).transpose()?.flatten() else { continue };
            let every = m.policy.renotify_interval_ms;
            // A paused monitor is silenced, as during maintenance.
            if every == 0
                || !m.enabled
                || self.now < inc.last_notified_at_ms.saturating_add(every)
                || self.in_maintenance(m.id)?
            {
                continue;
            }
            inc.last_notified_at_ms = self.now;
            self.put(INCIDENTS, &id_key(inc.id), &inc)?;
            self.notify(&mut inc, Some(&m.policy), NotificationKind::Reminder)?;
        }
        Ok(())
    }

    pub(super) fn retention(&mut self, retention: &Retention) -> Result<()> {
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
}
