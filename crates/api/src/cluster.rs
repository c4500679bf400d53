//! The node's handle on Raft, shared by the REST API and the peer service:
//! writes from any node reach the leader, reads can be made linearizable, and
//! membership changes and status answer from the leader's point of view.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use uptime_raft_store::typ::RaftMetrics;
use uptime_raft_store::{
    codec, Command, NodeId, PeerNode, Raft, Request, Response, StateReader, MAX_BATCH, MAX_ENTRY_BYTES,
};

use crate::clock::{ClusterClock, SystemClock, Unconfirmed, WallClock};
use crate::dto::{ClusterStatus, Member, StaleView};
use crate::error::{ApiError, ErrorCode};
use crate::network::PeerNetworkFactory;
use crate::pb::{ClockRequest, ClusterStatusRequest, RaftPayload, ReadIndexReply, ReadIndexRequest};

/// How the cluster handle behaves; durations bound every wait.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// How long a write may wait for a leader and for its commit.
    pub write_timeout: Duration,
    /// A member this node heard from within this window is healthy, and a
    /// leader it has not heard from within it (a leader itself: from a
    /// majority of voters) is not reported: its lease has lapsed.
    pub health_window: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { node_id: 1, write_timeout: Duration::from_secs(5), health_window: Duration::from_millis(1500) }
    }
}

/// An operation only the leader can carry out; a follower forwards it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum LeaderOp {
    Write(Command),
    AddNode { id: NodeId, node: PeerNode },
    RemoveNode { id: NodeId },
}

/// What the leader answers for a committed op: apply's response and the entry's index.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Committed {
    response: Response,
    index: u64,
}

/// Why the leader (or the node that thought it was) did not carry an op out.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum OpError {
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Refused before anything was proposed (e.g. an impossible membership change).
    Refused {
        message: String,
    },
    Unavailable {
        message: String,
    },
    /// A node the op needs (one being added) did not answer in time.
    Unreachable {
        message: String,
    },
    /// Proposed, but whether it committed is not known.
    Unknown {
        message: String,
    },
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::NotLeader { leader: Some(l) } => ApiError::unavailable(format!("node {l} is no longer leader")),
            OpError::NotLeader { leader: None } => ApiError::unavailable("the cluster has no leader"),
            OpError::Refused { message } => ApiError::new(ErrorCode::FailedPrecondition, message),
            OpError::Unavailable { message } => ApiError::unavailable(message),
            OpError::Unreachable { message } => ApiError::new(ErrorCode::Unreachable, message),
            OpError::Unknown { message } => ApiError::unknown_outcome(message),
        }
    }
}

#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    raft: Raft,
    reader: StateReader,
    peers: PeerNetworkFactory,
    /// What the leader stamps entries with (see [`crate::clock`]).
    clock: ClusterClock,
    /// Writes on the leader go through the batcher (group commit).
    batcher: mpsc::Sender<Pending>,
    /// The highest log index of a write this node answered: local reads wait
    /// until it is applied here, so a client reads its own writes.
    written: std::sync::atomic::AtomicU64,
    /// A member with a live leader showed a newer membership without this
    /// node: it was removed, though the entry saying so never reached it.
    removed: AtomicBool,
}

type WriteResult = Result<Committed, WriteError>;

/// Why the batcher did not commit a write.
#[derive(Clone, Debug)]
enum WriteError {
    /// No stamp could be given (see [`crate::clock`]): nothing was proposed.
    Unstamped(Unconfirmed),
    Raft(RaftError<NodeId, ClientWriteError<NodeId, PeerNode>>),
}

/// A write waiting for the batcher.
struct Pending {
    command: Command,
    /// Encoded length, for the batch's byte budget.
    bytes: usize,
    reply: oneshot::Sender<WriteResult>,
}

const BATCH_QUEUE: usize = 4096;
/// Batches in flight at once: one filling the log while others replicate.
const BATCHES_IN_FLIGHT: usize = 4;

/// Group commit on the leader: concurrent writes become one log entry
/// (`Command::Batch`), so one append, one fsync and one replication round serve
/// them all. A lone write is proposed as itself, so an idle cluster pays nothing.
async fn batcher(raft: Raft, clock: ClusterClock, me: NodeId, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        // Whatever queued while we waited for a slot rides along.
        let (batch, next) = fill_batch(first, &mut rx);
        carried = next;
        let (raft, clock) = (raft.clone(), clock.clone());
        tokio::spawn(async move {
            let _permit = permit;
            propose_batch(&raft, &clock, me, batch).await;
        });
    }
}

