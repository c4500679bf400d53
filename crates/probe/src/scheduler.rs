//! Runs a changing set of monitors at their intervals.
//!
//! One task owns everything: a map of monitors and a binary heap of deadlines
//! (no task or timer per monitor, so 100k monitors cost a heap entry and a map
//! entry each). Each due run is spawned into a `JoinSet` and sends its
//! [`Report`] on the outcome channel itself, so a slow consumer slows the
//! checks (backpressure) rather than growing a queue.
//!
//! Invariants:
//! 1. At most `max_in_flight` checks run at once; due runs wait in the heap
//!    (their lateness shows in [`Report::started`] − [`Report::due`]).
//! 2. At most `max_in_flight_per_endpoint` checks run against one
//!    `(host, port)`; further due runs for it queue behind them in order.
//! 3. A monitor never overlaps itself: a run that comes due while the previous
//!    one is still running or queued is skipped and counted.
//! 4. Runs stay on the monitor's grid (`phase + k·interval`, plus jitter), so
//!    lateness does not accumulate into drift; slots missed while the node was
//!    overloaded are skipped, not replayed in a burst.
//! 5. A heap entry is live only while its generation matches the monitor's;
//!    changing or removing a monitor bumps or drops it, so stale entries are
//!    discarded when they surface instead of being searched for.

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::{CheckSpec, Error, ErrorKind, Outcome, Phase, Prober};

/// Monitors are named by the id the replicated state gives them.
pub type MonitorId = u64;

/// One monitor as the scheduler runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: MonitorId,
    pub spec: CheckSpec,
    pub interval: Duration,
    pub timeout: Duration,
}

/// What one run produced, sent on the outcome channel.
#[derive(Debug)]
pub struct Report {
    pub monitor_id: MonitorId,
    /// When the run was due: its slot on the monitor's grid plus jitter.
    pub due: Instant,
    /// When it started; `started - due` is the schedule lateness.
    pub started: Instant,
    /// `Err` when this node could not run the check (see [`Error`]): it says
    /// nothing about the target and must not count as a vote.
    pub result: Result<Outcome, Error>,
}

impl Report {
    pub fn lateness(&self) -> Duration {
        self.started.saturating_duration_since(self.due)
    }
}

/// Runs one check; [`Prober`] is the real one, tests bring their own.
pub trait Execute: Send + Sync + 'static {
    fn execute(&self, spec: &CheckSpec, timeout: Duration) -> impl Future<Output = Result<Outcome, Error>> + Send;
}

impl Execute for Prober {
    fn execute(&self, spec: &CheckSpec, timeout: Duration) -> impl Future<Output = Result<Outcome, Error>> + Send {
        self.check(spec, timeout)
    }
}

/// How the scheduler spreads and bounds the work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Checks running at once on this node, all monitors together.
    pub max_in_flight: NonZeroUsize,
    /// Checks running at once against one `(host, port)`, so many monitors on
    /// one server neither hammer it nor take every slot when it hangs.
    pub max_in_flight_per_endpoint: NonZeroUsize,
    /// Each run lands within ± this share of the interval around its slot (0–50).
    pub jitter_percent: u8,
    /// Upper bound on that jitter, so long intervals do not wander by minutes.
    pub max_jitter: Duration,
    /// Added to a check's timeout before the scheduler gives up on an executor
    /// that ignores its own (the prober does not; this is the backstop).
    pub timeout_grace: Duration,
    /// Seed for phases and jitter; `None` seeds from the clock. Tests fix it.
    pub seed: Option<u64>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_in_flight: NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN),
            max_in_flight_per_endpoint: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
            jitter_percent: 10,
            max_jitter: Duration::from_secs(5),
            timeout_grace: Duration::from_secs(1),
            seed: None,
        }
    }
}

impl SchedulerConfig {
    pub fn validate(self) -> Result<SchedulerConfig, Error> {
        if self.jitter_percent > 50 {
            return Err(Error::Config { field: "jitter_percent", message: "must be 0 to 50".into() });
        }
        Ok(self)
    }
}

