//! The `Admin` gRPC service on the API port: the same operations as REST
//! (`ops`), the same token, errors mapped by `ApiError::to_status`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::cluster::Cluster;
use crate::dto::{AddNode, CreateMonitor};
use crate::ops;
use crate::pb;
use crate::pb::admin_server::{Admin, AdminServer};

/// Whether an `Authorization` value is `Bearer <token>`, compared in constant time.
pub(crate) fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    match header.and_then(|v| v.strip_prefix("Bearer ")) {
        Some(t) => {
            let (a, b) = (t.as_bytes(), token.as_bytes());
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        }
        None => false,
    }
}

/// Mounts the service at its gRPC path (`/uptime.v1.Admin/{method}`), so the REST
/// router keeps its own fallback (the JSON 404).
pub(crate) fn mount<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    cluster: Cluster,
    token: &str,
) -> axum::Router<S> {
    let token: Arc<str> = Arc::from(token);
    let member = cluster.clone();
    let check = move |req: Request<()>| {
        let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if !bearer_matches(header, &token) {
            return Err(Status::unauthenticated("a valid bearer token is required (authorization: Bearer TOKEN)"));
        }
        // A removed node, or one not added yet, says so rather than answer
        // from a state it no longer (or not yet) shares, as REST does.
        member.check_member().map_err(status)?;
        Ok(req)
    };
    let service = AdminServer::with_interceptor(AdminService { cluster }, check);
    router.route_service("/uptime.v1.Admin/{*method}", service)
}

struct AdminService {
    cluster: Cluster,
}

fn status(e: crate::ApiError) -> Status {
    e.to_status()
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_cluster_status(
        &self,
        _req: Request<pb::GetClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        Ok(Response::new(self.cluster.status().await.into()))
    }

    async fn add_node(&self, req: Request<pb::AddNodeRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        let r = req.into_inner();
        let body = AddNode { id: r.id, peer_addr: r.peer_addr, api_addr: r.api_addr };
        Ok(Response::new(ops::add_node(&self.cluster, body).await.map_err(status)?.into()))
    }

    async fn remove_node(&self, req: Request<pb::RemoveNodeRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        Ok(Response::new(ops::remove_node(&self.cluster, req.into_inner().id).await.map_err(status)?.into()))
    }

    async fn get_state_hash(&self, req: Request<pb::GetStateHashRequest>) -> Result<Response<pb::StateHash>, Status> {
        let h = ops::state_hash(&self.cluster, req.into_inner().linearizable).await.map_err(status)?;
        Ok(Response::new(pb::StateHash { applied_index: h.applied_index, hash: h.hash }))
    }

    async fn create_monitor(&self, req: Request<pb::CreateMonitorRequest>) -> Result<Response<pb::Monitor>, Status> {
        let r = req.into_inner();
        let mut expect = Vec::with_capacity(r.expect.len());
        for code in r.expect {
            let code = u16::try_from(code).map_err(|_| {
                status(crate::ApiError::invalid("expect", format!("{code} is not an HTTP status code")))
            })?;
            expect.push(code);
        }
        let body = CreateMonitor {
            name: r.name,
            kind: r.kind,
            target: r.target,
            interval: Some(r.interval),
            timeout: Some(r.timeout),
            expect,
            public: r.public,
            paused: r.paused,
            tags: r.tags,
            ..CreateMonitor::default()
        };
        Ok(Response::new(ops::create_monitor(&self.cluster, body).await.map_err(status)?.into()))
    }

    async fn list_monitors(
        &self,
        req: Request<pb::ListMonitorsRequest>,
    ) -> Result<Response<pb::ListMonitorsResponse>, Status> {
        let monitors = ops::list_monitors(&self.cluster, req.into_inner().linearizable).await.map_err(status)?;
        Ok(Response::new(pb::ListMonitorsResponse { monitors: monitors.into_iter().map(Into::into).collect() }))
    }

    async fn get_monitor(&self, req: Request<pb::GetMonitorRequest>) -> Result<Response<pb::Monitor>, Status> {
        let m = ops::get_monitor(&self.cluster, &req.into_inner().monitor, false).await.map_err(status)?;
        Ok(Response::new(m.into()))
    }

    async fn delete_monitor(
        &self,
        req: Request<pb::DeleteMonitorRequest>,
    ) -> Result<Response<pb::DeleteMonitorResponse>, Status> {
        ops::delete_monitor(&self.cluster, &req.into_inner().monitor).await.map_err(status)?;
        Ok(Response::new(pb::DeleteMonitorResponse {}))
    }
}
