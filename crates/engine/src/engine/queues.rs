//! The queue API: create, configure, list, inspect, purge and delete queues, and redrive dead
//! letters. A push queue's subscriptions follow their queue (deleted, purged and redriven with
//! it). [`QueueCounts`] says where a queue's messages are: its own list, its subscriptions'
//! copies, and dead-letter queues.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::limits;
use crate::model::{MessageId, QueueConfig, QueueConfigPatch, QueueInfo, QueueStats};
use crate::push::{default_dlq, is_internal, ATTR_SOURCE};
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
        let put = store.put_queue(name, config.clone(), now).await?;
        self.group_limited
            .lock()
            .insert(name.to_string(), config.max_in_flight_per_group.is_some());
        self.push.queue_changed(name);
        self.push.copy_settings(name, &config).await?;
        Ok(put)
    }

    /// Create `name` with defaults because a client used it (a publish, a miniqueue
    /// subscribe), unless it exists; only while fewer than `max_queues_on_use` queues exist.
    pub async fn create_on_use(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        let store = &self.core.store;
        let _one_at_a_time = match self.opts.max_queues_on_use {
            Some(limit) => {
                if store.get_queue(name).await?.is_some() {
                    return Ok(());
                }
                let guard = self.creating.lock().await;
                if store.get_queue(name).await?.is_none() && store.queue_count().await? >= limit {
                    return Err(EngineError::TooManyQueuesOnUse {
                        queue: name.to_string(),
                        limit,
                    });
                }
                Some(guard)
            }
            None => None,
        };
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
        self.group_limited.lock().remove(name);
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

/// Where a queue's messages are now: its own list plus its push subscriptions' copies (a push
/// queue hands every message to its subscriptions, so its backlog is in the copies), and how
/// many of its messages sit in a dead-letter queue. Gauges, exact when read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueCounts {
    /// Everything waiting or leased: ready + in_flight + delayed + retrying. A message waiting
    /// for two subscriptions counts twice (one delivery each).
    pub total: u64,
    /// Ready now, in the queue or in its subscriptions' copies.
    pub ready: u64,
    /// Leased by a consumer, or being delivered to a subscription.
    pub in_flight: u64,
    /// The queue's own messages waiting for their delay.
    pub delayed: u64,
    /// Subscription copies waiting for a retry (or for their delay).
    pub retrying: u64,
    /// Messages of this queue now in its dead-letter queue: dead-lettered by receive count, and
    /// push deliveries given up.
    pub dead_lettered: u64,
    /// Messages published to the queue since the server started. A push queue stores each
    /// one in its subscriptions' copies, so for it this is the most any of them received (all
    /// of them since the server started, for a subscription that was there all along).
    pub published: u64,
    pub subscriptions: CopyCounts,
    /// Set on a dead-letter queue: how many messages it holds, and for which queues.
    pub dead_letters_held: Option<DeadLettersHeld>,
}

/// The copies of a queue's push subscriptions, together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CopyCounts {
    /// Subscriptions of the queue.
    pub count: u64,
    pub ready: u64,
    pub in_flight: u64,
    pub retrying: u64,
}

/// What a dead-letter queue holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLettersHeld {
    /// Every message in it (ready, delayed or in flight).
    pub messages: u64,
    /// The queues whose dead letters go here.
    pub sources: Vec<String>,
}

/// Stats read at most once per call.
struct StatsOnce<'a> {
    engine: &'a Engine,
    now: Millis,
    got: HashMap<String, Option<QueueStats>>,
}

