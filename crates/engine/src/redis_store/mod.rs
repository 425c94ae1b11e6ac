//! The Redis backend, `RedisStore`: several sluice nodes share one Redis server or Redis
//! Cluster and act as one server. Each node is stateless apart from caches.
//!
//! **Atomicity.** Every `Store` call that changes a queue is one Lua script over that queue's
//! keys (`*.lua` in this directory, each prefixed with `prelude.lua`; loaded once and called by
//! SHA). All keys of a queue share one hash tag, so a queue lives in one cluster slot and
//! queues spread over the cluster. A subscription's internal queue (`orders~sub`) shares the
//! tag of its queue (`orders`), so fan-out stays in one slot.
//!
//! **Moves between queues** (dead-lettering, redrive) cross slots, so they cannot be one
//! script. The source's script parks the message in its outbox (`ob`); then `adopt` puts it
//! into the target (idempotent: it checks the id), and `outbox_done` removes it from the
//! source. A node that dies half-way leaves the move in the outbox, and housekeeping on any
//! node finishes it.
//!
//! **Time** comes from the callers (`now`), like every store: leases and delays are absolute
//! moments stored in sorted sets, so any node can expire them; nothing has a leader.
//!
//! **Wake-ups.** A script that makes messages ready publishes `q:QUEUE` on the channel
//! `PREFIX/wake`; every node subscribes and wakes its long polls. `meta:KEY` on the same
//! channel says a subscription or schedule changed; timer outcomes are read on demand.
//!
//! **Durability** is Redis's: with `appendfsync always` a script's writes are on disk before
//! its reply. `wait_replicas` adds a `WAIT` after every change.
//! See docs/scaling.md for deployment, key layout and durability modes.

mod codec;
mod conn;
mod reply;
mod scripts;
mod side;
mod store_impl;
#[cfg(feature = "test-support")]
pub mod testing;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::error::{EngineError, Result};

use self::conn::Conn;
use self::reply::unavailable;

/// Options of the Redis store.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://HOST:PORT[/DB]` for one server; `redis+cluster://HOST:PORT[,HOST:PORT...]` for
    /// a cluster (any reachable seed nodes).
    pub url: String,
    /// Every key starts with this (several sluice deployments can share one Redis).
    pub prefix: String,
    /// After every change, wait until this many replicas have it (Redis `WAIT`); 0: don't.
    pub wait_replicas: u32,
    /// How long a `WAIT` may take before the request fails with 503.
    pub wait_timeout_ms: u64,
    pub max_queues: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "sluice".into(),
            wait_replicas: 0,
            wait_timeout_ms: 1000,
            max_queues: 10_000,
        }
    }
}

pub struct RedisStore {
    conn: conn::Conn,
    scripts: scripts::Scripts,
    opts: RedisOptions,
    channel: String,
    wakeups: broadcast::Sender<String>,
    healthy: Arc<AtomicBool>,
    messages: AtomicU64,
    bytes: AtomicU64,
    problem: parking_lot::Mutex<Option<String>>,
    listener: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    receipt_key: [u8; 32],
}

impl RedisStore {
    /// Connect (and start listening for other nodes' wake-ups).
    pub async fn open(opts: RedisOptions) -> Result<RedisStore> {
        if opts.prefix.is_empty() || opts.prefix.contains(['{', '}']) {
            return Err(EngineError::invalid(
                "redis prefix",
                "must be non-empty and contain no braces",
            ));
        }
        let (conn, pubsub_client) = if let Some(rest) = opts.url.strip_prefix("redis+cluster://") {
            let seeds: Vec<String> = rest
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| format!("redis://{s}"))
                .collect();
            if seeds.is_empty() {
                return Err(EngineError::invalid(
                    "storage",
                    "redis+cluster:// needs at least one HOST:PORT",
                ));
            }
            let client = redis::cluster::ClusterClient::new(seeds.clone())
                .map_err(|e| EngineError::invalid("storage", e.to_string()))?;
            let conn = client.get_async_connection().await.map_err(unavailable)?;
            // Classic pub/sub messages reach every node of a cluster: any seed will do.
            let ps = redis::Client::open(seeds[0].as_str())
                .map_err(|e| EngineError::invalid("storage", e.to_string()))?;
            (Conn::Cluster(conn), ps)
        } else {
            let client = redis::Client::open(opts.url.as_str())
                .map_err(|e| EngineError::invalid("storage", e.to_string()))?;
            // Reconnects by itself after Redis restarts; requests meanwhile fail with 503.
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
                .set_response_timeout(Some(std::time::Duration::from_millis(
                    opts.wait_timeout_ms.max(1000) + 5000,
                )))
                .set_number_of_retries(2)
                .set_max_delay(std::time::Duration::from_millis(500));
            let conn = client
                .get_connection_manager_with_config(config)
                .await
                .map_err(unavailable)?;
            (Conn::Single(conn), client)
        };
        let (wakeups, _) = broadcast::channel(1024);
        let mut conn = conn;
        let (receipt_key, written) = conn::receipt_key(&mut conn, &opts.prefix).await?;
        let store = RedisStore {
            receipt_key,
            conn,
            scripts: scripts::Scripts::load(),
            channel: format!("{}/wake", opts.prefix),
            opts,
            wakeups,
            healthy: Arc::new(AtomicBool::new(true)),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            problem: parking_lot::Mutex::new(None),
            listener: parking_lot::Mutex::new(None),
        };
        if written {
            // A failover before a replica had the new key would change it, and every receipt
            // handed out under it would stop working: confirmed like any write.
            store
                .replicate(&format!("{{{}}}/receipt-key", store.opts.prefix))
                .await
                .map_err(|e| {
                    EngineError::StorageUnavailable(format!("the new receipt key: {e}"))
                })?;
        }
        store.listen(pubsub_client).await?;
        store.check_config().await;
        Ok(store)
    }

    /// Bytes of Redis memory per stored message, as `INFO memory` and the message count say
    /// (refreshed by housekeeping; a cluster reports the node of the first seed).
    pub fn bytes_per_message(&self) -> Option<u64> {
        let n = self.messages.load(Ordering::Relaxed);
        (n > 0).then(|| self.bytes.load(Ordering::Relaxed) / n)
    }
}

pub(super) fn arg(v: impl redis::ToRedisArgs) -> Vec<u8> {
    v.to_redis_args().pop().unwrap_or_default()
}
