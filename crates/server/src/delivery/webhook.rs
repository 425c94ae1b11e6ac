//! One webhook attempt of a subscription: build the request (the message's body or a batch's
//! JSON array, its attributes as headers, the configured headers, `webhook-*` ids and the
//! Standard Webhooks signature), send it, let the engine's policy decide what the answer
//! means; then (`settle`, for many answered requests at once) record the attempts and settle
//! the deliveries through the engine.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram};

use sluice_engine::history::limits::DELIVERED_EXCERPT;
use sluice_engine::push::breaker::Verdict;
use sluice_engine::push::pace::Ticket;
use sluice_engine::push::{
    self, Attempt, Decision, DeliveryPolicy, Outcome, Settled, SubscriptionRef,
};
use sluice_engine::Delivery;

use super::http::{self, Request, Target};
use super::throttle::Throttle;
use super::PushManager;

/// A request answered and decided, waiting to be settled (in a batch, by its lane's settler).
pub(super) struct Answered {
    pub got: Vec<Delivery>,
    pub decision: Decision,
    pub attempt: Attempt,
}

/// A subscription's request metrics (`sluice_push_attempts_total`, `..._deliveries_total`,
/// `sluice_push_request_seconds`), each registered once per lane at its first use: a
/// registration copies the labels and hashes the key, and every delivery used to pay for three
/// (BENCHMARKS.md, "Push: fewer instructions per delivery"). The exporter as configured has no
/// idle timeout (`telemetry.rs`), so a kept handle stays the one `/metrics` shows.
pub(super) struct Meters {
    queue: String,
    subscription: String,
    /// By outcome: delivered, retry, throttled, failed.
    attempts: [OnceLock<Counter>; 4],
    /// By final outcome: delivered, failed.
    deliveries: [OnceLock<Counter>; 2],
    request_seconds: OnceLock<Histogram>,
}

impl Meters {
    pub fn new(s: &SubscriptionRef) -> Meters {
        Meters {
            queue: s.queue.clone(),
            subscription: s.name.clone(),
            attempts: Default::default(),
            deliveries: Default::default(),
            request_seconds: OnceLock::new(),
        }
    }

    /// Count one answered request of `messages` and its duration.
    fn answered(&self, outcome: Outcome, messages: usize, took: Duration) {
        let (queue, subscription) = (&self.queue, &self.subscription);
        let counter = |name: &'static str| metrics::counter!(name, "queue" => queue.clone(), "subscription" => subscription.clone(), "outcome" => outcome.label());
        let (attempt, delivery) = match outcome {
            Outcome::Delivered => (0, Some(0)),
            Outcome::Retry => (1, None),
            Outcome::Throttled => (2, None),
            Outcome::Failed => (3, Some(1)),
        };
        self.attempts[attempt]
            .get_or_init(|| counter("sluice_push_attempts_total"))
            .increment(1);
        if let Some(d) = delivery {
            self.deliveries[d]
                .get_or_init(|| counter("sluice_push_deliveries_total"))
                .increment(messages as u64);
        }
        self.request_seconds
            .get_or_init(|| metrics::histogram!("sluice_push_request_seconds", "queue" => queue.clone(), "subscription" => subscription.clone()))
            .record(took.as_secs_f64());
    }
}

