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

/// When each peer last answered an RPC: the leader's view of member health.
#[derive(Clone, Default)]
pub struct PeerHealth {
    last_ok: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl PeerHealth {
    fn record(&self, id: NodeId) {
        self.last_ok.lock().expect("health lock poisoned").insert(id, Instant::now());
    }

    /// Whether `id` answered within `window`.
    pub fn recent(&self, id: NodeId, window: Duration) -> bool {
        self.last_ok.lock().expect("health lock poisoned").get(&id).is_some_and(|t| t.elapsed() <= window)
    }
}

/// Builds peer clients for openraft and for forwarding; shares channels by address.
#[derive(Clone)]
pub struct PeerNetworkFactory {
    tls: Option<ClientTlsConfig>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    health: PeerHealth,
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
        PeerNetworkFactory { tls: tls.map(PeerTls::client_config), channels: Default::default(), health, faults }
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
            .tcp_nodelay(true);
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

    /// Sends one encoded Raft RPC.
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
