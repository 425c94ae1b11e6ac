//! The engine: what every front end calls. `Engine` is the queue API (this folder: queues in
//! `queues.rs`, messages in `messages.rs`, pausing a queue in `pause.rs`), plus two services reached through it:
//! [`Engine::push`] (subscriptions and the push senders' calls) and [`Engine::timers`] (timers
//! and cron schedules). It validates input against the documented limits, creates queues on
//! first publish, turns receives into long polls (`core.rs`), and runs periodic housekeeping.
//! The queue rules themselves (leases, receipts, dead letters) are applied atomically by the
//! [`Store`].
//!
//! **Architecture invariant:** the engine holds no queue state of its own apart from wake-up
//! plumbing and caches of settings; everything that must survive is in the store.

mod due;
mod messages;
mod nodes;
mod pause;
mod publish;
mod queues;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::clock::{Clock, Millis};
use crate::core::Core;
use crate::error::Result;
use crate::history::History;
use crate::limits;
use crate::model::Receipt;
use crate::push::Push;
use crate::receipts::ReceiptKey;
use crate::store::{Store, StoreInfo};
use crate::timers::Timers;

pub use self::due::DueTimer;
pub use self::messages::ReceiveOptions;
pub use self::publish::{IfMissing, KeyedPublish, Publish, Published};
pub use self::queues::{CopyCounts, DeadLettersHeld, QueueCounts};

/// Server-wide engine options.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The largest message any queue may accept (queues default to 256 KiB).
    pub max_message_bytes: u32,
    /// Receives allowed to wait at once, over all queues.
    pub max_waiters: usize,
    /// Queues may be created on first use (a publish to a missing queue) only while fewer
    /// than this many exist, so that the rest of the store's limit stays for queues created
    /// on purpose (`put_queue`). None: up to the store's limit.
    pub max_queues_on_use: Option<usize>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_message_bytes: 1024 * 1024,
            max_waiters: 10_000,
            max_queues_on_use: None,
        }
    }
}

pub struct Engine {
    core: Arc<Core>,
    opts: EngineOptions,
    /// Receives waiting now (against `max_waiters`).
    waiters: AtomicUsize,
    started_at: Millis,
    push: Arc<Push>,
    timers: Arc<Timers>,
    nodes: nodes::Nodes,
    /// Seals the receipts clients get (the store's key).
    receipts: ReceiptKey,
    /// Held while a queue is created on use, so the count checked against
    /// `max_queues_on_use` is still the count when the queue is made (one node; nodes sharing
    /// a Redis store may each create one past it at the same moment).
    creating: tokio::sync::Mutex<()>,
    /// Queues by whether they have `max_in_flight_per_group` (read on the first ack; kept
    /// current by `put_queue`): only then does an ack wake waiting receives.
    group_limited: parking_lot::Mutex<std::collections::HashMap<String, bool>>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, opts: EngineOptions) -> Arc<Engine> {
        let remote = store.remote_wakeups();
        let receipts = ReceiptKey::new(store.receipt_key());
        let core = Arc::new(Core::new(store, clock));
        let history = Arc::new(History::new(core.clone()));
        let engine = Arc::new(Engine {
            started_at: core.now(),
            push: Arc::new(Push::new(core.clone(), history.clone())),
            timers: Arc::new(Timers::new(core.clone(), history)),
            core,
            opts,
            waiters: AtomicUsize::new(0),
            nodes: nodes::Nodes::default(),
            receipts,
            creating: tokio::sync::Mutex::new(()),
            group_limited: Default::default(),
        });
        if let Some(rx) = remote {
            engine.follow_other_nodes(rx);
        }
        engine
    }

    /// The receipt a client gets for lease `r` of a message of `queue`: sealed, so that only
    /// this data set's servers can make one (`receipts.rs`).
    pub fn receipt(&self, queue: &str, r: &Receipt) -> String {
        self.receipts.seal(queue, r)
    }

    /// Subscriptions, fan-out and the push senders' calls.
    pub fn push(&self) -> &Arc<Push> {
        &self.push
    }

    /// Timers and cron schedules.
    pub fn timers(&self) -> &Arc<Timers> {
        &self.timers
    }

    /// Load what the store keeps outside queues: subscriptions, timers, schedules (at start).
    pub async fn load(&self) -> Result<()> {
        self.push.load().await?;
        self.sync_pauses().await?;
        self.timers.load().await
    }

    pub fn now(&self) -> Millis {
        self.core.now()
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.core.clock
    }
    pub fn started_at(&self) -> Millis {
        self.started_at
    }
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }
    pub fn store_info(&self) -> StoreInfo {
        self.core.store.info()
    }
    /// Receives currently waiting for messages.
    pub fn waiting(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }
    /// Whether other nodes share this store (and so its settings may change under us).
    pub fn is_shared(&self) -> bool {
        self.core.shared
    }

    /// The store itself (the conformance suite checks settings and the archive directly).
    #[cfg(feature = "test-support")]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.core.store
    }

    /// Store a small durable setting outside any queue (front ends' own state, such as file
    /// ingestion checkpoints); `None` removes it. Durable on return.
    pub async fn store_meta_put(&self, key: &str, value: Option<String>) -> Result<()> {
        self.core.store.meta_put(key, value).await
    }

    /// Every setting whose key starts with `prefix`, sorted by key.
    pub async fn store_meta_list(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        self.core.store.meta_list(prefix).await
    }

    /// One housekeeping pass (tests call this after moving the clock).
    pub async fn tick(&self) -> Result<()> {
        if self.core.shared {
            self.tick_shared().await;
        }
        let woke = self.core.store.tick(self.now()).await?;
        for q in woke {
            self.core.wake(&q, limits::RECEIVE_BATCH_MAX);
        }
        Ok(())
    }

    /// Run housekeeping every second until shutdown.
    pub fn spawn_housekeeping(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut shutdown = engine.core.shutdown.subscribe();
            loop {
                let next = engine.now() + 1000;
                tokio::select! {
                    _ = engine.core.clock.sleep_until(next) => {}
                    _ = shutdown.changed() => return,
                }
                if let Err(e) = engine.tick().await {
                    tracing::warn!(error = %e, "housekeeping failed");
                }
            }
        })
    }

    /// Run the cron scheduler until shutdown.
    pub fn spawn_scheduler(&self) -> tokio::task::JoinHandle<()> {
        self.timers.spawn_scheduler()
    }

    /// Becomes true when shutdown begins (background workers stop on it).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.core.shutdown.subscribe()
    }

    /// Stop waiting receives (they answer with what they have) and housekeeping.
    pub fn begin_shutdown(&self) {
        let _ = self.core.shutdown.send(true);
    }

    /// Make everything durable and stop the store.
    pub async fn close(&self) -> Result<()> {
        self.begin_shutdown();
        self.core.store.close().await
    }
}
