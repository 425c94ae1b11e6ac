//! Redrive of push dead letters: a dead letter goes back to the subscription it failed on
//! (never to the others, which already delivered it), under its original id, without its
//! dead-letter annotations.

use std::collections::HashSet;

use crate::error::Result;
use crate::limits;
use crate::model::{MessageId, NewMessage, Placement};

use super::DEAD_LETTER_ATTRS;
use super::{child_queue, default_dlq, Push, ATTR_MESSAGE_ID, ATTR_SOURCE, ATTR_SUBSCRIPTION};

impl Push {
    /// Push dead letters go back to the subscription they failed on. `queue` is a dead-letter
    /// queue or a push queue. Returns how many moved.
    pub(crate) async fn redrive(
        &self,
        queue: &str,
        max: usize,
        only: Option<&HashSet<MessageId>>,
    ) -> Result<u64> {
        let store = &self.core.store;
        let is_push_dlq = self.all().iter().any(|s| default_dlq(&s.queue) == queue)
            || store.list_queues().await?.iter().any(|q| {
                q.config.dead_letter_queue.as_deref() == Some(queue) && self.is_push(&q.name)
            });
        if !self.is_push(queue) && !is_push_dlq {
            // Only push dead letters are handled here; other queues' redrive is the store's.
            return Ok(0);
        }
        let (dlq, only_source) = if self.is_push(queue) {
            let dlq = store
                .get_queue(queue)
                .await?
                .and_then(|q| q.config.dead_letter_queue)
                .unwrap_or_else(|| default_dlq(queue));
            (dlq, Some(queue.to_string()))
        } else {
            (queue.to_string(), None)
        };
        if store.get_queue(&dlq).await?.is_none() {
            return Ok(0);
        }
        let mut moved = 0u64;
        let mut skipped = Vec::new();
        while (moved as usize) < max {
            let got = store
                .receive(&dlq, limits::RECEIVE_BATCH_MAX, 300_000, self.core.now())
                .await?;
            if got.is_empty() {
                break;
            }
            for d in got {
                let source = d.message.attributes.get(ATTR_SOURCE).cloned();
                let sub = d.message.attributes.get(ATTR_SUBSCRIPTION).cloned();
                let target = match (&source, &sub) {
                    (Some(src), Some(sub))
                        if only_source.as_ref().is_none_or(|o| o == src)
                            && only.is_none_or(|o| o.contains(&d.message.id))
                            && (moved as usize) < max
                            && self.get(src, sub).is_ok() =>
                    {
                        child_queue(src, sub)
                    }
                    // Not a push dead letter, not ours, or its subscription is gone (sending it
                    // to the others would deliver twice where it already succeeded): stays.
                    _ => {
                        skipped.push(d.receipt);
                        continue;
                    }
                };
                let mut m = d.message;
                let id = m
                    .attributes
                    .get(ATTR_MESSAGE_ID)
                    .and_then(|s| MessageId::parse(s))
                    .unwrap_or(m.id);
                // Drop the dead-letter annotations; keep the message's own attributes.
                m.attributes
                    .retain(|k, _| !DEAD_LETTER_ATTRS.contains(&k.as_str()));
                let nm = NewMessage {
                    id,
                    body: m.body,
                    attributes: m.attributes,
                    enqueued_at: self.core.now(),
                    delay_ms: Some(0),
                    group: m.group,
                    dedup_id: None,
                    priority: m.priority,
                    expires_at: None,
                };
                store.publish(&target, &[nm], self.core.now()).await?;
                self.core.wake(&target, 1);
                store.ack(&dlq, &[d.receipt], self.core.now()).await?;
                moved += 1;
            }
        }
        for chunk in skipped.chunks(limits::ACK_BATCH_MAX) {
            store
                .nack(&dlq, chunk, 0, Placement::Back, self.core.now())
                .await?;
        }
        Ok(moved)
    }
}
