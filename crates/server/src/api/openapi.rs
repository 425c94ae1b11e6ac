//! The OpenAPI document of the native API (`/openapi.json`): every documented route and
//! schema, plus the answers every route shares, added in one place. It imports the adapters
//! it describes; no adapter imports it.

use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::OpenApi;

use super::{error, ingest, native, ops, subscription_state, subscriptions, timers};

#[derive(OpenApi)]
#[openapi(
    info(title = "sluice", description = "Durable queues over HTTP. Errors are `{\"error\":{\"code\",\"message\"}}`."),
    paths(
        ops::healthz, ops::readyz, ops::metrics, ops::server_info, ops::rates,
        native::list_queues, native::put_queue, native::get_queue, native::delete_queue,
        native::purge_queue, native::publish, native::peek, native::receive, native::ack,
        native::nack, native::visibility, native::redrive,
        subscriptions::put_subscription, subscriptions::list_subscriptions,
        subscriptions::get_subscription, subscriptions::delete_subscription,
        subscriptions::attempts, subscriptions::recent_attempts, subscriptions::reset_stats,
        subscriptions::replay, subscriptions::replay_task, subscriptions::rotate_secret,
        subscription_state::pause, subscription_state::resume, subscription_state::enable,
        timers::create_timer, timers::get_timer, timers::cancel_timer, timers::timer_summary,
        timers::put_schedule, timers::list_schedules, timers::get_schedule,
        timers::delete_schedule, timers::pause_schedule, timers::resume_schedule,
        native::pause_queue, native::resume_queue,
        ingest::list, ingest::get_file, ingest::upload_raw,
    ),
    components(schemas(
        error::ErrorBody, error::ErrorDetail, ops::ServerInfo, ops::NodeView,
        crate::rates::RatesView, crate::rates::Series,
        native::QueueConfigBody, native::QueueConfigView, native::OnExpireSetting, native::QueueView,
        native::QueueList, native::Purged, native::PublishBody, native::PublishBatchBody,
        native::Published, native::PublishedBatch, native::ReceiveBody, native::MessageView,
        native::MessageList, native::AckBody, native::NackBody, native::FailedReceipt,
        native::AckResult, native::NackResult, native::VisibilityBody, native::VisibilityResult,
        native::RedriveBody, native::Redriven,
        subscriptions::BackoffBody, subscriptions::BatchBody, subscriptions::SubscriptionBody,
        subscriptions::SubscriptionStats, subscriptions::SubscriptionView,
        subscriptions::SubscriptionState, subscriptions::BreakerBody, subscriptions::CircuitView,
        sluice_engine::push::breaker::BreakerConfig, sluice_engine::push::breaker::CircuitState,
        subscriptions::SubscriptionList, subscriptions::RecentAttempts,
        subscriptions::MessageAttempts, subscriptions::AttemptList,
        sluice_engine::push::Attempt, sluice_engine::push::Outcome, subscriptions::ReplayBody,
        sluice_engine::push::ReplayOutcome, sluice_engine::push::ReplayTask,
        subscriptions::RotateBody, subscriptions::RotateAnswer, subscriptions::RotationView,
        sluice_engine::push::SecretKind,
        timers::TimerBody, timers::TimerView, timers::TimerSummary, timers::ScheduleBody,
        timers::ScheduleView, timers::ScheduleList, timers::FiringView, timers::CatchUpView,
        sluice_engine::timers::CatchUp,
        crate::ingest::IngestView, crate::ingest::WatchView, crate::ingest::WaitingFile,
        crate::ingest::FileRecord, crate::ingest::FileState, crate::ingest::Format,
        crate::ingest::DedupKey, crate::ingest::upload::Accepted, ingest::UploadAnswer,
        sluice_engine::push::Backoff, sluice_engine::push::BatchConfig,
    )),
    tags((name = "queues"), (name = "messages"), (name = "push"), (name = "timers"), (name = "ops"))
)]
pub struct ApiDoc;

/// This document.
pub async fn openapi() -> Response {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    document_common_answers(&mut doc);
    Json(doc).into_response()
}

/// What every route shares, added in one place rather than on each handler: queue names in
/// paths have a documented pattern, and every operation may answer the generic errors
/// (bad input, missing or insufficient API key, too large, too slow, storage unavailable).
fn document_common_answers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    let common = [
        (
            "400",
            "bad input: the message names the field and the limit",
        ),
        ("401", "API keys are configured and no valid key was sent"),
        ("403", "the API key's role or queues do not allow this call"),
        ("408", "the request body did not arrive in time"),
        ("413", "the request body is larger than the server accepts"),
        ("503", "storage is unavailable"),
    ];
    let queue_name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$"))
        .max_length(Some(85))
        .min_length(Some(1))
        .build();
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            let public = op
                .tags
                .as_ref()
                .is_some_and(|t| t.iter().any(|t| t == "ops"))
                && op
                    .operation_id
                    .as_deref()
                    .is_some_and(|id| matches!(id, "healthz" | "readyz" | "openapi"));
            for (code, what) in common {
                if public && code != "503" {
                    continue;
                }
                op.responses
                    .responses
                    .entry(code.to_string())
                    .or_insert_with(|| error(what));
            }
            for p in op.parameters.iter_mut().flatten() {
                if p.name == "queue" && p.parameter_in == ParameterIn::Path {
                    p.schema = Some(RefOr::T(queue_name.clone().into()));
                }
            }
        }
    }
}
