//! Settling timer calls: after a sender called a timer's URL, its attempt goes into the
//! delivery history, a finished timer's outcome into the archive, and its message is removed
//! (or, for a retry or a 429, put back with a delay). Senders settle in batches
//! ([`Timers::settle_many`]): a burst of 20,000 timers falling due at once costs a few store
//! calls per batch, not three durable writes per firing, and a sender's call slot is free again
//! as soon as the answer is in.
//!
//! The order within a batch keeps the firing rule of `timers/mod.rs`: the attempts are durable
//! before the outcomes are archived, and the outcomes before the messages are removed.

use futures::future::join_all;

use crate::error::Result;
use crate::history::limits::TIMER_KEEP_MS;
use crate::history::{Attempt, Outcome};
use crate::limits;
use crate::model::{Delivery, MessageId, Placement};
use crate::push::policy::Decision;

use super::{Timers, FAILED, SUCCEEDED, TIMER_QUEUE};

/// One call of a due timer, made and decided, waiting to be settled.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub delivery: Delivery,
    pub decision: Decision,
    /// The attempt to record in the delivery history.
    pub attempt: Attempt,
}

impl Timers {
    /// Settle one call of a timer as `decision` says, and record `attempt` in the delivery
    /// history (kept `history::limits::TIMER_KEEP_MS`).
    pub async fn settle(&self, d: &Delivery, decision: &Decision, attempt: Attempt) -> Result<()> {
        self.settle_many(&[Settlement {
            delivery: d.clone(),
            decision: decision.clone(),
            attempt,
        }])
        .await
    }

    /// Settle calls of several timers with a few store calls: their attempts (one history
    /// write), then the outcomes of the finished ones (one archive write, one ack), then the
    /// retries (each put back after its own delay).
    pub async fn settle_many(&self, batch: &[Settlement]) -> Result<()> {
        let each: Vec<_> = batch
            .iter()
            .map(|s| (std::slice::from_ref(&s.delivery.message.id), &s.attempt))
            .collect();
        if let Err(e) = self.history.record_each(&each, TIMER_KEEP_MS).await {
            // Not recorded: left leased; the leases run out and the timers come back.
            self.not_delivering(batch);
            return Err(e);
        }
        let mut finished = Vec::new();
        let mut retries = Vec::new();
        for s in batch {
            match s.decision.outcome {
                Outcome::Delivered => finished.push((&s.delivery, SUCCEEDED)),
                Outcome::Failed => finished.push((&s.delivery, FAILED)),
                Outcome::Throttled | Outcome::Retry => retries.push(s),
            }
        }
        let done = self.finish_many(&finished).await;
        let now = self.core.now();
        let nacked = join_all(retries.iter().map(|s| {
            self.core.store.nack(
                TIMER_QUEUE,
                std::slice::from_ref(&s.delivery.receipt),
                s.decision.delay_ms,
                Placement::Back,
                now,
            )
        }))
        .await;
        if !retries.is_empty() {
            self.core.wake(TIMER_QUEUE, retries.len());
        }
        self.not_delivering(batch);
        done?;
        for r in nacked {
            r?;
        }
        Ok(())
    }

    fn not_delivering(&self, batch: &[Settlement]) {
        let mut delivering = self.delivering.lock();
        for s in batch {
            delivering.remove(&s.delivery.message.id);
        }
    }

    /// Record a timer's outcome, then remove its message.
    pub(crate) async fn finish(&self, d: &Delivery, code: u8) -> Result<()> {
        self.finish_many(&[(d, code)]).await
    }

    /// Record the outcomes of timers (unless one is already archived: cancelled meanwhile, or
    /// settled before a crash), then remove their messages.
    async fn finish_many(&self, finished: &[(&Delivery, u8)]) -> Result<()> {
        if finished.is_empty() {
            return Ok(());
        }
        let known = join_all(
            finished
                .iter()
                .map(|(d, _)| self.outcome_fresh(d.message.id)),
        )
        .await;
        let mut outcomes: Vec<(MessageId, u8)> = Vec::with_capacity(finished.len());
        for ((d, code), known) in finished.iter().zip(known) {
            if known?.is_none() {
                outcomes.push((d.message.id, *code));
            }
        }
        if !outcomes.is_empty() {
            self.core.store.archive_put(&outcomes).await?;
            self.archive.lock().extend(outcomes.iter().copied());
        }
        let receipts: Vec<_> = finished.iter().map(|(d, _)| d.receipt).collect();
        let now = self.core.now();
        for chunk in receipts.chunks(limits::ACK_BATCH_MAX) {
            self.core.store.ack(TIMER_QUEUE, chunk, now).await?;
        }
        for (d, _) in finished {
            let id = d.message.id;
            self.pending.lock().remove(id);
            self.delivering.lock().remove(&id);
            self.cancelled_pending.lock().remove(&id);
        }
        Ok(())
    }
}
