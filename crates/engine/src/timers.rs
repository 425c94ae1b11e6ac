//! Timers ("call this URL in 10 minutes") and cron schedules, the engine's side.
//!
//! A timer is a message in the internal queue `~timers`, delayed until it is due; its body is
//! a [`TimerSpec`] (JSON) and its id is the timer id. The server's timer worker receives due
//! timers like any push subscription and makes the call (or publishes to a queue), with the
//! push retry rules. A finished timer leaves only 17 bytes in the store's archive (id and
//! outcome) and about 33 bytes of memory, so `GET /timers/{id}` still answers for it.
//!
//! Order of a firing: call the URL, then archive the outcome, then remove the message. A crash
//! after the call and before the archive fires the timer again on restart (at-least-once);
//! a crash after the archive only removes the message (the worker sees the archived outcome).
//!
//! A cron schedule keeps its definition and the scheduled time of its last firing in the
//! store's settings. Each firing becomes a timer whose id is derived from (schedule, time), so
//! a crash between creating the firing and recording it cannot fire it twice. Missed firings
//! (the server was down) are not replayed one by one: the latest missed one fires once, right
//! after start, and the others are counted as `missed`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::clock::Millis;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::model::{limits, validate_queue_name, Attributes, MessageId, NewMessage, QueueConfig};
use crate::push::{validate_headers, validate_method, validate_url};

/// The internal queue of pending timers.
pub const TIMER_QUEUE: &str = "~timers";
/// Timer bodies (and schedule bodies) are at most this long.
pub const TIMER_BODY_MAX: usize = 256 * 1024;
pub const SCHEDULES_MAX: usize = 10_000;

/// Archive codes.
pub const SUCCEEDED: u8 = 1;
pub const FAILED: u8 = 2;
pub const CANCELLED: u8 = 3;

fn default_method() -> String {
    "POST".into()
}

/// What a timer does when it is due: an HTTP call, or a publish to a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body (or message body for a queue target), UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: Attributes,
    /// httpqueue's rule: call `{url}/{id}`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append_id: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The schedule this firing belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default)]
    pub due_at: Millis,
    #[serde(default)]
    pub created_at: Millis,
}

impl TimerSpec {
    pub fn http(url: impl Into<String>) -> Self {
        TimerSpec {
            url: Some(url.into()),
            method: default_method(),
            headers: BTreeMap::new(),
            body: None,
            queue: None,
            attributes: Attributes::new(),
            append_id: false,
            max_attempts: None,
            schedule: None,
            due_at: 0,
            created_at: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        match (&self.url, &self.queue) {
            (Some(u), None) => {
                validate_url("url", u)?;
                validate_method("method", &self.method)?;
                validate_headers("headers", &self.headers)?;
            }
            (None, Some(q)) => validate_queue_name(q)?,
            _ => {
                return Err(EngineError::invalid(
                    "url",
                    "give exactly one target: \"url\" (an HTTP call) or \"queue\" (a publish)",
                ))
            }
        }
        if self.body.as_ref().map_or(0, |b| b.len()) > TIMER_BODY_MAX {
            return Err(EngineError::invalid(
                "body",
                format!("is longer than {TIMER_BODY_MAX} bytes"),
            ));
        }
        if let Some(m) = self.max_attempts {
            crate::model::range("max_attempts", m as u64, 1, 100)?;
        }
        Ok(())
    }
}

/// Where a timer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerStatus {
    Scheduled,
    Delivering,
    Retrying,
    Succeeded,
    Failed,
    Cancelled,
}

impl TimerStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TimerStatus::Succeeded | TimerStatus::Failed | TimerStatus::Cancelled
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimerInfo {
    pub id: MessageId,
    pub status: TimerStatus,
    /// When it is (was first) due; None for archived timers (only the outcome is kept).
    pub due_at: Option<Millis>,
}

/// A cron schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub cron: String,
    #[serde(default = "utc")]
    pub timezone: String,
    /// The firing: an HTTP call (url...) or a publish (queue, body, attributes).
    pub target: TimerSpec,
    #[serde(default)]
    pub created_at: Millis,
    #[serde(default)]
    pub updated_at: Millis,
    /// The scheduled time of the last firing handled (fired or counted as missed).
    #[serde(default)]
    pub last_fired: Option<Millis>,
    #[serde(default)]
    pub fired: u64,
    #[serde(default)]
    pub missed: u64,
}

fn utc() -> String {
    "UTC".into()
}

