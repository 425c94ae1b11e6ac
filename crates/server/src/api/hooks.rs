//! The native push API: subscriptions of a queue, the attempts log of a message, timers and
//! cron schedules. Handlers shape JSON; the engine holds the rules and the push workers make
//! the calls.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_engine::push::{Attempt, Backoff, BatchConfig, Subscription};
use sluice_engine::timers::{Schedule, TimerInfo, TimerSpec};
use sluice_engine::{Attributes, EngineError, MessageId, QueueStats};
use utoipa::{IntoParams, ToSchema};

use super::body::{parse_json, QueryParams, RawBody};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::native::rfc3339;
use super::AppState;
use crate::push::LaneCounters;

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
) -> ApiResult<SubscriptionView> {
    let child = sluice_engine::push::child_queue(queue, name);
    let qs = s.engine.child_stats(&child).await.unwrap_or_default();
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
        url: sub.url,
        method: sub.method,
        headers: sub.headers,
        timeout_seconds: sub.timeout_seconds,
        max_attempts: sub.max_attempts,
        backoff: sub.backoff,
        rate_limit_per_second: sub.rate_limit_per_second,
        concurrency: sub.concurrency,
        batch: sub.batch,
        signing_secret: sub.signing_secret.map(|x| mask_secret(&x)),
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

pub fn mask_secret(s: &str) -> String {
    let rest = s.strip_prefix("whsec_").unwrap_or(s);
    format!("whsec_{}…", rest.chars().take(4).collect::<String>())
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
    body: RawBody,
) -> ApiResult<Response> {
    let b: SubscriptionBody = parse_json(&body.bytes)?;
    let (sub, created) = s.engine.put_subscription(&queue, &name, b.into()).await?;
    let view = subscription_view(&s, &queue, &name, sub).await?;
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
) -> ApiResult<Json<SubscriptionList>> {
    let mut out = Vec::new();
    for (name, sub) in s.engine.subscriptions(&queue).await? {
        out.push(subscription_view(&s, &queue, &name, sub).await?);
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
) -> ApiResult<Json<SubscriptionView>> {
    let sub = s.engine.subscription(&queue, &name)?;
    Ok(Json(subscription_view(&s, &queue, &name, sub).await?))
}

/// Delete a subscription; its undelivered copies are dropped.
#[utoipa::path(delete, path = "/v1/queues/{queue}/subscriptions/{name}", tag = "push",
    params(("queue" = String, Path), ("name" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_subscription(
    State(s): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.engine.delete_subscription(&queue, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------- attempts ----------

#[derive(Serialize, ToSchema)]
pub struct AttemptList {
    pub attempts: Vec<Attempt>,
}

fn parse_id(field: &str, id: &str) -> ApiResult<MessageId> {
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
        attempts: s.engine.attempts_everywhere(id).await?,
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
    let got = s
        .engine
        .recent_attempts(
            &queue,
            &name,
            q.limit.unwrap_or(50),
            q.failing.unwrap_or(false),
        )
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

// ---------- timers ----------

/// A one-shot timer: call `url` (or publish to `queue`) once, after `delay_seconds` or `at`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimerBody {
    pub url: Option<String>,
    /// POST (default), PUT, PATCH, GET or DELETE.
    pub method: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    /// Request body: a string is sent as is, any other JSON value as JSON.
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
    /// Publish `body` to this queue instead of calling a URL.
    pub queue: Option<String>,
    pub attributes: Option<Attributes>,
    /// Seconds from now (0 to 31536000).
    pub delay_seconds: Option<f64>,
    /// RFC 3339 time, or seconds since the epoch.
    #[schema(value_type = Option<String>)]
    pub at: Option<serde_json::Value>,
    /// 1-100 (default 10).
    pub max_attempts: Option<u32>,
}

fn body_text(v: Option<serde_json::Value>) -> Option<String> {
    match v {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    }
}

fn parse_at(v: &serde_json::Value) -> ApiResult<i64> {
    let bad = || {
        ApiError::bad_request(
            "invalid_argument",
            "at: must be an RFC 3339 time (\"2026-11-23T10:00:00Z\") or seconds since the epoch",
        )
    };
    match v {
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|_| bad()),
        serde_json::Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| (f * 1000.0) as i64)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

#[derive(Serialize, ToSchema)]
pub struct TimerView {
    pub id: String,
    /// scheduled, delivering, retrying, succeeded, failed or cancelled.
    pub status: String,
    /// When it is due (absent once finished: only the outcome is kept).
    pub due_at: Option<String>,
    /// Whole seconds until it is due; 0 once due or finished.
    pub time_left: i64,
    pub attempts: Vec<Attempt>,
}

pub fn timer_view(s: &AppState, t: TimerInfo) -> TimerView {
    let now = s.engine.now();
    TimerView {
        id: t.id.to_string(),
        status: serde_json::to_value(t.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        due_at: t.due_at.map(rfc3339),
        time_left: if t.status.is_finished() {
            0
        } else {
            t.due_at.map_or(0, |d| ((d - now).max(0) + 999) / 1000)
        },
        attempts: s.engine.attempts(t.id),
    }
}

/// Schedule a one-shot timer.
#[utoipa::path(post, path = "/v1/timers", tag = "timers",
    request_body(content = TimerBody, content_type = "application/json"),
    responses((status = 201, body = TimerView), (status = 400, body = ErrorBody)))]
pub async fn create_timer(State(s): State<AppState>, body: RawBody) -> ApiResult<Response> {
    let b: TimerBody = parse_json(&body.bytes)?;
    let now = s.engine.now();
    let due_at = match (&b.delay_seconds, &b.at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_argument",
                "delay_seconds: give delay_seconds or at, not both",
            ))
        }
        (Some(d), None) => {
            if !d.is_finite() || *d < 0.0 || *d > sluice_engine::limits::DELAY_MAX_S as f64 {
                return Err(EngineError::invalid(
                    "delay_seconds",
                    format!(
                        "must be between 0 and {}",
                        sluice_engine::limits::DELAY_MAX_S
                    ),
                )
                .into());
            }
            now + (d * 1000.0) as i64
        }
        (None, Some(at)) => parse_at(at)?,
        (None, None) => now,
    };
    let spec = TimerSpec {
        url: b.url,
        method: b
            .method
            .map(|m| m.to_ascii_uppercase())
            .unwrap_or_else(|| "POST".into()),
        headers: b.headers.unwrap_or_default(),
        body: body_text(b.body),
        queue: b.queue,
        attributes: b.attributes.unwrap_or_default(),
        append_id: false,
        max_attempts: b.max_attempts,
        schedule: None,
        due_at,
        created_at: now,
    };
    let id = s.engine.create_timer(spec, None).await?;
    let t = s.engine.timer(id).expect("just created");
    Ok((StatusCode::CREATED, Json(timer_view(&s, t))).into_response())
}

async fn timer_or_404(s: &AppState, id: &str) -> ApiResult<TimerInfo> {
    let t = match MessageId::parse(id) {
        Some(i) => s.engine.timer_fresh(i).await?,
        None => None,
    };
    t.ok_or_else(|| {
        EngineError::NotFound {
            what: "timer",
            id: id.to_string(),
        }
        .into()
    })
}

/// A timer's status and attempts.
#[utoipa::path(get, path = "/v1/timers/{id}", tag = "timers",
    params(("id" = String, Path)),
    responses((status = 200, body = TimerView), (status = 404, body = ErrorBody)))]
