//! Push delivery, the engine's side (no HTTP): the [`Push`] service. It keeps the
//! subscriptions (loaded from the store's settings), fans published messages out into one copy
//! queue per subscription, and gives the server's senders the calls of a delivery's life:
//! lease, renew, settle (delivered, retry, throttled, failed → dead letter). The HTTP calls
//! themselves are the server's; what an answer means is [`policy`].
//!
//! A queue with subscriptions is a *push queue*. Publishing to it stores each message once per
//! subscription, in the internal queue `QUEUE~SUB` (`STEM~SUB.fifo` for FIFO queues), with the
//! same message id: each subscription keeps its own delivery state (leases, receive count,
//! backoff delays) with the ordinary queue machinery, and the id is the stable `webhook-id`.
//! A message has left the push queue when every subscription's copy is settled.
//!
//! Files: `subscription.rs` (what a subscription is), `policy.rs` (what an answer means),
//! `pace.rs` (the pace of an endpoint), `fanout.rs` (publish into the copies), `filter.rs`
//! (which messages a subscription takes), `delivery.rs` (the senders' calls), `redrive.rs`
//! (push dead letters back to their subscription), `replay.rs` (a window of failed or
//! delivered messages sent again), `secret.rs` (signing secrets and their rotation),
//! `hold.rs` (a subscription paused by its owner, or disabled after failing too long), `breaker.rs` (the circuit breaker's rule;
//! its stored state is kept by `circuit.rs`).

pub mod breaker;
mod circuit;
mod delivery;
mod fanout;
pub mod filter;
mod hold;
pub mod pace;
pub mod policy;
mod redrive;
mod replay;
pub mod secret;
pub mod subscription;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::core::Core;
use crate::error::{EngineError, Result};
use crate::history::History;
use crate::model::{NewMessage, QueueConfig, QueueStats};
use crate::validate::{validate_name, validate_queue_name};

pub use self::delivery::{Answered, Settled};
pub(crate) use self::hold::copy_mark;
pub use self::policy::{classify, Answer, Decision, DeliveryPolicy};
pub use self::replay::{ReplayOutcome, ReplayTask};
pub use self::secret::{signing_key, Rotated, Rotation, SecretKind, SigningKey};
pub use self::subscription::*;
pub use crate::history::{Attempt, Outcome};

/// One subscription as the senders see it.
#[derive(Debug, Clone)]
pub struct SubscriptionRef {
    pub queue: String,
    pub name: String,
    pub child: String,
    pub config: Arc<Subscription>,
}

/// The push service: `engine.push()`.
pub struct Push {
    core: Arc<Core>,
    /// Subscriptions by queue, then name (loaded from the store's settings at start).
    subs: RwLock<HashMap<String, BTreeMap<String, Subscription>>>,
    /// Bumped on every change; the server's push manager watches it.
    version: watch::Sender<u64>,
    history: Arc<History>,
    /// What each push queue keeps (attempts, delivered messages), with when it was read.
    kept: parking_lot::Mutex<HashMap<String, (delivery::Kept, crate::clock::Millis)>>,
    replays: replay::Replays,
}

fn meta_key(queue: &str, name: &str) -> String {
    format!("sub/{queue}/{name}")
}

impl Push {
    pub(crate) fn new(core: Arc<Core>, history: Arc<History>) -> Push {
        Push {
            core,
            subs: RwLock::new(HashMap::new()),
            version: watch::channel(0).0,
            history,
            kept: Default::default(),
            replays: Default::default(),
        }
    }

