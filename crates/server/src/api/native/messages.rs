//! Messages: publish (one, a batch, or a raw body), receive with a lease, peek.

use std::collections::BTreeMap;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sluice_engine::{rfc3339, Delivery, Engine, Message, MessageState, Publish, ReceiveOptions};
use utoipa::{IntoParams, ToSchema};

use crate::api::body::{parse_json, parse_json_or_default, QueryParams, RawBody};
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::AppState;
use crate::auth::{if_missing, Principal};

/// One message. Give `body` (text) or `body_base64` (bytes), not both.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    pub body: Option<String>,
    pub body_base64: Option<String>,
    /// 0-31536000 s; default: the queue's delay.
    pub delay_seconds: Option<u32>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// FIFO queues (`.fifo`): the message group (required there). Order holds within a group.
    pub message_group_id: Option<String>,
    /// FIFO queues: repeats within 5 minutes are dropped (or set content_based_deduplication).
    pub deduplication_id: Option<String>,
}

/// A batch of up to 1000 messages. (Documents the shape in OpenAPI; parsing goes through
/// `PublishEither`.)
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBatchBody {
    pub messages: Vec<PublishBody>,
}

/// The publish body as parsed: either a single message or `messages`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishEither {
    body: Option<String>,
    body_base64: Option<String>,
    delay_seconds: Option<u32>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    message_group_id: Option<String>,
    deduplication_id: Option<String>,
    messages: Option<Vec<PublishBody>>,
}

#[derive(Serialize, ToSchema)]
pub struct Published {
    pub id: String,
    /// Set when the raw body looked like a JSON envelope (`{"body": ...}`) sent without
    /// `Content-Type: application/json`: it was stored as text, and this says how to publish
    /// its `body` instead. Also sent as the `Sluice-Hint` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The hint for a raw body that is really a publish envelope sent without a JSON content type
/// (`curl -d '{"body":"x"}'` sends `application/x-www-form-urlencoded`).
fn envelope_hint(bytes: &[u8]) -> Option<&'static str> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes).ok()?;
    ["body", "body_base64", "messages"]
        .iter()
        .any(|k| v.contains_key(*k))
        .then_some(
            "this body looks like a JSON publish envelope but was sent without Content-Type: \
             application/json, so it was stored as the message text itself; to publish its \
             \"body\", send it with -H 'content-type: application/json'",
        )
}

#[derive(Serialize, ToSchema)]
pub struct PublishedBatch {
    pub ids: Vec<String>,
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct PublishQuery {
    /// Delay for a raw (non-JSON) body.
    pub delay_seconds: Option<u32>,
}

fn to_publish(p: PublishBody, field: &str) -> ApiResult<Publish> {
    let body = match (p.body, p.body_base64) {
        (Some(b), None) => b.into_bytes(),
        (None, Some(b64)) => B64.decode(b64.as_bytes()).map_err(|e| {
            ApiError::bad_request(
                "invalid_argument",
                format!("{field}body_base64: not valid base64: {e}"),
            )
        })?,
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_argument",
                format!("{field}body: required (or body_base64)"),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_argument",
                format!("{field}body: give either body or body_base64, not both"),
            ))
        }
    };
    Ok(Publish {
        body,
        attributes: p.attributes,
        delay_seconds: p.delay_seconds,
        group: p.message_group_id,
        dedup_id: p.deduplication_id,
        ..Default::default()
    })
}

/// Publish one message, or a batch with `{"messages":[...]}`. The queue is created if missing
/// (without API keys, or with a key that may create queues; else 404).
/// With any Content-Type other than JSON, the raw request body is the message body.
#[utoipa::path(post, path = "/v1/queues/{queue}/messages", tag = "messages",
    params(("queue" = String, Path), PublishQuery),
    request_body(content = PublishBody, description = "or PublishBatchBody, or any raw body"),
    responses((status = 201, description = "durably stored", body = Published),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn publish(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    QueryParams(q): QueryParams<PublishQuery>,
    caller: Option<Extension<Principal>>,
    body: RawBody,
) -> ApiResult<Response> {
    let missing = if_missing(caller.as_deref());
    if !body.is_json {
        let hint = envelope_hint(&body.bytes);
        let ids = s
            .engine
            .publish_if(
                &queue,
                vec![Publish {
                    body: body.bytes.to_vec(),
                    delay_seconds: q.delay_seconds,
                    ..Default::default()
                }],
                missing,
            )
            .await?;
        let mut resp = (
            StatusCode::CREATED,
            Json(Published {
                id: ids[0].to_string(),
                hint: hint.map(str::to_string),
            }),
        )
            .into_response();
        if let Some(h) = hint {
            tracing::warn!(queue = %queue, "a JSON publish envelope was sent without Content-Type: application/json and stored as text");
            resp.headers_mut()
                .insert("sluice-hint", axum::http::HeaderValue::from_static(h));
        }
        return Ok(resp);
    }
    // One parse for both shapes: a batch has `messages`, a single message has the rest.
    let one: PublishEither = parse_json(&body.bytes)?;
    if let Some(messages) = one.messages {
        if one.body.is_some()
            || one.body_base64.is_some()
            || one.delay_seconds.is_some()
            || !one.attributes.is_empty()
            || one.message_group_id.is_some()
            || one.deduplication_id.is_some()
        {
            return Err(ApiError::bad_request(
                "invalid_argument",
                "messages: a batch takes only `messages`; put body, delay_seconds and attributes inside each message",
            ));
        }
        let msgs = messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| to_publish(m, &format!("messages[{i}].")))
            .collect::<ApiResult<Vec<_>>>()?;
        let ids = s.engine.publish_if(&queue, msgs, missing).await?;
        Ok((
            StatusCode::CREATED,
            Json(PublishedBatch {
                ids: ids.iter().map(|i| i.to_string()).collect(),
            }),
        )
            .into_response())
    } else {
        let one = PublishBody {
            body: one.body,
            body_base64: one.body_base64,
            delay_seconds: one.delay_seconds,
            attributes: one.attributes,
            message_group_id: one.message_group_id,
            deduplication_id: one.deduplication_id,
        };
        let ids = s
            .engine
            .publish_if(&queue, vec![to_publish(one, "")?], missing)
            .await?;
        Ok((
            StatusCode::CREATED,
            Json(Published {
                id: ids[0].to_string(),
                hint: None,
            }),
        )
            .into_response())
    }
}

// ---------- receive / peek ----------

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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deduplication_id: Option<String>,
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
