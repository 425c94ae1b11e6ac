//! The circuit breaker of one subscription's endpoint: after `failures` consecutive failed
//! requests (no answer, a timeout, 408 or 5xx) the circuit *opens*: its lane stops leasing,
//! so messages wait without burning attempts, and one *probe* request goes out at growing
//! intervals (`probe_initial_seconds`, doubling up to `probe_max_seconds`). The first success
//! closes it. A 429 and other 4xx answers are neither: the endpoint is up (429s are the pace's,
//! `pace.rs`; a 4xx fails its message, not the endpoint).
//!
//! [`Circuit`] is the pure rule, driven by the times it is given (no clock, no I/O), so it is
//! unit-tested here; the server's lane (`delivery/health.rs`) asks it before leasing and tells
//! it every answer. Its changes of state (opened, a probe failed, closed) are stored through
//! `Push::save_circuit`, so a restart keeps an open circuit open; the failure count of a
//! closed circuit lives in memory (a restart starts it at 0). `failing_since` (the first
//! failure since the last success) is what auto-disabling reads.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::validate::frange;

/// Limits of the breaker's settings (documented in docs/webhooks.md).
pub mod limits {
    pub const FAILURES_MAX: u32 = 10_000;
    pub const PROBE_MIN_S: f64 = 0.1;
    pub const PROBE_MAX_S: f64 = 86_400.0;
}

/// A subscription's breaker settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakerConfig {
    /// Consecutive failed requests that open the circuit (1-10000, default 20).
    pub failures: u32,
    /// Wait before the first probe, seconds (0.1-86400, default 5).
    pub probe_initial_seconds: f64,
    /// Longest wait between probes, seconds (default 300); each failed probe doubles it.
    pub probe_max_seconds: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 20,
            probe_initial_seconds: 5.0,
            probe_max_seconds: 300.0,
        }
    }
}

impl BreakerConfig {
    pub(super) fn validate(&self) -> Result<()> {
        crate::validate::range(
            "circuit_breaker.failures",
            self.failures as u64,
            1,
            limits::FAILURES_MAX as u64,
        )?;
        frange(
            "circuit_breaker.probe_initial_seconds",
            self.probe_initial_seconds,
            limits::PROBE_MIN_S,
            limits::PROBE_MAX_S,
        )?;
        frange(
            "circuit_breaker.probe_max_seconds",
            self.probe_max_seconds,
            limits::PROBE_MIN_S,
            limits::PROBE_MAX_S,
        )?;
        if self.probe_max_seconds < self.probe_initial_seconds {
            return Err(EngineError::invalid(
                "circuit_breaker.probe_max_seconds",
                "must be at least circuit_breaker.probe_initial_seconds",
            ));
        }
        Ok(())
    }

    /// The wait before the probe after `failed_probes` failed ones.
    fn probe_wait_ms(&self, failed_probes: u32) -> Millis {
        let s = self.probe_initial_seconds * 2f64.powi(failed_probes.min(64) as i32);
        (s.min(self.probe_max_seconds) * 1000.0).round() as Millis
    }
}

/// What one answer says about the endpoint's health (`Verdict::of`, in `policy.rs` beside
/// the other readings of an answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Success,
    /// No answer (connection error, timeout), 408 or 5xx.
    Failure,
    /// 429 or another 4xx, or a target refused before any request: says nothing about whether
    /// the endpoint is up.
    Neutral,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CircuitState {
    /// Requests go out.
    #[default]
    Closed,
    /// Nothing goes out until `next_probe_at`.
    Open,
    /// One probe is out; its answer decides.
    HalfOpen,
}

/// May the lane lease now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed: lease as usual.
    Send,
    /// Send one request (one message, or one batch) as the probe.
    Probe,
    /// Open: wait until then.
    WaitUntil(Millis),
    /// A probe is out: wait for its answer.
    WaitForAnswer,
}

/// A change worth storing and telling the operator about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened,
    ProbeFailed,
    Closed,
}

/// The state of one subscription's circuit.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Circuit {
    pub state: CircuitState,
    /// Failed requests since the last success (or since the circuit closed).
    pub consecutive_failures: u32,
    /// When the first of them failed (no success since), or null.
    pub failing_since: Option<Millis>,
    /// When the circuit opened, while it is open.
    pub opened_at: Option<Millis>,
    /// When the next probe may go, while it is open.
    pub next_probe_at: Option<Millis>,
    /// Probes that failed since it opened.
    pub failed_probes: u32,
}

impl Circuit {
    /// A circuit read back from the store: a probe that was out when the process stopped
    /// never answered, so it is open again, due at once.
    pub fn restored(mut self) -> Circuit {
        if self.state == CircuitState::HalfOpen {
            self.state = CircuitState::Open;
        }
        self
    }

    /// May the lane lease at `now`? Moving to half-open hands out the one probe.
    pub fn gate(&mut self, now: Millis) -> Gate {
        match self.state {
            CircuitState::Closed => Gate::Send,
            CircuitState::HalfOpen => Gate::WaitForAnswer,
            CircuitState::Open => match self.next_probe_at {
                Some(at) if now < at => Gate::WaitUntil(at),
                _ => {
                    self.state = CircuitState::HalfOpen;
                    Gate::Probe
                }
            },
        }
    }

    /// The probe found nothing to send (an empty backlog): open again, due at once.
    pub fn probe_unused(&mut self) {
        if self.state == CircuitState::HalfOpen {
            self.state = CircuitState::Open;
        }
    }

    /// Tell the circuit what an answer at `now` said; `probe` is whether it answered the
    /// probe. Returns the change of state, if any.
    pub fn on_answer(
        &mut self,
        cfg: &BreakerConfig,
        verdict: Verdict,
        probe: bool,
        now: Millis,
    ) -> Option<Change> {
        match verdict {
            Verdict::Success => {
                let was_open = self.state != CircuitState::Closed;
                *self = Circuit::default();
                was_open.then_some(Change::Closed)
            }
            Verdict::Failure => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.failing_since.get_or_insert(now);
                match self.state {
                    CircuitState::Closed if self.consecutive_failures >= cfg.failures => {
                        self.state = CircuitState::Open;
                        self.opened_at = Some(now);
                        self.failed_probes = 0;
                        self.next_probe_at = Some(now + cfg.probe_wait_ms(0));
                        Some(Change::Opened)
                    }
                    CircuitState::HalfOpen if probe => {
                        self.failed_probes += 1;
                        self.state = CircuitState::Open;
                        self.next_probe_at = Some(now + cfg.probe_wait_ms(self.failed_probes));
                        Some(Change::ProbeFailed)
                    }
                    // Requests that were out when it opened: counted, nothing more.
                    _ => None,
                }
            }
            Verdict::Neutral => {
                if probe && self.state == CircuitState::HalfOpen {
                    // Up, but not a success: probe again after the same wait.
                    self.state = CircuitState::Open;
                    self.next_probe_at = Some(now + cfg.probe_wait_ms(self.failed_probes));
                }
                None
            }
        }
    }

    /// Has the endpoint failed without a single success for at least `after_ms` at `now`?
    pub fn failing_for(&self, after_ms: Millis, now: Millis) -> bool {
        self.failing_since.is_some_and(|t| now - t >= after_ms)
    }
}

#[cfg(test)]
mod tests;