pub async fn get_timer(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TimerView>> {
    let t = timer_or_404(&s, &id).await?;
    Ok(Json(timer_view(&s, t)))
}

/// Cancel a pending timer (409 if it already finished).
#[utoipa::path(delete, path = "/v1/timers/{id}", tag = "timers",
    params(("id" = String, Path)),
    responses((status = 200, body = TimerView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel_timer(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TimerView>> {
    let t = timer_or_404(&s, &id).await?;
    s.engine.cancel_timer(t.id).await?;
    Ok(Json(timer_view(&s, timer_or_404(&s, &id).await?)))
}

#[derive(Serialize, ToSchema)]
pub struct TimerSummary {
    /// Timers not finished yet (scheduled, delivering or retrying).
    pub pending: usize,
    /// Finished timers kept in the archive.
    pub finished: usize,
    /// The timers asked for by `status` (default `pending`, due soonest first; finished ones
    /// newest first), at most `limit`.
    pub timers: Vec<TimerView>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimerListQuery {
    /// `pending` (default), `succeeded`, `failed` or `cancelled`.
    pub status: Option<String>,
    /// 1-1000, default 100.
    pub limit: Option<usize>,
}

/// How many timers are pending and finished, and a list of them.
#[utoipa::path(get, path = "/v1/timers", tag = "timers", params(TimerListQuery),
    responses((status = 200, body = TimerSummary), (status = 400, body = ErrorBody)))]
pub async fn timer_summary(
    State(s): State<AppState>,
    QueryParams(q): QueryParams<TimerListQuery>,
) -> ApiResult<Json<TimerSummary>> {
    use sluice_engine::timers::TimerStatus;
    let status = match q.status.as_deref().unwrap_or("pending") {
        "pending" => None,
        "succeeded" => Some(TimerStatus::Succeeded),
        "failed" => Some(TimerStatus::Failed),
        "cancelled" => Some(TimerStatus::Cancelled),
        other => {
            return Err(ApiError::bad_request(
                "invalid_argument",
                format!("status: {other:?} is not one of pending, succeeded, failed, cancelled"),
            ))
        }
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_argument",
            format!("limit: {limit} is outside 1-1000"),
        ));
    }
    let (pending, finished) = s.engine.timer_counts();
    let timers = s
        .engine
        .list_timers(status, limit)
        .into_iter()
        .map(|t| timer_view(&s, t))
        .collect();
    Ok(Json(TimerSummary {
        pending,
        finished,
        timers,
    }))
}

// ---------- schedules ----------

/// A cron schedule: each firing calls `url` (or publishes `body` to `queue`) once.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// 5 fields (`min hour day month weekday`) or 6 with seconds first; `@hourly` etc.
    pub cron: String,
    /// IANA name (default UTC).
    pub timezone: Option<String>,
    pub url: Option<String>,
    pub method: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
    pub queue: Option<String>,
    pub attributes: Option<Attributes>,
    pub max_attempts: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleView {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub method: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    pub next_fire_at: Option<String>,
    /// The scheduled time of the last firing (or of the creation).
    pub last_fired_at: Option<String>,
    pub fired: u64,
    /// Firings skipped because the server was down (only the latest missed one fires).
    pub missed: u64,
    pub created_at: String,
    pub updated_at: String,
}

fn schedule_view(name: String, s: Schedule) -> ScheduleView {
    let next = s
        .next_after(s.last_fired.unwrap_or(s.created_at))
        .map(rfc3339);
    ScheduleView {
        name,
        next_fire_at: next,
        last_fired_at: (s.fired > 0).then(|| s.last_fired.map(rfc3339)).flatten(),
        cron: s.cron,
        timezone: s.timezone,
        url: s.target.url,
        method: s.target.method,
        headers: s.target.headers,
        body: s.target.body,
        queue: s.target.queue,
        fired: s.fired,
        missed: s.missed,
        created_at: rfc3339(s.created_at),
        updated_at: rfc3339(s.updated_at),
    }
}

/// Create or replace a cron schedule.
#[utoipa::path(put, path = "/v1/schedules/{name}", tag = "timers",
    params(("name" = String, Path)),
    request_body(content = ScheduleBody, content_type = "application/json"),
    responses((status = 201, body = ScheduleView), (status = 200, body = ScheduleView), (status = 400, body = ErrorBody)))]
