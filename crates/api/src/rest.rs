//! The admin REST API (JSON under `/api/v1`) and the health endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use uptime_probe::{CheckSpec, HttpSpec};
use uptime_raft_store::{Command, MonitorDraft, PeerNode, Response as SmResponse};

use crate::cluster::Cluster;
use crate::dto::{AddNode, ClusterStatus, CreateMonitor, MonitorView, Setting, SettingValue, StateHashView};
use crate::error::ApiError;

#[derive(Clone)]
struct AppState {
    cluster: Cluster,
    /// The bearer token every protected route needs.
    token: Arc<str>,
}

/// The API port's router. `token` guards everything but health.
pub fn router(cluster: Cluster, token: &str) -> Router {
    let state = AppState { cluster, token: Arc::from(token) };
    let protected = Router::new()
        .route("/api/v1/cluster", get(cluster_status))
        .route("/api/v1/cluster/state-hash", get(state_hash))
        .route("/api/v1/cluster/nodes", axum::routing::post(add_node))
        .route("/api/v1/cluster/nodes/{id}", delete(remove_node))
        .route("/api/v1/settings/{key}", get(get_setting).put(put_setting))
        .route("/api/v1/monitors", get(list_monitors).post(create_monitor))
        .route("/api/v1/monitors/{id}", get(get_monitor).delete(delete_monitor))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(protected)
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let presented =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), state.token.as_bytes()) => next.run(req).await,
        _ => ApiError::unauthorized().into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Json<T>` whose rejections use the error envelope.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => Err(ApiError::invalid("body", rejection.body_text())),
        }
    }
}

#[derive(Deserialize)]
struct ReadOptions {
    /// `linearizable` waits until this node has applied every write committed before the read.
    #[serde(default)]
    consistency: Option<String>,
}

impl ReadOptions {
    async fn apply(&self, cluster: &Cluster) -> Result<(), ApiError> {
        match self.consistency.as_deref() {
            None | Some("local") => Ok(()),
            Some("linearizable") => cluster.linearize().await,
            Some(other) => {
                Err(ApiError::invalid("consistency", format!("{other:?}: expected \"local\" or \"linearizable\"")))
            }
        }
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let status = state.cluster.local_status();
    match status.leader {
        Some(_) => (StatusCode::OK, "ready\n").into_response(),
        None => ApiError::unavailable("no leader known").into_response(),
    }
}

async fn cluster_status(State(state): State<AppState>) -> Json<ClusterStatus> {
    Json(state.cluster.status().await)
}

async fn state_hash(
    State(state): State<AppState>,
    Query(opts): Query<ReadOptions>,
) -> Result<Json<StateHashView>, ApiError> {
    opts.apply(&state.cluster).await?;
    let h = state.cluster.reader().state_hash()?;
    Ok(Json(StateHashView { applied_index: h.applied_index, hash: h.hash }))
}

async fn add_node(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<AddNode>,
) -> Result<Json<ClusterStatus>, ApiError> {
    if body.id == 0 {
        return Err(ApiError::invalid("id", "node ids start at 1"));
    }
    if body.peer_addr.parse::<std::net::SocketAddr>().is_err() && !body.peer_addr.contains(':') {
        return Err(ApiError::invalid("peer_addr", format!("{:?} is not host:port", body.peer_addr)));
    }
    if !(body.api_addr.starts_with("http://") || body.api_addr.starts_with("https://")) {
        return Err(ApiError::invalid("api_addr", format!("{:?} is not an http(s):// URL", body.api_addr)));
    }
    let existing = state.cluster.local_status();
    if existing.members.iter().any(|m| m.id == body.id) {
        return Err(ApiError::new(409, "conflict", format!("node {} is already a member", body.id)).with_field("id"));
    }
    state.cluster.add_node(body.id, PeerNode { peer_addr: body.peer_addr, api_addr: body.api_addr }).await?;
    Ok(Json(state.cluster.status().await))
}

async fn remove_node(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ClusterStatus>, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::invalid("id", format!("{id:?} is not a node id")))?;
    let existing = state.cluster.local_status();
    if !existing.members.iter().any(|m| m.id == id) {
        return Err(ApiError::not_found(format!("node {id} is not a member")));
    }
    state.cluster.remove_node(id).await?;
    Ok(Json(state.cluster.status().await))
}

async fn get_setting(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Json<Setting>, ApiError> {
    opts.apply(&state.cluster).await?;
    match state.cluster.reader().setting(&key)? {
        Some(value) => Ok(Json(Setting { key, value })),
        None => Err(ApiError::not_found(format!("no setting {key:?}"))),
    }
}

async fn put_setting(
    State(state): State<AppState>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<SettingValue>,
) -> Result<Json<Setting>, ApiError> {
    state.cluster.write(Command::SetSetting { key: key.clone(), value: body.value.clone() }).await?;
    Ok(Json(Setting { key, value: body.value }))
}

async fn list_monitors(
    State(state): State<AppState>,
    Query(opts): Query<ReadOptions>,
) -> Result<Json<Vec<MonitorView>>, ApiError> {
    opts.apply(&state.cluster).await?;
    let monitors = state.cluster.reader().list_monitors()?;
    Ok(Json(monitors.iter().map(MonitorView::from).collect()))
}

async fn get_monitor(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(opts): Query<ReadOptions>,
) -> Result<Json<MonitorView>, ApiError> {
    opts.apply(&state.cluster).await?;
    match state.cluster.reader().find_monitor(&id)? {
        Some(m) => Ok(Json(MonitorView::from(&m))),
        None => Err(ApiError::not_found(format!("no monitor {id:?}"))),
    }
}

async fn delete_monitor(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let monitor =
        state.cluster.reader().find_monitor(&id)?.ok_or_else(|| ApiError::not_found(format!("no monitor {id:?}")))?;
    state.cluster.write(Command::DeleteMonitor { id: monitor.id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_duration(field: &str, value: Option<&str>, default: Duration) -> Result<u64, ApiError> {
    let d = match value {
        None => default,
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| ApiError::invalid(field, format!("{s:?} is not a duration (e.g. 30s, 5m): {e}")))?,
    };
    Ok(d.as_millis() as u64)
}

async fn create_monitor(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateMonitor>,
) -> Result<(StatusCode, Json<MonitorView>), ApiError> {
    let mut check =
        CheckSpec::from_target(&body.kind, &body.target).map_err(|e| ApiError::invalid(e.field, e.to_string()))?;
    if !body.expect.is_empty() {
        match &mut check {
            CheckSpec::Http(HttpSpec { expect_status, .. }) => expect_status.clone_from(&body.expect),
            _ => return Err(ApiError::invalid("expect", "only http checks take expected status codes")),
        }
        check.validate().map_err(|e| ApiError::invalid(e.field, e.to_string()))?;
    }
    let interval_ms = parse_duration("interval", body.interval.as_deref(), Duration::from_secs(30))?;
    let default_timeout = Duration::from_millis(interval_ms.min(10_000));
    let timeout_ms = parse_duration("timeout", body.timeout.as_deref(), default_timeout)?;
    let draft = MonitorDraft {
        name: body.name,
        check,
        interval_ms,
        timeout_ms,
        enabled: !body.paused,
        public: body.public,
        tags: body.tags,
    };
    match state.cluster.write(Command::CreateMonitor(draft)).await? {
        SmResponse::Monitor(m) => Ok((StatusCode::CREATED, Json(MonitorView::from(&m)))),
        other => Err(ApiError::internal(format!("unexpected answer from apply: {other:?}"))),
    }
}
