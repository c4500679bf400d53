//! Replicated time that no single node's clock can move far.
//!
//! Apply takes time only from the stamp on each entry (`max(previous, at_ms)`),
//! and the leader stamps entries. If the stamp were the leader's own wall
//! clock, one leader a year ahead for one tick would move state time there for
//! good: retention would delete history no node can recover, and maintenance
//! windows and reminders would fire a year early.
//!
//! So every node samples the wall clock of every voter about twice a second
//! (`Peer.Clock`), and the leader stamps an entry with the lower median of the
//! voters' clocks: its own, and each peer's last sample carried forward by this
//! node's monotonic clock since it was taken (so a step of the leader's own wall
//! clock between samples moves nothing either). With 3 or 5 voters, one wrong
//! clock (2 with 5) is outvoted; with an even count the lower middle is taken,
//! so a wrong clock can hold time back but never push it forward. A leader that
//! has no fresh sample from a majority of voters refuses to stamp: its writes
//! fail with "unavailable" and are retried, nothing is proposed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use uptime_raft_store::NodeId;

/// A source of wall-clock time, in Unix milliseconds: injected so tests can
/// run a node whose clock is wrong.
pub trait WallClock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The host's clock. Debug builds add `UPTIMETEST_CLOCK_OFFSET_MS` (signed), so
/// process tests can run one node far ahead or behind; release builds have no
/// such switch.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock {
    offset_ms: i64,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        #[cfg(debug_assertions)]
        let offset_ms = std::env::var("UPTIMETEST_CLOCK_OFFSET_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        #[cfg(not(debug_assertions))]
        let offset_ms = 0;
        SystemClock { offset_ms }
    }
}

impl WallClock for SystemClock {
    fn now_ms(&self) -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        now.saturating_add_signed(self.offset_ms)
    }
}

/// A peer's clock as last sampled.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// The peer's wall clock, estimated at `at` (the middle of the round trip).
    peer_ms: u64,
    at: Instant,
}

/// Why the leader cannot stamp an entry now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("time is not confirmed: clocks of {have} of {voters} voters are known, {need} needed")]
pub struct Unconfirmed {
    pub have: usize,
    pub need: usize,
    pub voters: usize,
}

/// The cluster's time as this node sees it. Cheap to clone.
#[derive(Clone)]
pub struct ClusterClock {
    wall: Arc<dyn WallClock>,
    samples: Arc<Mutex<HashMap<NodeId, Sample>>>,
    /// A sample older than this does not count.
    fresh_for: Duration,
}

impl ClusterClock {
    pub fn new(wall: Arc<dyn WallClock>, fresh_for: Duration) -> ClusterClock {
        ClusterClock { wall, samples: Default::default(), fresh_for }
    }

    /// This node's own wall clock.
    pub fn local_ms(&self) -> u64 {
        self.wall.now_ms()
    }

    /// Records `peer`'s answer `peer_ms` to a request sent at `sent` and
    /// answered at `received` (both on this node's monotonic clock).
    pub fn record(&self, peer: NodeId, peer_ms: u64, sent: Instant, received: Instant) {
        let at = sent + received.saturating_duration_since(sent) / 2;
        self.samples.lock().expect("clock samples poisoned").insert(peer, Sample { peer_ms, at });
    }

    /// The stamp for an entry proposed now by `me` among `voters`: the lower
    /// median of the voters' clocks, or [`Unconfirmed`] without a majority.
    pub fn stamp(&self, me: NodeId, voters: &BTreeSet<NodeId>) -> Result<u64, Unconfirmed> {
        let now = Instant::now();
        let mut clocks = Vec::with_capacity(voters.len());
        if voters.contains(&me) || voters.is_empty() {
            clocks.push(self.wall.now_ms());
        }
        {
            let samples = self.samples.lock().expect("clock samples poisoned");
            for v in voters.iter().filter(|v| **v != me) {
                if let Some(s) = samples.get(v) {
                    let age = now.saturating_duration_since(s.at);
                    if age <= self.fresh_for {
                        clocks.push(s.peer_ms.saturating_add(age.as_millis() as u64));
                    }
                }
            }
        }
        let need = voters.len().max(1) / 2 + 1;
        if clocks.len() < need {
            return Err(Unconfirmed { have: clocks.len(), need, voters: voters.len() });
        }
        clocks.sort_unstable();
        Ok(clocks[(clocks.len() - 1) / 2])
    }

    /// How far this node's own clock is from the cluster's, when known.
    pub fn skew_ms(&self, me: NodeId, voters: &BTreeSet<NodeId>) -> Option<i64> {
        let cluster = self.stamp(me, voters).ok()?;
        Some(self.wall.now_ms() as i64 - cluster as i64)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    struct Fixed(AtomicU64);

    impl WallClock for Fixed {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    const T: u64 = 1_800_000_000_000;
    const YEAR: u64 = 365 * 86_400_000;

    fn clock(own: u64) -> (ClusterClock, Arc<Fixed>) {
        let wall = Arc::new(Fixed(AtomicU64::new(own)));
        (ClusterClock::new(wall.clone(), Duration::from_secs(5)), wall)
    }

    fn voters(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[tokio::test(start_paused = true)]
    async fn one_wrong_clock_is_outvoted_wherever_it_is() {
        let now = Instant::now();
        // The leader a year ahead; both followers right.
        let (c, _) = clock(T + YEAR);
        c.record(2, T, now, now);
        c.record(3, T + 40, now, now);
        assert_eq!(c.stamp(1, &voters(&[1, 2, 3])).unwrap(), T + 40);
        // A follower a year ahead.
        let (c, _) = clock(T);
        c.record(2, T + YEAR, now, now);
        c.record(3, T + 10, now, now);
        assert_eq!(c.stamp(1, &voters(&[1, 2, 3])).unwrap(), T + 10);
        // Two voters known of three: the lower one wins, so a wrong clock can
        // hold time back but never push it forward.
        let (c, _) = clock(T + YEAR);
        c.record(2, T, now, now);
        assert_eq!(c.stamp(1, &voters(&[1, 2, 3])).unwrap(), T);
        // Five voters, two wrong.
        let (c, _) = clock(T + YEAR);
        for (id, ms) in [(2, T + 2 * YEAR), (3, T), (4, T + 5), (5, T + 9)] {
            c.record(id, ms, now, now);
        }
        assert_eq!(c.stamp(1, &voters(&[1, 2, 3, 4, 5])).unwrap(), T + 9);
    }

    #[tokio::test(start_paused = true)]
    async fn samples_are_carried_forward_by_the_monotonic_clock_and_expire() {
        let (c, wall) = clock(T);
        let sent = Instant::now();
        tokio::time::advance(Duration::from_millis(20)).await;
        c.record(2, T + 10, sent, Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        // The leader's wall clock jumps a year between samples: the stamp does not.
        wall.0.store(T + YEAR, Ordering::Relaxed);
        c.record(3, T + 2_000, Instant::now(), Instant::now());
        // Peer 2's sample (T + 10 at the middle of its round trip, 2.01 s ago)
        // is carried forward to T + 2 020, the median of the three.
        assert_eq!(c.stamp(1, &voters(&[1, 2, 3])).unwrap(), T + 2_020);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            c.stamp(1, &voters(&[1, 2, 3])).unwrap_err(),
            Unconfirmed { have: 1, need: 2, voters: 3 },
            "samples older than the freshness bound do not count"
        );
        // A single-node cluster needs only itself.
        assert_eq!(c.stamp(1, &voters(&[1])).unwrap(), T + YEAR);
    }
}
