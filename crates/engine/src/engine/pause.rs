//! Pausing a queue's consumption: while a queue is paused, receives hand out nothing (pull
//! receives and the push lanes of its subscriptions alike) and publishes are still accepted.
//! The rule is the store's: a queue whose configuration has `paused_at` set leases no message,
//! so every node sharing a store obeys it at once. A push queue's copy queues carry the same
//! mark as the queue (set here, on pause and resume, and when a subscription is created), so
//! its lanes send nothing either. Nothing is received, so nothing burns a receive or an
//! attempt and nothing is dead-lettered because of the pause; retention still drops messages
//! that outlive it.
//!
//! A subscription's own pause (`push/hold.rs`) sits beside this one: a copy queue is marked
//! while its queue *or* its subscription holds it, so resuming the queue leaves a paused
//! subscription paused.

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::model::QueueInfo;
use crate::validate::validate_queue_name;

use super::Engine;

impl Engine {
    /// Pause a queue's consumption (idempotent: a paused queue keeps its first `paused_at`).
    pub async fn pause_queue(&self, name: &str) -> Result<QueueInfo> {
        self.set_paused(name, true).await
    }

    /// Resume a paused queue's consumption (idempotent). Waiting receives look again at once.
    pub async fn resume_queue(&self, name: &str) -> Result<QueueInfo> {
        self.set_paused(name, false).await
    }

    async fn set_paused(&self, name: &str, on: bool) -> Result<QueueInfo> {
        validate_queue_name(name)?;
        let info = self.queue_info(name).await?;
        let at = on.then(|| info.config.paused_at.unwrap_or(self.now()));
        // The copies first, the queue last: the queue's own mark is the one shown, and a call
        // repeated after a failure in between completes the change.
        for (child, held) in self.push.copy_holds(name) {
            self.mark_paused(&child, at.or(held)).await?;
        }
        let info = self.mark_paused(name, at).await?;
        if !on {
            self.core.wake_all();
        }
        Ok(info)
    }

    /// Set a queue's `paused_at` (through the store, durable on return).
    async fn mark_paused(&self, queue: &str, at: Option<Millis>) -> Result<QueueInfo> {
        let store = &self.core.store;
        let mut info = store
            .get_queue(queue)
            .await?
            .ok_or_else(|| EngineError::QueueNotFound(queue.to_string()))?;
        if info.config.paused_at == at {
            return Ok(info);
        }
        info.config.paused_at = at;
        Ok(store.put_queue(queue, info.config, self.now()).await?.0)
    }

    /// At start: make every copy queue's mark match its queue's (a crash may have come between
    /// the two writes of a pause or resume).
    pub(super) async fn sync_pauses(&self) -> Result<()> {
        for s in self.push.all() {
            let Some(parent) = self.core.store.get_queue(&s.queue).await? else {
                continue;
            };
            let mark = crate::push::copy_mark(parent.config.paused_at, &s.config);
            match self.mark_paused(&s.child, mark).await {
                Ok(_) | Err(EngineError::QueueNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
