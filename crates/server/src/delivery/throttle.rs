//! One endpoint's pace, on the wall clock: a thin async wrapper around the engine's
//! [`Pace`] (the rule and its simulation tests live there). Lanes wait here for their turn;
//! answers are reported back with the [`Ticket`] of their request.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sluice_engine::push::pace::{Grant, Pace, Ticket};
use tokio::sync::Notify;

/// How long a lane waiting for a probe's answer looks again on its own.
const PROBE_WAIT: Duration = Duration::from_secs(1);

pub struct Throttle {
    pace: Mutex<Pace>,
    /// An answer came: a lane waiting for a probe looks again.
    answered: Notify,
    base: Instant,
}

impl Throttle {
    pub fn new(rate_per_second: Option<f64>) -> Throttle {
        Throttle {
            pace: Mutex::new(Pace::new(rate_per_second)),
            answered: Notify::new(),
            base: Instant::now(),
        }
    }

    fn now(&self) -> f64 {
        self.base.elapsed().as_secs_f64() * 1000.0
    }

    /// Wait for the right to send one request.
    pub async fn acquire(&self) -> Ticket {
        loop {
            let answered = self.answered.notified();
            let grant = self.pace.lock().acquire(self.now());
            match grant {
                Grant::Go(t) => return t,
                Grant::WaitUntil(at) => {
                    let at = self.base + Duration::from_secs_f64(at.max(0.0) / 1000.0);
                    tokio::time::sleep_until(at.into()).await;
                }
                Grant::WaitForAnswer => {
                    let _ = tokio::time::timeout(PROBE_WAIT, answered).await;
                }
            }
        }
    }

    /// A turn if one is free right now (without waiting).
    pub fn try_acquire(&self) -> Option<Ticket> {
        match self.pace.lock().acquire(self.now()) {
            Grant::Go(t) => Some(t),
            Grant::WaitUntil(_) | Grant::WaitForAnswer => None,
        }
    }

    /// A ticket for a request sent without waiting (leased in bulk while nothing was paced).
    pub fn ticket(&self) -> Ticket {
        self.pace.lock().ticket(self.now())
    }

    pub fn on_success(&self, t: Ticket) {
        self.pace.lock().on_success(t, self.now());
        self.answered.notify_waiters();
    }

    /// A 429: returns how long that message waits.
    pub fn on_throttled(&self, t: Ticket, retry_after_ms: Option<u64>) -> u64 {
        let wait = self.pace.lock().on_throttled(t, retry_after_ms, self.now());
        self.answered.notify_waiters();
        wait
    }

    /// No request was made with `t` (its message given back unsent, or its lease lapsed).
    pub fn unused(&self, t: Ticket) {
        self.pace.lock().on_unused(t);
        self.answered.notify_waiters();
    }

    /// Any other answer (5xx, timeout, refused target).
    pub fn on_other(&self, t: Ticket) {
        self.pace.lock().on_other(t, self.now());
        self.answered.notify_waiters();
    }

    /// Is a rate in force (configured, adaptive, or a pause)?
    pub fn is_pacing(&self) -> bool {
        self.pace.lock().is_pacing()
    }

    /// The rate requests go at now (the adaptive one, else the configured one), if any.
    pub fn rate(&self) -> Option<f64> {
        self.pace.lock().rate()
    }

    /// The adaptive rate now in force, if the endpoint is being slowed down.
    pub fn current_rate(&self) -> Option<f64> {
        self.pace.lock().current_rate()
    }
}
