//! Digests and verdicts: per-node observations, history buckets, the quorum verdict and what a change of it opens or resolves.

use super::*;

impl Apply<'_> {
    pub(super) fn digests(&mut self, node_id: u64, digests: &[Digest]) -> Result<Response> {
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

    pub(super) fn result(&mut self, node_id: u64, r: &MonitorResult) -> Result<()> {
        let Some(m) = self.monitor(r.monitor_id)? else { return Ok(()) };
        if !m.enabled {
            return Ok(());
        }
        let latency_us = r.latency.sum_us.checked_div(r.latency.count).unwrap_or(0);
        let obs = Observation {
            status: r.last_status,
            run: r.run.max(1),
            failing_run: r.failing_run,
            at_ms: self.now,
            last_error: r.last_error.chars().take(500).collect(),
            latency_us,
        };
        self.put(OBSERVATIONS, &pair_key(m.id, node_id), &obs)?;
        // Time in a maintenance window is not downtime: its checks stay out of
        // the history that uptime is computed from.
        if r.checks > 0 && !self.in_maintenance(m.id)? {
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
        }
        self.evaluate(&m)
    }

    /// Recomputes a monitor's verdict and acts on a change; also opens a
    /// "no data" incident once the verdict has been UNKNOWN for the
    /// monitor's bound (a matter of time, so it is looked at on every tick).
    pub(super) fn evaluate(&mut self, m: &Monitor) -> Result<()> {
        let current: Verdict =
            self.get(VERDICTS, &id_key(m.id))?.unwrap_or(Verdict { state: MonitorState::Unknown, since_ms: self.now });
        let next = if !m.enabled {
            MonitorState::Paused
        } else {
            let reports: Vec<NodeReport> = self
                .scan::<Observation>(OBSERVATIONS, &id_key(m.id))?
                .into_iter()
                .map(|(_, o)| NodeReport { status: o.status, run: o.run, failing_run: o.failing_run, at_ms: o.at_ms })
                .collect();
            let maintenance = self.in_maintenance(m.id)?;
            quorum::evaluate(current.state, &reports, self.now, &m.verdict_policy(), maintenance)
        };
        if next == current.state {
            if next == MonitorState::Unknown {
                self.no_data(m, current.since_ms)?;
            }
            return Ok(());
        }
        let was_failing = matches!(current.state, MonitorState::Down | MonitorState::Degraded);
        self.put(VERDICTS, &id_key(m.id), &Verdict { state: next, since_ms: self.now })?;
        tracing::info!(
            monitor = %m.name,
            monitor_id = m.id,
            from = current.state.as_str(),
            to = next.as_str(),
            "monitor verdict changed"
        );
        let open = self.verdict_incident(m.id)?;
        // Data again: a "no data" incident has done its job, whatever the data says.
        if let Some(inc) = &open {
            if inc.cause == IncidentCause::NoData && next != MonitorState::Unknown {
                let why = match next {
                    MonitorState::Paused => "monitor paused".to_string(),
                    MonitorState::Maintenance => "maintenance window began".to_string(),
                    other => format!("reports resumed: {}", other.as_str()),
                };
                self.close_incident(inc.id, SYSTEM, &why, m.policy.notify_on_recovery)?;
            }
        }
        match next {
            MonitorState::Down => {
                let errors = self.down_summary(m.id)?;
                self.confirmed_failing(m, IncidentCause::Down, &errors, !was_failing)?;
            }
            MonitorState::Degraded if m.policy.alert_on_degraded => {
                let errors = self.down_summary(m.id)?;
                self.confirmed_failing(m, IncidentCause::Degraded, &errors, !was_failing)?;
            }
            MonitorState::Up => {
                if let Some(inc) = open.filter(|i| matches!(i.cause, IncidentCause::Down | IncidentCause::Degraded)) {
                    self.close_incident(inc.id, SYSTEM, "recovered", m.policy.notify_on_recovery)?;
                }
            }
            MonitorState::Degraded | MonitorState::Unknown | MonitorState::Maintenance | MonitorState::Paused => {}
        }
        Ok(())
    }

    /// The open incident the verdict owns for monitor `id`, if any.
    fn verdict_incident(&self, id: u64) -> Result<Option<Incident>> {
        let Some(incident_id) = self.get::<u64>(OPEN_INCIDENTS, &id_key(id))? else { return Ok(None) };
        Ok(self.get::<Incident>(INCIDENTS, &id_key(incident_id))?.filter(|i| i.state != IncidentState::Resolved))
    }

    /// A confirmed DOWN (or DEGRADED, where the monitor alerts on it) always
    /// leaves a visible, notifiable mark: a new incident, or, when the verdict
    /// already has one open, an entry on its timeline, escalated and notified
    /// when the failure is worse than what it was opened for, or when it is a
    /// new outage (`fresh`: the monitor was not failing) that a reopened
    /// incident would otherwise absorb in silence. An escalated or renewed
    /// incident is triggered again, so reminders and acknowledgement start over.
    fn confirmed_failing(&mut self, m: &Monitor, cause: IncidentCause, errors: &str, fresh: bool) -> Result<()> {
        let severity = match cause {
            IncidentCause::Down => Severity::Critical,
            _ => Severity::Minor,
        };
        let Some(mut inc) = self.verdict_incident(m.id)?.filter(|i| i.cause != IncidentCause::NoData) else {
            let title = match cause {
                IncidentCause::Down => format!("{} is down", m.name),
                _ => format!("{} is degraded", m.name),
            };
            self.open_incident(Some(m), title, severity, cause, SYSTEM, errors)?;
            return Ok(());
        };
        let worse = cause == IncidentCause::Down && inc.cause != IncidentCause::Down;
        inc.record(self.event(SYSTEM, cause.as_str(), errors));
        if worse {
            inc.cause = IncidentCause::Down;
            inc.title = format!("{} is down", m.name);
            if severity.rank() < inc.severity.rank() {
                inc.severity = severity;
                inc.record(self.event(SYSTEM, "severity", severity.as_str()));
            }
        }
        let notify = worse || fresh;
        if notify {
            inc.state = IncidentState::Triggered;
            inc.acknowledged_at_ms = None;
            inc.last_notified_at_ms = self.now;
        }
        self.put(INCIDENTS, &id_key(inc.id), &inc)?;
        if notify && !self.in_maintenance(m.id)? {
            self.notify(&mut inc, Some(&m.policy), NotificationKind::Open)?;
        }
        Ok(())
    }

    /// Opens a "no data" incident for `m` once its verdict has been UNKNOWN
    /// since `since_ms` for longer than its bound, unless one is open already.
    fn no_data(&mut self, m: &Monitor, since_ms: u64) -> Result<()> {
        let after = m.policy.no_data_after_ms;
        if after == 0 {
            // Turned off while one was open: the operator has said no data is fine.
            if let Some(inc) = self.verdict_incident(m.id)?.filter(|i| i.cause == IncidentCause::NoData) {
                self.close_incident(inc.id, SYSTEM, "no-data alert turned off", m.policy.notify_on_recovery)?;
            }
            return Ok(());
        }
        if !m.enabled || self.now.saturating_sub(since_ms) < after || self.in_maintenance(m.id)? {
            return Ok(());
        }
        if self.get::<u64>(OPEN_INCIDENTS, &id_key(m.id))?.is_some() {
            return Ok(());
        }
        let why = self.no_data_summary(m)?;
        let title = format!("{}: no data", m.name);
        self.open_incident(Some(m), title, m.policy.no_data_severity, IncidentCause::NoData, SYSTEM, &why)?;
        Ok(())
    }

    /// Why nobody votes: per node, the reason it could not check, or how old
    /// its last report is.
    fn no_data_summary(&self, m: &Monitor) -> Result<String> {
        let stale = m.verdict_policy().stale_after_ms;
        let mut parts: Vec<String> = Vec::new();
        for (k, o) in self.scan::<Observation>(OBSERVATIONS, &id_key(m.id))? {
            let node = read_u64(&k[8..]);
            let age = self.now.saturating_sub(o.at_ms);
            if o.status == CheckStatus::NotChecked && age <= stale {
                parts.push(format!("node {node}: could not check: {}", o.last_error));
            } else {
                parts.push(format!("node {node}: last report {}s ago", age / 1000));
            }
        }
        if parts.is_empty() {
            return Ok(format!("no node has reported a check of {} yet", m.name));
        }
        if let QuorumRule::Count(n) = m.policy.quorum {
            parts.push(format!("the quorum needs {n} reporting nodes"));
        }
        Ok(parts.join("; "))
    }

    /// "node 2: connection refused; node 3: timeout" from the nodes that see it down.
    pub(super) fn down_summary(&self, monitor_id: u64) -> Result<String> {
        let parts: Vec<String> = self
            .scan::<Observation>(OBSERVATIONS, &id_key(monitor_id))?
            .into_iter()
            .filter(|(_, o)| matches!(o.status, CheckStatus::Down | CheckStatus::Degraded))
            .map(|(k, o)| format!("node {}: {}", read_u64(&k[8..]), o.last_error))
            .collect();
        Ok(parts.join("; "))
    }

    pub(super) fn reevaluate_all(&mut self) -> Result<()> {
        for (_, m) in self.scan::<Monitor>(MONITORS, &[])? {
            self.evaluate(&m)?;
        }
        Ok(())
    }
}
