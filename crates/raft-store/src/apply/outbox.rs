//! The dispatcher's claims and outcomes (DESIGN.md, "Alert fencing"). Apply
//! keeps the record's state honest whatever order claims and outcomes from
//! different leaders arrive in: only the current claim's outcome counts.

use super::*;

impl Apply<'_> {
    fn deliveries_of(&self, id: u64) -> Result<u32> {
        let n = self.scan::<Delivery>(DELIVERIES, &id_key(id))?.len();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn record_delivery(&mut self, id: u64, d: &Delivery) -> Result<()> {
        self.put(DELIVERIES, &pair_key(id, u64::from(d.attempt)), d)
    }

    /// Failed attempts so far: every delivery but a success or a send that
    /// never started.
    fn failed_attempts(&self, id: u64) -> Result<u32> {
        let n = self
            .scan::<Delivery>(DELIVERIES, &id_key(id))?
            .into_iter()
            .filter(|(_, d)| !matches!(d.outcome, DeliveryOutcome::Sent | DeliveryOutcome::Deferred))
            .count();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    pub(super) fn claim(&mut self, ids: &[u64]) -> Result<Response> {
        let Some(log_id) = self.log_id else {
            return reject(Rejection::invalid("claim", "a claim is only valid as a log entry"));
        };
        let (term, node_id, index) = (log_id.leader_id.term, log_id.leader_id.node_id, log_id.index);
        let mut claimed = Vec::with_capacity(ids.len());
        for &id in ids {
            let Some(mut n) = self.get::<Notification>(OUTBOX, &id_key(id))? else { continue };
            if n.state.is_final() {
                continue;
            }
            if let NotificationState::Claimed { term: t, node_id: by, index: at } = n.state {
                if at == index {
                    continue; // listed twice in this entry
                }
                // An earlier claim never reported: its leader crashed or was
                // deposed mid-send. The receiver may have it.
                let attempt = self.deliveries_of(id)?.saturating_add(1);
                let d = Delivery {
                    attempt,
                    at_ms: self.now,
                    term: t,
                    node_id: by,
                    index: at,
                    outcome: DeliveryOutcome::Interrupted,
                    status: None,
                    error: format!("leader {by} (term {t}) claimed it and recorded no outcome"),
                    took_ms: 0,
                };
                self.record_delivery(id, &d)?;
                if self.failed_attempts(id)? >= MAX_ATTEMPTS {
                    self.bury(&mut n, "no outcome recorded")?;
                    continue;
                }
            }
            n.state = NotificationState::Claimed { term, node_id, index };
            self.put(OUTBOX, &id_key(id), &n)?;
            claimed.push(id);
        }
        Ok(Response::Claimed { term, node_id, index, ids: claimed })
    }

    pub(super) fn settle(&mut self, results: &[Settlement]) -> Result<Response> {
        let (mut applied, mut stale) = (0u64, 0u64);
        for r in results {
            let Some(mut n) = self.get::<Notification>(OUTBOX, &id_key(r.id))? else {
                stale += 1;
                continue;
            };
            let NotificationState::Claimed { term, node_id, index } = n.state else {
                stale += 1;
                continue;
            };
            if index != r.claim_index {
                stale += 1;
                continue;
            }
            applied += 1;
            let attempt = self.deliveries_of(r.id)?.saturating_add(1);
            let d = Delivery {
                attempt,
                at_ms: self.now,
                term,
                node_id,
                index,
                outcome: r.outcome,
                status: r.status,
                error: r.error.clone(),
                took_ms: r.took_ms,
            };
            self.record_delivery(r.id, &d)?;
            match r.outcome {
                DeliveryOutcome::Sent => {
                    n.state = NotificationState::Sent;
                    self.put(OUTBOX, &id_key(r.id), &n)?;
                    self.del(OUTBOX_DUE, &id_key(r.id))?;
                }
                DeliveryOutcome::Undeliverable => self.bury(&mut n, &r.error)?,
                DeliveryOutcome::Failed
                | DeliveryOutcome::Abandoned
                | DeliveryOutcome::Interrupted
                | DeliveryOutcome::Deferred => {
                    let attempts = self.failed_attempts(r.id)?;
                    if attempts >= MAX_ATTEMPTS {
                        self.bury(&mut n, &r.error)?;
                    } else {
                        let wait = r.retry_after_ms.clamp(MIN_RETRY_MS, MAX_RETRY_MS);
                        n.state = NotificationState::Failed { attempts, next_at_ms: self.now.saturating_add(wait) };
                        self.put(OUTBOX, &id_key(r.id), &n)?;
                    }
                }
            }
        }
        Ok(Response::Settled { applied, stale })
    }

    /// Gives a record up, and says so on its incident's timeline.
    fn bury(&mut self, n: &mut Notification, why: &str) -> Result<()> {
        n.state = NotificationState::Dead;
        self.put(OUTBOX, &id_key(n.id), &*n)?;
        self.del(OUTBOX_DUE, &id_key(n.id))?;
        let attempts = self.deliveries_of(n.id)?;
        tracing::warn!(notification_id = n.id, incident_id = n.incident_id, channel = ?n.channel, attempts, error = why, "notification dead");
        if let Some(mut inc) = self.get::<Incident>(INCIDENTS, &id_key(n.incident_id))? {
            let channel = n.channel.as_deref().unwrap_or("(none)");
            let text = format!(
                "{} notification {} to channel {channel} given up after {attempts} attempt{}: {why}",
                n.kind.as_str(),
                n.id,
                if attempts == 1 { "" } else { "s" }
            );
            inc.record(self.event(SYSTEM, "notification", text));
            self.put(INCIDENTS, &id_key(inc.id), &inc)?;
        }
        Ok(())
    }
}
