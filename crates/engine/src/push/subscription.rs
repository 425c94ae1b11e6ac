//! What a push subscription is: where to call and how to retry (`Subscription`, `Backoff`,
//! `BatchConfig`), its validation and limits, the Standard Webhooks signing key, and the names
//! of the queues it uses (its copy queue `QUEUE~SUB`, the default dead-letter queue).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::validate::{frange, range, validate_headers, validate_method, validate_url};

use super::breaker::BreakerConfig;
use super::filter::{validate_event_types, FilterPolicy};
use super::secret::{PreviousSecret, SigningKey};

/// Limits of subscriptions (documented in docs/webhooks.md).
pub mod limits {
    pub const SUBSCRIPTIONS_PER_QUEUE: usize = 20;
    pub const TIMEOUT_MAX_S: f64 = 300.0;
    pub const MAX_ATTEMPTS_MAX: u32 = 100;
    pub const BACKOFF_MAX_S: f64 = 7.0 * 24.0 * 3600.0;
    pub const RATE_MAX: f64 = 100_000.0;
    pub const CONCURRENCY_MAX: u32 = 1000;
    pub const BATCH_MAX: u32 = 1000;
    pub const BATCH_WAIT_MAX_MS: u64 = 3_600_000;
    /// `disable_after_seconds`: 1 s (for tests; anything under a few minutes disables on a
    /// blip) to 90 days; default 5 days.
    pub const DISABLE_AFTER_MIN_S: u64 = 1;
    pub const DISABLE_AFTER_MAX_S: u64 = 90 * 24 * 3600;
    pub const DISABLE_AFTER_DEFAULT_S: u64 = 5 * 24 * 3600;
}

use limits as pl;

/// Attributes added to a push dead letter.
pub const ATTR_SOURCE: &str = "sluice-source-queue";
pub const ATTR_SUBSCRIPTION: &str = "sluice-subscription";
pub const ATTR_ATTEMPTS: &str = "sluice-attempts";
pub const ATTR_ERROR: &str = "sluice-error";
pub const ATTR_HISTORY: &str = "sluice-attempt-history";
/// The id the message had (and the webhook-id it is delivered under): a dead letter gets an id
/// of its own, because several subscriptions may dead-letter copies of the same message.
pub const ATTR_MESSAGE_ID: &str = "sluice-message-id";
/// A message attribute naming a tally key: its copies' deliveries and failures are counted
/// under it by the store (`Push::tally`), so a producer knows exactly what became of them.
pub const ATTR_TALLY: &str = "sluice-tally";

