//! The delivery history: one [`Attempt`] per HTTP request a push subscription or a timer made,
//! written through the store (durable, shared by every node on a shared store), kept per
//! message (the first attempt and the latest ones), by the queue's retention and within the
//! store's budget. Push and timers record into it and number their attempts from it (a 429 is
//! not an attempt); the attempts routes and the dashboard read it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::{rfc3339_serde, Millis};
use crate::core::Core;
use crate::error::Result;
use crate::model::{Delivery, MessageId};
use crate::store::HistoryRecord;

/// Bounds of the history (documented in docs/webhooks.md).
pub mod limits {
    /// Attempts kept per message: the first and the latest ones.
    pub const ATTEMPTS_PER_MESSAGE: usize = 20;
    /// Messages remembered per subscription for "recent deliveries" (the dashboard).
    pub const RECENT_PER_KEY: usize = 10_000;
    /// The embedded store's history budget on disk, by default (`--history-max-bytes`).
    pub const BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
    /// Bytes of a response body kept in an attempt.
    pub const RESPONSE_EXCERPT: usize = 1024;
    /// Bytes of the request and the response kept in a successful attempt.
    pub const DELIVERED_EXCERPT: usize = 256;
    /// How long a timer's attempts are kept.
    pub const TIMER_KEEP_MS: i64 = crate::limits::RETENTION_DEFAULT_S as i64 * 1000;
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
    /// 429 answers this message got so far, this one included (they are not attempts).
    #[serde(default)]
    pub throttled: u32,
}

