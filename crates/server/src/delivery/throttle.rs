//! Pacing of one endpoint: the subscription's configured rate limit (a governor GCRA limiter,
//! burst = one second's worth) and an adaptive limit that follows the endpoint's 429s.
//!
//! Adaptive rule (AIMD): on a 429 the allowed rate halves (starting from the configured rate,
//! or from the rate actually sent over the last second when none is configured), never below
//! 0.5/s, and sending pauses until `Retry-After` when the endpoint gives one. Each success
//! raises it by 5% + 0.5/s until it reaches the configured rate again (or, with no configured
//! rate, four times the rate that drew the first 429), where the adaptive limit is lifted.
//! The 429s of one congestion event (every request in flight when the endpoint started
//! refusing) cut the rate once: a 429 within [`CUT_SPACING`] of the previous cut only extends
//! the pause. Only this endpoint's lane waits; other subscriptions have their own throttles.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

/// 429s closer together than this count as one congestion event (one halving).
pub const CUT_SPACING: Duration = Duration::from_millis(250);

pub struct Throttle {
    limiter: Option<DefaultDirectRateLimiter>,
    configured: Option<f64>,
    state: Mutex<Adaptive>,
}

struct Adaptive {
    /// Current adaptive rate (requests/s); None when not throttled.
    rate: Option<f64>,
    ceiling: f64,
    paused_until: Option<Instant>,
    last_cut: Option<Instant>,
    next_slot: Instant,
    /// Requests started in the current and the previous second, for the observed rate.
    window_start: Instant,
    window_count: u64,
    last_window_rate: f64,
}

impl Throttle {
    pub fn new(rate_per_second: Option<f64>) -> Throttle {
        let limiter = rate_per_second.map(|r| {
            let period = Duration::from_secs_f64(1.0 / r);
            let burst = NonZeroU32::new(r.ceil().clamp(1.0, 10_000.0) as u32).expect("nonzero");
            let quota = Quota::with_period(period)
                .expect("positive period")
                .allow_burst(burst);
            RateLimiter::direct(quota)
        });
        let now = Instant::now();
        Throttle {
            limiter,
            configured: rate_per_second,
            state: Mutex::new(Adaptive {
                rate: None,
                ceiling: f64::INFINITY,
                paused_until: None,
                last_cut: None,
                next_slot: now,
                window_start: now,
                window_count: 0,
                last_window_rate: 0.0,
            }),
        }
    }

    /// Wait for the right to send one request.
    pub async fn acquire(&self) {
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
        let wait_until = {
            let mut s = self.state.lock();
            let now = Instant::now();
            if now.duration_since(s.window_start) >= Duration::from_secs(1) {
                let secs = now.duration_since(s.window_start).as_secs_f64();
                s.last_window_rate = s.window_count as f64 / secs;
                s.window_start = now;
                s.window_count = 0;
            }
            s.window_count += 1;
            let mut at = now;
            if let Some(p) = s.paused_until {
                if p > at {
                    at = p;
                } else {
                    s.paused_until = None;
                }
            }
            if let Some(rate) = s.rate {
                at = at.max(s.next_slot);
                s.next_slot = at + Duration::from_secs_f64(1.0 / rate);
            }
            at
        };
        if wait_until > Instant::now() {
            tokio::time::sleep_until(wait_until.into()).await;
        }
    }

    /// The endpoint answered 429. Returns how long this message should wait.
    pub fn on_throttled(&self, retry_after_ms: Option<u64>) -> u64 {
        let mut s = self.state.lock();
        let now = Instant::now();
        let base = s.rate.unwrap_or_else(|| {
            let observed = s.last_window_rate.max(
                s.window_count as f64 / now.duration_since(s.window_start).as_secs_f64().max(0.001),
            );
            let start = self.configured.unwrap_or(observed).min(observed.max(1.0));
            s.ceiling = self.configured.unwrap_or(start * 4.0);
            start
        });
        let same_event = s.rate.is_some()
            && s.last_cut
                .is_some_and(|c| now.duration_since(c) < CUT_SPACING);
        let rate = if same_event {
            base
        } else {
            s.last_cut = Some(now);
            (base / 2.0).max(0.5)
        };
        s.rate = Some(rate);
        let pause = retry_after_ms.unwrap_or((1000.0 / rate) as u64).max(1);
        let until = now + Duration::from_millis(pause);
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
        s.next_slot = s.next_slot.max(until);
        pause
    }

    pub fn on_success(&self) {
        let mut s = self.state.lock();
        if let Some(r) = s.rate {
            let r = r * 1.05 + 0.5;
            s.rate = if r >= s.ceiling { None } else { Some(r) };
        }
    }

    /// Is a rate in force (configured, or adaptive after 429s)?
    pub fn is_pacing(&self) -> bool {
        self.limiter.is_some() || self.state.lock().rate.is_some()
    }

    /// The adaptive rate now in force, if the endpoint is being slowed down.
    pub fn current_rate(&self) -> Option<f64> {
        self.state.lock().rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn halves_on_429_and_recovers() {
        let t = Throttle::new(Some(100.0));
        // Send a burst, so the observed rate is above the configured one.
        for _ in 0..100 {
            t.acquire().await;
        }
        assert_eq!(t.current_rate(), None);
        t.on_throttled(Some(0));
        assert_eq!(t.current_rate(), Some(50.0));
        // The other requests in flight get their 429 at once: still one cut.
        for _ in 0..31 {
            t.on_throttled(Some(0));
        }
        assert_eq!(
            t.current_rate(),
            Some(50.0),
            "one congestion event, one halving"
        );
        tokio::time::sleep(CUT_SPACING + Duration::from_millis(50)).await;
        t.on_throttled(Some(0));
        assert_eq!(t.current_rate(), Some(25.0), "a later 429 halves again");
        for _ in 0..200 {
            t.on_success();
        }
        assert_eq!(t.current_rate(), None, "recovered to the configured rate");
    }

    #[test]
    fn starts_from_the_observed_rate_when_lower() {
        // Idle endpoint, configured 100/s: the first 429 starts from what was really sent.
        let t = Throttle::new(Some(100.0));
        t.on_throttled(Some(0));
        assert_eq!(t.current_rate(), Some(0.5));
    }

    #[test]
    fn never_below_half_a_request_per_second() {
        let t = Throttle::new(Some(1.0));
        for _ in 0..10 {
            t.on_throttled(Some(0));
        }
        assert_eq!(t.current_rate(), Some(0.5));
    }
}