/// Counters, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub monitors: usize,
    pub in_flight: usize,
    /// Runs waiting for an endpoint's in-flight cap.
    pub queued: usize,
    pub started: u64,
    /// Runs skipped because the previous run of the monitor had not finished.
    pub skipped_overlap: u64,
    /// Grid slots skipped because the scheduler was more than an interval behind.
    pub skipped_behind: u64,
}

/// Shortest interval the scheduler accepts; shorter ones are raised to it, so
/// a zero can never spin the loop.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest interval (and timeout) it accepts; longer ones are lowered to it,
/// which keeps every deadline computation far from overflow.
pub const MAX_INTERVAL: Duration = Duration::from_secs(7 * 86_400);

enum Command {
    Upsert(Box<Job>),
    Remove(MonitorId),
    ReplaceAll(Vec<Job>),
    Stats(oneshot::Sender<Stats>),
}

/// Changes the running set. Cheap to clone; every call takes effect at the
/// scheduler's next turn, without a restart.
#[derive(Clone, Debug)]
pub struct SchedulerHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl SchedulerHandle {
    /// Adds a monitor, or changes one with the same id. A changed interval
    /// applies from the last run (or, before any run, from a fresh random phase).
    pub fn upsert(&self, job: Job) -> Result<(), Error> {
        self.send(Command::Upsert(Box::new(job)))
    }

    /// Stops scheduling a monitor. A run already under way finishes and reports.
    pub fn remove(&self, id: MonitorId) -> Result<(), Error> {
        self.send(Command::Remove(id))
    }

    /// Makes `jobs` the whole set: unchanged monitors keep their phase, the rest
    /// are added, changed or removed. For resynchronising from the replicated state.
    pub fn replace_all(&self, jobs: Vec<Job>) -> Result<(), Error> {
        self.send(Command::ReplaceAll(jobs))
    }

    pub async fn stats(&self) -> Result<Stats, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Stats(tx))?;
        rx.await.map_err(|_| Error::SchedulerStopped)
    }

    fn send(&self, c: Command) -> Result<(), Error> {
        self.tx.send(c).map_err(|_| Error::SchedulerStopped)
    }
}

/// The scheduler; see the module docs. Build with [`Scheduler::new`], drive
/// with [`Scheduler::run`].
pub struct Scheduler<E> {
    config: SchedulerConfig,
    executor: Arc<E>,
    outcomes: mpsc::Sender<Report>,
    commands: mpsc::UnboundedReceiver<Command>,
    slots: HashMap<MonitorId, Slot>,
    /// Deadlines, earliest first; see invariant 5.
    heap: BinaryHeap<Reverse<(Instant, MonitorId, u32)>>,
    endpoints: HashMap<u64, Endpoint>,
    running: JoinSet<()>,
    /// Which monitor and endpoint each running task belongs to, so a task that
    /// panicked still gives its slots back.
    tasks: HashMap<tokio::task::Id, (MonitorId, u64)>,
    rng: SplitMix64,
    stats: Stats,
}

struct Slot {
    job: Arc<Job>,
    generation: u32,
    /// The grid slot the pending heap entry belongs to.
    base: Instant,
    /// The slot of the last run dispatched, for re-basing on an interval change.
    last_base: Option<Instant>,
    endpoint: u64,
    /// Running or queued behind its endpoint's cap (invariant 3).
    busy: bool,
}

#[derive(Default)]
struct Endpoint {
    in_flight: usize,
    waiting: VecDeque<(MonitorId, Instant)>,
}

// === impl Scheduler ===

