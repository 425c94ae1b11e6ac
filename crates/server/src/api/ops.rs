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
    /// What is wrong with the storage, in words (damage found at start, failing writes).
    pub storage_problems: Vec<String>,
    pub max_message_bytes: u32,
    pub max_request_bytes: usize,
    /// Streaming consumers open now (WebSocket, HTTP/2 duplex, miniqueue subscribe).
    pub streams_open: usize,
    /// The most that may be open at once (`--max-streams`).
    pub max_streams: usize,
    /// The nodes serving this data: with embedded storage, this one; with Redis, every node
    /// that sent a heartbeat in the last 10 s (they send one a second).
    pub nodes: Vec<NodeView>,
}

#[derive(Serialize, ToSchema)]
pub struct NodeView {
    /// The address the node listens on.
    pub address: String,
    pub version: String,
    pub started_at: String,
    /// The node that answered.
    pub this: bool,
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
        storage_problems: info.problems,
        max_message_bytes: s.engine.options().max_message_bytes,
        max_request_bytes: s.max_request_bytes,
        streams_open: s.streams.open(),
        max_streams: s.streams.max(),
        nodes: nodes(&s),
    })
}

fn nodes(s: &AppState) -> Vec<NodeView> {
    let me = NodeView {
        address: s.listen.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: native::rfc3339(s.engine.started_at()),
        this: true,
    };
    let mut out: Vec<NodeView> = s
        .engine
        .nodes()
        .iter()
        .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .map(|v| {
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            NodeView {
                address: text("address"),
                version: text("version"),
                started_at: text("started_at"),
                this: false,
            }
        })
        .filter(|n| !(n.address == me.address && n.started_at == me.started_at))
        .collect();
    out.insert(0, me);
    out
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RatesQuery {
    /// Only this queue's series (the totals are always there).
    pub queue: Option<String>,
    /// Include each queue's series (default true); false gives only the totals.
    pub per_queue: Option<bool>,
    /// Only the last N intervals (1-300; default all kept).
    pub points: Option<usize>,
}

/// Publish, receive and ack rates per second over the last 10 minutes (one point every 2 s,
/// kept in memory since the server started), for the dashboard's chart.
#[utoipa::path(get, path = "/v1/rates", tag = "ops", params(RatesQuery),
    responses((status = 200, body = crate::rates::RatesView), (status = 400, body = super::error::ErrorBody)))]
pub async fn rates(
    State(s): State<AppState>,
    super::body::QueryParams(q): super::body::QueryParams<RatesQuery>,
) -> Result<Json<crate::rates::RatesView>, ApiError> {
    if let Some(p) = q.points {
        if !(1..=crate::rates::KEEP).contains(&p) {
            return Err(ApiError::bad_request(
                "invalid_argument",
                format!("points: {p} is outside 1-{}", crate::rates::KEEP),
            ));
        }
    }
    Ok(Json(s.rates.view(
        q.queue.as_deref(),
        q.per_queue.unwrap_or(true),
        q.points,
    )))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "sluice", description = "Durable queues over HTTP. Errors are `{\"error\":{\"code\",\"message\"}}`."),
    paths(
        healthz, readyz, metrics, server_info, rates,
        native::list_queues, native::put_queue, native::get_queue, native::delete_queue,
        native::purge_queue, native::publish, native::peek, native::receive, native::ack,
        native::nack, native::visibility, native::redrive,
        hooks::put_subscription, hooks::list_subscriptions, hooks::get_subscription,
        hooks::delete_subscription, hooks::attempts, hooks::recent_attempts, hooks::create_timer, hooks::get_timer,
        hooks::cancel_timer, hooks::timer_summary, hooks::put_schedule, hooks::list_schedules,
        hooks::get_schedule, hooks::delete_schedule,
        super::ingest::list, super::ingest::get_file, super::ingest::upload_raw,
    ),
    components(schemas(
        super::error::ErrorBody, super::error::ErrorDetail, ServerInfo, NodeView,
        crate::rates::RatesView, crate::rates::Series,
        native::QueueConfigBody, native::QueueConfigView, native::QueueView,
        native::QueueList, native::Purged, native::PublishBody, native::PublishBatchBody,
        native::Published, native::PublishedBatch, native::ReceiveBody, native::MessageView,
        native::MessageList, native::AckBody, native::NackBody, native::FailedReceipt,
        native::AckResult, native::NackResult, native::VisibilityBody, native::VisibilityResult,
        native::RedriveBody, native::Redriven,
        hooks::BackoffBody, hooks::BatchBody, hooks::SubscriptionBody, hooks::SubscriptionStats,
        hooks::SubscriptionView, hooks::SubscriptionList, hooks::RecentAttempts, hooks::MessageAttempts, sluice_engine::push::Attempt, sluice_engine::push::Outcome, hooks::AttemptList,
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
    document_common_answers(&mut doc);
    Json(doc).into_response()
}

/// What every route shares, added in one place rather than on each handler: queue names in
/// paths have a documented pattern, and every operation may answer the generic errors
/// (bad input, missing or insufficient API key, too large, too slow, storage unavailable).
fn document_common_answers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    let common = [
        (
            "400",
            "bad input: the message names the field and the limit",
        ),
        ("401", "API keys are configured and no valid key was sent"),
        ("403", "the API key's role or queues do not allow this call"),
        ("408", "the request body did not arrive in time"),
        ("413", "the request body is larger than the server accepts"),
        ("503", "storage is unavailable"),
    ];
    let queue_name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$"))
        .max_length(Some(85))
        .min_length(Some(1))
        .build();
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            let public = op
                .tags
                .as_ref()
                .is_some_and(|t| t.iter().any(|t| t == "ops"))
                && op
                    .operation_id
                    .as_deref()
                    .is_some_and(|id| matches!(id, "healthz" | "readyz" | "openapi"));
            for (code, what) in common {
                if public && code != "503" {
                    continue;
                }
                op.responses
                    .responses
                    .entry(code.to_string())
                    .or_insert_with(|| error(what));
            }
            for p in op.parameters.iter_mut().flatten() {
                if p.name == "queue" && p.parameter_in == ParameterIn::Path {
                    p.schema = Some(RefOr::T(queue_name.clone().into()));
                }
            }
        }
    }
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
