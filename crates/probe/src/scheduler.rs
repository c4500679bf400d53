//! Runs a changing set of monitors at their intervals.
//!
//! One task owns everything: a map of monitors and a binary heap of deadlines
//! (no task or timer per monitor, so 100k monitors cost a heap entry and a map
//! entry each). Each due run is spawned into a `JoinSet` and sends its
//! [`Report`] on the outcome channel itself, so a slow consumer slows the
//! checks (backpressure) rather than growing a queue.
//!
//! The rule behind the invariants: the scheduler's own bookkeeping never turns
//! a target into "no data". Every slot of a monitor ends in a report, or is
//! folded into a late run and counted; nothing is dropped silently.
//!
//! Invariants:
//! 1. At most `max_in_flight` checks run at once; due runs wait in the heap
//!    (their lateness shows in [`Report::started`] − [`Report::due`]).
//! 2. At most `max_in_flight_per_endpoint` checks run against one endpoint
//!    (see [`Execute::endpoint`]: the `(host, port)`, or the question a DNS
//!    check puts to its resolver); further runs for it queue behind them in
//!    order. A queued run waits at most its timeout: when that passes it is
//!    reported — a timeout naming the endpoint and its checks in flight if the
//!    endpoint answered none of them meanwhile, else [`Error::EndpointBusy`]
//!    (this node's cap, not the target: no vote). So a monitor on a saturated
//!    endpoint reports at least once per two timeouts. A queued run that does
//!    start gets its whole timeout, so every check ever in flight had a whole
//!    timeout of its own, and "answered none of them for a whole timeout"
//!    means the endpoint hangs. (Runs started with what was left of their
//!    timeout time out on a slow but answering endpoint; once they were all
//!    that was in flight, it looked hung: a false DOWN.)
//! 3. A monitor never overlaps itself, not even removed and re-added while a
//!    run is in flight. A slot that comes due while its previous run is still
//!    running or queued waits and starts as soon as that run ends (late, and
//!    the report shows it; counted in [`Stats::ran_late`]); further slots that
//!    pass meanwhile are folded into that late run ([`Stats::skipped_overlap`]).
//! 4. Runs stay on the monitor's grid (`phase + k·interval`, plus jitter), so
//!    lateness does not accumulate into drift; slots missed while the node was
//!    overloaded are skipped and counted ([`Stats::skipped_behind`]), not
//!    replayed in a burst. The phase is random within the interval, drawn once
//!    per monitor and kept across edits that keep the interval.
//! 5. A new monitor, and one whose check (spec or timeout) changes, is checked
//!    within `first_check_within` (a random point in it, so a bulk create does
//!    not fire at once), off the grid; that prompt run does not move the grid.
//! 6. Each monitor has exactly one live heap entry, for its earliest pending
//!    run: its generation matches the monitor's, and every push bumps it, so
//!    stale entries are discarded when they surface instead of being searched
//!    for. Queue deadlines work the same way with the run's sequence number.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::{CheckSpec, Error, ErrorKind, Outcome, Phase, Prober};

mod endpoint;

use endpoint::{Endpoint, Waiting};

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
    /// When the run was due: its slot on the monitor's grid plus jitter (or,
    /// for the prompt run after a creation or an edit, its point in
    /// `first_check_within`).
    pub due: Instant,
    /// When it started; `started - due` is the schedule lateness, including
    /// any wait for the monitor's previous run or its endpoint's cap. For a
    /// run whose timeout passed in the endpoint queue, when it gave up.
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

    /// The endpoint whose in-flight cap this check counts against, as reports
    /// name it: `host:port` for connection checks, the host for ICMP, and for
    /// DNS checks the name and the resolver asked (`a.example via 10.0.0.53:53`),
    /// so DNS checks of different names do not share a cap. The default does
    /// not know which resolvers the executor asks and says "the node's
    /// resolver"; the [`Prober`] names its configured nameservers.
    fn endpoint(&self, spec: &CheckSpec) -> String {
        endpoint::key(spec, None)
    }
}

