//! The delivery history: one [`Attempt`] per HTTP request a push subscription or a timer made,
//! kept per message (the first attempt and the latest ones), bounded in messages, bytes and
//! age. Push and timers record into it; the attempts routes and the dashboard read it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::clock::{rfc3339_serde, Millis};
use crate::core::Core;
use crate::error::Result;
use crate::model::MessageId;

/// Bounds of the history (documented in docs/webhooks.md).
pub mod limits {
    /// Attempts kept per message: the first and the latest ones.
    pub const ATTEMPTS_PER_MESSAGE: usize = 50;
    /// Messages kept.
    pub const MESSAGES: usize = 100_000;
    /// Bytes of request and response excerpts and errors kept over all messages.
    pub const BYTES: usize = 64 * 1024 * 1024;
    pub const AGE_MS: i64 = 24 * 3600 * 1000;
    /// Bytes of a response body kept in an attempt.
    pub const RESPONSE_EXCERPT: usize = 1024;
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

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry => "retry",
            Outcome::Throttled => "throttled",
            Outcome::Failed => "failed",
        }
    }
}

/// One HTTP attempt, as the history keeps it (and the API shows it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    /// When the request was sent (RFC 3339).
    #[serde(with = "rfc3339_serde")]
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
    #[serde(with = "rfc3339_serde::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub next_attempt_at: Option<Millis>,
    /// Messages in this request (more than 1 for a batch).
    pub batch_size: u32,
}

/// The attempts of recent messages, bounded in messages, attempts per message and age.
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
        if v.len() >= limits::ATTEMPTS_PER_MESSAGE {
            // Keep the first attempt; drop the oldest of the others.
            let gone = v.remove(1);
            self.bytes -= attempt_bytes(&gone);
        }
        self.bytes += attempt_bytes(&a);
        v.push(a);
        while let Some(&(t, old)) = self.order.front() {
            if self.order.len() > limits::MESSAGES
                || now - t > limits::AGE_MS
                || self.bytes > limits::BYTES
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
pub fn summary(attempts: &[Attempt], sub: &str) -> String {
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

/// The history service: records attempts and answers for them. A shared store (several
/// nodes) keeps a copy, so every node shows every node's attempts.
pub struct History {
    core: Arc<Core>,
    log: Mutex<AttemptLog>,
}

impl History {
    pub(crate) fn new(core: Arc<Core>) -> History {
        History {
            core,
            log: Mutex::new(AttemptLog::default()),
        }
    }

    pub fn record(&self, id: MessageId, a: Attempt) {
        if self.core.shared {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let store = self.core.store.clone();
                let entry = serde_json::to_string(&a).expect("attempt serializes");
                let at = a.at;
                rt.spawn(async move {
                    if let Err(e) = store.attempts_put(id, at, entry).await {
                        tracing::warn!(error = %e, "could not store a push attempt");
                    }
                });
            }
        }
        self.log.lock().record(id, a);
    }

    /// The attempts of a message as this node saw them (empty if none are kept).
    pub fn get(&self, id: MessageId) -> Vec<Attempt> {
        self.log.lock().get(id)
    }

    /// The attempts of a message, every node's on a shared store.
    pub async fn get_everywhere(&self, id: MessageId) -> Result<Vec<Attempt>> {
        if !self.core.shared {
            return Ok(self.get(id));
        }
        let got = self.core.store.attempts_get(&[id]).await?;
        Ok(parse(got.into_iter().next().unwrap_or_default()))
    }

    /// A subscription's recent deliveries, newest first: see [`AttemptLog::recent`].
    pub async fn recent(
        &self,
        queue: &str,
        sub: &str,
        limit: usize,
        failing: bool,
    ) -> Result<Vec<(MessageId, Vec<Attempt>)>> {
        if !self.core.shared {
            return Ok(self.log.lock().recent(queue, sub, limit, failing));
        }
        // Newest messages first, a page at a time, until `limit` match.
        let ids = self.core.store.attempts_recent(limits::MESSAGES).await?;
        let mut log = AttemptLog::default();
        let mut out = Vec::new();
        for page in ids.chunks(200) {
            let lists = self.core.store.attempts_get(page).await?;
            for (id, entries) in page.iter().zip(lists).rev() {
                for a in parse(entries) {
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

fn parse(entries: Vec<String>) -> Vec<Attempt> {
    entries
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_log_is_bounded_per_message() {
        let mut log = AttemptLog::default();
        let id = MessageId(7);
        for i in 0..(limits::ATTEMPTS_PER_MESSAGE as u32 + 10) {
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
        assert_eq!(v.len(), limits::ATTEMPTS_PER_MESSAGE);
        assert_eq!(v[0].attempt, 1);
        assert_eq!(
            v.last().unwrap().attempt,
            limits::ATTEMPTS_PER_MESSAGE as u32 + 10
        );
    }
}
