//! The awe_queue-compatible API (seed 004), so its developer tool and scripts keep working:
//! `POST /send-message`, `GET /receive-message?count=N`, `DELETE /delete-message/{key}`,
//! `GET /get-stats`, under a configurable prefix (default the root) on one queue (default `awe`).
//!
//! A key is the message id. A checkout is a receive with the queue's visibility timeout (the
//! awe queue is created with 120 s, the seed's checkout lifetime); the receipts of open
//! checkouts are kept here, by key, so that delete-message can settle them. After a restart every
//! checkout is void anyway (leased messages become visible again), so this map needs no
//! persistence. Every answer carries the seed's CORS headers. `rescue_interval` reports the
//! seed's 2 s: sluice returns expired checkouts at the next receive (and in housekeeping every
//! second), so 2 s is an upper bound that holds.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_engine::{MessageId, Publish, QueueConfigPatch, ReceiveOptions};

use super::AppState;

/// The seed's checkout lifetime.
pub const CHECKOUT_LIFETIME_S: u32 = 120;

#[derive(Default)]
pub struct AweState {
    pub queue: String,
    /// key -> (receipt, lease end) of its open checkout.
    checkouts: Mutex<HashMap<String, (String, i64)>>,
}

impl AweState {
    pub fn new(queue: &str) -> Self {
        AweState {
            queue: queue.to_string(),
            checkouts: Mutex::new(HashMap::new()),
        }
    }
}

/// The default configuration of the awe queue when sluice creates it.
pub fn queue_defaults() -> QueueConfigPatch {
    QueueConfigPatch {
        visibility_timeout_seconds: Some(CHECKOUT_LIFETIME_S),
        ..Default::default()
    }
}

pub fn routes(prefix: &str) -> Router<AppState> {
    let r = Router::new()
        .route("/send-message", post(send).options(preflight))
        .route("/receive-message", get(receive).options(preflight))
        .route("/delete-message/{key}", delete(remove).options(preflight))
        .route("/get-stats", get(stats).options(preflight));
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        r
    } else {
        Router::new().nest(prefix, r)
    }
}

fn cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Origin, X-Requested-With, Content-Type, Accept"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS, HEAD, DELETE"),
    );
    r
}

fn ok(v: Value) -> Response {
    cors((StatusCode::OK, Json(v)).into_response())
}

fn error(status: StatusCode, message: &str) -> Response {
    cors((status, Json(json!({"status": "error", "message": message}))).into_response())
}

fn engine_error(e: sluice_engine::EngineError) -> Response {
    let api: super::error::ApiError = e.into();
    error(api.status, &api.message)
}

async fn preflight() -> Response {
    cors(StatusCode::NO_CONTENT.into_response())
}

async fn ensure_queue(s: &AppState) -> Result<(), Response> {
    if s.engine.queue_info(&s.awe.queue).await.is_err() {
        s.engine
            .put_queue(&s.awe.queue, queue_defaults())
            .await
            .map_err(engine_error)?;
    }
    Ok(())
}

async fn send(State(s): State<AppState>, body: axum::body::Bytes) -> Response {
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(|m| m.to_string())
        })
        .filter(|m| !m.is_empty());
    let Some(message) = message else {
        // The seed answers this one in plain text.
        return cors((StatusCode::BAD_REQUEST, "Message content required.").into_response());
    };
    if let Err(r) = ensure_queue(&s).await {
        return r;
    }
    match s
        .engine
        .publish(
            &s.awe.queue,
            vec![Publish {
                body: message.into_bytes(),
                ..Default::default()
            }],
        )
        .await
    {
        Ok(ids) => ok(json!({"status": "okay", "key": ids[0].to_string()})),
        Err(e) => engine_error(e),
    }
}

#[derive(Deserialize)]
struct Count {
    count: Option<String>,
}

async fn receive(State(s): State<AppState>, Query(q): Query<Count>) -> Response {
    let count = match q.count.as_deref().map(str::parse::<usize>) {
        None => 1,
        Some(Ok(n)) if (1..=sluice_engine::limits::RECEIVE_BATCH_MAX).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "count must be a whole number from 1 to {}.",
                    sluice_engine::limits::RECEIVE_BATCH_MAX
                ),
            )
        }
    };
    if let Err(r) = ensure_queue(&s).await {
        return r;
    }
    let got = match s
        .engine
        .receive(
            &s.awe.queue,
            ReceiveOptions {
                max_messages: count,
                wait_seconds: Some(0),
                visibility_timeout_seconds: None,
            },
        )
        .await
    {
        Ok(g) => g,
        Err(e) => return engine_error(e),
    };
    let mut checkouts = s.awe.checkouts.lock();
    // Forget checkouts whose lease is over: their messages went back to the queue.
    let now = s.engine.now();
    checkouts.retain(|_, (_, until)| *until > now);
    let messages: Vec<Value> = got
        .iter()
        .map(|d| {
            let key = d.message.id.to_string();
            checkouts.insert(key.clone(), (d.receipt.encode(), d.lease_until));
            json!({
                "key": key,
                "timestamp": d.message.enqueued_at,
                "retry_count": d.message.receive_count.saturating_sub(1),
                "message": String::from_utf8_lossy(&d.message.body),
            })
        })
        .collect();
    let message = if messages.is_empty() {
        "No messages available in queue."
    } else if messages.len() < count {
        "Fewer messages available than requested."
    } else {
        "Requested batch-size available."
    };
    ok(json!({"status": "okay", "message": message, "messages": messages}))
}

/// Deleting a key that is not checked out (unknown, already deleted, or its checkout expired and
/// the message went back to the queue) answers 404 with `{"status":"error"}`.
async fn remove(State(s): State<AppState>, Path(key): Path<String>) -> Response {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "Message not found or not checked out.",
        )
    };
    if MessageId::parse(&key).is_none() {
        return not_found();
    }
    let Some((receipt, _)) = s.awe.checkouts.lock().remove(&key) else {
        return not_found();
    };
    match s.engine.ack(&s.awe.queue, &[receipt]).await {
        Ok(r) if r.first().is_some_and(|x| x.is_ok()) => ok(json!({"status": "okay"})),
        Ok(_) => not_found(),
        Err(e) => engine_error(e),
    }
}

async fn stats(State(s): State<AppState>) -> Response {
    if let Err(r) = ensure_queue(&s).await {
        return r;
    }
    match s.engine.get_queue(&s.awe.queue).await {
        Ok((info, st)) => ok(json!({"status": "okay", "stats": {
            "queue_length": st.ready + st.delayed,
            "checkouts_count": st.in_flight,
            "checkout_lifetime": format!("{}s", info.config.visibility_timeout_seconds),
            "rescue_interval": "2s",
        }})),
        Err(e) => engine_error(e),
    }
}