impl StatsOnce<'_> {
    /// A queue's stats; None if it does not exist (deleted meanwhile).
    async fn get(&mut self, name: &str) -> Result<Option<QueueStats>> {
        if let Some(s) = self.got.get(name) {
            return Ok(s.clone());
        }
        let s = match self.engine.core.store.stats(name, self.now).await {
            Ok(s) => Some(s),
            Err(EngineError::QueueNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        self.got.insert(name.to_string(), s.clone());
        Ok(s)
    }
}

fn held(s: &QueueStats) -> u64 {
    s.ready + s.delayed + s.in_flight
}

impl Engine {
    /// Every queue with its stats and [`QueueCounts`].
    pub async fn list_queue_counts(&self) -> Result<Vec<(QueueInfo, QueueStats, QueueCounts)>> {
        let infos = self.queue_infos().await?;
        let names: Vec<String> = infos.iter().map(|i| i.name.clone()).collect();
        self.counts_of(&infos, &names).await
    }

    /// One queue with its stats and [`QueueCounts`].
    pub async fn queue_counts(&self, name: &str) -> Result<(QueueInfo, QueueStats, QueueCounts)> {
        self.queue_info(name).await?;
        let infos = self.queue_infos().await?;
        self.counts_of(&infos, &[name.to_string()])
            .await?
            .pop()
            .ok_or_else(|| EngineError::QueueNotFound(name.to_string()))
    }

    /// The dead-letter queue a queue's receive limit moves messages to.
    fn pull_dlq(info: &QueueInfo) -> Option<&str> {
        info.config.max_receives?;
        info.config.dead_letter_queue.as_deref()
    }

    /// The dead-letter queue a push queue's failed deliveries go to.
    fn push_dlq(&self, info: &QueueInfo) -> Option<String> {
        self.push.is_push(&info.name).then(|| {
            info.config
                .dead_letter_queue
                .clone()
                .unwrap_or_else(|| default_dlq(&info.name))
        })
    }

    async fn counts_of(
        &self,
        infos: &[QueueInfo],
        wanted: &[String],
    ) -> Result<Vec<(QueueInfo, QueueStats, QueueCounts)>> {
        let mut stats = StatsOnce {
            engine: self,
            now: self.now(),
            got: HashMap::new(),
        };
        let mut out = Vec::with_capacity(wanted.len());
        for info in infos.iter().filter(|i| wanted.contains(&i.name)) {
            let Some(own) = stats.get(&info.name).await? else {
                continue;
            };
            let mut subs = CopyCounts::default();
            let mut published = own.published;
            for child in self.push.children(&info.name) {
                let s = stats.get(&child).await?.unwrap_or_default();
                published = published.max(s.published);
                subs.count += 1;
                subs.ready += s.ready;
                subs.in_flight += s.in_flight;
                subs.retrying += s.delayed;
            }
            let push_dead = match self.push_dlq(info) {
                Some(dlq) => {
                    self.push_dead_letters(infos, &dlq, &info.name, &mut stats)
                        .await?
                }
                None => 0,
            };
            let sources: BTreeSet<String> = infos
                .iter()
                .filter(|i| {
                    Self::pull_dlq(i) == Some(info.name.as_str())
                        || self.push_dlq(i).as_deref() == Some(info.name.as_str())
                })
                .map(|i| i.name.clone())
                .collect();
            let counts = QueueCounts {
                total: held(&own) + subs.ready + subs.in_flight + subs.retrying,
                ready: own.ready + subs.ready,
                in_flight: own.in_flight + subs.in_flight,
                delayed: own.delayed,
                retrying: subs.retrying,
                dead_lettered: own.dead_lettered + push_dead,
                published,
                dead_letters_held: (!sources.is_empty()).then(|| DeadLettersHeld {
                    messages: held(&own),
                    sources: sources.into_iter().collect(),
                }),
                subscriptions: subs,
            };
            out.push((info.clone(), own, counts));
        }
        Ok(out)
    }

    /// How many of `dlq`'s messages are `queue`'s failed push deliveries: what the dead-letter
    /// queue holds beyond the receive-limit dead letters of its sources, when `queue` is the
    /// only push queue sending there (the usual case, always so for `QUEUE-dlq`). When several
    /// push queues share it, its first `PEEK_MAX` messages are told apart by their
    /// `sluice-source-queue` attribute.
    async fn push_dead_letters(
        &self,
        infos: &[QueueInfo],
        dlq: &str,
        queue: &str,
        stats: &mut StatsOnce<'_>,
    ) -> Result<u64> {
        let Some(d) = stats.get(dlq).await? else {
            return Ok(0);
        };
        let pushers = infos
            .iter()
            .filter(|i| self.push_dlq(i).as_deref() == Some(dlq))
            .count();
        if pushers > 1 {
            let peeked = self
                .core
                .store
                .peek(dlq, limits::PEEK_MAX, stats.now)
                .await?;
            return Ok(peeked
                .iter()
                .filter(|m| m.attributes.get(ATTR_SOURCE).map(String::as_str) == Some(queue))
                .count() as u64);
        }
        let mut pulled = 0;
        for source in infos.iter().filter(|i| Self::pull_dlq(i) == Some(dlq)) {
            pulled += stats
                .get(&source.name)
                .await?
                .map_or(0, |s| s.dead_lettered);
        }
        Ok(held(&d).saturating_sub(pulled))
    }
}
