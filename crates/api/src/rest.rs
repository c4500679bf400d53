//! The admin REST API (JSON under `/api/v1`), the health endpoints, and the
//! admin gRPC service mounted on the same port.

use std::sync::Arc;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::cluster::Cluster;
use crate::dto::{
    AddNode, ChannelTestView, ChannelView, ClusterStatus, CreateMonitor, DeclareIncident, HistoryView, IncidentAction,
    IncidentView, MaintenanceView, MonitorView, NodeView, NotificationView, Setting, SettingValue, StaleView,
    StateHashView,
};
use crate::error::ApiError;
use crate::metrics::LocalMetrics;
use crate::ops;

#[derive(Clone)]
struct AppState {
    cluster: Cluster,
    /// The bearer token every protected route needs.
    token: Arc<str>,
    /// The node's own figures for `/metrics`.
    local: Option<Arc<dyn LocalMetrics>>,
}

/// The API port's router: REST, health, metrics and the admin gRPC service
/// (HTTP/2). `token` guards everything but health.
pub fn router(cluster: Cluster, token: &str) -> Router {
    router_with(cluster, token, None)
}

/// [`router`], with the node's own figures added to `/metrics`.
pub fn router_with(cluster: Cluster, token: &str, local: Option<Arc<dyn LocalMetrics>>) -> Router {
    let state = AppState { cluster: cluster.clone(), token: Arc::from(token), local };
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/cluster", get(cluster_status))
        .route("/api/v1/cluster/state-hash", get(state_hash))
        .route("/api/v1/cluster/nodes", post(add_node))
        .route("/api/v1/cluster/nodes/{id}", delete(remove_node))
        .route("/api/v1/settings/{key}", get(get_setting).put(put_setting))
        .route("/api/v1/monitors", get(list_monitors).post(create_monitor))
        .route("/api/v1/monitors/{id}", get(get_monitor).put(update_monitor).delete(delete_monitor))
        .route("/api/v1/monitors/{id}/pause", post(pause_monitor))
        .route("/api/v1/monitors/{id}/resume", post(resume_monitor))
        .route("/api/v1/monitors/{id}/nodes", get(monitor_nodes))
        .route("/api/v1/monitors/{id}/history", get(monitor_history))
        .route("/api/v1/incidents", get(list_incidents).post(declare_incident))
        .route("/api/v1/incidents/{id}", get(get_incident))
        .route("/api/v1/incidents/{id}/{action}", get(incident_read).post(incident_action))
        .route("/api/v1/channels", get(list_channels).post(create_channel))
        .route("/api/v1/channels/{name}", get(get_channel).put(replace_channel).delete(delete_channel))
        .route("/api/v1/channels/{name}/test", post(test_channel))
        .route("/api/v1/outbox", get(list_outbox))
        .route("/api/v1/maintenance", get(list_maintenance).post(create_maintenance))
        .route("/api/v1/maintenance/{id}", delete(delete_maintenance))
        .route_layer(middleware::from_fn_with_state(state.clone(), mark_stale))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_member))
        .route_layer(middleware::from_fn(idempotency_key))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let router =
        Router::new().route("/healthz", get(|| async { "ok\n" })).route("/readyz", get(readyz)).merge(protected);
    crate::admin_grpc::mount(router, cluster, token)
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

