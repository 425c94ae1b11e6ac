//! Push delivery, the engine's side: subscriptions (what to call, how to retry), fan-out into
//! one internal queue per subscription, dead-lettering with the attempt history, redrive of
//! push dead letters, and the bounded attempts log. The HTTP calls themselves are made by the
//! server's push workers; this module never touches the network.
//!
//! A queue with subscriptions is a *push queue*. Publishing to it stores each message once per
//! subscription, in the internal queue `QUEUE~SUB` (`STEM~SUB.fifo` for FIFO queues), with the
//! same message id: each subscription keeps its own delivery state (leases, receive count,
//! backoff delays) with the ordinary queue machinery, and the id is the stable `webhook-id`.
//! A message has left the push queue when every subscription's copy is settled.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::model::{range, MessageId};

/// Limits of subscriptions (documented in docs/webhooks.md).
pub mod push_limits {
    pub const SUBSCRIPTIONS_PER_QUEUE: usize = 20;
    pub const NAME_MAX: usize = 64;
    pub const URL_MAX: usize = 2048;
    pub const TIMEOUT_MAX_S: f64 = 300.0;
    pub const MAX_ATTEMPTS_MAX: u32 = 100;
    pub const BACKOFF_MAX_S: f64 = 7.0 * 24.0 * 3600.0;
    pub const RATE_MAX: f64 = 100_000.0;
    pub const CONCURRENCY_MAX: u32 = 1000;
    pub const BATCH_MAX: u32 = 1000;
    pub const BATCH_WAIT_MAX_MS: u64 = 3_600_000;
    pub const HEADERS_MAX: usize = 32;
    /// Attempts kept per message, and messages kept, in the attempts log.
    pub const LOG_ATTEMPTS_PER_MESSAGE: usize = 50;
    pub const LOG_MESSAGES: usize = 100_000;
    /// Bytes of response excerpts and errors kept over all messages.
    pub const LOG_BYTES: usize = 64 * 1024 * 1024;
    pub const LOG_AGE_MS: i64 = 24 * 3600 * 1000;
    /// Bytes of a response body kept in an attempt.
    pub const RESPONSE_EXCERPT: usize = 1024;
}

use push_limits as pl;

/// Attributes added to a push dead letter.
pub const ATTR_SOURCE: &str = "sluice-source-queue";
pub const ATTR_SUBSCRIPTION: &str = "sluice-subscription";
pub const ATTR_ATTEMPTS: &str = "sluice-attempts";
pub const ATTR_ERROR: &str = "sluice-error";
pub const ATTR_HISTORY: &str = "sluice-attempt-history";
/// The id the message had (and the webhook-id it is delivered under): a dead letter gets an id
/// of its own, because several subscriptions may dead-letter copies of the same message.
pub const ATTR_MESSAGE_ID: &str = "sluice-message-id";

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
    /// Configured by the operator (the forwarder flags), not through the API: may target
    /// private addresses.
    #[serde(default)]
    pub trusted: bool,
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
            trusted: false,
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
            signing_key(s).map_err(|m| EngineError::invalid("signing_secret", m))?;
        }
        Ok(())
    }
}

/// The HMAC key of a Standard Webhooks secret: `whsec_` + base64 of the key (the prefix may be
/// left out, as the Standard Webhooks libraries allow). 24 to 64 bytes are recommended; 1 to
/// 1024 are accepted.
pub fn signing_key(secret: &str) -> std::result::Result<Vec<u8>, String> {
    use base64::Engine as _;
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| {
            "must be \"whsec_\" followed by the key in standard base64 (Standard Webhooks)"
                .to_string()
        })?;
    if !(1..=1024).contains(&key.len()) {
        return Err(format!(
            "must encode 1 to 1024 bytes of key (24 to 64 recommended); it encodes {}",
            key.len()
        ));
    }
    Ok(key)
}

pub fn validate_subscription_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > pl::NAME_MAX
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(EngineError::invalid(
            "subscription",
            format!(
                "name must have 1 to {} characters of A-Z, a-z, 0-9, '-' and '_'",
                pl::NAME_MAX
            ),
        ));
    }
    Ok(())
}

/// An absolute http(s) URL with a host.
pub fn validate_url(field: &str, s: &str) -> Result<()> {
    if s.len() > pl::URL_MAX {
        return Err(EngineError::invalid(
            field,
            format!("is {} bytes long; the limit is {}", s.len(), pl::URL_MAX),
        ));
    }
    match url::Url::parse(s) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(EngineError::invalid(
            field,
            "must be an absolute http:// or https:// URL with a host",
        )),
        Err(e) => Err(EngineError::invalid(
            field,
            format!("is not a valid absolute URL ({e})"),
        )),
    }
}

