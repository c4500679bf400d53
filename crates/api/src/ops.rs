//! The admin operations, shared by the REST routes and the admin gRPC service:
//! input checks, then the cluster call. Both transports stay thin.

use std::time::Duration;

use uptime_probe::{CheckSpec, HttpSpec, StatusRange};
use uptime_raft_store::{AlertPolicy, Command, Monitor, MonitorDraft, PeerNode, Response};

use crate::cluster::Cluster;
use crate::dto::{parse_quorum, AddNode, ClusterStatus, CreateMonitor, MonitorView, Setting, StateHashView};
use crate::error::ApiError;

/// Local reads by default; `linearizable` waits until this node reflects every
/// write committed before the call.
pub async fn read_barrier(cluster: &Cluster, linearizable: bool) -> Result<(), ApiError> {
    if linearizable {
        cluster.linearize().await
    } else {
        Ok(())
    }
}

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
    if cluster.local_status().members.iter().any(|m| m.id == body.id) {
        return Err(ApiError::new(409, "conflict", format!("node {} is already a member", body.id)).with_field("id"));
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

pub async fn get_setting(cluster: &Cluster, key: String, linearizable: bool) -> Result<Setting, ApiError> {
    read_barrier(cluster, linearizable).await?;
    match cluster.reader().setting(&key)? {
        Some(value) => Ok(Setting { key, value }),
        None => Err(ApiError::not_found(format!("no setting {key:?}"))),
    }
}

pub async fn put_setting(cluster: &Cluster, key: String, value: String) -> Result<Setting, ApiError> {
    cluster.write(Command::SetSetting { key: key.clone(), value: value.clone() }).await?;
    Ok(Setting { key, value })
}

pub async fn list_monitors(cluster: &Cluster, linearizable: bool) -> Result<Vec<MonitorView>, ApiError> {
    read_barrier(cluster, linearizable).await?;
    cluster.reader().list_monitors()?.iter().map(|m| view(cluster, m)).collect()
}

pub async fn get_monitor(cluster: &Cluster, id_or_name: &str, linearizable: bool) -> Result<MonitorView, ApiError> {
    read_barrier(cluster, linearizable).await?;
    match cluster.reader().find_monitor(id_or_name)? {
        Some(m) => view(cluster, &m),
        None => Err(ApiError::not_found(format!("no monitor {id_or_name:?}"))),
    }
}

pub async fn delete_monitor(cluster: &Cluster, id_or_name: &str) -> Result<(), ApiError> {
    let monitor = cluster
        .reader()
        .find_monitor(id_or_name)?
        .ok_or_else(|| ApiError::not_found(format!("no monitor {id_or_name:?}")))?;
    cluster.write(Command::DeleteMonitor { id: monitor.id }).await?;
    Ok(())
}

/// A monitor with its current verdict.
pub fn view(cluster: &Cluster, m: &Monitor) -> Result<MonitorView, ApiError> {
    Ok(MonitorView::new(m, &cluster.reader().verdict(m.id)?))
}

fn parse_duration(field: &str, value: Option<&str>, default: Duration) -> Result<u64, ApiError> {
    let d = match value.filter(|s| !s.is_empty()) {
        None => default,
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| ApiError::invalid(field, format!("{s:?} is not a duration (e.g. 30s, 5m): {e}")))?,
    };
    Ok(d.as_millis() as u64)
}

pub async fn create_monitor(cluster: &Cluster, body: CreateMonitor) -> Result<MonitorView, ApiError> {
    let spec_err = |e: uptime_probe::SpecError| ApiError::invalid(e.field, e.message);
    let mut check = CheckSpec::from_target(&body.kind, &body.target).map_err(spec_err)?;
    if !body.expect.is_empty() {
        match &mut check {
            CheckSpec::Http(HttpSpec { expect_status, .. }) => {
                *expect_status = body.expect.iter().copied().map(StatusRange::exact).collect();
            }
            _ => return Err(ApiError::invalid("expect", "only http checks take expected status codes")),
        }
        check.validate().map_err(spec_err)?;
    }
    let interval_ms = parse_duration("interval", body.interval.as_deref(), Duration::from_secs(30))?;
    let timeout_ms =
        parse_duration("timeout", body.timeout.as_deref(), Duration::from_millis(interval_ms.min(10_000)))?;
    let defaults = AlertPolicy::default();
    let quorum = match body.quorum.as_deref() {
        None => defaults.quorum,
        Some(q) => parse_quorum(q)
            .ok_or_else(|| ApiError::invalid("quorum", format!("{q:?}: expected majority, any, all or a number")))?,
    };
    let policy = AlertPolicy {
        confirmations: body.confirmations.unwrap_or(defaults.confirmations),
        recovery_confirmations: body.recovery_confirmations.unwrap_or(defaults.recovery_confirmations),
        quorum,
        notify_on_recovery: body.notify_on_recovery.unwrap_or(defaults.notify_on_recovery),
        renotify_interval_ms: parse_duration("renotify", body.renotify.as_deref(), Duration::ZERO)?,
        channels: body.channels,
    };
    let draft = MonitorDraft {
        name: body.name,
        check,
        interval_ms,
        timeout_ms,
        enabled: !body.paused,
        public: body.public,
        tags: body.tags,
        policy,
    };
    match cluster.write(Command::CreateMonitor(draft)).await? {
        Response::Monitor(m) => view(cluster, &m),
        other => Err(ApiError::internal(format!("unexpected answer from apply: {other:?}"))),
    }
}
