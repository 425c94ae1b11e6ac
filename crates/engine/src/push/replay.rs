//! Replay, the way webhook users recover from an outage: send a subscription's messages of a
//! time window again, with fresh attempts under their original ids (the same `webhook-id`).
//! Failed ones come from the queue's dead-letter queue (by the time they were dead-lettered);
//! delivered ones from `QUEUE~SUB~delivered`, where they are kept only when the queue's
//! `retain_delivered_seconds` is set (by the time they were delivered). Both hold their
//! messages in that order, so the window is a run of them: a scan takes the ones in the window
//! out (leased), leaves the others where they were, and a task moves them into the
//! subscription's copy queue, reporting its progress.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::clock::{rfc3339_serde, Millis};
use crate::error::{EngineError, Result};
use crate::limits;
use crate::model::{Delivery, Message, MessageId, NewMessage, Placement};

use super::{child_queue, default_dlq, delivered_queue, Push};
use super::{ATTR_MESSAGE_ID, ATTR_SOURCE, ATTR_SUBSCRIPTION, DEAD_LETTER_ATTRS};

/// Which messages a replay sends again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ReplayOutcome {
    /// Dead-lettered in the window (they leave the dead-letter queue).
    Failed,
    /// Delivered in the window (kept with `retain_delivered_seconds`).
    Delivered,
    All,
}

/// A replay and its progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayTask {
    pub id: String,
    pub queue: String,
    pub subscription: String,
    pub outcome: ReplayOutcome,
    #[serde(with = "rfc3339_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub since: Millis,
    #[serde(with = "rfc3339_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub until: Millis,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Messages found in the window.
    pub total: u64,
    /// Messages sent back to the subscription so far.
    pub replayed: u64,
    pub error: Option<String>,
}

/// Replays started since the server started (the last ones).
#[derive(Default)]
pub(super) struct Replays(Mutex<HashMap<String, ReplayTask>>);

/// Replays kept for reading their progress.
const REPLAYS_KEPT: usize = 100;
/// How long a message taken out for a replay stays leased before it goes back.
const REPLAY_LEASE_MS: u64 = 600_000;

enum Scan {
    Take,
    Skip,
    Stop,
}

impl Push {
    /// Send the messages of subscription `name` of `queue` in `[since, until]` again. Answers
    /// at once with the number found; the move runs in the background (see
    /// [`Push::replay_task`]).
    pub async fn replay(
        self: &Arc<Self>,
        queue: &str,
        name: &str,
        since: Millis,
        until: Option<Millis>,
        outcome: ReplayOutcome,
    ) -> Result<ReplayTask> {
        self.get(queue, name)?;
        let until = until.unwrap_or_else(|| self.core.now());
        if until < since {
            return Err(EngineError::invalid("until", "must not be before since"));
        }
        let mut found: Vec<(String, Delivery)> = Vec::new();
        if outcome != ReplayOutcome::Delivered {
            let dlq = self
                .core
                .store
                .get_queue(queue)
                .await?
                .and_then(|q| q.config.dead_letter_queue)
                .unwrap_or_else(|| default_dlq(queue));
            let mine = |m: &Message| {
                m.attributes.get(ATTR_SOURCE).map(String::as_str) == Some(queue)
                    && m.attributes.get(ATTR_SUBSCRIPTION).map(String::as_str) == Some(name)
            };
            for d in self.scan(&dlq, since, until, mine).await? {
                found.push((dlq.clone(), d));
            }
        }
        if outcome != ReplayOutcome::Failed {
            let kept = delivered_queue(queue, name);
            for d in self.scan(&kept, since, until, |_| true).await? {
                found.push((kept.clone(), d));
            }
        }
        let task = ReplayTask {
            id: MessageId::new_v7().to_string(),
            queue: queue.to_string(),
            subscription: name.to_string(),
            outcome,
            since,
            until,
            state: "running".into(),
            total: found.len() as u64,
            replayed: 0,
            error: None,
        };
        self.replays.insert(task.clone());
        let push = self.clone();
        let (id, child) = (task.id.clone(), child_queue(queue, name));
        tokio::spawn(async move {
            let r = push.move_back(&id, &child, found).await;
            push.replays.update(&id, |t| match r {
                Ok(()) => t.state = "done".into(),
                Err(e) => {
                    t.state = "failed".into();
                    t.error = Some(e.to_string());
                }
            });
        });
        Ok(task)
    }

