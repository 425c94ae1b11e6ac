//! Due timers: the timer senders lease them here. A timer that publishes to a queue fires
//! right here (a publish is the engine's own business, no HTTP involved); a cancelled timer,
//! or one finished just before a crash, is settled without firing; the rest are handed to the
//! caller as [`DueTimer`]s, HTTP calls to make and then settle with `Timers::settle`.

use crate::error::Result;
use crate::model::Delivery;
use crate::timers::{TimerSpec, FAILED, SUCCEEDED, TIMER_QUEUE};

use super::{Engine, Publish};

/// A due timer that calls a URL, leased for the sender that makes the call.
#[derive(Debug, Clone)]
pub struct DueTimer {
    pub delivery: Delivery,
    pub spec: TimerSpec,
    /// 1 for the first call (429s are not attempts).
    pub attempt: u32,
    /// 429s it got so far.
    pub throttled: u32,
}

impl Engine {
    /// Lease up to `max` due timers for `lease_ms`, waiting up to `wait_ms` for the first; fire
    /// the queue targets, settle the finished ones, and return the HTTP calls to make.
    pub async fn due_timers(
        &self,
        max: usize,
        lease_ms: u64,
        wait_ms: u64,
    ) -> Result<Vec<DueTimer>> {
        let got = self
            .core
            .wait_receive(TIMER_QUEUE, max, lease_ms, wait_ms)
            .await?;
        let mut calls = Vec::with_capacity(got.len());
        for d in got {
            if let Some(call) = self.fire(d).await {
                calls.push(call);
            }
        }
        Ok(calls)
    }

    async fn fire(&self, d: Delivery) -> Option<DueTimer> {
        let id = d.message.id;
        let timers = &self.timers;
        match timers.outcome_fresh(id).await {
            Err(e) => {
                // Not knowing whether it was cancelled, do not fire: the lease runs out and
                // the timer comes back.
                tracing::warn!(timer = %id, error = %e, "could not read the timer's outcome");
                return None;
            }
            Ok(Some(code)) => {
                // Cancelled, or finished just before a crash: settle without firing.
                if let Err(e) = timers.finish(&d, code).await {
                    tracing::warn!(timer = %id, error = %e, "could not settle a finished timer");
                }
                return None;
            }
            Ok(None) => {}
        }
        let spec: TimerSpec = match serde_json::from_slice(&d.message.body) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(timer = %id, error = %e, "unreadable timer; marking it failed");
                let _ = timers.finish(&d, FAILED).await;
                return None;
            }
        };
        let Some(queue) = &spec.queue else {
            let (attempt, throttled) = match timers.next_attempt(&d).await {
                Ok(a) => a,
                Err(e) => {
                    // The lease runs out and the timer comes back.
                    tracing::warn!(timer = %id, error = %e, "could not read the timer's attempts");
                    return None;
                }
            };
            return Some(DueTimer {
                delivery: d,
                spec,
                attempt,
                throttled,
            });
        };
        let published = self
            .publish(
                queue,
                vec![Publish {
                    body: spec.body.clone().unwrap_or_default().into_bytes(),
                    attributes: spec.attributes.clone(),
                    ..Default::default()
                }],
            )
            .await;
        let code = match &published {
            Ok(_) => SUCCEEDED,
            Err(e) => {
                tracing::warn!(timer = %id, queue = %queue, error = %e, "timer publish failed");
                FAILED
            }
        };
        if let Err(e) = timers.finish(&d, code).await {
            tracing::warn!(timer = %id, error = %e, "could not record a timer outcome; the lease will return it");
        }
        None
    }
}
