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
use crate::dto::{AddNode, ClusterStatus, CreateMonitor, MonitorView, Setting, SettingValue, StateHashView};
use crate::error::ApiError;
use crate::ops;

#[derive(Clone)]
struct AppState {
    cluster: Cluster,
    /// The bearer token every protected route needs.
    token: Arc<str>,
}

/// The API port's router: REST, health, and the admin gRPC service (HTTP/2).
/// `token` guards everything but health.
pub fn router(cluster: Cluster, token: &str) -> Router {
    let state = AppState { cluster: cluster.clone(), token: Arc::from(token) };
    let protected = Router::new()
        .route("/api/v1/cluster", get(cluster_status))
        .route("/api/v1/cluster/state-hash", get(state_hash))
        .route("/api/v1/cluster/nodes", post(add_node))
        .route("/api/v1/cluster/nodes/{id}", delete(remove_node))
        .route("/api/v1/settings/{key}", get(get_setting).put(put_setting))
        .route("/api/v1/monitors", get(list_monitors).post(create_monitor))
        .route("/api/v1/monitors/{id}", get(get_monitor).delete(delete_monitor))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let router =
        Router::new().route("/healthz", get(|| async { "ok\n" })).route("/readyz", get(readyz)).merge(protected);
    crate::admin_grpc::mount(router, cluster, token)
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if crate::admin_grpc::bearer_matches(presented, &state.token) {
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
    }
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
    match state.cluster.local_status().leader {
        Some(_) => (StatusCode::OK, "ready\n").into_response(),
        None => ApiError::unavailable("no leader known").into_response(),
    }
}

async fn cluster_status(State(state): State<AppState>) -> Json<ClusterStatus> {
    Json(state.cluster.status().await)
}

async fn state_hash(State(s): State<AppState>, Query(o): Query<ReadOptions>) -> Result<Json<StateHashView>, ApiError> {
    Ok(Json(ops::state_hash(&s.cluster, o.linearizable()?).await?))
}

async fn add_node(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<AddNode>,
) -> Result<Json<ClusterStatus>, ApiError> {
    Ok(Json(ops::add_node(&s.cluster, body).await?))
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
) -> Result<Json<Vec<MonitorView>>, ApiError> {
    Ok(Json(ops::list_monitors(&s.cluster, o.linearizable()?).await?))
}

async fn get_monitor(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(o): Query<ReadOptions>,
) -> Result<Json<MonitorView>, ApiError> {
    Ok(Json(ops::get_monitor(&s.cluster, &id, o.linearizable()?).await?))
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
