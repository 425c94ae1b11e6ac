//! Timers ("call this URL in 10 minutes") and cron schedules, the engine's side: the
//! [`Timers`] service, `engine.timers()`.
//!
//! A timer is a message in the internal queue `~timers`, delayed until it is due; its body is
//! a [`TimerSpec`] (JSON) and its id is the timer id. The engine hands due timers to the
//! server's senders (`Engine::due_timers`, which publishes queue targets itself), with the push
//! retry rules. A finished timer leaves only 17 bytes in the store's archive (id and outcome)
//! and about 33 bytes of memory, so `GET /timers/{id}` still answers for it.
//!
//! Order of a firing: call the URL, then archive the outcome, then remove the message. A crash
//! after the call and before the archive fires the timer again on restart (at-least-once);
//! a crash after the archive only removes the message (the sender sees the archived outcome).
//!
//! Files: `spec.rs` (what a timer is), `schedule.rs` (cron schedules and the scheduler),
//! `catch_up.rs` (what a schedule does with firings found late).

pub mod catch_up;
mod pending;
mod schedule;
mod settle;
mod spec;

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use crate::clock::Millis;
use crate::core::Core;
use crate::error::{EngineError, Result};
use crate::history::{Attempt, History};
use crate::limits;
use crate::model::{Attributes, Delivery, MessageId, NewMessage, Placement, QueueConfig};

pub use self::catch_up::CatchUp;
use self::pending::Pending;
pub use self::schedule::{firing_id, CatchUpReport, Firing, Schedule, SCHEDULES_MAX};
pub use self::settle::Settlement;
pub use self::spec::*;

/// The timers service: `engine.timers()`.
pub struct Timers {
    core: Arc<Core>,
    history: Arc<History>,
    /// Pending timers and when they are (were first) due.
    pending: Mutex<Pending>,
    /// Outcomes of finished timers (the store's archive, loaded at start).
    archive: Mutex<HashMap<MessageId, u8>>,
    delivering: Mutex<HashSet<MessageId>>,
    /// Cancelled timers whose message has not come due yet (not counted as pending).
    cancelled_pending: Mutex<HashSet<MessageId>>,
    schedules: RwLock<BTreeMap<String, Schedule>>,
    schedules_changed: Notify,
}

impl Timers {
    pub(crate) fn new(core: Arc<Core>, history: Arc<History>) -> Timers {
        Timers {
            core,
            history,
            pending: Default::default(),
            archive: Default::default(),
            delivering: Default::default(),
            cancelled_pending: Default::default(),
            schedules: Default::default(),
            schedules_changed: Notify::new(),
        }
    }

    /// Load pending timers, the archive and the schedules (at start; again on a shared store
    /// when another node may have changed them).
    pub async fn load(&self) -> Result<()> {
        let now = self.core.now();
        let store = &self.core.store;
        let config = QueueConfig {
            // Timers may be a year away: retention must not drop them first.
            retention_seconds: limits::DELAY_MAX_S + limits::RETENTION_MAX_S,
            max_message_bytes: limits::MESSAGE_BYTES_CEILING,
            ..QueueConfig::default()
        };
        store.ensure_queue(TIMER_QUEUE, config, now).await?;
        let mut archive: HashMap<MessageId, u8> = store.archive_list().await?.into_iter().collect();
        let stored = store.ids(TIMER_QUEUE).await?;
        // A re-read on a shared store must not drop what this node added meanwhile: a timer
        // created a moment ago, an outcome just recorded. (The store's due time wins: the
        // later of two equal ids is kept.)
        let pending: Pending = {
            let local = self.pending.lock();
            let kept: Vec<(MessageId, Millis)> = local
                .iter()
                .filter(|(id, _)| !archive.contains_key(id))
                .collect();
            drop(local);
            kept.into_iter().chain(stored).collect()
        };
        for (id, code) in self.archive.lock().iter() {
            archive.entry(*id).or_insert(*code);
        }
        *self.archive.lock() = archive;
        *self.pending.lock() = pending;
        self.load_schedules().await
    }

