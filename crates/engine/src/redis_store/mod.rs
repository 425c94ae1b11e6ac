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
#[cfg(feature = "test-support")]
pub mod testing;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use redis::aio::ConnectionLike;
use redis::{Cmd, RedisFuture, Script, ScriptInvocation, Value};
use tokio::sync::broadcast;

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::model::{
    group_tag, is_fifo, message_size, Delivery, Message, MessageId, MessageState, NewMessage,
    Placement, QueueConfig, QueueInfo, QueueStats, Receipt, ReceiptResult,
};
use crate::store::{Store, StoreInfo};

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

/// One connection, to a single server or a cluster. Both multiplex: clones share it.
#[derive(Clone)]
enum Conn {
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

const PRELUDE: &str = include_str!("prelude.lua");

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        struct Scripts { $($name: Script,)* attempts: Script }
        impl Scripts {
            fn load() -> Scripts {
                Scripts {
                    $($name: Script::new(&format!(
                        "{PRELUDE}\n{}",
                        include_str!(concat!(stringify!($name), ".lua"))
                    )),)*
                    attempts: Script::new(include_str!("attempts.lua")),
                }
            }
        }
    };
}

scripts!(
    put_queue,
    publish,
    receive,
    ack,
    nack,
    change_visibility,
    peek,
    stats,
    next_due,
    tick,
    ids,
    purge,
    delete,
    redrive,
    outbox,
    adopt,
    outbox_done,
    decr,
);

const QUEUE_KEYS: [&str; 14] = [
    "cfg", "m", "s", "r", "d", "f", "lk", "dd", "dz", "st", "fw", "ob", "dl", "ad",
];

/// The hash tag of a queue: a subscription's internal queue (`orders~a`, `orders~a.fifo`)
/// shares its queue's (`orders`, `orders.fifo`).
fn tag(queue: &str) -> &str {
    let home = match queue.find('~') {
        Some(i) if i > 0 => &queue[..i],
        _ => queue,
    };
    home.strip_suffix(".fifo").unwrap_or(home)
}

fn hex(id: MessageId) -> String {
    format!("{:032x}", id.0)
}

fn unhex(s: &[u8]) -> Result<MessageId> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| u128::from_str_radix(s, 16).ok())
        .map(MessageId)
        .ok_or_else(|| bad_reply("a message id"))
}

fn bad_reply(what: &str) -> EngineError {
    EngineError::Storage(format!("redis: unexpected reply ({what})"))
}

fn unavailable(e: redis::RedisError) -> EngineError {
    EngineError::StorageUnavailable(format!("redis: {e}"))
}

/// A message's changing part, as the scripts keep it.
struct State {
    receive_count: u32,
    nonce: u32,
    first_received_at: Millis,
    enqueued_at: Millis,
    source: String,
}

fn parse_state(b: &[u8]) -> Result<State> {
    let s = std::str::from_utf8(b).map_err(|_| bad_reply("state"))?;
    let mut it = s.splitn(6, ',');
    let mut num = || -> Result<i64> {
        it.next()
            .and_then(|x| x.parse::<i64>().ok())
            .ok_or_else(|| bad_reply("state"))
    };
    let receive_count = num()? as u32;
    let nonce = num()? as u32;
    let first_received_at = num()?;
    let _group = num()?;
    let enqueued_at = num()?;
    Ok(State {
        receive_count,
        nonce,
        first_received_at,
        enqueued_at,
        source: it.next().unwrap_or_default().to_string(),
    })
}

// ---- reading script replies ----

fn bytes(v: &Value) -> Result<&[u8]> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        _ => Err(bad_reply("a string")),
    }
}

fn text(v: &Value) -> Result<&str> {
    std::str::from_utf8(bytes(v)?).map_err(|_| bad_reply("text"))
}

fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Nil => Ok(0),
        _ => text(v)?
            .parse::<f64>()
            .map(|f| f as i64)
            .map_err(|_| bad_reply("a number")),
    }
}

fn list(v: &Value) -> Result<&[Value]> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Nil => Ok(&[]),
        _ => Err(bad_reply("a list")),
    }
}