impl PushManager {
    /// Make one request for `got` (one message, or a batch) to `target` (the subscription's
    /// URL, parsed once by its lane) and decide what its answer means
    /// (the endpoint's pace is told at once). Returns what the answer says about the endpoint
    /// (for its circuit) and what to settle, or None when no request was made.
    pub(super) async fn call(
        &self,
        s: &SubscriptionRef,
        target: &Target,
        got: Vec<Delivery>,
        throttle: &Throttle,
        ticket: Ticket,
        meters: &Meters,
    ) -> Option<(Verdict, Answered)> {
        let sub = &s.config;
        let push = self.engine.push();
        let (attempt, throttled) = match push.next_attempt(s, &got).await {
            Ok(a) => a,
            Err(e) => {
                // Without its history the attempt cannot be numbered: the lease brings it back.
                tracing::warn!(queue = %s.queue, subscription = %s.name, error = %e, "could not read a delivery's attempts");
                throttle.on_other(ticket);
                return None;
            }
        };
        let req = request(s, target, &got, attempt);
        let started_at = self.engine.now();
        let excerpt = req.excerpt();
        let resp = self.sender.send(req).await;
        let answer = resp.answer();
        let decision =
            DeliveryPolicy::of(sub).decide(&answer, attempt, throttled, rand::random(), |ra| {
                throttle.on_throttled(ticket, ra)
            });
        let label = decision.outcome.label();
        meters.answered(decision.outcome, got.len(), resp.duration);
        if sub.batching() {
            tracing::info!(queue = %s.queue, subscription = %s.name, size = got.len(), status = ?resp.status, error = ?resp.error, duration_ms = resp.duration.as_millis() as u64, outcome = label, "forwarded batch");
        } else {
            tracing::debug!(queue = %s.queue, subscription = %s.name, status = ?resp.status, error = ?resp.error, duration_ms = resp.duration.as_millis() as u64, outcome = label, "delivery attempt");
        }
        let attempt = attempt_entry(
            Call {
                queue: &s.queue,
                subscription: &s.name,
                attempt,
                throttled,
                at: started_at,
                batch_size: got.len(),
                request: excerpt,
            },
            &resp,
            &decision,
        );
        match decision.outcome {
            Outcome::Delivered => throttle.on_success(ticket),
            Outcome::Throttled => {} // the policy told the pace already
            Outcome::Retry | Outcome::Failed => throttle.on_other(ticket),
        }
        Some((
            Verdict::of(&answer),
            Answered {
                got,
                decision,
                attempt,
            },
        ))
    }

    /// Settle answered requests of `s` together (durably: attempts recorded, copies removed,
    /// released or dead-lettered), then tell observers, send events and schedule failure
    /// callbacks. A failed settlement is logged: the leases bring the messages back.
    pub(super) async fn settle(&self, s: &SubscriptionRef, batch: &[Answered]) {
        let each: Vec<push::Answered<'_>> = batch
            .iter()
            .map(|a| push::Answered {
                got: &a.got,
                decision: &a.decision,
                attempt: &a.attempt,
            })
            .collect();
        let settled = match self.engine.push().settle_many(s, &each).await {
            Ok(settled) => settled,
            Err(e) => {
                tracing::warn!(queue = %s.queue, subscription = %s.name, requests = batch.len(), error = %e, "could not record delivery outcomes; the leases will return the messages");
                return;
            }
        };
        for (a, settled) in batch.iter().zip(settled) {
            match settled {
                Settled {
                    outcome: Outcome::Delivered,
                    ..
                } => self.observe(&s.queue, &s.name, &a.got, true),
                Settled {
                    outcome: Outcome::Failed,
                    dead_letter_queue,
                } => {
                    self.failed(s, a, dead_letter_queue.as_deref()).await;
                }
                _ => {}
            }
        }
    }

    /// A request given up: its messages are in `dead_letter_queue`.
    async fn failed(&self, s: &SubscriptionRef, a: &Answered, dead_letter_queue: Option<&str>) {
        let got = &a.got;
        self.observe(&s.queue, &s.name, got, false);
        tracing::warn!(queue = %s.queue, subscription = %s.name, messages = got.len(), dead_letter_queue = ?dead_letter_queue, error = %a.decision.reason, "delivery failed; dead-lettered");
        self.event(
            "attempt.exhausted",
            serde_json::json!({
                "queue": s.queue,
                "subscription": s.name,
                "message_ids": got.iter().map(|d| d.message.id.to_string()).collect::<Vec<_>>(),
                "dead_letter_queue": dead_letter_queue,
                "attempt": a.attempt.attempt,
                "reason": a.decision.reason,
            }),
        );
        if s.config.failure_callback.is_some() {
            self.failure_callback(s, got, &a.attempt, dead_letter_queue)
                .await;
        }
    }
}

