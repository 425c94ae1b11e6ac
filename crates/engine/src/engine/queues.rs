//! The queue API: create, configure, list, inspect, purge and delete queues, and redrive dead
//! letters. A push queue's subscriptions follow their queue (deleted, purged and redriven with
//! it).

use std::collections::HashSet;

use crate::error::{EngineError, Result};
use crate::limits;
use crate::model::{MessageId, QueueConfig, QueueConfigPatch, QueueInfo, QueueStats};
use crate::push::is_internal;
use crate::validate::{range, validate_queue_name};

use super::Engine;

impl Engine {
    /// Create the queue or update its configuration with `patch`. Returns the queue and whether
    /// it was created. A named dead-letter queue that does not exist yet is created with defaults.
    pub async fn put_queue(
        &self,
        name: &str,
        patch: QueueConfigPatch,
    ) -> Result<(QueueInfo, bool)> {
        validate_queue_name(name)?;
        let store = &self.core.store;
        let existing = store.get_queue(name).await?;
        let base = existing.map(|q| q.config).unwrap_or_default();
        let config = patch.apply(&base);
        config.validate(name, self.opts.max_message_bytes)?;
        let now = self.now();
        if let Some(dlq) = &config.dead_letter_queue {
            store.ensure_queue(dlq, QueueConfig::default(), now).await?;
        }
        store.put_queue(name, config, now).await
    }

    /// Create `name` with defaults because a client used it (a publish, a miniqueue
    /// subscribe), unless it exists; only while fewer than `max_queues_on_use` queues exist.
    pub async fn create_on_use(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        let store = &self.core.store;
        if let Some(limit) = self.opts.max_queues_on_use {
            if store.get_queue(name).await?.is_none() && store.queue_count().await? >= limit {
                return Err(EngineError::TooManyQueuesOnUse {
                    queue: name.to_string(),
                    limit,
                });
            }
        }
        store
            .ensure_queue(name, QueueConfig::default(), self.now())
            .await?;
        Ok(())
    }

    pub async fn get_queue(&self, name: &str) -> Result<(QueueInfo, QueueStats)> {
        let info = self.queue_info(name).await?;
        let stats = self.core.store.stats(name, self.now()).await?;
        Ok((info, stats))
    }

    /// A queue's definition, without computing its stats.
    pub async fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        validate_queue_name(name)?;
        self.core
            .store
            .get_queue(name)
            .await?
            .ok_or_else(|| EngineError::QueueNotFound(name.to_string()))
    }

    /// Every queue's definition, by name, without stats.
    pub async fn queue_infos(&self) -> Result<Vec<QueueInfo>> {
        let mut v = self.core.store.list_queues().await?;
        v.retain(|q| !is_internal(&q.name));
        Ok(v)
    }

    pub async fn list_queues(&self) -> Result<Vec<(QueueInfo, QueueStats)>> {
        let now = self.now();
        let mut out = Vec::new();
        for q in self.queue_infos().await? {
            match self.core.store.stats(&q.name, now).await {
                Ok(s) => out.push((q, s)),
                Err(EngineError::QueueNotFound(_)) => {} // deleted meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        if !self.core.store.delete_queue(name).await? {
            return Err(EngineError::QueueNotFound(name.to_string()));
        }
        self.push.drop_queue(name).await?;
        self.core.forget_queue(name);
        Ok(())
    }

    /// Remove every message of the queue (on a push queue, also every undelivered copy of
    /// its subscriptions; the count is of the queue's own messages plus the copies).
    pub async fn purge(&self, name: &str) -> Result<u64> {
        validate_queue_name(name)?;
        let store = &self.core.store;
        let mut n = store.purge_queue(name, self.now()).await?;
        for child in self.push.children(name) {
            n += store.purge_queue(&child, self.now()).await?;
        }
        Ok(n)
    }

    pub async fn stats(&self, name: &str) -> Result<QueueStats> {
        validate_queue_name(name)?;
        self.core.store.stats(name, self.now()).await
    }

    /// Move dead letters back to their source queue(s). See [`crate::Store::redrive`].
    pub async fn redrive(&self, queue: &str, max: Option<usize>) -> Result<u64> {
        if let Some(m) = max {
            range("max_messages", m as u64, 1, u32::MAX as u64)?;
        }
        self.redrive_only(queue, max.unwrap_or(usize::MAX), None)
            .await
    }

    /// Resend chosen dead letters: like [`Engine::redrive`] on `queue` (a dead-letter queue or
    /// a source queue), but only the messages with these ids (as `peek` shows them in the
    /// dead-letter queue) move. Ids that are not dead letters there are ignored.
    pub async fn redrive_ids(&self, queue: &str, ids: &[MessageId]) -> Result<u64> {
        range("ids", ids.len() as u64, 1, limits::ACK_BATCH_MAX as u64)?;
        let only: HashSet<MessageId> = ids.iter().copied().collect();
        self.redrive_only(queue, only.len(), Some(&only)).await
    }

    async fn redrive_only(
        &self,
        queue: &str,
        max: usize,
        only: Option<&HashSet<MessageId>>,
    ) -> Result<u64> {
        validate_queue_name(queue)?;
        let mut n = self
            .core
            .store
            .redrive(queue, max, only, self.now())
            .await?;
        if (n as usize) < max {
            n += self.push.redrive(queue, max - n as usize, only).await?;
        }
        if n > 0 {
            // Sources are not known here; wake everyone cheaply (redrive is rare).
            self.core.wake_all();
        }
        Ok(n)
    }
}
