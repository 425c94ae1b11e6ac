//! Fan-out: a message published to a push queue is stored once per subscription, in each
//! subscription's copy queue, under the same id and in the same group commit. Subscriptions
//! with a filter or event types take only the messages they select (`filter.rs`).

use crate::error::{EngineError, Result};
use crate::limits;
use crate::model::{message_size, MessageId, NewMessage};

use super::Push;

impl Push {
    /// Store a validated batch once per subscription (same ids), all in the same group commit.
    pub(crate) async fn fan_out(
        &self,
        queue: &str,
        mut batch: Vec<NewMessage>,
    ) -> Result<Vec<MessageId>> {
        let targets = self.targets(queue);
        let now = self.core.now();
        if let Some(q) = self.core.store.get_queue(queue).await? {
            let limit = q.config.max_message_bytes as usize;
            for m in &batch {
                let size = message_size(&m.body, &m.attributes);
                if size > limit {
                    return Err(EngineError::MessageTooLarge { size, limit });
                }
            }
            // The push queue's default time to live goes with each copy.
            if let Some(ttl) = q.config.default_ttl_seconds {
                for m in batch.iter_mut().filter(|m| m.expires_at.is_none()) {
                    m.expires_at = Some(m.enqueued_at + ttl as i64 * 1000);
                }
            }
        }
        if targets.iter().any(|(_, selector)| selector.is_some()) {
            // Some subscriptions filter: the one place where messages are chosen per copy.
            return self.fan_out_selected(targets, batch, now).await;
        }
        let children: Vec<String> = targets.into_iter().map(|(child, _)| child).collect();
        let n = batch.len();
        let results = futures::future::join_all(
            children
                .iter()
                .map(|c| self.core.store.publish(c, &batch, now)),
        )
        .await;
        let mut ids = None;
        for r in results {
            let r = r?;
            ids.get_or_insert(r);
        }
        for c in &children {
            self.core.wake(c, n);
        }
        Ok(ids.unwrap_or_default())
    }

    /// Messages that reached a push queue's own list (published before its first subscription,
    /// or redriven there by the store) are fanned out to the subscriptions. Returns how many.
    pub async fn drain(&self, queue: &str) -> Result<usize> {
        if !self.is_push(queue) {
            return Ok(0);
        }
        let store = &self.core.store;
        let mut moved = 0;
        loop {
            let got = store
                .receive(queue, limits::RECEIVE_BATCH_MAX, 60_000, self.core.now())
                .await?;
            if got.is_empty() {
                return Ok(moved);
            }
            let receipts: Vec<_> = got.iter().map(|d| d.receipt).collect();
            let batch = got
                .into_iter()
                .map(|d| NewMessage {
                    id: d.message.id,
                    body: d.message.body,
                    attributes: d.message.attributes,
                    enqueued_at: d.message.enqueued_at,
                    delay_ms: Some(0),
                    group: d.message.group,
                    dedup_id: None,
                    priority: d.message.priority,
                    expires_at: d.message.expires_at,
                })
                .collect::<Vec<_>>();
            moved += batch.len();
            self.fan_out(queue, batch).await?;
            store.ack(queue, &receipts, self.core.now()).await?;
        }
    }
}
