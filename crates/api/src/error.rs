use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use uptime_raft_store::{RejectCode, Rejection};

use crate::dto::{ErrorBody, ErrorEnvelope};

/// What went wrong, as callers branch on it. Each code has one HTTP status,
/// one gRPC code and one name in the error envelope, all in [`ErrorCode::http`],
/// [`ErrorCode::grpc`] and [`ErrorCode::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Bad input; `field` names it.
    InvalidArgument,
    Unauthenticated,
    NotFound,
    /// It exists already (a name taken, a member added twice).
    Conflict,
    /// The state does not allow it now (a membership change under way).
    FailedPrecondition,
    /// No leader, or the leader cannot be reached: nothing was done; retry.
    Unavailable,
    /// This node is installing a snapshot: ask again shortly, or another node.
    Installing,
    /// A write was proposed but whether it committed is not known.
    UnknownOutcome,
    /// This node was removed from the cluster: it serves nothing but this answer.
    Removed,
    /// This node waits to be added (`join = true`): it has no cluster to show yet.
    NotMember,
    /// A node the request needs (a node being added) did not answer in time.
    Unreachable,
    Internal,
}

impl ErrorCode {
    pub fn http(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::FailedPrecondition => 409,
            ErrorCode::Unavailable | ErrorCode::Installing | ErrorCode::UnknownOutcome | ErrorCode::NotMember => 503,
            ErrorCode::Removed => 410,
            ErrorCode::Unreachable => 504,
            ErrorCode::Internal => 500,
        }
    }

    pub fn grpc(self) -> tonic::Code {
        match self {
            ErrorCode::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::Conflict => tonic::Code::AlreadyExists,
            ErrorCode::FailedPrecondition | ErrorCode::Removed => tonic::Code::FailedPrecondition,
            ErrorCode::Unavailable | ErrorCode::Installing | ErrorCode::NotMember | ErrorCode::Unreachable => {
                tonic::Code::Unavailable
            }
            ErrorCode::UnknownOutcome => tonic::Code::DeadlineExceeded,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }

    /// The `code` of the error envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Installing => "installing",
            ErrorCode::UnknownOutcome => "unknown_outcome",
            ErrorCode::Removed => "removed",
            ErrorCode::NotMember => "not_member",
            ErrorCode::Unreachable => "unreachable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An API error: what HTTP and gRPC callers are told. The mapping from every
/// internal error to a code lives here and nowhere else.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), field: None }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        self.code.http()
    }

    /// A 400 naming the input field at fault; the message starts with the field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        ApiError { field: Some(field), ..ApiError::new(ErrorCode::InvalidArgument, message) }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::NotFound, message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(ErrorCode::Unauthenticated, "a valid bearer token is required (Authorization: Bearer TOKEN)")
    }

    /// The cluster cannot take the request now (no leader, leader unreachable).
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Unavailable, message)
    }

    /// A write was proposed but its fate is unknown: it may still commit.
    pub fn unknown_outcome(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::UnknownOutcome, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Internal, message)
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code.grpc(), self.message.clone())
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let code = match r.code {
            RejectCode::Invalid => ErrorCode::InvalidArgument,
            RejectCode::NotFound => ErrorCode::NotFound,
            RejectCode::Conflict => ErrorCode::Conflict,
        };
        ApiError { code, message: r.message, field: r.field }
    }
}

impl From<uptime_raft_store::Error> for ApiError {
    fn from(e: uptime_raft_store::Error) -> Self {
        match e {
            uptime_raft_store::Error::Installing => ApiError::new(ErrorCode::Installing, e.to_string()),
            e => ApiError::internal(format!("reading local state: {e}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorEnvelope {
            error: ErrorBody { code: self.code.as_str().to_string(), message: self.message, field: self.field },
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9 (typed errors): the gRPC mapping branched on HTTP numbers, so a
    /// refused membership change (409) reached gRPC callers as AlreadyExists.
    #[test]
    fn every_code_has_one_http_status_and_one_grpc_code() {
        for (code, http, grpc, name) in [
            (ErrorCode::InvalidArgument, 400, tonic::Code::InvalidArgument, "invalid_argument"),
            (ErrorCode::Unauthenticated, 401, tonic::Code::Unauthenticated, "unauthenticated"),
            (ErrorCode::NotFound, 404, tonic::Code::NotFound, "not_found"),
            (ErrorCode::Conflict, 409, tonic::Code::AlreadyExists, "conflict"),
            (ErrorCode::FailedPrecondition, 409, tonic::Code::FailedPrecondition, "failed_precondition"),
            (ErrorCode::Unavailable, 503, tonic::Code::Unavailable, "unavailable"),
            (ErrorCode::Installing, 503, tonic::Code::Unavailable, "installing"),
            (ErrorCode::UnknownOutcome, 503, tonic::Code::DeadlineExceeded, "unknown_outcome"),
            (ErrorCode::Removed, 410, tonic::Code::FailedPrecondition, "removed"),
            (ErrorCode::NotMember, 503, tonic::Code::Unavailable, "not_member"),
            (ErrorCode::Unreachable, 504, tonic::Code::Unavailable, "unreachable"),
            (ErrorCode::Internal, 500, tonic::Code::Internal, "internal"),
        ] {
            let e = ApiError::new(code, "m");
            assert_eq!((e.status(), e.to_status().code(), code.as_str()), (http, grpc, name));
        }
    }
}
