//! The timer lane: due timers are leased as soon as they are due (the engine fires queue
//! targets itself) and called with `--timer-concurrency` calls in flight, shared fairly between
//! target hosts.
//!
//! Two tasks share the waiting timers, kept per host in memory: the *leaser* takes due timers
//! from the engine in batches, as fast as they come, while fewer than [`WAITING_MAX`] wait; the
//! *dispatcher* starts a call whenever a slot is free, for the host with the fewest calls in
//! flight among the hosts with timers waiting. That is max-min fair and work-conserving: a lone
//! host may use every slot, and a second host gets the next free slot at once, so a slow host
//! (every call taking seconds) holds at most its share and never delays the others' timers.
//! A timer that waits long has its lease renewed before the call; at shutdown the waiting ones
//! are given back.
//!
//! A call's slot is free as soon as its answer is in: the *settler* records the outcomes
//! (history, archive, removal) in batches of whatever finished meanwhile, so durable writes are
//! shared by many firings and never hold a slot.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_engine::push::DeliveryPolicy;
use sluice_engine::timers::{Settlement, DEFAULT_MAX_ATTEMPTS, TIMER_QUEUE};
use sluice_engine::DueTimer;
use tokio::sync::{mpsc, watch, Notify};

use super::http::{Request, Target};
use super::webhook::{attempt_entry, guess_content_type, Call};
use super::{PushManager, LEASE_POLL_MS};

/// Timers leased and waiting for a call slot, over all hosts (a bound on memory).
const WAITING_MAX: usize = 100_000;
/// How long a timer's lease lasts: the call's 30 s timeout plus a margin.
const LEASE_MS: u64 = 330_000;
/// A waiting timer whose lease ends sooner than this has it renewed before the call.
const RENEW_BEFORE_MS: i64 = 60_000;
/// The most calls settled together.
const SETTLE_BATCH_MAX: usize = 1000;

#[derive(Default)]
struct Host {
    waiting: VecDeque<DueTimer>,
    in_flight: usize,
}

#[derive(Default)]
struct Waiting {
    hosts: HashMap<String, Host>,
    waiting: usize,
    in_flight: usize,
}

impl Waiting {
    /// The next timer to call: of the host with the fewest calls in flight among those with
    /// timers waiting.
    fn next(&mut self) -> Option<(String, DueTimer)> {
        let host = self
            .hosts
            .iter()
            .filter(|(_, h)| !h.waiting.is_empty())
            .min_by_key(|(_, h)| h.in_flight)
            .map(|(name, _)| name.clone())?;
        let h = self.hosts.get_mut(&host).expect("just found");
        let t = h.waiting.pop_front().expect("not empty");
        h.in_flight += 1;
        self.waiting -= 1;
        self.in_flight += 1;
        Some((host, t))
    }

    fn done(&mut self, host: &str) {
        self.in_flight -= 1;
        if let Some(h) = self.hosts.get_mut(host) {
            h.in_flight -= 1;
            if h.in_flight == 0 && h.waiting.is_empty() {
                self.hosts.remove(host);
            }
        }
    }
}

struct TimerLane {
    manager: Arc<PushManager>,
    slots: usize,
    state: Mutex<Waiting>,
    /// A slot was freed or timers arrived: the dispatcher looks again.
    wake_dispatcher: Notify,
    /// Room for more waiting timers: the leaser goes on.
    wake_leaser: Notify,
    /// Calls answered, to settle.
    settle: mpsc::UnboundedSender<Settlement>,
}

pub(super) fn start(manager: Arc<PushManager>, shutdown: watch::Receiver<bool>) {
    let (settle, answered) = mpsc::unbounded_channel();
    tokio::spawn(settler(manager.clone(), answered));
    let lane = Arc::new(TimerLane {
        slots: manager.opts.timer_concurrency.max(1),
        manager,
        state: Mutex::new(Waiting::default()),
        wake_dispatcher: Notify::new(),
        wake_leaser: Notify::new(),
        settle,
    });
    tokio::spawn(lane.clone().lease(shutdown.clone()));
    tokio::spawn(lane.dispatch(shutdown));
}

