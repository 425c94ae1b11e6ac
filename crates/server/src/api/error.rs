//! The native API's error shape, `{"error":{"code":"snake_case","message":"..."}}`, and the one
//! place where engine errors become HTTP statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use sluice_engine::EngineError;
use utoipa::ToSchema;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema, Clone, Debug)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `queue_not_found`, `invalid_json`, `stale_receipt`.
    pub code: String,
    /// What was wrong, naming the field and the limit.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.to_string(),
            message: self.message.clone(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        use EngineError::*;
        let (status, code) = match &e {
            InvalidQueueName { .. } => (StatusCode::BAD_REQUEST, "invalid_queue_name"),
            QueueNotFound(_) => (StatusCode::NOT_FOUND, "queue_not_found"),
            InvalidArgument { .. } => (StatusCode::BAD_REQUEST, "invalid_argument"),
            MessageTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large"),
            InvalidReceipt => (StatusCode::BAD_REQUEST, "invalid_receipt"),
            StaleReceipt => (StatusCode::CONFLICT, "stale_receipt"),
            MessageGone => (StatusCode::GONE, "message_not_in_flight"),
            TooManyQueues { .. } | TooManyQueuesOnUse { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "too_many_queues")
            }
            StorageUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            StorageFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, "storage_full"),
            Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
            TooManyWaiters { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_waiters"),
            PushQueue(_) => (StatusCode::CONFLICT, "push_queue"),
            NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        (
            self.status,
            Json(ErrorBody {
                error: self.detail(),
            }),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The answer for a route that does not exist.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

/// The answer for a route that does not take the method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /openapi.json",
    )
}