impl Execute for Prober {
    fn execute(&self, spec: &CheckSpec, timeout: Duration) -> impl Future<Output = Result<Outcome, Error>> + Send {
        self.check(spec, timeout)
    }

    fn endpoint(&self, spec: &CheckSpec) -> String {
        endpoint::key(spec, Some(&self.config().nameservers))
    }
}

/// How the scheduler spreads and bounds the work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Checks running at once on this node, all monitors together.
    pub max_in_flight: NonZeroUsize,
    /// Checks running at once against one endpoint, so many monitors on one
    /// server neither hammer it nor take every slot when it hangs. Above
    /// `max_in_flight` it is that (the node-wide cap binds first).
    pub max_in_flight_per_endpoint: NonZeroUsize,
    /// Each run lands within ± this share of the interval around its slot (0–50).
    pub jitter_percent: u8,
    /// Upper bound on that jitter, so long intervals do not wander by minutes.
    pub max_jitter: Duration,
    /// Added to a check's timeout before the scheduler gives up on an executor
    /// that ignores its own (the prober does not; this is the backstop).
    pub timeout_grace: Duration,
    /// A new or changed monitor is first checked at a random point within this
    /// (or within its interval, if shorter): soon, but a bulk create or a
    /// restart does not fire every check at once. At most a minute.
    pub first_check_within: Duration,
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
            first_check_within: Duration::from_secs(5),
            seed: None,
        }
    }
}

/// Longest `first_check_within` accepted: past it a new monitor is no longer
/// checked "within seconds".
const MAX_FIRST_CHECK_WITHIN: Duration = Duration::from_secs(60);