/// `Idempotency-Key: <1 to 128 visible ASCII characters>` on a write: it is
/// applied once per key for ten minutes, and a repeat gets the first answer
/// (`Command::Idempotent`), so a client that saw no answer can safely send it again.
async fn idempotency_key(req: Request, next: Next) -> Response {
    let key = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => Some(k.to_owned()),
            _ => {
                return ApiError::invalid("idempotency_key", "must be 1 to 128 visible ASCII characters")
                    .into_response()
            }
        },
    };
    crate::cluster::with_idempotency_key(key, next.run(req)).await
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if crate::admin_grpc::bearer_matches(presented, &state.token) {
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// A removed node, or one waiting to be added, answers every API request
/// (but `/metrics`) with why it has nothing to serve, rather than its frozen
/// or empty state.
async fn require_member(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/metrics" {
        return next.run(req).await;
    }
    match state.cluster.check_member() {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The header that marks a read whose state may be behind the cluster.
pub const STALE_HEADER: &str = "x-uptime-stale";

/// Reads served while this node hears no leader carry `X-Uptime-Stale: <age>s`
/// (how far the state's clock is behind this node's; see
/// [`Cluster::staleness`]). Cluster status says the same in its own fields.
async fn mark_stale(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let read = req.method() == axum::http::Method::GET
        && req.uri().path().starts_with("/api/v1/")
        && !req.uri().path().starts_with("/api/v1/cluster");
    // Judged once per request, so the header and the body's `stale` field
    // always agree, even when a leader is lost or found mid-request.
    let stale = state.cluster.staleness();
    let mut response = STALE.scope(stale.clone(), next.run(req)).await;
    if read && response.status().is_success() {
        if let Some(stale) = stale {
            let age = format!("{:.1}s", stale.age_ms as f64 / 1000.0);
            if let Ok(v) = axum::http::HeaderValue::from_str(&age) {
                response.headers_mut().insert(STALE_HEADER, v);
            }
        }
    }
    response
}

/// A monitor read with its `stale` mark (absent while a leader is heard).
#[derive(serde::Serialize)]
struct Marked<T> {
    #[serde(flatten)]
    view: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale: Option<StaleView>,
}

tokio::task_local! {
    /// This request's staleness, as [`mark_stale`] judged it.
    static STALE: Option<StaleView>;
}

fn marked<T>(cluster: &Cluster, view: T) -> Marked<T> {
    let stale = STALE.try_with(Clone::clone).unwrap_or_else(|_| cluster.staleness());
    Marked { view, stale }
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
    fn linearizable(&self) -> Result<bool, ApiError> {
        match self.consistency.as_deref() {
            None | Some("local") => Ok(false),
            Some("linearizable") => Ok(true),
            Some(other) => {
                Err(ApiError::invalid("consistency", format!("{other:?}: expected \"local\" or \"linearizable\"")))
            }
        }
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(e) = state.cluster.check_member() {
        return e.into_response();
    }
    match state.cluster.local_status().leader {
        Some(_) => (StatusCode::OK, "ready\n").into_response(),
        None => ApiError::unavailable("no leader known").into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let page = crate::metrics::render(&s.cluster, s.local.as_deref())?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], page).into_response())
}

async fn cluster_status(State(state): State<AppState>) -> Json<ClusterStatus> {
    Json(state.cluster.status().await)
}

async fn state_hash(State(s): State<AppState>, Query(o): Query<ReadOptions>) -> Result<Json<StateHashView>, ApiError> {
    Ok(Json(ops::state_hash(&s.cluster, o.linearizable()?).await?))
}

/// 200 once the node is a voter; 202 while it is still catching up as a
/// learner (it is promoted when it has).
async fn add_node(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<AddNode>,
) -> Result<(StatusCode, Json<ClusterStatus>), ApiError> {
    let id = body.id;
    let status = ops::add_node(&s.cluster, body).await?;
    let voter = status.members.iter().any(|m| m.id == id && m.voter);
    Ok((if voter { StatusCode::OK } else { StatusCode::ACCEPTED }, Json(status)))
}

async fn remove_node(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<ClusterStatus>, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::invalid("id", format!("{id:?} is not a node id")))?;
    Ok(Json(ops::remove_node(&s.cluster, id).await?))
}

async fn get_setting(
    State(s): State<AppState>,
    Path(key): Path<String>,
    Query(o): Query<ReadOptions>,
) -> Result<Json<Setting>, ApiError> {
    Ok(Json(ops::get_setting(&s.cluster, key, o.linearizable()?).await?))
}

async fn put_setting(
    State(s): State<AppState>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<SettingValue>,
) -> Result<Json<Setting>, ApiError> {
    Ok(Json(ops::put_setting(&s.cluster, key, body.value).await?))
}

async fn list_monitors(
    State(s): State<AppState>,
    Query(o): Query<ReadOptions>,
) -> Result<Json<Vec<Marked<MonitorView>>>, ApiError> {
    let views = ops::list_monitors(&s.cluster, o.linearizable()?).await?;
    Ok(Json(views.into_iter().map(|v| marked(&s.cluster, v)).collect()))
}

async fn get_monitor(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(o): Query<ReadOptions>,
) -> Result<Json<Marked<MonitorView>>, ApiError> {
    Ok(Json(marked(&s.cluster, ops::get_monitor(&s.cluster, &id, o.linearizable()?).await?)))
}

