//! Settling received messages: ack, nack, change a lease; and redrive of dead letters.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_engine::{rfc3339, Placement, ReceiptResult};
use utoipa::ToSchema;

use crate::api::body::{parse_json, parse_json_or_default, RawBody};
use crate::api::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use crate::api::AppState;

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
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 410, body = ErrorBody)))]
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
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 410, body = ErrorBody)))]
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
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 410, body = ErrorBody)))]
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
