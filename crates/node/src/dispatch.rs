//! The leader's dispatcher: delivers the outbox under the fencing contract of
//! DESIGN.md ("Alert fencing: the contract").
//!
//! While this node is leader of term T:
//! 1. It claims due records in batches (`Claim`, one log entry per batch). The
//!    claim's log id `(T, node, index)` is the fencing token; a leader without
//!    a quorum cannot commit a claim, so it cannot send.
//! 2. The claim's commit confirms leadership at the instant `t0` taken before
//!    proposing it. Followers refuse votes for `election_timeout_max` after they
//!    last heard from a leader (openraft's leader lease), so no other leader
//!    can be elected before `t0 + election_timeout_max`: this node's *lease*
//!    ends a safety margin before that. It is renewed continuously from
//!    openraft's own record of when a quorum last acknowledged a request
//!    (`millis_since_quorum_ack`, measured from the request's *send* time, so
//!    heartbeats renew it), and while sends are in flight by explicit
//!    leadership checks (`Raft::get_read_log_id`); a failed check is retried,
//!    not taken as the loss of leadership.
//! 3. A send starts only inside the lease while this node is still leader of
//!    T. It is abandoned the moment a newer leader is known, or when the lease
//!    has lapsed and is not renewed within another lease length: recorded as
//!    `Abandoned` if that can still commit, else left claimed for the next
//!    leader. A lapse that a renewal in term T ends is survived, because a
//!    quorum that still acknowledges T has voted for no newer term, so no other
//!    leader can have sent in between (abandoning there would only turn a slow
//!    send into a duplicate). Every request carries `Idempotency-Key: <id>` and
//!    `X-Uptime-Fencing-Token: <T>-<node>-<index>`.
//! 4. Outcomes are committed in batches (`Settle`). Failures back off
//!    exponentially with jitter; apply counts attempts and buries a record at
//!    the cap.
//! 5. Records claimed by an older leader and never settled are claimed again
//!    (same idempotency key) only once this node has led for a whole lease
//!    length. A quorum voted for it only after their own leases from the old
//!    leader ran out, which already bounds the old lease; the extra wait covers
//!    the one case where the old leader itself voted for it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uptime_api::Cluster;
use uptime_raft_store::{
    Command, DeliveryOutcome, Notification, NotificationState, OutboxCommand, Response, Settlement, MAX_OUTBOX_BATCH,
};

#[derive(Clone, Debug)]
pub struct DispatchConfig {
    /// openraft's `election_timeout_max`: how long followers refuse votes
    /// after hearing from the leader.
    pub lease: Duration,
    /// Taken off the lease for scheduling delays between the check and the send.
    pub margin: Duration,
    /// Records per claim.
    pub batch: usize,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// A send that takes longer is a failure even inside the lease.
    pub send_timeout: Duration,
    /// How often an idle dispatcher looks for records that became due by time alone.
    pub poll: Duration,
    /// First retry delay; each further failure doubles it, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl DispatchConfig {
    pub fn for_election_timeout_max(election_timeout_max: Duration) -> DispatchConfig {
        DispatchConfig {
            lease: election_timeout_max,
            margin: (election_timeout_max / 4).max(Duration::from_millis(20)),
            batch: 1024.min(MAX_OUTBOX_BATCH),
            concurrency: 256,
            send_timeout: Duration::from_secs(30),
            poll: Duration::from_millis(250),
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
        }
    }

    fn usable(&self) -> Duration {
        self.lease.saturating_sub(self.margin)
    }
}

/// Runs for the node's life: leads the outbox whenever this node is leader.
pub async fn run(cluster: Cluster, config: DispatchConfig, shutdown: CancellationToken) {
    let mut metrics = cluster.raft().metrics();
    loop {
        let term = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader).then_some(m.current_term)
        };
        if let Some(term) = term {
            let stop = shutdown.child_token();
            tokio::select! {
                _ = lead(cluster.clone(), config.clone(), term, stop.clone()) => {}
                _ = shutdown.cancelled() => return,
            }
            stop.cancel();
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

/// Whether this node is still leader of `term`.
fn leads(cluster: &Cluster, term: u64) -> bool {
    let m = cluster.raft().metrics();
    let m = m.borrow();
    m.state == ServerState::Leader && m.current_term == term
}

/// The instant until which sends may run; renewed by leadership checks.
#[derive(Clone)]
struct Lease {
    until: watch::Sender<Instant>,
}

impl Lease {
    fn new() -> Lease {
        Lease { until: watch::Sender::new(Instant::now()) }
    }

    /// Leadership was confirmed by a quorum for an exchange that began at `t0`.
    fn confirmed(&self, t0: Instant, usable: Duration) {
        let until = t0 + usable;
        self.until.send_if_modified(|u| {
            if until > *u {
                *u = until;
                true
            } else {
                false
            }
        });
    }

    fn valid(&self) -> bool {
        Instant::now() < *self.until.borrow()
    }

    /// Resolves once the lease is valid again (a renewal after a lapse).
    async fn renewed(&self) {
        let mut rx = self.until.subscribe();
        let _ = rx.wait_for(|until| Instant::now() < *until).await;
    }

    /// Resolves when the lease has run out (renewals push it back).
    async fn expired(&self) {
        let mut rx = self.until.subscribe();
        loop {
            let until = *rx.borrow_and_update();
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = rx.changed() => {}
            }
        }
    }
}