/// The request of one attempt.
fn request(s: &SubscriptionRef, target: &Target, got: &[Delivery], attempt: u32) -> Request {
    let sub = &s.config;
    let (webhook_id, body, content_type) = build_body(got, sub.batching());
    let timestamp = chrono::Utc::now().timestamp();
    let mut headers: Vec<(String, String)> = Vec::new();
    let configured = |k: &str| sub.headers.keys().any(|h| h.eq_ignore_ascii_case(k));
    if got.len() == 1 && !sub.batching() {
        for (k, v) in &got[0].message.attributes {
            // The subscription's own headers win over attributes of the same name.
            if header_ok(k, v) && !k.eq_ignore_ascii_case("content-type") && !configured(k) {
                headers.push((k.clone(), v.clone()));
            }
        }
    }
    headers.extend(sub.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    if !configured("content-type") {
        headers.push(("content-type".into(), content_type));
    }
    headers.push(("webhook-id".into(), webhook_id.clone()));
    headers.push(("webhook-timestamp".into(), timestamp.to_string()));
    let secrets = sub.secrets_in_force(timestamp * 1000);
    if let Some(sig) = super::signing::signature_header(&secrets, &webhook_id, timestamp, &body) {
        headers.push(("webhook-signature".into(), sig));
    }
    headers.push(("sluice-queue".into(), s.queue.clone()));
    headers.push(("sluice-subscription".into(), s.name.clone()));
    headers.push(("sluice-attempt".into(), attempt.to_string()));
    if sub.batching() {
        headers.push(("sluice-batch-size".into(), got.len().to_string()));
    }
    Request {
        method: sub.method.parse().unwrap_or(hyper::Method::POST),
        url: target.clone(),
        headers,
        body,
        timeout: Duration::from_secs_f64(sub.timeout_seconds),
        trusted: sub.trusted,
    }
}

/// One request, as the history records it.
pub(super) struct Call<'a> {
    pub queue: &'a str,
    pub subscription: &'a str,
    pub attempt: u32,
    /// 429s the message(s) got before this request.
    pub throttled: u32,
    pub at: i64,
    pub batch_size: usize,
    /// The request's excerpt (`Request::excerpt`).
    pub request: String,
}

/// The history entry of one request. A successful one keeps shorter excerpts: the history's
/// budget is better spent on the failures people look into.
pub(super) fn attempt_entry(call: Call<'_>, resp: &http::Response, decision: &Decision) -> Attempt {
    let outcome = decision.outcome;
    let (mut request, mut response) = (call.request, resp.excerpt.clone());
    if outcome == Outcome::Delivered {
        truncate(&mut request, DELIVERED_EXCERPT);
        truncate(&mut response, DELIVERED_EXCERPT);
    }
    Attempt {
        at: call.at,
        queue: call.queue.to_string(),
        subscription: call.subscription.to_string(),
        request,
        attempt: call.attempt,
        status: resp.status,
        error: resp.error.clone(),
        duration_ms: resp.duration.as_millis() as u64,
        response,
        outcome,
        next_attempt_at: matches!(outcome, Outcome::Retry | Outcome::Throttled)
            .then(|| call.at + resp.duration.as_millis() as i64 + decision.delay_ms as i64),
        batch_size: call.batch_size as u32,
        throttled: call.throttled + (outcome == Outcome::Throttled) as u32,
    }
}

/// Cut `s` to at most `max` bytes, on a character boundary, marking the cut.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push('…');
    }
}

/// An attribute that can travel as a header (and is not one sluice or HTTP reserves).
fn header_ok(k: &str, v: &str) -> bool {
    let lk = k.to_ascii_lowercase();
    let reserved = matches!(
        lk.as_str(),
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "upgrade"
            | "te"
            | "trailer"
            | "keep-alive"
            | "proxy-connection"
    ) || lk.starts_with("webhook-")
        || (lk.starts_with("sluice-") && !lk.starts_with("sluice-ingest-"));
    !reserved
        && !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

pub(super) fn guess_content_type(body: &[u8]) -> String {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        "application/json".into()
    } else if std::str::from_utf8(body).is_ok() {
        "text/plain; charset=utf-8".into()
    } else {
        "application/octet-stream".into()
    }
}

/// (webhook-id, body, content-type) of a delivery. One message: its own body and id (its
/// `content-type` attribute, if any, wins). A batching subscription always sends a JSON array
/// of the bodies (JSON bodies embedded as JSON, others as strings), even of one, under an id
/// derived from the message ids.
fn build_body(got: &[Delivery], batching: bool) -> (String, Vec<u8>, String) {
    if got.len() == 1 && !batching {
        let m = &got[0].message;
        let ct = m
            .attributes
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case("content-type") && header_ok("x", v))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| guess_content_type(&m.body));
        return (m.id.to_string(), m.body.clone(), ct);
    }
    let items: Vec<serde_json::Value> = got
        .iter()
        .map(|d| {
            serde_json::from_slice(&d.message.body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&d.message.body).into_owned())
            })
        })
        .collect();
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for d in got {
        h.update(d.message.id.0.to_be_bytes());
    }
    let id: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (
        format!("batch_{id}"),
        serde_json::to_vec(&items).expect("json"),
        "application/json".into(),
    )
}