    /// The delivery history (attempts) of pushed messages.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Load subscriptions from the store's settings (at start).
    pub async fn load(&self) -> Result<()> {
        let map = self.read().await?;
        *self.subs.write() = map;
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Re-read subscriptions (another node may have changed them); announce only a change.
    pub async fn reload(&self) -> Result<()> {
        let map = self.read().await?;
        let mut subs = self.subs.write();
        if *subs != map {
            *subs = map;
            drop(subs);
            self.version.send_modify(|v| *v += 1);
        }
        Ok(())
    }

    async fn read(&self) -> Result<HashMap<String, BTreeMap<String, Subscription>>> {
        let mut map: HashMap<String, BTreeMap<String, Subscription>> = HashMap::new();
        for (key, value) in self.core.store.meta_list("sub/").await? {
            let rest = &key["sub/".len()..];
            let Some((queue, name)) = rest.rsplit_once('/') else {
                continue;
            };
            match serde_json::from_str::<Subscription>(&value)
                .map_err(|e| e.to_string())
                .and_then(|s| s.validate().map(|_| s).map_err(|e| e.to_string()))
            {
                Ok(s) => {
                    map.entry(queue.to_string())
                        .or_default()
                        .insert(name.to_string(), s);
                }
                Err(e) => tracing::error!(key, error = %e, "ignoring an unreadable subscription"),
            }
        }
        Ok(map)
    }

    /// Does this queue have subscriptions (so its messages are pushed, not pulled)?
    pub fn is_push(&self, queue: &str) -> bool {
        self.subs.read().get(queue).is_some_and(|m| !m.is_empty())
    }

    /// Changes whenever a subscription is created, changed or deleted.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Every subscription of every queue, by queue and name.
    pub fn all(&self) -> Vec<SubscriptionRef> {
        let subs = self.subs.read();
        let mut v = Vec::new();
        for (q, m) in subs.iter() {
            for (n, s) in m {
                v.push(SubscriptionRef {
                    queue: q.clone(),
                    name: n.clone(),
                    child: child_queue(q, n),
                    config: Arc::new(s.clone()),
                });
            }
        }
        v.sort_by(|a, b| (&a.queue, &a.name).cmp(&(&b.queue, &b.name)));
        v
    }

    /// The copy queues of a queue's subscriptions, each with what it selects (None: every
    /// message).
    /// A push queue's settings changed: its copy queues take the deduplication window (each
    /// copy queue deduplicates the push queue's publishes).
    pub(crate) async fn copy_settings(&self, queue: &str, config: &QueueConfig) -> Result<()> {
        let store = &self.core.store;
        for (child, _) in self.targets(queue) {
            let Some(c) = store.get_queue(&child).await? else {
                continue;
            };
            if c.config.dedup_window_seconds != config.dedup_window_seconds {
                let mut copy = c.config.clone();
                copy.dedup_window_seconds = config.dedup_window_seconds;
                store.put_queue(&child, copy, self.core.now()).await?;
            }
        }
        Ok(())
    }

    pub(crate) fn targets(&self, queue: &str) -> Vec<(String, Option<filter::Selector>)> {
        self.subs
            .read()
            .get(queue)
            .map(|m| {
                m.iter()
                    .map(|(n, s)| {
                        let selector = filter::Selector::of(&s.filter, &s.event_types);
                        (child_queue(queue, n), selector)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The copy queues of a queue's subscriptions.
    pub(crate) fn children(&self, queue: &str) -> Vec<String> {
        self.subs
            .read()
            .get(queue)
            .map(|m| m.keys().map(|n| child_queue(queue, n)).collect())
            .unwrap_or_default()
    }

    pub fn get(&self, queue: &str, name: &str) -> Result<Subscription> {
        self.subs
            .read()
            .get(queue)
            .and_then(|m| m.get(name))
            .cloned()
            .ok_or_else(|| EngineError::NotFound {
                what: "subscription",
                id: format!("{queue}/{name}"),
            })
    }

    /// One subscription as the senders see it.
    pub fn reference(&self, queue: &str, name: &str) -> Result<SubscriptionRef> {
        let config = self.get(queue, name)?;
        Ok(SubscriptionRef {
            queue: queue.to_string(),
            name: name.to_string(),
            child: child_queue(queue, name),
            config: Arc::new(config),
        })
    }

    /// The subscriptions of a queue (404 if the queue does not exist).
    pub async fn list(&self, queue: &str) -> Result<Vec<(String, Subscription)>> {
        validate_queue_name(queue)?;
        if self.core.store.get_queue(queue).await?.is_none() {
            return Err(EngineError::QueueNotFound(queue.to_string()));
        }
        Ok(self
            .subs
            .read()
            .get(queue)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    /// Create or replace a subscription; the queue is created if missing. Returns the stored
    /// subscription and whether it was created.
    pub async fn put(
        &self,
        queue: &str,
        name: &str,
        mut sub: Subscription,
    ) -> Result<(Subscription, bool)> {
        validate_queue_name(queue)?;
        validate_name("subscription name", name)?;
        sub.validate()?;
        let now = self.core.now();
        let existing = self.get(queue, name).ok();
        if existing.is_none()
            && self.subs.read().get(queue).map_or(0, |m| m.len())
                >= subscription::limits::SUBSCRIPTIONS_PER_QUEUE
        {
            return Err(EngineError::invalid(
                "subscription",
                format!(
                    "queue {queue:?} already has {} subscriptions, the limit",
                    subscription::limits::SUBSCRIPTIONS_PER_QUEUE
                ),
            ));
        }
        sub.created_at = existing.as_ref().map_or(now, |e| e.created_at);
        sub.updated_at = now;
        // A rotation in progress survives a replacement that keeps the secret.
        sub.previous_secret = existing
            .as_ref()
            .filter(|e| e.signing_secret == sub.signing_secret)
            .and_then(|e| e.previous_secret.clone());
        // Its state is not a setting: a replacement keeps a pause and a disable.
        sub.paused_at = existing.as_ref().and_then(|e| e.paused_at);
        sub.disabled = existing.as_ref().and_then(|e| e.disabled.clone());
        let store = &self.core.store;
        let parent = match store.get_queue(queue).await? {
            Some(q) => q,
            None => {
                store
                    .ensure_queue(queue, QueueConfig::default(), now)
                    .await?
                    .0
            }
        };
        let child = child_queue(queue, name);
        let child_config = QueueConfig {
            retention_seconds: parent.config.retention_seconds,
            max_message_bytes: crate::limits::MESSAGE_BYTES_CEILING,
            content_based_deduplication: parent.config.content_based_deduplication,
            // Each copy queue deduplicates what is published to the push queue.
            dedup_window_seconds: parent.config.dedup_window_seconds,
            // A paused queue's new subscription starts paused too (engine/pause.rs).
            paused_at: hold::copy_mark(parent.config.paused_at, &sub),
            ..QueueConfig::default()
        };
        let (_, fresh) = store.ensure_queue(&child, child_config, now).await?;
        if existing.is_none() && !fresh {
            // Copies left by a subscription of the same name that was being deleted.
            store.purge_queue(&child, now).await?;
        }
        self.save(queue, name, &sub).await?;
        Ok((sub, existing.is_none()))
    }

    /// Store a subscription's settings (durable on return) and announce the change.
    async fn save(&self, queue: &str, name: &str, sub: &Subscription) -> Result<()> {
        let json = serde_json::to_string(sub).expect("subscription serializes");
        self.core
            .store
            .meta_put(&meta_key(queue, name), Some(json))
            .await?;
        self.subs
            .write()
            .entry(queue.to_string())
            .or_default()
            .insert(name.to_string(), sub.clone());
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Delete a subscription and the copies of messages it had not delivered yet.
    pub async fn delete(&self, queue: &str, name: &str) -> Result<()> {
        validate_queue_name(queue)?;
        self.get(queue, name)?;
        // The copies first: a crash in between leaves the subscription, not orphan copies.
        self.core
            .store
            .delete_queue(&child_queue(queue, name))
            .await?;
        self.forget_circuit(queue, name).await?;
        self.core
            .store
            .meta_put(&meta_key(queue, name), None)
            .await?;
        {
            let mut subs = self.subs.write();
            if let Some(m) = subs.get_mut(queue) {
                m.remove(name);
                if m.is_empty() {
                    subs.remove(queue);
                }
            }
        }
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Delete a subscription but keep what it had not delivered: when it is the queue's last
    /// subscription, its copies return to the queue itself (for pulling); otherwise they are
    /// dropped like with [`Push::delete`].
    pub async fn delete_keeping_copies(&self, queue: &str, name: &str) -> Result<()> {
        let last = self.subs.read().get(queue).is_some_and(|m| m.len() == 1);
        if last {
            let child = child_queue(queue, name);
            let now = self.core.now();
            let pending = self.core.store.peek(&child, usize::MAX, now).await?;
            for chunk in pending.chunks(crate::limits::PUBLISH_BATCH_MAX) {
                let batch: Vec<NewMessage> = chunk
                    .iter()
                    .map(|m| NewMessage {
                        id: m.id,
                        body: m.body.clone(),
                        attributes: m.attributes.clone(),
                        enqueued_at: m.enqueued_at,
                        delay_ms: Some(0),
                        group: m.group.clone(),
                        dedup_id: None,
                        priority: m.priority,
                        expires_at: m.expires_at,
                    })
                    .collect();
                self.core.store.publish(queue, &batch, now).await?;
            }
        }
        self.delete(queue, name).await
    }

    /// A deleted queue takes its subscriptions with it.
    pub(crate) async fn drop_queue(&self, queue: &str) -> Result<()> {
        let names: Vec<String> = self
            .subs
            .read()
            .get(queue)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for n in names {
            self.forget_circuit(queue, &n).await?;
            self.core.store.meta_put(&meta_key(queue, &n), None).await?;
            self.core
                .store
                .delete_queue(&child_queue(queue, &n))
                .await?;
        }
        if self.subs.write().remove(queue).is_some() {
            self.version.send_modify(|v| *v += 1);
        }
        Ok(())
    }

    /// Set a subscription's counters (delivered, retried, throttled, failed, ...) back to zero.
    /// Replacing a subscription's settings keeps them; this is the explicit reset.
    pub async fn reset_stats(&self, queue: &str, name: &str) -> Result<()> {
        self.get(queue, name)?;
        self.core
            .store
            .reset_counters(&child_queue(queue, name), self.core.now())
            .await
    }

    /// The (delivered, failed) counts of the copies carrying tally key `key` (attribute
    /// `sluice-tally`) of subscription `name` of `queue`: exact across restarts.
    pub async fn tally(&self, queue: &str, name: &str, key: &str) -> Result<(u64, u64)> {
        match self.core.store.tally(&child_queue(queue, name), key).await {
            Err(EngineError::QueueNotFound(_)) => Ok((0, 0)),
            r => r,
        }
    }

    /// Forget tally key `key` in every subscription of `queue` (its producer is done).
    pub async fn forget_tally(&self, queue: &str, key: &str) -> Result<()> {
        for child in self.children(queue) {
            match self.core.store.tally_forget(&child, key).await {
                Ok(()) | Err(EngineError::QueueNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Stats of a subscription's copy queue (its backlog and its delivery counters).
    pub async fn child_stats(&self, child: &str) -> Result<QueueStats> {
        self.core.store.stats(child, self.core.now()).await
    }
}