/// A script's answer: `{status, woke, outbox, decrements, rest...}`.
struct Reply {
    status: String,
    woke: bool,
    outbox: bool,
    decrements: Vec<String>,
    rest: Vec<Value>,
}

impl Reply {
    fn parse(v: Value) -> Result<Reply> {
        let Value::Array(mut a) = v else {
            return Err(bad_reply("a script answer"));
        };
        if a.len() < 4 {
            return Err(bad_reply("a script answer"));
        }
        let rest = a.split_off(4);
        Ok(Reply {
            status: text(&a[0])?.to_string(),
            woke: int(&a[1])? == 1,
            outbox: int(&a[2])? == 1,
            decrements: list(&a[3])?
                .iter()
                .map(|v| text(v).map(str::to_string))
                .collect::<Result<_>>()?,
            rest,
        })
    }
    fn get(&self, i: usize) -> Result<&Value> {
        self.rest.get(i).ok_or_else(|| bad_reply("a short answer"))
    }
}

pub struct RedisStore {
    conn: Conn,
    scripts: Scripts,
    opts: RedisOptions,
    channel: String,
    wakeups: broadcast::Sender<String>,
    healthy: Arc<AtomicBool>,
    messages: AtomicU64,
    bytes: AtomicU64,
    problem: parking_lot::Mutex<Option<String>>,
    listener: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
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
        let store = RedisStore {
            conn,
            scripts: Scripts::load(),
            channel: format!("{}/wake", opts.prefix),
            opts,
            wakeups,
            healthy: Arc::new(AtomicBool::new(true)),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            problem: parking_lot::Mutex::new(None),
            listener: parking_lot::Mutex::new(None),
        };
        store.listen(pubsub_client).await?;
        store.check_config().await;
        Ok(store)
    }

    /// Say at start what Redis's settings mean for an acknowledged message (see
    /// docs/scaling.md). CONFIG may be disabled (managed Redis): then nothing is said.
    async fn check_config(&self) {
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
    async fn listen(&self, client: redis::Client) -> Result<()> {
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

    fn qkeys(&self, queue: &str) -> Vec<String> {
        let t = tag(queue);
        QUEUE_KEYS
            .iter()
            .map(|k| format!("{{{}:{t}}}{queue}/{k}", self.opts.prefix))
            .collect()
    }

    fn global(&self, what: &str) -> String {
        format!("{{{}}}/{what}", self.opts.prefix)
    }

    fn ok<T>(&self, r: redis::RedisResult<T>) -> Result<T> {
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

    /// A per-queue script with its keys and first arguments (the queue name, `now`, the
    /// wake-up channel); the script's own arguments follow.
    fn prepare<'a>(&self, script: &'a Script, queue: &str, now: Millis) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for k in self.qkeys(queue) {
            inv.key(k);
        }
        inv.arg(queue).arg(now).arg(&self.channel);
        inv
    }

    /// Call one per-queue script: `args` follow the queue name, `now` and the channel.
    async fn invoke(
        &self,
        script: &Script,
        queue: &str,
        now: Millis,
        args: Vec<Vec<u8>>,
    ) -> Result<Reply> {
        let mut inv = self.prepare(script, queue, now);
        for a in args {
            inv.arg(a);
        }
        let mut conn = self.conn.clone();
        let v: Value = self.ok(inv.invoke_async(&mut conn).await)?;
        Reply::parse(v)
    }

    /// Run one per-queue script and its follow-ups (`follow_up`).
    async fn run(
        &self,
        script: &Script,
        queue: &str,
        now: Millis,
        args: Vec<Vec<u8>>,
    ) -> Result<Reply> {
        let reply = self.invoke(script, queue, now, args).await?;
        self.follow_up(queue, &reply, now).await?;
        if reply.status == "noqueue" {
            return Err(EngineError::QueueNotFound(queue.to_string()));
        }
        Ok(reply)
    }

    /// Wait for replicas after a change, when asked to (`--redis-wait-replicas`).
    async fn replicate(&self, queue_or_key: &str) -> Result<()> {
        if self.opts.wait_replicas == 0 {
            return Ok(());
        }
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.opts.wait_replicas)
            .arg(self.opts.wait_timeout_ms);
        let acked: i64 = match &self.conn {
            Conn::Single(c) => self.ok(cmd.query_async(&mut c.clone()).await)?,
            Conn::Cluster(c) => {
                use redis::cluster_routing::{
                    Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr,
                };
                let key = if queue_or_key.starts_with('{') {
                    queue_or_key.to_string()
                } else {
                    self.qkeys(queue_or_key).remove(0)
                };
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_slot(Slot::for_key(key.as_bytes()), SlotAddr::Master),
                ));
                let v = self.ok(c.clone().route_command(cmd, route).await)?;
                int(&v)?
            }
        };
        if acked < self.opts.wait_replicas as i64 {
            return Err(EngineError::StorageUnavailable(format!(
                "redis: only {acked} of {} replicas confirmed the write within {} ms (--redis-wait-replicas)",
                self.opts.wait_replicas, self.opts.wait_timeout_ms
            )));
        }
        Ok(())
    }

    /// What a script leaves to its caller: lower the `dead_lettered` gauges of source queues
    /// in other slots (one call per source), and finish moves parked in the outbox. Returns
    /// how many redrive moves finished.
    async fn follow_up(&self, queue: &str, reply: &Reply, now: Millis) -> Result<u64> {
        self.decrement(&reply.decrements, now).await?;
        if reply.outbox {
            return self.drain_outbox(queue, now).await;
        }
        Ok(0)
    }

    async fn decrement(&self, sources: &[String], now: Millis) -> Result<()> {
        let mut counts: std::collections::BTreeMap<&str, u64> = Default::default();
        for s in sources {
            *counts.entry(s.as_str()).or_default() += 1;
        }
        for (source, n) in counts {
            let mut conn = self.conn.clone();
            let mut inv = self.prepare(&self.scripts.decr, source, now);
            inv.arg(n);
            let _: Value = self.ok(inv.invoke_async(&mut conn).await)?;
        }
        Ok(())
    }

    /// Finish the moves parked in `queue`'s outbox: into each target (idempotent by the move's
    /// token), then out of the outbox. Returns how many redrive moves finished.
    async fn drain_outbox(&self, queue: &str, now: Millis) -> Result<u64> {
        let mut conn = self.conn.clone();
        let inv = self.prepare(&self.scripts.outbox, queue, now);
        let reply = Reply::parse(self.ok(inv.invoke_async(&mut conn).await)?)?;
        let items = list(reply.get(0)?)?;
        let mut outcomes: Vec<Vec<u8>> = Vec::new();
        let mut redriven = 0;
        for it in items.chunks(4) {
            let [id, entry, payload, state] = it else {
                return Err(bad_reply("an outbox entry"));
            };
            let entry = text(entry)?;
            let mut parts = entry.splitn(3, '|');
            let (Some(mode), Some(target), Some(token)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad_reply("an outbox entry"));
            };
            let mut inv = self.prepare(&self.scripts.adopt, target, now);
            inv.arg(bytes(id)?)
                .arg(bytes(payload)?)
                .arg(bytes(state)?)
                .arg(mode)
                .arg(queue)
                .arg(token);
            let adopted = Reply::parse(self.ok(inv.invoke_async(&mut conn).await)?)?;
            self.replicate(target).await?;
            let done = adopted.status == "ok";
            if done && mode == "rd" {
                redriven += 1;
            }
            outcomes.push(bytes(id)?.to_vec());
            outcomes.push(if done {
                b"done".to_vec()
            } else {
                b"back".to_vec()
            });
            outcomes.push(token.as_bytes().to_vec());
        }
        if outcomes.is_empty() {
            return Ok(0);
        }
        let mut inv = self.prepare(&self.scripts.outbox_done, queue, now);
        inv.arg(outcomes.len() / 3);
        for o in outcomes {
            inv.arg(o);
        }
        let done = Reply::parse(self.ok(inv.invoke_async(&mut conn).await)?)?;
        self.decrement(&done.decrements, now).await?;
        Ok(redriven)
    }

    fn message(
        &self,
        id: &Value,
        payload: &Value,
        state: &Value,
        kind: MessageState,
        visible_at: Millis,
    ) -> Result<(Message, u32)> {
        let id = unhex(bytes(id)?)?;
        let p = codec::decode(bytes(payload)?).ok_or_else(|| bad_reply("a message payload"))?;
        let st = parse_state(bytes(state)?)?;
        Ok((
            Message {
                id,
                body: p.body,
                attributes: p.attributes,
                enqueued_at: st.enqueued_at,
                visible_at,
                receive_count: st.receive_count,
                first_received_at: (st.first_received_at != 0).then_some(st.first_received_at),
                dead_letter_source: (!st.source.is_empty()).then_some(st.source),
                state: kind,
                group: p.group,
                dedup_id: p.dedup_id,
            },
            st.nonce,
        ))
    }

    async fn queue_script(
        &self,
        name: &str,
        mode: &str,
        config: QueueConfig,
        now: Millis,
    ) -> Result<(QueueInfo, bool)> {
        let json = serde_json::to_string(&config).expect("config serializes");
        let reply = self
            .run(
                &self.scripts.put_queue,
                name,
                now,
                vec![
                    arg(mode),
                    arg(&json),
                    arg(if is_fifo(name) { "1" } else { "0" }),
                    arg(config.delay_seconds as u64 * 1000),
                    arg(config.max_message_bytes),
                    arg(config.retention_seconds as u64 * 1000),
                    arg(config.max_receives.unwrap_or(0)),
                    arg(config.dead_letter_queue.as_deref().unwrap_or_default()),
                ],
            )
            .await?;
        let v = list(reply.get(0)?)?;
        let created = int(&v[0])? == 1;
        let info = QueueInfo {
            name: name.to_string(),
            config: serde_json::from_str(text(&v[1])?).map_err(|_| bad_reply("a config"))?,
            created_at: int(&v[2])?,
            updated_at: int(&v[3])?,
        };
        {
            // Always (idempotent): a crash between the script and this, or a delete racing a
            // re-creation, must not leave a live queue out of the catalog.
            let mut conn = self.conn.clone();
            let _: i64 = self.ok(redis::cmd("HSET")
                .arg(self.global("queues"))
                .arg(name)
                .arg(1)
                .query_async(&mut conn)
                .await)?;
        }
        // An ensure that found the queue changed nothing: no replica needs to confirm it.
        if created || mode == "put" {
            self.replicate(name).await?;
        }
        Ok((info, created))
    }

    async fn check_queue_count(&self, name: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let (exists, count): (bool, usize) = self.ok(redis::pipe()
            .cmd("HEXISTS")
            .arg(self.global("queues"))
            .arg(name)
            .cmd("HLEN")
            .arg(self.global("queues"))
            .query_async(&mut conn)
            .await)?;
        if !exists && count >= self.opts.max_queues {
            return Err(EngineError::TooManyQueues {
                limit: self.opts.max_queues,
            });
        }
        Ok(())
    }

    async fn receipts_script(
        &self,
        script: &Script,
        queue: &str,
        head: Vec<Vec<u8>>,
        receipts: &[Receipt],
        now: Millis,
    ) -> Result<Vec<ReceiptResult>> {
        let mut args = head;
        args.push(arg(receipts.len()));
        for r in receipts {
            args.push(arg(hex(r.id)));
            args.push(arg(r.nonce));
        }
        let reply = self.run(script, queue, now, args).await?;
        self.replicate(queue).await?;
        list(reply.get(0)?)?
            .iter()
            .map(|v| {
                Ok(match text(v)? {
                    "ok" => Ok(()),
                    "gone" => Err(EngineError::MessageGone),
                    _ => Err(EngineError::StaleReceipt),
                })
            })
            .collect()
    }

    /// Bytes of Redis memory per stored message, as `INFO memory` and the message count say
    /// (refreshed by housekeeping; a cluster reports the node of the first seed).
    pub fn bytes_per_message(&self) -> Option<u64> {
        let n = self.messages.load(Ordering::Relaxed);
        (n > 0).then(|| self.bytes.load(Ordering::Relaxed) / n)
    }
}

