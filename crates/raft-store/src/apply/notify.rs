//! Notification records in the outbox, delivered by the leader's dispatcher.

use super::*;

impl Apply<'_> {
    /// Writes one outbox record per channel of the policy (one for the default
    /// channels when it names none).
    pub(super) fn notify(
        &mut self,
        inc: &Incident,
        policy: Option<&AlertPolicy>,
        kind: NotificationKind,
    ) -> Result<()> {
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
}
