//! The native push API: the subscriptions of a queue and the delivery history (attempts) of
//! its messages. Handlers shape JSON; the engine holds the rules and the push lanes make the
//! calls. A subscription's secrets (header values, credentials in its URL) are shown in clear
//! only to a key that may change it; others see them masked (`redact.rs`), and the signing
//! secret is always masked.

use std::collections::BTreeMap;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_engine::push::{Attempt, Backoff, BatchConfig, Subscription};
use sluice_engine::{rfc3339, MessageId, QueueStats};
use utoipa::{IntoParams, ToSchema};

use super::body::{parse_json, QueryParams, RawBody};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::AppState;
use crate::auth::{sees_subscription_secrets, Principal};
use crate::delivery::LaneCounters;
use crate::redact;

// ---------- subscriptions ----------

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffBody {
    /// Delay before the 2nd attempt, seconds (default 1).
    pub initial_seconds: Option<f64>,
    /// Each later delay is this many times the previous one (default 2).
    pub multiplier: Option<f64>,
    /// Longest delay, seconds (default 3600).
    pub max_seconds: Option<f64>,
    /// Spread each delay uniformly over [d/2, d] (default true).
    pub jitter: Option<bool>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// More than 1: send up to this many messages as one JSON array (1-1000, default 1).
    pub max_messages: Option<u32>,
    /// Send a partial batch this long after its first message (0-3600000 ms, default 0).
    pub max_wait_ms: Option<u64>,
}

/// A push subscription. Only `url` is required; PUT replaces the whole subscription.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionBody {
    /// Absolute http(s) URL.
    pub url: String,
    /// POST (default), PUT, PATCH, GET or DELETE.
    pub method: Option<String>,
    /// Extra request headers (at most 32).
    pub headers: Option<BTreeMap<String, String>>,
    /// Per attempt, 0.1-300 s (default 30).
    pub timeout_seconds: Option<f64>,
    /// Attempts before the message is dead-lettered, 1-100 (default 10).
    pub max_attempts: Option<u32>,
    pub backoff: Option<BackoffBody>,
    /// Requests per second (burst: one second's worth), or null for no limit.
    pub rate_limit_per_second: Option<f64>,
    /// Requests in flight at once, 1-1000 (default 10).
    pub concurrency: Option<u32>,
    pub batch: Option<BatchBody>,
    /// `whsec_` + base64 of the key (24-64 bytes recommended): sign requests (Standard Webhooks).
    pub signing_secret: Option<String>,
}

