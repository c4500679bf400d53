//! Notification records in the outbox, delivered by the leader's dispatcher.

use super::*;

impl Apply<'_> {
    /// Writes one outbox record per channel the policy resolves to, and lists
    /// it as due. With no channel at all, the incident's timeline says so
    /// (`inc` is stored again with that line).
    pub(super) fn notify(
        &mut self,
        inc: &mut Incident,
        policy: Option<&AlertPolicy>,
        kind: NotificationKind,
    ) -> Result<()> {
        let channels = self.channels_for(policy)?;
        // Said once per open and resolve; a reminder that reaches no one says nothing new.
        if channels.is_empty() && kind != NotificationKind::Reminder {
            let text = format!("no {} notification: no channel is configured for it", kind.as_str());
            inc.record(self.event(SYSTEM, "notification", text));
            self.put(INCIDENTS, &id_key(inc.id), &*inc)?;
            return Ok(());
        }
        for channel in channels {
            let id = self.next_id(NEXT_NOTIFICATION)?;
            let n = Notification {
                id,
                incident_id: inc.id,
                channel: Some(channel),
                kind,
                state: NotificationState::Pending,
                created_at_ms: self.now,
            };
            self.put(OUTBOX, &id_key(id), &n)?;
            self.put(OUTBOX_DUE, &id_key(id), &())?;
        }
        Ok(())
    }
}
