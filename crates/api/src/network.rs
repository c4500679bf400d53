//! The Raft network over tonic: one lazily connected channel per peer address,
//! mutual TLS unless the operator chose `--insecure`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use uptime_raft_store::codec;
use uptime_raft_store::typ::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use uptime_raft_store::{NodeId, PeerNode, TypeConfig};

use crate::pb::peer_client::PeerClient;
use crate::pb::RaftPayload;

/// The name every node certificate carries and every client expects: peers are
/// authenticated by the cluster CA, not by host name, so addresses can change.
pub const PEER_TLS_NAME: &str = "uptime-peer";

/// Certificates for mutual TLS between nodes, PEM encoded.
#[derive(Clone)]
pub struct PeerTls {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl PeerTls {
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(PEER_TLS_NAME)
    }

    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }
}

/// When each peer last answered an RPC from this node (Raft replication on the
/// leader, clock samples on every node): member health as this node hears it.
#[derive(Clone, Default)]
pub struct PeerHealth {
    last_ok: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl PeerHealth {
    pub(crate) fn record(&self, id: NodeId) {
        self.last_ok.lock().expect("health lock poisoned").insert(id, Instant::now());
    }

    /// Whether `id` answered within `window`.
    pub fn recent(&self, id: NodeId, window: Duration) -> bool {
        self.since(id).is_some_and(|d| d <= window)
    }

    /// How long ago `id` last answered; `None` if it never has.
    pub fn since(&self, id: NodeId) -> Option<Duration> {
        self.last_ok.lock().expect("health lock poisoned").get(&id).map(|t| t.elapsed())
    }
}

/// How often repeated failures to reach one peer are summarised in the log.
pub const PEER_ERROR_SUMMARY_EVERY: Duration = Duration::from_secs(30);

/// What to log about one peer's RPC failures: the first failure at WARN, then
/// at most one summary per [`PEER_ERROR_SUMMARY_EVERY`] with a count, and the
/// recovery once at INFO. Without it a down peer cost ~15 WARN/ERROR lines a
/// second for as long as it stayed down (issue 10, point 24).
#[derive(Debug, Default)]
struct PeerTrouble {
    /// Since when the peer has been failing; `None` while it answers.
    since: Option<Instant>,
    /// Failures since `since`.
    failures: u64,
    /// Failures since the last line logged.
    unreported: u64,
    last_line: Option<Instant>,
}

/// One line to log, decided by [`PeerTrouble`].
#[derive(Debug, PartialEq, Eq)]
enum TroubleLine {
    First,
    Summary { failures: u64, over: Duration },
    Recovered { failures: u64, over: Duration },
}

impl PeerTrouble {
    fn failed(&mut self, now: Instant) -> Option<TroubleLine> {
        self.failures = self.failures.saturating_add(1);
        self.unreported = self.unreported.saturating_add(1);
        let Some(last) = self.last_line.filter(|_| self.since.is_some()) else {
            self.since = Some(now);
            self.failures = 1;
            self.unreported = 0;
            self.last_line = Some(now);
            return Some(TroubleLine::First);
        };
        let over = now.saturating_duration_since(last);
        if over < PEER_ERROR_SUMMARY_EVERY {
            return None;
        }
        let failures = std::mem::take(&mut self.unreported);
        self.last_line = Some(now);
        Some(TroubleLine::Summary { failures, over })
    }