impl From<SubscriptionBody> for Subscription {
    fn from(b: SubscriptionBody) -> Self {
        let mut s = Subscription::new(b.url);
        let d = Backoff::default();
        if let Some(m) = b.method {
            s.method = m.to_ascii_uppercase();
        }
        s.headers = b.headers.unwrap_or_default();
        s.timeout_seconds = b.timeout_seconds.unwrap_or(s.timeout_seconds);
        s.max_attempts = b.max_attempts.unwrap_or(s.max_attempts);
        let bo = b.backoff.unwrap_or_default();
        s.backoff = Backoff {
            initial_seconds: bo.initial_seconds.unwrap_or(d.initial_seconds),
            multiplier: bo.multiplier.unwrap_or(d.multiplier),
            max_seconds: bo.max_seconds.unwrap_or(d.max_seconds),
            jitter: bo.jitter.unwrap_or(d.jitter),
        };
        s.rate_limit_per_second = b.rate_limit_per_second;
        s.concurrency = b.concurrency.unwrap_or(s.concurrency);
        let bb = b.batch.unwrap_or_default();
        s.batch = BatchConfig {
            max_messages: bb.max_messages.unwrap_or(1),
            max_wait_ms: bb.max_wait_ms.unwrap_or(0),
        };
        s.signing_secret = b.signing_secret;
        s
    }
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionStats {
    /// Copies waiting for delivery (ready now).
    pub ready: u64,
    /// Copies waiting for a retry.
    pub delayed: u64,
    /// Requests being made now.
    pub in_flight: u64,
    /// Since the server started.
    pub delivered: u64,
    pub retried: u64,
    pub throttled: u64,
    pub failed: u64,
    /// The adaptive rate in force after 429s (requests/s), or null.
    pub current_rate_limit: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionView {
    pub queue: String,
    pub name: String,
    pub url: String,
    pub method: String,
    /// Values shown only to keys that may change the subscription; otherwise `****`.
    pub headers: BTreeMap<String, String>,
    pub timeout_seconds: f64,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub rate_limit_per_second: Option<f64>,
    pub concurrency: u32,
    pub batch: BatchConfig,
    /// Never returned in full: `whsec_` and the first 4 characters, or null.
    pub signing_secret: Option<String>,
    /// Where failed deliveries go.
    pub dead_letter_queue: String,
    pub created_at: String,
    pub updated_at: String,
    pub stats: SubscriptionStats,
}

async fn subscription_view(
    s: &AppState,
    queue: &str,
    name: &str,
    sub: Subscription,
    caller: Option<&Principal>,
) -> ApiResult<SubscriptionView> {
    let clear = sees_subscription_secrets(caller, queue);
    let child = sluice_engine::push::child_queue(queue, name);
    let qs = s
        .engine
        .push()
        .child_stats(&child)
        .await
        .unwrap_or_default();
    let c: LaneCounters = s.push.counters(queue, name);
    let dlq = s
        .engine
        .queue_info(queue)
        .await
        .ok()
        .and_then(|q| q.config.dead_letter_queue)
        .unwrap_or_else(|| sluice_engine::push::default_dlq(queue));
    Ok(SubscriptionView {
        queue: queue.to_string(),
        name: name.to_string(),
        url: if clear {
            sub.url
        } else {
            redact::url(&sub.url)
        },
        method: sub.method,
        headers: if clear {
            sub.headers
        } else {
            redact::headers(&sub.headers)
        },
        timeout_seconds: sub.timeout_seconds,
        max_attempts: sub.max_attempts,
        backoff: sub.backoff,
        rate_limit_per_second: sub.rate_limit_per_second,
        concurrency: sub.concurrency,
        batch: sub.batch,
        signing_secret: sub.signing_secret.map(|x| redact::secret(&x)),
        dead_letter_queue: dlq,
        created_at: rfc3339(sub.created_at),
        updated_at: rfc3339(sub.updated_at),
        stats: stats_view(qs, c),
    })
}

fn stats_view(qs: QueueStats, c: LaneCounters) -> SubscriptionStats {
    SubscriptionStats {
        ready: qs.ready,
        delayed: qs.delayed,
        in_flight: qs.in_flight,
        delivered: c.delivered,
        retried: c.retried,
        throttled: c.throttled,
        failed: c.failed,
        current_rate_limit: c.current_rate_limit,
    }
}

/// Create or replace a push subscription (the queue is created if missing).
#[utoipa::path(put, path = "/v1/queues/{queue}/subscriptions/{name}", tag = "push",
    params(("queue" = String, Path), ("name" = String, Path, description = "1-64 of [A-Za-z0-9_-]")),
    request_body(content = SubscriptionBody, content_type = "application/json"),
    responses((status = 201, description = "created", body = SubscriptionView),
        (status = 200, description = "replaced", body = SubscriptionView),
        (status = 400, body = ErrorBody)))]
pub async fn put_subscription(
    State(s): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
    caller: Option<Extension<Principal>>,
    body: RawBody,
) -> ApiResult<Response> {
    let b: SubscriptionBody = parse_json(&body.bytes)?;
    let (sub, created) = s.engine.push().put(&queue, &name, b.into()).await?;
    let view = subscription_view(&s, &queue, &name, sub, caller.as_deref()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionView>,
}

/// The subscriptions of a queue.
#[utoipa::path(get, path = "/v1/queues/{queue}/subscriptions", tag = "push",
    params(("queue" = String, Path)),
    responses((status = 200, body = SubscriptionList), (status = 404, body = ErrorBody)))]