fn host_of(t: &DueTimer) -> String {
    t.spec
        .url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

impl TimerLane {
    async fn lease(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let engine = &self.manager.engine;
        while !*shutdown.borrow() {
            let room = WAITING_MAX.saturating_sub(self.state.lock().waiting);
            if room == 0 {
                tokio::select! {
                    _ = self.wake_leaser.notified() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            // Not raced against shutdown: a lease cancelled after the store took it would
            // strand the timers until it ends. The short wait keeps shutdown prompt.
            let got = match engine
                .due_timers(room.min(100), LEASE_MS, LEASE_POLL_MS)
                .await
            {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(error = %e, "leasing due timers failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if got.is_empty() {
                continue;
            }
            {
                let mut st = self.state.lock();
                for t in got {
                    st.waiting += 1;
                    st.hosts
                        .entry(host_of(&t))
                        .or_default()
                        .waiting
                        .push_back(t);
                }
            }
            self.wake_dispatcher.notify_one();
        }
        self.give_back().await;
    }

    async fn dispatch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let next = {
                let mut st = self.state.lock();
                if st.in_flight < self.slots {
                    st.next()
                } else {
                    None
                }
            };
            let Some((host, timer)) = next else {
                tokio::select! {
                    _ = self.wake_dispatcher.notified() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            self.wake_leaser.notify_one();
            let lane = self.clone();
            tokio::spawn(async move {
                let answered = lane.call(timer).await;
                lane.state.lock().done(&host);
                lane.wake_dispatcher.notify_one();
                if let Some(s) = answered {
                    // The settler ends only when every lane sender is gone.
                    let _ = lane.settle.send(s);
                }
            });
        }
        self.give_back().await;
    }

    /// Shutdown: the timers still waiting go back to the store, to fire after the restart
    /// (or on another node) without waiting for their leases to end.
    async fn give_back(&self) {
        let waiting: Vec<_> = {
            let mut st = self.state.lock();
            st.waiting = 0;
            st.hosts
                .values_mut()
                .flat_map(|h| h.waiting.drain(..))
                .map(|t| t.delivery)
                .collect()
        };
        if !waiting.is_empty() {
            if let Err(e) = self.manager.engine.timers().give_back(&waiting).await {
                tracing::warn!(error = %e, "could not give back waiting timers; their leases will end");
            }
        }
    }

    /// Call one timer and decide what its answer means; the settler records it.
    async fn call(&self, mut t: DueTimer) -> Option<Settlement> {
        let engine = &self.manager.engine;
        let timers = engine.timers();
        let id = t.delivery.message.id;
        if t.delivery.lease_until - engine.now() < RENEW_BEFORE_MS {
            // It waited long for a slot: renew the lease before calling. A lease that already
            // ended means the timer is back in line (or fired elsewhere): skip it.
            match timers.renew(&t.delivery, LEASE_MS).await {
                Ok(Some(until)) => t.delivery.lease_until = until,
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(timer = %id, error = %e, "could not renew a timer's lease");
                    return None;
                }
            }
        }
        timers.set_delivering(id, true);
        let spec = &t.spec;
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
        let timestamp = chrono::Utc::now().timestamp();
        headers.push(("webhook-timestamp".into(), timestamp.to_string()));
        // A subscription's failure callback is signed like its deliveries.
        if let Some(sig) = spec.signed_for.as_deref().and_then(|s| {
            super::failure_callback::signature(engine, s, &id.to_string(), timestamp, &body)
        }) {
            headers.push(("webhook-signature".into(), sig));
        }
        headers.push(("sluice-timer".into(), id.to_string()));
        headers.push(("sluice-attempt".into(), t.attempt.to_string()));
        if let Some(s) = &spec.schedule {
            headers.push(("sluice-schedule".into(), s.clone()));
        }
        let started_at = engine.now();
        if t.attempt == 1 {
            let lateness = (started_at - spec.due_at).max(0);
            metrics::histogram!("sluice_timer_lateness_seconds").record(lateness as f64 / 1000.0);
        }
        let req = Request {
            method: spec.method.parse().unwrap_or(hyper::Method::POST),
            url: Target::parse(&spec.call_url(id)),
            headers,
            body,
            timeout: Duration::from_secs(30),
            trusted: false,
        };
        let excerpt = req.excerpt();
        let resp = self.manager.sender.send(req).await;
        let policy = DeliveryPolicy::for_timer(spec.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS));
        let rand01 = rand::random::<f64>();
        let decision = policy.decide(&resp.answer(), t.attempt, t.throttled, rand01, |ra| {
            ra.unwrap_or(policy.backoff.delay_ms(t.attempt, rand01))
        });
        metrics::counter!("sluice_timer_attempts_total", "outcome" => decision.outcome.label())
            .increment(1);
        if matches!(
            decision.outcome,
            sluice_engine::push::Outcome::Delivered | sluice_engine::push::Outcome::Failed
        ) {
            metrics::counter!("sluice_timer_deliveries_total", "outcome" => decision.outcome.label()).increment(1);
        }
        if decision.outcome == sluice_engine::push::Outcome::Failed {
            tracing::warn!(timer = %id, status = ?resp.status, error = ?resp.error, "timer failed permanently");
        }
        let attempt = attempt_entry(
            Call {
                queue: "",
                subscription: "timer",
                attempt: t.attempt,
                throttled: t.throttled,
                at: started_at,
                batch_size: 1,
                request: excerpt,
            },
            &resp,
            &decision,
        );
        Some(Settlement {
            delivery: t.delivery,
            decision,
            attempt,
        })
    }
}

/// Settle answered calls in batches: whatever was answered while the previous batch was being
/// written goes in the next one.
async fn settler(manager: Arc<PushManager>, mut answered: mpsc::UnboundedReceiver<Settlement>) {
    let timers = manager.engine.timers();
    let mut batch = Vec::new();
    while answered.recv_many(&mut batch, SETTLE_BATCH_MAX).await > 0 {
        if let Err(e) = timers.settle_many(&batch).await {
            tracing::warn!(queue = TIMER_QUEUE, timers = batch.len(), error = %e, "could not record timer outcomes; their leases will return them");
        }
        batch.clear();
    }
}
