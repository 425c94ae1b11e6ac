//! Running the per-queue scripts: each `*.lua` is prefixed with `prelude.lua` and called by
//! SHA with the queue's 16 keys (one hash tag, so one cluster slot) and the standard arguments;
//! then what a script leaves to its caller is done (`follow_up`: gauge decrements in other
//! slots, moves parked in the outbox), and replicas confirm when asked (`replicate`).

use redis::{Script, ScriptInvocation, Value};

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::model::{is_fifo, OnExpire, QueueConfig, QueueInfo, Receipt, ReceiptResult};

use super::conn::Conn;
use super::reply::{bad_reply, bytes, hex, int, list, receipt_results, text, Reply};
use super::{arg, RedisStore};

const PRELUDE: &str = include_str!("prelude.lua");

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        pub(super) struct Scripts { $(pub(super) $name: Script,)* pub(super) history: Script }
        impl Scripts {
            pub(super) fn load() -> Scripts {
                Scripts {
                    $($name: Script::new(&format!(
                        "{PRELUDE}\n{}",
                        include_str!(concat!(stringify!($name), ".lua"))
                    )),)*
                    history: Script::new(include_str!("history.lua")),
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
    settle,
    count_filtered,
    reset_counters,
    outbox,
    adopt,
    outbox_done,
    decr,
);

const QUEUE_KEYS: [&str; 16] = [
    "cfg", "m", "s", "r", "d", "f", "lk", "dd", "dz", "st", "fw", "ob", "dl", "ad", "x", "gf",
];

/// The hash tag of a queue: a subscription's internal queue (`orders~a`, `orders~a.fifo`)
/// shares its queue's (`orders`, `orders.fifo`).
pub(super) fn tag(queue: &str) -> &str {
    let home = match queue.find('~') {
        Some(i) if i > 0 => &queue[..i],
        _ => queue,
    };
    home.strip_suffix(".fifo").unwrap_or(home)
}

impl RedisStore {
    pub(super) fn qkeys(&self, queue: &str) -> Vec<String> {
        let t = tag(queue);
        QUEUE_KEYS
            .iter()
            .map(|k| format!("{{{}:{t}}}{queue}/{k}", self.opts.prefix))
            .collect()
    }

    pub(super) fn global(&self, what: &str) -> String {
        format!("{{{}}}/{what}", self.opts.prefix)
    }

    /// A per-queue script with its keys and first arguments (the queue name, `now`, the
    /// wake-up channel); the script's own arguments follow.
    pub(super) fn prepare<'a>(
        &self,
        script: &'a Script,
        queue: &str,
        now: Millis,
    ) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for k in self.qkeys(queue) {
            inv.key(k);
        }
        inv.arg(queue).arg(now).arg(&self.channel);
        inv
    }

    /// Call one per-queue script: `args` follow the queue name, `now` and the channel.
    pub(super) async fn invoke(
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
    pub(super) async fn run(
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
    pub(super) async fn replicate(&self, queue_or_key: &str) -> Result<()> {
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
    pub(super) async fn follow_up(&self, queue: &str, reply: &Reply, now: Millis) -> Result<u64> {
        self.decrement(&reply.decrements, now).await?;
        if reply.outbox {
            return self.drain_outbox(queue, now).await;
        }
        Ok(0)
    }

    pub(super) async fn decrement(&self, sources: &[String], now: Millis) -> Result<()> {
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
    pub(super) async fn drain_outbox(&self, queue: &str, now: Millis) -> Result<u64> {
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

    pub(super) async fn queue_script(
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
                    arg(if config.paused_at.is_some() { "1" } else { "0" }),
                    arg(config.dedup_window_seconds as u64 * 1000),
                    arg(config.default_ttl_seconds.unwrap_or(0) as u64 * 1000),
                    arg(match config.on_expire {
                        OnExpire::Drop => "drop",
                        OnExpire::DeadLetter => "dl",
                    }),
                    arg(config.max_in_flight_per_group.unwrap_or(0)),
                    arg(config.group_rate_per_second.unwrap_or(0)),
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

    pub(super) async fn check_queue_count(&self, name: &str) -> Result<()> {
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

    pub(super) async fn receipts_script(
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
        receipt_results(reply.get(0)?)
    }

    /// How many dead letters `queue` holds.
    pub(super) async fn dead_letters_held(&self, queue: &str) -> Result<u64> {
        let mut conn = self.conn.clone();
        let n: i64 = self.ok(redis::cmd("SCARD")
            .arg(&self.qkeys(queue)[12])
            .query_async(&mut conn)
            .await)?;
        Ok(n as u64)
    }
}