impl SchedulerConfig {
    pub fn validate(self) -> Result<SchedulerConfig, Error> {
        if self.jitter_percent > 50 {
            return Err(Error::Config { field: "jitter_percent", message: "must be 0 to 50".into() });
        }
        if self.first_check_within > MAX_FIRST_CHECK_WITHIN {
            return Err(Error::Config {
                field: "first_check_within",
                message: format!("must be at most {MAX_FIRST_CHECK_WITHIN:?}"),
            });
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
    /// Runs that came due while the monitor's previous run was still running
    /// or queued, and started as soon as it ended (invariant 3).
    pub ran_late: u64,
    /// Slots folded into such a late run: they passed while one already waited.
    pub skipped_overlap: u64,
    /// Grid slots skipped because the scheduler was more than an interval behind.
    pub skipped_behind: u64,
    /// Grid slots that came due while the prompt first run (after a create or
    /// an edit) was under way, and are served by its report.
    pub served_by_prompt: u64,
    /// Runs whose timeout passed in an endpoint queue while the endpoint
    /// answered nothing, reported as a timeout.
    pub queue_timeouts: u64,
    /// Runs cut short by an endpoint queue while the endpoint kept answering,
    /// reported as [`Error::EndpointBusy`] (the cap is too low for the load).
    pub queue_busy: u64,
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
    /// Adds a monitor, or changes one with the same id. A new monitor, or a
    /// changed spec or timeout, is checked within `first_check_within`; a
    /// changed interval applies from the last run (or, before any, from a
    /// fresh phase), an unchanged one keeps the phase.
    pub fn upsert(&self, job: Job) -> Result<(), Error> {
        self.send(Command::Upsert(Box::new(job)))
    }

    /// Stops scheduling a monitor. A run already under way finishes and
    /// reports; if the monitor is added again meanwhile, its first run waits
    /// for that one.
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
    /// Each monitor's next run, earliest first; see invariant 6.
    heap: BinaryHeap<Reverse<(Instant, MonitorId, u64)>>,
    /// When each queued run's timeout passes: `(deadline, monitor, run seq)`.
    expiries: BinaryHeap<Reverse<(Instant, MonitorId, u64)>>,
    endpoints: HashMap<Arc<str>, Endpoint>,
    running: JoinSet<()>,
    /// Which monitor and endpoint each running task belongs to, so a task that
    /// panicked still gives its slots back.
    tasks: HashMap<tokio::task::Id, (MonitorId, Arc<str>)>,
    /// Monitors with a run in flight, whether or not they are still scheduled:
    /// a monitor removed and re-added waits for its old run (invariant 3).
    busy: HashSet<MonitorId>,
    /// Reports the loop made itself (a run that timed out in a queue) and could
    /// not hand over at once; they wait here rather than block the loop.
    sending: JoinSet<()>,
    next_seq: u64,
    rng: SplitMix64,
    stats: Stats,
}

struct Slot {
    job: Arc<Job>,
    generation: u64,
    /// The next grid slot, before jitter.
    base: Instant,
    /// `base` with its jitter: when the next grid run is due.
    grid_due: Instant,
    /// A prompt run asked for by a creation or an edit (invariant 5).
    prompt: Option<Instant>,
    /// The grid slot of the last grid run, for re-basing on an interval change.
    last_base: Option<Instant>,
    endpoint: Arc<str>,
    run: RunState,
    /// The due time of a run waiting for the current one to end (invariant 3).
    overdue: Option<Instant>,
    /// The run in flight (or queued) is a prompt run: the first grid slot
    /// that comes due during it is served by it, not made to wait, so a
    /// check that takes its whole interval is not late for ever after.
    prompt_in_flight: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Idle,
    /// Waiting in its endpoint's queue, as the run with this sequence number.
    Queued(u64),
    Running,
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
            expiries: BinaryHeap::new(),
            endpoints: HashMap::new(),
            running: JoinSet::new(),
            tasks: HashMap::new(),
            busy: HashSet::new(),
            sending: JoinSet::new(),
            next_seq: 0,
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
            self.expire_queued();
            self.dispatch_due();
            if self.outcomes.is_closed() {
                break;
            }
            // A due run waits for room (invariant 1); a queue deadline does not.
            let can_start = self.running.len() < self.config.max_in_flight.get();
            let next_run = self.heap.peek().map(|Reverse((due, _, _))| *due).filter(|_| can_start);
            let next_expiry = self.expiries.peek().map(|Reverse((at, _, _))| *at);
            let next = match (next_run, next_expiry) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
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
                Some(_) = self.sending.join_next(), if !self.sending.is_empty() => {}
                () = &mut timer, if next.is_some() => {}
                cmd = self.commands.recv(), if commands_open => match cmd {
                    Some(cmd) => self.apply(cmd),
                    None => commands_open = false,
                },
            }
        }
        self.running.shutdown().await;
        self.sending.shutdown().await;
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Upsert(job) => self.upsert(*job),
            Command::Remove(id) => self.remove(id),
            Command::ReplaceAll(jobs) => {
                let keep: HashSet<MonitorId> = jobs.iter().map(|j| j.id).collect();
                let gone: Vec<MonitorId> = self.slots.keys().filter(|id| !keep.contains(id)).copied().collect();
                for id in gone {
                    self.remove(id);
                }
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
        let id = job.id;
        if self.slots.get(&id).is_some_and(|slot| *slot.job == job) {
            // Unchanged (a resync sends the whole set): nothing to work out.
            return;
        }
        let endpoint: Arc<str> = self.executor.endpoint(&job.spec).into();
        let spread = self.config.first_check_within.min(job.interval);
        match self.slots.get_mut(&id) {
            Some(slot) => {
                let interval = job.interval;
                if slot.job.interval != interval {
                    slot.base = match slot.last_base {
                        Some(last) => (last + interval).max(now),
                        None => now + self.rng.below(interval),
                    };
                    slot.grid_due = jittered(&mut self.rng, &self.config, slot.base, interval, now);
                }
                if slot.job.spec != job.spec || slot.job.timeout != job.timeout {
                    // An earlier prompt run still pending stands: edits in a
                    // row must not keep pushing the check away.
                    let prompt = slot.prompt.unwrap_or_else(|| now + self.rng.below(spread));
                    slot.prompt = Some(prompt);
                }
                if slot.endpoint != endpoint {
                    // A run queued for the old endpoint would wait for the
                    // wrong cap; the prompt run asked for above replaces it.
                    if let RunState::Queued(seq) = slot.run {
                        slot.run = RunState::Idle;
                        dequeue(&mut self.endpoints, &slot.endpoint, seq);
                    }
                    slot.endpoint = endpoint;
                }
                slot.job = Arc::new(job);
            }
            None => {
                // The grid's phase is random within the interval, so monitors
                // added together (a restart, a bulk import) spread out; the
                // prompt run comes first, within seconds.
                let base = now + self.rng.below(job.interval);
                let prompt = now + self.rng.below(spread);
                let run = if self.busy.contains(&id) { RunState::Running } else { RunState::Idle };
                self.slots.insert(
                    id,
                    Slot {
                        job: Arc::new(job),
                        generation: 0,
                        base,
                        grid_due: base,
                        prompt: Some(prompt),
                        last_base: None,
                        endpoint,
                        run,
                        overdue: None,
                        prompt_in_flight: false,
                    },
                );
            }
        }
        self.reschedule(id, now);
    }

