//! The native JSON API under `/v1`. Each handler parses and shapes; the rules live in the engine.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sluice_engine::{
    Delivery, Message, MessageState, Placement, Publish, QueueConfig, QueueConfigPatch, QueueInfo,
    QueueStats, ReceiptResult, ReceiveOptions,
};
use utoipa::{IntoParams, ToSchema};

use super::body::{double_option, parse_json, parse_json_or_default, QueryParams, RawBody};
use super::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use super::AppState;

pub use sluice_engine::rfc3339;

// ---------- queues ----------

/// Queue configuration. On PUT every field is optional: absent fields keep their current value
/// (or the default for a new queue); `null` clears `max_receives` / `dead_letter_queue`.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueConfigBody {
    /// Default lease of a receive, 0-43200 s. Default 30.
    pub visibility_timeout_seconds: Option<u32>,
    /// Default delay of a new message, 0-31536000 s. Default 0.
    pub delay_seconds: Option<u32>,
    /// How long a message is kept, 60-1209600 s. Default 345600 (4 days).
    pub retention_seconds: Option<u32>,
    /// Largest message (body + attribute names and values), 1 to the server limit. Default 262144.
    pub max_message_bytes: Option<u32>,
    /// Receives after which a message moves to the dead-letter queue, 1-1000, or null.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub max_receives: Option<Option<u32>>,
    /// The dead-letter queue (created if missing), or null.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub dead_letter_queue: Option<Option<String>>,
    /// Default long-poll wait of receives that name none, 0-20 s. Default 0.
    pub receive_wait_seconds: Option<u32>,
    /// Free-form tags (at most 50); replaces the whole set.
    pub tags: Option<BTreeMap<String, String>>,
}

impl From<QueueConfigBody> for QueueConfigPatch {
    fn from(b: QueueConfigBody) -> Self {
        QueueConfigPatch {
            visibility_timeout_seconds: b.visibility_timeout_seconds,
            delay_seconds: b.delay_seconds,
            retention_seconds: b.retention_seconds,
            max_message_bytes: b.max_message_bytes,
            max_receives: b.max_receives,
            dead_letter_queue: b.dead_letter_queue,
            receive_wait_seconds: b.receive_wait_seconds,
            tags: b.tags,
            ..Default::default()
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct QueueConfigView {
    pub visibility_timeout_seconds: u32,
    pub delay_seconds: u32,
    pub retention_seconds: u32,
    pub max_message_bytes: u32,
    pub max_receives: Option<u32>,
    pub dead_letter_queue: Option<String>,
    pub receive_wait_seconds: u32,
    pub tags: BTreeMap<String, String>,
}

impl From<QueueConfig> for QueueConfigView {
    fn from(c: QueueConfig) -> Self {
        QueueConfigView {
            visibility_timeout_seconds: c.visibility_timeout_seconds,
            delay_seconds: c.delay_seconds,
            retention_seconds: c.retention_seconds,
            max_message_bytes: c.max_message_bytes,
            max_receives: c.max_receives,
            dead_letter_queue: c.dead_letter_queue,
            receive_wait_seconds: c.receive_wait_seconds,
            tags: c.tags,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct QueueView {
    pub name: String,
    pub config: QueueConfigView,
    /// Gauges are exact when read; counters count since the server started.
    pub stats: QueueStats,
    pub created_at: String,
    pub updated_at: String,
}

fn queue_view(info: QueueInfo, stats: QueueStats) -> QueueView {
    QueueView {
        name: info.name,
        config: info.config.into(),
        stats,
        created_at: rfc3339(info.created_at),
        updated_at: rfc3339(info.updated_at),
    }
}

#[derive(Serialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueView>,
}

/// List every queue with its stats.
#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses((status = 200, body = QueueList)))]
pub async fn list_queues(
    State(s): State<AppState>,
    caller: Option<axum::Extension<crate::auth::Principal>>,
) -> ApiResult<Json<QueueList>> {
    let queues = s.engine.list_queues().await?;
    Ok(Json(QueueList {
        queues: queues
            .into_iter()
            .filter(|(i, _)| caller.as_ref().is_none_or(|p| p.covers(&i.name)))
            .map(|(i, st)| queue_view(i, st))
            .collect(),
    }))
}

/// Create a queue, or update its configuration.
#[utoipa::path(put, path = "/v1/queues/{queue}", tag = "queues",
    params(("queue" = String, Path, description = "1-80 of [A-Za-z0-9_-], optional .fifo suffix")),
    request_body(content = QueueConfigBody, content_type = "application/json"),
    responses((status = 201, description = "created", body = QueueView),
        (status = 200, description = "updated", body = QueueView),
        (status = 400, body = ErrorBody)))]
pub async fn put_queue(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    body: RawBody,
) -> ApiResult<Response> {
    let cfg: QueueConfigBody = parse_json_or_default(&body.bytes)?;
    let (info, created) = s.engine.put_queue(&queue, cfg.into()).await?;
    let stats = s.engine.stats(&queue).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(queue_view(info, stats))).into_response())
}

/// One queue with its configuration and stats.
#[utoipa::path(get, path = "/v1/queues/{queue}", tag = "queues",
    params(("queue" = String, Path)),
    responses((status = 200, body = QueueView), (status = 404, body = ErrorBody)))]
