//! Push delivery, the HTTP side. The engine keeps subscriptions, copies, leases, backoff
//! delays, dead letters and the attempts log; this module only makes the calls.
//!
//! One *lane* per subscription (and one for timers): a loop that waits for a concurrency slot
//! and the endpoint's pace (throttle.rs), leases the next message(s) from the subscription's
//! queue with a long poll, and hands them to a delivery task. A slow or dead endpoint only
//! fills its own lane's slots; other lanes never wait for it. The manager starts and stops
//! lanes as subscriptions change.

pub mod http;
mod throttle;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use sluice_engine::push::{classify, Attempt, Outcome, SubscriptionRef};
use sluice_engine::timers::{TimerSpec, FAILED, SUCCEEDED, TIMER_QUEUE};
use sluice_engine::{Delivery, Engine, MessageId, Publish};
use tokio::sync::{watch, Semaphore};

use self::http::{Request, Sender};
use self::throttle::Throttle;

/// Longest long poll of a lane's receive: a stopped lane notices within this.
const LEASE_POLL_MS: u64 = 1000;

/// Server-wide push settings.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub allow_private_targets: bool,
    /// Concurrent timer calls.
    pub timer_concurrency: usize,
    /// The forwarder's `--exit-on-forward-failure`: exit when its batch is dead-lettered.
    pub exit_on_forward_failure: bool,
}

/// Live counters of one lane (for the API and the dashboard).
#[derive(Default, Serialize, Clone, Debug)]
pub struct LaneCounters {
    pub delivered: u64,
    pub retried: u64,
    pub throttled: u64,
    pub failed: u64,
    pub in_flight: u64,
    /// The adaptive rate in force after 429s (requests/s), or null.
    pub current_rate_limit: Option<f64>,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    retried: AtomicU64,
    throttled: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicU64,
}

struct LaneHandle {
    updated_at: i64,
    stop: watch::Sender<bool>,
    counters: Arc<Counters>,
    throttle: Arc<Throttle>,
}

pub struct PushManager {
    engine: Arc<Engine>,
    sender: Arc<Sender>,
    opts: PushOptions,
    lanes: Mutex<HashMap<(String, String), LaneHandle>>,
    /// Timer calls in flight per target host (each host gets at most a quarter of the timer
    /// lane's slots, so one dead host cannot hold them all).
    timer_hosts: Mutex<HashMap<String, usize>>,
    /// 429 answers per message, which do not count as attempts.
    throttled: Arc<Mutex<HashMap<(String, MessageId), u32>>>,
    /// Told about every settled delivery (file ingestion counts them per file).
    observer: parking_lot::RwLock<Option<Arc<dyn DeliveryObserver>>>,
}

/// Learns the final outcome of deliveries: delivered, or dead-lettered.
pub trait DeliveryObserver: Send + Sync {
    fn settled(&self, queue: &str, subscription: &str, messages: &[Delivery], delivered: bool);
}

/// What a lane delivers to.
#[derive(Clone)]
enum Target {
    Sub(SubscriptionRef),
    Timers,
}

impl PushManager {
    pub fn new(engine: Arc<Engine>, opts: PushOptions) -> anyhow::Result<Arc<PushManager>> {
        Ok(Arc::new(PushManager {
            engine,
            sender: Arc::new(Sender::new(opts.allow_private_targets)?),
            opts,
            lanes: Mutex::new(HashMap::new()),
            timer_hosts: Mutex::new(HashMap::new()),
            throttled: Default::default(),
            observer: Default::default(),
        }))
    }

    pub fn set_observer(&self, observer: Arc<dyn DeliveryObserver>) {
        *self.observer.write() = Some(observer);
    }

    fn observe(&self, queue: &str, subscription: &str, messages: &[Delivery], delivered: bool) {
        if let Some(o) = self.observer.read().as_ref() {
            o.settled(queue, subscription, messages, delivered);
        }
    }

