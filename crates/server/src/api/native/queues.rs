//! Queues: create, configure, list, inspect, purge, delete, pause and resume consumption.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_engine::{
    rfc3339, OnExpire, QueueConfig, QueueConfigPatch, QueueCounts, QueueInfo, QueueStats,
};
use utoipa::ToSchema;

use crate::api::body::{double_option, parse_json_or_default, RawBody};
use crate::api::error::{ApiResult, ErrorBody};
use crate::api::AppState;

/// Queue configuration. On PUT every field is optional: absent fields keep their current value
/// (or the default for a new queue); `null` clears `max_receives`, `dead_letter_queue`,
/// `default_ttl_seconds`, `max_in_flight_per_group` and `group_rate_per_second`.
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
    /// Push queues: keep each subscription's delivered messages this long for replay, 0 (not
    /// kept, the default) or 60-1209600 s.
    pub retain_delivered_seconds: Option<u32>,
    /// How long a deduplication id (`deduplication_id`, `Idempotency-Key`) is remembered,
    /// 1-86400 s. Default 300.
    #[schema(minimum = 1, maximum = 86400)]
    pub dedup_window_seconds: Option<u32>,
    /// Time to live of a message published without `ttl_seconds`/`expires_at`, 1-1209600 s,
    /// or null (none, the default).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub default_ttl_seconds: Option<Option<u32>>,
    /// What happens to a message whose time to live ends: `drop` (the default) or
    /// `dead_letter` (needs `dead_letter_queue`).
    pub on_expire: Option<OnExpireSetting>,
    /// Standard queues: at most this many leased messages per message group, 1-100000, or
    /// null (no limit, the default). A group at the limit is skipped until one settles.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub max_in_flight_per_group: Option<Option<u32>>,
    /// Standard queues: each message group is handed at most this many messages a second
    /// (a token bucket, burst the same), 1-100000, or null (no limit, the default). Buckets
    /// start full after a restart.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub group_rate_per_second: Option<Option<u32>>,
}

/// What happens to a message whose time to live ends (it is never delivered again).
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, Debug)]
#[serde(rename_all = "snake_case")]
pub enum OnExpireSetting {
    /// Removed, and counted in the queue's `expired` stat.
    Drop,
    /// Moved to the queue's dead-letter queue (where it has no time to live), and counted in
    /// `expired` and `dead_lettered_total`.
    DeadLetter,
}

impl From<OnExpireSetting> for OnExpire {
    fn from(o: OnExpireSetting) -> Self {
        match o {
            OnExpireSetting::Drop => OnExpire::Drop,
            OnExpireSetting::DeadLetter => OnExpire::DeadLetter,
        }
    }
}

impl From<OnExpire> for OnExpireSetting {
    fn from(o: OnExpire) -> Self {
        match o {
            OnExpire::Drop => OnExpireSetting::Drop,
            OnExpire::DeadLetter => OnExpireSetting::DeadLetter,
        }
    }
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
            retain_delivered_seconds: b.retain_delivered_seconds,
            dedup_window_seconds: b.dedup_window_seconds,
            default_ttl_seconds: b.default_ttl_seconds,
            on_expire: b.on_expire.map(Into::into),
            max_in_flight_per_group: b.max_in_flight_per_group,
            group_rate_per_second: b.group_rate_per_second,
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
    pub retain_delivered_seconds: u32,
    /// How long a deduplication id is remembered, in seconds.
    pub dedup_window_seconds: u32,
    /// Time to live of a message published without its own (null: none).
    pub default_ttl_seconds: Option<u32>,
    pub on_expire: OnExpireSetting,
    /// Leased messages per message group at most (null: no limit).
    pub max_in_flight_per_group: Option<u32>,
    /// Messages a second per message group at most (null: no limit).
    pub group_rate_per_second: Option<u32>,
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
            retain_delivered_seconds: c.retain_delivered_seconds,
            dedup_window_seconds: c.dedup_window_seconds,
            default_ttl_seconds: c.default_ttl_seconds,
            on_expire: c.on_expire.into(),
            max_in_flight_per_group: c.max_in_flight_per_group,
            group_rate_per_second: c.group_rate_per_second,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct QueueView {
    pub name: String,
    pub config: QueueConfigView,
    /// Consumption paused (`POST …/pause`): receives, and the push deliveries of its
    /// subscriptions, hand out nothing; publishes are accepted.
    pub paused: bool,
    /// Since when, while paused.
    pub paused_at: Option<String>,
    /// The queue's own list. Gauges are exact when read; counters count since the queue was
    /// created (or its counters were reset), across restarts.
    pub stats: QueueStats,
    /// Where the queue's messages are now, its subscriptions' copies and dead letters included:
    /// the figures to show for a queue.
    pub counts: QueueCounts,
    pub created_at: String,
    pub updated_at: String,
}

fn queue_view((info, stats, counts): (QueueInfo, QueueStats, QueueCounts)) -> QueueView {
    QueueView {
        name: info.name,
        paused: info.config.paused_at.is_some(),
        paused_at: info.config.paused_at.map(rfc3339),
        config: info.config.into(),
        stats,
        counts,
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
    let queues = s.engine.list_queue_counts().await?;
    Ok(Json(QueueList {
        queues: queues
            .into_iter()
            .filter(|(i, _, _)| caller.as_ref().is_none_or(|p| p.covers(&i.name)))
            .map(queue_view)
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
    let (_, created) = s.engine.put_queue(&queue, cfg.into()).await?;
    let view = queue_view(s.engine.queue_counts(&queue).await?);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

/// One queue with its configuration and stats.
#[utoipa::path(get, path = "/v1/queues/{queue}", tag = "queues",
    params(("queue" = String, Path)),
    responses((status = 200, body = QueueView), (status = 404, body = ErrorBody)))]
pub async fn get_queue(
    State(s): State<AppState>,
    Path(queue): Path<String>,
) -> ApiResult<Json<QueueView>> {
    Ok(Json(queue_view(s.engine.queue_counts(&queue).await?)))
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

/// Pause the queue's consumption: receives (and its subscriptions' deliveries) hand out
/// nothing until it is resumed; publishes are still accepted. Durable.
#[utoipa::path(post, path = "/v1/queues/{queue}/pause", tag = "queues",
    params(("queue" = String, Path)),
    responses((status = 200, body = QueueView), (status = 404, body = ErrorBody)))]
pub async fn pause_queue(
    State(s): State<AppState>,
    Path(queue): Path<String>,
) -> ApiResult<Json<QueueView>> {
    s.engine.pause_queue(&queue).await?;
    Ok(Json(queue_view(s.engine.queue_counts(&queue).await?)))
}

/// Resume a paused queue's consumption.
#[utoipa::path(post, path = "/v1/queues/{queue}/resume", tag = "queues",
    params(("queue" = String, Path)),
    responses((status = 200, body = QueueView), (status = 404, body = ErrorBody)))]
pub async fn resume_queue(
    State(s): State<AppState>,
    Path(queue): Path<String>,
) -> ApiResult<Json<QueueView>> {
    s.engine.resume_queue(&queue).await?;
    Ok(Json(queue_view(s.engine.queue_counts(&queue).await?)))
}
