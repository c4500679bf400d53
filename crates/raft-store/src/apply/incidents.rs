//! Incidents: opened and resolved by verdicts, and every operator action on them.

use super::*;

impl Apply<'_> {
    pub(super) fn event(&self, by: &str, kind: &str, text: impl Into<String>) -> TimelineEvent {
        TimelineEvent { at_ms: self.now, by: by.to_string(), kind: kind.to_string(), text: text.into() }
    }

    pub(super) fn open_incident(
        &mut self,
        monitor: Option<&Monitor>,
        title: String,
        severity: Severity,
        cause: IncidentCause,
        by: &str,
        text: &str,
    ) -> Result<Incident> {
        let id = self.next_id(NEXT_INCIDENT)?;
        let mut inc = Incident {
            id,
            monitor_id: monitor.map(|m| m.id),
            cause,
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
        tracing::info!(incident_id = id, monitor_id = ?inc.monitor_id, cause = cause.as_str(), title = %inc.title, "incident opened");
        match monitor {
            Some(m) if cause == IncidentCause::Declared => self.put(DECLARED_OPEN, &pair_key(m.id, id), &())?,
            Some(m) => self.put(OPEN_INCIDENTS, &id_key(m.id), &id)?,
            None => {}
        }
        let silenced = match monitor {
            Some(m) => self.in_maintenance(m.id)?,
            None => false,
        };
        if !silenced {
            self.notify(&mut inc, monitor.map(|m| &m.policy), NotificationKind::Open)?;
        }
        Ok(inc)
    }

    /// Resolves incident `id`. An open-incident entry that names a missing
    /// incident is an inconsistency in the state: it is dropped, the same way on
    /// every node, rather than stopping apply (an `Err` here would stop every
    /// node at this entry at every replay).
    pub(super) fn close_incident(&mut self, id: u64, by: &str, text: &str, notify: bool) -> Result<Option<Incident>> {
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
        tracing::info!(incident_id = id, monitor_id = ?inc.monitor_id, by, reason = text, "incident resolved");
        let monitor = match inc.monitor_id {
            Some(m) => {
                if self.get::<u64>(OPEN_INCIDENTS, &id_key(m))? == Some(id) {
                    self.del(OPEN_INCIDENTS, &id_key(m))?;
                }
                self.del(DECLARED_OPEN, &pair_key(m, id))?;
                self.monitor(m)?
            }
            None => None,
        };
        let silenced = match &monitor {
            Some(m) => self.in_maintenance(m.id)?,
            None => false,
        };
        if notify && !silenced {
            self.notify(&mut inc, monitor.as_ref().map(|m| &m.policy), NotificationKind::Resolve)?;
        }
        Ok(Some(inc))
    }

    pub(super) fn incident(&mut self, c: &IncidentCommand) -> Result<Response> {
        if let IncidentCommand::Declare { title, severity, monitor_id, by } = c {
            let monitor = match monitor_id {
                Some(id) => match self.monitor(*id)? {
                    Some(m) => Some(m),
                    None => return reject(Rejection::not_found(format!("no monitor with id {id}"))),
                },
                None => None,
            };
            let inc = self.open_incident(
                monitor.as_ref(),
                title.clone(),
                *severity,
                IncidentCause::Declared,
                by,
                "declared",
            )?;
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
                let monitor = inc.monitor_id.map(|m| self.monitor(m)).transpose()?.flatten();
                if let Some(m) = &monitor {
                    if let Some(why) = self.still_failing(&inc, m)? {
                        return reject(Rejection::conflict("state", why));
                    }
                }
                let notify = monitor.as_ref().is_none_or(|m| m.policy.notify_on_recovery);
                return Ok(match self.close_incident(id, by, "resolved by hand", notify)? {
                    Some(inc) => Response::Incident(inc),
                    None => Response::Rejected(Rejection::not_found(format!("no incident with id {id}"))),
                });
            }
            IncidentCommand::Reopen { by, .. } => {
                if inc.state != IncidentState::Resolved {
                    return reject(Rejection::conflict("state", format!("incident {id} is not resolved")));
                }
                if let Some(m) = inc.monitor_id.filter(|_| inc.cause == IncidentCause::Declared) {
                    self.put(DECLARED_OPEN, &pair_key(m, id), &())?;
                }
                if let Some(m) = inc.monitor_id.filter(|_| inc.cause != IncidentCause::Declared) {
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
                self.notify(&mut inc, monitor.as_ref().map(|m| &m.policy), NotificationKind::Open)?;
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

    /// Why the verdict's incident `inc` cannot be resolved by hand yet: its
    /// monitor is still in the state that opened it. Resolving it would leave
    /// an outage with no incident and no reminder until it flapped; the verdict
    /// resolves it on recovery. `None` when it may be resolved.
    fn still_failing(&self, inc: &Incident, m: &Monitor) -> Result<Option<String>> {
        let state = self.get::<Verdict>(VERDICTS, &id_key(m.id))?.map(|v| v.state);
        let hint = "it resolves itself when the monitor recovers; to silence it, pause the monitor or add a maintenance window";
        Ok(match (inc.cause, state) {
            (IncidentCause::Down, Some(MonitorState::Down)) => {
                Some(format!("monitor {} is still down; {hint}", m.name))
            }
            (IncidentCause::Degraded, Some(MonitorState::Degraded)) => {
                Some(format!("monitor {} is still degraded; {hint}", m.name))
            }
            (IncidentCause::NoData, Some(MonitorState::Unknown)) if m.policy.no_data_after_ms != 0 => {
                Some(format!("still no data for monitor {}; {hint}, or turn its no-data alert off", m.name))
            }
            _ => None,
        })
    }
}
