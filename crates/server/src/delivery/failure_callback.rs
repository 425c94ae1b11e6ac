//! A subscription's `failure_callback`: when a delivery is given up (dead-lettered), its
//! messages and last attempt are POSTed to the callback URL, signed like the subscription's
//! deliveries. The call is made by the timers (a timer due now, `signed_for` the
//! subscription), so it is durable, retried on the timers' backoff, and behind the same
//! address guard as every call to a URL a user gave. The timer lane signs it when it sends
//! (`signature`), with the subscription's secrets in force then: no secret is stored in the
//! timer. It is created after the dead letter is stored: a crash in between loses the
//! callback, never the dead letter.

use serde_json::json;
use sluice_engine::push::{Attempt, SubscriptionRef};
use sluice_engine::timers::{TimerSpec, TIMER_BODY_MAX};
use sluice_engine::{Delivery, Engine};

use super::PushManager;

impl PushManager {
    /// Schedule the failure callback of `got`, dead-lettered to `dead_letter_queue`.
    pub(super) async fn failure_callback(
        &self,
        s: &SubscriptionRef,
        got: &[Delivery],
        last: &Attempt,
        dead_letter_queue: Option<&str>,
    ) {
        let Some(url) = &s.config.failure_callback else {
            return;
        };
        let message = |d: &Delivery, with_body: bool| {
            json!({
                "id": d.message.id.to_string(),
                "body": with_body.then(|| String::from_utf8_lossy(&d.message.body).into_owned()),
                "attributes": d.message.attributes,
            })
        };
        let body = |with_body: bool| {
            json!({
                "type": "message.failed",
                "queue": s.queue,
                "subscription": s.name,
                "dead_letter_queue": dead_letter_queue,
                "messages": got.iter().map(|d| message(d, with_body)).collect::<Vec<_>>(),
                "bodies_omitted": !with_body,
                "last_attempt": last,
            })
            .to_string()
        };
        let mut text = body(true);
        if text.len() > TIMER_BODY_MAX {
            // Too big for a timer: the bodies stay in the dead-letter queue.
            text = body(false);
        }
        let mut spec = TimerSpec::http(url.clone());
        spec.headers
            .insert("content-type".into(), "application/json".into());
        spec.body = Some(text);
        spec.signed_for = Some(format!("{}/{}", s.queue, s.name));
        spec.due_at = self.engine.now();
        if let Err(e) = self.engine.timers().create(spec, None).await {
            tracing::warn!(queue = %s.queue, subscription = %s.name, error = %e, "could not schedule the failure callback");
        }
    }
}

/// The `webhook-signature` of a failure callback of subscription `signed_for` (`QUEUE/NAME`),
/// with its secrets in force now; None when it has none (or is gone).
pub(super) fn signature(
    engine: &Engine,
    signed_for: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Option<String> {
    let (queue, name) = signed_for.rsplit_once('/')?;
    let sub = engine.push().get(queue, name).ok()?;
    let secrets = sub.secrets_in_force(timestamp * 1000);
    super::signing::signature_header(&secrets, id, timestamp, body)
}
