//! The senders' calls over a delivery's life: lease copies (with a long poll), renew a lease
//! that waited for the endpoint's pace, and settle what one request's answer decided:
//! delivered (remove the copy), retry and throttled (release it until the next try; a FIFO
//! copy keeps its lease instead, so its group stays locked and nothing passes it), failed
//! (dead-letter it with its attempt history).

use crate::error::{EngineError, Result};
use crate::history::{self, Attempt, Outcome};
use crate::limits;
use crate::model::{is_fifo, Delivery, MessageId, NewMessage, Placement, QueueConfig};

use super::{default_dlq, Decision, Push, SubscriptionRef};
use super::{
    ATTR_ATTEMPTS, ATTR_ERROR, ATTR_HISTORY, ATTR_MESSAGE_ID, ATTR_SOURCE, ATTR_SUBSCRIPTION,
};

/// What became of a settled request, for the sender's log and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub outcome: Outcome,
    /// Where a failed delivery went.
    pub dead_letter_queue: Option<String>,
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

    /// Release leased copies now, unsent (their lane stopped).
    pub async fn give_back(&self, child: &str, deliveries: &[Delivery]) -> Result<()> {
        self.release(child, deliveries, 0).await
    }

    /// The number of the attempt about to be made for `got` (one request), and the 429s its
    /// messages got so far, from their recorded attempts (a 429 is not an attempt).
    pub async fn next_attempt(&self, s: &SubscriptionRef, got: &[Delivery]) -> Result<(u32, u32)> {
        let each = self.history.next_attempts(&s.queue, &s.name, got).await?;
        Ok(each
            .into_iter()
            .fold((1, 0), |(a, t), (a2, t2)| (a.max(a2), t.max(t2))))
    }

    /// Settle one request (one message, or a batch) of subscription `s` as `decision` says,
    /// and record `attempt` for each message in the delivery history: both are durable on
    /// return (their syncs run side by side).
    pub async fn settle(
        &self,
        s: &SubscriptionRef,
        got: &[Delivery],
        decision: &Decision,
        attempt: Attempt,
    ) -> Result<Settled> {
        let ids: Vec<MessageId> = got.iter().map(|d| d.message.id).collect();
        let keep = self.keep_ms(&s.child).await;
        let record = self.history.record(&ids, &attempt, keep);
        let mut dead_letter_queue = None;
        match decision.outcome {
            Outcome::Delivered => {
                let (r, d) = tokio::join!(record, self.done(&s.child, got));
                r?;
                d?;
            }
            Outcome::Throttled | Outcome::Retry => {
                let (r, d) = tokio::join!(record, self.retry(s, got, decision.delay_ms));
                r?;
                d?;
            }
            Outcome::Failed => {
                // The dead letter carries the history, this attempt included.
                record.await?;
                dead_letter_queue = Some(
                    self.dead_letter(s, got, attempt.attempt, &decision.reason)
                        .await?,
                );
            }
        }
        Ok(Settled {
            outcome: decision.outcome,
            dead_letter_queue,
        })
    }

    /// How long a copy queue's attempts are kept: its retention (looked up at most every 10 s).
    async fn keep_ms(&self, child: &str) -> i64 {
        let now = self.core.now();
        if let Some(&(keep, at)) = self.retention.lock().get(child) {
            if now - at < 10_000 {
                return keep;
            }
        }
        let keep = match self.core.store.get_queue(child).await {
            Ok(Some(q)) => q.config.retention_seconds,
            _ => limits::RETENTION_DEFAULT_S,
        } as i64
            * 1000;
        self.retention.lock().insert(child.to_string(), (keep, now));
        keep
    }

    /// Delivered: remove the copies.
    async fn done(&self, child: &str, deliveries: &[Delivery]) -> Result<()> {
        let rs: Vec<_> = deliveries.iter().map(|d| d.receipt).collect();
        self.core.store.ack(child, &rs, self.core.now()).await?;
        if is_fifo(child) {
            // Settling unlocks the message group: its next message may go now.
            self.core.wake(child, rs.len());
        }
        Ok(())
    }

    /// Try again after `delay_ms`. A FIFO copy keeps its lease until then (its group stays
    /// locked, so later messages of the group never pass it) while the hold fits a lease;
    /// other copies are released with a delay (a batch keeps its order).
    async fn retry(&self, s: &SubscriptionRef, got: &[Delivery], delay_ms: u64) -> Result<()> {
        if is_fifo(&s.child) && delay_ms > 0 && delay_ms <= LEASE_MAX_MS {
            let held = self.renew(&s.child, got.to_vec(), delay_ms).await?;
            if held.len() == got.len() {
                return Ok(());
            }
        }
        self.release(&s.child, got, delay_ms).await
    }

    async fn release(&self, child: &str, deliveries: &[Delivery], delay_ms: u64) -> Result<()> {
        let rs: Vec<_> = deliveries.iter().map(|d| d.receipt).collect();
        self.core
            .store
            .nack(child, &rs, delay_ms, Placement::Back, self.core.now())
            .await?;
        // Wake a waiting sender so it re-plans its sleep around the new due time (or takes
        // the message now).
        self.core.wake(child, rs.len().max(1));
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
                }
            })
            .collect();
        store.publish(&dlq, batch, now).await?;
        self.core.wake(&dlq, deliveries.len());
        self.done(&s.child, deliveries).await?;
        Ok(dlq)
    }
}