fn arg(v: impl redis::ToRedisArgs) -> Vec<u8> {
    v.to_redis_args().pop().unwrap_or_default()
}

#[async_trait]
impl Store for RedisStore {
    async fn put_queue(
        &self,
        name: &str,
        config: QueueConfig,
        now: Millis,
    ) -> Result<(QueueInfo, bool)> {
        self.check_queue_count(name).await?;
        self.queue_script(name, "put", config, now).await
    }

    async fn ensure_queue(
        &self,
        name: &str,
        config: QueueConfig,
        now: Millis,
    ) -> Result<(QueueInfo, bool)> {
        self.check_queue_count(name).await?;
        self.queue_script(name, "ensure", config, now).await
    }

    async fn get_queue(&self, name: &str) -> Result<Option<QueueInfo>> {
        let mut conn = self.conn.clone();
        let v: Vec<Option<String>> = self.ok(redis::cmd("HMGET")
            .arg(&self.qkeys(name)[0])
            .arg("config")
            .arg("created")
            .arg("updated")
            .query_async(&mut conn)
            .await)?;
        let [Some(config), Some(created), Some(updated)] = &v[..] else {
            return Ok(None);
        };
        Ok(Some(QueueInfo {
            name: name.to_string(),
            config: serde_json::from_str(config).map_err(|_| bad_reply("a config"))?,
            created_at: created.parse().map_err(|_| bad_reply("a time"))?,
            updated_at: updated.parse().map_err(|_| bad_reply("a time"))?,
        }))
    }

