//! Issue 10, points 11, 12 and 18: the scheduler must not turn a target into
//! "no data" by its own bookkeeping.
//!
//! - 11: the per-endpoint cap left monitors on a hanging host without any
//!   report (queued runs were skipped at their next slot, for ever), and every
//!   DNS check through the node's resolver shared one cap of 8.
//! - 12: with a check that takes its whole interval, a slot that came due
//!   while the previous run was finishing was skipped silently, so only half
//!   the slots produced a result.
//! - 18: a new monitor waited up to a whole interval for its first check, each
//!   edit before it drew a new phase, and a monitor removed and re-added while
//!   a run was in flight could run twice at once.
//!
//! All under tokio's paused clock with a fake executor that honours the
//! timeout it is given, as the prober does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};
use uptime_probe::{
    CheckSpec, DnsSpec, Error, ErrorKind, Execute, Job, MonitorId, Outcome, Report, Scheduler, SchedulerConfig,
    SchedulerHandle,
};

/// A target that hangs: every check against a host in `hanging` lasts its
/// whole timeout and reports a timeout; others take `delay` and are up, or
/// time out if `delay` is longer than the timeout they were given.
#[derive(Clone, Default)]
struct Fake {
    hanging: Vec<&'static str>,
    delay: Duration,
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    running: usize,
    max_running: usize,
    per_target: HashMap<String, usize>,
    max_per_target: usize,
}

impl Execute for Fake {
    fn execute(
        &self,
        spec: &CheckSpec,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Outcome, Error>> + Send {
        let state = self.state.clone();
        let target = spec.target();
        let hangs = self.hanging.iter().any(|h| target.contains(h));
        let delay = self.delay;
        async move {
            {
                let mut s = state.lock().unwrap();
                s.running += 1;
                s.max_running = s.max_running.max(s.running);
                let t = s.per_target.entry(target.clone()).or_default();
                *t += 1;
                let t = *t;
                s.max_per_target = s.max_per_target.max(t);
            }
            let outcome = if hangs || delay > timeout {
                sleep(timeout).await;
                Outcome::down(ErrorKind::Timeout, None, format!("no answer within {timeout:?}"), timeout)
            } else {
                sleep(delay).await;
                Outcome::up(delay)
            };
            let mut s = state.lock().unwrap();
            s.running -= 1;
            *s.per_target.get_mut(&target).unwrap() -= 1;
            Ok(outcome)
        }
    }
}

fn tcp_job(id: MonitorId, target: &str, interval: Duration, timeout: Duration) -> Job {
    Job { id, spec: CheckSpec::from_target("tcp", target).unwrap(), interval, timeout }
}

fn config() -> SchedulerConfig {
    SchedulerConfig { seed: Some(7), ..SchedulerConfig::default() }
}

/// A report as the test saw it arrive.
struct Seen {
    at: Instant,
    report: Report,
}

struct Running {
    handle: SchedulerHandle,
    log: Arc<Mutex<Vec<Seen>>>,
}

fn start(config: SchedulerConfig, fake: Fake) -> Running {
    let (tx, mut rx) = mpsc::channel(1024);
    let (scheduler, handle) = Scheduler::new(config, fake, tx).unwrap();
    tokio::spawn(scheduler.run(std::future::pending()));
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    tokio::spawn(async move {
        while let Some(report) = rx.recv().await {
            sink.lock().unwrap().push(Seen { at: Instant::now(), report });
        }
    });
    Running { handle, log }
}

impl Running {
    /// When each report for `id` arrived, in order.
    fn arrivals(&self, id: MonitorId) -> Vec<Instant> {
        self.log.lock().unwrap().iter().filter(|s| s.report.monitor_id == id).map(|s| s.at).collect()
    }

