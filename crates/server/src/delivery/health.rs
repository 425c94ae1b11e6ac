//! One subscription's endpoint health, on the engine's clock: a thin async wrapper around the
//! engine's [`Circuit`] (the rule and its tests live in `push/breaker.rs`). The lane asks
//! [`Health::gate`] before it leases; each delivery reports its answer with [`Health::report`],
//! which stores every change of state (so a restart keeps an open circuit open), logs it and
//! counts it in `sluice_push_circuit_changes_total`. It also disables a subscription whose
//! endpoint failed without a single success for its `disable_after_seconds`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_engine::push::breaker::{Change, Circuit, CircuitState, Gate, Verdict};
use sluice_engine::push::SubscriptionRef;
use sluice_engine::Engine;

use super::events::Events;
use tokio::sync::Notify;

/// How long a lane waiting for a probe's answer looks again on its own.
const PROBE_WAIT: Duration = Duration::from_secs(1);

pub struct Health {
    engine: Arc<Engine>,
    sub: SubscriptionRef,
    circuit: Mutex<Circuit>,
    /// An answer came or the state changed: a waiting lane looks again.
    changed: Notify,
    /// Held while storing, so the last write stores the latest state.
    saving: tokio::sync::Mutex<()>,
    /// Operational events (`--events-url`), if configured.
    events: Option<Arc<Events>>,
    /// The stored circuit has been read (until then `circuit` is only a placeholder).
    restored: std::sync::atomic::AtomicBool,
}

impl Health {
    /// A closed circuit; its lane reads the stored one first ([`Health::restore`]).
    pub fn new(engine: Arc<Engine>, sub: SubscriptionRef, events: Option<Arc<Events>>) -> Health {
        Health {
            engine,
            sub,
            circuit: Mutex::new(Circuit::default()),
            changed: Notify::new(),
            saving: Default::default(),
            events,
            restored: Default::default(),
        }
    }

    /// An operational event about this subscription, if `--events-url` is set.
    fn event(&self, kind: &'static str, c: &Circuit, extra: serde_json::Value) {
        let Some(events) = &self.events else {
            return;
        };
        let mut data = serde_json::json!({
            "queue": self.sub.queue,
            "subscription": self.sub.name,
            "circuit": {
                "consecutive_failures": c.consecutive_failures,
                "failing_since": c.failing_since.map(sluice_engine::rfc3339),
                "opened_at": c.opened_at.map(sluice_engine::rfc3339),
                "next_probe_at": c.next_probe_at.map(sluice_engine::rfc3339),
            },
        });
        if let (Some(d), Some(x)) = (data.as_object_mut(), extra.as_object()) {
            d.extend(x.clone());
        }
        events.emit(kind, data);
    }