/// One batch: `first` and what is queued behind it, up to [`MAX_BATCH`]
/// commands and [`MAX_ENTRY_BYTES`] (the sum of the commands' encodings bounds
/// the batch's); the first write that would not fit is handed back to start
/// the next batch.
fn fill_batch(first: Pending, rx: &mut mpsc::Receiver<Pending>) -> (Vec<Pending>, Option<Pending>) {
    let mut bytes = first.bytes;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) if bytes.saturating_add(p.bytes) > MAX_ENTRY_BYTES => return (batch, Some(p)),
            Ok(p) => {
                bytes += p.bytes;
                batch.push(p);
            }
            Err(_) => break,
        }
    }
    (batch, None)
}

async fn propose_batch(raft: &Raft, clock: &ClusterClock, me: NodeId, mut batch: Vec<Pending>) {
    let voters: BTreeSet<NodeId> = raft.metrics().borrow().membership_config.membership().voter_ids().collect();
    let at_ms = match clock.stamp(me, &voters) {
        Ok(at_ms) => at_ms,
        Err(e) => {
            for p in batch {
                let _ = p.reply.send(Err(WriteError::Unstamped(e.clone())));
            }
            return;
        }
    };
    if batch.len() == 1 {
        let p = batch.pop().expect("one pending write");
        let started = std::time::Instant::now();
        let result = raft
            .client_write(Request { at_ms, command: p.command })
            .await
            .map(|r| Committed { index: r.log_id.index, response: r.data })
            .map_err(WriteError::Raft);
        if let Ok(c) = &result {
            uptime_raft_store::commit_path!("client_write_done", c.index, us = started.elapsed().as_micros() as u64);
        }
        let _ = p.reply.send(result);
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<oneshot::Sender<WriteResult>>) =
        batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    let n = replies.len();
    match raft.client_write(Request { at_ms, command: Command::Batch(commands) }).await {
        Ok(r) => {
            let index = r.log_id.index;
            let responses = match r.data {
                Response::Batch(rs) if rs.len() == n => rs,
                // A refused batch (it cannot be, given how it is built) refuses each write.
                other => vec![other; n],
            };
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(Committed { index, response }));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(WriteError::Raft(e.clone())));
            }
        }
    }
}

/// Every learner is a node on its way to voter (add-node is the only way one
/// is added), so the leader promotes each learner once it has caught up to the
/// membership entry that added it. Doing it here rather than in the add-node
/// request lets a promotion outlive the request, a leader change and a restart.
/// Ends when Raft shuts down.
async fn promoter(raft: Raft) {
    let mut metrics = raft.metrics();
    loop {
        // Re-check on every change of the metrics, and twice a second regardless.
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(500), metrics.changed()).await {
            return;
        }
        let ready: BTreeSet<NodeId> = {
            let m = metrics.borrow_and_update();
            let Some(replication) = m.replication.as_ref().filter(|_| m.state == ServerState::Leader) else {
                continue;
            };
            let added_at = m.membership_config.log_id().map(|l| l.index);
            let membership = m.membership_config.membership();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            membership
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| !voters.contains(id))
                .filter(|id| replication.get(id).cloned().flatten().map(|l| l.index) >= added_at)
                .collect()
        };
        if ready.is_empty() {
            continue;
        }
        match raft.change_membership(ChangeMembers::AddVoterIds(ready.clone()), false).await {
            Ok(r) => info!(nodes = ?ready, index = r.log_id.index, "learners caught up: promoted to voters"),
            // Another change in progress, or leadership moved: the next round retries.
            Err(e) => debug!(nodes = ?ready, error = %e, "promotion not done yet"),
        }
    }
}

tokio::task_local! {
    /// The idempotency key of the request being served, if it has one.
    static IDEMPOTENCY_KEY: Option<String>;
}

/// Runs `f` with `key` as the idempotency key of the writes it makes through
/// [`Cluster::write`] (the REST layer's `Idempotency-Key` header).
pub async fn with_idempotency_key<F: std::future::Future>(key: Option<String>, f: F) -> F::Output {
    IDEMPOTENCY_KEY.scope(key, f).await
}

