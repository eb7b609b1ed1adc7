//! The error answer of the REST API: a status and a JSON `errors` list (Flink's shape), each
//! entry naming what was wrong.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer: `{"errors": ["…"]}` with a 4xx (the client's mistake) or 5xx status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What was wrong, one entry per problem.
    pub errors: Vec<String>,
}

impl ApiError {
    /// An answer with `status` and one message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            errors: vec![message.into()],
        }
    }
    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404: no such job, vertex or checkpoint.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    /// 409: the request conflicts with the job's state (e.g. a checkpoint while one is busy).
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, message)
    }
    /// 500: the server failed.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "errors": self.errors });
        (self.status, Json(body)).into_response()
    }
}

/// The REST handlers' result.
pub(crate) type ApiResult<T> = Result<T, ApiError>;
