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

    /// The attempt number of a delivery: receives minus 429 answers.
    pub fn attempt_no(&self, child: &str, d: &Delivery) -> u32 {
        self.throttled.attempt_no(child, d)
    }

    /// Settle one request (one message, or a batch) of subscription `s` as `decision` says,
    /// after recording `attempt` for each message.
    pub async fn settle(
        &self,
        s: &SubscriptionRef,
        got: &[Delivery],
        decision: &Decision,
        attempt: Attempt,
    ) -> Result<Settled> {
        for d in got {
            self.history.record(d.message.id, attempt.clone());
        }
        let mut dead_letter_queue = None;
        match decision.outcome {
            Outcome::Delivered => {
                self.throttled.forget(&s.child, got);
                self.done(&s.child, got).await?;
            }
            Outcome::Throttled => {
                self.throttled.add(&s.child, got);
                self.retry(s, got, decision.delay_ms).await?;
            }
            Outcome::Retry => self.retry(s, got, decision.delay_ms).await?,
            Outcome::Failed => {
                self.throttled.forget(&s.child, got);
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
        let batch: Vec<NewMessage> = deliveries
            .iter()
            .map(|d| {
                let m = &d.message;
                let history = history::summary(&self.history.get(m.id), &s.name);
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