pub async fn get_queue(
    State(s): State<AppState>,
    Path(queue): Path<String>,
) -> ApiResult<Json<QueueView>> {
    let (info, stats) = s.engine.get_queue(&queue).await?;
    Ok(Json(queue_view(info, stats)))
}

/// Delete a queue and all its messages.
#[utoipa::path(delete, path = "/v1/queues/{queue}", tag = "queues",
    params(("queue" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_queue(
    State(s): State<AppState>,
    Path(queue): Path<String>,
) -> ApiResult<StatusCode> {
    s.engine.delete_queue(&queue).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Purged {
    pub purged: u64,
}

/// Remove every message of the queue.
#[utoipa::path(post, path = "/v1/queues/{queue}/purge", tag = "queues",
    params(("queue" = String, Path)),
    responses((status = 200, body = Purged), (status = 404, body = ErrorBody)))]
pub async fn purge_queue(
    State(s): State<AppState>,
    Path(queue): Path<String>,
) -> ApiResult<Json<Purged>> {
    Ok(Json(Purged {
        purged: s.engine.purge(&queue).await?,
    }))
}

// ---------- publish ----------

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
    })
}

/// Publish one message, or a batch with `{"messages":[...]}`. The queue is created if missing.
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
    body: RawBody,
) -> ApiResult<Response> {
    if !body.is_json {
        let ids = s
            .engine
            .publish(
                &queue,
                vec![Publish {
                    body: body.bytes.to_vec(),
                    delay_seconds: q.delay_seconds,
                    ..Default::default()
                }],
            )
            .await?;
        return Ok((
            StatusCode::CREATED,
            Json(Published {
                id: ids[0].to_string(),
            }),
        )
            .into_response());
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
        let ids = s.engine.publish(&queue, msgs).await?;
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
        let ids = s.engine.publish(&queue, vec![to_publish(one, "")?]).await?;
        Ok((
            StatusCode::CREATED,
            Json(Published {
                id: ids[0].to_string(),
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

pub fn delivery_view(d: Delivery) -> MessageView {
    let receipt = d.receipt.encode();
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
        messages: got.into_iter().map(delivery_view).collect(),
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

// ---------- ack / nack / visibility / redrive ----------

/// Receipts to settle: `receipts` (up to 1000), or a single `receipt`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    pub receipts: Option<Vec<String>>,
    pub receipt: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NackBody {
    pub receipts: Option<Vec<String>>,
    pub receipt: Option<String>,
    /// Visible again after this many seconds (0-31536000), default 0.
    pub delay_seconds: Option<u32>,
    /// `back` (default) or `front` of the queue.
    pub placement: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FailedReceipt {
    pub receipt: String,
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct AckResult {
    pub acked: usize,
    pub failed: Vec<FailedReceipt>,
}

#[derive(Serialize, ToSchema)]
pub struct NackResult {
    pub nacked: usize,
    pub failed: Vec<FailedReceipt>,
}

/// Returns the receipts, and whether the single form was used.
fn receipts_of(
    receipts: Option<Vec<String>>,
    receipt: Option<String>,
) -> ApiResult<(Vec<String>, bool)> {
    match (receipts, receipt) {
        (Some(r), None) => Ok((r, false)),
        (None, Some(r)) => Ok((vec![r], true)),
        (None, None) => Err(ApiError::bad_request(
            "invalid_argument",
            "receipts: required (a list of receipts)",
        )),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "invalid_argument",
            "receipts: give either receipts or receipt, not both",
        )),
    }
}

fn split_results(
    receipts: Vec<String>,
    results: Vec<ReceiptResult>,
) -> (usize, Vec<FailedReceipt>) {
    let mut ok = 0;
    let mut failed = Vec::new();
    for (r, res) in receipts.into_iter().zip(results) {
        match res {
            Ok(()) => ok += 1,
            Err(e) => failed.push(FailedReceipt {
                receipt: r,
                error: ApiError::from(e).detail(),
            }),
        }
    }
    (ok, failed)
}

/// With the single `receipt` form, a failure is the response's status.
fn single_failure(single: bool, results: &[ReceiptResult]) -> Option<ApiError> {
    if !single {
        return None;
    }
    match results.first() {
        Some(Err(e)) => Some(e.clone().into()),
        _ => None,
    }
}

/// Acknowledge (delete) received messages. Per-receipt failures are listed in `failed`
/// (stale receipts: `stale_receipt`; messages no longer leased: `message_not_in_flight`). With
/// the single `receipt` form, a failure is the status: 409 stale, 410 not in flight.
#[utoipa::path(post, path = "/v1/queues/{queue}/ack", tag = "messages",
    params(("queue" = String, Path)),
    request_body(content = AckBody, content_type = "application/json"),
    responses((status = 200, body = AckResult), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn ack(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    body: RawBody,
) -> ApiResult<Json<AckResult>> {
    let b: AckBody = parse_json(&body.bytes)?;
    let (receipts, single) = receipts_of(b.receipts, b.receipt)?;
    let results = s.engine.ack(&queue, &receipts).await?;
    if let Some(e) = single_failure(single, &results) {
        return Err(e);
    }
    let (acked, failed) = split_results(receipts, results);
    Ok(Json(AckResult { acked, failed }))
}

/// Release received messages: visible again now or after `delay_seconds`.
#[utoipa::path(post, path = "/v1/queues/{queue}/nack", tag = "messages",
    params(("queue" = String, Path)),
    request_body(content = NackBody, content_type = "application/json"),
    responses((status = 200, body = NackResult), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn nack(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    body: RawBody,
) -> ApiResult<Json<NackResult>> {
    let b: NackBody = parse_json(&body.bytes)?;
    let (receipts, single) = receipts_of(b.receipts, b.receipt)?;
    let placement = match b.placement.as_deref() {
        None | Some("back") => Placement::Back,
        Some("front") => Placement::Front,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_argument",
                format!("placement: {other:?} is not one of \"back\", \"front\""),
            ))
        }
    };
    let results = s
        .engine
        .nack(&queue, &receipts, b.delay_seconds.unwrap_or(0), placement)
        .await?;
    if let Some(e) = single_failure(single, &results) {
        return Err(e);
    }
    let (nacked, failed) = split_results(receipts, results);
    Ok(Json(NackResult { nacked, failed }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisibilityBody {
    pub receipt: String,
    /// New lease length from now, 0-43200 s (0 releases the message).
    pub visibility_timeout_seconds: u32,
}

#[derive(Serialize, ToSchema)]
pub struct VisibilityResult {
    pub visible_at: String,
}

/// Extend (or end) the lease of a received message: the heartbeat of a long job.
#[utoipa::path(post, path = "/v1/queues/{queue}/visibility", tag = "messages",
    params(("queue" = String, Path)),
    request_body(content = VisibilityBody, content_type = "application/json"),
    responses((status = 200, body = VisibilityResult), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn visibility(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    body: RawBody,
) -> ApiResult<Json<VisibilityResult>> {
    let b: VisibilityBody = parse_json(&body.bytes)?;
    let until = s
        .engine
        .change_visibility(&queue, &b.receipt, b.visibility_timeout_seconds)
        .await?;
    Ok(Json(VisibilityResult {
        visible_at: rfc3339(until),
    }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RedriveBody {
    /// Move at most this many (default: all).
    pub max_messages: Option<usize>,
    /// Move only these dead letters (ids as listed in the dead-letter queue, 1-1000): resend
    /// chosen messages. Ids that are not dead letters there are ignored.
    pub ids: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct Redriven {
    pub redriven: u64,
}

/// Move dead letters back to their source queue with a fresh receive count. Called on a
/// dead-letter queue, all its dead letters go home; called on a source queue, its own dead
/// letters come back from its dead-letter queue.
#[utoipa::path(post, path = "/v1/queues/{queue}/redrive", tag = "queues",
    params(("queue" = String, Path)),
    request_body(content = RedriveBody, content_type = "application/json"),
    responses((status = 200, body = Redriven), (status = 404, body = ErrorBody)))]
pub async fn redrive(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    body: RawBody,
) -> ApiResult<Json<Redriven>> {
    let b: RedriveBody = parse_json_or_default(&body.bytes)?;
    let redriven = match b.ids {
        Some(ids) => {
            if b.max_messages.is_some() {
                return Err(ApiError::bad_request(
                    "invalid_argument",
                    "ids and max_messages: give one or the other",
                ));
            }
            let ids = ids
                .iter()
                .map(|id| {
                    sluice_engine::MessageId::parse(id).ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_argument",
                            format!("ids: {id:?} is not a message id (a UUID)"),
                        )
                    })
                })
                .collect::<ApiResult<Vec<_>>>()?;
            s.engine.redrive_ids(&queue, &ids).await?
        }
        None => s.engine.redrive(&queue, b.max_messages).await?,
    };
    Ok(Json(Redriven { redriven }))
}