impl Schedule {
    pub fn validate(&self) -> Result<()> {
        parse_cron(&self.cron)?;
        parse_tz(&self.timezone)?;
        self.target.validate()
    }

    /// The latest firing at or before `at` (on a whole second).
    pub fn latest_at_or_before(&self, at: Millis) -> Option<Millis> {
        let cron = parse_cron(&self.cron).ok()?;
        let tz = parse_tz(&self.timezone).ok()?;
        let start =
            chrono::DateTime::from_timestamp_millis(at.div_euclid(1000) * 1000)?.with_timezone(&tz);
        cron.find_previous_occurrence(&start, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The first firing strictly after `after` (on a whole second).
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        let cron = parse_cron(&self.cron).ok()?;
        let tz = parse_tz(&self.timezone).ok()?;
        let start = chrono::DateTime::from_timestamp_millis(after.div_euclid(1000) * 1000)?
            .with_timezone(&tz);
        cron.find_next_occurrence(&start, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}

fn parse_cron(s: &str) -> Result<croner::Cron> {
    croner::Cron::from_str(s).map_err(|e| {
        EngineError::invalid(
            "cron",
            format!("{e} (5 fields \"min hour dom month dow\", or 6 with seconds first)"),
        )
    })
}

fn parse_tz(s: &str) -> Result<chrono_tz::Tz> {
    s.parse::<chrono_tz::Tz>().map_err(|_| {
        EngineError::invalid(
            "timezone",
            format!("{s:?} is not an IANA time zone name (e.g. \"UTC\", \"Europe/Berlin\")"),
        )
    })
}

/// The id of one firing of a schedule: the same (schedule, time) always gives the same id.
pub fn firing_id(schedule: &str, at: Millis) -> MessageId {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{schedule}\u{0}{at}").as_bytes());
    let mut b: [u8; 16] = h[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x80; // UUID version 8 (custom)
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    MessageId(u128::from_be_bytes(b))
}

#[derive(Default)]
pub struct TimerState {
    pending: Mutex<HashMap<MessageId, Millis>>,
    archive: Mutex<HashMap<MessageId, u8>>,
    delivering: Mutex<HashSet<MessageId>>,
    /// Cancelled timers whose message has not come due yet (not counted as pending).
    cancelled_pending: Mutex<HashSet<MessageId>>,
    schedules: RwLock<BTreeMap<String, Schedule>>,
    schedules_changed: Notify,
}

fn schedule_key(name: &str) -> String {
    format!("schedule/{name}")
}

impl Engine {
    /// Load pending timers, the archive and the schedules (once, at start).
    pub async fn load_timers(&self) -> Result<()> {
        let now = self.now();
        let config = QueueConfig {
            // Timers may be a year away: retention must not drop them first.
            retention_seconds: limits::DELAY_MAX_S + limits::RETENTION_MAX_S,
            max_message_bytes: limits::MESSAGE_BYTES_CEILING,
            ..QueueConfig::default()
        };
        self.store.ensure_queue(TIMER_QUEUE, config, now).await?;
        let archive: HashMap<MessageId, u8> =
            self.store.archive_list().await?.into_iter().collect();
        let mut pending: HashMap<MessageId, Millis> =
            self.store.ids(TIMER_QUEUE).await?.into_iter().collect();
        // A re-read on a shared store must not drop what this node added meanwhile: a timer
        // created a moment ago, an outcome just recorded.
        {
            let local = self.timers.pending.lock();
            for (id, due) in local.iter() {
                if !archive.contains_key(id) {
                    pending.entry(*id).or_insert(*due);
                }
            }
        }
        let mut archive = archive;
        for (id, code) in self.timers.archive.lock().iter() {
            archive.entry(*id).or_insert(*code);
        }
        *self.timers.archive.lock() = archive;
        *self.timers.pending.lock() = pending;
        self.load_schedules().await
    }

    /// (Re-)read the schedules (at start, and when another node changed one).
    pub(crate) async fn load_schedules(&self) -> Result<()> {
        let mut schedules = BTreeMap::new();
        for (key, value) in self.store.meta_list("schedule/").await? {
            match serde_json::from_str::<Schedule>(&value) {
                Ok(s) => {
                    schedules.insert(key["schedule/".len()..].to_string(), s);
                }
                Err(e) => tracing::error!(key, error = %e, "ignoring an unreadable schedule"),
            }
        }
        *self.timers.schedules.write() = schedules;
        Ok(())
    }

    /// Schedule a timer. With `id` given (schedule firings), creating the same timer again is
    /// a no-op. Returns the timer id.
    pub async fn create_timer(
        &self,
        mut spec: TimerSpec,
        id: Option<MessageId>,
    ) -> Result<MessageId> {
        spec.validate()?;
        let now = self.now();
        let delay = (spec.due_at - now).max(0) as u64;
        if delay > limits::DELAY_MAX_S as u64 * 1000 {
            return Err(EngineError::invalid(
                "delay_seconds",
                format!(
                    "is more than {} seconds (1 year), the limit",
                    limits::DELAY_MAX_S
                ),
            ));
        }
        if let Some(id) = id {
            if self.timers.pending.lock().contains_key(&id)
                || self.timers.archive.lock().contains_key(&id)
            {
                return Ok(id);
            }
        }
        // An id given (a schedule's firing) is also the deduplication id: two nodes firing the
        // same moment of a schedule store one timer.
        let dedup_id = id.map(|i| i.to_string());
        let id = id.unwrap_or_else(MessageId::new_v7);
        spec.created_at = now;
        let due = now + delay as i64;
        spec.due_at = due;
        let body = serde_json::to_vec(&spec).expect("timer serializes");
        // Known as pending before it can fire (a timer due now may finish before we return).
        self.timers.pending.lock().insert(id, due);
        let published = self
            .store
            .publish(
                TIMER_QUEUE,
                vec![NewMessage {
                    id,
                    body,
                    attributes: Attributes::new(),
                    enqueued_at: now,
                    delay_ms: Some(delay),
                    group: None,
                    dedup_id,
                }],
                now,
            )
            .await;
        if let Err(e) = published {
            self.timers.pending.lock().remove(&id);
            return Err(e);
        }
        self.wake(TIMER_QUEUE, 1);
        Ok(id)
    }

    pub fn timer(&self, id: MessageId) -> Option<TimerInfo> {
        if let Some(&code) = self.timers.archive.lock().get(&id) {
            let status = match code {
                SUCCEEDED => TimerStatus::Succeeded,
                CANCELLED => TimerStatus::Cancelled,
                _ => TimerStatus::Failed,
            };
            let due_at = self.timers.pending.lock().get(&id).copied();
            return Some(TimerInfo { id, status, due_at });
        }
        let due = *self.timers.pending.lock().get(&id)?;
        let status = if self.timers.delivering.lock().contains(&id) {
            TimerStatus::Delivering
        } else if !self.attempts(id).is_empty() {
            TimerStatus::Retrying
        } else {
            TimerStatus::Scheduled
        };
        Some(TimerInfo {
            id,
            status,
            due_at: Some(due),
        })
    }

    /// Like [`Engine::timer`], but on a shared store up to date with other nodes: a timer
    /// created there, or finished or cancelled there a moment ago.
    pub async fn timer_fresh(&self, id: MessageId) -> Result<Option<TimerInfo>> {
        if !self.is_shared() {
            return Ok(self.timer(id));
        }
        if self.timer(id).is_none() {
            self.load_timers().await?;
        }
        self.timer_outcome_fresh(id).await?;
        Ok(self.timer(id))
    }

    /// Cancel a pending timer. A finished one answers Conflict; an unknown one NotFound.
    pub async fn cancel_timer(&self, id: MessageId) -> Result<()> {
        match self.timer_fresh(id).await? {
            None => Err(EngineError::NotFound {
                what: "timer",
                id: id.to_string(),
            }),
            Some(t) if t.status == TimerStatus::Delivering => Err(EngineError::Conflict(format!(
                "timer {id} is being delivered right now; it cannot be cancelled"
            ))),
            Some(t) if t.status.is_finished() => Err(EngineError::Conflict(format!(
                "timer {id} already finished ({})",
                serde_json::to_value(t.status)
                    .expect("status")
                    .as_str()
                    .unwrap_or_default()
            ))),
            Some(_) => {
                self.store.archive_put(&[(id, CANCELLED)]).await?;
                self.timers.archive.lock().insert(id, CANCELLED);
                self.timers.cancelled_pending.lock().insert(id);
                Ok(())
            }
        }
    }

    /// The timer worker: is this timer already finished (cancelled, or archived before a crash)?
    pub fn timer_outcome(&self, id: MessageId) -> Option<u8> {
        self.timers.archive.lock().get(&id).copied()
    }

    /// Like [`Engine::timer_outcome`], but on a shared store asks the store too: another node
    /// may have cancelled the timer a moment ago.
    pub async fn timer_outcome_fresh(&self, id: MessageId) -> Result<Option<u8>> {
        if let Some(code) = self.timer_outcome(id) {
            return Ok(Some(code));
        }
        if !self.is_shared() {
            return Ok(None);
        }
        let code = self.store.archive_get(id).await?;
        if let Some(code) = code {
            self.timers.archive.lock().insert(id, code);
        }
        Ok(code)
    }

    pub fn timer_delivering(&self, id: MessageId, on: bool) {
        let mut d = self.timers.delivering.lock();
        if on {
            d.insert(id);
        } else {
            d.remove(&id);
        }
    }

    /// Record a timer's outcome, then remove its message.
    pub async fn finish_timer(&self, d: &crate::model::Delivery, code: u8) -> Result<()> {
        let id = d.message.id;
        if self.timer_outcome_fresh(id).await?.is_none() {
            self.store.archive_put(&[(id, code)]).await?;
            self.timers.archive.lock().insert(id, code);
        }
        self.store
            .ack(TIMER_QUEUE, &[d.receipt], self.now())
            .await?;
        self.timers.pending.lock().remove(&id);
        self.timers.delivering.lock().remove(&id);
        self.timers.cancelled_pending.lock().remove(&id);
        Ok(())
    }

    /// Timers to list: with `finished` None, the pending ones, due soonest first; otherwise the
    /// finished ones with that status, newest first (ids are time-ordered). At most `limit`.
    pub fn list_timers(&self, finished: Option<TimerStatus>, limit: usize) -> Vec<TimerInfo> {
        let ids: Vec<MessageId> = match finished {
            None => {
                // One lock at a time: elsewhere `pending` is taken before `archive`.
                let mut due: Vec<(Millis, MessageId)> = self
                    .timers
                    .pending
                    .lock()
                    .iter()
                    .map(|(id, due)| (*due, *id))
                    .collect();
                {
                    let archive = self.timers.archive.lock();
                    due.retain(|(_, id)| !archive.contains_key(id));
                }
                due.sort_unstable();
                due.into_iter().take(limit).map(|(_, id)| id).collect()
            }
            Some(status) => {
                let code = match status {
                    TimerStatus::Succeeded => SUCCEEDED,
                    TimerStatus::Cancelled => CANCELLED,
                    TimerStatus::Failed => FAILED,
                    _ => return Vec::new(),
                };
                let mut ids: Vec<MessageId> = self
                    .timers
                    .archive
                    .lock()
                    .iter()
                    .filter(|(_, c)| **c == code)
                    .map(|(id, _)| *id)
                    .collect();
                ids.sort_unstable_by(|a, b| b.cmp(a));
                ids.truncate(limit);
                ids
            }
        };
        ids.into_iter().filter_map(|id| self.timer(id)).collect()
    }

    /// (pending, finished) timer counts.
    pub fn timer_counts(&self) -> (usize, usize) {
        let pending = self.timers.pending.lock().len();
        let cancelled = self.timers.cancelled_pending.lock().len();
        (
            pending.saturating_sub(cancelled),
            self.timers.archive.lock().len(),
        )
    }

    // ---- schedules ----

    pub async fn put_schedule(&self, name: &str, mut s: Schedule) -> Result<(Schedule, bool)> {
        crate::push::validate_subscription_name(name).map_err(|_| {
            EngineError::invalid(
                "name",
                "must have 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'",
            )
        })?;
        s.validate()?;
        let now = self.now();
        let old = self.timers.schedules.read().get(name).cloned();
        if old.is_none() && self.timers.schedules.read().len() >= SCHEDULES_MAX {
            return Err(EngineError::invalid(
                "name",
                format!("there are already {SCHEDULES_MAX} schedules, the limit"),
            ));
        }
        s.created_at = old.as_ref().map_or(now, |o| o.created_at);
        s.updated_at = now;
        s.fired = old.as_ref().map_or(0, |o| o.fired);
        s.missed = old.as_ref().map_or(0, |o| o.missed);
        // A new or changed schedule starts counting from now.
        s.last_fired = Some(now);
        let json = serde_json::to_string(&s).expect("schedule serializes");
        self.store.meta_put(&schedule_key(name), Some(json)).await?;
        self.timers
            .schedules
            .write()
            .insert(name.to_string(), s.clone());
        self.timers.schedules_changed.notify_one();
        Ok((s, old.is_none()))
    }

    pub fn schedule(&self, name: &str) -> Result<Schedule> {
        self.timers
            .schedules
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::NotFound {
                what: "schedule",
                id: name.to_string(),
            })
    }

    pub fn schedules(&self) -> Vec<(String, Schedule)> {
        self.timers
            .schedules
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub async fn delete_schedule(&self, name: &str) -> Result<()> {
        self.schedule(name)?;
        self.store.meta_put(&schedule_key(name), None).await?;
        self.timers.schedules.write().remove(name);
        self.timers.schedules_changed.notify_one();
        Ok(())
    }

    /// Fire every schedule that is due at `now`. Returns the time of the next firing, if any.
    pub async fn fire_schedules(&self) -> Result<Option<Millis>> {
        let now = self.now();
        let mut next: Option<Millis> = None;
        for (name, s) in self.schedules() {
            let after = s.last_fired.unwrap_or(s.created_at);
            let Some(first) = s.next_after(after) else {
                continue;
            };
            if first > now {
                next = Some(next.map_or(first, |n: Millis| n.min(first)));
                continue;
            }
            // Fire the latest due firing once; count the skipped ones before it (counting
            // stops at 10,000; the firing does not depend on the count).
            let at = s.latest_at_or_before(now).unwrap_or(first).max(first);
            let mut skipped = 0u64;
            let mut x = first;
            while x < at && skipped < 10_000 {
                skipped += 1;
                match s.next_after(x) {
                    Some(n) => x = n,
                    None => break,
                }
            }
            let mut spec = s.target.clone();
            spec.schedule = Some(name.clone());
            spec.due_at = now;
            if let Err(e) = self.create_timer(spec, Some(firing_id(&name, at))).await {
                tracing::warn!(schedule = %name, error = %e, "schedule firing failed; retrying in 1 s");
                let retry = now + 1000;
                next = Some(next.map_or(retry, |n: Millis| n.min(retry)));
                continue;
            }
            if skipped > 0 {
                tracing::warn!(schedule = %name, missed = skipped, "missed firings skipped (server was down or busy); fired the latest once");
            }
            let mut updated = s.clone();
            updated.last_fired = Some(at);
            updated.fired += 1;
            updated.missed += skipped;
            // Only if it was not changed or deleted meanwhile.
            let current = self.timers.schedules.read().get(&name).cloned();
            if current
                .as_ref()
                .is_some_and(|c| c.updated_at == s.updated_at)
            {
                let json = serde_json::to_string(&updated).expect("schedule serializes");
                self.store
                    .meta_put(&schedule_key(&name), Some(json))
                    .await?;
                self.timers
                    .schedules
                    .write()
                    .insert(name.clone(), updated.clone());
            }
            if let Some(n) = updated.next_after(at) {
                next = Some(next.map_or(n, |x: Millis| x.min(n)));
            }
        }
        Ok(next)
    }

    /// Run the scheduler until shutdown.
    pub fn spawn_scheduler(self: &std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut shutdown = engine.shutdown.subscribe();
            loop {
                let next = match engine.fire_schedules().await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduler pass failed");
                        Some(engine.now() + 1000)
                    }
                };
                let until = next.unwrap_or(engine.now() + 3_600_000);
                tokio::select! {
                    _ = engine.clock.sleep_until(until) => {}
                    _ = engine.timers.schedules_changed.notified() => {}
                    _ = shutdown.changed() => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_next_with_seconds_and_timezone() {
        let mut s = Schedule {
            cron: "*/5 * * * *".into(),
            timezone: "UTC".into(),
            target: TimerSpec::http("http://example.com/x"),
            created_at: 0,
            updated_at: 0,
            last_fired: None,
            fired: 0,
            missed: 0,
        };
        s.validate().unwrap();
        assert_eq!(s.next_after(0), Some(5 * 60_000));
        s.cron = "*/2 * * * * *".into();
        assert_eq!(s.next_after(1000), Some(2000));
        s.cron = "0 9 * * *".into();
        s.timezone = "Europe/Berlin".into();
        // 1970-01-01 09:00 in Berlin (UTC+1) is 08:00 UTC.
        assert_eq!(s.next_after(0), Some(8 * 3_600_000));
        s.timezone = "Mars/Olympus".into();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("timezone:"));
        s.timezone = "UTC".into();
        s.cron = "61 * * * *".into();
        assert!(s.validate().unwrap_err().to_string().starts_with("cron:"));
    }

    #[test]
    fn firing_ids_are_stable_and_distinct() {
        assert_eq!(firing_id("a", 1), firing_id("a", 1));
        assert_ne!(firing_id("a", 1), firing_id("a", 2));
        assert_ne!(firing_id("a", 1), firing_id("b", 1));
    }
}
