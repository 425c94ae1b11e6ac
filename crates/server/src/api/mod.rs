//! HTTP front ends. Each submodule adapts one protocol to engine calls; none holds queue rules.
//! `router` assembles them with the cross-cutting layers (API keys, request metrics and the
//! keyless guard against cross-site requests and DNS rebinding, fallback errors) behind the
//! front door (`front_door.rs`: every request's way in; publish, receive and ack skip the
//! router). The ground floor every adapter stands on: `state.rs` (what handlers get),
//! `body.rs` (request bodies), `error.rs` (the JSON error shape); `openapi.rs` documents the
//! native API and imports the adapters, never the other way round.

pub mod awe;
pub mod body;
pub mod error;
pub mod forwarder;
mod front_door;
pub mod httpqueue;
pub mod ingest;
pub mod miniqueue;
pub mod native;
pub mod openapi;
pub mod ops;
mod origin;
pub mod sqs;
mod state;
pub mod stream;
pub mod subscription_state;
mod subscription_view;
pub mod subscriptions;
pub mod timers;

pub use self::front_door::FrontDoor;
pub(crate) use self::front_door::Hot;
pub use self::state::{AppInner, AppState, Slots};

use std::sync::Arc;

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

/// The compatibility front ends (SQS, awe_queue, miniqueue): routers with states of their own,
/// built in `server.rs`, merged into the main router.
pub struct CompatRouters {
    pub sqs: Router<AppState>,
    pub awe: Router<AppState>,
    pub miniqueue: Router<AppState>,
    /// The queue the awe routes act on, for the access rules (`auth::need`).
    pub awe_queue: String,
}

pub fn router(state: AppState, compat: CompatRouters) -> FrontDoor {
    let v1 = Router::new()
        .route("/v1/queues", get(native::list_queues))
        .route(
            "/v1/queues/{queue}",
            get(native::get_queue)
                .put(native::put_queue)
                .delete(native::delete_queue),
        )
        .route("/v1/queues/{queue}/purge", post(native::purge_queue))
        .route(
            "/v1/queues/{queue}/messages",
            post(native::publish).get(native::peek),
        )
        .route("/v1/queues/{queue}/receive", post(native::receive))
        .route("/v1/queues/{queue}/ack", post(native::ack))
        .route("/v1/queues/{queue}/nack", post(native::nack))
        .route("/v1/queues/{queue}/visibility", post(native::visibility))
        .route("/v1/queues/{queue}/redrive", post(native::redrive))
        .route(
            "/v1/queues/{queue}/stream",
            get(stream::websocket).post(stream::duplex),
        )
        .route(
            "/v1/queues/{queue}/subscriptions",
            get(subscriptions::list_subscriptions),
        )
        .route(
            "/v1/queues/{queue}/subscriptions/{name}",
            get(subscriptions::get_subscription)
                .put(subscriptions::put_subscription)
                .delete(subscriptions::delete_subscription),
        )
        .route(
            "/v1/queues/{queue}/subscriptions/{name}/attempts",
            get(subscriptions::recent_attempts),
        )
        .route(
            "/v1/queues/{queue}/subscriptions/{name}/stats/reset",
            post(subscriptions::reset_stats),
        )
        .route(
            "/v1/queues/{queue}/subscriptions/{name}/pause",
            post(subscription_state::pause),
        )
        .route(
            "/v1/queues/{queue}/subscriptions/{name}/resume",
            post(subscription_state::resume),
        )
        .route(
            "/v1/queues/{queue}/subscriptions/{name}/enable",
            post(subscription_state::enable),
        )
        .route(
            "/v1/queues/{queue}/subscriptions/{name}/rotate-secret",
            post(subscriptions::rotate_secret),
        )
        .route(
            "/v1/queues/{queue}/subscriptions/{name}/replay",
            post(subscriptions::replay),
        )
        .route(
            "/v1/queues/{queue}/subscriptions/{name}/replay/{task}",
            get(subscriptions::replay_task),
        )
        .route(
            "/v1/queues/{queue}/messages/{id}/attempts",
            get(subscriptions::attempts),
        )
        .route(
            "/v1/timers",
            post(timers::create_timer).get(timers::timer_summary),
        )
        .route(
            "/v1/timers/{id}",
            get(timers::get_timer).delete(timers::cancel_timer),
        )
        .route("/v1/schedules", get(timers::list_schedules))
        .route("/v1/schedules/{name}/pause", post(timers::pause_schedule))
        .route("/v1/schedules/{name}/resume", post(timers::resume_schedule))
        .route("/v1/queues/{queue}/pause", post(native::pause_queue))
        .route("/v1/queues/{queue}/resume", post(native::resume_queue))
        .route(
            "/v1/schedules/{name}",
            get(timers::get_schedule)
                .put(timers::put_schedule)
                .delete(timers::delete_schedule),
        )
        .route("/v1/server", get(ops::server_info))
        .route("/v1/rates", get(ops::rates))
        .route("/v1/ingest", get(ingest::list).post(ingest::upload_raw))
        .route("/v1/ingest/{id}", get(ingest::get_file));
    let routes = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::openapi))
        .route("/ui", get(crate::ui::index))
        .route("/ui/", get(crate::ui::index))
        .route("/ui/{*path}", get(crate::ui::asset))
        // httpqueue (seed 000) and the forwarder (seed 001).
        .route("/health", get(httpqueue::health))
        .route("/timers", post(httpqueue::set_timer))
        .route("/timers/{id}", get(httpqueue::get_timer))
        .route("/log", post(forwarder::log))
        // wds (seed 003): upload a file to the watched folder, redrive failed deliveries.
        .route(
            "/upload",
            post(ingest::upload_form)
                .put(ingest::upload_form)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/retry", get(ingest::retry).post(ingest::retry))
        .merge(v1)
        // The SQS API (JSON and query protocols) on the root and on queue URLs; `GET /` without
        // an action is the dashboard.
        .merge(compat.sqs)
        .merge(compat.awe)
        .merge(compat.miniqueue);
    // Without keys there is nothing to check: no layer, so no boxed future and no clone of
    // the route per request (keys are read once, at start).
    let awe_queue = Arc::<str>::from(compat.awe_queue);
    let routes = if state.auth.enabled() {
        routes.route_layer(middleware::from_fn_with_state(
            (state.clone(), awe_queue.clone()),
            front_door::authorize,
        ))
    } else {
        routes
    };
    let routes = routes
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            front_door::track,
        ))
        .with_state(state.clone());
    FrontDoor::new(routes, state, awe_queue)
}
