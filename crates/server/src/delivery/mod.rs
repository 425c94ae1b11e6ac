//! Push delivery, the HTTP side. The engine keeps subscriptions, copies, leases, backoff
//! delays, dead letters and the delivery history, and decides what an answer means; this module
//! makes the calls.
//!
//! One *lane* per subscription (`lane.rs`): a loop that waits for a concurrency slot and the
//! endpoint's pace (`throttle.rs`), leases the next message(s) from the subscription's copy
//! queue with a long poll, and hands them to a delivery task, which makes one webhook attempt
//! (`webhook.rs`); the lane's settler then settles answered requests through the engine, many
//! at once. A slow or dead endpoint only fills its own
//! lane's slots; other lanes never wait for it. Timers have one lane of their own
//! (`timer_lane.rs`), fair between target hosts. The manager starts and stops lanes as
//! subscriptions change. `health.rs` is a lane's circuit breaker;
//! `failure_callback.rs` schedules a subscription's failure callback (a signed timer);
//! `events.rs` sends the operator's operational events (`--events-url`). `http.rs` sends (behind the address guard of `guard.rs`);
//! `signing.rs` signs.

mod connect;
mod events;
mod failure_callback;
pub mod guard;
mod health;
pub mod http;
mod lane;
pub mod signing;
mod throttle;
mod timer_lane;
mod webhook;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use sluice_engine::push::breaker::{Circuit, CircuitState};
use sluice_engine::{Delivery, Engine};
use tokio::sync::watch;

use self::events::Events;
use self::health::Health;
use self::http::Sender;
use self::throttle::Throttle;

/// Longest long poll of a lane's receive: a stopped lane notices within this.
const LEASE_POLL_MS: u64 = 1000;

/// Server-wide push settings.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub allow_private_targets: bool,
    /// Concurrent timer calls.
    pub timer_concurrency: usize,
    /// Where operational events go (`--events-url`), and their signing secret.
    pub events_url: Option<String>,
    pub events_secret: Option<String>,
}

/// What a lane knows now, for the API and the dashboard. (Delivery counters are the store's:
/// the subscription's copy queue counts them durably.)
#[derive(Default, Serialize, Clone, Debug)]
pub struct LaneCounters {
    /// Requests being made now.
    pub in_flight: u64,
    /// The adaptive rate in force after 429s (requests/s), or null.
    pub current_rate_limit: Option<f64>,
    /// The endpoint's circuit as this node's lane sees it; None when no lane runs here or it
    /// has not read the stored circuit yet (then the stored one is what counts).
    pub circuit: Option<Circuit>,
}

#[derive(Default)]
struct Counters {
    in_flight: AtomicU64,
}

struct LaneHandle {
    /// The settings' `updated_at` and when it was disabled: a change of either restarts the
    /// lane (an enabled subscription starts with a fresh circuit).
    generation: (i64, Option<i64>),
    stop: watch::Sender<bool>,
    counters: Arc<Counters>,
    throttle: Arc<Throttle>,
    health: Arc<Health>,
}

/// Learns the final outcome of deliveries: delivered, or dead-lettered.
pub trait DeliveryObserver: Send + Sync {
    fn settled(&self, queue: &str, subscription: &str, messages: &[Delivery], delivered: bool);
}

pub struct PushManager {
    engine: Arc<Engine>,
    sender: Arc<Sender>,
    opts: PushOptions,
    lanes: Mutex<HashMap<(String, String), LaneHandle>>,
    /// Operational events for the operator, if `--events-url` is set.
    events: Option<Arc<Events>>,
    /// Told about every settled delivery (file ingestion counts them per file; the forwarder
    /// may exit when its batch is dead-lettered).
    observers: RwLock<Vec<Arc<dyn DeliveryObserver>>>,
}

impl PushManager {
    pub fn new(engine: Arc<Engine>, opts: PushOptions) -> anyhow::Result<Arc<PushManager>> {
        let sender = Arc::new(Sender::new(opts.allow_private_targets)?);
        let events = opts
            .events_url
            .clone()
            .map(|u| Arc::new(Events::new(u, opts.events_secret.clone(), sender.clone())));
        Ok(Arc::new(PushManager {
            engine,
            sender,
            events,
            opts,
            lanes: Mutex::new(HashMap::new()),
            observers: Default::default(),
        }))
    }