/// Every annotation a push dead letter carries (removed again when it is redriven).
pub const DEAD_LETTER_ATTRS: [&str; 6] = [
    ATTR_SOURCE,
    ATTR_SUBSCRIPTION,
    ATTR_ATTEMPTS,
    ATTR_ERROR,
    ATTR_HISTORY,
    ATTR_MESSAGE_ID,
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backoff {
    pub initial_seconds: f64,
    pub multiplier: f64,
    pub max_seconds: f64,
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_seconds: 1.0,
            multiplier: 2.0,
            max_seconds: 3600.0,
            jitter: true,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt + 1`, after `attempt` failures (1-based). With jitter
    /// the delay is drawn uniformly from [d/2, d] ("equal jitter": spread out, never much
    /// shorter than the schedule). `rand01` is a uniform number in [0, 1).
    pub fn delay_ms(&self, attempt: u32, rand01: f64) -> u64 {
        let exp = attempt.saturating_sub(1).min(1000) as i32;
        let d = (self.initial_seconds * self.multiplier.powi(exp)).min(self.max_seconds);
        let d = if self.jitter {
            d * (0.5 + 0.5 * rand01)
        } else {
            d
        };
        (d * 1000.0).round().max(0.0) as u64
    }

    fn validate(&self) -> Result<()> {
        frange(
            "backoff.initial_seconds",
            self.initial_seconds,
            0.0,
            pl::BACKOFF_MAX_S,
        )?;
        frange("backoff.multiplier", self.multiplier, 1.0, 100.0)?;
        frange(
            "backoff.max_seconds",
            self.max_seconds,
            0.0,
            pl::BACKOFF_MAX_S,
        )?;
        if self.max_seconds < self.initial_seconds {
            return Err(EngineError::invalid(
                "backoff.max_seconds",
                "must be at least backoff.initial_seconds",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchConfig {
    /// More than 1: messages go out as one JSON array body.
    pub max_messages: u32,
    /// A batch leaves this long after its first message at the latest.
    pub max_wait_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_messages: 1,
            max_wait_ms: 0,
        }
    }
}

fn default_disable_after() -> u64 {
    pl::DISABLE_AFTER_DEFAULT_S
}

/// Why and since when a subscription is disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub at: Millis,
    pub reason: String,
}

/// Where and how a push queue's messages are delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub timeout_seconds: f64,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub rate_limit_per_second: Option<f64>,
    pub concurrency: u32,
    pub batch: BatchConfig,
    pub signing_secret: Option<String>,
    /// After a rotation: the secret that still signs beside `signing_secret` until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
    /// Only messages whose attributes match this SNS-style policy are copied to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterPolicy>,
    /// Only messages whose `event-type` attribute is one of these are copied to it (empty:
    /// any). Applies together with `filter`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Configured by the operator (the forwarder flags), not through the API: may target
    /// private addresses.
    #[serde(default)]
    pub trusted: bool,
    /// When its endpoint counts as down and only probes go out (`breaker.rs`).
    #[serde(default)]
    pub circuit_breaker: BreakerConfig,
    /// An endpoint failing without a single success this long is disabled (`disabled`).
    #[serde(default = "default_disable_after")]
    pub disable_after_seconds: u64,
    /// Disabled by sluice after `disable_after_seconds` of failures; held like a pause until
    /// `Push::enable`. Not a setting: a replacement keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Disabled>,
    /// Called (a signed POST, through the timers) with each message this subscription
    /// dead-letters and its last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_callback: Option<String>,
    /// Paused by its owner (`Push::pause`, `hold.rs`): its copy queue leases nothing until it
    /// is resumed. Not a setting: a replacement (`Push::put`) keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<Millis>,
    #[serde(default)]
    pub created_at: Millis,
    #[serde(default)]
    pub updated_at: Millis,
}

impl Subscription {
    pub fn new(url: impl Into<String>) -> Self {
        Subscription {
            url: url.into(),
            method: "POST".into(),
            headers: BTreeMap::new(),
            timeout_seconds: 30.0,
            max_attempts: 10,
            backoff: Backoff::default(),
            rate_limit_per_second: None,
            concurrency: 10,
            batch: BatchConfig::default(),
            signing_secret: None,
            previous_secret: None,
            filter: None,
            event_types: Vec::new(),
            trusted: false,
            circuit_breaker: BreakerConfig::default(),
            disable_after_seconds: pl::DISABLE_AFTER_DEFAULT_S,
            disabled: None,
            failure_callback: None,
            paused_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        validate_url("url", &self.url)?;
        validate_method("method", &self.method)?;
        validate_headers("headers", &self.headers)?;
        frange(
            "timeout_seconds",
            self.timeout_seconds,
            0.1,
            pl::TIMEOUT_MAX_S,
        )?;
        range(
            "max_attempts",
            self.max_attempts as u64,
            1,
            pl::MAX_ATTEMPTS_MAX as u64,
        )?;
        self.backoff.validate()?;
        if let Some(r) = self.rate_limit_per_second {
            frange("rate_limit_per_second", r, 0.01, pl::RATE_MAX)?;
        }
        range(
            "concurrency",
            self.concurrency as u64,
            1,
            pl::CONCURRENCY_MAX as u64,
        )?;
        range(
            "batch.max_messages",
            self.batch.max_messages as u64,
            1,
            pl::BATCH_MAX as u64,
        )?;
        range(
            "batch.max_wait_ms",
            self.batch.max_wait_ms,
            0,
            pl::BATCH_WAIT_MAX_MS,
        )?;
        if let Some(s) = &self.signing_secret {
            SigningKey::parse(s).map_err(|m| EngineError::invalid("signing_secret", m))?;
        }
        validate_event_types(&self.event_types)?;
        self.circuit_breaker.validate()?;
        if let Some(u) = &self.failure_callback {
            validate_url("failure_callback", u)?;
        }
        range(
            "disable_after_seconds",
            self.disable_after_seconds,
            pl::DISABLE_AFTER_MIN_S,
            pl::DISABLE_AFTER_MAX_S,
        )?;
        Ok(())
    }

    /// The secrets that sign a request made at `now`: the current one, then the previous one
    /// while its grace period lasts (Standard Webhooks: space-separated in one header).
    pub fn secrets_in_force(&self, now: Millis) -> Vec<&str> {
        let mut v: Vec<&str> = self.signing_secret.iter().map(String::as_str).collect();
        if let Some(p) = &self.previous_secret {
            if now < p.expires_at && !v.is_empty() {
                v.push(&p.secret);
            }
        }
        v
    }

    /// The rotation state while it lasts at `now` (None once the old secret expired).
    pub fn rotation(&self, now: Millis) -> Option<&PreviousSecret> {
        self.previous_secret
            .as_ref()
            .filter(|p| now < p.expires_at && self.signing_secret.is_some())
    }

    /// How long a lease of this subscription's messages lasts: the batch's wait, the request
    /// and a margin.
    pub fn lease_ms(&self) -> u64 {
        ((self.timeout_seconds + 60.0) * 1000.0) as u64 + self.batch.max_wait_ms
    }

    /// Since when its deliveries are held by its own state (paused or disabled), if they
    /// are: its copy queue then leases nothing (`hold.rs`).
    pub fn held_since(&self) -> Option<Millis> {
        self.paused_at.or(self.disabled.as_ref().map(|d| d.at))
    }

    /// Whether messages go out as a JSON array (even of one).
    pub fn batching(&self) -> bool {
        self.batch.max_messages > 1
    }
}

/// The internal queue holding one subscription's copies of a push queue's messages.
pub fn child_queue(queue: &str, sub: &str) -> String {
    match queue.strip_suffix(".fifo") {
        Some(stem) => format!("{stem}~{sub}.fifo"),
        None => format!("{queue}~{sub}"),
    }
}

/// The internal queue keeping a subscription's delivered messages for replay (queues with
/// `retain_delivered_seconds`): `QUEUE~SUB~delivered`, never FIFO.
pub fn delivered_queue(queue: &str, sub: &str) -> String {
    let stem = queue.strip_suffix(".fifo").unwrap_or(queue);
    format!("{stem}~{sub}~delivered")
}

/// Is this an internal queue (a subscription's copy queue, the timer queue)? Users cannot
/// name queues with `~`, so these never collide with theirs.
pub fn is_internal(queue: &str) -> bool {
    queue.contains('~')
}

/// The dead-letter queue of a push queue that names none.
pub fn default_dlq(queue: &str) -> String {
    match queue.strip_suffix(".fifo") {
        Some(stem) => format!("{stem}-dlq.fifo"),
        None => format!("{queue}-dlq"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule_and_jitter_bounds() {
        let b = Backoff {
            initial_seconds: 1.0,
            multiplier: 2.0,
            max_seconds: 10.0,
            jitter: false,
        };
        let d: Vec<u64> = (1..=6).map(|a| b.delay_ms(a, 0.0)).collect();
        assert_eq!(d, vec![1000, 2000, 4000, 8000, 10000, 10000]);
        let j = Backoff { jitter: true, ..b };
        assert_eq!(j.delay_ms(3, 0.0), 2000);
        assert_eq!(j.delay_ms(3, 0.999_999), 4000);
    }

    #[test]
    fn validation_names_fields() {
        let mut s = Subscription::new("ftp://x");
        assert!(s.validate().unwrap_err().to_string().starts_with("url:"));
        s.url = "http://example.com/hook".into();
        s.validate().unwrap();
        s.signing_secret = Some("no pe!".into());
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("signing_secret:"));
        s.signing_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        s.validate().unwrap();
        s.headers.insert("Host".into(), "x".into());
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("headers:"));
    }
}