impl<E: Execute> Scheduler<E> {
    /// A scheduler sending reports to `outcomes`, and the handle that changes
    /// its set of monitors.
    pub fn new(
        config: SchedulerConfig,
        executor: E,
        outcomes: mpsc::Sender<Report>,
    ) -> Result<(Scheduler<E>, SchedulerHandle), Error> {
        let config = config.validate()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let seed = config.seed.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        });
        let scheduler = Scheduler {
            config,
            executor: Arc::new(executor),
            outcomes,
            commands: rx,
            slots: HashMap::new(),
            heap: BinaryHeap::new(),
            endpoints: HashMap::new(),
            running: JoinSet::new(),
            tasks: HashMap::new(),
            rng: SplitMix64(seed),
            stats: Stats::default(),
        };
        Ok((scheduler, SchedulerHandle { tx }))
    }

    /// Runs until `shutdown` completes or the outcome receiver is dropped.
    /// Checks still running then are cancelled. Dropping every handle leaves
    /// the current set running.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let timer = tokio::time::sleep_until(Instant::now());
        let mut timer = std::pin::pin!(timer);
        let mut commands_open = true;
        loop {
            self.dispatch_due();
            if self.outcomes.is_closed() {
                break;
            }
            let next = self.heap.peek().map(|Reverse((due, _, _))| *due);
            let can_start = self.running.len() < self.config.max_in_flight.get();
            if let Some(next) = next {
                if timer.deadline() != next {
                    timer.as_mut().reset(next);
                }
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => e.id(),
                    };
                    self.finished(id);
                }
                () = &mut timer, if can_start && next.is_some() => {}
                cmd = self.commands.recv(), if commands_open => match cmd {
                    Some(cmd) => self.apply(cmd),
                    None => commands_open = false,
                },
            }
        }
        self.running.shutdown().await;
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Upsert(job) => self.upsert(*job),
            Command::Remove(id) => {
                self.slots.remove(&id);
            }
            Command::ReplaceAll(jobs) => {
                let keep: std::collections::HashSet<MonitorId> = jobs.iter().map(|j| j.id).collect();
                self.slots.retain(|id, _| keep.contains(id));
                for job in jobs {
                    self.upsert(job);
                }
            }
            Command::Stats(tx) => {
                let stats = Stats {
                    monitors: self.slots.len(),
                    in_flight: self.running.len(),
                    queued: self.endpoints.values().map(|e| e.waiting.len()).sum(),
                    ..self.stats
                };
                let _ = tx.send(stats);
            }
        }
    }

    fn upsert(&mut self, mut job: Job) {
        job.interval = job.interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
        job.timeout = job.timeout.min(MAX_INTERVAL);
        let now = Instant::now();
        let endpoint = endpoint_key(&job.spec);
        match self.slots.get_mut(&job.id) {
            Some(slot) if *slot.job == job => {}
            Some(slot) => {
                let interval = job.interval;
                slot.generation = slot.generation.wrapping_add(1);
                slot.endpoint = endpoint;
                slot.base = match slot.last_base {
                    Some(last) => (last + interval).max(now),
                    None => now + self.rng.below(interval),
                };
                slot.job = Arc::new(job);
                let (id, generation, base) = (slot.job.id, slot.generation, slot.base);
                let due = self.jittered(base, interval, now);
                self.heap.push(Reverse((due, id, generation)));
            }
            None => {
                // A random phase within the interval: monitors added together
                // (a restart, a bulk import) spread out instead of firing at once.
                let base = now + self.rng.below(job.interval);
                let id = job.id;
                self.heap.push(Reverse((base, id, 0)));
                self.slots.insert(
                    id,
                    Slot { job: Arc::new(job), generation: 0, base, last_base: None, endpoint, busy: false },
                );
            }
        }
    }

    /// Pops and starts every run that is due, while there is room (invariant 1).
    fn dispatch_due(&mut self) {
        let now = Instant::now();
        while self.running.len() < self.config.max_in_flight.get() {
            let Some(&Reverse((due, id, generation))) = self.heap.peek() else { break };
            if due > now {
                break;
            }
            self.heap.pop();
            let Some(slot) = self.slots.get_mut(&id) else { continue };
            if slot.generation != generation {
                continue;
            }
            // Schedule the next slot first, so the cadence holds whatever this run does.
            let interval = slot.job.interval;
            let mut next = slot.base + interval;
            if next <= now {
                // The first grid point after now; the ones before it are skipped.
                let behind = now.duration_since(next).as_nanos();
                let period = interval.as_nanos();
                self.stats.skipped_behind += u64::try_from(behind / period + 1).unwrap_or(u64::MAX);
                next = now + (interval - Duration::from_nanos(u64::try_from(behind % period).unwrap_or(0)));
            }
            slot.last_base = Some(slot.base);
            slot.base = next;
            let (busy, endpoint) = (slot.busy, slot.endpoint);
            let next_due = self.jittered(next, interval, now);
            self.heap.push(Reverse((next_due, id, generation)));
            if busy {
                self.stats.skipped_overlap += 1;
                continue;
            }
            let ep = self.endpoints.entry(endpoint).or_default();
            if ep.in_flight >= self.config.max_in_flight_per_endpoint.get() {
                ep.waiting.push_back((id, due));
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.busy = true;
                }
                continue;
            }
            self.start(id, due);
        }
    }

    fn start(&mut self, id: MonitorId, due: Instant) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.busy = true;
        let (job, endpoint) = (slot.job.clone(), slot.endpoint);
        self.endpoints.entry(endpoint).or_default().in_flight += 1;
        self.stats.started += 1;
        let executor = self.executor.clone();
        let outcomes = self.outcomes.clone();
        let limit = job.timeout + self.config.timeout_grace;
        let handle = self.running.spawn(async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(limit, executor.execute(&job.spec, job.timeout)).await {
                Ok(result) => result,
                Err(_) => Ok(Outcome::down(
                    ErrorKind::Timeout,
                    Some(Phase::Total),
                    format!("the check overran its {:?} timeout", job.timeout),
                    started.elapsed(),
                )),
            };
            // A closed receiver means the scheduler is stopping; the loop notices.
            let _ = outcomes.send(Report { monitor_id: job.id, due, started, result }).await;
        });
        self.tasks.insert(handle.id(), (id, endpoint));
    }

    /// A run ended: free its slots and start what queued behind its endpoint.
    fn finished(&mut self, task: tokio::task::Id) {
        let Some((id, endpoint)) = self.tasks.remove(&task) else { return };
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.busy = false;
        }
        let Some(ep) = self.endpoints.get_mut(&endpoint) else { return };
        ep.in_flight = ep.in_flight.saturating_sub(1);
        while let Some((next, due)) = ep.waiting.pop_front() {
            // Removed while queued: nothing to run, try the next one.
            if self.slots.contains_key(&next) {
                self.start(next, due);
                return;
            }
        }
        if ep.in_flight == 0 {
            self.endpoints.remove(&endpoint);
        }
    }

    /// `base` moved by up to ± the jitter, never into the past.
    fn jittered(&mut self, base: Instant, interval: Duration, now: Instant) -> Instant {
        let span =
            (interval * u32::from(self.config.jitter_percent) / 100).min(self.config.max_jitter).min(interval / 2);
        if span.is_zero() {
            return base.max(now);
        }
        let offset = self.rng.below(span * 2);
        (base + offset).checked_sub(span).unwrap_or(base).max(now)
    }
}

