//! Notification channels: created, replaced and deleted by operators, named by
//! monitors' alert policies, resolved when a notification is written.

use super::*;

impl Apply<'_> {
    pub(super) fn channel(&self, name: &str) -> Result<Option<Channel>> {
        self.get(CHANNELS, name.as_bytes())
    }

    pub(super) fn put_channel(
        &mut self,
        name: &str,
        spec: &uptime_notify::ChannelSpec,
        default: bool,
        create: bool,
    ) -> Result<Response> {
        let old = self.channel(name)?;
        if create && old.is_some() {
            return reject(Rejection::conflict("name", format!("a channel named {name:?} already exists")));
        }
        let channel = Channel {
            name: name.to_string(),
            spec: spec.clone(),
            default,
            created_at_ms: old.as_ref().map_or(self.now, |c| c.created_at_ms),
            updated_at_ms: self.now,
        };
        self.put(CHANNELS, name.as_bytes(), &channel)?;
        Ok(Response::Channel(channel))
    }

    pub(super) fn delete_channel(&mut self, name: &str) -> Result<Response> {
        if self.channel(name)?.is_none() {
            return reject(Rejection::not_found(format!("no channel named {name:?}")));
        }
        let users: Vec<String> = self
            .scan::<Monitor>(MONITORS, &[])?
            .into_iter()
            .filter(|(_, m)| m.policy.channels.iter().any(|c| c == name))
            .map(|(_, m)| m.name)
            .collect();
        if !users.is_empty() {
            return reject(Rejection::conflict(
                "name",
                format!(
                    "channel {name:?} is used by {} monitor{}: {}; remove it from their channels first",
                    users.len(),
                    if users.len() == 1 { "" } else { "s" },
                    users.join(", ")
                ),
            ));
        }
        self.del(CHANNELS, name.as_bytes())?;
        Ok(Response::Done)
    }

    /// Refuses a policy that names a channel the state does not have.
    pub(super) fn check_channels(&self, policy: &AlertPolicy) -> Result<std::result::Result<(), Rejection>> {
        for c in &policy.channels {
            if self.channel(c)?.is_none() {
                return Ok(Err(Rejection::invalid("channels", format!("no channel named {c:?}"))));
            }
        }
        Ok(Ok(()))
    }

    /// The channels a notification under `policy` goes to: the policy's own,
    /// and the default channels unless it opts out; sorted, each once. A
    /// declared incident without a monitor goes to the default channels.
    pub(super) fn channels_for(&self, policy: Option<&AlertPolicy>) -> Result<Vec<String>> {
        let mut names: Vec<String> = policy.map(|p| p.channels.clone()).unwrap_or_default();
        if policy.is_none_or(|p| p.default_channels) {
            for (_, c) in self.scan::<Channel>(CHANNELS, &[])? {
                if c.default {
                    names.push(c.name);
                }
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}