    fn answered(&mut self, now: Instant) -> Option<TroubleLine> {
        let since = self.since.take()?;
        let failures = std::mem::take(&mut self.failures);
        self.unreported = 0;
        self.last_line = None;
        Some(TroubleLine::Recovered { failures, over: now.saturating_duration_since(since) })
    }
}

/// [`PeerTrouble`] for every peer, and the logging itself.
#[derive(Clone, Default)]
struct PeerErrors {
    peers: Arc<Mutex<HashMap<NodeId, PeerTrouble>>>,
}

impl PeerErrors {
    fn failed(&self, id: NodeId, addr: &str, error: &dyn std::fmt::Display) {
        let line = self.peers.lock().expect("peer errors poisoned").entry(id).or_default().failed(Instant::now());
        match line {
            Some(TroubleLine::First) => tracing::warn!(
                peer = id,
                %addr,
                %error,
                "node {id} unreachable; repeats are summarised every {}s",
                PEER_ERROR_SUMMARY_EVERY.as_secs()
            ),
            Some(TroubleLine::Summary { failures, over }) => tracing::warn!(
                peer = id,
                %addr,
                %error,
                failures,
                "node {id} still unreachable: {failures} failed RPCs in the last {}s",
                over.as_secs()
            ),
            _ => {}
        }
    }

    fn answered(&self, id: NodeId) {
        let line = {
            let mut peers = self.peers.lock().expect("peer errors poisoned");
            peers.get_mut(&id).and_then(|t| t.answered(Instant::now()))
        };
        if let Some(TroubleLine::Recovered { failures, over }) = line {
            tracing::info!(
                peer = id,
                failures,
                "node {id} reachable again after {failures} failed RPCs over {over:.1?}"
            );
        }
    }
}

/// Builds peer clients for openraft and for forwarding; shares channels by address.
#[derive(Clone)]
pub struct PeerNetworkFactory {
    tls: Option<ClientTlsConfig>,
    /// The local address outgoing peer connections are made from; None lets
    /// the kernel choose (on loopback: always 127.0.0.1).
    source: Option<std::net::IpAddr>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    health: PeerHealth,
    errors: PeerErrors,
    faults: PeerFaults,
}

/// Faults on this node's outgoing Raft RPCs, for tests in one process: a
/// blocked peer's requests hang until their deadline and fail (as when bytes
/// stop on a partition, rather than a connection being refused), a delayed
/// one's wait first. Blocking A→B on node A alone is a one-way fault; blocking
/// both directions partitions the pair. Production code never sets any.
#[derive(Clone, Default)]
pub struct PeerFaults {
    inner: Arc<Mutex<FaultState>>,
}

#[derive(Default)]
struct FaultState {
    blocked: std::collections::HashSet<NodeId>,
    delays: HashMap<NodeId, Duration>,
}

/// What a faulted request does.
enum Fault {
    None,
    Delay(Duration),
    Hang,
}

impl PeerFaults {
    /// Requests to `to` hang and fail from now on.
    pub fn block(&self, to: NodeId) {
        self.inner.lock().expect("faults poisoned").blocked.insert(to);
    }

    pub fn unblock(&self, to: NodeId) {
        self.inner.lock().expect("faults poisoned").blocked.remove(&to);
    }

    /// Requests to `to` wait `by` before they are sent.
    pub fn delay(&self, to: NodeId, by: Duration) {
        self.inner.lock().expect("faults poisoned").delays.insert(to, by);
    }

    /// Removes every fault.
    pub fn heal(&self) {
        *self.inner.lock().expect("faults poisoned") = FaultState::default();
    }

    fn to(&self, target: NodeId) -> Fault {
        let state = self.inner.lock().expect("faults poisoned");
        if state.blocked.contains(&target) {
            Fault::Hang
        } else {
            state.delays.get(&target).map_or(Fault::None, |d| Fault::Delay(*d))
        }
    }
}

impl PeerNetworkFactory {
    pub fn new(tls: Option<&PeerTls>, health: PeerHealth) -> Self {
        PeerNetworkFactory::with_faults(tls, health, PeerFaults::default())
    }

    /// [`PeerNetworkFactory::new`] whose Raft RPCs obey `faults`.
    pub fn with_faults(tls: Option<&PeerTls>, health: PeerHealth, faults: PeerFaults) -> Self {
        PeerNetworkFactory {
            tls: tls.map(PeerTls::client_config),
            source: None,
            channels: Default::default(),
            health,
            errors: PeerErrors::default(),
            faults,
        }
    }