    /// A replay's progress.
    pub fn replay_task(&self, queue: &str, name: &str, id: &str) -> Result<ReplayTask> {
        self.replays
            .0
            .lock()
            .get(id)
            .filter(|t| t.queue == queue && t.subscription == name)
            .cloned()
            .ok_or_else(|| EngineError::NotFound {
                what: "replay",
                id: id.to_string(),
            })
    }

    /// Take the messages of `source` that `mine` accepts and whose time there (dead-lettered or
    /// delivered: their enqueue time) is in `[since, until]` out of it, leased; put the others
    /// back where they were.
    async fn scan(
        &self,
        source: &str,
        since: Millis,
        until: Millis,
        mine: impl Fn(&Message) -> bool,
    ) -> Result<Vec<Delivery>> {
        let store = &self.core.store;
        if store.get_queue(source).await?.is_none() {
            return Ok(Vec::new());
        }
        let (mut taken, mut skipped) = (Vec::new(), Vec::new());
        'scan: loop {
            let got = store
                .receive(
                    source,
                    limits::RECEIVE_BATCH_MAX,
                    REPLAY_LEASE_MS,
                    self.core.now(),
                )
                .await?;
            if got.is_empty() {
                break;
            }
            let mut rest = got.into_iter();
            for d in rest.by_ref() {
                let m = &d.message;
                let what = if m.enqueued_at > until {
                    Scan::Stop
                } else if m.enqueued_at >= since && mine(m) {
                    Scan::Take
                } else {
                    Scan::Skip
                };
                match what {
                    Scan::Take => taken.push(d),
                    Scan::Skip => skipped.push(d.receipt),
                    Scan::Stop => {
                        skipped.push(d.receipt);
                        skipped.extend(rest.map(|d| d.receipt));
                        break 'scan;
                    }
                }
            }
        }
        // Back to the front in reverse, so they keep their order (and retention its meaning).
        skipped.reverse();
        for chunk in skipped.chunks(limits::ACK_BATCH_MAX) {
            store
                .nack(source, chunk, 0, Placement::Front, self.core.now())
                .await?;
        }
        Ok(taken)
    }

    /// Move the found messages into the subscription's copy queue, under their original ids.
    async fn move_back(&self, id: &str, child: &str, found: Vec<(String, Delivery)>) -> Result<()> {
        let store = &self.core.store;
        for chunk in found.chunks(limits::RECEIVE_BATCH_MAX) {
            let now = self.core.now();
            let batch: Vec<NewMessage> = chunk
                .iter()
                .map(|(_, d)| {
                    let mut attributes = d.message.attributes.clone();
                    let original = attributes
                        .get(ATTR_MESSAGE_ID)
                        .and_then(|s| MessageId::parse(s))
                        .unwrap_or(d.message.id);
                    attributes.retain(|k, _| !DEAD_LETTER_ATTRS.contains(&k.as_str()));
                    NewMessage {
                        id: original,
                        body: d.message.body.clone(),
                        attributes,
                        enqueued_at: now,
                        delay_ms: Some(0),
                        group: d.message.group.clone(),
                        dedup_id: None,
                        priority: d.message.priority,
                        expires_at: None,
                    }
                })
                .collect();
            store.publish(child, &batch, now).await?;
            self.core.wake(child, chunk.len());
            let mut by_source: HashMap<&str, Vec<_>> = HashMap::new();
            for (source, d) in chunk {
                by_source.entry(source).or_default().push(d.receipt);
            }
            for (source, receipts) in by_source {
                store.ack(source, &receipts, self.core.now()).await?;
            }
            self.replays
                .update(id, |t| t.replayed += chunk.len() as u64);
        }
        Ok(())
    }
}

impl Replays {
    fn insert(&self, t: ReplayTask) {
        let mut m = self.0.lock();
        if m.len() >= REPLAYS_KEPT {
            // Ids are time-ordered: forget the oldest finished one.
            if let Some(old) = m
                .iter()
                .filter(|(_, t)| t.state != "running")
                .map(|(k, _)| k.clone())
                .min()
            {
                m.remove(&old);
            }
        }
        m.insert(t.id.clone(), t);
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut ReplayTask)) {
        if let Some(t) = self.0.lock().get_mut(id) {
            f(t);
        }
    }
}
