//! Keeps the probe scheduler's set of monitors equal to the applied state's.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uptime_api::Cluster;
use uptime_probe::{Job, SchedulerHandle};

use crate::digest::DigestConfig;

/// Keeps the scheduler's monitor set equal to the enabled monitors in the state.
pub async fn sync_monitors(
    cluster: Cluster,
    scheduler: SchedulerHandle,
    config: DigestConfig,
    shutdown: CancellationToken,
) {
    let mut last: Option<Vec<Job>> = None;
    let mut ticker = tokio::time::interval(config.sync);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let monitors = match cluster.reader().list_monitors() {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "cannot read monitors");
                continue;
            }
        };
        let jobs: Vec<Job> = monitors
            .into_iter()
            .filter(|m| m.enabled)
            .map(|m| Job {
                id: m.id,
                spec: m.check,
                interval: Duration::from_millis(m.interval_ms),
                timeout: Duration::from_millis(m.timeout_ms),
            })
            .collect();
        if last.as_ref() != Some(&jobs) {
            debug!(monitors = jobs.len(), "scheduling the current monitor set");
            if scheduler.replace_all(jobs.clone()).is_err() {
                return;
            }
            last = Some(jobs);
        }
    }
}
