//! Messages: receive with a lease, peek, and how a message is shown (publish is `publish.rs`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sluice_engine::{rfc3339, Delivery, Engine, Message, MessageState, ReceiveOptions};
use utoipa::{IntoParams, ToSchema};

use crate::api::body::{parse_json_or_default, QueryParams, RawBody};
use crate::api::error::{ApiResult, ErrorBody};
use crate::api::AppState;

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReceiveBody {
    /// 1-100, default 1.
    pub max_messages: Option<usize>,
    /// Long poll: 0-20 s; default: the queue's `receive_wait_seconds` (0 unless set).
    /// Answers as soon as a message is available.
    pub wait_seconds: Option<u32>,
    /// Lease length, 0-43200 s; default: the queue's visibility timeout.
    pub visibility_timeout_seconds: Option<u32>,
}

/// A message as delivered or peeked. `body` holds UTF-8 text; other bodies come as `body_base64`.
#[derive(Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Present on received messages: ack, nack and visibility calls take it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    pub receive_count: u32,
    pub attributes: BTreeMap<String, String>,
    pub enqueued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_received_at: Option<String>,
    /// For received messages, when the lease ends; for peeked ones, when the message is visible.
    pub visible_at: String,
    /// ready, delayed or in_flight.
    pub state: String,
    /// Set on dead letters: the queue the message came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_source: Option<String>,
    /// The message group: FIFO order and locking on a FIFO queue, turns on a standard one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_group_id: Option<String>,
    /// The deduplication id it was published with (FIFO queues: given, or the body's SHA-256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deduplication_id: Option<String>,
    /// 0-9, higher first (4 unless published with another).
    pub priority: u8,
    /// When its time to live ends: it is never delivered after this moment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

fn message_view(m: Message, receipt: Option<String>) -> MessageView {
    let (body, body_base64) = match String::from_utf8(m.body) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(B64.encode(e.as_bytes()))),
    };
    MessageView {
        id: m.id.to_string(),
        body,
        body_base64,
        receipt,
        receive_count: m.receive_count,
        attributes: m.attributes,
        enqueued_at: rfc3339(m.enqueued_at),
        first_received_at: m.first_received_at.map(rfc3339),
        visible_at: rfc3339(m.visible_at),
        state: match m.state {
            MessageState::Ready => "ready",
            MessageState::Delayed => "delayed",
            MessageState::InFlight => "in_flight",
        }
        .into(),
        dead_letter_source: m.dead_letter_source,
        message_group_id: m.group,
        deduplication_id: m.dedup_id,
        priority: m.priority,
        expires_at: m.expires_at.map(rfc3339),
    }
}

/// A received message with the receipt its consumer settles it with (sealed for `queue`).
pub fn delivery_view(engine: &Engine, queue: &str, d: Delivery) -> MessageView {
    let receipt = engine.receipt(queue, &d.receipt);
    message_view(d.message, Some(receipt))
}

#[derive(Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<MessageView>,
}

/// Receive up to `max_messages` with a lease; long-polls up to `wait_seconds`.
#[utoipa::path(post, path = "/v1/queues/{queue}/receive", tag = "messages",
    params(("queue" = String, Path)),
    request_body(content = ReceiveBody, content_type = "application/json"),
    responses((status = 200, body = MessageList), (status = 404, body = ErrorBody)))]
pub async fn receive(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    body: RawBody,
) -> ApiResult<Json<MessageList>> {
    let r: ReceiveBody = parse_json_or_default(&body.bytes)?;
    let got = s
        .engine
        .receive(
            &queue,
            ReceiveOptions {
                max_messages: r.max_messages.unwrap_or(1),
                wait_seconds: r.wait_seconds,
                visibility_timeout_seconds: r.visibility_timeout_seconds,
            },
        )
        .await?;
    Ok(Json(MessageList {
        messages: got
            .into_iter()
            .map(|d| delivery_view(&s.engine, &queue, d))
            .collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeekQuery {
    /// 1-1000, default 50.
    pub limit: Option<usize>,
}

/// Look at messages without receiving them: ready first, then delayed, then in flight.
#[utoipa::path(get, path = "/v1/queues/{queue}/messages", tag = "messages",
    params(("queue" = String, Path), PeekQuery),
    responses((status = 200, body = MessageList), (status = 404, body = ErrorBody)))]
pub async fn peek(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    QueryParams(q): QueryParams<PeekQuery>,
) -> ApiResult<Json<MessageList>> {
    let got = s.engine.peek(&queue, q.limit.unwrap_or(50)).await?;
    Ok(Json(MessageList {
        messages: got.into_iter().map(|m| message_view(m, None)).collect(),
    }))
}
