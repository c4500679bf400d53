//! The scheduler under tokio's paused clock: intervals within jitter, no
//! lock-step, removal, changes, concurrency caps, no self-overlap, the timeout
//! backstop, and a 100k-monitor set. Every monitor's first run is a prompt
//! one (within `first_check_within`, 5 s) off its grid; the grid follows. The executor is a fake that records what
//! runs when; no network is touched.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, Instant};
use uptime_probe::{
    CheckSpec, Error, ErrorKind, Execute, Job, MonitorId, Outcome, Report, Scheduler, SchedulerConfig, SchedulerHandle,
};

/// Records concurrency; each run takes `delay` (forever when `hang`).
#[derive(Clone, Default)]
struct Fake {
    delay: Duration,
    hang: bool,
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    running: usize,
    max_running: usize,
    per_endpoint: HashMap<(String, u16), usize>,
    max_per_endpoint: usize,
    per_target: HashMap<String, usize>,
    max_per_target: usize,
}

impl Execute for Fake {
    fn execute(
        &self,
        spec: &CheckSpec,
        _timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Outcome, Error>> + Send {
        let (state, delay, hang) = (self.state.clone(), self.delay, self.hang);
        let (endpoint, target) = (spec.endpoint(), spec.target());
        async move {
            {
                let mut s = state.lock().unwrap();
                s.running += 1;
                s.max_running = s.max_running.max(s.running);
                let e = s.per_endpoint.entry(endpoint.clone()).or_default();
                *e += 1;
                let e = *e;
                s.max_per_endpoint = s.max_per_endpoint.max(e);
                let t = s.per_target.entry(target.clone()).or_default();
                *t += 1;
                let t = *t;
                s.max_per_target = s.max_per_target.max(t);
            }
            if hang {
                std::future::pending::<()>().await;
            }
            sleep(delay).await;
            let mut s = state.lock().unwrap();
            s.running -= 1;
            *s.per_endpoint.get_mut(&endpoint).unwrap() -= 1;
            *s.per_target.get_mut(&target).unwrap() -= 1;
            Ok(Outcome::up(delay))
        }
    }
}

fn job(id: MonitorId, host: &str, interval_ms: u64) -> Job {
    Job {
        id,
        spec: CheckSpec::from_target("tcp", &format!("{host}:80")).unwrap(),
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_secs(5),
    }
}

fn config() -> SchedulerConfig {
    SchedulerConfig { seed: Some(42), ..SchedulerConfig::default() }
}

/// Starts a scheduler; reports are collected into the returned log.
struct Running {
    handle: SchedulerHandle,
    log: Arc<Mutex<Vec<Report>>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

fn start(config: SchedulerConfig, fake: Fake) -> Running {
    let (tx, mut rx) = mpsc::channel(1024);
    let (scheduler, handle) = Scheduler::new(config, fake, tx).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(scheduler.run(async move {
        let _ = stopped.await;
    }));
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            sink.lock().unwrap().push(r);
        }
    });
    Running { handle, log, stop: Some(stop), task }
}

impl Running {
    fn starts(&self, id: MonitorId) -> Vec<Instant> {
        let mut v: Vec<Instant> =
            self.log.lock().unwrap().iter().filter(|r| r.monitor_id == id).map(|r| r.started).collect();
        v.sort();
        v
    }
}