    /// Schedule a timer. With `id` given (schedule firings), creating the same timer again is
    /// a no-op. Returns the timer id.
    pub async fn create(&self, mut spec: TimerSpec, id: Option<MessageId>) -> Result<MessageId> {
        spec.validate()?;
        let now = self.core.now();
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
            if self.pending.lock().contains(id) || self.archive.lock().contains_key(&id) {
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
        self.pending.lock().insert(id, due);
        let published = self
            .core
            .store
            .publish(
                TIMER_QUEUE,
                &[NewMessage {
                    id,
                    body,
                    attributes: Attributes::new(),
                    enqueued_at: now,
                    delay_ms: Some(delay),
                    group: None,
                    dedup_id,
                    priority: crate::limits::PRIORITY_DEFAULT,
                    expires_at: None,
                }],
                now,
            )
            .await;
        if let Err(e) = published {
            self.pending.lock().remove(id);
            return Err(e);
        }
        self.core.wake(TIMER_QUEUE, 1);
        Ok(id)
    }

    /// Where a timer stands (None: unknown). A pending timer that was tried already is
    /// `retrying` (its attempts are in the delivery history).
    pub async fn get(&self, id: MessageId) -> Result<Option<TimerInfo>> {
        let Some(mut t) = self.get_cached(id) else {
            return Ok(None);
        };
        if t.status == TimerStatus::Scheduled && !self.history.get(id).await?.is_empty() {
            t.status = TimerStatus::Retrying;
        }
        Ok(Some(t))
    }

    fn get_cached(&self, id: MessageId) -> Option<TimerInfo> {
        // One lock at a time here (`list` takes `pending`, then `archive`).
        let code = self.archive.lock().get(&id).copied();
        if let Some(code) = code {
            let due_at = self.pending.lock().get(id);
            return Some(TimerInfo {
                id,
                status: TimerStatus::of_code(code),
                due_at,
            });
        }
        let due = self.pending.lock().get(id)?;
        let status = if self.delivering.lock().contains(&id) {
            TimerStatus::Delivering
        } else {
            TimerStatus::Scheduled
        };
        Some(TimerInfo {
            id,
            status,
            due_at: Some(due),
        })
    }

    /// Like [`Timers::get`], but on a shared store up to date with other nodes: a timer
    /// created there, or finished or cancelled there a moment ago.
    pub async fn get_fresh(&self, id: MessageId) -> Result<Option<TimerInfo>> {
        if self.core.shared {
            if self.get_cached(id).is_none() {
                self.load().await?;
            }
            self.outcome_fresh(id).await?;
        }
        self.get(id).await
    }

    /// Cancel a pending timer. A finished one answers Conflict; an unknown one NotFound.
    pub async fn cancel(&self, id: MessageId) -> Result<()> {
        match self.get_fresh(id).await? {
            None => Err(EngineError::NotFound {
                what: "timer",
                id: id.to_string(),
            }),
            Some(t) if t.status == TimerStatus::Delivering => Err(EngineError::Conflict(format!(
                "timer {id} is being delivered right now; it cannot be cancelled"
            ))),
            Some(t) if t.status.is_finished() => Err(EngineError::Conflict(format!(
                "timer {id} already finished ({})",
                t.status.label()
            ))),
            Some(_) => {
                self.core.store.archive_put(&[(id, CANCELLED)]).await?;
                self.archive.lock().insert(id, CANCELLED);
                self.cancelled_pending.lock().insert(id);
                Ok(())
            }
        }
    }

    /// The archived outcome of a timer (cancelled, or finished before a crash), asking the
    /// store too on a shared store: another node may have cancelled it a moment ago.
    pub(crate) async fn outcome_fresh(&self, id: MessageId) -> Result<Option<u8>> {
        if let Some(code) = self.archive.lock().get(&id).copied() {
            return Ok(Some(code));
        }
        if !self.core.shared {
            return Ok(None);
        }
        let code = self.core.store.archive_get(id).await?;
        if let Some(code) = code {
            self.archive.lock().insert(id, code);
        }
        Ok(code)
    }

    /// A sender is calling this timer now (its status reads `delivering`).
    pub fn set_delivering(&self, id: MessageId, on: bool) {
        let mut d = self.delivering.lock();
        if on {
            d.insert(id);
        } else {
            d.remove(&id);
        }
    }

    /// The number of a due timer's next call and its 429s so far, from its recorded attempts
    /// (a 429 is not an attempt).
    pub(crate) async fn next_attempt(&self, d: &Delivery) -> Result<(u32, u32)> {
        let each = self
            .history
            .next_attempts("", "timer", std::slice::from_ref(d))
            .await?;
        Ok(each.first().copied().unwrap_or((1, 0)))
    }

    /// Renew the lease of a due timer that waited for a call slot. None: the lease had ended
    /// (the timer is back in line, or fired elsewhere).
    pub async fn renew(&self, d: &Delivery, lease_ms: u64) -> Result<Option<Millis>> {
        match self
            .core
            .store
            .change_visibility(TIMER_QUEUE, d.receipt, lease_ms, self.core.now())
            .await
        {
            Ok(until) => Ok(Some(until)),
            Err(EngineError::StaleReceipt | EngineError::MessageGone) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Release due timers unsent (the server is stopping): they fire after the restart, or on
    /// another node, without waiting for their leases to end.
    pub async fn give_back(&self, due: &[Delivery]) -> Result<()> {
        let rs: Vec<_> = due.iter().map(|d| d.receipt).collect();
        for chunk in rs.chunks(limits::ACK_BATCH_MAX) {
            self.core
                .store
                .nack(TIMER_QUEUE, chunk, 0, Placement::Back, self.core.now())
                .await?;
        }
        Ok(())
    }

    /// Timers to list: with `finished` None, the pending ones, due soonest first; otherwise the
    /// finished ones with that status, newest first (ids are time-ordered). At most `limit`.
    pub async fn list(
        &self,
        finished: Option<TimerStatus>,
        limit: usize,
    ) -> Result<Vec<TimerInfo>> {
        let ids: Vec<MessageId> = match finished {
            None => {
                // The `limit` soonest in one pass, not a sorted copy of millions. Locks in
                // their usual order: `pending` before `archive`.
                let pending = self.pending.lock();
                let archive = self.archive.lock();
                let mut soonest: BinaryHeap<(Millis, MessageId)> = BinaryHeap::new();
                for (id, due) in pending.iter() {
                    if archive.contains_key(&id) {
                        continue;
                    }
                    if soonest.len() < limit {
                        soonest.push((due, id));
                    } else if soonest.peek().is_some_and(|top| (due, id) < *top) {
                        soonest.pop();
                        soonest.push((due, id));
                    }
                }
                let due = soonest.into_sorted_vec();
                due.into_iter().take(limit).map(|(_, id)| id).collect()
            }
            Some(status) => {
                let code = match status {
                    TimerStatus::Succeeded => SUCCEEDED,
                    TimerStatus::Cancelled => CANCELLED,
                    TimerStatus::Failed => FAILED,
                    _ => return Ok(Vec::new()),
                };
                let mut ids: Vec<MessageId> = self
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
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(t) = self.get(id).await? {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// (pending, finished) timer counts.
    pub fn counts(&self) -> (usize, usize) {
        let pending = self.pending.lock().len();
        let cancelled = self.cancelled_pending.lock().len();
        (pending.saturating_sub(cancelled), self.archive.lock().len())
    }

    /// The attempts of a timer.
    pub async fn attempts(&self, id: MessageId) -> Result<Vec<Attempt>> {
        self.history.get(id).await
    }
}