    /// Start the timer lane and the reconcile loop (until the engine shuts down).
    pub fn start(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let (_keep, stop) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let me = self.clone();
        let throttle = Arc::new(Throttle::new(None));
        tokio::spawn(async move {
            let _keep = _keep;
            me.run_lane(Target::Timers, stop, counters, throttle).await;
        });
        let me = self.clone();
        let mut changed = self.engine.subscriptions_changed();
        tokio::spawn(async move {
            loop {
                me.reconcile().await;
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {
                        for (_, l) in me.lanes.lock().drain() {
                            let _ = l.stop.send(true);
                        }
                        return;
                    }
                }
            }
        });
    }

    async fn reconcile(self: &Arc<Self>) {
        let subs = self.engine.all_subscriptions();
        let mut push_queues: Vec<String> = Vec::new();
        {
            let mut lanes = self.lanes.lock();
            let wanted: std::collections::HashSet<(String, String)> = subs
                .iter()
                .map(|s| (s.queue.clone(), s.name.clone()))
                .collect();
            lanes.retain(|k, l| {
                let keep = wanted.contains(k);
                if !keep {
                    let _ = l.stop.send(true);
                }
                keep
            });
            for s in &subs {
                if !push_queues.contains(&s.queue) {
                    push_queues.push(s.queue.clone());
                }
                let key = (s.queue.clone(), s.name.clone());
                if lanes
                    .get(&key)
                    .is_some_and(|l| l.updated_at == s.config.updated_at)
                {
                    continue;
                }
                if let Some(old) = lanes.remove(&key) {
                    let _ = old.stop.send(true);
                }
                let (stop_tx, stop_rx) = watch::channel(false);
                let counters = Arc::new(Counters::default());
                let throttle = Arc::new(Throttle::new(s.config.rate_limit_per_second));
                lanes.insert(
                    key,
                    LaneHandle {
                        updated_at: s.config.updated_at,
                        stop: stop_tx,
                        counters: counters.clone(),
                        throttle: throttle.clone(),
                    },
                );
                let me = self.clone();
                let target = Target::Sub(s.clone());
                tokio::spawn(async move { me.run_lane(target, stop_rx, counters, throttle).await });
            }
        }
        // Gauges: backlog and the rate in force, per subscription.
        for s in &subs {
            if let Ok(st) = self.engine.child_stats(&s.child).await {
                metrics::gauge!("sluice_push_backlog", "queue" => s.queue.clone(), "subscription" => s.name.clone())
                    .set((st.ready + st.delayed + st.in_flight) as f64);
            }
            let rate = self
                .lanes
                .lock()
                .get(&(s.queue.clone(), s.name.clone()))
                .and_then(|l| l.throttle.current_rate())
                .or(s.config.rate_limit_per_second)
                .unwrap_or(0.0);
            metrics::gauge!("sluice_push_rate_limit", "queue" => s.queue.clone(), "subscription" => s.name.clone())
                .set(rate);
        }
        let (pending, finished) = self.engine.timer_counts();
        metrics::gauge!("sluice_timers", "state" => "pending").set(pending as f64);
        metrics::gauge!("sluice_timers", "state" => "finished").set(finished as f64);
        // Messages that landed on a push queue's own list go out to its subscriptions.
        for q in push_queues {
            if let Err(e) = self.engine.drain_push_queue(&q).await {
                tracing::warn!(queue = %q, error = %e, "could not fan out waiting messages");
            }
        }
    }

    /// Counters of a subscription's lane.
    pub fn counters(&self, queue: &str, name: &str) -> LaneCounters {
        let lanes = self.lanes.lock();
        match lanes.get(&(queue.to_string(), name.to_string())) {
            Some(l) => LaneCounters {
                delivered: l.counters.delivered.load(Ordering::Relaxed),
                retried: l.counters.retried.load(Ordering::Relaxed),
                throttled: l.counters.throttled.load(Ordering::Relaxed),
                failed: l.counters.failed.load(Ordering::Relaxed),
                in_flight: l.counters.in_flight.load(Ordering::Relaxed),
                current_rate_limit: l.throttle.current_rate(),
            },
            None => LaneCounters::default(),
        }
    }

    async fn run_lane(
        self: Arc<Self>,
        target: Target,
        mut stop: watch::Receiver<bool>,
        counters: Arc<Counters>,
        throttle: Arc<Throttle>,
    ) {
        let (queue, concurrency, batch_max, batch_wait_ms, lease_ms) = match &target {
            Target::Sub(s) => (
                s.child.clone(),
                s.config.concurrency as usize,
                s.config.batch.max_messages as usize,
                s.config.batch.max_wait_ms,
                // The lease covers the batch's wait, the request and a margin.
                ((s.config.timeout_seconds + 60.0) * 1000.0) as u64 + s.config.batch.max_wait_ms,
            ),
            Target::Timers => (
                TIMER_QUEUE.to_string(),
                self.opts.timer_concurrency,
                1,
                0,
                330_000,
            ),
        };
        let slots = Arc::new(Semaphore::new(concurrency));
        let timers = matches!(target, Target::Timers);
        loop {
            if *stop.borrow() {
                return;
            }
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("semaphore is never closed"),
                _ = stop.changed() => return,
            };
            if batch_max > 1 {
                // A batch is one request: one slot, one turn of the throttle.
                tokio::select! {
                    _ = throttle.acquire() => {}
                    _ = stop.changed() => return,
                }
                let Some(got) = self
                    .lease_batch(&queue, batch_max, batch_wait_ms, lease_ms, &mut stop)
                    .await
                else {
                    continue;
                };
                self.spawn_delivery(
                    &target,
                    got,
                    vec![first],
                    &counters,
                    &throttle,
                    false,
                    lease_ms,
                );
                continue;
            }
            // One message per request: lease as many as there are free slots (at most 100, and
            // at most one second's worth of the rate in force), in one store call; each
            // delivery then waits for its own turn of the throttle.
            let mut permits = vec![first];
            let paced = !timers && throttle.is_pacing();
            if paced {
                // A paced endpoint: take the turn first, then lease one message for it.
                tokio::select! {
                    _ = throttle.acquire() => {}
                    _ = stop.changed() => return,
                }
            }
            // A FIFO subscription leases one message per receive: the store then keeps the
            // group locked until it is settled, so a group's messages never go in parallel.
            let fifo = sluice_engine::is_fifo(&queue);
            let cap = if paced || fifo { 1 } else { 100 };
            while permits.len() < cap {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            // Not raced against `stop`: a receive cancelled after its lease was taken would
            // strand the messages until the lease ends. A short wait keeps stops prompt.
            let got = self
                .engine
                .push_receive(&queue, permits.len(), lease_ms, LEASE_POLL_MS)
                .await;
            let got = match got {
                Ok(g) if *stop.borrow() => {
                    // Stopped meanwhile (subscription changed or deleted): give them back.
                    let _ = self.engine.push_retry(&queue, &g, 0).await;
                    return;
                }
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(queue = %queue, error = %e, "push receive failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            permits.truncate(got.len());
            for (d, p) in got.into_iter().zip(permits) {
                self.spawn_delivery(
                    &target,
                    vec![d],
                    vec![p],
                    &counters,
                    &throttle,
                    !timers && !paced,
                    lease_ms,
                );
            }
        }
    }

    /// Lease a batch: up to `max`, waiting up to `wait_ms` after the first message.
    async fn lease_batch(
        &self,
        queue: &str,
        max: usize,
        wait_ms: u64,
        lease_ms: u64,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Vec<Delivery>> {
        let first = self
            .engine
            .push_receive(queue, max.min(100), lease_ms, LEASE_POLL_MS)
            .await;
        let mut got = match first {
            Ok(g) if g.is_empty() => return None,
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "push receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return None;
            }
        };
        // A retry goes out at once with what is ready: its wait was already served.
        let wait_ms = if got.iter().any(|d| d.message.receive_count > 1) {
            0
        } else {
            wait_ms
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        while got.len() < max {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let want = (max - got.len()).min(100);
            let more = self
                .engine
                .push_receive(
                    queue,
                    want,
                    lease_ms,
                    (left.as_millis() as u64).min(LEASE_POLL_MS),
                )
                .await;
            match more {
                Ok(m) if m.is_empty() => {
                    if left.is_zero() || *stop.borrow() {
                        break;
                    }
                }
                Ok(m) => got.extend(m),
                Err(_) => break,
            }
        }
        if *stop.borrow() {
            // Stopped meanwhile (subscription changed or deleted): give them back.
            let _ = self.engine.push_retry(queue, &got, 0).await;
            return None;
        }
        let mut seen = std::collections::HashSet::new();
        got.retain(|d| seen.insert(d.message.id));
        Some(got)
    }

    #[allow(clippy::too_many_arguments)] // the lane's parts, passed through to the task
    fn spawn_delivery(
        self: &Arc<Self>,
        target: &Target,
        got: Vec<Delivery>,
        permits: Vec<tokio::sync::OwnedSemaphorePermit>,
        counters: &Arc<Counters>,
        throttle: &Arc<Throttle>,
        pace: bool,
        lease_ms: u64,
    ) {
        let me = self.clone();
        let target = target.clone();
        let counters = counters.clone();
        let throttle = throttle.clone();
        let n = got.len() as u64;
        counters.in_flight.fetch_add(n, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut got = got;
            if pace {
                // Leased in bulk before a 429 slowed this endpoint down: wait for the turn,
                // then renew the lease if the wait was long (a lapsed one is back in line).
                let started = std::time::Instant::now();
                throttle.acquire().await;
                if started.elapsed() > Duration::from_secs(1) {
                    if let Target::Sub(s) = &target {
                        got = me
                            .engine
                            .push_renew(&s.child, got, lease_ms)
                            .await
                            .unwrap_or_default();
                    }
                }
            }
            if got.is_empty() {
                counters.in_flight.fetch_sub(n, Ordering::Relaxed);
                return;
            }
            match &target {
                Target::Sub(s) => me.deliver_sub(s, got, &counters, &throttle).await,
                Target::Timers => {
                    for d in got {
                        me.deliver_timer(d, &counters).await;
                    }
                }
            }
            counters.in_flight.fetch_sub(n, Ordering::Relaxed);
            drop(permits);
        });
    }

    /// The attempt number of a delivery: receives minus 429 answers.
    fn attempt_no(&self, queue: &str, d: &Delivery) -> u32 {
        let t = self
            .throttled
            .lock()
            .get(&(queue.to_string(), d.message.id))
            .copied()
            .unwrap_or(0);
        d.message.receive_count.saturating_sub(t).max(1)
    }

    /// Deliver, and on a FIFO subscription retry in place: the message keeps its lease (and
    /// so its group stays locked) through the backoff, so later messages of the group never
    /// pass it. Other subscriptions release the message with a delay instead.
    async fn deliver_sub(
        &self,
        s: &SubscriptionRef,
        mut got: Vec<Delivery>,
        counters: &Counters,
        throttle: &Throttle,
    ) {
        let mut extra = 0u32;
        while let Some((delay_ms, counted)) =
            self.attempt_sub(s, &got, counters, throttle, extra).await
        {
            let lease_ms = delay_ms + ((s.config.timeout_seconds + 60.0) * 1000.0) as u64;
            got = match self.engine.push_renew(&s.child, got, lease_ms).await {
                Ok(g) if !g.is_empty() => g,
                _ => return, // the lease lapsed: the message is back in line
            };
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            if counted {
                extra += 1;
            }
        }
    }

    /// One attempt. Returns Some((delay, counts as an attempt)) when a FIFO subscription should
    /// retry in place after `delay` ms.
    async fn attempt_sub(
        &self,
        s: &SubscriptionRef,
        got: &[Delivery],
        counters: &Counters,
        throttle: &Throttle,
        extra: u32,
    ) -> Option<(u64, bool)> {
        let sub = &s.config;
        let attempt = got
            .iter()
            .map(|d| self.attempt_no(&s.child, d))
            .max()
            .unwrap_or(1)
            + extra;
        // In place only while the hold fits a lease (12 h).
        let hold = |delay: u64| {
            sluice_engine::is_fifo(&s.child)
                && delay + ((sub.timeout_seconds + 60.0) * 1000.0) as u64 <= 12 * 3600 * 1000
        };
        let (webhook_id, body, content_type) = build_body(got, sub.batch.max_messages > 1);
        let timestamp = chrono::Utc::now().timestamp();
        let mut headers: Vec<(String, String)> = Vec::new();
        let configured = |k: &str| sub.headers.keys().any(|h| h.eq_ignore_ascii_case(k));
        if got.len() == 1 && sub.batch.max_messages == 1 {
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
        if let Some(secret) = &sub.signing_secret {
            if let Ok(key) = sluice_engine::push::signing_key(secret) {
                headers.push((
                    "webhook-signature".into(),
                    http::sign(&key, &webhook_id, timestamp, &body),
                ));
            }
        }
        headers.push(("sluice-queue".into(), s.queue.clone()));
        headers.push(("sluice-subscription".into(), s.name.clone()));
        headers.push(("sluice-attempt".into(), attempt.to_string()));
        if sub.batch.max_messages > 1 {
            headers.push(("sluice-batch-size".into(), got.len().to_string()));
        }
        let started_at = self.engine.now();
        let req = Request {
            method: sub.method.parse().unwrap_or(reqwest::Method::POST),
            url: sub.url.clone(),
            headers,
            body,
            timeout: Duration::from_secs_f64(sub.timeout_seconds),
            trusted: sub.trusted,
            empty_body_length: false,
        };
        let request = req.excerpt();
        let resp = self.sender.send(req).await;
        let (final_outcome, delay_ms) =
            decide(&resp, attempt, sub.max_attempts, &sub.backoff, |ra| {
                throttle.on_throttled(ra)
            });
        let label = outcome_label(final_outcome);
        metrics::counter!("sluice_push_attempts_total", "queue" => s.queue.clone(), "subscription" => s.name.clone(), "outcome" => label).increment(1);
        metrics::histogram!("sluice_push_request_seconds", "queue" => s.queue.clone(), "subscription" => s.name.clone()).record(resp.duration.as_secs_f64());
        let entry = self.attempt_entry(
            (&s.queue, &s.name),
            request,
            attempt,
            started_at,
            &resp,
            final_outcome,
            delay_ms,
            got.len(),
        );
        for d in got {
            self.engine.record_attempt(d.message.id, entry.clone());
        }
        let batch_log = sub.batch.max_messages > 1;
        if batch_log {
            tracing::info!(queue = %s.queue, subscription = %s.name, size = got.len(), status = ?resp.status, error = ?resp.error, duration_ms = resp.duration.as_millis() as u64, outcome = label, "forwarded batch");
        } else {
            tracing::debug!(queue = %s.queue, subscription = %s.name, status = ?resp.status, error = ?resp.error, duration_ms = resp.duration.as_millis() as u64, outcome = label, "delivery attempt");
        }
        let result = match final_outcome {
            Outcome::Delivered => {
                throttle.on_success();
                counters
                    .delivered
                    .fetch_add(got.len() as u64, Ordering::Relaxed);
                self.forget(&s.child, got);
                let r = self.engine.push_done(&s.child, got).await;
                if r.is_ok() {
                    self.observe(&s.queue, &s.name, got, true);
                }
                r
            }
            Outcome::Throttled => {
                counters
                    .throttled
                    .fetch_add(got.len() as u64, Ordering::Relaxed);
                if hold(delay_ms) {
                    return Some((delay_ms, false));
                }
                {
                    let mut t = self.throttled.lock();
                    for d in got {
                        *t.entry((s.child.clone(), d.message.id)).or_default() += 1;
                    }
                }
                self.engine.push_retry(&s.child, got, delay_ms).await
            }
            Outcome::Retry => {
                counters
                    .retried
                    .fetch_add(got.len() as u64, Ordering::Relaxed);
                if hold(delay_ms) {
                    return Some((delay_ms, true));
                }
                self.engine.push_retry(&s.child, got, delay_ms).await
            }
            Outcome::Failed => {
                counters
                    .failed
                    .fetch_add(got.len() as u64, Ordering::Relaxed);
                let why = match (resp.status, &resp.error) {
                    (Some(st), _) if resp.refused => format!("HTTP {st}"),
                    (Some(st), _) => {
                        format!("HTTP {st} (attempt {attempt} of {})", sub.max_attempts)
                    }
                    (None, Some(e)) => e.clone(),
                    (None, None) => "unknown error".into(),
                };
                self.forget(&s.child, got);
                let r = self
                    .engine
                    .push_dead_letter(&s.queue, &s.name, &s.child, got, attempt, &why)
                    .await;
                if let Ok(dlq) = &r {
                    self.observe(&s.queue, &s.name, got, false);
                    tracing::warn!(queue = %s.queue, subscription = %s.name, messages = got.len(), dead_letter_queue = %dlq, error = %why, "delivery failed; dead-lettered");
                    if self.opts.exit_on_forward_failure && sub.trusted && s.name == "forwarder" {
                        tracing::error!("forwarding failed after all retries; exiting (--exit-on-forward-failure)");
                        std::process::exit(1);
                    }
                }
                r.map(|_| ())
            }
        };
        if let Err(e) = result {
            tracing::warn!(queue = %s.queue, subscription = %s.name, error = %e, "could not record a delivery outcome; the lease will return the message");
        }
        None
    }

    /// The attempts-log entry of one request.
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::too_many_arguments)]
    fn attempt_entry(
        &self,
        (queue, subscription): (&str, &str),
        request: String,
        attempt: u32,
        at: i64,
        resp: &http::Response,
        outcome: Outcome,
        delay_ms: u64,
        batch_size: usize,
    ) -> Attempt {
        Attempt {
            at,
            queue: queue.to_string(),
            subscription: subscription.to_string(),
            request,
            attempt,
            status: resp.status,
            error: resp.error.clone(),
            duration_ms: resp.duration.as_millis() as u64,
            response: resp.excerpt.clone(),
            outcome,
            next_attempt_at: matches!(outcome, Outcome::Retry | Outcome::Throttled)
                .then(|| self.engine.now() + delay_ms as i64),
            batch_size: batch_size as u32,
        }
    }

    fn forget(&self, queue: &str, got: &[Delivery]) {
        let mut t = self.throttled.lock();
        for d in got {
            t.remove(&(queue.to_string(), d.message.id));
        }
    }

    async fn deliver_timer(&self, d: Delivery, counters: &Counters) {
        let id = d.message.id;
        let outcome = match self.engine.timer_outcome_fresh(id).await {
            Ok(o) => o,
            Err(e) => {
                // Not knowing whether it was cancelled, do not fire: the lease runs out and
                // the timer comes back.
                tracing::warn!(timer = %id, error = %e, "could not read the timer's outcome");
                return;
            }
        };
        if let Some(code) = outcome {
            // Cancelled, or finished just before a crash: settle without calling.
            if let Err(e) = self.engine.finish_timer(&d, code).await {
                tracing::warn!(timer = %id, error = %e, "could not settle a finished timer");
            }
            return;
        }
        let spec: TimerSpec = match serde_json::from_slice(&d.message.body) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(timer = %id, error = %e, "unreadable timer; marking it failed");
                let _ = self.engine.finish_timer(&d, FAILED).await;
                return;
            }
        };
        if let Some(queue) = &spec.queue {
            let r = self
                .engine
                .publish(
                    queue,
                    vec![Publish {
                        body: spec.body.clone().unwrap_or_default().into_bytes(),
                        attributes: spec.attributes.clone(),
                        ..Default::default()
                    }],
                )
                .await;
            let code = match &r {
                Ok(_) => SUCCEEDED,
                Err(e) => {
                    tracing::warn!(timer = %id, queue = %queue, error = %e, "timer publish failed");
                    FAILED
                }
            };
            let _ = self.engine.finish_timer(&d, code).await;
            counters.delivered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let host = spec
            .url
            .as_deref()
            .and_then(|u| reqwest::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let per_host = (self.opts.timer_concurrency / 4).max(4);
        let full = {
            let mut hosts = self.timer_hosts.lock();
            let n = hosts.entry(host.clone()).or_default();
            if *n >= per_host {
                true
            } else {
                *n += 1;
                false
            }
        };
        if full {
            // This host already has its share in flight: try again in a second, without
            // counting an attempt, and leave the slot to timers of other hosts.
            *self
                .throttled
                .lock()
                .entry((TIMER_QUEUE.to_string(), id))
                .or_default() += 1;
            let _ = self
                .engine
                .push_retry(TIMER_QUEUE, std::slice::from_ref(&d), 1000)
                .await;
            return;
        }
        let _host_slot = HostSlot(&self.timer_hosts, host);
        self.engine.timer_delivering(id, true);
        let attempt = self.attempt_no(TIMER_QUEUE, &d);
        let max_attempts = spec.max_attempts.unwrap_or(10);
        let mut url = spec.url.clone().unwrap_or_default();
        if spec.append_id {
            url = append_path(&url, &id.to_string());
        }
        let body = spec.body.clone().unwrap_or_default().into_bytes();
        let mut headers: Vec<(String, String)> = spec
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !body.is_empty()
            && !spec
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type".into(), guess_content_type(&body)));
        }
        headers.push(("webhook-id".into(), id.to_string()));
        headers.push((
            "webhook-timestamp".into(),
            chrono::Utc::now().timestamp().to_string(),
        ));
        headers.push(("sluice-timer".into(), id.to_string()));
        headers.push(("sluice-attempt".into(), attempt.to_string()));
        if let Some(s) = &spec.schedule {
            headers.push(("sluice-schedule".into(), s.clone()));
        }
        let started_at = self.engine.now();
        let lateness = (started_at - spec.due_at).max(0);
        if attempt == 1 {
            metrics::histogram!("sluice_timer_lateness_seconds").record(lateness as f64 / 1000.0);
        }
        let req = Request {
            method: spec.method.parse().unwrap_or(reqwest::Method::POST),
            url,
            headers,
            body,
            timeout: Duration::from_secs(30),
            trusted: false,
            empty_body_length: false,
        };
        let request = req.excerpt();
        let resp = self.sender.send(req).await;
        let backoff = sluice_engine::push::Backoff::default();
        let (final_outcome, delay_ms) = decide(&resp, attempt, max_attempts, &backoff, |ra| {
            ra.unwrap_or(backoff.delay_ms(attempt, rand::random()))
        });
        metrics::counter!("sluice_timer_attempts_total", "outcome" => outcome_label(final_outcome))
            .increment(1);
        self.engine.record_attempt(
            id,
            self.attempt_entry(
                ("", "timer"),
                request,
                attempt,
                started_at,
                &resp,
                final_outcome,
                delay_ms,
                1,
            ),
        );
        let one = std::slice::from_ref(&d);
        let r = match final_outcome {
            Outcome::Delivered => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                self.forget(TIMER_QUEUE, one);
                self.engine.finish_timer(&d, SUCCEEDED).await
            }
            Outcome::Failed => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                self.forget(TIMER_QUEUE, one);
                tracing::warn!(timer = %id, status = ?resp.status, error = ?resp.error, "timer failed permanently");
                self.engine.finish_timer(&d, FAILED).await
            }
            Outcome::Throttled => {
                *self
                    .throttled
                    .lock()
                    .entry((TIMER_QUEUE.to_string(), id))
                    .or_default() += 1;
                self.engine.push_retry(TIMER_QUEUE, one, delay_ms).await
            }
            Outcome::Retry => {
                counters.retried.fetch_add(1, Ordering::Relaxed);
                self.engine.push_retry(TIMER_QUEUE, one, delay_ms).await
            }
        };
        self.engine.timer_delivering(id, false);
        if let Err(e) = r {
            tracing::warn!(timer = %id, error = %e, "could not record a timer outcome; the lease will return it");
        }
    }
}

