//! The node's side of the data flow (DESIGN.md, "Data flow"): the probe
//! scheduler runs every enabled monitor; results are folded into a digest per
//! window; digests wait in a durable local queue until the leader has applied
//! them; the leader also proposes a tick so time-driven transitions happen when
//! no digest arrives.
//!
//! Invariants:
//! 1. A digest's seq is unique and increasing per node, across restarts too: the
//!    next seq is persisted, and seeded from the wall clock (ms × 1000), so even a
//!    node whose data was wiped never reuses a seq the state has seen.
//! 2. A digest leaves the queue only after the leader answered that it applied
//!    it (or had already: apply drops seqs it has seen), so a leader change or a
//!    restart re-sends it and nothing is lost or applied twice.
//! 3. A backlog longer than `max_backlog` is coalesced into one digest carrying
//!    the count of windows folded into it; it is never dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uptime_api::Cluster;
use uptime_probe::{Report, Status};
use uptime_raft_store::history::LatencyStats;
use uptime_raft_store::quorum::CheckStatus;
use uptime_raft_store::{Command, MonitorResult, Response};

mod queue;

pub use queue::DigestQueue;

/// How the node folds and proposes its results.
#[derive(Clone, Debug)]
pub struct DigestConfig {
    /// Results are folded into one digest per window.
    pub window: Duration,
    /// Digests sent in one proposal at most.
    pub batch: usize,
    /// Past this many unsent digests, the oldest are coalesced into one.
    pub max_backlog: usize,
    /// How often the leader proposes a tick.
    pub tick: Duration,
    /// How often the scheduler's monitor set is checked against the state.
    pub sync: Duration,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            window: Duration::from_secs(2),
            batch: 64,
            max_backlog: 256,
            tick: Duration::from_secs(2),
            sync: Duration::from_millis(500),
        }
    }
}

/// Per-monitor results of the current window, and each monitor's run of
/// same-status results, which spans windows: a monitor checked every 30 s shows
/// up in one 2 s window out of fifteen, and its run must survive the others.
/// One small entry per monitor this node has checked since it started.
#[derive(Default)]
struct Window {
    results: HashMap<u64, MonitorResult>,
    runs: HashMap<u64, Runs>,
    /// Checks that could not run, not yet counted into `/metrics`.
    not_run: u64,
}

/// A monitor's runs on this node. A check it could not run interrupts no run
/// of the target's (down, EMFILE, down is two downs in a row).
#[derive(Default)]
struct Runs {
    /// The last status the node saw of the target, and how many in a row.
    status: Option<CheckStatus>,
    run: u32,
    /// Failing results in a row, degraded or down in any mix.
    failing: u32,
    /// Checks in a row this node could not run.
    not_checked: u32,
    /// The target failed since the node last saw it up: up results count
    /// toward a recovery.
    recovering: bool,
}

/// Results within this many of a change of class (up to failing, failing to
/// up) are sealed at once: one of them may be the one that confirms a verdict
/// (confirmations are at most 100).
const URGENT_RUN: u32 = 100;
/// An urgent result waits this long for others before its digest is sealed,
/// so a mass outage seals a few digests, not one per result.
pub const URGENT_GATHER: Duration = Duration::from_millis(20);

impl Runs {
    /// Counts `status` in; the run and failing run to report.
    fn fold(&mut self, status: CheckStatus) -> (u32, u32) {
        if status == CheckStatus::NotChecked {
            self.not_checked = self.not_checked.saturating_add(1);
            return (self.not_checked, self.failing);
        }
        self.not_checked = 0;
        if self.status == Some(status) {
            self.run = self.run.saturating_add(1);
        } else {
            (self.status, self.run) = (Some(status), 1);
        }
        self.failing = match status {
            CheckStatus::Up => 0,
            _ => self.failing.saturating_add(1),
        };
        (self.run, self.failing)
    }

