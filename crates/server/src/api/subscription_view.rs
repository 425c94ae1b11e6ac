//! How a subscription is shown: [`SubscriptionView`] (its settings, masked secrets, state and
//! stats: the store's durable counters beside what this node's lane knows now, such as the
//! circuit breaker's state). Every route that answers with a subscription builds it here.

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_engine::push::breaker::{BreakerConfig, Circuit, CircuitState};
use sluice_engine::push::secret::mask;
use sluice_engine::push::{Backoff, BatchConfig, Subscription};
use sluice_engine::{rfc3339, QueueStats};
use utoipa::ToSchema;

use super::error::ApiResult;
use super::AppState;
use crate::auth::{sees_subscription_secrets, Principal};
use crate::delivery::signing::public_key;
use crate::delivery::LaneCounters;
use crate::redact;

#[derive(Serialize, ToSchema)]
pub struct SubscriptionStats {
    /// Copies waiting for delivery (ready now).
    pub ready: u64,
    /// Copies waiting for a retry.
    pub delayed: u64,
    /// Copies leased now: being sent, leased ahead of a free request, or waiting for the
    /// endpoint's pace, a FIFO retry, a hold or an open circuit to end.
    pub in_flight: u64,
    /// Requests being made now.
    pub requests_in_flight: u64,
    /// Deliveries answered 2xx. Like the three counters below, counted by the store since the
    /// subscription was created (or its stats reset): they survive restarts, and replacing the
    /// subscription's settings keeps them.
    pub delivered: u64,
    /// Attempts to be tried again (5xx, 408, timeouts, connection errors).
    pub retried: u64,
    /// Attempts answered 429 (not counted as attempts).
    pub throttled: u64,
    /// Messages given up and dead-lettered.
    pub failed: u64,
    /// Messages published to the queue that `filter` or `event_types` did not select: no copy
    /// was made for this subscription.
    pub filtered: u64,
    /// The adaptive rate in force after 429s (requests/s), or null.
    pub current_rate_limit: Option<f64>,
    /// The queue's consumption is paused (`POST /v1/queues/{queue}/pause`): nothing is sent.
    pub queue_paused: bool,
    /// The endpoint's circuit breaker, as the lane on the node answering sees it (the stored
    /// circuit when no lane of it runs there yet).
    pub circuit: CircuitView,
}

/// A circuit breaker's state. Times are RFC 3339, or null.
#[derive(Serialize, ToSchema)]
pub struct CircuitView {
    /// `closed` (requests go out), `open` (nothing goes out until `next_probe_at`) or
    /// `half_open` (one probe is out).
    pub state: CircuitState,
    /// Failed requests since the last success.
    pub consecutive_failures: u32,
    /// The first of them, while there is no success since.
    pub failing_since: Option<String>,
    pub opened_at: Option<String>,
    pub next_probe_at: Option<String>,
    /// Probes that failed since it opened.
    pub failed_probes: u32,
}

impl From<Circuit> for CircuitView {
    fn from(c: Circuit) -> Self {
        CircuitView {
            state: c.state,
            consecutive_failures: c.consecutive_failures,
            failing_since: c.failing_since.map(rfc3339),
            opened_at: c.opened_at.map(rfc3339),
            next_probe_at: c.next_probe_at.map(rfc3339),
            failed_probes: c.failed_probes,
        }
    }
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
    /// Never returned in full: `whsec_` and the first 4 characters, `whsk_…` for an ed25519
    /// secret key, or null.
    pub signing_secret: Option<String>,
    /// The `whpk_` public key of an ed25519 `signing_secret` (what receivers verify `v1a`
    /// signatures with), or null.
    pub signing_public_key: Option<String>,
    /// While a rotation's grace period lasts: the previous secret, which still signs.
    pub rotation: Option<RotationView>,
    /// The filter policy, as given (null: every message).
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    /// The event types it takes (empty: any).
    pub event_types: Vec<String>,
    pub circuit_breaker: BreakerConfig,
    /// Where given-up messages are reported (masked like `url` for keys that may not change
    /// the subscription), or null.
    pub failure_callback: Option<String>,
    /// Where failed deliveries go.
    pub dead_letter_queue: String,
    /// `active`; `paused` (by `POST …/pause`: nothing is sent until `POST …/resume`);
    /// `disabled` (its endpoint failed for `disable_after_seconds`: nothing is sent until
    /// `POST …/enable`). Disabled wins over paused when both hold.
    pub state: SubscriptionState,
    /// When it was paused (RFC 3339), or null.
    pub paused_at: Option<String>,
    pub disable_after_seconds: u64,
    /// When it was disabled (RFC 3339), or null.
    pub disabled_at: Option<String>,
    /// Why it was disabled, or null.
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub stats: SubscriptionStats,
}

