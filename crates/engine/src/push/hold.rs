//! Holding one subscription's deliveries: its owner pauses and resumes it; sluice disables it
//! when its endpoint failed without a single success for `disable_after_seconds` (the lane
//! decides, from its circuit: `breaker.rs`), and its owner enables it again. While a
//! subscription is held, its copy queue leases nothing, so its lane sends nothing: messages
//! keep arriving and wait (retention still drops those that outlive it), no attempt is burnt
//! and nothing is dead-lettered because of the hold.
//!
//! The rule is the store's, like a queue's pause (`engine/pause.rs`): the copy queue's
//! `paused_at` is set while the queue *or* the subscription holds it, so every node sharing a
//! store obeys at once, whatever its lane knows. The subscription's own mark (`paused_at` in
//! its stored settings) is written first and the copy queue's second; a crash in between is
//! repaired at start (`Engine::sync_pauses` recomputes every copy queue's mark).

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::validate::validate_queue_name;

use super::{child_queue, Disabled, Push, Subscription};

impl Push {
    /// Pause a subscription (idempotent: a paused one keeps its first `paused_at`). Durable
    /// on return; its copies wait until it is resumed.
    pub async fn pause(&self, queue: &str, name: &str) -> Result<Subscription> {
        self.set_paused(queue, name, true).await
    }

    /// Resume a paused subscription (idempotent); its lane leases again at once.
    pub async fn resume(&self, queue: &str, name: &str) -> Result<Subscription> {
        self.set_paused(queue, name, false).await
    }

    async fn set_paused(&self, queue: &str, name: &str, on: bool) -> Result<Subscription> {
        validate_queue_name(queue)?;
        let mut sub = self.get(queue, name)?;
        let at = on.then(|| sub.paused_at.unwrap_or(self.core.now()));
        if sub.paused_at != at {
            // Not a change of settings: `updated_at` stays (lanes restart only on those).
            sub.paused_at = at;
            self.save(queue, name, &sub).await?;
        }
        self.mark_copies(queue, name, &sub).await?;
        Ok(sub)
    }

    /// Disable a subscription whose endpoint keeps failing (idempotent: a disabled one keeps
    /// its first moment and reason). Durable on return; its copies wait until it is enabled.
    pub async fn disable(&self, queue: &str, name: &str, reason: &str) -> Result<Subscription> {
        let mut sub = self.get(queue, name)?;
        if sub.disabled.is_none() {
            sub.disabled = Some(Disabled {
                at: self.core.now(),
                reason: reason.to_string(),
            });
            self.save(queue, name, &sub).await?;
        }
        self.mark_copies(queue, name, &sub).await?;
        Ok(sub)
    }

    /// Enable a disabled subscription (idempotent): its circuit starts closed, with a fresh
    /// count, and what waited goes out (unless it is also paused).
    pub async fn enable(&self, queue: &str, name: &str) -> Result<Subscription> {
        validate_queue_name(queue)?;
        let mut sub = self.get(queue, name)?;
        // The circuit first: a lane restarted by the change reads it closed.
        self.forget_circuit(queue, name).await?;
        if sub.disabled.take().is_some() {
            self.save(queue, name, &sub).await?;
        }
        self.mark_copies(queue, name, &sub).await?;
        Ok(sub)
    }

    /// Set the copy queue's mark to what its queue and the subscription say now.
    pub(super) async fn mark_copies(
        &self,
        queue: &str,
        name: &str,
        sub: &Subscription,
    ) -> Result<()> {
        let store = &self.core.store;
        let parent = store
            .get_queue(queue)
            .await?
            .and_then(|q| q.config.paused_at);
        let child = child_queue(queue, name);
        let mut info = store
            .get_queue(&child)
            .await?
            .ok_or_else(|| EngineError::QueueNotFound(child.clone()))?;
        let at = copy_mark(parent, sub);
        if info.config.paused_at != at {
            info.config.paused_at = at;
            store
                .put_queue(&child, info.config, self.core.now())
                .await?;
        }
        if at.is_none() {
            self.core.wake_all();
        }
        Ok(())
    }

    /// The copy queues of `queue` with what holds each of them besides the queue itself.
    pub(crate) fn copy_holds(&self, queue: &str) -> Vec<(String, Option<Millis>)> {
        self.subs
            .read()
            .get(queue)
            .map(|m| {
                m.iter()
                    .map(|(n, s)| (child_queue(queue, n), s.held_since()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The mark a copy queue carries: its queue's pause, else the subscription's own hold.
pub(crate) fn copy_mark(parent_paused_at: Option<Millis>, sub: &Subscription) -> Option<Millis> {
    parent_paused_at.or(sub.held_since())
}
