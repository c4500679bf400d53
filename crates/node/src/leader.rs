//! What only the leader does, on its own schedule: the tick that carries time
//! into the log when no digest does (staleness, maintenance edges, reminders,
//! retention).

use tokio_util::sync::CancellationToken;
use tracing::debug;
use uptime_api::Cluster;
use uptime_raft_store::Command;

use crate::digest::DigestConfig;

/// While this node leads, proposes a tick now and then: entries carry time.
pub async fn tick(cluster: Cluster, config: DigestConfig, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(config.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if cluster.is_leader() {
            if let Err(e) = cluster.write(Command::Tick).await {
                debug!(error = %e, "tick not committed");
            }
        }
    }
}