/// Debug builds only: `UPTIMETEST_STOP_AFTER_COMMIT=N` makes the leader answer
/// its next N committed operator writes (not ticks or digests) as if Raft had stopped under them (the outcome a
/// node sees when its Raft core dies with writes in flight).
#[cfg(debug_assertions)]
fn failpoint_stop_after_commit() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LEFT: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    let left = LEFT.get_or_init(|| {
        AtomicU64::new(std::env::var("UPTIMETEST_STOP_AFTER_COMMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(0))
    });
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
}

#[cfg(not(debug_assertions))]
fn failpoint_stop_after_commit() -> bool {
    false
}

/// How often every node samples every voter's clock, and how long a sample counts.
const CLOCK_SAMPLE_EVERY: Duration = Duration::from_millis(500);
const CLOCK_FRESH_FOR: Duration = Duration::from_secs(5);

/// Samples the wall clock of every other voter (see [`crate::clock`]) and
/// hears from every other member (its health as this node sees it), on every
/// node, so a node that becomes leader can stamp at once; and, while no leader
/// is heard, asks the members whether this node was removed. Ends when Raft
/// shuts down or the cluster handle is dropped.
async fn clock_sampler(inner: Weak<Inner>) {
    let mut ticker = tokio::time::interval(CLOCK_SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let cluster = Cluster { inner };
        if cluster.inner.raft.metrics().has_changed().is_err() {
            return;
        }
        cluster.sample_peers().await;
        cluster.check_removed().await;
    }
}

impl Cluster {
    /// Must be called within a Tokio runtime: it starts the write batcher, which
    /// ends when the last clone of this handle is dropped, and the promoter of
    /// learners, which ends with Raft.
    pub fn new(config: ClusterConfig, raft: Raft, reader: StateReader, peers: PeerNetworkFactory) -> Self {
        Cluster::with_clock(config, raft, reader, peers, Arc::new(SystemClock::new()))
    }

    /// [`Cluster::new`] with the wall clock this node stamps and answers with.
    pub fn with_clock(
        config: ClusterConfig,
        raft: Raft,
        reader: StateReader,
        peers: PeerNetworkFactory,
        wall: Arc<dyn WallClock>,
    ) -> Self {
        let clock = ClusterClock::new(wall, CLOCK_FRESH_FOR);
        let me = config.node_id;
        let (tx, rx) = mpsc::channel(BATCH_QUEUE);
        tokio::spawn(batcher(raft.clone(), clock.clone(), me, rx));
        tokio::spawn(promoter(raft.clone()));
        let written = std::sync::atomic::AtomicU64::new(0);
        let removed = AtomicBool::new(false);
        let inner = Arc::new(Inner { config, raft, reader, peers, clock, batcher: tx, written, removed });
        tokio::spawn(clock_sampler(Arc::downgrade(&inner)));
        Cluster { inner }
    }

    /// One round of [`clock_sampler`]: every other member is asked for its
    /// clock; an answer is contact (health), and a voter's is a clock sample.
    async fn sample_peers(&self) {
        let me = self.node_id();
        let targets: Vec<(NodeId, String, bool)> = {
            let m = self.metrics();
            let membership = m.membership_config.membership();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            membership
                .nodes()
                .filter(|(id, _)| **id != me)
                .map(|(id, n)| (*id, n.peer_addr.clone(), voters.contains(id)))
                .collect()
        };
        let samples = targets.into_iter().map(|(id, addr, voter)| {
            let (peers, clock) = (self.inner.peers.clone(), self.inner.clock.clone());
            async move {
                let Ok(mut client) = peers.client(&addr) else { return };
                let sent = tokio::time::Instant::now();
                let mut request = tonic::Request::new(ClockRequest {});
                request.set_timeout(CLOCK_SAMPLE_EVERY);
                if let Ok(reply) = client.clock(request).await {
                    peers.health().record(id);
                    if voter {
                        clock.record(id, reply.into_inner().now_ms, sent, tokio::time::Instant::now());
                    }
                }
            }
        });
        futures::future::join_all(samples).await;
    }

    /// A removed voter often never receives the entry that removes it (the
    /// leader stops replicating to it first), so by its own log it is still a
    /// member: it hears no leader, campaigns, and its term climbs. While it
    /// hears no leader, it asks the others: a member that knows a leader and
    /// holds a newer membership without this node proves the removal. This
    /// node then stops campaigning and serves only "removed" (see
    /// [`Cluster::check_member`]); a later membership with it undoes both.
    async fn check_removed(&self) {
        let me = self.node_id();
        let m = self.metrics();
        let membership = m.membership_config.membership();
        if membership.get_node(&me).is_none() {
            return;
        }
        if self.confirmed_leader(&m).is_some() {
            if self.inner.removed.swap(false, Ordering::Relaxed) {
                info!("a leader is heard again with this node a member: no longer removed");
                self.inner.raft.runtime_config().elect(true);
            }
            return;
        }
        if self.inner.removed.load(Ordering::Relaxed) {
            return;
        }
        let mine = m.membership_config.log_id().map(|l| l.index).unwrap_or(0);
        let others: Vec<(NodeId, String)> =
            membership.nodes().filter(|(id, _)| **id != me).map(|(id, n)| (*id, n.peer_addr.clone())).collect();
        for (id, addr) in others {
            let Ok(mut client) = self.inner.peers.client(&addr) else { continue };
            let mut request = tonic::Request::new(ClusterStatusRequest {});
            request.set_timeout(CLOCK_SAMPLE_EVERY);
            let Ok(reply) = client.cluster_status(request).await else { continue };
            let Ok(theirs) = serde_json::from_str::<ClusterStatus>(&reply.into_inner().json) else { continue };
            if theirs.leader.is_some() && theirs.membership_index > mine && theirs.members.iter().all(|x| x.id != me) {
                warn!(
                    told_by = id,
                    membership_index = theirs.membership_index,
                    "this node was removed from the cluster; it stops campaigning and serves no reads or writes"
                );
                self.inner.removed.store(true, Ordering::Relaxed);
                self.inner.raft.runtime_config().elect(false);
                return;
            }
        }
    }

    /// `Ok` while this node is a member; otherwise the answer every request
    /// gets: "removed from the cluster", or "not a member yet" for a node that
    /// waits to be added (`join = true`).
    pub fn check_member(&self) -> Result<(), ApiError> {
        let me = self.node_id();
        let m = self.metrics();
        let in_config = m.membership_config.membership().get_node(&me).is_some();
        if in_config && !self.inner.removed.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !in_config && m.membership_config.log_id().is_none() {
            return Err(ApiError::new(
                ErrorCode::NotMember,
                format!("node {me} is not a member yet: add it from a member with `uptimectl cluster add-node {me}`"),
            ));
        }
        Err(ApiError::new(
            ErrorCode::Removed,
            format!(
                "node {me} was removed from the cluster: it serves no reads or writes; stop it, or add it back \
                 with an empty data directory"
            ),
        ))
    }

    /// The leader this node can vouch for: one it heard from within the health
    /// window, or itself while it hears a majority of voters. Raft keeps the
    /// last leader it knew until an election, and a leader cut off from the
    /// others stays leader in its own eyes; neither is reported.
    fn confirmed_leader(&self, m: &RaftMetrics) -> Option<NodeId> {
        let leader = m.current_leader?;
        let me = self.node_id();
        let window = self.inner.config.health_window;
        let health = self.inner.peers.health();
        if self.inner.removed.load(Ordering::Relaxed) {
            return None;
        }
        if leader != me {
            return health.recent(leader, window).then_some(leader);
        }
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        let heard = voters.iter().filter(|v| **v == me || health.recent(**v, window)).count();
        (heard.saturating_mul(2) > voters.len()).then_some(me)
    }

    /// Why local state may be behind the cluster: no leader is heard (no
    /// quorum, or this node is cut off), so verdicts are frozen as of the
    /// state's clock. `None` while a leader is heard.
    pub fn staleness(&self) -> Option<StaleView> {
        if self.confirmed_leader(&self.metrics()).is_some() {
            return None;
        }
        let state_ms = self.inner.reader.clock_ms().unwrap_or(0);
        let age_ms = self.inner.clock.local_ms().saturating_sub(state_ms);
        Some(StaleView {
            age_ms,
            reason: "no leader heard: this node cannot reach a quorum, so verdicts are as of its last applied entry"
                .into(),
        })
    }

    /// The cluster's time as this node sees it.
    pub fn clock(&self) -> &ClusterClock {
        &self.inner.clock
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub fn reader(&self) -> &StateReader {
        &self.inner.reader
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// Inside [`with_idempotency_key`]: the first answer to this key, if apply
    /// has one (the request is a retry whose first attempt applied).
    pub fn remembered_answer(&self) -> Option<Response> {
        let key = IDEMPOTENCY_KEY.try_with(Clone::clone).ok().flatten()?;
        self.inner.reader.remembered_response(&key).ok().flatten()
    }

    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().state == ServerState::Leader
    }

    fn metrics(&self) -> RaftMetrics {
        self.inner.raft.metrics().borrow().clone()
    }

    /// Proposes a command through the leader, wherever it is. Inside
    /// [`with_idempotency_key`] the command is applied once per key, and a
    /// write whose outcome is unknown is retried on the next leader (apply
    /// answers a repeat with the first answer); without a key it is not.
    pub async fn write(&self, command: Command) -> Result<Response, ApiError> {
        let command = match IDEMPOTENCY_KEY.try_with(Clone::clone).ok().flatten() {
            Some(key) => Command::Idempotent { key, command: Box::new(command) },
            None => command,
        };
        command.validate()?;
        // A clear 400 before a forward; on the leader `write_local` measures it
        // (and needs the size for group commit), so it is not encoded twice.
        if !self.is_leader() {
            command.check_size()?;
        }
        match self.leader_op(LeaderOp::Write(command)).await? {
            Response::Rejected(r) => Err(r.into()),
            other => Ok(other),
        }
    }

    /// Adds a node: as a learner first (it catches up), then as a voter.
    pub async fn add_node(&self, id: NodeId, node: PeerNode) -> Result<(), ApiError> {
        self.leader_op(LeaderOp::AddNode { id, node }).await.map(|_| ())
    }

    pub async fn remove_node(&self, id: NodeId) -> Result<(), ApiError> {
        self.leader_op(LeaderOp::RemoveNode { id }).await.map(|_| ())
    }

    async fn leader_op(&self, op: LeaderOp) -> Result<Response, ApiError> {
        self.check_member()?;
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + self.inner.config.write_timeout;
        // An attempt whose outcome was unknown: it may still commit.
        let mut doubt: Option<OpError> = None;
        loop {
            let leader = match self.wait_for_leader(deadline).await {
                Ok(leader) => leader,
                Err(e) => return Err(doubt.map_or(e, Into::into)),
            };
            let result = if leader == self.node_id() {
                self.execute_local(op.clone()).await
            } else {
                self.forward(leader, &op).await
            };
            match result {
                Ok(Committed { response, index }) => {
                    // Reads on this node will wait for this entry (read your writes),
                    // without making the write's answer wait for it.
                    self.inner.written.fetch_max(index, std::sync::atomic::Ordering::Relaxed);
                    uptime_raft_store::commit_path!("leader_op_done", index, us = started.elapsed().as_micros() as u64);
                    return Ok(response);
                }
                // Leadership moved (or the leader we knew is gone) before anything was
                // proposed: wait for the next leader, then try again.
                Err(OpError::NotLeader { .. }) | Err(OpError::Unavailable { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    self.wait_for_leader_change(leader).await;
                }
                // Proposed, outcome unknown: only a keyed write may go again.
                Err(e @ OpError::Unknown { .. })
                    if matches!(op, LeaderOp::Write(Command::Idempotent { .. }))
                        && tokio::time::Instant::now() < deadline =>
                {
                    debug!("write outcome unknown; sending it again with its idempotency key");
                    doubt = Some(e);
                    self.wait_for_leader_change(leader).await;
                }
                Err(e) => return Err(reported(doubt, e).into()),
            }
        }
    }

    /// Waits (up to 300 ms) until this node knows a leader other than `old`.
    async fn wait_for_leader_change(&self, old: NodeId) {
        let _ = self
            .inner
            .raft
            .wait(Some(Duration::from_millis(300)))
            .metrics(|m| m.current_leader.is_some_and(|l| l != old), "leader change")
            .await;
    }

    async fn wait_for_leader(&self, deadline: tokio::time::Instant) -> Result<NodeId, ApiError> {
        if let Some(l) = self.metrics().current_leader {
            return Ok(l);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match self.inner.raft.wait(Some(left)).metrics(|m| m.current_leader.is_some(), "a leader").await {
            Ok(m) => m.current_leader.ok_or_else(|| ApiError::unavailable("the cluster has no leader")),
            Err(_) => Err(ApiError::unavailable("the cluster has no leader (is a quorum of nodes up?)")),
        }
    }

    /// The peer address of member `id`, from the membership this node knows.
    fn peer_addr(&self, id: NodeId) -> Option<String> {
        self.metrics().membership_config.membership().get_node(&id).map(|n| n.peer_addr.clone())
    }

    async fn forward(&self, leader: NodeId, op: &LeaderOp) -> Result<Committed, OpError> {
        let Some(addr) = self.peer_addr(leader) else {
            return Err(OpError::Unavailable { message: format!("leader {leader} has no known address") });
        };
        let payload = codec::encode(op).map_err(|e| OpError::Refused { message: e.to_string() })?;
        let mut client = self
            .inner
            .peers
            .client(&addr)
            .map_err(|e| OpError::Unavailable { message: format!("leader {leader} at {addr}: {e}") })?;
        let mut request = tonic::Request::new(RaftPayload { payload });
        request.set_timeout(self.inner.config.write_timeout);
        match client.forward_write(request).await {
            Ok(reply) => codec::decode::<Result<Committed, OpError>>(&reply.into_inner().payload)
                .map_err(|e| OpError::Unknown { message: format!("undecodable reply from leader {leader}: {e}") })?,
            // Nothing reached the leader's service: safe to retry elsewhere.
            Err(status) if status.code() == tonic::Code::Unavailable => {
                Err(OpError::Unavailable { message: format!("leader {leader} unreachable: {}", status.message()) })
            }
            Err(status) => Err(OpError::Unknown {
                message: format!("forwarded to leader {leader}, outcome unknown: {}", status.message()),
            }),
        }
    }

    /// Carries out `op` on this node, which must be the leader. The leader stamps
    /// writes with its clock here: entries carry the leader's time (DESIGN.md).
    pub(crate) async fn execute_local(&self, op: LeaderOp) -> Result<Committed, OpError> {
        let op = match op {
            LeaderOp::Write(command) => return self.write_local(command).await,
            op => op,
        };
        let raft = &self.inner.raft;
        let timeout = self.inner.config.write_timeout;
        let fut = async {
            // A new leader may change the membership only once its own term's
            // first entry (and so the membership it holds) has committed.
            let _ = raft
                .wait(Some(timeout.mul_f64(0.5)))
                .metrics(
                    |m| m.last_applied.map(|l| l.index) >= m.membership_config.log_id().map(|l| l.index),
                    "membership committed",
                )
                .await;
            match op {
                LeaderOp::Write(_) => unreachable!("writes are carried out by write_local"),
                LeaderOp::AddNode { id, node } => {
                    // The new node joins as a learner, catches up (by snapshot, for a
                    // large state that takes longer than a request waits), then the
                    // leader's promoter makes it a voter. The answer says which stage
                    // it reached (the member's `voter` flag).
                    let node_addr = node.peer_addr.clone();
                    let membership = self.metrics().membership_config.clone();
                    let index = if membership.membership().get_node(&id).is_some() {
                        // A learner from an earlier add-node: nothing to add again.
                        membership.log_id().map(|l| l.index).unwrap_or(0)
                    } else {
                        raft.add_learner(id, node, false).await?.log_id.index
                    };
                    // The promoter makes it a voter once it has caught up; give it a
                    // moment. Done means the final (not joint) configuration with it
                    // as a voter is applied, so a next membership change may start.
                    let voter = raft
                        .wait(Some(timeout.mul_f64(0.8)))
                        .metrics(
                            |m| {
                                let config = &m.membership_config;
                                let membership = config.membership();
                                membership.get_joint_config().len() == 1
                                    && membership.voter_ids().any(|v| v == id)
                                    && m.last_applied.map(|l| l.index) >= config.log_id().map(|l| l.index)
                            },
                            "voter",
                        )
                        .await;
                    if voter.is_err() {
                        let window = self.inner.config.health_window;
                        if !self.inner.peers.health().recent(id, window) {
                            return Ok(Err(OpError::Unreachable {
                                message: format!(
                                    "node {id} at {addr} is unreachable: no answer within {wait:?}; it stays a \
                                     learner and becomes a voter once it answers (is it running with join = true, \
                                     and is the address right? if not: uptimectl cluster remove-node {id})",
                                    addr = node_addr,
                                    wait = timeout.mul_f64(0.8),
                                ),
                            }));
                        }
                        info!(node = id, "node added as a learner; it becomes a voter once caught up");
                    }
                    Ok(Ok(Committed { index, response: Response::Done }))
                }
                LeaderOp::RemoveNode { id } => {
                    let membership = self.metrics().membership_config.membership().clone();
                    let change = if membership.voter_ids().any(|v| v == id) {
                        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                    } else {
                        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                    };
                    // retain = false: a removed voter leaves the cluster, not just the quorum.
                    raft.change_membership(change, false)
                        .await
                        .map(|r| Ok(Committed { index: r.log_id.index, response: Response::Done }))
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(OpError::NotLeader { leader: f.leader_id })
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(OpError::Refused { message: e.to_string() })
            }
            Ok(Err(RaftError::Fatal(f))) => Err(OpError::Unavailable { message: format!("raft stopped: {f}") }),
            Err(_) => {
                Err(OpError::Unknown { message: format!("not committed within {timeout:?}; it may still commit") })
            }
        }
    }

    /// Proposes `command` through this node's batcher. Only an answer that says
    /// nothing was proposed (not the leader, no stamp) may be retried; once the
    /// batcher has proposed, anything but a definite answer (a timeout, Raft
    /// stopping under it) is an unknown outcome: the entry may still commit, and
    /// retrying it on the next leader could apply it twice.
    async fn write_local(&self, command: Command) -> Result<Committed, OpError> {
        let bytes = match command.check_size() {
            Ok(bytes) => bytes,
            Err(r) => return Ok(Committed { index: 0, response: Response::Rejected(r) }),
        };
        let timeout = self.inner.config.write_timeout;
        let operator_write = !matches!(command, Command::Tick | Command::Digests { .. });
        let (reply, answer) = oneshot::channel();
        if self.inner.batcher.send(Pending { command, bytes, reply }).await.is_err() {
            return Err(OpError::Unavailable { message: "this node is shutting down".into() });
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(Ok(_))) if operator_write && failpoint_stop_after_commit() => Err(OpError::Unknown {
                message: "failpoint: raft stopped after the write was proposed; it may have committed".into(),
            }),
            Ok(Ok(Ok(committed))) => Ok(committed),
            Ok(Ok(Err(WriteError::Unstamped(e)))) => Err(OpError::Unavailable { message: e.to_string() }),
            Ok(Ok(Err(WriteError::Raft(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))))) => {
                Err(OpError::NotLeader { leader: f.leader_id })
            }
            Ok(Ok(Err(WriteError::Raft(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))))) => {
                Err(OpError::Refused { message: e.to_string() })
            }
            Ok(Ok(Err(WriteError::Raft(RaftError::Fatal(f))))) => Err(OpError::Unknown {
                message: format!("raft stopped after the write was proposed ({f}); it may have committed"),
            }),
            Ok(Err(_)) => Err(OpError::Unknown {
                message: "the write was dropped after it was proposed; it may have committed".into(),
            }),
            Err(_) => {
                Err(OpError::Unknown { message: format!("not committed within {timeout:?}; it may still commit") })
            }
        }
    }

    /// Waits (bounded) until this node has applied every write it answered, so a
    /// local read after a write through this node sees it.
    pub async fn read_own_writes(&self) {
        let written = self.inner.written.load(std::sync::atomic::Ordering::Relaxed);
        if self.metrics().last_applied.map(|l| l.index).unwrap_or(0) >= written {
            return;
        }
        let _ = self
            .inner
            .raft
            .wait(Some(self.inner.config.write_timeout))
            .applied_index_at_least(Some(written), "read your writes")
            .await;
    }

    /// Waits until local state reflects every write committed before this call,
    /// asking the leader for its read index when this node is a follower.
    pub async fn linearize(&self) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + self.inner.config.write_timeout;
        // A read during a leader change waits for the next leader, like a write.
        let index = loop {
            let leader = self.wait_for_leader(deadline).await?;
            match self.read_index(leader).await {
                Ok(index) => break index,
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => {
                    self.wait_for_leader_change(leader).await;
                }
            }
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.inner
            .raft
            .wait(Some(left))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map_err(|_| ApiError::unavailable(format!("this node did not apply up to index {index} in time")))?;
        Ok(())
    }

    /// The index a linearizable read must wait for, from `leader`.
    async fn read_index(&self, leader: NodeId) -> Result<u64, ApiError> {
        let reply = if leader == self.node_id() {
            self.read_index_local().await
        } else {
            let addr = self
                .peer_addr(leader)
                .ok_or_else(|| ApiError::unavailable(format!("leader {leader} has no known address")))?;
            let mut client = self.inner.peers.client(&addr).map_err(|e| ApiError::unavailable(e.to_string()))?;
            let mut request = tonic::Request::new(ReadIndexRequest {});
            request.set_timeout(Duration::from_secs(2));
            client
                .read_index(request)
                .await
                .map_err(|s| ApiError::unavailable(format!("leader {leader}: {}", s.message())))?
                .into_inner()
        };
        reply.read_index.ok_or_else(|| ApiError::unavailable(reply.error))
    }

    pub(crate) async fn read_index_local(&self) -> ReadIndexReply {
        match self.inner.raft.ensure_linearizable().await {
            Ok(log_id) => {
                ReadIndexReply { read_index: Some(log_id.map(|l| l.index).unwrap_or(0)), ..Default::default() }
            }
            Err(e) => ReadIndexReply {
                read_index: None,
                leader_id: self.metrics().current_leader,
                error: format!("not a confirmed leader: {e}"),
            },
        }
    }

    /// The cluster as this node hears it: the leader it can vouch for and each
    /// member's health by its own last contact. The members list is the
    /// leader's when the leader answers with a newer membership (a change made
    /// through another node that has not reached this one yet).
    pub async fn status(&self) -> ClusterStatus {
        let mut status = self.local_status();
        if let Some(leader) = status.leader.filter(|l| *l != self.node_id()) {
            if let Some(theirs) = self.leader_status(leader).await {
                if theirs.membership_index > status.membership_index {
                    status.members = theirs.members.into_iter().map(|m| self.heard(m)).collect();
                    status.membership_index = theirs.membership_index;
                }
            }
        }
        status
    }

    async fn leader_status(&self, leader: NodeId) -> Option<ClusterStatus> {
        let addr = self.peer_addr(leader)?;
        let mut client = self.inner.peers.client(&addr).ok()?;
        let mut request = tonic::Request::new(ClusterStatusRequest {});
        request.set_timeout(Duration::from_millis(500));
        let reply = client.cluster_status(request).await.ok()?.into_inner();
        serde_json::from_str(&reply.json).ok()
    }

    /// `member` with its health as this node hears it.
    fn heard(&self, mut member: Member) -> Member {
        let me = self.node_id();
        let since = (member.id != me).then(|| self.inner.peers.health().since(member.id)).flatten();
        member.healthy = member.id == me || since.is_some_and(|d| d <= self.inner.config.health_window);
        member.last_contact_ms = since.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        member
    }

    pub fn local_status(&self) -> ClusterStatus {
        let m = self.metrics();
        let me = self.node_id();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                self.heard(Member {
                    id: *id,
                    addr: node.peer_addr.clone(),
                    api_addr: node.api_addr.clone(),
                    voter: voters.contains(id),
                    healthy: false,
                    last_contact_ms: None,
                })
            })
            .collect();
        ClusterStatus {
            node_id: me,
            leader: self.confirmed_leader(&m),
            term: m.current_term,
            members,
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            state_time_ms: self.inner.reader.clock_ms().unwrap_or(0),
            clock_skew_ms: self.inner.clock.skew_ms(me, &voters),
            membership_index: m.membership_config.log_id().map(|l| l.index).unwrap_or(0),
        }
    }
}

