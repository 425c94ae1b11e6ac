//! The native timer API: one-shot timers (`/v1/timers`) and cron schedules (`/v1/schedules`).
//! Handlers shape JSON; the engine's timers service holds the rules and the timer lane makes
//! the calls.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_engine::push::Attempt;
use sluice_engine::timers::{firing_id, CatchUp, Schedule, TimerInfo, TimerSpec};
use sluice_engine::{rfc3339, Attributes, EngineError, MessageId};
use utoipa::{IntoParams, ToSchema};

use super::body::{parse_json, QueryParams, RawBody};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::AppState;

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

/// What a timer or a schedule's firing does, as a request body gives it.
struct Target {
    url: Option<String>,
    method: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    body: Option<serde_json::Value>,
    queue: Option<String>,
    attributes: Option<Attributes>,
    max_attempts: Option<u32>,
}

/// The [`Target`] fields of a timer's or a schedule's body (both have them, by name).
macro_rules! target_of {
    ($b:expr) => {
        Target {
            url: $b.url,
            method: $b.method,
            headers: $b.headers,
            body: $b.body,
            queue: $b.queue,
            attributes: $b.attributes,
            max_attempts: $b.max_attempts,
        }
    };
}

/// The timer spec of a target (not yet due: the caller sets `due_at`).
fn target_spec(t: Target) -> TimerSpec {
    TimerSpec {
        url: t.url,
        method: t
            .method
            .map(|m| m.to_ascii_uppercase())
            .unwrap_or_else(|| "POST".into()),
        headers: t.headers.unwrap_or_default(),
        body: body_text(t.body),
        queue: t.queue,
        attributes: t.attributes.unwrap_or_default(),
        append_id: false,
        max_attempts: t.max_attempts,
        schedule: None,
        signed_for: None,
        due_at: 0,
        created_at: 0,
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

pub async fn timer_view(s: &AppState, t: TimerInfo) -> ApiResult<TimerView> {
    let now = s.engine.now();
    Ok(TimerView {
        id: t.id.to_string(),
        status: t.status.label().to_string(),
        due_at: t.due_at.map(rfc3339),
        time_left: if t.status.is_finished() {
            0
        } else {
            t.due_at.map_or(0, |d| ((d - now).max(0) + 999) / 1000)
        },
        attempts: s.engine.timers().attempts(t.id).await?,
    })
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
    let mut spec = target_spec(target_of!(b));
    spec.due_at = due_at;
    spec.created_at = now;
    let id = s.engine.timers().create(spec, None).await?;
    let t = timer_or_404(&s, &id.to_string()).await?;
    Ok((StatusCode::CREATED, Json(timer_view(&s, t).await?)).into_response())
}

async fn timer_or_404(s: &AppState, id: &str) -> ApiResult<TimerInfo> {
    let t = match MessageId::parse(id) {
        Some(i) => s.engine.timers().get_fresh(i).await?,
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
    Ok(Json(timer_view(&s, t).await?))
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
    s.engine.timers().cancel(t.id).await?;
    Ok(Json(timer_view(&s, timer_or_404(&s, &id).await?).await?))
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
    let (pending, finished) = s.engine.timers().counts();
    let mut timers = Vec::new();
    for t in s.engine.timers().list(status, limit).await? {
        timers.push(timer_view(&s, t).await?);
    }
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
    /// What happens to firings found late (the server was down or busy, or the schedule
    /// paused): `latest` (default: the latest fires once), `skip` (none fires) or `all` (each
    /// fires, oldest first, at most 1000).
    pub catch_up: Option<CatchUp>,
    /// Late firings older than this never fire, 1-31536000 s (default: no limit).
    pub catch_up_window_seconds: Option<u64>,
}

/// One firing made by a schedule.
#[derive(Serialize, ToSchema)]
pub struct FiringView {
    /// Its scheduled time.
    pub at: String,
    /// Its timer (`GET /v1/timers/{id}`).
    pub timer_id: String,
    /// Fired late (caught up), not at its time.
    pub late: bool,
}

/// The last time late firings were found.
#[derive(Serialize, ToSchema)]
pub struct CatchUpView {
    /// When they were found.
    pub at: String,
    /// How many of them fired.
    pub fired: u64,
    /// How many did not.
    pub missed: u64,
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
    /// The next firing; null while paused.
    pub next_fire_at: Option<String>,
    /// The scheduled time of the last firing (or of the creation).
    pub last_fired_at: Option<String>,
    pub fired: u64,
    /// Firings that did not fire: late ones the catch-up policy left out.
    pub missed: u64,
    pub catch_up: CatchUp,
    pub catch_up_window_seconds: Option<u64>,
    /// Paused: nothing fires until `POST …/resume`.
    pub paused: bool,
    pub paused_at: Option<String>,
    /// The last firings made (at most 10), oldest first.
    pub recent_firings: Vec<FiringView>,
    /// The last catch-up, or null if there never was one.
    pub last_catch_up: Option<CatchUpView>,
    pub created_at: String,
    pub updated_at: String,
}

fn schedule_view(name: String, s: Schedule) -> ScheduleView {
    let next = s.next_fire_at().map(rfc3339);
    ScheduleView {
        recent_firings: s
            .recent_firings
            .iter()
            .map(|f| FiringView {
                at: rfc3339(f.at),
                timer_id: firing_id(&name, f.at).to_string(),
                late: f.late,
            })
            .collect(),
        last_catch_up: s.last_catch_up.map(|r| CatchUpView {
            at: rfc3339(r.at),
            fired: r.fired,
            missed: r.missed,
        }),
        catch_up: s.catch_up,
        catch_up_window_seconds: s.catch_up_window_seconds,
        paused: s.paused_at.is_some(),
        paused_at: s.paused_at.map(rfc3339),
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
    let target = target_spec(target_of!(b));
    let mut sched = Schedule::new(b.cron, target);
    if let Some(tz) = b.timezone {
        sched.timezone = tz;
    }
    sched.catch_up = b.catch_up.unwrap_or_default();
    sched.catch_up_window_seconds = b.catch_up_window_seconds;
    let (sched, created) = s.engine.timers().put_schedule(&name, sched).await?;
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
            .timers()
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
    let v = s.engine.timers().schedule(&name)?;
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
    s.engine.timers().delete_schedule(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pause a cron schedule: nothing fires until it is resumed. Durable; a PUT keeps it.
#[utoipa::path(post, path = "/v1/schedules/{name}/pause", tag = "timers",
    params(("name" = String, Path)),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody)))]
pub async fn pause_schedule(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    let v = s.engine.timers().pause_schedule(&name).await?;
    Ok(Json(schedule_view(name, v)))
}

/// Resume a paused cron schedule. Firings that fell due while it was paused are late: they
/// follow its `catch_up` policy.
#[utoipa::path(post, path = "/v1/schedules/{name}/resume", tag = "timers",
    params(("name" = String, Path)),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody)))]
pub async fn resume_schedule(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    let v = s.engine.timers().resume_schedule(&name).await?;
    Ok(Json(schedule_view(name, v)))
}