pub fn validate_method(field: &str, m: &str) -> Result<()> {
    match m {
        "POST" | "PUT" | "PATCH" | "GET" | "DELETE" => Ok(()),
        _ => Err(EngineError::invalid(
            field,
            "must be one of POST, PUT, PATCH, GET, DELETE",
        )),
    }
}

/// Extra request headers: valid names, visible-ASCII values, none that sluice sets itself.
pub fn validate_headers(field: &str, h: &BTreeMap<String, String>) -> Result<()> {
    if h.len() > pl::HEADERS_MAX {
        return Err(EngineError::invalid(
            field,
            format!("has {} headers; the limit is {}", h.len(), pl::HEADERS_MAX),
        ));
    }
    for (k, v) in h {
        let lk = k.to_ascii_lowercase();
        let token = !k.is_empty()
            && k.len() <= 256
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(EngineError::invalid(
                field,
                format!("{k:?} is not a valid header name"),
            ));
        }
        if matches!(
            lk.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection" | "upgrade" | "te"
        ) || lk.starts_with("webhook-")
            || lk.starts_with("sluice-")
        {
            return Err(EngineError::invalid(
                field,
                format!("{k:?} is set by sluice and cannot be configured"),
            ));
        }
        if v.len() > 8192 || !v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return Err(EngineError::invalid(
                field,
                format!("value of {k:?} must be at most 8192 visible ASCII characters"),
            ));
        }
    }
    Ok(())
}

fn frange(field: &str, v: f64, min: f64, max: f64) -> Result<()> {
    if !v.is_finite() || v < min || v > max {
        return Err(EngineError::invalid(
            field,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(())
}

/// The internal queue holding one subscription's copies of a push queue's messages.
pub fn child_queue(queue: &str, sub: &str) -> String {
    match queue.strip_suffix(".fifo") {
        Some(stem) => format!("{stem}~{sub}.fifo"),
        None => format!("{queue}~{sub}"),
    }
}

/// Is this an internal queue (a subscription's copy queue, the timer queue)? Users cannot
/// name queues with `~`, so these never collide with theirs.
pub fn is_internal(queue: &str) -> bool {
    queue.contains('~')
}

/// What one HTTP attempt's outcome means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Outcome {
    /// 2xx: done.
    Delivered,
    /// 408, 5xx, a timeout or a connection error: try again after the backoff.
    Retry,
    /// 429: the endpoint asks to slow down; does not count against max_attempts.
    Throttled,
    /// Any other status (4xx, and 3xx since redirects are not followed): give up now.
    Failed,
}

pub fn classify(status: Option<u16>) -> Outcome {
    match status {
        None => Outcome::Retry,
        Some(s) if (200..300).contains(&s) => Outcome::Delivered,
        Some(429) => Outcome::Throttled,
        Some(408) => Outcome::Retry,
        Some(s) if s >= 500 => Outcome::Retry,
        Some(_) => Outcome::Failed,
    }
}

/// RFC 3339 with milliseconds, UTC (how the API shows times).
pub fn rfc3339(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn de_time<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Millis, D::Error> {
    let s = String::deserialize(d)?;
    chrono::DateTime::parse_from_rfc3339(&s)
        .map(|t| t.timestamp_millis())
        .map_err(serde::de::Error::custom)
}

fn de_opt_time<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Millis>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(serde::de::Error::custom),
    }
}

fn ser_time<S: serde::Serializer>(ms: &Millis, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}

fn ser_opt_time<S: serde::Serializer>(
    ms: &Option<Millis>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

/// One HTTP attempt, as the attempts log keeps it (and the API shows it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    /// When the request was sent (RFC 3339).
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub at: Millis,
    /// The queue of the subscription (empty for timers).
    pub queue: String,
    /// The subscription, or `timer` for timers.
    pub subscription: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The request line and the first 1 KiB of the request body (lossy UTF-8).
    pub request: String,
    /// The first 1 KiB of the response body (lossy UTF-8).
    pub response: String,
    /// What sluice did next: delivered, retry, throttled, failed.
    pub outcome: Outcome,
    /// When the next attempt is due (retry, throttled), RFC 3339.
    #[serde(serialize_with = "ser_opt_time", deserialize_with = "de_opt_time")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub next_attempt_at: Option<Millis>,
    /// Messages in this request (more than 1 for a batch).
    pub batch_size: u32,
}

/// The attempts of recent messages, bounded in messages, attempts per message and age. It
/// lives in memory: after a restart, older attempts are found in a dead letter's
/// `sluice-attempt-history` attribute.
#[derive(Default)]
pub struct AttemptLog {
    by_id: HashMap<MessageId, Vec<Attempt>>,
    order: VecDeque<(Millis, MessageId)>,
    bytes: usize,
}

fn attempt_bytes(a: &Attempt) -> usize {
    96 + a.response.len()
        + a.request.len()
        + a.error.as_ref().map_or(0, |e| e.len())
        + a.subscription.len()
        + a.queue.len()
}

impl AttemptLog {
    pub fn record(&mut self, id: MessageId, a: Attempt) {
        let now = a.at;
        let v = self.by_id.entry(id).or_insert_with(|| {
            self.order.push_back((now, id));
            Vec::new()
        });
        if v.len() >= pl::LOG_ATTEMPTS_PER_MESSAGE {
            // Keep the first attempt; drop the oldest of the others.
            let gone = v.remove(1);
            self.bytes -= attempt_bytes(&gone);
        }
        self.bytes += attempt_bytes(&a);
        v.push(a);
        while let Some(&(t, old)) = self.order.front() {
            if self.order.len() > pl::LOG_MESSAGES
                || now - t > pl::LOG_AGE_MS
                || self.bytes > pl::LOG_BYTES
            {
                self.order.pop_front();
                if let Some(v) = self.by_id.remove(&old) {
                    self.bytes -= v.iter().map(attempt_bytes).sum::<usize>();
                }
            } else {
                break;
            }
        }
    }

    pub fn get(&self, id: MessageId) -> Vec<Attempt> {
        self.by_id.get(&id).cloned().unwrap_or_default()
    }

    /// The most recent messages (newest first, at most `limit`) with attempts by subscription
    /// `sub` of `queue`, each with those attempts; with `failing`, only messages whose latest
    /// attempt did not deliver.
    pub fn recent(
        &self,
        queue: &str,
        sub: &str,
        limit: usize,
        failing: bool,
    ) -> Vec<(MessageId, Vec<Attempt>)> {
        let mut out = Vec::new();
        for (_, id) in self.order.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let Some(all) = self.by_id.get(id) else {
                continue;
            };
            let mine: Vec<Attempt> = all
                .iter()
                .filter(|a| a.queue == queue && a.subscription == sub)
                .cloned()
                .collect();
            match mine.last() {
                None => continue,
                Some(last) if failing && last.outcome == Outcome::Delivered => continue,
                Some(_) => out.push((*id, mine)),
            }
        }
        out
    }
}