/// Monitors on one `(host, port)` share a key. A 64-bit hash is enough: a
/// collision only makes two endpoints share a cap.
fn endpoint_key(spec: &CheckSpec) -> u64 {
    let mut h = DefaultHasher::new();
    spec.endpoint().hash(&mut h);
    h.finish()
}

/// A small, fast PRNG for phases and jitter (Steele, Lea, Flood 2014); no
/// cryptographic need, and a fixed seed makes tests repeatable.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, bound)` (zero for a zero bound).
    fn below(&mut self, bound: Duration) -> Duration {
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        // Multiply-shift (Lemire): uniform enough for jitter, no modulo bias worth a loop.
        Duration::from_nanos(((u128::from(self.next()) * u128::from(nanos)) >> 64) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_offsets_stay_in_range_and_spread() {
        let mut rng = SplitMix64(7);
        let bound = Duration::from_secs(30);
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            let d = rng.below(bound);
            assert!(d < bound);
            buckets[(d.as_secs() / 3) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| (800..1200).contains(&b)), "{buckets:?}");
        assert_eq!(rng.below(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn config_validates_jitter() {
        SchedulerConfig::default().validate().unwrap();
        assert!(matches!(
            SchedulerConfig { jitter_percent: 60, ..SchedulerConfig::default() }.validate(),
            Err(Error::Config { field: "jitter_percent", .. })
        ));
    }
}
