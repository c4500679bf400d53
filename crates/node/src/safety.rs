//! Safety nets outside the fenced path (DESIGN.md): fencing keeps an isolated
//! minority silent about targets, so a node says, on a channel of its own
//! configuration, when it has lost contact with a quorum and when contact is
//! back; and the leader pings a dead man's switch, so a cluster that is down
//! altogether is noticed from outside.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uptime_api::Cluster;

use crate::config::{DeadmanSettings, LostQuorumSettings};

/// How often contact with a quorum is judged.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Contact with a quorum as this node sees it over time, and which notices
/// are owed. Pure, so the rules are tested without a cluster.
#[derive(Debug)]
pub struct Contact {
    after: Duration,
    repeat: Duration,
    lost_since: Option<Instant>,
    /// A "lost" notice went out for the current loss.
    told: bool,
    last_told: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// Out of contact for this long.
    Lost(Duration),
    /// Back in contact after this long.
    Restored(Duration),
}

impl Contact {
    pub fn new(after: Duration, repeat: Duration) -> Contact {
        Contact { after, repeat, lost_since: None, told: false, last_told: None }
    }

    /// Folds in one observation; the notice to send now, if any.
    pub fn observe(&mut self, in_contact: bool, now: Instant) -> Option<Notice> {
        if in_contact {
            let since = self.lost_since.take()?;
            // Only a loss that was announced is announced as over.
            return std::mem::take(&mut self.told).then(|| Notice::Restored(now.saturating_duration_since(since)));
        }
        let since = *self.lost_since.get_or_insert(now);
        let out_for = now.saturating_duration_since(since);
        let may = self.last_told.is_none_or(|t| now.saturating_duration_since(t) >= self.repeat);
        if !self.told && out_for >= self.after && may {
            self.told = true;
            self.last_told = Some(now);
            return Some(Notice::Lost(out_for));
        }
        None
    }
}

pub async fn lost_quorum(cluster: Cluster, settings: LostQuorumSettings, shutdown: CancellationToken) {
    let mut contact = Contact::new(Duration::from_millis(settings.after_ms), Duration::from_millis(settings.repeat_ms));
    let node = cluster.node_id();
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let stale = cluster.staleness();
        let Some(notice) = contact.observe(stale.is_none(), Instant::now()) else { continue };
        let now_ms = cluster.clock().local_ms();
        let (kind, text, secs) = match notice {
            Notice::Lost(d) => (
                "lost_quorum",
                format!(
                    "uptime-cluster node {node} has been out of contact with a quorum for {}s: alerts about targets \
                     cannot be sent while the cluster has no leader it can reach",
                    d.as_secs()
                ),
                d.as_secs(),
            ),
            Notice::Restored(d) => (
                "quorum_restored",
                format!("uptime-cluster node {node} is in contact with a quorum again, after {}s", d.as_secs()),
                d.as_secs(),
            ),
        };
        let body = serde_json::json!({
            "version": 1,
            "kind": kind,
            "node_id": node,
            "seconds": secs,
            "state_age_s": stale.map(|s| s.age_ms / 1000),
            "text": text,
        })
        .to_string();
        let key = format!("{kind}-{node}-{now_ms}");
        match tokio::time::timeout(
            Duration::from_secs(15),
            uptime_notify::post_json(uptime_api::alerts::sender(), &settings.url, body, &key),
        )
        .await
        {
            Ok(Ok(_)) => info!(kind, "node notice sent"),
            Ok(Err(e)) => warn!(kind, error = %e, "node notice not delivered"),
            Err(_) => warn!(kind, "node notice not delivered within 15s"),
        }
    }
}

/// While this node leads and hears a quorum, pings `url` every interval.
pub async fn deadman(cluster: Cluster, settings: DeadmanSettings, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_millis(settings.interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let node = cluster.node_id();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if !cluster.is_leader() || cluster.staleness().is_some() {
            continue;
        }
        let now_ms = cluster.clock().local_ms();
        let body =
            serde_json::json!({ "version": 1, "kind": "heartbeat", "leader": node, "at_ms": now_ms }).to_string();
        let sent = tokio::time::timeout(
            Duration::from_secs(10),
            uptime_notify::post_json(uptime_api::alerts::sender(), &settings.url, body, &format!("heartbeat-{now_ms}")),
        )
        .await;
        match sent {
            Ok(Ok(_)) if failing => {
                failing = false;
                info!("dead man's switch reachable again");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) if !failing => {
                failing = true;
                warn!(error = %e, "dead man's switch ping failed");
            }
            Err(_) if !failing => {
                failing = true;
                warn!("dead man's switch ping timed out");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notice_per_loss_after_the_bound_one_on_return_and_rate_limited() {
        let s = Duration::from_secs;
        let t0 = Instant::now();
        let mut c = Contact::new(s(30), s(3600));
        assert_eq!(c.observe(true, t0), None);
        assert_eq!(c.observe(false, t0 + s(1)), None);
        assert_eq!(c.observe(false, t0 + s(30)), None, "29 s out is under the bound");
        assert_eq!(c.observe(false, t0 + s(31)), Some(Notice::Lost(s(30))));
        assert_eq!(c.observe(false, t0 + s(40)), None, "one notice per loss");
        assert_eq!(c.observe(true, t0 + s(41)), Some(Notice::Restored(s(40))));
        assert_eq!(c.observe(true, t0 + s(42)), None);
        // A second loss within the repeat bound: no notice, so no "restored" either.
        assert_eq!(c.observe(false, t0 + s(100)), None);
        assert_eq!(c.observe(false, t0 + s(200)), None);
        assert_eq!(c.observe(true, t0 + s(201)), None);
        // A short blip never reaches the bound.
        let mut c = Contact::new(s(30), s(1));
        assert_eq!(c.observe(false, t0), None);
        assert_eq!(c.observe(true, t0 + s(5)), None);
        // After the repeat bound, a new loss is told again.
        let mut c = Contact::new(s(1), s(10));
        assert_eq!(c.observe(false, t0), None);
        assert!(matches!(c.observe(false, t0 + s(2)), Some(Notice::Lost(_))));
        assert!(matches!(c.observe(true, t0 + s(3)), Some(Notice::Restored(_))));
        assert_eq!(c.observe(false, t0 + s(4)), None);
        assert_eq!(c.observe(false, t0 + s(6)), None, "within 10 s of the last notice");
        assert!(matches!(c.observe(false, t0 + s(13)), Some(Notice::Lost(_))));
    }
}
