//! Time, injected. The engine never calls `SystemTime::now()` itself: it asks a [`Clock`], so
//! tests move time forward with a [`ManualClock`] instead of sleeping, and every rule that
//! depends on time (visibility timeouts, delays, retention, long-poll deadlines) is testable
//! without flaky sleeps.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

#[async_trait]
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
    /// Resolve once `now_ms() >= at`.
    async fn sleep_until(&self, at: Millis);
}

/// The wall clock, with tokio timers for sleeping.
#[derive(Debug, Default, Clone)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        chrono::Utc::now().timestamp_millis()
    }
    async fn sleep_until(&self, at: Millis) {
        loop {
            let now = self.now_ms();
            if now >= at {
                return;
            }
            tokio::time::sleep(Duration::from_millis((at - now) as u64)).await;
        }
    }
}

/// A clock that only moves when told to. Sleepers wake when `advance` passes their deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    now: AtomicI64,
    moved: Notify,
}

impl ManualClock {
    pub fn new(start: Millis) -> Self {
        ManualClock {
            inner: Arc::new(ManualInner {
                now: AtomicI64::new(start),
                moved: Notify::new(),
            }),
        }
    }
    pub fn advance(&self, by: Duration) {
        self.inner
            .now
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        self.inner.moved.notify_waiters();
    }
    pub fn set(&self, at: Millis) {
        self.inner.now.store(at, Ordering::SeqCst);
        self.inner.moved.notify_waiters();
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.inner.now.load(Ordering::SeqCst)
    }
    async fn sleep_until(&self, at: Millis) {
        loop {
            let moved = self.inner.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self.now_ms() >= at {
                return;
            }
            moved.await;
        }
    }
}

/// RFC 3339 with milliseconds, UTC: how every API shows a moment.
pub fn rfc3339(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Read an RFC 3339 moment (any offset) as milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Serde helpers for moments stored and shown as RFC 3339 strings.
pub mod rfc3339_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{parse_rfc3339, rfc3339, Millis};

    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        let s = String::deserialize(d)?;
        parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time"))
    }

    /// The same for an optional moment (null when absent).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_str(&rfc3339(*ms)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(s) => parse_rfc3339(&s)
                    .map(Some)
                    .ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time")),
            }
        }
    }
}
