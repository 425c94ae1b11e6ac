//! The native push API: the subscriptions of a queue and the delivery history (attempts) of
//! its messages. Handlers shape JSON; the engine holds the rules and the push lanes make the
//! calls. A subscription's secrets (header values, credentials in its URL) are shown in clear
//! only to a key that may change it; others see them masked (`redact.rs`), and the signing
//! secret is always masked. How a subscription is shown is `subscription_view.rs`.

use std::collections::BTreeMap;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_engine::push::breaker::BreakerConfig;
use sluice_engine::push::filter::FilterPolicy;
use sluice_engine::push::secret::{Rotation, SecretKind};
use sluice_engine::push::{Attempt, Backoff, BatchConfig, ReplayOutcome, ReplayTask, Subscription};
use sluice_engine::{EngineError, MessageId};
use utoipa::{IntoParams, ToSchema};

use super::body::{parse_json, parse_json_or_default, QueryParams, RawBody};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::AppState;
use crate::auth::Principal;
use crate::delivery::signing::public_key;

pub use super::subscription_view::{
    subscription_view, CircuitView, RotationView, SubscriptionState, SubscriptionStats,
    SubscriptionView,
};

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
    /// Sign requests (Standard Webhooks): `whsec_` + base64 of an HMAC key (24-64 bytes
    /// recommended; `v1,` signatures), or `whsk_` + base64 of a 32-byte ed25519 seed (`v1a,`
    /// signatures, verified with the `signing_public_key` of the view).
    pub signing_secret: Option<String>,
    /// Only messages whose attributes match this SNS filter policy are sent to this
    /// subscription: `{"KEY": [condition, ...]}`, conditions being strings, numbers,
    /// `{"prefix"}`, `{"anything-but"}`, `{"numeric": [op, n, ...]}` and `{"exists"}`; AND across
    /// keys, OR within a list. Others are counted in `stats.filtered`.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    /// Only messages whose `event-type` attribute is one of these (at most 100).
    pub event_types: Option<Vec<String>>,
    pub circuit_breaker: Option<BreakerBody>,
    /// Disable the subscription when its endpoint failed (no answer, timeout, 408, 5xx)
    /// without a single success this long, 1-7776000 s (default 432000: 5 days).
    pub disable_after_seconds: Option<u64>,
    /// Called with each message this subscription dead-letters and its last attempt: a POST
    /// of JSON (`type: message.failed`), signed like deliveries, made (and retried) like a
    /// timer, behind the same address guard. Absolute http(s) URL, or null.
    pub failure_callback: Option<String>,
}

/// When the endpoint counts as down: after `failures` consecutive failed requests (no answer,
/// timeout, 408, 5xx; not 429 or other 4xx) nothing is sent but one probe at growing
/// intervals, until one succeeds.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerBody {
    /// Consecutive failed requests that open the circuit, 1-10000 (default 20).
    pub failures: Option<u32>,
    /// Wait before the first probe, 0.1-86400 s (default 5).
    pub probe_initial_seconds: Option<f64>,
    /// Longest wait between probes, 0.1-86400 s (default 300); each failed probe doubles it.
    pub probe_max_seconds: Option<f64>,
}

impl SubscriptionBody {
    /// The subscription it describes; the filter is parsed (and checked) by the engine.
    fn into_subscription(mut self) -> ApiResult<Subscription> {
        let filter = self.filter.take().map(FilterPolicy::parse).transpose()?;
        let event_types = self.event_types.take().unwrap_or_default();
        let mut sub = Subscription::from(self);
        sub.filter = filter;
        sub.event_types = event_types;
        Ok(sub)
    }
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
        s.disable_after_seconds = b.disable_after_seconds.unwrap_or(s.disable_after_seconds);
        s.failure_callback = b.failure_callback;
        let cb = b.circuit_breaker.unwrap_or_default();
        let d = BreakerConfig::default();
        s.circuit_breaker = BreakerConfig {
            failures: cb.failures.unwrap_or(d.failures),
            probe_initial_seconds: cb.probe_initial_seconds.unwrap_or(d.probe_initial_seconds),
            probe_max_seconds: cb.probe_max_seconds.unwrap_or(d.probe_max_seconds),
        };
        s
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
    let (sub, created) = s
        .engine
        .push()
        .put(&queue, &name, b.into_subscription()?)
        .await?;
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

/// Set a subscription's counters (delivered, retried, throttled, failed) back to zero.
/// Replacing the subscription's settings does not reset them; this does.
#[utoipa::path(post, path = "/v1/queues/{queue}/subscriptions/{name}/stats/reset", tag = "push",
    params(("queue" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = ErrorBody)))]
pub async fn reset_stats(
    State(s): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
    caller: Option<Extension<Principal>>,
) -> ApiResult<Json<SubscriptionView>> {
    s.engine.push().reset_stats(&queue, &name).await?;
    let sub = s.engine.push().get(&queue, &name)?;
    Ok(Json(
        subscription_view(&s, &queue, &name, sub, caller.as_deref()).await?,
    ))
}

// ---------- secret rotation ----------

/// A rotation of the signing secret. Every field is optional: an empty body generates a new
/// secret of the current kind and keeps the old one signing for 24 h.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// The new secret (`whsec_…` or `whsk_…`); absent: one is generated (32 random bytes).
    pub secret: Option<String>,
    /// The kind of secret to generate: `hmac` (`whsec_`) or `ed25519` (`whsk_`). Default: the
    /// kind of the current secret (`hmac` if there is none).
    #[serde(rename = "type")]
    pub kind: Option<SecretKind>,
    /// How long the current secret keeps signing beside the new one, 0-604800 s (default
    /// 86400). 0 switches at once.
    pub grace_seconds: Option<u64>,
}