    fn remove(&mut self, id: MonitorId) {
        let Some(slot) = self.slots.remove(&id) else { return };
        if let RunState::Queued(seq) = slot.run {
            dequeue(&mut self.endpoints, &slot.endpoint, seq);
        }
    }

    /// Pushes the monitor's one live heap entry (invariant 6): now for a late
    /// run whose predecessor has ended, else its earliest pending run.
    fn reschedule(&mut self, id: MonitorId, now: Instant) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.generation = slot.generation.wrapping_add(1);
        let at = if slot.run == RunState::Idle && slot.overdue.is_some() {
            now
        } else {
            slot.prompt.map_or(slot.grid_due, |p| p.min(slot.grid_due))
        };
        self.heap.push(Reverse((at, id, slot.generation)));
    }

    /// Pops and starts every run that is due, while there is room (invariant 1).
    fn dispatch_due(&mut self) {
        let now = Instant::now();
        while self.running.len() < self.config.max_in_flight.get() {
            let Some(&Reverse((at, id, generation))) = self.heap.peek() else { break };
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(slot) = self.slots.get_mut(&id) else { continue };
            if slot.generation != generation {
                continue;
            }
            if slot.run == RunState::Idle {
                if let Some(due) = slot.overdue.take() {
                    slot.prompt_in_flight = false;
                    self.stats.ran_late += 1;
                    self.reschedule(id, now);
                    self.admit(id, due, now);
                    continue;
                }
            }
            let on_grid = slot.grid_due <= now;
            let due = if on_grid {
                let due = slot.prompt.map_or(slot.grid_due, |p| p.min(slot.grid_due));
                // A grid run answers a pending prompt too: it checks the current spec.
                slot.prompt = None;
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
                slot.grid_due = jittered(&mut self.rng, &self.config, next, interval, now);
                due
            } else {
                // Not a grid slot, so the prompt run (the entry is the earlier of the two).
                slot.prompt.take().unwrap_or(at)
            };
            match slot.run {
                RunState::Idle => {
                    slot.prompt_in_flight = !on_grid;
                    self.reschedule(id, now);
                    self.admit(id, due, now);
                }
                RunState::Queued(_) | RunState::Running if on_grid && slot.prompt_in_flight => {
                    // Served by the prompt run under way (see `prompt_in_flight`).
                    slot.prompt_in_flight = false;
                    self.stats.served_by_prompt += 1;
                    self.reschedule(id, now);
                }
                RunState::Queued(_) | RunState::Running => {
                    if slot.overdue.is_none() {
                        slot.overdue = Some(due);
                    } else {
                        self.stats.skipped_overlap += 1;
                    }
                    self.reschedule(id, now);
                }
            }
        }
    }

    /// Starts a run, or queues it behind its endpoint's cap (invariant 2).
    fn admit(&mut self, id: MonitorId, due: Instant, now: Instant) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        let ep = self.endpoints.entry(slot.endpoint.clone()).or_default();
        if ep.in_flight < self.config.max_in_flight_per_endpoint.get() {
            self.start(id, due);
            return;
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let answered = ep.answered.load(Ordering::Relaxed);
        ep.waiting.push_back(Waiting { seq, id, due, queued_at: now, answered, in_flight: ep.in_flight });
        slot.run = RunState::Queued(seq);
        self.expiries.push(Reverse((now + slot.job.timeout, id, seq)));
    }

    fn start(&mut self, id: MonitorId, due: Instant) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.run = RunState::Running;
        self.busy.insert(id);
        let (job, endpoint) = (slot.job.clone(), slot.endpoint.clone());
        let ep = self.endpoints.entry(endpoint.clone()).or_default();
        ep.in_flight += 1;
        let answered = ep.answered.clone();
        self.stats.started += 1;
        let executor = self.executor.clone();
        let outcomes = self.outcomes.clone();
        let grace = self.config.timeout_grace;
        let handle = self.running.spawn(async move {
            let started = Instant::now();
            let limit = job.timeout + grace;
            let result = match tokio::time::timeout(limit, executor.execute(&job.spec, job.timeout)).await {
                Ok(result) => result,
                Err(_) => Ok(Outcome::down(
                    ErrorKind::Timeout,
                    Some(Phase::Total),
                    format!("the check overran its {:?} timeout", job.timeout),
                    started.elapsed(),
                )),
            };
            if matches!(&result, Ok(o) if o.error_kind() != Some(ErrorKind::Timeout)) {
                answered.fetch_add(1, Ordering::Relaxed);
            }
            // A closed receiver means the scheduler is stopping; the loop notices.
            let _ = outcomes.send(Report { monitor_id: job.id, due, started, result }).await;
        });
        self.tasks.insert(handle.id(), (id, endpoint));
    }

    /// A run ended: free its slots and start what queued behind its endpoint.
    fn finished(&mut self, task: tokio::task::Id) {
        let Some((id, endpoint)) = self.tasks.remove(&task) else { return };
        let now = Instant::now();
        self.busy.remove(&id);
        if let Some(slot) = self.slots.get_mut(&id) {
            if slot.run == RunState::Running {
                slot.run = RunState::Idle;
                if slot.overdue.is_some() {
                    self.reschedule(id, now);
                }
            }
        }
        if let Some(ep) = self.endpoints.get_mut(&endpoint) {
            ep.in_flight = ep.in_flight.saturating_sub(1);
        }
        while let Some(w) = self.endpoints.get_mut(&endpoint).and_then(|ep| ep.waiting.pop_front()) {
            let Some(slot) = self.slots.get(&w.id) else { continue };
            if slot.run != RunState::Queued(w.seq) {
                continue;
            }
            if w.queued_at + slot.job.timeout <= now {
                self.expire(w, now);
                continue;
            }
            self.start(w.id, w.due);
            return;
        }
        self.finished_endpoint_tail(&endpoint);
    }

    /// Drops an endpoint's entry once nothing runs or waits for it.
    fn finished_endpoint_tail(&mut self, endpoint: &Arc<str>) {
        if self.endpoints.get(endpoint).is_some_and(|ep| ep.in_flight == 0 && ep.waiting.is_empty()) {
            self.endpoints.remove(endpoint);
        }
    }

    /// Reports every queued run whose timeout has passed (invariant 2).
    fn expire_queued(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((deadline, id, seq))) = self.expiries.peek() {
            if deadline > now {
                break;
            }
            self.expiries.pop();
            let Some(slot) = self.slots.get(&id) else { continue };
            if slot.run != RunState::Queued(seq) {
                continue;
            }
            let Some(ep) = self.endpoints.get_mut(&slot.endpoint) else { continue };
            let Some(pos) = ep.waiting.iter().position(|w| w.seq == seq) else { continue };
            let Some(w) = ep.waiting.remove(pos) else { continue };
            self.expire(w, now);
        }
    }

    /// Reports a run taken out of its endpoint's queue unstarted: a timeout if
    /// the endpoint answered nothing while it waited, else "could not check".
    fn expire(&mut self, w: Waiting, now: Instant) {
        let Some(slot) = self.slots.get_mut(&w.id) else { return };
        slot.run = RunState::Idle;
        let timeout = slot.job.timeout;
        let endpoint = slot.endpoint.to_string();
        let answered = self.endpoints.get(&slot.endpoint).map_or(w.answered, |ep| ep.answered.load(Ordering::Relaxed));
        let in_flight = w.in_flight;
        let result = if answered != w.answered {
            self.stats.queue_busy += 1;
            Err(Error::EndpointBusy { endpoint, in_flight, timeout })
        } else {
            self.stats.queue_timeouts += 1;
            Ok(Outcome::down(
                ErrorKind::Timeout,
                None,
                format!(
                    "not started within its {timeout:?} timeout: {in_flight} checks to {endpoint} in flight \
                     (the per-endpoint cap), none answered"
                ),
                now.saturating_duration_since(w.queued_at),
            ))
        };
        let overdue = slot.overdue.is_some();
        self.send_report(Report { monitor_id: w.id, due: w.due, started: now, result });
        if overdue {
            self.reschedule(w.id, now);
        }
    }

    /// Hands over a report the loop made itself, without blocking the loop.
    fn send_report(&mut self, report: Report) {
        match self.outcomes.try_send(report) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(report)) => {
                let outcomes = self.outcomes.clone();
                self.sending.spawn(async move {
                    let _ = outcomes.send(report).await;
                });
            }
        }
    }
}