/// The error a write reports when its last attempt failed with `last`: an
/// answer that says nothing was proposed (not the leader, unavailable)
/// speaks for that attempt only, so an earlier attempt's unknown outcome
/// (`doubt`) stands; anything else is the answer.
fn reported(doubt: Option<OpError>, last: OpError) -> OpError {
    match (doubt, last) {
        (Some(d), OpError::NotLeader { .. } | OpError::Unavailable { .. }) => d,
        (_, last) => last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12 (jepsen-lite, 30-minute run): a keyed write whose first
    /// attempt had an unknown outcome (the leader's Raft stopped on a full
    /// disk after proposing it) was sent again, found no leader before the
    /// deadline, and was answered "unavailable", i.e. "nothing was applied".
    /// The entry had committed under the next leader. The unknown outcome
    /// now stands when a later attempt proposes nothing.
    #[test]
    fn a_retry_that_proposes_nothing_does_not_hide_an_unknown_outcome() {
        let unknown = || OpError::Unknown { message: "raft stopped after the write was proposed".into() };
        let nothing = OpError::Unavailable { message: "the cluster has no leader".into() };
        assert!(matches!(reported(Some(unknown()), nothing.clone()), OpError::Unknown { .. }));
        assert!(matches!(reported(Some(unknown()), OpError::NotLeader { leader: Some(2) }), OpError::Unknown { .. }));
        assert!(matches!(reported(None, nothing), OpError::Unavailable { .. }));
        let refused = OpError::Refused { message: "too large".into() };
        assert!(matches!(reported(Some(unknown()), refused), OpError::Refused { .. }));
    }

    fn pending(bytes: usize) -> Pending {
        let (reply, _) = oneshot::channel();
        Pending { command: Command::Tick, bytes, reply }
    }

    /// Issue 9, defect 9: group commit gathered up to 1 024 queued writes into
    /// one entry whatever their size, so a burst of large writes made one entry
    /// past any message limit. A batch now stops before its byte budget.
    #[tokio::test]
    async fn a_batch_stops_before_its_byte_budget_and_carries_the_rest() {
        let (tx, mut rx) = mpsc::channel(MAX_BATCH + 16);
        let third = MAX_ENTRY_BYTES / 3;
        for _ in 0..4 {
            tx.send(pending(third)).await.unwrap();
        }
        let first = rx.recv().await.unwrap();
        let (batch, carried) = fill_batch(first, &mut rx);
        assert_eq!(batch.len(), 3);
        assert!(batch.iter().map(|p| p.bytes).sum::<usize>() <= MAX_ENTRY_BYTES);
        let (batch, carried) = fill_batch(carried.expect("the fourth write starts the next batch"), &mut rx);
        assert_eq!((batch.len(), carried.is_none()), (1, true));

        for _ in 0..(MAX_BATCH + 5) {
            tx.send(pending(1)).await.unwrap();
        }
        drop(tx);
        let first = rx.recv().await.unwrap();
        let (batch, carried) = fill_batch(first, &mut rx);
        assert_eq!((batch.len(), carried.is_none()), (MAX_BATCH, true));
    }
}