    /// Whether the result just folded may move the verdict: a failing result
    /// early in its failing run, or an up result early in a recovery. Runs of a
    /// steady state (up since the node started, or down for long) are not.
    fn urgent(&mut self, status: CheckStatus) -> bool {
        match status {
            CheckStatus::NotChecked => false,
            CheckStatus::Up => {
                let urgent = self.recovering && self.run <= URGENT_RUN;
                if self.run > URGENT_RUN {
                    self.recovering = false;
                }
                urgent
            }
            CheckStatus::Degraded | CheckStatus::Down => {
                self.recovering = true;
                self.failing <= URGENT_RUN || self.run == 1
            }
        }
    }
}

impl Window {
    /// Folds one run's report. A run counts one status: a degraded result ends
    /// a run of downs (a 429 then one 503 is one down, not two failures).
    ///
    /// A check this node could not run (`Err`: no ICMP permission, no file
    /// descriptors) says nothing about the target: it is reported as
    /// `NotChecked` with the reason, which the per-node view shows and the
    /// verdict does not count as a vote; it adds no check to the history.
    ///
    /// Returns whether the result is urgent ([`Runs::urgent`]): its digest
    /// should go now rather than at the end of the window.
    fn fold(&mut self, report: Report) -> bool {
        let (status, error, latency) = match report.result {
            Ok(outcome) => {
                let status = match outcome.status {
                    Status::Up => CheckStatus::Up,
                    Status::Degraded => CheckStatus::Degraded,
                    Status::Down => CheckStatus::Down,
                };
                (status, outcome.error.map(|e| e.message).unwrap_or_default(), Some(outcome.latency))
            }
            Err(e) => {
                self.not_run += 1;
                (CheckStatus::NotChecked, format!("this node could not run the check: {e}"), None)
            }
        };
        let runs = self.runs.entry(report.monitor_id).or_default();
        if (runs.not_checked > 0) != (status == CheckStatus::NotChecked) {
            // Once per change, not once per check.
            if status == CheckStatus::NotChecked {
                warn!(monitor_id = report.monitor_id, reason = %error, "cannot run this monitor's check; it is reported as not checked and does not vote");
            } else {
                info!(monitor_id = report.monitor_id, "can run this monitor's check again");
            }
        }
        let (run, failing_run) = runs.fold(status);
        let urgent = runs.urgent(status);
        let r = self.results.entry(report.monitor_id).or_insert_with(|| MonitorResult {
            monitor_id: report.monitor_id,
            checks: 0,
            failures: 0,
            last_status: status,
            run,
            failing_run,
            last_error: String::new(),
            latency: LatencyStats::default(),
        });
        r.last_status = status;
        r.run = run;
        r.failing_run = failing_run;
        r.last_error = error;
        if let Some(latency) = latency {
            r.checks += 1;
            r.failures += u64::from(matches!(status, CheckStatus::Down | CheckStatus::Degraded));
            r.latency.record(latency.as_micros() as u64);
        }
        urgent
    }

    fn take(&mut self) -> Vec<MonitorResult> {
        let mut v: Vec<MonitorResult> = self.results.drain().map(|(_, r)| r).collect();
        v.sort_by_key(|r| r.monitor_id);
        v
    }
}

