//! The senders' calls over a delivery's life: lease copies (with a long poll), renew a lease
//! that waited for the endpoint's pace, and settle what each request's answer decided (the
//! requests a sender got answers to meanwhile, together: `settle_many`):
//! delivered (remove the copy), retry and throttled (release it until the next try; a FIFO
//! copy keeps its lease instead, so its group stays locked and nothing passes it), failed
//! (dead-letter it with its attempt history). Each settlement is counted by the store
//! (`delivered`, `retried`, `throttled`, `failed` in the copy queue's stats), in the same
//! durable step, so the counts survive restarts exactly.

use futures::future::join_all;

use crate::error::{EngineError, Result};
use crate::history::{self, Attempt, Outcome};
use crate::limits;
use crate::model::{is_fifo, Delivery, MessageId, NewMessage, Placement, QueueConfig};
use crate::store::Settle;

use super::{default_dlq, delivered_queue, Decision, Push, SubscriptionRef, ATTR_TALLY};
use super::{
    ATTR_ATTEMPTS, ATTR_ERROR, ATTR_HISTORY, ATTR_MESSAGE_ID, ATTR_SOURCE, ATTR_SUBSCRIPTION,
};

/// How long a push queue keeps attempts and delivered messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Kept {
    history_ms: i64,
    delivered_s: u32,
}

/// What became of a settled request, for the sender's log and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub outcome: Outcome,
    /// Where a failed delivery went.
    pub dead_letter_queue: Option<String>,
}

/// One answered request of a subscription (one message, or a batch), to settle: what its
/// answer decided, and the attempt to record.
pub struct Answered<'a> {
    pub got: &'a [Delivery],
    pub decision: &'a Decision,
    pub attempt: &'a Attempt,
}

/// A lease may last at most this long (the store's visibility limit).
const LEASE_MAX_MS: u64 = limits::VISIBILITY_TIMEOUT_MAX_S as u64 * 1000;

impl Push {
    /// Lease up to `max` copies of a subscription's queue, waiting up to `wait_ms`.
    pub async fn lease(
        &self,
        child: &str,
        max: usize,
        lease_ms: u64,
        wait_ms: u64,
    ) -> Result<Vec<Delivery>> {
        self.core
            .wait_receive(child, max.min(limits::RECEIVE_BATCH_MAX), lease_ms, wait_ms)
            .await
    }