/// The previous secret of a rotation, masked like the current one.
#[derive(Serialize, ToSchema)]
pub struct RotationView {
    /// The previous secret, masked.
    pub previous_secret: String,
    /// Its `whpk_` public key when it is an ed25519 secret key.
    pub previous_public_key: Option<String>,
    /// When it stops signing (RFC 3339).
    pub expires_at: String,
}

/// What a subscription is doing, by its own state (a paused queue shows in
/// `stats.queue_paused`).
#[derive(Serialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionState {
    Active,
    Paused,
    Disabled,
}

pub async fn subscription_view(
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
    let circuit = match c.circuit.clone() {
        Some(circuit) => circuit,
        None => s
            .engine
            .push()
            .circuit(queue, name)
            .await
            .unwrap_or_default(),
    };
    let parent = s.engine.queue_info(queue).await.ok().map(|q| q.config);
    let queue_paused = parent.as_ref().is_some_and(|c| c.paused_at.is_some());
    let dlq = parent
        .and_then(|c| c.dead_letter_queue)
        .unwrap_or_else(|| sluice_engine::push::default_dlq(queue));
    let rotation = sub.rotation(s.engine.now()).map(|p| RotationView {
        previous_secret: mask(&p.secret),
        previous_public_key: public_key(&p.secret),
        expires_at: rfc3339(p.expires_at),
    });
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
        signing_public_key: sub.signing_secret.as_deref().and_then(public_key),
        rotation,
        filter: sub.filter.as_ref().map(|f| f.json().clone()),
        event_types: sub.event_types,
        circuit_breaker: sub.circuit_breaker,
        failure_callback: sub
            .failure_callback
            .map(|u| if clear { u } else { redact::url(&u) }),
        signing_secret: sub.signing_secret.as_deref().map(mask),
        dead_letter_queue: dlq,
        state: match (&sub.disabled, sub.paused_at) {
            (Some(_), _) => SubscriptionState::Disabled,
            (None, Some(_)) => SubscriptionState::Paused,
            (None, None) => SubscriptionState::Active,
        },
        paused_at: sub.paused_at.map(rfc3339),
        disable_after_seconds: sub.disable_after_seconds,
        disabled_at: sub.disabled.as_ref().map(|d| rfc3339(d.at)),
        disabled_reason: sub.disabled.map(|d| d.reason),
        created_at: rfc3339(sub.created_at),
        updated_at: rfc3339(sub.updated_at),
        stats: stats_view(qs, c, circuit, queue_paused),
    })
}

fn stats_view(
    qs: QueueStats,
    c: LaneCounters,
    circuit: Circuit,
    queue_paused: bool,
) -> SubscriptionStats {
    SubscriptionStats {
        ready: qs.ready,
        delayed: qs.delayed,
        in_flight: qs.in_flight,
        requests_in_flight: c.in_flight,
        delivered: qs.delivered,
        retried: qs.retried,
        throttled: qs.throttled,
        failed: qs.failed,
        filtered: qs.filtered,
        current_rate_limit: c.current_rate_limit,
        queue_paused,
        circuit: circuit.into(),
    }
}
