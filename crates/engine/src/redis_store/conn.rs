//! The connection plumbing: one multiplexed connection to a single server or a cluster
//! (`Conn`), error mapping with health tracking (`ok`), the wake-up channel every node
//! subscribes to (`listen`, `announce`), the start-up check of Redis's durability settings,
//! and the data set's receipt key (`receipt_key`).

use std::sync::atomic::Ordering;

use redis::aio::ConnectionLike;
use redis::{Cmd, RedisFuture, Value};

use crate::error::Result;

use super::reply::unavailable;
use super::RedisStore;

/// One connection, to a single server or a cluster. Both multiplex: clones share it.
#[derive(Clone)]
pub(super) enum Conn {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The receipt key every node of this prefix shares (`receipts.rs`): the first node to start
/// stores 32 random bytes (hex) under `{PREFIX}/receipt-key`, the others read them.
/// The data set's receipt key, made on first use. Answers whether this call wrote it (the
/// caller then waits for replicas, `replicate`, so a failover cannot lose it).
pub(super) async fn receipt_key(conn: &mut Conn, prefix: &str) -> Result<([u8; 32], bool)> {
    let name = format!("{{{prefix}}}/receipt-key");
    let fresh: String = crate::receipts::random_key()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (written, stored): (Option<String>, String) = redis::pipe()
        .cmd("SET")
        .arg(&name)
        .arg(&fresh)
        .arg("NX")
        .cmd("GET")
        .arg(&name)
        .query_async(conn)
        .await
        .map_err(unavailable)?;
    let bytes: Option<Vec<u8>> = (stored.len() == 64
        && stored.bytes().all(|b| b.is_ascii_hexdigit()))
    .then(|| {
        (0..32)
            .map(|i| u8::from_str_radix(&stored[2 * i..2 * i + 2], 16).ok())
            .collect()
    })
    .flatten();
    let key = bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            crate::EngineError::Storage(format!(
                "redis key {name} does not hold a receipt key (64 hex digits)"
            ))
        })?;
    Ok((key, written.is_some()))
}

impl RedisStore {
    /// Say at start what Redis's settings mean for an acknowledged message (see
    /// docs/scaling.md). CONFIG may be disabled (managed Redis): then nothing is said.
    pub(super) async fn check_config(&self) {
        let mut conn = self.conn.clone();
        let get = |name: &'static str| {
            let mut cmd = redis::cmd("CONFIG");
            cmd.arg("GET").arg(name);
            cmd
        };
        let read = |v: redis::RedisResult<Vec<String>>| v.ok().and_then(|v| v.get(1).cloned());
        let aof = read(get("appendonly").query_async(&mut conn).await);
        let fsync = read(get("appendfsync").query_async(&mut conn).await);
        let policy = read(get("maxmemory-policy").query_async(&mut conn).await);
        match (aof.as_deref(), fsync.as_deref()) {
            (Some("yes"), Some("always")) => tracing::info!(
                "redis: AOF with appendfsync always: an acknowledged message is on Redis's disk"
            ),
            (Some("yes"), Some(f)) => tracing::warn!(
                "redis: AOF with appendfsync {f}: a Redis crash can lose the last second of acknowledged messages (set appendfsync always for sluice's embedded-store guarantee)"
            ),
            (Some("no"), _) => tracing::warn!(
                "redis: AOF is off: a Redis crash loses acknowledged messages since the last snapshot (set appendonly yes, appendfsync always)"
            ),
            _ => {}
        }
        if let Some(p) = policy.filter(|p| p != "noeviction") {
            tracing::warn!(
                "redis: maxmemory-policy {p} may evict sluice's keys, i.e. drop messages; use noeviction"
            );
        }
    }

    /// Subscribe to the wake-up channel; reconnect on errors.
    pub(super) async fn listen(&self, client: redis::Client) -> Result<()> {
        use futures::StreamExt;
        let channel = self.channel.clone();
        let tx = self.wakeups.clone();
        let mut first = client.get_async_pubsub().await.map_err(unavailable)?;
        first.subscribe(&channel).await.map_err(unavailable)?;
        let task = tokio::spawn(async move {
            let mut ps = Some(first);
            loop {
                if let Some(mut p) = ps.take() {
                    let mut stream = p.on_message();
                    while let Some(msg) = stream.next().await {
                        if let Ok(s) = msg.get_payload::<String>() {
                            let _ = tx.send(s);
                        }
                    }
                }
                // The connection dropped: everyone re-reads shared state, then resubscribe.
                let _ = tx.send("meta".into());
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if let Ok(mut p) = client.get_async_pubsub().await {
                    if p.subscribe(&channel).await.is_ok() {
                        ps = Some(p);
                        let _ = tx.send("meta".into());
                    }
                }
            }
        });
        *self.listener.lock() = Some(task);
        Ok(())
    }

    pub(super) fn ok<T>(&self, r: redis::RedisResult<T>) -> Result<T> {
        match r {
            Ok(v) => {
                self.healthy.store(true, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.healthy.store(false, Ordering::Relaxed);
                    *self.problem.lock() = Some(format!("redis is unreachable: {e}"));
                }
                Err(unavailable(e))
            }
        }
    }

    /// Tell other nodes a setting changed (`meta:KEY`).
    pub(super) async fn announce(&self, what: &str) {
        let mut conn = self.conn.clone();
        let _: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(what)
            .query_async(&mut conn)
            .await;
    }
}
