//! Maintenance windows: created and deleted by operators, consulted by verdicts and notifications.

use super::*;

impl Apply<'_> {
    pub(super) fn create_maintenance(
        &mut self,
        name: &str,
        monitors: &[u64],
        all_monitors: bool,
        schedule: &crate::model::Schedule,
    ) -> Result<Response> {
        for m in monitors {
            if self.monitor(*m)?.is_none() {
                return reject(Rejection::not_found(format!("no monitor with id {m}")));
            }
        }
        let id = self.next_id(NEXT_MAINTENANCE)?;
        let w = MaintenanceWindow {
            id,
            name: name.to_owned(),
            monitors: monitors.to_vec(),
            all_monitors,
            schedule: schedule.clone(),
        };
        self.put(MAINTENANCE, &id_key(id), &w)?;
        self.reevaluate_all()?;
        Ok(Response::Maintenance(w))
    }

    pub(super) fn delete_maintenance(&mut self, id: u64) -> Result<Response> {
        if !self.del(MAINTENANCE, &id_key(id))? {
            return reject(Rejection::not_found(format!("no maintenance window with id {id}")));
        }
        self.reevaluate_all()?;
        Ok(Response::Deleted { id })
    }

    pub(super) fn in_maintenance(&self, monitor_id: u64) -> Result<bool> {
        if self.windows.borrow().is_none() {
            let all = self.scan::<MaintenanceWindow>(MAINTENANCE, &[])?.into_iter().map(|(_, w)| w).collect();
            *self.windows.borrow_mut() = Some(all);
        }
        let windows = self.windows.borrow();
        for w in windows.iter().flatten() {
            if (w.all_monitors || w.monitors.contains(&monitor_id)) && w.schedule.contains(self.now) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