    async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        let mut conn = self.conn.clone();
        let mut names: Vec<String> = self.ok(redis::cmd("HKEYS")
            .arg(self.global("queues"))
            .query_async(&mut conn)
            .await)?;
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Some(info) = self.get_queue(&n).await? {
                out.push(info);
            }
        }
        Ok(out)
    }

    async fn delete_queue(&self, name: &str) -> Result<bool> {
        // Out of the catalog first: a re-creation racing this puts it back after.
        let mut conn = self.conn.clone();
        let _: i64 = self.ok(redis::cmd("HDEL")
            .arg(self.global("queues"))
            .arg(name)
            .query_async(&mut conn)
            .await)?;
        let reply = self.run(&self.scripts.delete, name, 0, vec![]).await?;
        self.replicate(name).await?;
        Ok(int(reply.get(0)?)? == 1)
    }

    async fn purge_queue(&self, name: &str, now: Millis) -> Result<u64> {
        let reply = self.run(&self.scripts.purge, name, now, vec![]).await?;
        self.replicate(name).await?;
        Ok(int(reply.get(0)?)? as u64)
    }

    async fn publish(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
        now: Millis,
    ) -> Result<Vec<MessageId>> {
        let mut args = Vec::with_capacity(1 + messages.len() * 7);
        args.push(arg(messages.len()));
        for m in &messages {
            args.push(arg(hex(m.id)));
            args.push(codec::encode(
                m.group.as_deref(),
                m.dedup_id.as_deref(),
                &m.attributes,
                &m.body,
            ));
            args.push(arg(m.delay_ms.map(|d| d as i64).unwrap_or(-1)));
            args.push(arg(m.dedup_id.as_deref().unwrap_or_default()));
            args.push(arg(m.group.as_deref().map(group_tag).unwrap_or(0)));
            args.push(arg(message_size(&m.body, &m.attributes)));
            args.push(arg(m.enqueued_at));
        }
        let reply = self.run(&self.scripts.publish, queue, now, args).await?;
        if reply.status == "toobig" {
            return Err(EngineError::MessageTooLarge {
                size: int(reply.get(0)?)? as usize,
                limit: int(reply.get(1)?)? as usize,
            });
        }
        self.replicate(queue).await?;
        list(reply.get(0)?)?
            .iter()
            .map(|v| unhex(bytes(v)?))
            .collect()
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_ms: u64,
        now: Millis,
    ) -> Result<Vec<Delivery>> {
        let reply = self
            .run(
                &self.scripts.receive,
                queue,
                now,
                vec![arg(max), arg(visibility_ms)],
            )
            .await?;
        self.replicate(queue).await?;
        let lease_until = int(reply.get(0)?)?;
        let mut out = Vec::new();
        for it in list(reply.get(1)?)?.chunks(3) {
            let [id, payload, state] = it else {
                return Err(bad_reply("a delivery"));
            };
            let (message, nonce) =
                self.message(id, payload, state, MessageState::InFlight, lease_until)?;
            out.push(Delivery {
                receipt: Receipt {
                    id: message.id,
                    nonce,
                },
                lease_until,
                message,
            });
        }
        Ok(out)
    }

    async fn ack(
        &self,
        queue: &str,
        receipts: &[Receipt],
        now: Millis,
    ) -> Result<Vec<ReceiptResult>> {
        self.receipts_script(&self.scripts.ack, queue, vec![], receipts, now)
            .await
    }

    async fn nack(
        &self,
        queue: &str,
        receipts: &[Receipt],
        delay_ms: u64,
        placement: Placement,
        now: Millis,
    ) -> Result<Vec<ReceiptResult>> {
        let front = if placement == Placement::Front {
            "1"
        } else {
            "0"
        };
        self.receipts_script(
            &self.scripts.nack,
            queue,
            vec![arg(delay_ms), arg(front)],
            receipts,
            now,
        )
        .await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: Receipt,
        timeout_ms: u64,
        now: Millis,
    ) -> Result<Millis> {
        let reply = self
            .run(
                &self.scripts.change_visibility,
                queue,
                now,
                vec![arg(hex(receipt.id)), arg(receipt.nonce), arg(timeout_ms)],
            )
            .await?;
        match reply.status.as_str() {
            "ok" => int(reply.get(0)?),
            "gone" => Err(EngineError::MessageGone),
            _ => Err(EngineError::StaleReceipt),
        }
    }

    async fn peek(&self, queue: &str, limit: usize, now: Millis) -> Result<Vec<Message>> {
        // "Everything" (usize::MAX) must stay an integer Lua and Redis can print.
        let limit = limit.min(1 << 40);
        let reply = self
            .run(&self.scripts.peek, queue, now, vec![arg(limit)])
            .await?;
        let mut out = Vec::new();
        for it in list(reply.get(0)?)?.chunks(5) {
            let [id, payload, state, kind, at] = it else {
                return Err(bad_reply("a peeked message"));
            };
            let kind = match text(kind)? {
                "r" => MessageState::Ready,
                "d" => MessageState::Delayed,
                _ => MessageState::InFlight,
            };
            out.push(self.message(id, payload, state, kind, int(at)?)?.0);
        }
        Ok(out)
    }

    async fn redrive(
        &self,
        queue: &str,
        max: usize,
        only: Option<&std::collections::HashSet<MessageId>>,
        now: Millis,
    ) -> Result<u64> {
        let info = self
            .get_queue(queue)
            .await?
            .ok_or_else(|| EngineError::QueueNotFound(queue.to_string()))?;
        let holds = self.dead_letters_held(queue).await?;
        // Which queue to take dead letters from, and whose dead letters to take.
        let (from, only_source) = match (holds, info.config.dead_letter_queue) {
            (0, Some(dlq)) if self.get_queue(&dlq).await?.is_some() => (dlq, queue.to_string()),
            _ => (queue.to_string(), String::new()),
        };
        let mut args = vec![arg(max), arg(only_source)];
        match only {
            Some(ids) => {
                args.push(arg(ids.len()));
                args.extend(ids.iter().map(|id| arg(hex(*id))));
            }
            None => args.push(arg(0)),
        }
        if only.is_some_and(|o| o.is_empty()) {
            return Ok(0);
        }
        // The script parks them in the outbox; `run` moves them home before it returns.
        // Those that cannot go home (their queue is gone) stay dead letters here.
        let reply = self.invoke(&self.scripts.redrive, &from, now, args).await?;
        if reply.status == "noqueue" {
            return Err(EngineError::QueueNotFound(from));
        }
        self.follow_up(&from, &reply, now).await
    }

    async fn stats(&self, queue: &str, now: Millis) -> Result<QueueStats> {
        let reply = self.run(&self.scripts.stats, queue, now, vec![]).await?;
        let g = list(reply.get(0)?)?;
        let mut s = QueueStats {
            ready: int(&g[0])? as u64,
            delayed: int(&g[1])? as u64,
            in_flight: int(&g[2])? as u64,
            ..Default::default()
        };
        let oldest = int(&g[3])?;
        if oldest >= 0 && s.ready > 0 {
            s.oldest_ready_age_seconds = ((now - oldest).max(0) / 1000) as u64;
        }
        for kv in list(reply.get(1)?)?.chunks(2) {
            let [k, v] = kv else { continue };
            let v = int(v)?.max(0) as u64;
            match text(k)? {
                "published" => s.published = v,
                "received" => s.received = v,
                "acked" => s.acked = v,
                "nacked" => s.nacked = v,
                "expired" => s.expired = v,
                "visibility_timeouts" => s.visibility_timeouts = v,
                "dead_lettered" => s.dead_lettered = v,
                "dead_lettered_total" => s.dead_lettered_total = v,
                "redriven" => s.redriven = v,
                _ => {}
            }
        }
        Ok(s)
    }

    async fn next_due(&self, queue: &str, now: Millis) -> Result<Option<Millis>> {
        let reply = self.run(&self.scripts.next_due, queue, now, vec![]).await?;
        let first = |v: &Value| -> Result<Option<Millis>> {
            Ok(match list(v)? {
                [_, score] => Some(int(score)?),
                _ => None,
            })
        };
        let d = first(reply.get(0)?)?;
        let f = first(reply.get(1)?)?;
        Ok(match (d, f) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    async fn tick(&self, now: Millis) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = self.ok(redis::cmd("HKEYS")
            .arg(self.global("queues"))
            .query_async(&mut conn)
            .await)?;
        let mut woke = Vec::new();
        let mut messages = 0u64;
        for name in names {
            // One queue's failure does not stop housekeeping of the others.
            let reply = match self.invoke(&self.scripts.tick, &name, now, vec![]).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(queue = %name, error = %e, "redis housekeeping failed");
                    continue;
                }
            };
            if reply.status == "noqueue" {
                continue;
            }
            if let Err(e) = self.follow_up(&name, &reply, now).await {
                tracing::warn!(queue = %name, error = %e, "redis housekeeping failed");
            }
            messages += int(reply.get(0)?)? as u64;
            if reply.woke {
                woke.push(name);
            }
        }
        self.messages.store(messages, Ordering::Relaxed);
        if let Ok(info) = redis::cmd("INFO")
            .arg("memory")
            .query_async::<String>(&mut conn)
            .await
        {
            if let Some(used) = info
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                self.bytes.store(used, Ordering::Relaxed);
            }
        }
        // Long polls also sleep until the next due moment, so waking every queue is cheap
        // insurance; only local waiters are woken (other nodes tick themselves).
        Ok(woke)
    }

    async fn ids(&self, queue: &str) -> Result<Vec<(MessageId, Millis)>> {
        let reply = self.run(&self.scripts.ids, queue, 0, vec![]).await?;
        list(reply.get(0)?)?
            .chunks(2)
            .map(|kv| match kv {
                [id, at] => Ok((unhex(bytes(id)?)?, int(at)?)),
                _ => Err(bad_reply("ids")),
            })
            .collect()
    }

    async fn meta_put(&self, key: &str, value: Option<String>) -> Result<()> {
        let mut conn = self.conn.clone();
        let cmd = match &value {
            Some(v) => {
                let mut c = redis::cmd("HSET");
                c.arg(self.global("meta")).arg(key).arg(v);
                c
            }
            None => {
                let mut c = redis::cmd("HDEL");
                c.arg(self.global("meta")).arg(key);
                c
            }
        };
        let _: i64 = self.ok(cmd.query_async(&mut conn).await)?;
        self.replicate(&self.global("meta")).await?;
        // Only settings other nodes keep in memory are announced (not ingestion checkpoints).
        if key.starts_with("sub/") || key.starts_with("schedule/") {
            self.announce(&format!("meta:{key}")).await;
        }
        Ok(())
    }

    async fn meta_list(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut conn = self.conn.clone();
        let mut all: Vec<(String, String)> = self.ok(redis::cmd("HGETALL")
            .arg(self.global("meta"))
            .query_async(&mut conn)
            .await)?;
        all.retain(|(k, _)| k.starts_with(prefix));
        all.sort();
        Ok(all)
    }

    async fn archive_put(&self, entries: &[(MessageId, u8)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.global("archive"));
        for (id, code) in entries {
            cmd.arg(hex(*id)).arg(*code);
        }
        let _: i64 = self.ok(cmd.query_async(&mut conn).await)?;
        // Not announced: timer outcomes are many, and other nodes read one fresh when they
        // need it (Engine::timer_fresh, timer_outcome_fresh) and all of them every 10 s.
        self.replicate(&self.global("archive")).await?;
        Ok(())
    }

    async fn archive_list(&self) -> Result<Vec<(MessageId, u8)>> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, u8)> = self.ok(redis::cmd("HGETALL")
            .arg(self.global("archive"))
            .query_async(&mut conn)
            .await)?;
        all.into_iter()
            .map(|(k, v)| Ok((unhex(k.as_bytes())?, v)))
            .collect()
    }

    async fn attempts_put(&self, id: MessageId, at: Millis, entry: String) -> Result<()> {
        use crate::history::limits as pl;
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.attempts.prepare_invoke();
        inv.key(self.global(&format!("att/{}", hex(id))))
            .key(self.global("att"))
            .arg(hex(id))
            .arg(entry)
            .arg(at)
            .arg(pl::ATTEMPTS_PER_MESSAGE)
            .arg(pl::MESSAGES)
            .arg(pl::AGE_MS);
        let _: Value = self.ok(inv.invoke_async(&mut conn).await)?;
        Ok(())
    }

    async fn attempts_get(&self, ids: &[MessageId]) -> Result<Vec<Vec<String>>> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("LRANGE")
                .arg(self.global(&format!("att/{}", hex(*id))))
                .arg(0)
                .arg(-1);
        }
        self.ok(pipe.query_async(&mut conn).await)
    }

    async fn attempts_recent(&self, limit: usize) -> Result<Vec<MessageId>> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = self.ok(redis::cmd("ZREVRANGE")
            .arg(self.global("att"))
            .arg(0)
            .arg(limit.saturating_sub(1))
            .query_async(&mut conn)
            .await)?;
        ids.iter().map(|s| unhex(s.as_bytes())).collect()
    }

    async fn heartbeat(&self, node: &str, info: String, now: Millis) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let key = self.global("nodes");
        let (_, _, all): (i64, i64, Vec<String>) = self.ok(redis::pipe()
            .cmd("HSET")
            .arg(&key)
            .arg(node)
            .arg(format!("{now} {info}"))
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(60_000)
            .cmd("HVALS")
            .arg(&key)
            .query_async(&mut conn)
            .await)?;
        let mut alive = Vec::new();
        for v in all {
            if let Some((at, info)) = v.split_once(' ') {
                if at.parse::<Millis>().is_ok_and(|at| now - at <= 10_000) {
                    alive.push(info.to_string());
                }
            }
        }
        alive.sort();
        Ok(alive)
    }

    async fn archive_get(&self, id: MessageId) -> Result<Option<u8>> {
        let mut conn = self.conn.clone();
        self.ok(redis::cmd("HGET")
            .arg(self.global("archive"))
            .arg(hex(id))
            .query_async(&mut conn)
            .await)
    }

    fn info(&self) -> StoreInfo {
        let healthy = self.healthy.load(Ordering::Relaxed);
        StoreInfo {
            backend: "redis",
            bytes_on_disk: self.bytes.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            healthy,
            problems: if healthy {
                Vec::new()
            } else {
                self.problem.lock().iter().cloned().collect()
            },
        }
    }

    fn remote_wakeups(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.wakeups.subscribe())
    }

    async fn close(&self) -> Result<()> {
        if let Some(t) = self.listener.lock().take() {
            t.abort();
        }
        Ok(())
    }
}

impl RedisStore {
    /// Tell other nodes a setting changed (`meta:KEY`).
    async fn announce(&self, what: &str) {
        let mut conn = self.conn.clone();
        let _: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(what)
            .query_async(&mut conn)
            .await;
    }

    /// How many dead letters `queue` holds.
    async fn dead_letters_held(&self, queue: &str) -> Result<u64> {
        let mut conn = self.conn.clone();
        let n: i64 = self.ok(redis::cmd("SCARD")
            .arg(&self.qkeys(queue)[12])
            .query_async(&mut conn)
            .await)?;
        Ok(n as u64)
    }
}
