//! Operational routes: health, readiness, Prometheus metrics, the OpenAPI document, server facts,
//! and the JSON answers for unknown routes and methods.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::error::ApiError;
use super::hooks;
use super::native;
use super::AppState;

/// Liveness: always `OK` while the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "the text OK", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "OK"
}

/// Readiness: 200 when storage is open and writable, 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = String, content_type = "text/plain"),
        (status = 503, body = String, content_type = "text/plain")))]
pub async fn readyz(State(s): State<AppState>) -> Response {
    let info = s.engine.store_info();
    if info.healthy {
        (StatusCode::OK, "READY").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable").into_response()
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    let body = s.telemetry.render(&s.engine).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[derive(Serialize, ToSchema)]
pub struct ServerInfo {
    pub version: String,
    pub started_at: String,
    pub uptime_seconds: u64,
    pub storage_backend: String,
    pub storage_bytes: u64,
    pub messages: u64,
    pub healthy: bool,
    pub max_message_bytes: u32,
    pub max_request_bytes: usize,
}

/// Facts about this server (for the dashboard and scripts).
#[utoipa::path(get, path = "/v1/server", tag = "ops", responses((status = 200, body = ServerInfo)))]
pub async fn server_info(State(s): State<AppState>) -> Json<ServerInfo> {
    let info = s.engine.store_info();
    let now = s.engine.now();
    Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: native::rfc3339(s.engine.started_at()),
        uptime_seconds: ((now - s.engine.started_at()).max(0) / 1000) as u64,
        storage_backend: info.backend.to_string(),
        storage_bytes: info.bytes_on_disk,
        messages: info.messages,
        healthy: info.healthy,
        max_message_bytes: s.engine.options().max_message_bytes,
        max_request_bytes: s.max_request_bytes,
    })
}

#[derive(OpenApi)]
#[openapi(
    info(title = "sluice", description = "Durable queues over HTTP. Errors are `{\"error\":{\"code\",\"message\"}}`."),
    paths(
        healthz, readyz, metrics, server_info,
        native::list_queues, native::put_queue, native::get_queue, native::delete_queue,
        native::purge_queue, native::publish, native::peek, native::receive, native::ack,
        native::nack, native::visibility, native::redrive,
        hooks::put_subscription, hooks::list_subscriptions, hooks::get_subscription,
        hooks::delete_subscription, hooks::attempts, hooks::create_timer, hooks::get_timer,
        hooks::cancel_timer, hooks::timer_summary, hooks::put_schedule, hooks::list_schedules,
        hooks::get_schedule, hooks::delete_schedule,
        super::ingest::list, super::ingest::get_file, super::ingest::upload_raw,
    ),
    components(schemas(
        super::error::ErrorBody, super::error::ErrorDetail, ServerInfo,
        native::QueueConfigBody, native::QueueConfigView, native::QueueView,
        native::QueueList, native::Purged, native::PublishBody, native::PublishBatchBody,
        native::Published, native::PublishedBatch, native::ReceiveBody, native::MessageView,
        native::MessageList, native::AckBody, native::NackBody, native::FailedReceipt,
        native::AckResult, native::NackResult, native::VisibilityBody, native::VisibilityResult,
        native::RedriveBody, native::Redriven,
        hooks::BackoffBody, hooks::BatchBody, hooks::SubscriptionBody, hooks::SubscriptionStats,
        hooks::SubscriptionView, hooks::SubscriptionList, sluice_engine::push::Attempt, sluice_engine::push::Outcome, hooks::AttemptList,
        hooks::TimerBody, hooks::TimerView, hooks::TimerSummary, hooks::ScheduleBody,
        hooks::ScheduleView, hooks::ScheduleList,
        crate::ingest::IngestView, crate::ingest::WatchView, crate::ingest::WaitingFile,
        crate::ingest::FileRecord, crate::ingest::FileState, crate::ingest::Format,
        crate::ingest::DedupKey, crate::ingest::upload::Accepted, super::ingest::UploadAnswer,
        sluice_engine::push::Backoff, sluice_engine::push::BatchConfig,
    )),
    tags((name = "queues"), (name = "messages"), (name = "push"), (name = "timers"), (name = "ops"))
)]
pub struct ApiDoc;

/// This document.
pub async fn openapi() -> Response {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    Json(doc).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /openapi.json",
    )
}