/// httpqueue's `{url}/{id}`: the id becomes the last path segment (before any query).
fn append_path(url: &str, segment: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let path = u.path().trim_end_matches('/').to_string();
            u.set_path(&format!("{path}/{segment}"));
            u.to_string()
        }
        Err(_) => format!("{}/{segment}", url.trim_end_matches('/')),
    }
}

/// Gives a timer host's slot back when the call is over.
struct HostSlot<'a>(&'a Mutex<HashMap<String, usize>>, String);

impl Drop for HostSlot<'_> {
    fn drop(&mut self) {
        let mut hosts = self.0.lock();
        if let Some(n) = hosts.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                hosts.remove(&self.1);
            }
        }
    }
}

/// What one response means, and how long until the next try: 2xx done; 429 throttled (the
/// wait from `on_throttled`, not counted as an attempt); 408/5xx/no answer retried after the
/// backoff (at least `Retry-After`) until `max_attempts`; anything else, or a refused target,
/// failed.
fn decide(
    resp: &http::Response,
    attempt: u32,
    max_attempts: u32,
    backoff: &sluice_engine::push::Backoff,
    on_throttled: impl FnOnce(Option<u64>) -> u64,
) -> (Outcome, u64) {
    let outcome = if resp.refused {
        Outcome::Failed
    } else {
        classify(resp.status)
    };
    match outcome {
        Outcome::Delivered => (Outcome::Delivered, 0),
        Outcome::Throttled => (Outcome::Throttled, on_throttled(resp.retry_after_ms)),
        Outcome::Retry if attempt >= max_attempts => (Outcome::Failed, 0),
        Outcome::Retry => (
            Outcome::Retry,
            backoff
                .delay_ms(attempt, rand::random::<f64>())
                .max(resp.retry_after_ms.unwrap_or(0)),
        ),
        Outcome::Failed => (Outcome::Failed, 0),
    }
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Delivered => "delivered",
        Outcome::Retry => "retry",
        Outcome::Throttled => "throttled",
        Outcome::Failed => "failed",
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

fn guess_content_type(body: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    #[test]
    fn timer_ids_go_into_the_path() {
        assert_eq!(super::append_path("http://h/cb", "ID"), "http://h/cb/ID");
        assert_eq!(super::append_path("http://h/cb/", "ID"), "http://h/cb/ID");
        assert_eq!(
            super::append_path("http://h/cb?tenant=acme", "ID"),
            "http://h/cb/ID?tenant=acme"
        );
        assert_eq!(super::append_path("http://h", "ID"), "http://h/ID");
    }
}
