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

    /// Recomputes a monitor's verdict and acts on a change.
    pub(super) fn evaluate(&mut self, m: &Monitor) -> Result<()> {
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
    pub(super) fn down_summary(&self, monitor_id: u64) -> Result<String> {
        let parts: Vec<String> = self
            .scan::<Observation>(OBSERVATIONS, &id_key(monitor_id))?
            .into_iter()
            .filter(|(_, o)| o.status == CheckStatus::Down)
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