    /// Makes every outgoing peer connection from `source`, so that faults can
    /// be aimed at one pair of nodes on one machine (node K on 127.0.0.K).
    pub fn with_source_addr(mut self, source: Option<std::net::IpAddr>) -> Self {
        self.source = source;
        self
    }

    pub fn health(&self) -> &PeerHealth {
        &self.health
    }

    /// A gRPC client for the peer at `addr` (`host:port`).
    pub fn client(&self, addr: &str) -> Result<PeerClient<Channel>, tonic::transport::Error> {
        let mut channels = self.channels.lock().expect("channel lock poisoned");
        if let Some(ch) = channels.get(addr) {
            return Ok(PeerClient::new(ch.clone()).max_decoding_message_size(MAX_MESSAGE));
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .local_address(self.source);
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(PeerClient::new(channel).max_decoding_message_size(MAX_MESSAGE))
    }
}

/// Snapshot chunks and large append batches stay well under this.
pub(crate) const MAX_MESSAGE: usize = 64 << 20;
/// An AppendEntries request stays under this (half the message limit, for the
/// envelope and slack); a larger one is split by openraft.
pub(crate) const MAX_APPEND_BYTES: usize = MAX_MESSAGE / 2;

impl RaftNetworkFactory<TypeConfig> for PeerNetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> PeerConnection {
        PeerConnection { target, addr: node.peer_addr.clone(), factory: self.clone() }
    }
}

/// openraft's handle on one peer.
pub struct PeerConnection {
    target: NodeId,
    addr: String,
    factory: PeerNetworkFactory,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WireError(String);

impl PeerConnection {
    /// Sends one Raft RPC and decodes the peer's `Result<Resp, RaftError<E>>`.
    async fn call<Req, Resp, E>(
        &self,
        method: Method,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, PeerNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send(method, payload, option).await
    }

    /// Sends one encoded Raft RPC; a failure to reach the peer is logged
    /// through [`PeerErrors`] (openraft's own per-attempt lines are filtered
    /// out by the binary's default log filter).
    async fn send<Resp, E>(
        &self,
        method: Method,
        payload: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, PeerNode, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let result = self.send_once(method, payload, option).await;
        match &result {
            Err(RPCError::Unreachable(e)) => self.factory.errors.failed(self.target, &self.addr, e),
            Err(RPCError::Network(e)) => self.factory.errors.failed(self.target, &self.addr, e),
            Err(RPCError::Timeout(e)) => self.factory.errors.failed(self.target, &self.addr, e),
            Ok(_) | Err(RPCError::RemoteError(_)) => self.factory.errors.answered(self.target),
            Err(_) => {}
        }
        result
    }

