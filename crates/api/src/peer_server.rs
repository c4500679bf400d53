//! The `Peer` gRPC service: Raft RPCs in, forwarded leader operations, read index
//! and the leader's status.

use openraft::raft::AppendEntriesRequest;
use serde::Serialize;
use tonic::{Request, Response, Status};
use uptime_raft_store::{codec, TypeConfig};

use crate::cluster::{Cluster, LeaderOp};
use crate::pb::peer_server::{Peer, PeerServer};
use crate::pb::{
    ClockReply, ClockRequest, ClusterStatusReply, ClusterStatusRequest, RaftPayload, ReadIndexReply, ReadIndexRequest,
};

pub struct PeerService {
    cluster: Cluster,
}

impl PeerService {
    pub fn new(cluster: Cluster) -> Self {
        PeerService { cluster }
    }

    pub fn into_server(self) -> PeerServer<PeerService> {
        PeerServer::new(self)
            .max_decoding_message_size(crate::network::MAX_MESSAGE)
            .max_encoding_message_size(crate::network::MAX_MESSAGE)
    }
}

fn decode<T: serde::de::DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    codec::decode(&req.into_inner().payload).map_err(|e| Status::invalid_argument(format!("undecodable payload: {e}")))
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let payload = codec::encode(value).map_err(|e| Status::internal(format!("cannot encode reply: {e}")))?;
    Ok(Response::new(RaftPayload { payload }))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req)?;
        let last = rpc.entries.last().map(|e| e.log_id.index);
        if let Some(last) = last {
            uptime_raft_store::commit_path!("append_rpc", last);
        }
        let result = reply(&self.cluster.raft().append_entries(rpc).await);
        if let Some(last) = last {
            uptime_raft_store::commit_path!("append_rpc_done", last);
        }
        result
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req)?;
        reply(&self.cluster.raft().vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(req)?;
        reply(&self.cluster.raft().install_snapshot(rpc).await)
    }

    async fn forward_write(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let op: LeaderOp = decode(req)?;
        reply(&self.cluster.execute_local(op).await)
    }

    async fn read_index(&self, _req: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
        Ok(Response::new(self.cluster.read_index_local().await))
    }

    async fn cluster_status(
        &self,
        _req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        let status = self.cluster.local_status();
        let json = serde_json::to_string(&status).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ClusterStatusReply { json }))
    }

    async fn clock(&self, _req: Request<ClockRequest>) -> Result<Response<ClockReply>, Status> {
        Ok(Response::new(ClockReply { now_ms: self.cluster.clock().local_ms() }))
    }
}