    /// Read the stored circuit (it stays closed when none is stored, or the store fails).
    pub async fn restore(&self) {
        let (queue, name) = (&self.sub.queue, &self.sub.name);
        match self.engine.push().circuit(queue, name).await {
            Ok(c) => *self.circuit.lock() = c,
            Err(e) => {
                tracing::warn!(queue = %queue, subscription = %name, error = %e, "could not read the circuit; starting closed")
            }
        }
        self.restored
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The circuit now, once the stored one has been read (None before).
    pub fn restored_circuit(&self) -> Option<Circuit> {
        self.restored
            .load(std::sync::atomic::Ordering::Acquire)
            .then(|| self.circuit())
    }

    /// The circuit now, for the API.
    pub fn circuit(&self) -> Circuit {
        self.circuit.lock().clone()
    }

    /// Wait until the lane may lease: `false` when it may send as usual, `true` when what it
    /// leases next is the probe (one request).
    pub async fn gate(&self) -> bool {
        loop {
            let changed = self.changed.notified();
            let gate = self.circuit.lock().gate(self.engine.now());
            match gate {
                Gate::Send => return false,
                Gate::Probe => return true,
                Gate::WaitUntil(at) => {
                    let ms = (at - self.engine.now()).max(0) as u64;
                    let _ = tokio::time::timeout(Duration::from_millis(ms), changed).await;
                }
                Gate::WaitForAnswer => {
                    let _ = tokio::time::timeout(PROBE_WAIT, changed).await;
                }
            }
        }
    }

    /// The circuit is not closed: only its probe may go out.
    pub fn is_open(&self) -> bool {
        self.circuit.lock().state != CircuitState::Closed
    }

    /// The probe found nothing to send.
    pub fn probe_unused(&self) {
        self.circuit.lock().probe_unused();
    }

    /// An endpoint failing without a single success for `disable_after_seconds` is disabled
    /// (the engine holds its copies until it is enabled).
    async fn disable_if_failing_too_long(&self, c: &Circuit, now: i64) {
        let config = &self.sub.config;
        let after_ms = config.disable_after_seconds as i64 * 1000;
        if config.disabled.is_some() || !c.failing_for(after_ms, now) {
            return;
        }
        let since = c
            .failing_since
            .map(sluice_engine::rfc3339)
            .unwrap_or_default();
        let reason = format!(
            "no successful request for {} s (since {since}; {} failed in a row)",
            config.disable_after_seconds, c.consecutive_failures
        );
        let (queue, name) = (&self.sub.queue, &self.sub.name);
        match self.engine.push().disable(queue, name, &reason).await {
            Ok(_) => {
                tracing::warn!(queue = %queue, subscription = %name, reason = %reason, "subscription disabled; POST …/enable resumes it");
                self.event(
                    "endpoint.disabled",
                    c,
                    serde_json::json!({"reason": reason}),
                );
                metrics::counter!("sluice_push_circuit_changes_total", "queue" => queue.clone(), "subscription" => name.clone(), "change" => "disabled").increment(1);
            }
            Err(e) => {
                tracing::warn!(queue = %queue, subscription = %name, error = %e, "could not disable a failing subscription")
            }
        }
    }

    /// Tell the circuit what an answer said; store, log and count a change of state.
    pub async fn report(&self, verdict: Verdict, probe: bool) {
        let now = self.engine.now();
        let (change, snapshot) = {
            let mut c = self.circuit.lock();
            let change = c.on_answer(&self.sub.config.circuit_breaker, verdict, probe, now);
            (change, c.clone())
        };
        let _saving = match change {
            Some(_) => Some(self.saving.lock().await),
            None => None,
        };
        self.changed.notify_waiters();
        if verdict == Verdict::Failure {
            self.disable_if_failing_too_long(&snapshot, now).await;
        }
        let Some(change) = change else {
            return;
        };
        let (queue, name) = (&self.sub.queue, &self.sub.name);
        let label = match change {
            Change::Opened => {
                self.event("endpoint.circuit_opened", &snapshot, serde_json::json!({}));
                tracing::warn!(queue = %queue, subscription = %name, failures = snapshot.consecutive_failures, "circuit opened: only probes go out until the endpoint answers");
                "opened"
            }
            Change::ProbeFailed => {
                tracing::info!(queue = %queue, subscription = %name, next_probe_at = ?snapshot.next_probe_at, "circuit probe failed");
                "probe_failed"
            }
            Change::Closed => {
                self.event("endpoint.circuit_closed", &snapshot, serde_json::json!({}));
                tracing::info!(queue = %queue, subscription = %name, "circuit closed: the endpoint answers again");
                "closed"
            }
        };
        metrics::counter!("sluice_push_circuit_changes_total", "queue" => queue.clone(), "subscription" => name.clone(), "change" => label).increment(1);
        let latest = self.circuit();
        if let Err(e) = self.engine.push().save_circuit(queue, name, &latest).await {
            tracing::warn!(queue = %queue, subscription = %name, error = %e, "could not store the circuit; it holds until a restart");
        }
    }
}