/// One attempt's outcome, on its way to a `Settle` batch.
type Outcome = Settlement;

async fn lead(cluster: Cluster, config: DispatchConfig, term: u64, stop: CancellationToken) {
    let me = cluster.node_id();
    let took_office = Instant::now();
    info!(term, "dispatcher: leading the outbox");
    let lease = Lease::new();
    let in_flight: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Outcome>();
    let settler = tokio::spawn(settle(cluster.clone(), term, done_rx, in_flight.clone(), stop.clone()));
    let renewer =
        tokio::spawn(renew(cluster.clone(), config.clone(), term, lease.clone(), in_flight.clone(), stop.clone()));
    // Cancelled once this node is no longer leader of `term`: every send in
    // flight is then given up.
    let deposed = CancellationToken::new();
    let acks =
        tokio::spawn(follow_acks(cluster.clone(), config.clone(), term, lease.clone(), deposed.clone(), stop.clone()));
    let sends = Arc::new(Semaphore::new(config.concurrency));
    let mut applied = cluster.raft().metrics();

    while leads(&cluster, term) && !stop.is_cancelled() {
        // Read before the scan, so an entry applied during it wakes the wait below.
        let seen = applied.borrow_and_update().last_applied;
        let now_ms = cluster.clock().local_ms();
        let inherit = took_office.elapsed() >= config.lease;
        let found = {
            let busy = in_flight.lock().unwrap();
            due(&cluster, term, me, now_ms, inherit, &busy, config.batch)
        };
        let due = found.unwrap_or_else(|e| {
            warn!(error = %e, "dispatcher: cannot read the outbox");
            Vec::new()
        });
        if due.is_empty() {
            // New records arrive with applied entries; retries fall due with time.
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = deposed.cancelled() => break,
                // Raft stopped: nothing more to lead (a closed channel is
                // ready at once, so waiting on it again would spin).
                changed = applied.wait_for(|m| m.last_applied != seen) => if changed.is_err() { break },
                _ = tokio::time::sleep(config.poll) => {}
            }
            continue;
        }
        let ids: Vec<u64> = due.iter().map(|n| n.id).collect();
        // Listed before the claim, so the next round does not claim them again.
        in_flight.lock().unwrap().extend(ids.iter().copied());
        failpoint_send_before_claim(&cluster, &config, term, &due, &lease, &deposed, &stop);
        let t0 = Instant::now();
        let claimed = cluster.write(Command::Outbox(OutboxCommand::Claim { ids: ids.clone() })).await;
        let (index, claimed) = match claimed {
            // A follower's write is forwarded: a claim by another leader is not ours to send.
            Ok(Response::Claimed { term: t, node_id, index, ids }) if t == term && node_id == me => {
                (index, ids.into_iter().collect::<HashSet<u64>>())
            }
            other => {
                debug!(?other, "dispatcher: claim not committed by this leader");
                {
                    let mut f = in_flight.lock().unwrap();
                    for id in &ids {
                        f.remove(id);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        lease.confirmed(t0, config.usable());
        failpoint_hold_after_claim(&stop).await;
        {
            let mut f = in_flight.lock().unwrap();
            for id in ids.iter().filter(|id| !claimed.contains(id)) {
                f.remove(id);
            }
        }
        for n in due.into_iter().filter(|n| claimed.contains(&n.id)) {
            let permit = sends.clone().acquire_owned().await.expect("the semaphore is never closed");
            let (cluster, config, lease, done, stop, deposed) =
                (cluster.clone(), config.clone(), lease.clone(), done_tx.clone(), stop.clone(), deposed.clone());
            tokio::spawn(async move {
                let outcome = attempt(&cluster, &config, term, index, &n, &lease, &deposed, &stop).await;
                drop(permit);
                let _ = done.send(outcome);
            });
        }
    }
    stop.cancel();
    let _ = settler.await;
    let _ = renewer.await;
    let _ = acks.await;
    info!(term, "dispatcher: no longer leading the outbox");
}

/// Records to claim now, oldest first: pending ones, failed ones whose retry is
/// due, and ones claimed earlier with no outcome (by an older leader once this
/// one has led a lease length; by this leader when its outcome did not commit).
fn due(
    cluster: &Cluster,
    term: u64,
    me: u64,
    now_ms: u64,
    inherit: bool,
    in_flight: &HashSet<u64>,
    limit: usize,
) -> Result<Vec<Notification>, uptime_raft_store::Error> {
    let mut out = Vec::new();
    for n in cluster.reader().outbox_due()? {
        if in_flight.contains(&n.id) {
            continue;
        }
        let take = match n.state {
            NotificationState::Pending => true,
            NotificationState::Failed { next_at_ms, .. } => next_at_ms <= now_ms,
            NotificationState::Claimed { term: t, node_id, .. } => {
                (t == term && node_id == me) || (t < term && inherit)
            }
            NotificationState::Sent | NotificationState::Dead => false,
        };
        if take {
            out.push(n);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// One send of `n` under claim `index`, inside the lease.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    cluster: &Cluster,
    config: &DispatchConfig,
    term: u64,
    index: u64,
    n: &Notification,
    lease: &Lease,
    deposed: &CancellationToken,
    stop: &CancellationToken,
) -> Outcome {
    let mut out = Settlement {
        id: n.id,
        claim_index: index,
        outcome: DeliveryOutcome::Failed,
        status: None,
        error: String::new(),
        retry_after_ms: backoff_ms(config, n),
        took_ms: 0,
    };
    let reader = cluster.reader();
    let channel = match n.channel.as_deref().map(|c| reader.get_channel(c)) {
        Some(Ok(Some(c))) => c,
        Some(Ok(None)) => {
            out.outcome = DeliveryOutcome::Undeliverable;
            out.error = format!("channel {:?} no longer exists", n.channel.as_deref().unwrap_or_default());
            return out;
        }
        None => {
            out.outcome = DeliveryOutcome::Undeliverable;
            out.error = "the record names no channel".into();
            return out;
        }
        Some(Err(e)) => {
            out.error = format!("cannot read the channel: {e}");
            return out;
        }
    };
    let alert = match uptime_api::alerts::alert_for(reader, n) {
        Ok(Some(a)) => a,
        Ok(None) => {
            out.outcome = DeliveryOutcome::Undeliverable;
            out.error = format!("incident {} does not exist", n.incident_id);
            return out;
        }
        Err(e) => {
            out.error = format!("cannot read the incident: {e}");
            return out;
        }
    };
    let fencing = uptime_notify::Fencing::new(n.id, term, cluster.node_id(), index);
    if !lease.valid() || !leads(cluster, term) {
        out.outcome = DeliveryOutcome::Deferred;
        out.error = "not sent: the leader's lease ended before the send could start".into();
        out.retry_after_ms = 0; // as soon as apply allows: nothing reached the receiver
        return out;
    }
    let started = Instant::now();
    let result = tokio::select! {
        r = tokio::time::timeout(config.send_timeout, uptime_api::alerts::deliver(&channel.spec, &alert, &fencing)) => Some(r),
        _ = lost(config, lease, deposed) => None,
        _ = stop.cancelled() => None,
    };
    out.took_ms = started.elapsed().as_millis() as u64;
    match result {
        Some(Ok(Ok(d))) => {
            out.outcome = DeliveryOutcome::Sent;
            out.status = d.status;
            debug!(notification_id = n.id, channel = %channel.name, took_ms = out.took_ms, "notification sent");
        }
        Some(Ok(Err(e))) => {
            out.status = e.status;
            out.error = truncate(&e.message, 1000);
            warn!(notification_id = n.id, channel = %channel.name, error = %out.error, "notification not delivered");
        }
        Some(Err(_)) => out.error = format!("no answer within {:?}", config.send_timeout),
        None => {
            out.outcome = DeliveryOutcome::Abandoned;
            out.error = "abandoned mid-send: the leader's lease ended or leadership moved".into();
        }
    }
    out
}

/// Debug builds only: `UPTIMETEST_DISPATCH_HOLD_AFTER_CLAIM=FILE` makes the
/// dispatcher stop for good after a claim commits, before it sends, while
/// FILE exists (so a test can kill the leader between the claim and the send,
/// and let the next leader through by removing the file first).
#[cfg(debug_assertions)]
async fn failpoint_hold_after_claim(stop: &CancellationToken) {
    if std::env::var_os("UPTIMETEST_DISPATCH_HOLD_AFTER_CLAIM").is_some_and(|f| std::path::Path::new(&f).exists()) {
        warn!("failpoint: holding after the claim, before sending");
        stop.cancelled().await;
    }
}

#[cfg(not(debug_assertions))]
async fn failpoint_hold_after_claim(_: &CancellationToken) {}

/// Debug builds only, a planted bug for jepsen-lite to catch:
/// `UPTIMETEST_DISPATCH_SEND_BEFORE_CLAIM=1` sends each record once before
/// its claim is proposed, under the token the claim is guessed to get (the
/// next log index), and records nothing about that send.
#[cfg(debug_assertions)]
fn failpoint_send_before_claim(
    cluster: &Cluster,
    config: &DispatchConfig,
    term: u64,
    due: &[Notification],
    lease: &Lease,
    deposed: &CancellationToken,
    stop: &CancellationToken,
) {
    if std::env::var_os("UPTIMETEST_DISPATCH_SEND_BEFORE_CLAIM").is_none() {
        return;
    }
    let guess = cluster.raft().metrics().borrow().last_log_index.unwrap_or(0) + 1;
    warn!(guess, "failpoint: sending before the claim");
    lease.confirmed(Instant::now(), config.usable());
    for n in due {
        let (cluster, config, lease, deposed, stop, n) =
            (cluster.clone(), config.clone(), lease.clone(), deposed.clone(), stop.clone(), n.clone());
        tokio::spawn(async move {
            let _ = attempt(&cluster, &config, term, guess, &n, &lease, &deposed, &stop).await;
        });
    }
}

#[cfg(not(debug_assertions))]
#[allow(clippy::too_many_arguments)]
fn failpoint_send_before_claim(
    _: &Cluster,
    _: &DispatchConfig,
    _: u64,
    _: &[Notification],
    _: &Lease,
    _: &CancellationToken,
    _: &CancellationToken,
) {
}

/// Resolves when a send in flight must be given up: a newer leader took
/// over, or the lease lapsed and was not renewed within another lease length
/// (a newer leader may exist by then). A lapse that a renewal in the same term
/// ends is survived: a quorum that still accepts this term has voted for no
/// newer one, so no other leader sent meanwhile.
async fn lost(config: &DispatchConfig, lease: &Lease, deposed: &CancellationToken) {
    let lapses = async {
        loop {
            lease.expired().await;
            tokio::select! {
                _ = lease.renewed() => {}
                _ = tokio::time::sleep(config.lease) => return,
            }
        }
    };
    tokio::select! {
        _ = deposed.cancelled() => {}
        _ = lapses => {}
    }
}

/// At most `max` bytes of `s` (on a character boundary), marked when cut.
fn truncate(s: &str, max: usize) -> String {
    let kept = uptime_notify::truncate(s, max);
    if kept.len() < s.len() {
        format!("{kept}…")
    } else {
        kept.to_string()
    }
}

/// The wait before the next attempt: doubling from `backoff`, capped, with
/// ±25 % jitter so that many records failing together do not retry in step.
fn backoff_ms(config: &DispatchConfig, n: &Notification) -> u64 {
    let failed = match n.state {
        NotificationState::Failed { attempts, .. } => attempts,
        _ => 0,
    };
    let base = config.backoff.as_millis() as u64;
    let exp = base.saturating_mul(1u64 << failed.min(20)).min(config.max_backoff.as_millis() as u64);
    let jitter = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n.id);
        h.finish() % 1000
    };
    // 0.75 .. 1.25 of `exp`.
    exp.saturating_mul(750 + jitter / 2) / 1000
}

/// Commits outcomes in batches: whatever has arrived by the time the previous
/// batch committed goes into the next.
async fn settle(
    cluster: Cluster,
    term: u64,
    mut done: mpsc::UnboundedReceiver<Outcome>,
    in_flight: Arc<Mutex<HashSet<u64>>>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            o = done.recv() => o,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < MAX_OUTBOX_BATCH {
            match done.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        commit_outcomes(&cluster, term, batch, &in_flight).await;
    }
    // Sends that finished after leadership moved still report what the
    // receiver said, if a quorum takes it (saving the next leader a duplicate);
    // apply ignores an outcome whose claim is no longer current. Abandoned
    // sends stay claimed, for the next leader to take over without a backoff.
    let mut rest = Vec::new();
    while let Ok(o) = done.try_recv() {
        if !matches!(o.outcome, DeliveryOutcome::Abandoned | DeliveryOutcome::Deferred) {
            rest.push(o);
        }
    }
    if !rest.is_empty() {
        commit_outcomes(&cluster, term, rest, &in_flight).await;
    }
}

async fn commit_outcomes(cluster: &Cluster, term: u64, batch: Vec<Outcome>, in_flight: &Mutex<HashSet<u64>>) {
    let ids: Vec<u64> = batch.iter().map(|o| o.id).collect();
    let command = Command::Outbox(OutboxCommand::Settle { results: batch });
    // An outcome that does not commit leaves its record claimed, and a claimed
    // record is sent again: worth a few tries while this node still leads.
    // (A repeat is harmless: apply ignores an outcome whose claim is settled.)
    for attempt in 1..=3 {
        match cluster.write(command.clone()).await {
            Ok(Response::Settled { applied, stale }) => {
                debug!(term, applied, stale, "dispatcher: outcomes committed");
                break;
            }
            Ok(other) => {
                warn!(?other, "dispatcher: unexpected answer to outcomes");
                break;
            }
            Err(e) if attempt < 3 && leads(cluster, term) => {
                debug!(error = %e, attempt, "dispatcher: outcomes not committed; trying again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Left claimed: the next round (or the next leader) claims them again.
            Err(e) => {
                warn!(error = %e, records = ids.len(), "dispatcher: outcomes not committed");
                break;
            }
        }
    }
    let mut f = in_flight.lock().unwrap();
    for id in ids {
        f.remove(&id);
    }
}

/// Renews the lease from the leader's own record of quorum acknowledgements:
/// openraft notes, for every replication or heartbeat response, when the
/// request was *sent*, and reports the time since the latest instant a quorum
/// acknowledged (`millis_since_quorum_ack`) in each metrics update. A quorum
/// that acknowledged a request sent at `t` refuses votes until at least
/// `t + election_timeout_max`. The report reaches this task a little after it
/// was taken; the margin covers that delay.
///
/// It also watches leadership: it cancels `deposed` once this node is no
/// longer leader of `term`.
async fn follow_acks(
    cluster: Cluster,
    config: DispatchConfig,
    term: u64,
    lease: Lease,
    deposed: CancellationToken,
    stop: CancellationToken,
) {
    let _deposed = deposed.drop_guard();
    let mut metrics = cluster.raft().metrics();
    loop {
        {
            let m = metrics.borrow_and_update();
            if m.state != ServerState::Leader || m.current_term != term {
                return;
            }
            if let Some(ago) = m.millis_since_quorum_ack {
                if let Some(acked) = Instant::now().checked_sub(Duration::from_millis(ago.saturating_add(1))) {
                    lease.confirmed(acked, config.usable());
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

/// Keeps the lease fresh while sends are in flight.
async fn renew(
    cluster: Cluster,
    config: DispatchConfig,
    term: u64,
    lease: Lease,
    in_flight: Arc<Mutex<HashSet<u64>>>,
    stop: CancellationToken,
) {
    let every = (config.usable() / 3).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let idle = in_flight.lock().unwrap().is_empty();
        if idle {
            continue;
        }
        let t0 = Instant::now();
        match tokio::time::timeout(config.lease, cluster.raft().get_read_log_id()).await {
            Ok(Ok(_)) if leads(&cluster, term) => lease.confirmed(t0, config.usable()),
            // Checks fail under load or time out after a heartbeat interval:
            // try again rather than give up; the lease simply runs out meanwhile.
            other => debug!(?other, "dispatcher: leadership check failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let c = DispatchConfig::for_election_timeout_max(Duration::from_millis(400));
        let note = |attempts| Notification {
            id: 7,
            incident_id: 1,
            channel: Some("c".into()),
            kind: uptime_raft_store::NotificationKind::Open,
            state: if attempts == 0 {
                NotificationState::Pending
            } else {
                NotificationState::Failed { attempts, next_at_ms: 0 }
            },
            created_at_ms: 0,
        };
        let first = backoff_ms(&c, &note(0));
        assert!((1_500..=2_500).contains(&first), "{first}");
        let third = backoff_ms(&c, &note(2));
        assert!((6_000..=10_000).contains(&third), "{third}");
        let late = backoff_ms(&c, &note(30));
        assert!((450_000..=750_000).contains(&late), "{late}");
        assert!(c.usable() < c.lease);
    }
}