    pub fn add_observer(&self, observer: Arc<dyn DeliveryObserver>) {
        self.observers.write().push(observer);
    }

    fn observe(&self, queue: &str, subscription: &str, messages: &[Delivery], delivered: bool) {
        for o in self.observers.read().iter() {
            o.settled(queue, subscription, messages, delivered);
        }
    }

    /// Start the timer lane and the reconcile loop (until the engine shuts down).
    pub fn start(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        timer_lane::start(self.clone(), shutdown.clone());
        let me = self.clone();
        let mut changed = self.engine.push().changed();
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

    /// Start, restart (changed settings) and stop lanes to match the subscriptions; update the
    /// gauges; fan out messages that reached a push queue's own list.
    async fn reconcile(self: &Arc<Self>) {
        let subs = self.engine.push().all();
        let mut push_queues: Vec<String> = Vec::new();
        {
            let mut lanes = self.lanes.lock();
            let wanted: HashSet<(String, String)> = subs
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
                let generation = (
                    s.config.updated_at,
                    s.config.disabled.as_ref().map(|d| d.at),
                );
                if lanes.get(&key).is_some_and(|l| l.generation == generation) {
                    continue;
                }
                if let Some(old) = lanes.remove(&key) {
                    let _ = old.stop.send(true);
                }
                let (stop_tx, stop_rx) = watch::channel(false);
                let counters = Arc::new(Counters::default());
                let throttle = Arc::new(Throttle::new(s.config.rate_limit_per_second));
                let health = Arc::new(Health::new(
                    self.engine.clone(),
                    s.clone(),
                    self.events.clone(),
                ));
                lanes.insert(
                    key,
                    LaneHandle {
                        generation,
                        stop: stop_tx,
                        counters: counters.clone(),
                        throttle: throttle.clone(),
                        health: health.clone(),
                    },
                );
                lane::Lane::start(self.clone(), s.clone(), counters, throttle, health, stop_rx);
            }
        }
        // Gauges: backlog and the rate in force, per subscription.
        for s in &subs {
            if let Ok(st) = self.engine.push().child_stats(&s.child).await {
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
            let open = self
                .lanes
                .lock()
                .get(&(s.queue.clone(), s.name.clone()))
                .is_some_and(|l| l.health.circuit().state != CircuitState::Closed);
            let held = [
                ("sluice_push_paused", s.config.paused_at.is_some()),
                ("sluice_push_disabled", s.config.disabled.is_some()),
                ("sluice_push_circuit_open", open),
            ];
            for (name, on) in held {
                metrics::gauge!(name, "queue" => s.queue.clone(), "subscription" => s.name.clone())
                    .set(if on { 1.0 } else { 0.0 });
            }
        }
        let (pending, finished) = self.engine.timers().counts();
        metrics::gauge!("sluice_timers", "state" => "pending").set(pending as f64);
        metrics::gauge!("sluice_timers", "state" => "finished").set(finished as f64);
        // Messages that landed on a push queue's own list go out to its subscriptions.
        for q in push_queues {
            if let Err(e) = self.engine.push().drain(&q).await {
                tracing::warn!(queue = %q, error = %e, "could not fan out waiting messages");
            }
        }
    }

    /// Send an operational event, if `--events-url` is set.
    pub(super) fn event(&self, kind: &'static str, data: serde_json::Value) {
        if let Some(e) = &self.events {
            e.emit(kind, data);
        }
    }

    /// Counters of a subscription's lane.
    pub fn counters(&self, queue: &str, name: &str) -> LaneCounters {
        let lanes = self.lanes.lock();
        match lanes.get(&(queue.to_string(), name.to_string())) {
            Some(l) => LaneCounters {
                in_flight: l.counters.in_flight.load(Ordering::Relaxed),
                current_rate_limit: l.throttle.current_rate(),
                circuit: l.health.restored_circuit(),
            },
            None => LaneCounters::default(),
        }
    }
}
