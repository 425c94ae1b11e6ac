//! Operational routes: health, readiness, Prometheus metrics, server facts and the dashboard's
//! rates.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::AppState;

/// Liveness: always `OK` while the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "the text OK", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "OK"
}

/// Readiness: 200 when storage accepts new messages, 503 otherwise (the log writer failing,
/// or the disk below `--min-free-bytes`: receives and acks still work then; the reasons are in
/// `/v1/server` `storage_problems`).
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = String, content_type = "text/plain"),
        (status = 503, body = String, content_type = "text/plain")))]
pub async fn readyz(State(s): State<AppState>) -> Response {
    let info = s.engine.store_info();
    if info.healthy {
        (StatusCode::OK, "READY").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "storage unavailable: new messages are refused (see /v1/server storage_problems)",
        )
            .into_response()
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
        started_at: sluice_engine::rfc3339(s.engine.started_at()),
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
        started_at: sluice_engine::rfc3339(s.engine.started_at()),
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