impl Attempt {
    /// The attempt as the history stores it: the bytes `serde_json::to_string` writes for it
    /// (a unit test holds them equal; reading goes through serde), written by hand because
    /// every delivery records one and serde escaped every key (BENCHMARKS.md, "Push: fewer
    /// instructions per delivery"). Only text that can need it is escaped.
    pub fn to_json(&self) -> String {
        use crate::json_out::{moment, number, or_null, text};
        let texts = self.queue.len() + self.subscription.len() + self.request.len();
        let mut out = Vec::with_capacity(256 + texts + self.response.len());
        out.extend_from_slice(b"{\"at\":");
        moment(&mut out, self.at);
        out.extend_from_slice(b",\"queue\":");
        text(&mut out, &self.queue);
        out.extend_from_slice(b",\"subscription\":");
        text(&mut out, &self.subscription);
        out.extend_from_slice(b",\"attempt\":");
        number(&mut out, self.attempt.into());
        out.extend_from_slice(b",\"status\":");
        or_null(&mut out, self.status, |o, s| number(o, s.into()));
        out.extend_from_slice(b",\"error\":");
        or_null(&mut out, self.error.as_deref(), text);
        out.extend_from_slice(b",\"duration_ms\":");
        number(&mut out, self.duration_ms);
        out.extend_from_slice(b",\"request\":");
        text(&mut out, &self.request);
        out.extend_from_slice(b",\"response\":");
        text(&mut out, &self.response);
        out.extend_from_slice(b",\"outcome\":\"");
        out.extend_from_slice(self.outcome.label().as_bytes());
        out.extend_from_slice(b"\",\"next_attempt_at\":");
        or_null(&mut out, self.next_attempt_at, moment);
        out.extend_from_slice(b",\"batch_size\":");
        number(&mut out, self.batch_size.into());
        out.extend_from_slice(b",\"throttled\":");
        number(&mut out, self.throttled.into());
        out.push(b'}');
        String::from_utf8(out).expect("JSON of strings is UTF-8")
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

/// The history's key of a subscription (`QUEUE/SUBSCRIPTION`) or of timers (`timer`).
pub fn key(queue: &str, subscription: &str) -> String {
    if queue.is_empty() {
        subscription.to_string()
    } else {
        format!("{queue}/{subscription}")
    }
}

/// The history service: records attempts through the store (so they survive restarts and every
/// node sees every node's), and answers for them.
pub struct History {
    core: Arc<Core>,
}

impl History {
    pub(crate) fn new(core: Arc<Core>) -> History {
        History { core }
    }

    /// Record the attempt of each request of `each` (its messages: one, or a batch's), kept
    /// `keep_ms`, with one store call: the calls of a batch of timers, or of a subscription's
    /// requests answered together. Durable on return.
    pub async fn record_each(&self, each: &[(&[MessageId], &Attempt)], keep_ms: i64) -> Result<()> {
        let records = each
            .iter()
            .map(|(ids, a)| HistoryRecord {
                key: key(&a.queue, &a.subscription),
                ids: ids.to_vec(),
                attempt: a.to_json(),
                at: a.at,
                expires_at: a.at.saturating_add(keep_ms),
            })
            .collect();
        self.core.store.history_put_many(records).await
    }

    /// The attempts of a message, oldest first.
    pub async fn get(&self, id: MessageId) -> Result<Vec<Attempt>> {
        Ok(self.get_many(&[id]).await?.pop().unwrap_or_default())
    }

    /// The attempts of each of `ids`, oldest first.
    pub async fn get_many(&self, ids: &[MessageId]) -> Result<Vec<Vec<Attempt>>> {
        let got = self.core.store.history_get(ids, self.core.now()).await?;
        Ok(got.into_iter().map(parse).collect())
    }

    /// A subscription's (or the timers') recent deliveries, newest first, each message with its
    /// attempts there; with `failing`, only messages whose latest attempt did not deliver.
    pub async fn recent(
        &self,
        queue: &str,
        sub: &str,
        limit: usize,
        failing: bool,
    ) -> Result<Vec<(MessageId, Vec<Attempt>)>> {
        let now = self.core.now();
        let mut out = Vec::new();
        // Ask for more than `limit` when filtering: most messages deliver.
        let mut want = if failing { limit * 4 } else { limit };
        loop {
            let ids = self
                .core
                .store
                .history_recent(&key(queue, sub), want, now)
                .await?;
            out.clear();
            for page in ids.chunks(200) {
                for (id, all) in page.iter().zip(self.get_many(page).await?) {
                    let mine: Vec<Attempt> = all
                        .into_iter()
                        .filter(|a| a.queue == queue && a.subscription == sub)
                        .collect();
                    match mine.last() {
                        None => continue,
                        Some(last) if failing && last.outcome == Outcome::Delivered => continue,
                        Some(_) => out.push((*id, mine)),
                    }
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if ids.len() < want || want >= limits::RECENT_PER_KEY {
                return Ok(out);
            }
            want = (want * 4).min(limits::RECENT_PER_KEY);
        }
    }

    /// The next attempt's number and the 429s so far of each delivery, from its last recorded
    /// attempt under this subscription (a 429 is not an attempt). A first receive is attempt 1.
    pub(crate) async fn next_attempts(
        &self,
        queue: &str,
        sub: &str,
        got: &[Delivery],
    ) -> Result<Vec<(u32, u32)>> {
        let retried: Vec<MessageId> = got
            .iter()
            .filter(|d| d.message.receive_count > 1)
            .map(|d| d.message.id)
            .collect();
        let mut last = std::collections::HashMap::new();
        if !retried.is_empty() {
            for (id, all) in retried.iter().zip(self.get_many(&retried).await?) {
                if let Some(a) = all
                    .into_iter()
                    .rev()
                    .find(|a| a.queue == queue && a.subscription == sub)
                {
                    last.insert(*id, a);
                }
            }
        }
        Ok(got
            .iter()
            .map(|d| match last.get(&d.message.id) {
                _ if d.message.receive_count <= 1 => (1, 0),
                Some(a) if a.outcome == Outcome::Throttled => (a.attempt, a.throttled),
                Some(a) => (a.attempt + 1, a.throttled),
                // No history left (expired, or a crash before it was written): the receives.
                None => (d.message.receive_count, 0),
            })
            .collect())
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

    fn attempt() -> Attempt {
        Attempt {
            at: 1_796_599_788_896,
            queue: "orders".into(),
            subscription: "billing".into(),
            attempt: 3,
            status: Some(503),
            error: Some("reading the response: timeout".into()),
            duration_ms: 12,
            request: "POST https://example.com/hook\ncontent-type: application/json\n\n{\"a\":1}"
                .into(),
            response: "busy \"now\"\t\u{1}\u{7f} é ☃ \\ / …".into(),
            outcome: Outcome::Retry,
            next_attempt_at: Some(1_796_599_798_908),
            batch_size: 1,
            throttled: 2,
        }
    }

    #[test]
    fn the_stored_attempt_is_what_serde_writes() {
        let full = attempt();
        let mut cases = vec![full.clone()];
        for outcome in [Outcome::Delivered, Outcome::Throttled, Outcome::Failed] {
            cases.push(Attempt {
                outcome,
                ..full.clone()
            });
        }
        cases.push(Attempt {
            status: None,
            error: None,
            next_attempt_at: None,
            queue: String::new(),
            subscription: "timer".into(),
            request: String::new(),
            response: String::new(),
            attempt: u32::MAX,
            duration_ms: u64::MAX,
            batch_size: 0,
            throttled: 0,
            at: 0,
            outcome: Outcome::Delivered,
        });
        cases.push(Attempt {
            status: None,
            error: Some("\u{0}\u{1f}\"\\\r\n".into()),
            at: -1,
            next_attempt_at: Some(253_402_300_799_999),
            ..full
        });
        for a in cases {
            let by_hand = a.to_json();
            assert_eq!(by_hand, serde_json::to_string(&a).unwrap());
            let back: Attempt = serde_json::from_str(&by_hand).unwrap();
            assert_eq!(back.to_json(), by_hand);
        }
    }
}