pub async fn put_schedule(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: RawBody,
) -> ApiResult<Response> {
    let b: ScheduleBody = parse_json(&body.bytes)?;
    let sched = Schedule {
        cron: b.cron,
        timezone: b.timezone.unwrap_or_else(|| "UTC".into()),
        target: TimerSpec {
            url: b.url,
            method: b
                .method
                .map(|m| m.to_ascii_uppercase())
                .unwrap_or_else(|| "POST".into()),
            headers: b.headers.unwrap_or_default(),
            body: body_text(b.body),
            queue: b.queue,
            attributes: b.attributes.unwrap_or_default(),
            append_id: false,
            max_attempts: b.max_attempts,
            schedule: None,
            due_at: 0,
            created_at: 0,
        },
        created_at: 0,
        updated_at: 0,
        last_fired: None,
        fired: 0,
        missed: 0,
    };
    let (sched, created) = s.engine.put_schedule(&name, sched).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(schedule_view(name, sched))).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

/// Every cron schedule.
#[utoipa::path(get, path = "/v1/schedules", tag = "timers",
    responses((status = 200, body = ScheduleList)))]
pub async fn list_schedules(State(s): State<AppState>) -> Json<ScheduleList> {
    Json(ScheduleList {
        schedules: s
            .engine
            .schedules()
            .into_iter()
            .map(|(n, v)| schedule_view(n, v))
            .collect(),
    })
}

/// One cron schedule.
#[utoipa::path(get, path = "/v1/schedules/{name}", tag = "timers",
    params(("name" = String, Path)),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody)))]
pub async fn get_schedule(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    let v = s.engine.schedule(&name)?;
    Ok(Json(schedule_view(name, v)))
}

/// Delete a cron schedule (firings already made still run).
#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "timers",
    params(("name" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_schedule(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.engine.delete_schedule(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