/// The answer to a rotation: the new secret in full only here, and only when sluice generated
/// it (an HMAC key; an ed25519 secret key is never shown, its public key is).
#[derive(Serialize, ToSchema)]
pub struct RotateAnswer {
    /// The generated `whsec_` secret in full (store it now: no other answer shows it), or
    /// null when the secret was given or is an ed25519 key.
    pub secret: Option<String>,
    /// The new `whpk_` public key when the new secret is an ed25519 key.
    pub public_key: Option<String>,
    pub subscription: SubscriptionView,
}

/// Rotate the signing secret. The old secret keeps signing beside the new one for the grace
/// period: every request carries both signatures (`v1,<new> v1,<old>`), so a receiver can
/// switch keys without dropping a request.
#[utoipa::path(post, path = "/v1/queues/{queue}/subscriptions/{name}/rotate-secret", tag = "push",
    params(("queue" = String, Path), ("name" = String, Path)),
    request_body(content = RotateBody, content_type = "application/json"),
    responses((status = 200, body = RotateAnswer), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn rotate_secret(
    State(s): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
    caller: Option<Extension<Principal>>,
    body: RawBody,
) -> ApiResult<Json<RotateAnswer>> {
    let b: RotateBody = parse_json_or_default(&body.bytes)?;
    let rotation = Rotation {
        secret: b.secret,
        kind: b.kind,
        grace_seconds: b.grace_seconds,
    };
    let done = s
        .engine
        .push()
        .rotate_secret(&queue, &name, rotation)
        .await?;
    let current = done.subscription.signing_secret.clone().unwrap_or_default();
    Ok(Json(RotateAnswer {
        secret: done.generated.filter(|g| public_key(g).is_none()),
        public_key: public_key(&current),
        subscription: subscription_view(&s, &queue, &name, done.subscription, caller.as_deref())
            .await?,
    }))
}

// ---------- replay ----------

/// Which messages to send again, delivered or dead-lettered in a time window.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// RFC 3339: the window's start.
    pub since: String,
    /// RFC 3339: the window's end (default now).
    pub until: Option<String>,
    /// `failed` (dead-lettered in the window: they leave the dead-letter queue), `delivered`
    /// (delivered in the window: kept only with the queue's `retain_delivered_seconds`) or
    /// `all`.
    pub outcome: ReplayOutcome,
}

fn parse_time(field: &str, v: &str) -> ApiResult<i64> {
    sluice_engine::clock::parse_rfc3339(v).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_argument",
            format!("{field}: {v:?} is not an RFC 3339 time (\"2026-12-04T10:00:00Z\")"),
        )
    })
}

/// Send a subscription's messages of a time window again, with fresh attempts under their
/// original ids (the same `webhook-id`). Answers at once with the number found and a task
/// whose progress `GET …/replay/{task}` reports.
#[utoipa::path(post, path = "/v1/queues/{queue}/subscriptions/{name}/replay", tag = "push",
    params(("queue" = String, Path), ("name" = String, Path)),
    request_body(content = ReplayBody, content_type = "application/json"),
    responses((status = 202, body = ReplayTask), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn replay(
    State(s): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
    body: RawBody,
) -> ApiResult<Response> {
    let b: ReplayBody = parse_json(&body.bytes)?;
    let since = parse_time("since", &b.since)?;
    let until = b
        .until
        .as_deref()
        .map(|u| parse_time("until", u))
        .transpose()?;
    let task = s
        .engine
        .push()
        .replay(&queue, &name, since, until, b.outcome)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(task)).into_response())
}

/// A replay's progress: `running`, `done` or `failed`, messages found and sent again.
#[utoipa::path(get, path = "/v1/queues/{queue}/subscriptions/{name}/replay/{task}", tag = "push",
    params(("queue" = String, Path), ("name" = String, Path), ("task" = String, Path)),
    responses((status = 200, body = ReplayTask), (status = 404, body = ErrorBody)))]
pub async fn replay_task(
    State(s): State<AppState>,
    Path((queue, name, task)): Path<(String, String, String)>,
) -> ApiResult<Json<ReplayTask>> {
    Ok(Json(s.engine.push().replay_task(&queue, &name, &task)?))
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

/// The delivery attempts of a message of this queue, oldest first (its first attempt and its
/// latest ones; kept for the queue's retention, within the history's budget). A message of
/// another queue, or one without attempts, is 404.
#[utoipa::path(get, path = "/v1/queues/{queue}/messages/{id}/attempts", tag = "push",
    params(("queue" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = AttemptList), (status = 404, body = ErrorBody)))]
pub async fn attempts(
    State(s): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
) -> ApiResult<Json<AttemptList>> {
    let message = parse_id("id", &id)?;
    s.engine.queue_info(&queue).await?;
    // The queue the message belongs to decides, not the path: attempts of another queue's
    // message (or of a timer) are not found here, so ids cannot be probed.
    let attempts: Vec<Attempt> = s
        .engine
        .push()
        .history()
        .get(message)
        .await?
        .into_iter()
        .filter(|a| a.queue == queue)
        .collect();
    if attempts.is_empty() {
        return Err(EngineError::NotFound {
            what: "message with delivery attempts in this queue",
            id,
        }
        .into());
    }
    Ok(Json(AttemptList { attempts }))
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
/// and response excerpts). Read from the durable delivery history, as the attempts of a message.
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