    async fn send_once<Resp, E>(
        &self,
        method: Method,
        payload: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, PeerNode, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        match self.factory.faults.to(self.target) {
            Fault::None => {}
            Fault::Delay(by) => tokio::time::sleep(by).await,
            Fault::Hang => {
                tokio::time::sleep(option.hard_ttl()).await;
                return Err(RPCError::Network(NetworkError::new(&WireError(format!(
                    "no answer from node {} (fault injected)",
                    self.target
                )))));
            }
        }
        let mut client = self.factory.client(&self.addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { payload });
        request.set_timeout(option.hard_ttl());
        let reply = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| match status.code() {
            // Nothing answered: openraft backs off before trying this peer again.
            tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
            // The peer is there but slow (a timeout) or said something odd: retry
            // at once. Backing off here would starve a busy follower of
            // heartbeats and cause the very election it is too busy for.
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        self.factory.health.record(self.target);
        let result: Result<Resp, RaftError<NodeId, E>> = codec::decode(&reply.into_inner().payload).map_err(|e| {
            RPCError::Network(NetworkError::new(&WireError(format!("bad reply from node {}: {e}", self.target))))
        })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    /// How long replication to an unreachable peer waits between attempts. Short:
    /// a refused connect on a LAN costs nothing, and a restarted node should be
    /// caught up at once.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        let last = rpc.entries.last().map(|e| e.log_id.index);
        if let Some(last) = last {
            uptime_raft_store::commit_path!("replicate_send", last, to = self.target);
        }
        let entries = rpc.entries.len();
        let payload = codec::encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if payload.len() > MAX_APPEND_BYTES && entries > 1 {
            // openraft sends fewer entries next time (the hint, for a while):
            // a request over the peer's message limit would fail on every retry.
            let fit = (entries as u128 * MAX_APPEND_BYTES as u128 / payload.len() as u128) as u64;
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fit.max(1))));
        }
        let result = self.send(Method::Append, payload, &option).await;
        if let Some(last) = last {
            uptime_raft_store::commit_path!("replicate_ack", last, to = self.target);
        }
        result
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RPCError<NodeId, PeerNode, RaftError<NodeId, InstallSnapshotError>>> {
        self.call(Method::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        self.call(Method::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};

    /// Issue 10, point 24: every failed RPC to a down peer was logged (two
    /// lines each, ~15 a second). The first failure is one line, repeats one
    /// summary per period with their count, the recovery one line.
    #[test]
    fn a_down_peer_is_logged_first_then_summarised_then_recovered_once() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = PeerTrouble::default();
        assert_eq!(t.answered(at(0)), None, "a peer that never failed has no recovery");
        assert_eq!(t.failed(at(0)), Some(TroubleLine::First));
        let quiet = (1..150).filter_map(|i| t.failed(at(i * 200))).count();
        assert_eq!(quiet, 0, "failures within the period are only counted");
        let every = PEER_ERROR_SUMMARY_EVERY.as_millis() as u64;
        assert_eq!(t.failed(at(every)), Some(TroubleLine::Summary { failures: 150, over: PEER_ERROR_SUMMARY_EVERY }));
        assert_eq!(t.failed(at(every + 200)), None);
        assert_eq!(
            t.answered(at(every + 400)),
            Some(TroubleLine::Recovered { failures: 152, over: Duration::from_millis(every + 400) })
        );
        assert_eq!(t.answered(at(every + 600)), None, "recovery is logged once");
        assert_eq!(t.failed(at(every + 800)), Some(TroubleLine::First), "a new outage starts over");
    }
    use uptime_raft_store::typ::Entry;
    use uptime_raft_store::{Command, Request};

    use super::*;

    /// Issue 9, defect 9: openraft sends up to 300 entries per AppendEntries;
    /// with large entries the request outgrew the peer's message limit and
    /// failed on every retry, so the follower never caught up. An over-large
    /// request is reported to openraft, which sends fewer entries.
    #[tokio::test]
    async fn an_append_too_large_for_one_message_is_split_by_openraft() {
        let mut factory = PeerNetworkFactory::new(None, PeerHealth::default());
        // Nothing listens here: a request that is sent fails as unreachable.
        let node = PeerNode { peer_addr: "127.0.0.1:9".into(), api_addr: String::new() };
        let mut peer = factory.new_client(2, &node).await;
        let value = "v".repeat(200_000);
        let entries: Vec<Entry> = (1..=300)
            .map(|i| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
                payload: EntryPayload::Normal(Request {
                    at_ms: 0,
                    command: Command::SetSetting { key: "k".into(), value: value.clone() },
                }),
            })
            .collect();
        let rpc = AppendEntriesRequest { vote: Vote::new(1, 1), prev_log_id: None, leader_commit: None, entries };
        match peer.append_entries(rpc, RPCOption::new(Duration::from_secs(1))).await {
            Err(RPCError::PayloadTooLarge(too_large)) => {
                let hint = too_large.entries_hint() as usize;
                assert!(hint >= 1 && hint * value.len() <= MAX_APPEND_BYTES, "hint {hint}");
            }
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
    }
}