    fn starts(&self, id: MonitorId) -> Vec<Instant> {
        let mut v: Vec<Instant> =
            self.log.lock().unwrap().iter().filter(|s| s.report.monitor_id == id).map(|s| s.report.started).collect();
        v.sort();
        v
    }
}

/// Longest time without a report for `id` between `from` and `to`.
fn longest_silence(arrivals: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut points = vec![from];
    points.extend(arrivals.iter().copied().filter(|a| *a >= from && *a <= to));
    points.push(to);
    points.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

// === point 11 ===

#[tokio::test(start_paused = true)]
async fn t90_issue10_11_every_monitor_on_a_hanging_endpoint_keeps_reporting() {
    let interval = Duration::from_secs(10);
    let timeout = Duration::from_secs(5);
    let fake = Fake { hanging: vec!["hang.test"], ..Fake::default() };
    let r = start(config(), fake);
    let t0 = Instant::now();
    // Fifty monitors on one hanging host (the default cap is 8), and one elsewhere.
    for id in 0..50 {
        r.handle.upsert(tcp_job(id, "hang.test:80", interval, timeout)).unwrap();
    }
    r.handle.upsert(tcp_job(100, "fine.test:80", interval, timeout)).unwrap();
    sleep(Duration::from_secs(300)).await;
    let end = Instant::now();

    // None goes stale: a report at least every two intervals plus the
    // timeout, from the first one on (staleness is three intervals).
    let bound = 2 * interval + timeout;
    for id in (0..50).chain([100]) {
        let arrivals = r.arrivals(id);
        let silence = longest_silence(&arrivals, t0, end);
        assert!(silence <= bound, "monitor {id}: {silence:?} without a report ({} reports)", arrivals.len());
    }
    // And what they say is the truth: the target timed out, and the ones that
    // never started name the saturated endpoint.
    {
        let log = r.log.lock().unwrap();
        let mut from_queue = 0;
        for s in log.iter().filter(|s| s.report.monitor_id < 50) {
            let o = s.report.result.as_ref().unwrap_or_else(|e| panic!("monitor {}: {e}", s.report.monitor_id));
            assert_eq!(o.error_kind(), Some(ErrorKind::Timeout), "{o}");
            let message = &o.error.as_ref().unwrap().message;
            if message.contains("in flight") {
                assert!(message.contains("hang.test:80") && message.contains('8'), "{message}");
                from_queue += 1;
            }
        }
        assert!(from_queue > 0, "some runs must have waited for the cap");
    }
    let stats = r.handle.stats().await.unwrap();
    assert!(stats.queue_timeouts > 0 && stats.queue_busy == 0, "{stats:?}");
}

/// The other side of point 11: an endpoint that answers, only too slowly for
/// the cap, must not become a false DOWN either. Runs that the cap held past
/// their timeout say "could not check" (no vote), naming the cap.
#[tokio::test(start_paused = true)]
async fn t91_issue10_11_a_slow_but_answering_endpoint_is_not_reported_down() {
    let interval = Duration::from_secs(10);
    let fake = Fake { delay: Duration::from_secs(4), ..Fake::default() };
    let r = start(
        SchedulerConfig { max_in_flight_per_endpoint: std::num::NonZeroUsize::new(2).unwrap(), ..config() },
        fake,
    );
    let t0 = Instant::now();
    for id in 0..20 {
        r.handle.upsert(tcp_job(id, "slow.test:80", interval, Duration::from_secs(5))).unwrap();
    }
    sleep(Duration::from_secs(200)).await;
    let end = Instant::now();
    for id in 0..20 {
        let silence = longest_silence(&r.arrivals(id), t0, end);
        assert!(silence <= 2 * interval + Duration::from_secs(5), "monitor {id}: {silence:?} without a report");
    }
    let log = r.log.lock().unwrap();
    let mut busy = 0;
    for s in log.iter() {
        match &s.report.result {
            Ok(o) => assert_eq!(o.status, uptime_probe::Status::Up, "{o}"),
            Err(Error::EndpointBusy { endpoint, in_flight, .. }) => {
                assert_eq!((endpoint.as_str(), *in_flight), ("slow.test:80", 2));
                busy += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(busy > 0, "the cap must have held some runs past their timeout");
}

/// DNS checks through the node's resolver are not all one endpoint: each name
/// is asked separately, so a slow name does not hold up the others.
#[tokio::test(start_paused = true)]
async fn t92_issue10_11_dns_checks_through_one_resolver_do_not_share_one_cap() {
    let fake = Fake { delay: Duration::from_secs(3), ..Fake::default() };
    let state = fake.state.clone();
    let r = start(SchedulerConfig { jitter_percent: 0, ..config() }, fake);
    for id in 0..40 {
        let spec = CheckSpec::Dns(DnsSpec { name: format!("n{id}.example.test"), ..DnsSpec::default() });
        spec.validate().unwrap();
        r.handle.upsert(Job { id, spec, interval: Duration::from_secs(5), timeout: Duration::from_secs(4) }).unwrap();
    }
    sleep(Duration::from_secs(60)).await;
    let max = state.lock().unwrap().max_running;
    assert!(max > 8, "at most {max} DNS checks ran at once");
    for id in 0..40 {
        let log = r.log.lock().unwrap();
        let ok = log.iter().filter(|s| s.report.monitor_id == id && s.report.result.is_ok()).count();
        assert!(ok >= 10, "monitor {id}: {ok} results in 60 s at a 5 s interval");
    }
}

// === point 12 ===

#[tokio::test(start_paused = true)]
async fn t93_issue10_12_a_check_that_takes_its_interval_reports_every_slot() {
    let interval = Duration::from_secs(10);
    let fake = Fake { hanging: vec!["hang.test"], ..Fake::default() };
    let r = start(config(), fake);
    r.handle.upsert(tcp_job(1, "hang.test:80", interval, interval)).unwrap();
    sleep(Duration::from_secs(600)).await;
    let reports = r.arrivals(1).len();
    // 60 slots; the first may start up to an interval in, the last may still run.
    assert!(reports >= 58, "{reports} results for 60 slots");
    {
        let log = r.log.lock().unwrap();
        // A run that had to wait for the previous one says so in its lateness,
        // which stays within the jitter (no drift).
        assert!(log.iter().all(|s| s.report.lateness() <= Duration::from_secs(3)), "a run more than 3 s late");
    }
    let stats = r.handle.stats().await.unwrap();
    assert!(stats.ran_late > 0 && stats.skipped_overlap == 0, "{stats:?}");
}

// === point 18 ===

#[tokio::test(start_paused = true)]
async fn t94_issue10_18_a_new_monitor_is_checked_within_seconds() {
    let r = start(config(), Fake::default());
    let t0 = Instant::now();
    for id in 0..20 {
        r.handle
            .upsert(tcp_job(id, &format!("h{id}.test:80"), Duration::from_secs(3_600), Duration::from_secs(10)))
            .unwrap();
    }
    sleep(Duration::from_secs(10)).await;
    for id in 0..20 {
        let starts = r.starts(id);
        let first = starts.first().map(|s| *s - t0);
        assert!(first.is_some_and(|f| f <= Duration::from_secs(5)), "monitor {id} first ran after {first:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn t95_issue10_18_edits_check_at_once_and_keep_the_phase() {
    let hour = Duration::from_secs(3_600);
    let r = start(SchedulerConfig { jitter_percent: 0, ..config() }, Fake::default());
    let t0 = Instant::now();
    let mut edits = Vec::new();
    r.handle.upsert(tcp_job(1, "a.test:80", hour, Duration::from_secs(10))).unwrap();
    // Edited every 5 minutes for 100 minutes (timeout and target, never the interval).
    for k in 1..=20u64 {
        sleep(Duration::from_secs(300)).await;
        edits.push(Instant::now());
        let target = if k % 2 == 0 { "a.test:80" } else { "b.test:80" };
        r.handle.upsert(tcp_job(1, target, hour, Duration::from_secs(10 + k))).unwrap();
    }
    sleep(3 * hour).await;
    let starts = r.starts(1);
    assert!(starts[0] - t0 <= Duration::from_secs(5), "first check after {:?}", starts[0] - t0);
    for e in &edits {
        assert!(
            starts.iter().any(|s| *s >= *e && *s - *e <= Duration::from_secs(5)),
            "no check within 5 s of the edit at {:?}",
            *e - t0
        );
    }
    // The runs that are not answers to an edit stay on one phase of the hour.
    let prompt = |s: &Instant| {
        *s - t0 <= Duration::from_secs(5) || edits.iter().any(|e| *s >= *e && *s - *e <= Duration::from_secs(5))
    };
    let grid: Vec<u128> =
        starts.iter().filter(|s| !prompt(s)).map(|s| (*s - t0).as_millis() % hour.as_millis()).collect();
    assert!(grid.len() >= 3, "{} runs on the grid in 4 h 40 min", grid.len());
    assert!(grid.iter().all(|p| p.abs_diff(grid[0]) <= 2), "phases {grid:?}");
}

#[tokio::test(start_paused = true)]
async fn t96_issue10_18_pause_and_resume_while_running_never_overlaps() {
    let fake = Fake { delay: Duration::from_secs(8), ..Fake::default() };
    let state = fake.state.clone();
    let r = start(config(), fake);
    let job = tcp_job(1, "slow.test:80", Duration::from_secs(2), Duration::from_secs(10));
    r.handle.upsert(job.clone()).unwrap();
    // Wait until a run is in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.lock().unwrap().running == 0 {
        assert!(Instant::now() < deadline, "no run started");
        sleep(Duration::from_millis(10)).await;
    }
    let paused_at = Instant::now();
    for _ in 0..3 {
        r.handle.remove(1).unwrap();
        r.handle.upsert(job.clone()).unwrap();
        sleep(Duration::from_millis(500)).await;
    }
    sleep(Duration::from_secs(40)).await;
    assert_eq!(state.lock().unwrap().max_per_target, 1, "the monitor ran twice at once");
    // The resumed job runs right after the old run ends, then back to back.
    let after = r.starts(1).into_iter().filter(|s| *s > paused_at).count();
    assert!(after >= 4, "{after} runs of 8 s in 40 s after the resume");
}

/// The queue's bookkeeping under changes: a monitor moved to another
/// endpoint while queued runs there at once instead of waiting for the old
/// cap, and one removed while queued leaves the queue.
#[tokio::test(start_paused = true)]
async fn t97_issue10_11_queued_runs_follow_moves_and_removal() {
    let fake = Fake { hanging: vec!["hang.test"], ..Fake::default() };
    let one = std::num::NonZeroUsize::new(1).unwrap();
    let r = start(SchedulerConfig { max_in_flight_per_endpoint: one, ..config() }, fake);
    let (interval, timeout) = (Duration::from_secs(60), Duration::from_secs(30));
    for id in 0..3 {
        r.handle.upsert(tcp_job(id, "hang.test:80", interval, timeout)).unwrap();
    }
    sleep(Duration::from_secs(6)).await;
    let stats = r.handle.stats().await.unwrap();
    assert_eq!((stats.in_flight, stats.queued), (1, 2), "{stats:?}");
    let moved_at = Instant::now();
    for id in 0..3 {
        r.handle.upsert(tcp_job(id, "fine.test:80", interval, timeout)).unwrap();
    }
    sleep(Duration::from_secs(6)).await;
    let ran: Vec<MonitorId> = (0..3).filter(|id| r.starts(*id).iter().any(|s| *s >= moved_at)).collect();
    assert_eq!(ran.len(), 2, "the two that waited ran on their new endpoint: {ran:?}");
    // The third is still in its hanging run, which holds hang.test's one slot.
    r.handle.upsert(tcp_job(10, "hang.test:80", interval, timeout)).unwrap();
    r.handle.upsert(tcp_job(11, "hang.test:80", interval, timeout)).unwrap();
    sleep(Duration::from_secs(6)).await;
    assert_eq!(r.handle.stats().await.unwrap().queued, 2);
    r.handle.remove(10).unwrap();
    assert_eq!(r.handle.stats().await.unwrap().queued, 1);
    sleep(Duration::from_secs(60)).await;
    assert!(r.arrivals(10).is_empty(), "the removed monitor reported");
    assert!(!r.arrivals(11).is_empty(), "the one left queued reported");
}
