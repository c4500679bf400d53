//! Cluster membership and the state hash.

use super::*;

pub async fn add_node(cluster: &Cluster, body: AddNode) -> Result<ClusterStatus, ApiError> {
    if body.id == 0 {
        return Err(ApiError::invalid("id", "node ids start at 1"));
    }
    let port_ok =
        body.peer_addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(ApiError::invalid("peer_addr", format!("{:?} is not host:port", body.peer_addr)));
    }
    if !(body.api_addr.starts_with("http://") || body.api_addr.starts_with("https://")) {
        return Err(ApiError::invalid("api_addr", format!("{:?} is not an http(s):// URL", body.api_addr)));
    }
    // A learner from an earlier add-node is still catching up (the leader
    // promotes it when it has): answer with its status; a voter is already in.
    if let Some(m) = cluster.local_status().members.iter().find(|m| m.id == body.id) {
        if m.voter {
            return Err(
                ApiError::new(ErrorCode::Conflict, format!("node {} is already a member", body.id)).with_field("id")
            );
        }
        if m.addr != body.peer_addr || m.api_addr != body.api_addr {
            let message = format!(
                "node {} is joining as {} ({}): remove it first to change its addresses",
                m.id, m.addr, m.api_addr
            );
            return Err(ApiError::new(ErrorCode::Conflict, message).with_field("id"));
        }
    }
    cluster.add_node(body.id, PeerNode { peer_addr: body.peer_addr, api_addr: body.api_addr }).await?;
    Ok(cluster.status().await)
}

pub async fn remove_node(cluster: &Cluster, id: u64) -> Result<ClusterStatus, ApiError> {
    if !cluster.local_status().members.iter().any(|m| m.id == id) {
        return Err(ApiError::not_found(format!("node {id} is not a member")));
    }
    cluster.remove_node(id).await?;
    Ok(cluster.status().await)
}

pub async fn state_hash(cluster: &Cluster, linearizable: bool) -> Result<StateHashView, ApiError> {
    read_barrier(cluster, linearizable).await?;
    let h = cluster.reader().state_hash()?;
    Ok(StateHashView { applied_index: h.applied_index, hash: h.hash })
}