    /// Renew the leases of deliveries about to be sent after a wait (the endpoint's pace).
    /// Returns the ones still held; a lease that already ran out is gone (the message is back
    /// in line).
    pub async fn renew(
        &self,
        child: &str,
        deliveries: Vec<Delivery>,
        lease_ms: u64,
    ) -> Result<Vec<Delivery>> {
        let mut kept = Vec::with_capacity(deliveries.len());
        for mut d in deliveries {
            match self
                .core
                .store
                .change_visibility(child, d.receipt, lease_ms, self.core.now())
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

    /// Whether the copy queue `child` is held now (its subscription paused or disabled, or its
    /// queue paused; gone counts as held): a copy leased before the hold must wait until it
    /// ends. The store's mark, so every node sharing it agrees (`hold.rs`).
    pub async fn held(&self, child: &str) -> Result<bool> {
        Ok(self
            .core
            .store
            .get_queue(child)
            .await?
            .is_none_or(|q| q.config.paused_at.is_some()))
    }

    /// Release leased copies now, unsent (their lane stopped), to the front of the copy queue
    /// in their order: the next lease takes them first. (Their receive still counts.)
    pub async fn give_back(&self, child: &str, deliveries: &[Delivery]) -> Result<()> {
        // Each receipt released to the front goes ahead of the ones before it: newest first.
        let rs: Vec<_> = deliveries.iter().rev().map(|d| d.receipt).collect();
        self.core
            .store
            .nack(child, &rs, 0, Placement::Front, self.core.now())
            .await?;
        self.core.wake(child, rs.len().max(1));
        Ok(())
    }

    /// The number of the attempt about to be made for `got` (one request), and the 429s its
    /// messages got so far, from their recorded attempts (a 429 is not an attempt).
    pub async fn next_attempt(&self, s: &SubscriptionRef, got: &[Delivery]) -> Result<(u32, u32)> {
        let each = self.history.next_attempts(&s.queue, &s.name, got).await?;
        Ok(each
            .into_iter()
            .fold((1, 0), |(a, t), (a2, t2)| (a.max(a2), t.max(t2))))
    }

    /// Record `attempt` for each message in the delivery history and settle one request (one
    /// message, or a batch) of subscription `s` as `decision` says: both are durable on return
    /// (their syncs run side by side), and the attempt is recorded before its effect (a
    /// counter, a dead letter) is.
    pub async fn settle(
        &self,
        s: &SubscriptionRef,
        got: &[Delivery],
        decision: &Decision,
        attempt: Attempt,
    ) -> Result<Settled> {
        let one = Answered {
            got,
            decision,
            attempt: &attempt,
        };
        let mut settled = self.settle_many(s, std::slice::from_ref(&one)).await?;
        Ok(settled.pop().expect("one request, one outcome"))
    }

    /// Settle many answered requests of subscription `s` at once (a sender settles whatever
    /// was answered while its previous batch was written): every attempt in one history write,
    /// every delivered copy in one store call, beside them a call per retried or throttled
    /// request (each has its own delay); failed ones go to the dead-letter queue once their
    /// attempts are recorded. Durable on return; what became of each request, in order.
    pub async fn settle_many(
        &self,
        s: &SubscriptionRef,
        batch: &[Answered<'_>],
    ) -> Result<Vec<Settled>> {
        let kept = self.kept(&s.queue).await;
        let ids: Vec<Vec<MessageId>> = batch
            .iter()
            .map(|a| a.got.iter().map(|d| d.message.id).collect())
            .collect();
        let each: Vec<(&[MessageId], &Attempt)> = ids
            .iter()
            .zip(batch)
            .map(|(ids, a)| (ids.as_slice(), a.attempt))
            .collect();
        // Polled first, the history's append comes before the settlements'.
        let record = self.history.record_each(&each, kept.history_ms);
        let delivered: Vec<&Delivery> = batch
            .iter()
            .filter(|a| a.decision.outcome == Outcome::Delivered)
            .flat_map(|a| a.got)
            .collect();
        let settle_delivered = async {
            if delivered.is_empty() {
                return Ok(());
            }
            if kept.delivered_s > 0 {
                self.keep_delivered(s, &delivered, kept.delivered_s).await?;
            }
            self.apply(&s.child, &delivered, Settle::Delivered).await
        };
        let released = join_all(batch.iter().filter_map(|a| {
            let delay_ms = a.decision.delay_ms;
            // A FIFO copy keeps its lease until the next try (its group stays locked, so
            // later messages of the group never pass it), while the hold fits a lease.
            let hold = is_fifo(&s.child) && delay_ms > 0 && delay_ms <= LEASE_MAX_MS;
            let how = match a.decision.outcome {
                Outcome::Retry => Settle::Retried { delay_ms, hold },
                Outcome::Throttled => Settle::Throttled { delay_ms, hold },
                Outcome::Delivered | Outcome::Failed => return None,
            };
            let got: Vec<&Delivery> = a.got.iter().collect();
            Some(async move { self.apply(&s.child, &got, how).await })
        }));
        let (r, d, released) = tokio::join!(record, settle_delivered, released);
        r?;
        d?;
        released.into_iter().collect::<Result<Vec<()>>>()?;
        let mut out = Vec::with_capacity(batch.len());
        for a in batch {
            // The dead letter carries the history, this attempt included (recorded above).
            let dead_letter_queue = match a.decision.outcome {
                Outcome::Failed => Some(
                    self.dead_letter(s, a.got, a.attempt.attempt, &a.decision.reason)
                        .await?,
                ),
                _ => None,
            };
            out.push(Settled {
                outcome: a.decision.outcome,
                dead_letter_queue,
            });
        }
        Ok(out)
    }

    /// A queue's settings changed: read what it keeps again at its next delivery.
    pub(crate) fn queue_changed(&self, queue: &str) {
        self.kept.lock().remove(queue);
    }

    /// What a push queue keeps (read from its settings at most every 10 s, or after a change
    /// on this node).
    async fn kept(&self, queue: &str) -> Kept {
        let now = self.core.now();
        if let Some(&(kept, at)) = self.kept.lock().get(queue) {
            if now - at < 10_000 {
                return kept;
            }
        }
        let kept = match self.core.store.get_queue(queue).await {
            Ok(Some(q)) => Kept {
                history_ms: q.config.retention_seconds as i64 * 1000,
                delivered_s: q.config.retain_delivered_seconds,
            },
            _ => Kept {
                history_ms: limits::RETENTION_DEFAULT_S as i64 * 1000,
                delivered_s: 0,
            },
        };
        self.kept.lock().insert(queue.to_string(), (kept, now));
        kept
    }

    /// Keep delivered messages for replay: a copy in `QUEUE~SUB~delivered`, whose retention is
    /// the queue's `retain_delivered_seconds` (its enqueue time is the delivery time).
    async fn keep_delivered(
        &self,
        s: &SubscriptionRef,
        got: &[&Delivery],
        keep_s: u32,
    ) -> Result<()> {
        let store = &self.core.store;
        let now = self.core.now();
        let kept = delivered_queue(&s.queue, &s.name);
        let config = QueueConfig {
            retention_seconds: keep_s,
            max_message_bytes: limits::MESSAGE_BYTES_CEILING,
            ..QueueConfig::default()
        };
        match store.get_queue(&kept).await? {
            Some(q) if q.config == config => {}
            _ => {
                store.put_queue(&kept, config, now).await?;
            }
        }
        let copies: Vec<NewMessage> = got
            .iter()
            .map(|d| NewMessage {
                id: d.message.id,
                body: d.message.body.clone(),
                attributes: d.message.attributes.clone(),
                enqueued_at: now,
                delay_ms: Some(0),
                group: d.message.group.clone(),
                dedup_id: None,
                priority: d.message.priority,
                expires_at: d.message.expires_at,
            })
            .collect();
        store.publish(&kept, &copies, now).await?;
        Ok(())
    }

    /// Settle the copies in the store (counted there) and wake who may take a message now.
    async fn apply(&self, child: &str, deliveries: &[&Delivery], how: Settle) -> Result<()> {
        let rs: Vec<_> = deliveries.iter().map(|d| d.receipt).collect();
        let tallies: Vec<&str> = deliveries
            .iter()
            .map(|d| {
                d.message
                    .attributes
                    .get(ATTR_TALLY)
                    .map_or("", String::as_str)
            })
            .collect();
        self.core
            .store
            .settle(child, &rs, &tallies, how, self.core.now())
            .await?;
        let released = matches!(
            how,
            Settle::Retried { hold: false, .. } | Settle::Throttled { hold: false, .. }
        );
        if released || is_fifo(child) {
            // A released copy (or a FIFO group unlocked): a waiting sender re-plans its sleep
            // around the new due time, or takes the next message now.
            self.core.wake(child, rs.len().max(1));
        }
        Ok(())
    }

    /// Give up on a delivery: store it in the queue's dead-letter queue (its configured one, or
    /// `QUEUE-dlq`, created on demand) with the attempt history as attributes, then remove the
    /// subscription's copy. Returns the dead-letter queue's name.
    async fn dead_letter(
        &self,
        s: &SubscriptionRef,
        deliveries: &[Delivery],
        attempts: u32,
        error: &str,
    ) -> Result<String> {
        let now = self.core.now();
        let store = &self.core.store;
        let dlq = match store.get_queue(&s.queue).await? {
            Some(q) => q.config.dead_letter_queue,
            None => None,
        }
        .unwrap_or_else(|| default_dlq(&s.queue));
        // A DLQ made here takes any message the push queue took, plus the added attributes.
        store
            .ensure_queue(
                &dlq,
                QueueConfig {
                    max_message_bytes: limits::MESSAGE_BYTES_CEILING,
                    ..QueueConfig::default()
                },
                now,
            )
            .await?;
        let histories = self
            .history
            .get_many(&deliveries.iter().map(|d| d.message.id).collect::<Vec<_>>())
            .await?;
        let batch: Vec<NewMessage> = deliveries
            .iter()
            .zip(histories)
            .map(|(d, tried)| {
                let m = &d.message;
                let history = history::summary(&tried, &s.name);
                let mut attributes = m.attributes.clone();
                attributes.insert(ATTR_SOURCE.into(), s.queue.clone());
                attributes.insert(ATTR_SUBSCRIPTION.into(), s.name.clone());
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
                    priority: m.priority,
                    expires_at: None,
                }
            })
            .collect();
        store.publish(&dlq, &batch, now).await?;
        self.core.wake(&dlq, deliveries.len());
        let got: Vec<&Delivery> = deliveries.iter().collect();
        self.apply(&s.child, &got, Settle::Failed).await?;
        Ok(dlq)
    }
}