async fn delete_monitor(State(s): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    ops::delete_monitor(&s.cluster, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_monitor(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<CreateMonitor>,
) -> Result<(StatusCode, Json<MonitorView>), ApiError> {
    Ok((StatusCode::CREATED, Json(ops::create_monitor(&s.cluster, body).await?)))
}

async fn pause_monitor(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<MonitorView>, ApiError> {
    Ok(Json(ops::set_paused(&s.cluster, &id, true).await?))
}

async fn resume_monitor(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<MonitorView>, ApiError> {
    Ok(Json(ops::set_paused(&s.cluster, &id, false).await?))
}

async fn monitor_nodes(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Vec<NodeView>>, ApiError> {
    Ok(Json(ops::node_view(&s.cluster, &id).await?))
}

#[derive(Deserialize)]
struct HistoryQuery {
    /// How far back from now, e.g. 24h (default), 30d.
    range: Option<String>,
}

async fn monitor_history(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryView>, ApiError> {
    Ok(Json(ops::history(&s.cluster, &id, q.range.as_deref()).await?))
}

#[derive(Deserialize)]
struct IncidentQuery {
    /// open, triggered, acknowledged, resolved or all (default).
    state: Option<String>,
}

async fn list_incidents(
    State(s): State<AppState>,
    Query(q): Query<IncidentQuery>,
) -> Result<Json<Vec<IncidentView>>, ApiError> {
    Ok(Json(ops::list_incidents(&s.cluster, q.state.as_deref()).await?))
}

async fn get_incident(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<IncidentView>, ApiError> {
    Ok(Json(ops::get_incident(&s.cluster, &id).await?))
}

/// Who an incident action is attributed to: `X-Uptime-User`, else "api".
fn actor(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-uptime-user")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or("api")
        .chars()
        .take(200)
        .collect()
}

async fn declare_incident(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<DeclareIncident>,
) -> Result<(StatusCode, Json<IncidentView>), ApiError> {
    Ok((StatusCode::CREATED, Json(ops::declare_incident(&s.cluster, body, actor(&headers)).await?)))
}

async fn incident_action(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<IncidentView>, ApiError> {
    // Actions without fields (ack, resolve, reopen) may come without a body.
    let body: IncidentAction = if body.iter().all(u8::is_ascii_whitespace) {
        IncidentAction::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", e.to_string()))?
    };
    Ok(Json(ops::incident_action(&s.cluster, &id, &action, body, actor(&headers)).await?))
}

/// `GET /api/v1/incidents/{id}/deliveries`: the incident's notifications and
/// their delivery attempts.
async fn incident_read(
    State(s): State<AppState>,
    Path((id, what)): Path<(String, String)>,
) -> Result<Json<Vec<NotificationView>>, ApiError> {
    match what.as_str() {
        "deliveries" => Ok(Json(ops::incident_deliveries(&s.cluster, &id).await?)),
        _ => Err(ApiError::not_found("no such route")),
    }
}

async fn list_channels(State(s): State<AppState>) -> Result<Json<Vec<ChannelView>>, ApiError> {
    Ok(Json(ops::list_channels(&s.cluster).await?))
}

async fn get_channel(State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<ChannelView>, ApiError> {
    Ok(Json(ops::get_channel(&s.cluster, &name).await?))
}

async fn create_channel(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<ChannelView>,
) -> Result<(StatusCode, Json<ChannelView>), ApiError> {
    Ok((StatusCode::CREATED, Json(ops::put_channel(&s.cluster, body, false).await?)))
}

async fn replace_channel(
    State(s): State<AppState>,
    Path(name): Path<String>,
    JsonBody(mut body): JsonBody<ChannelView>,
) -> Result<Json<ChannelView>, ApiError> {
    if body.name.is_empty() {
        body.name.clone_from(&name);
    } else if body.name != name {
        return Err(ApiError::invalid("name", "a channel cannot be renamed: the body's name differs from the path's"));
    }
    Ok(Json(ops::put_channel(&s.cluster, body, true).await?))
}

async fn delete_channel(State(s): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    ops::delete_channel(&s.cluster, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn test_channel(State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<ChannelTestView>, ApiError> {
    Ok(Json(ops::test_channel(&s.cluster, &name).await?))
}

#[derive(Deserialize)]
struct OutboxQuery {
    /// pending, claimed, sent, failed, dead, due or all (default).
    state: Option<String>,
}

async fn list_outbox(
    State(s): State<AppState>,
    Query(q): Query<OutboxQuery>,
) -> Result<Json<Vec<NotificationView>>, ApiError> {
    Ok(Json(ops::list_outbox(&s.cluster, q.state.as_deref()).await?))
}

async fn list_maintenance(State(s): State<AppState>) -> Result<Json<Vec<MaintenanceView>>, ApiError> {
    Ok(Json(ops::list_maintenance(&s.cluster).await?))
}

async fn create_maintenance(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<MaintenanceView>,
) -> Result<(StatusCode, Json<MaintenanceView>), ApiError> {
    Ok((StatusCode::CREATED, Json(ops::create_maintenance(&s.cluster, body).await?)))
}

async fn delete_maintenance(State(s): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    ops::delete_maintenance(&s.cluster, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update_monitor(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CreateMonitor>,
) -> Result<Json<MonitorView>, ApiError> {
    Ok(Json(ops::update_monitor(&s.cluster, &id, body).await?))
}