pub async fn list_subscriptions(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    caller: Option<Extension<Principal>>,
) -> ApiResult<Json<SubscriptionList>> {
    let mut out = Vec::new();
    for (name, sub) in s.engine.push().list(&queue).await? {
        out.push(subscription_view(&s, &queue, &name, sub, caller.as_deref()).await?);
    }
    Ok(Json(SubscriptionList { subscriptions: out }))
}

/// One subscription with its delivery stats.
#[utoipa::path(get, path = "/v1/queues/{queue}/subscriptions/{name}", tag = "push",
    params(("queue" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = ErrorBody)))]
pub async fn get_subscription(
    State(s): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
    caller: Option<Extension<Principal>>,
) -> ApiResult<Json<SubscriptionView>> {
    let sub = s.engine.push().get(&queue, &name)?;
    Ok(Json(
        subscription_view(&s, &queue, &name, sub, caller.as_deref()).await?,
    ))
}

/// Delete a subscription; its undelivered copies are dropped.
#[utoipa::path(delete, path = "/v1/queues/{queue}/subscriptions/{name}", tag = "push",
    params(("queue" = String, Path), ("name" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_subscription(
    State(s): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.engine.push().delete(&queue, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------- attempts ----------

#[derive(Serialize, ToSchema)]
pub struct AttemptList {
    pub attempts: Vec<Attempt>,
}

pub(super) fn parse_id(field: &str, id: &str) -> ApiResult<MessageId> {
    MessageId::parse(id).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_argument",
            format!("{field}: {id:?} is not a message id (a UUID)"),
        )
    })
}

/// The delivery attempts of a message (kept up to 24 h, 50 per message, 100,000 messages).
#[utoipa::path(get, path = "/v1/queues/{queue}/messages/{id}/attempts", tag = "push",
    params(("queue" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = AttemptList), (status = 404, body = ErrorBody)))]
pub async fn attempts(
    State(s): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
) -> ApiResult<Json<AttemptList>> {
    let id = parse_id("id", &id)?;
    s.engine.queue_info(&queue).await?;
    Ok(Json(AttemptList {
        attempts: s.engine.push().history().get_everywhere(id).await?,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecentQuery {
    /// Messages to return, 1-1000, default 50.
    pub limit: Option<usize>,
    /// Only messages whose latest attempt did not deliver.
    pub failing: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageAttempts {
    pub message_id: String,
    pub attempts: Vec<Attempt>,
}

#[derive(Serialize, ToSchema)]
pub struct RecentAttempts {
    pub messages: Vec<MessageAttempts>,
}

/// A subscription's recent deliveries, newest first, each message with its attempts (request
/// and response excerpts). Kept in memory, as the attempts log of a message.
#[utoipa::path(get, path = "/v1/queues/{queue}/subscriptions/{name}/attempts", tag = "push",
    params(("queue" = String, Path), ("name" = String, Path), RecentQuery),
    responses((status = 200, body = RecentAttempts), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody)))]
pub async fn recent_attempts(
    State(s): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
    QueryParams(q): QueryParams<RecentQuery>,
) -> ApiResult<Json<RecentAttempts>> {
    s.engine.push().get(&queue, &name)?;
    let limit = q.limit.unwrap_or(50);
    sluice_engine::range(
        "limit",
        limit as u64,
        1,
        sluice_engine::limits::PEEK_MAX as u64,
    )?;
    let got = s
        .engine
        .push()
        .history()
        .recent(&queue, &name, limit, q.failing.unwrap_or(false))
        .await?;
    Ok(Json(RecentAttempts {
        messages: got
            .into_iter()
            .map(|(id, attempts)| MessageAttempts {
                message_id: id.to_string(),
                attempts,
            })
            .collect(),
    }))
}
