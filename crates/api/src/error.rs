use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use uptime_raft_store::{RejectCode, Rejection};

use crate::dto::{ErrorBody, ErrorEnvelope};

/// An API error: what HTTP and gRPC callers are told. The mapping from every
/// internal error to a status lives here and nowhere else.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None }
    }

    /// A 400 naming the input field at fault; the message starts with the field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        ApiError { field: Some(field), ..ApiError::new(400, "invalid_argument", message) }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(404, "not_found", message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(401, "unauthenticated", "a valid bearer token is required (Authorization: Bearer TOKEN)")
    }

    /// The cluster cannot take the request now (no leader, leader unreachable).
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "unavailable", message)
    }

    /// A write was proposed but its fate is unknown: it may still commit.
    pub fn unknown_outcome(message: impl Into<String>) -> Self {
        ApiError::new(503, "unknown_outcome", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "internal", message)
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn to_status(&self) -> tonic::Status {
        let code = match self.status {
            400 => tonic::Code::InvalidArgument,
            401 => tonic::Code::Unauthenticated,
            404 => tonic::Code::NotFound,
            409 => tonic::Code::AlreadyExists,
            503 if self.code == "unknown_outcome" => tonic::Code::DeadlineExceeded,
            503 => tonic::Code::Unavailable,
            _ => tonic::Code::Internal,
        };
        tonic::Status::new(code, self.message.clone())
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let (status, code) = match r.code {
            RejectCode::Invalid => (400, "invalid_argument"),
            RejectCode::NotFound => (404, "not_found"),
            RejectCode::Conflict => (409, "conflict"),
        };
        ApiError { status, code, message: r.message, field: r.field }
    }
}

impl From<uptime_raft_store::Error> for ApiError {
    fn from(e: uptime_raft_store::Error) -> Self {
        match e {
            uptime_raft_store::Error::Installing => {
                ApiError { status: 503, code: "installing", message: e.to_string(), field: None }
            }
            e => ApiError::internal(format!("reading local state: {e}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorEnvelope {
            error: ErrorBody { code: self.code.to_string(), message: self.message, field: self.field },
        };
        (status, Json(body)).into_response()
    }
}
