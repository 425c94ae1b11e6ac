//! A subscription's state, changed by its owner: pause, resume, and enable after sluice
//! disabled it. Thin adapters over the engine's `Push::pause`/`resume`/`enable`
//! (`push/hold.rs` holds the rule); each answers with the subscription's view, so a caller
//! sees the state it set.

use axum::extract::{Extension, Path, State};
use axum::Json;

use super::error::{ApiResult, ErrorBody};
use super::subscriptions::{subscription_view, SubscriptionView};
use super::AppState;
use crate::auth::Principal;

/// Pause a subscription: nothing is sent to it until it is resumed. Its messages keep
/// arriving and wait (the queue's retention still applies); no attempt is used and nothing is
/// dead-lettered because of the pause. Requests already in flight finish. Idempotent; durable;
/// replacing the subscription's settings keeps it.
#[utoipa::path(post, path = "/v1/queues/{queue}/subscriptions/{name}/pause", tag = "push",
    params(("queue" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = ErrorBody)))]
pub async fn pause(
    State(s): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
    caller: Option<Extension<Principal>>,
) -> ApiResult<Json<SubscriptionView>> {
    let sub = s.engine.push().pause(&queue, &name).await?;
    Ok(Json(
        subscription_view(&s, &queue, &name, sub, caller.as_deref()).await?,
    ))
}

/// Resume a paused subscription: the messages that waited go out, oldest first. Idempotent.
#[utoipa::path(post, path = "/v1/queues/{queue}/subscriptions/{name}/resume", tag = "push",
    params(("queue" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = ErrorBody)))]
pub async fn resume(
    State(s): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
    caller: Option<Extension<Principal>>,
) -> ApiResult<Json<SubscriptionView>> {
    let sub = s.engine.push().resume(&queue, &name).await?;
    Ok(Json(
        subscription_view(&s, &queue, &name, sub, caller.as_deref()).await?,
    ))
}

/// Enable a subscription that was disabled after failing for `disable_after_seconds`: its
/// circuit breaker starts closed with a fresh count, and the messages that waited go out
/// (unless it is also paused). Idempotent.
#[utoipa::path(post, path = "/v1/queues/{queue}/subscriptions/{name}/enable", tag = "push",
    params(("queue" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = ErrorBody)))]
pub async fn enable(
    State(s): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
    caller: Option<Extension<Principal>>,
) -> ApiResult<Json<SubscriptionView>> {
    let sub = s.engine.push().enable(&queue, &name).await?;
    Ok(Json(
        subscription_view(&s, &queue, &name, sub, caller.as_deref()).await?,
    ))
}
