//! The engine: what every front end calls. It validates input against the documented limits,
//! creates queues on first publish, turns receives into long polls, and runs periodic
//! housekeeping. The queue rules themselves (leases, receipts, dead letters) are applied
//! atomically by the [`Store`].
//!
//! Long polling: each queue has a [`Notify`]. A waiting receive registers interest *before* it
//! looks at the store, so a publish between the look and the wait still wakes it; publishes wake
//! one waiter per message (not all of them), and a waiter also sleeps no longer than the queue's
//! next due time (a delay ending or a lease expiring), so nothing spins.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::clock::{Clock, Millis};
use crate::error::{EngineError, Result};
use crate::model::{
    limits, message_size, range, validate_queue_name, Attributes, Delivery, Message, MessageId,
    NewMessage, Placement, QueueConfig, QueueConfigPatch, QueueInfo, QueueStats, Receipt,
    ReceiptResult,
};
use crate::store::{Store, StoreInfo};

/// Server-wide engine options.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The largest message any queue may accept (queues default to 256 KiB).
    pub max_message_bytes: u32,
    /// Receives allowed to wait at once, over all queues.
    pub max_waiters: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_message_bytes: 1024 * 1024,
            max_waiters: 10_000,
        }
    }
}

/// One message to publish.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    pub body: Vec<u8>,
    pub attributes: Attributes,
    /// None: the queue's default delay. Not allowed per message on FIFO queues.
    pub delay_seconds: Option<u32>,
    /// FIFO message group (required on FIFO queues).
    pub group: Option<String>,
    /// FIFO deduplication id (or the queue's content-based deduplication).
    pub dedup_id: Option<String>,
}

/// One message published under a caller-chosen id ([`Engine::publish_keyed`]).
#[derive(Debug, Clone)]
pub struct KeyedPublish {
    pub id: MessageId,
    pub body: Vec<u8>,
    pub attributes: Attributes,
}

/// A receive request.
#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    pub max_messages: usize,
    /// None: the queue's `receive_wait_seconds`.
    pub wait_seconds: Option<u32>,
    /// None: the queue's visibility timeout.
    pub visibility_timeout_seconds: Option<u32>,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            max_messages: 1,
            wait_seconds: None,
            visibility_timeout_seconds: None,
        }
    }
}

pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    opts: EngineOptions,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    waiters: AtomicUsize,
    pub(crate) shutdown: watch::Sender<bool>,
    started_at: Millis,
    shared: bool,
    /// Shared stores: this node's identity and description, and the nodes seen alive.
    node: Mutex<Option<(String, String)>>,
    nodes: Mutex<Vec<String>>,
    /// When housekeeping last re-read shared settings (a shared store).
    refreshed_at: std::sync::atomic::AtomicI64,
    pub(crate) push: crate::push::PushState,
    pub(crate) timers: crate::timers::TimerState,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, opts: EngineOptions) -> Arc<Engine> {
        let (shutdown, _) = watch::channel(false);
        let started_at = clock.now_ms();
        let remote = store.remote_wakeups();
        let engine = Arc::new(Engine {
            shared: remote.is_some(),
            node: Mutex::new(None),
            nodes: Mutex::new(Vec::new()),
            refreshed_at: std::sync::atomic::AtomicI64::new(i64::MIN / 2),
            store,
            clock,
            opts,
            wakers: Mutex::new(HashMap::new()),
            waiters: AtomicUsize::new(0),
            shutdown,
            started_at,
            push: Default::default(),
            timers: Default::default(),
        });
        if let Some(rx) = remote {
            engine.follow_other_nodes(rx);
        }
        engine
    }

    /// A shared store (Redis) tells us what other nodes did: wake long polls for queues that
    /// got messages, and re-read subscriptions, schedules and timers when they changed.
    fn follow_other_nodes(self: &Arc<Self>, mut rx: tokio::sync::broadcast::Receiver<String>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        rt.spawn(async move {
            loop {
                let msg = rx.recv().await;
                let Some(engine) = weak.upgrade() else { return };
                match msg {
                    Ok(m) => {
                        if let Some(q) = m.strip_prefix("q:") {
                            engine.wake(q, 1);
                        } else if m.starts_with("meta:sub/") {
                            if let Err(e) = engine.reload_subscriptions().await {
                                tracing::warn!(error = %e, "could not re-read subscriptions");
                            }
                        } else if m.starts_with("meta:schedule/") {
                            if let Err(e) = engine.load_schedules().await {
                                tracing::warn!(error = %e, "could not re-read schedules");
                            }
                        } else {
                            // The listener reconnected: wake-ups may have been missed.
                            for w in engine.wakers.lock().values() {
                                w.notify_waiters();
                            }
                            engine.refresh_shared().await;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        for w in engine.wakers.lock().values() {
                            w.notify_waiters();
                        }
                        engine.refresh_shared().await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Name this node for the others on a shared store (`id` unique, `info` a JSON description).
    pub fn set_node(&self, id: String, info: String) {
        *self.node.lock() = Some((id, info));
    }

    /// Descriptions (JSON) of the nodes alive on a shared store, this one included once it
    /// has ticked; empty for a store only this process uses.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.lock().clone()
    }

    /// Whether other nodes share this store (and so its settings may change under us).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Re-read what other nodes may have changed: subscriptions, schedules, timers.
    pub async fn refresh_shared(&self) {
        if let Err(e) = self.reload_subscriptions().await {
            tracing::warn!(error = %e, "could not re-read subscriptions");
        }
        if let Err(e) = self.load_timers().await {
            tracing::warn!(error = %e, "could not re-read timers and schedules");
        }
    }

    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
    pub fn started_at(&self) -> Millis {
        self.started_at
    }
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }
    pub fn store_info(&self) -> StoreInfo {
        self.store.info()
    }
    /// Receives currently waiting for messages.
    pub fn waiting(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        let mut w = self.wakers.lock();
        if let Some(n) = w.get(queue) {
            return n.clone();
        }
        let n = Arc::new(Notify::new());
        w.insert(queue.to_string(), n.clone());
        n
    }

    pub(crate) fn wake(&self, queue: &str, n: usize) {
        let w = self.waker(queue);
        for _ in 0..n.min(limits::RECEIVE_BATCH_MAX) {
            w.notify_one();
        }
    }

    // ---- queues ----

    /// Create the queue or update its configuration with `patch`. Returns the queue and whether
    /// it was created. A named dead-letter queue that does not exist yet is created with defaults.
    pub async fn put_queue(
        &self,
        name: &str,
        patch: QueueConfigPatch,
    ) -> Result<(QueueInfo, bool)> {
        validate_queue_name(name)?;
        let existing = self.store.get_queue(name).await?;
        let base = existing.map(|q| q.config).unwrap_or_default();
        let config = patch.apply(&base);
        config.validate(name, self.opts.max_message_bytes)?;
        let now = self.now();
        if let Some(dlq) = &config.dead_letter_queue {
            self.store
                .ensure_queue(dlq, QueueConfig::default(), now)
                .await?;
        }
        self.store.put_queue(name, config, now).await
    }

    pub async fn get_queue(&self, name: &str) -> Result<(QueueInfo, QueueStats)> {
        validate_queue_name(name)?;
        let info = self
            .store
            .get_queue(name)
            .await?
            .ok_or_else(|| EngineError::QueueNotFound(name.to_string()))?;
        let stats = self.store.stats(name, self.now()).await?;
        Ok((info, stats))
    }

    /// A queue's definition, without computing its stats.
    pub async fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        validate_queue_name(name)?;
        self.store
            .get_queue(name)
            .await?
            .ok_or_else(|| EngineError::QueueNotFound(name.to_string()))
    }

    /// Every queue's definition, by name, without stats.
    pub async fn queue_infos(&self) -> Result<Vec<QueueInfo>> {
        let mut v = self.store.list_queues().await?;
        v.retain(|q| !crate::push::is_internal(&q.name));
        Ok(v)
    }

    pub async fn list_queues(&self) -> Result<Vec<(QueueInfo, QueueStats)>> {
        let now = self.now();
        let mut out = Vec::new();
        for q in self.queue_infos().await? {
            match self.store.stats(&q.name, now).await {
                Ok(s) => out.push((q, s)),
                Err(EngineError::QueueNotFound(_)) => {} // deleted meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        if !self.store.delete_queue(name).await? {
            return Err(EngineError::QueueNotFound(name.to_string()));
        }
        self.drop_subscriptions(name).await?;
        // Waiting receives find the queue gone and answer so.
        if let Some(w) = self.wakers.lock().remove(name) {
            w.notify_waiters();
        }
        Ok(())
    }

    /// Remove every message of the queue (on a push queue, also every undelivered copy of
    /// its subscriptions; the count is of the queue's own messages plus the copies).
    pub async fn purge(&self, name: &str) -> Result<u64> {
        validate_queue_name(name)?;
        let mut n = self.store.purge_queue(name, self.now()).await?;
        for s in self
            .all_subscriptions()
            .into_iter()
            .filter(|s| s.queue == name)
        {
            n += self.store.purge_queue(&s.child, self.now()).await?;
        }
        Ok(n)
    }

    pub async fn stats(&self, name: &str) -> Result<QueueStats> {
        validate_queue_name(name)?;
        self.store.stats(name, self.now()).await
    }

    // ---- messages ----

    /// Publish one or more messages; the queue is created with defaults if missing. Returns
    /// the ids, in order, once all of them are durable.
    pub async fn publish(&self, queue: &str, messages: Vec<Publish>) -> Result<Vec<MessageId>> {
        validate_queue_name(queue)?;
        if messages.is_empty() {
            return Err(EngineError::invalid(
                "messages",
                "must contain at least 1 message",
            ));
        }
        if messages.len() > limits::PUBLISH_BATCH_MAX {
            return Err(EngineError::invalid(
                "messages",
                format!(
                    "contains {} messages; the limit is {} per request",
                    messages.len(),
                    limits::PUBLISH_BATCH_MAX
                ),
            ));
        }
        let now = self.now();
        let fifo = crate::model::is_fifo(queue);
        let content_dedup = if fifo {
            self.store
                .get_queue(queue)
                .await?
                .map(|q| q.config.content_based_deduplication)
                .unwrap_or(false)
        } else {
            false
        };
        let single = messages.len() == 1;
        let mut batch = Vec::with_capacity(messages.len());
        for (i, m) in messages.into_iter().enumerate() {
            let field = |f: &str| {
                if single {
                    f.to_string()
                } else {
                    format!("messages[{i}].{f}")
                }
            };
            if let Some(d) = m.delay_seconds {
                range(
                    &field("delay_seconds"),
                    d as u64,
                    0,
                    limits::DELAY_MAX_S as u64,
                )?;
            }
            validate_attributes(&m.attributes, &field("attributes"))?;
            for (name, v) in [
                ("message_group_id", &m.group),
                ("deduplication_id", &m.dedup_id),
            ] {
                if let Some(v) = v {
                    validate_fifo_id(v, &field(name))?;
                }
            }
            let dedup_id = if fifo {
                if m.group.is_none() {
                    return Err(EngineError::invalid(
                        field("message_group_id"),
                        "is required on FIFO queues",
                    ));
                }
                if m.delay_seconds.is_some_and(|d| d > 0) {
                    return Err(EngineError::invalid(
                        field("delay_seconds"),
                        "FIFO queues take no per-message delay (set the queue's delay_seconds)",
                    ));
                }
                match (&m.dedup_id, content_dedup) {
                    (Some(d), _) => Some(d.clone()),
                    (None, true) => Some(sha256_hex(&m.body)),
                    (None, false) => {
                        return Err(EngineError::invalid(
                            field("deduplication_id"),
                            "is required on a FIFO queue without content_based_deduplication",
                        ))
                    }
                }
            } else {
                if m.dedup_id.is_some() {
                    return Err(EngineError::invalid(
                        field("deduplication_id"),
                        "applies only to FIFO queues (names ending in .fifo)",
                    ));
                }
                None
            };
            let size = message_size(&m.body, &m.attributes);
            if size > self.opts.max_message_bytes as usize {
                return Err(EngineError::MessageTooLarge {
                    size,
                    limit: self.opts.max_message_bytes as usize,
                });
            }
            batch.push(NewMessage {
                id: MessageId::new_v7(),
                body: m.body,
                attributes: m.attributes,
                enqueued_at: now,
                delay_ms: m.delay_seconds.map(|d| d as u64 * 1000),
                group: m.group,
                dedup_id,
            });
        }
        self.append(queue, batch, now).await
    }

    /// Store validated messages: fanned out on a push queue, else appended (creating the
    /// queue with defaults if missing); long polls are woken.
    async fn append(
        &self,
        queue: &str,
        batch: Vec<NewMessage>,
        now: Millis,
    ) -> Result<Vec<MessageId>> {
        if self.is_push(queue) {
            return self.fan_out(queue, batch).await;
        }
        let ids = match self.store.publish(queue, batch.clone(), now).await {
            Err(EngineError::QueueNotFound(_)) => {
                self.store
                    .ensure_queue(queue, QueueConfig::default(), now)
                    .await?;
                self.store.publish(queue, batch, now).await?
            }
            other => other?,
        };
        self.wake(queue, ids.len());
        Ok(ids)
    }

    /// Publish messages under ids the caller derived deterministically (file ingestion: the
    /// file's hash and the row's key). Each id doubles as the deduplication id, so a producer
    /// that repeats a batch after a crash (within the 5-minute window) stores every message
    /// once, and push deliveries carry the same `webhook-id` whatever happens. On a FIFO queue
    /// every message goes to `group`. The queue is created with defaults if missing.
    pub async fn publish_keyed(
        &self,
        queue: &str,
        messages: Vec<KeyedPublish>,
        group: &str,
    ) -> Result<Vec<MessageId>> {
        validate_queue_name(queue)?;
        let fifo = crate::model::is_fifo(queue);
        if fifo {
            validate_fifo_id(group, "message_group_id")?;
        }
        let now = self.now();
        let mut batch = Vec::with_capacity(messages.len());
        for m in messages {
            validate_attributes(&m.attributes, "attributes")?;
            let size = message_size(&m.body, &m.attributes);
            if size > self.opts.max_message_bytes as usize {
                return Err(EngineError::MessageTooLarge {
                    size,
                    limit: self.opts.max_message_bytes as usize,
                });
            }
            batch.push(NewMessage {
                id: m.id,
                body: m.body,
                attributes: m.attributes,
                enqueued_at: now,
                delay_ms: None,
                group: fifo.then(|| group.to_string()),
                dedup_id: Some(m.id.to_string()),
            });
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.append(queue, batch, now).await
    }

    /// Receive up to `max_messages`, waiting up to `wait_seconds` for the first one.
    pub async fn receive(&self, queue: &str, opts: ReceiveOptions) -> Result<Vec<Delivery>> {
        validate_queue_name(queue)?;
        range(
            "max_messages",
            opts.max_messages as u64,
            1,
            limits::RECEIVE_BATCH_MAX as u64,
        )?;
        if let Some(w) = opts.wait_seconds {
            range("wait_seconds", w as u64, 0, limits::WAIT_MAX_S as u64)?;
        }
        if let Some(v) = opts.visibility_timeout_seconds {
            range(
                "visibility_timeout_seconds",
                v as u64,
                0,
                limits::VISIBILITY_TIMEOUT_MAX_S as u64,
            )?;
        }
        if self.is_push(queue) {
            return Err(EngineError::PushQueue(queue.to_string()));
        }
        // The queue's defaults (this lookup also answers 404 for unknown queues before waiting).
        let config = self
            .store
            .get_queue(queue)
            .await?
            .ok_or_else(|| EngineError::QueueNotFound(queue.to_string()))?
            .config;
        let visibility_s = opts
            .visibility_timeout_seconds
            .unwrap_or(config.visibility_timeout_seconds);
        let wait_seconds = opts.wait_seconds.unwrap_or(config.receive_wait_seconds);
        let visibility_ms = visibility_s as u64 * 1000;
        if wait_seconds == 0 {
            return self
                .store
                .receive(queue, opts.max_messages, visibility_ms, self.now())
                .await;
        }
        if self.waiters.fetch_add(1, Ordering::SeqCst) >= self.opts.max_waiters {
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::TooManyWaiters {
                limit: self.opts.max_waiters,
            });
        }
        let _guard = WaiterGuard(&self.waiters);
        // Only existing queues get a waker (so unknown names cannot grow the map).
        if opts.visibility_timeout_seconds.is_some() && self.store.get_queue(queue).await?.is_none()
        {
            return Err(EngineError::QueueNotFound(queue.to_string()));
        }
        self.wait_receive(
            queue,
            opts.max_messages,
            visibility_ms,
            wait_seconds as u64 * 1000,
        )
        .await
    }

    /// The long poll: receive, or wait for a publish, a due delay or the deadline. Used by
    /// [`Engine::receive`] and the push workers (which skip its validation and waiter limit).
    pub(crate) async fn wait_receive(
        &self,
        queue: &str,
        max: usize,
        visibility_ms: u64,
        wait_ms: u64,
    ) -> Result<Vec<Delivery>> {
        let deadline = self.now() + wait_ms as i64;
        let waker = self.waker(queue);
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let notified = waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.now();
            let got = self.store.receive(queue, max, visibility_ms, now).await?;
            if !got.is_empty() {
                if got.len() == max {
                    // There may be more: pass the turn on to another waiter.
                    waker.notify_one();
                }
                return Ok(got);
            }
            if now >= deadline || *shutdown.borrow() {
                return Ok(got);
            }
            let until = match self.store.next_due(queue, now).await? {
                Some(t) => t.min(deadline),
                None => deadline,
            };
            tokio::select! {
                _ = &mut notified => {}
                _ = self.clock.sleep_until(until) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    pub async fn ack(&self, queue: &str, receipts: &[String]) -> Result<Vec<ReceiptResult>> {
        validate_queue_name(queue)?;
        check_receipt_count(receipts.len())?;
        let out = self
            .per_receipt(receipts, |rs| async move {
                self.store.ack(queue, &rs, self.now()).await
            })
            .await?;
        if crate::model::is_fifo(queue) && out.iter().any(|r| r.is_ok()) {
            // Settling unlocks a message group: a waiting receive may take its next message.
            self.wake(queue, out.len());
        }
        Ok(out)
    }

    pub async fn nack(
        &self,
        queue: &str,
        receipts: &[String],
        delay_seconds: u32,
        placement: Placement,
    ) -> Result<Vec<ReceiptResult>> {
        validate_queue_name(queue)?;
        check_receipt_count(receipts.len())?;
        range(
            "delay_seconds",
            delay_seconds as u64,
            0,
            limits::DELAY_MAX_S as u64,
        )?;
        let out = self
            .per_receipt(receipts, |rs| async move {
                self.store
                    .nack(
                        queue,
                        &rs,
                        delay_seconds as u64 * 1000,
                        placement,
                        self.now(),
                    )
                    .await
            })
            .await?;
        let released = out.iter().filter(|r| r.is_ok()).count();
        if released > 0 {
            // With a delay, a waiting receive must re-plan its sleep around the new due time.
            self.wake(queue, released);
        }
        Ok(out)
    }

    /// Decode receipts, run `op` on the decodable ones, and merge results in request order.
    async fn per_receipt<F, Fut>(&self, receipts: &[String], op: F) -> Result<Vec<ReceiptResult>>
    where
        F: FnOnce(Vec<Receipt>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<ReceiptResult>>>,
    {
        let decoded: Vec<Result<Receipt>> = receipts.iter().map(|r| Receipt::decode(r)).collect();
        let good: Vec<Receipt> = decoded
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        let mut results = if good.is_empty() {
            Vec::new()
        } else {
            op(good).await?
        }
        .into_iter();
        Ok(decoded
            .into_iter()
            .map(|d| match d {
                Ok(_) => results.next().expect("one result per receipt"),
                Err(e) => Err(e),
            })
            .collect())
    }

    /// Set the lease of a received message to end `timeout_seconds` from now (0 releases it).
    pub async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout_seconds: u32,
    ) -> Result<Millis> {
        validate_queue_name(queue)?;
        range(
            "visibility_timeout_seconds",
            timeout_seconds as u64,
            0,
            limits::VISIBILITY_TIMEOUT_MAX_S as u64,
        )?;
        let r = Receipt::decode(receipt)?;
        let now = self.now();
        if timeout_seconds == 0 {
            // A zero timeout releases the message: that is a nack, for every store.
            let result = self
                .store
                .nack(queue, &[r], 0, Placement::Back, now)
                .await?;
            result.into_iter().next().expect("one result")?;
            self.wake(queue, 1);
            return Ok(now);
        }
        self.store
            .change_visibility(queue, r, timeout_seconds as u64 * 1000, now)
            .await
    }

    pub async fn peek(&self, queue: &str, limit: usize) -> Result<Vec<Message>> {
        validate_queue_name(queue)?;
        range("limit", limit as u64, 1, limits::PEEK_MAX as u64)?;
        self.store.peek(queue, limit, self.now()).await
    }

    /// Move dead letters back to their source queue(s). See [`Store::redrive`].
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
        let only: std::collections::HashSet<MessageId> = ids.iter().copied().collect();
        self.redrive_only(queue, only.len(), Some(&only)).await
    }

    async fn redrive_only(
        &self,
        queue: &str,
        max: usize,
        only: Option<&std::collections::HashSet<MessageId>>,
    ) -> Result<u64> {
        validate_queue_name(queue)?;
        let mut n = self.store.redrive(queue, max, only, self.now()).await?;
        if (n as usize) < max {
            n += self.redrive_push(queue, max - n as usize, only).await?;
        }
        if n > 0 {
            // Sources are not known here; wake everyone cheaply (redrive is rare).
            for w in self.wakers.lock().values() {
                w.notify_waiters();
            }
        }
        Ok(n)
    }

    // ---- settings ----

    /// Store a small durable setting outside any queue (front ends' own state, such as file
    /// ingestion checkpoints); `None` removes it. Durable on return.
    pub async fn store_meta_put(&self, key: &str, value: Option<String>) -> Result<()> {
        self.store.meta_put(key, value).await
    }

    /// Every setting whose key starts with `prefix`, sorted by key.
    pub async fn store_meta_list(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        self.store.meta_list(prefix).await
    }

    // ---- lifecycle ----

    /// One housekeeping pass (tests call this after moving the clock).
    pub async fn tick(&self) -> Result<()> {
        if self.shared {
            // Announcements cover changes at once; this catches any missed (every 10 s).
            let now = self.now();
            let last = self.refreshed_at.load(Ordering::Relaxed);
            if now - last >= 10_000
                && self
                    .refreshed_at
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.refresh_shared().await;
            }
            let me = self.node.lock().clone();
            if let Some((id, info)) = me {
                match self.store.heartbeat(&id, info, self.now()).await {
                    Ok(alive) => *self.nodes.lock() = alive,
                    Err(e) => tracing::warn!(error = %e, "node heartbeat failed"),
                }
            }
        }
        let woke = self.store.tick(self.now()).await?;
        for q in woke {
            self.wake(&q, limits::RECEIVE_BATCH_MAX);
        }
        Ok(())
    }

    /// Run housekeeping every second until shutdown.
    pub fn spawn_housekeeping(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut shutdown = engine.shutdown.subscribe();
            loop {
                let next = engine.now() + 1000;
                tokio::select! {
                    _ = engine.clock.sleep_until(next) => {}
                    _ = shutdown.changed() => return,
                }
                if let Err(e) = engine.tick().await {
                    tracing::warn!(error = %e, "housekeeping failed");
                }
            }
        })
    }

    /// Becomes true when shutdown begins (background workers stop on it).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stop waiting receives (they answer with what they have) and housekeeping.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Make everything durable and stop the store.
    pub async fn close(&self) -> Result<()> {
        self.begin_shutdown();
        self.store.close().await
    }
}

struct WaiterGuard<'a>(&'a AtomicUsize);
impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn check_receipt_count(n: usize) -> Result<()> {
    range("receipts", n as u64, 1, limits::ACK_BATCH_MAX as u64).map_err(|_| {
        EngineError::invalid(
            "receipts",
            format!(
                "contains {n} receipts; must be between 1 and {}",
                limits::ACK_BATCH_MAX
            ),
        )
    })
}

fn sha256_hex(body: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// FIFO group and deduplication ids: 1-128 printable ASCII characters (as SQS allows).
fn validate_fifo_id(v: &str, field: &str) -> Result<()> {
    if v.is_empty() || v.len() > limits::FIFO_ID_MAX || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(EngineError::invalid(
            field,
            format!(
                "must be 1 to {} printable ASCII characters (letters, digits, punctuation)",
                limits::FIFO_ID_MAX
            ),
        ));
    }
    Ok(())
}

fn validate_attributes(attrs: &Attributes, field: &str) -> Result<()> {
    if attrs.len() > limits::ATTRIBUTES_MAX {
        return Err(EngineError::invalid(
            field,
            format!(
                "has {} attributes; the limit is {}",
                attrs.len(),
                limits::ATTRIBUTES_MAX
            ),
        ));
    }
    for k in attrs.keys() {
        if k.is_empty() || k.len() > limits::ATTRIBUTE_NAME_MAX {
            return Err(EngineError::invalid(
                field,
                format!(
                    "attribute name {:?} must have 1 to {} bytes",
                    k.chars().take(40).collect::<String>(),
                    limits::ATTRIBUTE_NAME_MAX
                ),
            ));
        }
    }
    Ok(())
}