/// Takes the run `seq` out of `endpoint`'s queue, and the endpoint's entry
/// with it once nothing runs or waits for it.
fn dequeue(endpoints: &mut HashMap<Arc<str>, Endpoint>, endpoint: &Arc<str>, seq: u64) {
    let Some(ep) = endpoints.get_mut(endpoint) else { return };
    ep.waiting.retain(|w| w.seq != seq);
    if ep.in_flight == 0 && ep.waiting.is_empty() {
        endpoints.remove(endpoint);
    }
}

/// `base` moved by up to ± the jitter, never into the past.
fn jittered(
    rng: &mut SplitMix64,
    config: &SchedulerConfig,
    base: Instant,
    interval: Duration,
    now: Instant,
) -> Instant {
    let span = (interval * u32::from(config.jitter_percent) / 100).min(config.max_jitter).min(interval / 2);
    if span.is_zero() {
        return base.max(now);
    }
    let offset = rng.below(span * 2);
    (base + offset).checked_sub(span).unwrap_or(base).max(now)
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

    /// Issue 10, point 11: the prober keys DNS checks by the resolver it
    /// actually asks, not one key for every DNS check of the node.
    #[tokio::test]
    async fn the_prober_names_the_resolver_it_asks() {
        let nameservers = vec!["127.0.0.1:5353".parse().unwrap()];
        let prober =
            Prober::new(crate::Config { nameservers, webpki_roots: false, ..crate::Config::default() }).unwrap();
        let dns = |server: Option<&str>| {
            CheckSpec::Dns(crate::DnsSpec {
                name: "a.example.test".into(),
                server: server.map(Into::into),
                ..crate::DnsSpec::default()
            })
        };
        assert_eq!(prober.endpoint(&dns(None)), "a.example.test via 127.0.0.1:5353");
        assert_eq!(prober.endpoint(&dns(Some("127.0.0.2"))), "a.example.test via 127.0.0.2:53");
        let tcp = CheckSpec::from_target("tcp", "db.test:5432").unwrap();
        assert_eq!(prober.endpoint(&tcp), "db.test:5432");
    }

    #[test]
    fn config_names_each_bad_field() {
        let n = |v| NonZeroUsize::new(v).unwrap();
        for (config, field) in [
            (
                SchedulerConfig { first_check_within: Duration::from_secs(61), ..Default::default() },
                "first_check_within",
            ),
            (SchedulerConfig { jitter_percent: 51, ..Default::default() }, "jitter_percent"),
        ] {
            match config.validate() {
                Err(Error::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        // A per-endpoint cap above the node-wide one is not an error: the node-wide one binds.
        SchedulerConfig { max_in_flight: n(4), max_in_flight_per_endpoint: n(8), ..Default::default() }
            .validate()
            .unwrap();
    }
}