/// A compact summary of one subscription's attempts for a dead letter's attribute (at most
/// ~1 KiB): `attempt:time_ms:status-or-error` separated by spaces.
pub fn history_summary(attempts: &[Attempt], sub: &str) -> String {
    let mut parts: Vec<String> = attempts
        .iter()
        .filter(|a| a.subscription == sub)
        .map(|a| {
            let what = match (a.status, &a.error) {
                (Some(s), _) => s.to_string(),
                (None, Some(e)) => e.chars().take(60).collect(),
                (None, None) => "?".into(),
            };
            format!("{}:{}:{}", a.attempt, a.at, what)
        })
        .collect();
    while parts.join(" ").len() > 1000 && parts.len() > 2 {
        parts.remove(1);
    }
    parts.join(" ")
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
    fn classification() {
        assert_eq!(classify(Some(204)), Outcome::Delivered);
        assert_eq!(classify(Some(500)), Outcome::Retry);
        assert_eq!(classify(Some(408)), Outcome::Retry);
        assert_eq!(classify(None), Outcome::Retry);
        assert_eq!(classify(Some(429)), Outcome::Throttled);
        assert_eq!(classify(Some(404)), Outcome::Failed);
        assert_eq!(classify(Some(302)), Outcome::Failed);
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

    #[test]
    fn attempt_log_is_bounded_per_message() {
        let mut log = AttemptLog::default();
        let id = MessageId(7);
        for i in 0..(pl::LOG_ATTEMPTS_PER_MESSAGE as u32 + 10) {
            log.record(
                id,
                Attempt {
                    at: 1,
                    queue: "q".into(),
                    subscription: "s".into(),
                    request: String::new(),
                    attempt: i + 1,
                    status: Some(500),
                    error: None,
                    duration_ms: 1,
                    response: String::new(),
                    outcome: Outcome::Retry,
                    next_attempt_at: None,
                    batch_size: 1,
                },
            );
        }
        let v = log.get(id);
        assert_eq!(v.len(), pl::LOG_ATTEMPTS_PER_MESSAGE);
        assert_eq!(v[0].attempt, 1);
        assert_eq!(
            v.last().unwrap().attempt,
            pl::LOG_ATTEMPTS_PER_MESSAGE as u32 + 10
        );
    }
}

// ---- the engine's push calls ----

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::engine::Engine;
use crate::model::{limits, validate_queue_name, Delivery, NewMessage, Placement, QueueConfig};

/// The engine's push bookkeeping: subscriptions by queue (loaded from the store's settings at
/// start), a version bumped on every change (the server's push manager watches it), and the
/// attempts log.
pub struct PushState {
    subs: RwLock<HashMap<String, BTreeMap<String, Subscription>>>,
    version: watch::Sender<u64>,
    log: Mutex<AttemptLog>,
}

impl Default for PushState {
    fn default() -> Self {
        PushState {
            subs: RwLock::new(HashMap::new()),
            version: watch::channel(0).0,
            log: Mutex::new(AttemptLog::default()),
        }
    }
}

fn meta_key(queue: &str, name: &str) -> String {
    format!("sub/{queue}/{name}")
}

/// One subscription as the push manager sees it.
#[derive(Debug, Clone)]
pub struct SubscriptionRef {
    pub queue: String,
    pub name: String,
    pub child: String,
    pub config: Arc<Subscription>,
}

impl Engine {
    /// Load subscriptions from the store's settings (once, at start).
    pub async fn load_subscriptions(&self) -> Result<()> {
        let map = self.read_subscriptions().await?;
        *self.push.subs.write() = map;
        self.push.version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Re-read subscriptions (another node may have changed them); announce only a change.
    pub(crate) async fn reload_subscriptions(&self) -> Result<()> {
        let map = self.read_subscriptions().await?;
        let mut subs = self.push.subs.write();
        if *subs != map {
            *subs = map;
            drop(subs);
            self.push.version.send_modify(|v| *v += 1);
        }
        Ok(())
    }

    async fn read_subscriptions(&self) -> Result<HashMap<String, BTreeMap<String, Subscription>>> {
        let mut map: HashMap<String, BTreeMap<String, Subscription>> = HashMap::new();
        for (key, value) in self.store.meta_list("sub/").await? {
            let rest = &key["sub/".len()..];
            let Some((queue, name)) = rest.rsplit_once('/') else {
                continue;
            };
            match serde_json::from_str::<Subscription>(&value)
                .map_err(|e| e.to_string())
                .and_then(|s| s.validate().map(|_| s).map_err(|e| e.to_string()))
            {
                Ok(s) => {
                    map.entry(queue.to_string())
                        .or_default()
                        .insert(name.to_string(), s);
                }
                Err(e) => tracing::error!(key, error = %e, "ignoring an unreadable subscription"),
            }
        }
        Ok(map)
    }

    pub fn is_push(&self, queue: &str) -> bool {
        self.push
            .subs
            .read()
            .get(queue)
            .is_some_and(|m| !m.is_empty())
    }

    /// Changes whenever a subscription is created, changed or deleted.
    pub fn subscriptions_changed(&self) -> watch::Receiver<u64> {
        self.push.version.subscribe()
    }

    /// Every subscription of every queue.
    pub fn all_subscriptions(&self) -> Vec<SubscriptionRef> {
        let subs = self.push.subs.read();
        let mut v = Vec::new();
        for (q, m) in subs.iter() {
            for (n, s) in m {
                v.push(SubscriptionRef {
                    queue: q.clone(),
                    name: n.clone(),
                    child: child_queue(q, n),
                    config: Arc::new(s.clone()),
                });
            }
        }
        v.sort_by(|a, b| (&a.queue, &a.name).cmp(&(&b.queue, &b.name)));
        v
    }

    /// Create or replace a subscription; the queue is created if missing. Returns the stored
    /// subscription and whether it was created.
    pub async fn put_subscription(
        &self,
        queue: &str,
        name: &str,
        mut sub: Subscription,
    ) -> Result<(Subscription, bool)> {
        validate_queue_name(queue)?;
        validate_subscription_name(name)?;
        sub.validate()?;
        let now = self.now();
        let existing = self.subscription(queue, name).ok();
        if existing.is_none()
            && self.push.subs.read().get(queue).map_or(0, |m| m.len())
                >= pl::SUBSCRIPTIONS_PER_QUEUE
        {
            return Err(EngineError::invalid(
                "subscription",
                format!(
                    "queue {queue:?} already has {} subscriptions, the limit",
                    pl::SUBSCRIPTIONS_PER_QUEUE
                ),
            ));
        }
        sub.created_at = existing.as_ref().map_or(now, |e| e.created_at);
        sub.updated_at = now;
        let parent = match self.store.get_queue(queue).await? {
            Some(q) => q,
            None => {
                self.store
                    .ensure_queue(queue, QueueConfig::default(), now)
                    .await?
                    .0
            }
        };
        let child = child_queue(queue, name);
        let child_config = QueueConfig {
            retention_seconds: parent.config.retention_seconds,
            max_message_bytes: limits::MESSAGE_BYTES_CEILING,
            content_based_deduplication: parent.config.content_based_deduplication,
            ..QueueConfig::default()
        };
        let (_, fresh) = self.store.ensure_queue(&child, child_config, now).await?;
        if existing.is_none() && !fresh {
            // Copies left by a subscription of the same name that was being deleted.
            self.store.purge_queue(&child, now).await?;
        }
        let json = serde_json::to_string(&sub).expect("subscription serializes");
        self.store
            .meta_put(&meta_key(queue, name), Some(json))
            .await?;
        self.push
            .subs
            .write()
            .entry(queue.to_string())
            .or_default()
            .insert(name.to_string(), sub.clone());
        self.push.version.send_modify(|v| *v += 1);
        Ok((sub, existing.is_none()))
    }

    pub fn subscription(&self, queue: &str, name: &str) -> Result<Subscription> {
        self.push
            .subs
            .read()
            .get(queue)
            .and_then(|m| m.get(name))
            .cloned()
            .ok_or_else(|| EngineError::NotFound {
                what: "subscription",
                id: format!("{queue}/{name}"),
            })
    }

    /// The subscriptions of a queue (404 if the queue does not exist).
    pub async fn subscriptions(&self, queue: &str) -> Result<Vec<(String, Subscription)>> {
        validate_queue_name(queue)?;
        if self.store.get_queue(queue).await?.is_none() {
            return Err(EngineError::QueueNotFound(queue.to_string()));
        }
        Ok(self
            .push
            .subs
            .read()
            .get(queue)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    /// Delete a subscription and the copies of messages it had not delivered yet.
    pub async fn delete_subscription(&self, queue: &str, name: &str) -> Result<()> {
        validate_queue_name(queue)?;
        self.subscription(queue, name)?;
        // The copies first: a crash in between leaves the subscription, not orphan copies.
        self.store.delete_queue(&child_queue(queue, name)).await?;
        self.store.meta_put(&meta_key(queue, name), None).await?;
        {
            let mut subs = self.push.subs.write();
            if let Some(m) = subs.get_mut(queue) {
                m.remove(name);
                if m.is_empty() {
                    subs.remove(queue);
                }
            }
        }
        self.push.version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Delete a subscription but keep what it had not delivered: when it is the queue's last
    /// subscription, its copies return to the queue itself (for pulling); otherwise they are
    /// dropped like with [`Engine::delete_subscription`].
    pub async fn delete_subscription_keep(&self, queue: &str, name: &str) -> Result<()> {
        let last = self
            .push
            .subs
            .read()
            .get(queue)
            .is_some_and(|m| m.len() == 1);
        if last {
            let child = child_queue(queue, name);
            let now = self.now();
            let pending = self.store.peek(&child, usize::MAX, now).await?;
            for chunk in pending.chunks(limits::PUBLISH_BATCH_MAX) {
                let batch = chunk
                    .iter()
                    .map(|m| NewMessage {
                        id: m.id,
                        body: m.body.clone(),
                        attributes: m.attributes.clone(),
                        enqueued_at: m.enqueued_at,
                        delay_ms: Some(0),
                        group: m.group.clone(),
                        dedup_id: None,
                    })
                    .collect();
                self.store.publish(queue, batch, now).await?;
            }
        }
        self.delete_subscription(queue, name).await
    }

    /// A deleted queue takes its subscriptions with it.
    pub(crate) async fn drop_subscriptions(&self, queue: &str) -> Result<()> {
        let names: Vec<String> = self
            .push
            .subs
            .read()
            .get(queue)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for n in names {
            self.store.meta_put(&meta_key(queue, &n), None).await?;
            self.store.delete_queue(&child_queue(queue, &n)).await?;
        }
        if self.push.subs.write().remove(queue).is_some() {
            self.push.version.send_modify(|v| *v += 1);
        }
        Ok(())
    }

    /// Store a validated batch once per subscription (same ids), all in the same group commit.
    pub(crate) async fn fan_out(
        &self,
        queue: &str,
        batch: Vec<NewMessage>,
    ) -> Result<Vec<crate::model::MessageId>> {
        let children: Vec<String> = self
            .push
            .subs
            .read()
            .get(queue)
            .map(|m| m.keys().map(|n| child_queue(queue, n)).collect())
            .unwrap_or_default();
        let now = self.now();
        if let Some(q) = self.store.get_queue(queue).await? {
            let limit = q.config.max_message_bytes as usize;
            for m in &batch {
                let size = crate::model::message_size(&m.body, &m.attributes);
                if size > limit {
                    return Err(EngineError::MessageTooLarge { size, limit });
                }
            }
        }
        let n = batch.len();
        let results = futures::future::join_all(
            children
                .iter()
                .map(|c| self.store.publish(c, batch.clone(), now)),
        )
        .await;
        let mut ids = None;
        for r in results {
            let r = r?;
            ids.get_or_insert(r);
        }
        for c in &children {
            self.wake(c, n);
        }
        Ok(ids.unwrap_or_default())
    }

    /// Messages that reached a push queue's own list (published before its first subscription,
    /// or redriven there by the store) are fanned out to the subscriptions. Returns how many.
    pub async fn drain_push_queue(&self, queue: &str) -> Result<usize> {
        if !self.is_push(queue) {
            return Ok(0);
        }
        let mut moved = 0;
        loop {
            let got = self
                .store
                .receive(queue, limits::RECEIVE_BATCH_MAX, 60_000, self.now())
                .await?;
            if got.is_empty() {
                return Ok(moved);
            }
            let receipts: Vec<_> = got.iter().map(|d| d.receipt).collect();
            let batch = got
                .into_iter()
                .map(|d| NewMessage {
                    id: d.message.id,
                    body: d.message.body,
                    attributes: d.message.attributes,
                    enqueued_at: d.message.enqueued_at,
                    delay_ms: Some(0),
                    group: d.message.group,
                    dedup_id: None,
                })
                .collect::<Vec<_>>();
            moved += batch.len();
            self.fan_out(queue, batch).await?;
            self.store.ack(queue, &receipts, self.now()).await?;
        }
    }

    /// Lease up to `max` messages of a subscription's queue, waiting up to `wait_ms`.
    pub async fn push_receive(
        &self,
        child: &str,
        max: usize,
        lease_ms: u64,
        wait_ms: u64,
    ) -> Result<Vec<Delivery>> {
        self.wait_receive(child, max.min(limits::RECEIVE_BATCH_MAX), lease_ms, wait_ms)
            .await
    }

    /// Renew the leases of deliveries about to be sent after a wait (the throttle). Returns the
    /// ones still held; a lease that already ran out is gone (the message is back in line).
    pub async fn push_renew(
        &self,
        child: &str,
        deliveries: Vec<Delivery>,
        lease_ms: u64,
    ) -> Result<Vec<Delivery>> {
        let mut kept = Vec::with_capacity(deliveries.len());
        for mut d in deliveries {
            match self
                .store
                .change_visibility(child, d.receipt, lease_ms, self.now())
                .await
            {
                Ok(until) => {
                    d.lease_until = until;
                    kept.push(d);
                }
                Err(EngineError::StaleReceipt | EngineError::MessageGone) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(kept)
    }

    /// Delivered: remove the copies.
    pub async fn push_done(&self, child: &str, deliveries: &[Delivery]) -> Result<()> {
        let rs: Vec<_> = deliveries.iter().map(|d| d.receipt).collect();
        self.store.ack(child, &rs, self.now()).await?;
        if crate::model::is_fifo(child) {
            // Settling unlocks the message group: its next message may go now.
            self.wake(child, rs.len());
        }
        Ok(())
    }

    /// Try again after `delay_ms` (messages of a batch keep their order).
    pub async fn push_retry(
        &self,
        child: &str,
        deliveries: &[Delivery],
        delay_ms: u64,
    ) -> Result<()> {
        let rs: Vec<_> = deliveries.iter().map(|d| d.receipt).collect();
        self.store
            .nack(child, &rs, delay_ms, Placement::Back, self.now())
            .await?;
        // Wake a waiting worker so it re-plans its sleep around the new due time (or takes
        // the message now).
        self.wake(child, rs.len().max(1));
        Ok(())
    }

    /// Give up on a delivery: store it in the queue's dead-letter queue (its configured one, or
    /// `QUEUE-dlq`, created on demand) with the attempt history as attributes, then remove the
    /// subscription's copy. Returns the dead-letter queue's name.
    pub async fn push_dead_letter(
        &self,
        queue: &str,
        sub: &str,
        child: &str,
        deliveries: &[Delivery],
        attempts: u32,
        error: &str,
    ) -> Result<String> {
        let now = self.now();
        let dlq = match self.store.get_queue(queue).await? {
            Some(q) => q.config.dead_letter_queue,
            None => None,
        }
        .unwrap_or_else(|| default_dlq(queue));
        // A DLQ made here takes any message the push queue took, plus the added attributes.
        self.store
            .ensure_queue(
                &dlq,
                QueueConfig {
                    max_message_bytes: limits::MESSAGE_BYTES_CEILING,
                    ..QueueConfig::default()
                },
                now,
            )
            .await?;
        let histories: Vec<String> = {
            let log = self.push.log.lock();
            deliveries
                .iter()
                .map(|d| history_summary(&log.get(d.message.id), sub))
                .collect()
        };
        let batch: Vec<NewMessage> = deliveries
            .iter()
            .zip(histories)
            .map(|(d, history)| {
                let m = &d.message;
                let mut attributes = m.attributes.clone();
                attributes.insert(ATTR_SOURCE.into(), queue.to_string());
                attributes.insert(ATTR_SUBSCRIPTION.into(), sub.to_string());
                attributes.insert(ATTR_ATTEMPTS.into(), attempts.to_string());
                attributes.insert(ATTR_ERROR.into(), error.chars().take(500).collect());
                attributes.insert(ATTR_HISTORY.into(), history);
                attributes.insert(ATTR_MESSAGE_ID.into(), m.id.to_string());
                NewMessage {
                    id: MessageId::new_v7(),
                    body: m.body.clone(),
                    attributes,
                    // Retention of the dead letter counts from now.
                    enqueued_at: now,
                    delay_ms: Some(0),
                    group: m.group.clone(),
                    dedup_id: None,
                }
            })
            .collect();
        self.store.publish(&dlq, batch, now).await?;
        self.wake(&dlq, deliveries.len());
        self.push_done(child, deliveries).await?;
        Ok(dlq)
    }

    /// Push dead letters go back to the subscription they failed on (or, if it is gone, to
    /// their source queue). `queue` is a dead-letter queue or a push queue.
    pub(crate) async fn redrive_push(
        &self,
        queue: &str,
        max: usize,
        only: Option<&std::collections::HashSet<MessageId>>,
    ) -> Result<u64> {
        let is_push_dlq = self
            .all_subscriptions()
            .iter()
            .any(|s| default_dlq(&s.queue) == queue)
            || self.queue_infos().await?.iter().any(|q| {
                q.config.dead_letter_queue.as_deref() == Some(queue) && self.is_push(&q.name)
            });
        if !self.is_push(queue) && !is_push_dlq {
            // Only push dead letters are handled here; other queues' redrive is the store's.
            return Ok(0);
        }
        let (dlq, only_source) = if self.is_push(queue) {
            let dlq = self
                .store
                .get_queue(queue)
                .await?
                .and_then(|q| q.config.dead_letter_queue)
                .unwrap_or_else(|| default_dlq(queue));
            (dlq, Some(queue.to_string()))
        } else {
            (queue.to_string(), None)
        };
        if self.store.get_queue(&dlq).await?.is_none() {
            return Ok(0);
        }
        let mut moved = 0u64;
        let mut skipped = Vec::new();
        while (moved as usize) < max {
            let got = self
                .store
                .receive(&dlq, limits::RECEIVE_BATCH_MAX, 300_000, self.now())
                .await?;
            if got.is_empty() {
                break;
            }
            for d in got {
                let source = d.message.attributes.get(ATTR_SOURCE).cloned();
                let sub = d.message.attributes.get(ATTR_SUBSCRIPTION).cloned();
                let target = match (&source, &sub) {
                    (Some(src), Some(sub))
                        if only_source.as_ref().is_none_or(|o| o == src)
                            && only.is_none_or(|o| o.contains(&d.message.id))
                            && (moved as usize) < max
                            && self.subscription(src, sub).is_ok() =>
                    {
                        child_queue(src, sub)
                    }
                    // Not a push dead letter, not ours, or its subscription is gone (sending it
                    // to the others would deliver twice where it already succeeded): stays.
                    _ => {
                        skipped.push(d.receipt);
                        continue;
                    }
                };
                let mut m = d.message;
                let id = m
                    .attributes
                    .get(ATTR_MESSAGE_ID)
                    .and_then(|s| MessageId::parse(s))
                    .unwrap_or(m.id);
                // Drop the dead-letter annotations; keep the message's own attributes.
                m.attributes.retain(|k, _| {
                    ![
                        ATTR_SOURCE,
                        ATTR_SUBSCRIPTION,
                        ATTR_ATTEMPTS,
                        ATTR_ERROR,
                        ATTR_HISTORY,
                        ATTR_MESSAGE_ID,
                    ]
                    .contains(&k.as_str())
                });
                let nm = NewMessage {
                    id,
                    body: m.body,
                    attributes: m.attributes,
                    enqueued_at: self.now(),
                    delay_ms: Some(0),
                    group: m.group,
                    dedup_id: None,
                };
                self.store.publish(&target, vec![nm], self.now()).await?;
                self.wake(&target, 1);
                self.store.ack(&dlq, &[d.receipt], self.now()).await?;
                moved += 1;
            }
        }
        if !skipped.is_empty() {
            for chunk in skipped.chunks(limits::ACK_BATCH_MAX) {
                self.store
                    .nack(&dlq, chunk, 0, Placement::Back, self.now())
                    .await?;
            }
        }
        Ok(moved)
    }

    /// Stats of a subscription's internal queue (its backlog).
    pub async fn child_stats(&self, child: &str) -> Result<crate::model::QueueStats> {
        self.store.stats(child, self.now()).await
    }

    pub fn record_attempt(&self, id: MessageId, a: Attempt) {
        if self.is_shared() {
            // Every node shows every node's attempts: the log lives in the shared store too.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let store = self.store.clone();
                let entry = serde_json::to_string(&a).expect("attempt serializes");
                let at = a.at;
                rt.spawn(async move {
                    if let Err(e) = store.attempts_put(id, at, entry).await {
                        tracing::warn!(error = %e, "could not store a push attempt");
                    }
                });
            }
        }
        self.push.log.lock().record(id, a);
    }

    /// The attempts log of a message as this node saw it (empty if none are kept).
    pub fn attempts(&self, id: MessageId) -> Vec<Attempt> {
        self.push.log.lock().get(id)
    }

    /// The attempts log of a message, every node's on a shared store.
    pub async fn attempts_everywhere(&self, id: MessageId) -> Result<Vec<Attempt>> {
        if !self.is_shared() {
            return Ok(self.attempts(id));
        }
        let got = self.store.attempts_get(&[id]).await?;
        Ok(parse_attempts(got.into_iter().next().unwrap_or_default()))
    }

    /// A subscription's recent deliveries, newest first: see [`AttemptLog::recent`].
    pub async fn recent_attempts(
        &self,
        queue: &str,
        sub: &str,
        limit: usize,
        failing: bool,
    ) -> Result<Vec<(MessageId, Vec<Attempt>)>> {
        self.subscription(queue, sub)?;
        range("limit", limit as u64, 1, limits::PEEK_MAX as u64)?;
        if !self.is_shared() {
            return Ok(self.push.log.lock().recent(queue, sub, limit, failing));
        }
        // Newest messages first, a page at a time, until `limit` match.
        let ids = self.store.attempts_recent(pl::LOG_MESSAGES).await?;
        let mut log = AttemptLog::default();
        let mut out = Vec::new();
        for page in ids.chunks(200) {
            let lists = self.store.attempts_get(page).await?;
            for (id, entries) in page.iter().zip(lists).rev() {
                for a in parse_attempts(entries) {
                    log.record(*id, a);
                }
            }
            out = log.recent(queue, sub, limit, failing);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

fn parse_attempts(entries: Vec<String>) -> Vec<Attempt> {
    entries
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect()
}

/// The dead-letter queue of a push queue that names none.
pub fn default_dlq(queue: &str) -> String {
    match queue.strip_suffix(".fifo") {
        Some(stem) => format!("{stem}-dlq.fifo"),
        None => format!("{queue}-dlq"),
    }
}