/// Folds reports into windows and seals each into the queue.
pub async fn collect(
    mut reports: mpsc::Receiver<Report>,
    queue: DigestQueue,
    config: DigestConfig,
    sealed: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut window = Window::default();
    let mut ticker = tokio::time::interval(config.window);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Set by an urgent result: the window is sealed early, at this instant.
    let mut early: Option<tokio::time::Instant> = None;
    loop {
        let seal_early = async {
            match early {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            report = reports.recv() => match report {
                Some(r) => {
                    if window.fold(r) && early.is_none() {
                        early = Some(tokio::time::Instant::now() + URGENT_GATHER);
                    }
                    if window.not_run > 0 {
                        queue.count_not_run(std::mem::take(&mut window.not_run));
                    }
                }
                None => break,
            },
            _ = seal_early => {
                early = None;
                seal(&queue, &mut window, &sealed, "early: a result may move a verdict");
            }
            _ = ticker.tick() => {
                early = None;
                seal(&queue, &mut window, &sealed, "at the end of the window");
            }
        }
    }
    // Seal what the last window holds so a graceful stop loses nothing.
    if !window.results.is_empty() {
        if let Err(e) = queue.push(window.take()) {
            warn!(error = %e, "cannot seal the last digest");
        }
    }
}

fn seal(queue: &DigestQueue, window: &mut Window, sealed: &Notify, why: &'static str) {
    if window.results.is_empty() {
        return;
    }
    let urgent = window.results.len();
    match queue.push(window.take()) {
        Ok(seq) => {
            debug!(seq, monitors = urgent, why, "digest sealed");
            sealed.notify_one();
        }
        Err(e) => warn!(error = %e, "cannot write a digest to the digest queue; results of this window are lost"),
    }
}

/// Test builds only: `UPTIMETEST_LOSE_DIGEST_ANSWERS=N` drops the leader's
/// first N answers to this node's digest proposals, as a lost reply would, so
/// tests can drive the re-send path (invariant 2) deterministically. Release
/// builds have no such switch.
#[cfg(debug_assertions)]
fn lose_answer() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LEFT: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    let left = LEFT.get_or_init(|| {
        let n = std::env::var("UPTIMETEST_LOSE_DIGEST_ANSWERS").ok().and_then(|v| v.parse().ok());
        AtomicU64::new(n.unwrap_or(0))
    });
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
}

#[cfg(not(debug_assertions))]
fn lose_answer() -> bool {
    false
}

/// Encoded digests in one proposal at most: a margin under the entry limit for
/// the command's own framing.
const PROPOSAL_BYTES: usize = uptime_raft_store::MAX_ENTRY_BYTES - (64 << 10);