fn gaps(starts: &[Instant]) -> Vec<Duration> {
    starts.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Timers tick in whole milliseconds.
const SLOP: Duration = Duration::from_millis(2);

fn assert_gaps_within(gaps: &[Duration], interval: Duration, jitter: Duration, what: &str) {
    for g in gaps {
        assert!(
            *g + SLOP >= interval - 2 * jitter && *g <= interval + 2 * jitter + SLOP,
            "{what}: gap {g:?} outside {interval:?} ± {:?}",
            2 * jitter
        );
    }
}

#[tokio::test(start_paused = true)]
async fn t10_monitors_fire_at_their_intervals_within_jitter() {
    let r = start(config(), Fake::default());
    let t0 = Instant::now();
    for (id, ms) in [(1, 1_000), (2, 7_000), (3, 30_000), (4, 120_000)] {
        r.handle.upsert(job(id, &format!("h{id}.test"), ms)).unwrap();
    }
    sleep(Duration::from_secs(600)).await;
    for (id, ms) in [(1u64, 1_000u64), (2, 7_000), (3, 30_000), (4, 120_000)] {
        let interval = Duration::from_millis(ms);
        let jitter = (interval / 10).min(Duration::from_secs(5));
        let starts = r.starts(id);
        let first_within = interval.min(Duration::from_secs(5));
        assert!(starts[0] - t0 < first_within, "monitor {id} first ran after {:?}", starts[0] - t0);
        // The prompt first run is off the grid; from the second on, the grid.
        assert_gaps_within(&gaps(&starts[1..]), interval, jitter, &format!("monitor {id}"));
        let expected = 600_000 / ms + 1;
        assert!(
            (expected - 1..=expected + 1).contains(&(starts.len() as u64)),
            "monitor {id}: {} runs, expected about {expected}",
            starts.len()
        );
    }
    // Jitter is real: not every gap of the 1 s monitor is exactly 1 s.
    assert!(gaps(&r.starts(1)).iter().any(|g| g.abs_diff(Duration::from_secs(1)) > Duration::from_millis(10)));
    // Nothing ran late: the fake takes no time and nothing contends.
    assert!(r.log.lock().unwrap().iter().all(|rep| rep.lateness() <= SLOP));
}

#[tokio::test(start_paused = true)]
async fn t20_a_fleet_added_at_once_does_not_fire_in_lock_step() {
    let r = start(SchedulerConfig { jitter_percent: 0, ..config() }, Fake::default());
    let t0 = Instant::now();
    let n = 10_000;
    r.handle.replace_all((0..n).map(|id| job(id, &format!("h{id}.test"), 30_000)).collect()).unwrap();
    sleep(Duration::from_secs(61)).await;
    let mut starts: HashMap<MonitorId, Vec<Instant>> = HashMap::new();
    for rep in r.log.lock().unwrap().iter() {
        starts.entry(rep.monitor_id).or_default().push(rep.started);
    }
    assert_eq!(starts.len() as u64, n, "every monitor ran");
    // First runs are prompt: all within 5 s, spread over them.
    let mut first = [0u32; 5];
    // The grid's second round, 30 s to 60 s: one run per monitor, spread over
    // the interval (no jitter here, so these are the phases themselves).
    let mut grid = [0u32; 30];
    for v in starts.values_mut() {
        v.sort();
        let s = (v[0] - t0).as_secs() as usize;
        // Timers fire on whole milliseconds: one due at 4.9995 s starts at 5 s.
        assert!(v[0] - t0 <= Duration::from_secs(5) + SLOP, "a first run {:?} after start", v[0] - t0);
        first[s.min(4)] += 1;
        let on_grid: Vec<&Instant> = v
            .iter()
            .filter(|t| (**t - t0) >= Duration::from_secs(30) && (**t - t0) < Duration::from_secs(60))
            .collect();
        assert_eq!(on_grid.len(), 1, "runs {:?}", v.iter().map(|t| *t - t0).collect::<Vec<_>>());
        grid[((*on_grid[0] - t0).as_secs() - 30) as usize] += 1;
    }
    // Uniform would be 2000 a second.
    assert!(first.iter().all(|&b| (1_700..=2_300).contains(&b)), "{first:?}");
    // Uniform would be 333 a second; lock-step would put them all in one.
    assert!(grid.iter().all(|&b| (230..=440).contains(&b)), "{grid:?}");
}

#[tokio::test(start_paused = true)]
async fn t30_removal_stops_a_monitor() {
    let r = start(config(), Fake::default());
    r.handle.upsert(job(1, "a.test", 1_000)).unwrap();
    r.handle.upsert(job(2, "b.test", 1_000)).unwrap();
    sleep(Duration::from_secs(10)).await;
    r.handle.remove(1).unwrap();
    let removed_at = Instant::now();
    sleep(Duration::from_secs(10)).await;
    assert!(r.starts(1).iter().all(|s| *s <= removed_at), "monitor 1 ran after removal");
    assert!(r.starts(2).iter().filter(|s| **s > removed_at).count() >= 9, "monitor 2 keeps running");
    assert_eq!(r.handle.stats().await.unwrap().monitors, 1);
}

#[tokio::test(start_paused = true)]
async fn t40_a_changed_interval_applies_without_restart() {
    let r = start(config(), Fake::default());
    r.handle.upsert(job(1, "a.test", 10_000)).unwrap();
    sleep(Duration::from_secs(60)).await;
    let last_slow = *r.starts(1).last().unwrap();
    r.handle.upsert(job(1, "a.test", 2_000)).unwrap();
    let changed_at = Instant::now();
    sleep(Duration::from_secs(40)).await;
    // A run may start at the very instant of the change (the new interval is
    // already due from the last run), so `>=`.
    let after: Vec<Instant> = r.starts(1).into_iter().filter(|s| *s >= changed_at).collect();
    assert!((19..=21).contains(&after.len()), "{} runs in 40 s at a 2 s interval", after.len());
    let jitter = Duration::from_millis(200);
    // The first run at the new pace follows the last one by about the new interval.
    let first_gap = after[0] - last_slow;
    assert!(first_gap <= Duration::from_secs(2) + 2 * jitter + SLOP || after[0] - changed_at <= 2 * jitter + SLOP);
    assert_gaps_within(&gaps(&after), Duration::from_secs(2), jitter, "after the change");

    // Back to a slower pace.
    r.handle.upsert(job(1, "a.test", 20_000)).unwrap();
    let slowed_at = Instant::now();
    sleep(Duration::from_secs(100)).await;
    let after: Vec<Instant> = r.starts(1).into_iter().filter(|s| *s > slowed_at + Duration::from_secs(3)).collect();
    assert_gaps_within(&gaps(&after), Duration::from_secs(20), Duration::from_secs(2), "after slowing down");
}

#[tokio::test(start_paused = true)]
async fn t50_global_concurrency_is_bounded() {
    let fake = Fake { delay: Duration::from_secs(5), ..Fake::default() };
    let state = fake.state.clone();
    let r = start(SchedulerConfig { max_in_flight: NonZeroUsize::new(4).unwrap(), ..config() }, fake);
    for id in 0..50 {
        r.handle.upsert(job(id, &format!("h{id}.test"), 10_000)).unwrap();
    }
    sleep(Duration::from_secs(60)).await;
    let s = state.lock().unwrap();
    assert_eq!(s.max_running, 4);
    let runs = r.log.lock().unwrap().len();
    assert!((40..=48).contains(&runs), "{runs} runs: 4 slots × 60 s / 5 s is 48");
    // What could not start on time started late, and says so.
    assert!(r.log.lock().unwrap().iter().any(|rep| rep.lateness() > Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn t60_per_endpoint_cap_holds_and_spares_other_endpoints() {
    let fake = Fake { delay: Duration::from_secs(1), ..Fake::default() };
    let state = fake.state.clone();
    let r = start(SchedulerConfig { max_in_flight_per_endpoint: NonZeroUsize::new(3).unwrap(), ..config() }, fake);
    // Twenty monitors on one server (different paths would look the same).
    for id in 0..20 {
        let mut j = job(id, "busy.test", 2_000);
        j.spec = CheckSpec::from_target("http", &format!("http://busy.test/{id}")).unwrap();
        r.handle.upsert(j).unwrap();
    }
    r.handle.upsert(job(100, "quiet.test", 2_000)).unwrap();
    sleep(Duration::from_secs(60)).await;
    assert_eq!(state.lock().unwrap().max_per_endpoint, 3);
    let quiet = r.starts(100);
    assert!((29..=31).contains(&quiet.len()), "the other endpoint ran {} times", quiet.len());
    assert!(r.handle.stats().await.unwrap().skipped_overlap > 0, "busy monitors queued past their next slot");
}

#[tokio::test(start_paused = true)]
async fn t70_a_monitor_never_overlaps_itself() {
    let fake = Fake { delay: Duration::from_millis(3_500), ..Fake::default() };
    let state = fake.state.clone();
    let r = start(config(), fake);
    r.handle.upsert(job(1, "slow.test", 1_000)).unwrap();
    sleep(Duration::from_secs(30)).await;
    assert_eq!(state.lock().unwrap().max_per_target, 1);
    let stats = r.handle.stats().await.unwrap();
    assert!(stats.skipped_overlap >= 15, "{stats:?}");
    assert!((7..=9).contains(&r.starts(1).len()), "{} runs of 3.5 s in 30 s", r.starts(1).len());
}

#[tokio::test(start_paused = true)]
async fn t80_an_executor_that_hangs_is_cut_off_at_timeout_plus_grace() {
    let r = start(config(), Fake { hang: true, ..Fake::default() });
    let mut j = job(1, "hang.test", 60_000);
    j.timeout = Duration::from_secs(2);
    r.handle.upsert(j).unwrap();
    sleep(Duration::from_secs(65)).await;
    let log = r.log.lock().unwrap();
    let rep = log.first().expect("a report");
    let o = rep.result.as_ref().unwrap();
    assert_eq!(o.error_kind(), Some(ErrorKind::Timeout), "{o}");
    assert_eq!(o.latency, Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn t85_replace_all_keeps_unchanged_monitors_on_their_grid() {
    let r = start(SchedulerConfig { jitter_percent: 0, ..config() }, Fake::default());
    r.handle.replace_all(vec![job(1, "a.test", 5_000), job(2, "b.test", 5_000), job(3, "c.test", 5_000)]).unwrap();
    sleep(Duration::from_secs(20)).await;
    // The second run is the first on the grid (the first is the prompt one).
    let phase = |id| r.starts(id)[1];
    let before = phase(2);
    r.handle.replace_all(vec![job(2, "b.test", 5_000), job(3, "c.test", 5_000), job(4, "d.test", 5_000)]).unwrap();
    let replaced_at = Instant::now();
    sleep(Duration::from_secs(20)).await;
    assert!(r.starts(1).iter().all(|s| *s <= replaced_at));
    assert!(!r.starts(4).is_empty());
    for s in r.starts(2).into_iter().filter(|s| *s >= before) {
        assert_eq!((s - before).as_millis() % 5_000, 0, "monitor 2 left its grid");
    }
    assert_eq!(r.handle.stats().await.unwrap().monitors, 3);
}

#[tokio::test(start_paused = true)]
async fn t90_holds_100k_monitors() {
    let r = start(config(), Fake::default());
    let n = 100_000u64;
    r.handle.replace_all((0..n).map(|id| job(id, &format!("h{}.test", id % 500), 30_000)).collect()).unwrap();
    sleep(Duration::from_secs(60)).await;
    {
        let log = r.log.lock().unwrap();
        let runs = log.len() as u64;
        // Two grid runs each, and a prompt first run within 5 s, unless a
        // grid run came first and served it (a share of 2.5 s / 30 s).
        let expected = 3 * n - n * 25 / 300;
        assert!(runs.abs_diff(expected) <= n / 50, "{runs} runs of 100k monitors in two intervals");
        let late = log.iter().filter(|rep| rep.lateness() > Duration::from_millis(100)).count();
        assert!(late < log.len() / 100, "{late} runs more than 100 ms late");
    }
    assert_eq!(r.handle.stats().await.unwrap().monitors, n as usize);
}

#[tokio::test(start_paused = true)]
async fn t95_shutdown_stops_the_scheduler_and_its_handles() {
    let mut r = start(config(), Fake { delay: Duration::from_secs(10), ..Fake::default() });
    r.handle.upsert(job(1, "a.test", 1_000)).unwrap();
    sleep(Duration::from_secs(3)).await;
    r.stop.take().unwrap().send(()).unwrap();
    (&mut r.task).await.unwrap();
    assert!(matches!(r.handle.upsert(job(2, "b.test", 1_000)), Err(Error::SchedulerStopped)));
}