/// Sends queue digests to the leader until each is confirmed (invariant 2).
pub async fn propose(
    cluster: Cluster,
    queue: DigestQueue,
    config: DigestConfig,
    sealed: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let node_id = cluster.node_id();
    let mut backoff = Duration::from_millis(100);
    loop {
        if queue.coalesce(config.max_backlog).unwrap_or(0) > 0 {
            warn!(max = config.max_backlog, "digest backlog coalesced (is the leader reachable?)");
        }
        let pending = match queue.next_batch(config.batch, PROPOSAL_BYTES) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "cannot read the digest queue");
                Vec::new()
            }
        };
        let wait = if pending.is_empty() {
            Duration::from_secs(1)
        } else {
            let high = pending.last().map(|d| d.seq).unwrap_or(0);
            let full = pending.len() == config.batch || queue.len().is_ok_and(|n| n > pending.len());
            queue.mark_sent(high);
            match cluster.write(Command::Digests { node_id, digests: pending }).await {
                Ok(Response::Digests { .. }) if lose_answer() => {
                    debug!(high, "failpoint: the leader's answer is dropped; the digests will be sent again");
                    Duration::ZERO
                }
                Ok(Response::Digests { applied, duplicates }) => {
                    debug!(applied, duplicates, high, "digests confirmed");
                    if let Err(e) = queue.ack(high) {
                        warn!(error = %e, "cannot trim the digest queue");
                    }
                    backoff = Duration::from_millis(100);
                    if full {
                        continue;
                    }
                    Duration::from_secs(1)
                }
                Ok(other) => {
                    warn!(?other, "unexpected answer to a digest proposal");
                    backoff
                }
                Err(e) => {
                    debug!(error = %e, "digest proposal failed; will retry");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    wait
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sealed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: u64, checks: u64, status: CheckStatus) -> MonitorResult {
        let mut latency = LatencyStats::default();
        latency.record(1000 * checks);
        MonitorResult {
            monitor_id: id,
            checks,
            failures: u64::from(status != CheckStatus::Up) * checks,
            last_status: status,
            run: checks as u32,
            failing_run: checks as u32,
            last_error: String::new(),
            latency,
        }
    }

    #[test]
    fn seqs_increase_across_reopen_and_acked_digests_leave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("digests.redb");
        let first = {
            let o = DigestQueue::open(&path).unwrap();
            let a = o.push(vec![result(1, 1, CheckStatus::Up)]).unwrap();
            let b = o.push(vec![result(1, 1, CheckStatus::Up)]).unwrap();
            assert!(b > a);
            o.ack(a).unwrap();
            assert_eq!(o.pending(10).unwrap().iter().map(|d| d.seq).collect::<Vec<_>>(), vec![b]);
            b
        };
        let o = DigestQueue::open(&path).unwrap();
        assert_eq!(o.len().unwrap(), 1, "an unacknowledged digest survives a restart");
        assert!(o.push(vec![]).unwrap() > first);
    }

    fn report(monitor_id: u64, status: uptime_probe::Status) -> Report {
        let now = tokio::time::Instant::now();
        let outcome = match status {
            uptime_probe::Status::Up => uptime_probe::Outcome::up(Duration::from_millis(3)),
            uptime_probe::Status::Degraded => uptime_probe::Outcome::degraded(
                uptime_probe::ErrorKind::Status,
                None,
                "429 Too Many Requests",
                Duration::from_millis(3),
            ),
            _ => uptime_probe::Outcome::down(
                uptime_probe::ErrorKind::Connect,
                None,
                "connection refused",
                Duration::from_millis(3),
            ),
        };
        Report { monitor_id, due: now, started: now, result: Ok(outcome) }
    }

    #[tokio::test]
    async fn results_that_may_move_a_verdict_are_urgent_and_steady_ones_are_not() {
        use uptime_probe::Status::{Down, Up};
        let mut w = Window::default();
        // Up since the node started: never urgent, so start-up seals nothing early.
        assert!((0..5).all(|_| !w.fold(report(1, Up))));
        // The first failure and those that follow may confirm DOWN.
        assert!(w.fold(report(1, Down)));
        assert!(w.fold(report(1, Down)));
        // Recovery: the up results that may confirm UP.
        assert!(w.fold(report(1, Up)));
        assert!(w.fold(report(1, Up)));
        // Long steady up again: no longer urgent.
        for _ in 0..URGENT_RUN {
            w.fold(report(1, Up));
        }
        assert!(!w.fold(report(1, Up)));
        // Down for long: past the confirmations' reach, no longer urgent.
        for _ in 0..=URGENT_RUN {
            w.fold(report(1, Down));
        }
        assert!(!w.fold(report(1, Down)));
    }

    #[tokio::test]
    async fn runs_span_windows_in_which_the_monitor_was_not_checked() {
        use uptime_probe::Status::{Down, Up};
        let mut w = Window::default();
        w.fold(report(1, Down));
        assert_eq!(w.take()[0].run, 1);
        // Window 2 holds another monitor only.
        w.fold(report(2, Up));
        w.take();
        w.fold(report(1, Down));
        w.fold(report(1, Down));
        let r = w.take();
        assert_eq!((r[0].monitor_id, r[0].run, r[0].checks, r[0].failures), (1, 3, 2, 2));
        // A different class starts a new run.
        w.fold(report(1, Up));
        assert_eq!(w.take()[0].run, 1);
    }

    /// Issue 10, point 9: degraded and down shared one "failing" run, so a
    /// 429 then one 503 reported a run of 2 and confirmed DOWN after a single
    /// down result. A run counts one class.
    #[tokio::test]
    async fn a_run_counts_one_class() {
        use uptime_probe::Status::{Degraded, Down, Up};
        let mut w = Window::default();
        #[rustfmt::skip]
        let steps = [
            (Degraded, 1, 1), (Down, 1, 2), (Down, 2, 3), (Degraded, 1, 4), (Degraded, 2, 5), (Up, 1, 0), (Down, 1, 1),
        ];
        for (status, run, failing_run) in steps {
            w.fold(report(1, status));
            let r = w.take();
            assert_eq!((r[0].run, r[0].failing_run), (run, failing_run), "after {status:?}");
        }
        // A check the node could not run interrupts no run of the target's.
        let now = tokio::time::Instant::now();
        let err = uptime_probe::Error::Config { field: "x", message: "out of file descriptors".into() };
        w.fold(Report { monitor_id: 1, due: now, started: now, result: Err(err) });
        w.fold(report(1, Down));
        let r = w.take();
        assert_eq!((r[0].last_status, r[0].run, r[0].failing_run), (CheckStatus::Down, 2, 2));
    }

    /// Issue 10, point 13: a result the node could not produce (no ICMP
    /// permission, no file descriptors) vanished: the monitor showed UNKNOWN
    /// forever with no reason anywhere. It is reported as "not checked", with
    /// the reason, and never counts as a check of the target.
    #[tokio::test]
    async fn a_check_the_node_could_not_run_is_reported_with_its_reason() {
        let mut w = Window::default();
        let now = tokio::time::Instant::now();
        let err = uptime_probe::Error::Config { field: "icmp", message: "raw sockets need CAP_NET_RAW".into() };
        w.fold(Report { monitor_id: 4, due: now, started: now, result: Err(err) });
        let r = w.take();
        assert_eq!(r.len(), 1, "the result vanished");
        assert_eq!(r[0].last_status, CheckStatus::NotChecked);
        assert!(r[0].last_error.contains("CAP_NET_RAW"), "{}", r[0].last_error);
        assert_eq!((r[0].checks, r[0].failures), (0, 0), "no check of the target happened");
    }

    #[test]
    fn a_backlog_is_coalesced_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let o = DigestQueue::open(&dir.path().join("d.redb")).unwrap();
        let mut seqs = Vec::new();
        for i in 0..10 {
            let status = if i < 9 { CheckStatus::Up } else { CheckStatus::Down };
            seqs.push(o.push(vec![result(7, 2, status), result(8, 1, CheckStatus::Up)]).unwrap());
        }
        assert_eq!(o.coalesce(4).unwrap(), 6);
        let left = o.pending(100).unwrap();
        assert_eq!(left.len(), 4);
        let merged = &left[0];
        assert_eq!((merged.seq, merged.coalesced), (seqs[6], 6));
        let m7 = merged.results.iter().find(|r| r.monitor_id == 7).unwrap();
        assert_eq!((m7.checks, m7.latency.count), (14, 7));
        let total: u64 = left.iter().flat_map(|d| &d.results).filter(|r| r.monitor_id == 7).map(|r| r.checks).sum();
        assert_eq!(total, 20, "no check is lost to coalescing");
        assert_eq!(left.last().unwrap().results[0].last_status, CheckStatus::Down);
        assert_eq!(o.coalesce(4).unwrap(), 0);
    }

    /// Issue 9, defect 10: coalescing folded digests that had been sent (and
    /// perhaps applied, the answer lost) together with newer ones into one
    /// digest with a newer seq, so apply took their checks a second time.
    #[test]
    fn a_digest_that_may_have_been_sent_is_never_coalesced() {
        let dir = tempfile::tempdir().unwrap();
        let o = DigestQueue::open(&dir.path().join("d.redb")).unwrap();
        let seqs: Vec<u64> = (0..10).map(|_| o.push(vec![result(7, 2, CheckStatus::Up)]).unwrap()).collect();
        // The first four went to a leader whose answer was lost.
        let sent_before = o.pending(4).unwrap();
        o.mark_sent(seqs[3]);
        assert_eq!(o.coalesce(4).unwrap(), 5);
        let left = o.pending(100).unwrap();
        assert_eq!(&left[..4], &sent_before[..], "a sent digest was folded into a newer one");
        assert_eq!((left[4].seq, left[4].coalesced), (seqs[9], 5));
        let total: u64 = left.iter().flat_map(|d| &d.results).map(|r| r.checks).sum();
        assert_eq!(total, 20, "no check is lost to coalescing");

        // After a restart, whatever is in the queue may have been sent.
        drop(o);
        let o = DigestQueue::open(&dir.path().join("d.redb")).unwrap();
        for _ in 0..6 {
            o.push(vec![result(7, 2, CheckStatus::Up)]).unwrap();
        }
        let before = o.pending(5).unwrap();
        o.coalesce(4).unwrap();
        assert_eq!(&o.pending(5).unwrap()[..], &before[..]);
    }
}
