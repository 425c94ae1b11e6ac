//! `impl Store for RedisStore`: every call that changes a queue is one script (see
//! `scripts.rs`); settings, the timer archive, the attempts log and node heartbeats are
//! delegated to `side.rs`.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use redis::Value;
use tokio::sync::broadcast;

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::model::{
    group_tag, message_size, Delivery, Message, MessageId, MessageState, NewMessage, Placement,
    QueueConfig, QueueInfo, QueueStats, Receipt, ReceiptResult,
};
use crate::store::{Settle, Store, StoreInfo};

use super::codec;
use super::reply::{bad_reply, bytes, hex, int, list, message, receipt_results, text, unhex};
use super::side;
use super::{arg, RedisStore};

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

    async fn queue_count(&self) -> Result<usize> {
        let mut conn = self.conn.clone();
        self.ok(redis::cmd("HLEN")
            .arg(self.global("queues"))
            .query_async(&mut conn)
            .await)
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
        messages: &[NewMessage],
        now: Millis,
    ) -> Result<Vec<MessageId>> {
        let mut args = Vec::with_capacity(1 + messages.len() * 9);
        args.push(arg(messages.len()));
        for m in messages {
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
            args.push(arg(m.priority));
            args.push(arg(m.expires_at.unwrap_or(0)));
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
                message(id, payload, state, MessageState::InFlight, lease_until)?;
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

    async fn settle(
        &self,
        queue: &str,
        receipts: &[Receipt],
        tallies: &[&str],
        how: Settle,
        now: Millis,
    ) -> Result<Vec<ReceiptResult>> {
        let (delay_ms, hold) = match how {
            Settle::Retried { delay_ms, hold } | Settle::Throttled { delay_ms, hold } => {
                (delay_ms, hold)
            }
            Settle::Delivered | Settle::Failed => (0, false),
        };
        let mut args = vec![
            arg(how.counter()),
            arg(delay_ms),
            arg(if hold { "1" } else { "0" }),
            arg(receipts.len()),
        ];
        for (i, r) in receipts.iter().enumerate() {
            args.push(arg(hex(r.id)));
            args.push(arg(r.nonce));
            args.push(arg(tallies.get(i).copied().unwrap_or_default()));
        }
        let reply = self.run(&self.scripts.settle, queue, now, args).await?;
        self.replicate(queue).await?;
        receipt_results(reply.get(0)?)
    }

    async fn tally(&self, queue: &str, key: &str) -> Result<(u64, u64)> {
        let mut conn = self.conn.clone();
        let v: Vec<Option<u64>> = self.ok(redis::cmd("HMGET")
            .arg(&self.qkeys(queue)[9])
            .arg(format!("tally:{key}:delivered"))
            .arg(format!("tally:{key}:failed"))
            .query_async(&mut conn)
            .await)?;
        let get = |i: usize| v.get(i).copied().flatten().unwrap_or(0);
        Ok((get(0), get(1)))
    }

    async fn tally_forget(&self, queue: &str, key: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self.ok(redis::cmd("HDEL")
            .arg(&self.qkeys(queue)[9])
            .arg(format!("tally:{key}:delivered"))
            .arg(format!("tally:{key}:failed"))
            .query_async(&mut conn)
            .await)?;
        self.replicate(queue).await
    }

    async fn count_filtered(&self, queue: &str, n: u64, now: Millis) -> Result<()> {
        self.run(&self.scripts.count_filtered, queue, now, vec![arg(n)])
            .await?;
        self.replicate(queue).await
    }

    async fn reset_counters(&self, queue: &str, now: Millis) -> Result<()> {
        self.run(&self.scripts.reset_counters, queue, now, vec![])
            .await?;
        self.replicate(queue).await
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
            out.push(message(id, payload, state, kind, int(at)?)?.0);
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
                "delivered" => s.delivered = v,
                "retried" => s.retried = v,
                "throttled" => s.throttled = v,
                "failed" => s.failed = v,
                "filtered" => s.filtered = v,
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
        let r = first(reply.get(2)?)?;
        Ok([d, f, r].into_iter().flatten().min())
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
        side::meta_put(self, key, value).await
    }

    async fn meta_list(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        side::meta_list(self, prefix).await
    }

    async fn archive_put(&self, entries: &[(MessageId, u8)]) -> Result<()> {
        side::archive_put(self, entries).await
    }

    async fn archive_list(&self) -> Result<Vec<(MessageId, u8)>> {
        side::archive_list(self).await
    }

    async fn archive_get(&self, id: MessageId) -> Result<Option<u8>> {
        side::archive_get(self, id).await
    }

    async fn history_put(
        &self,
        key: &str,
        ids: &[MessageId],
        attempt: String,
        at: Millis,
        expires_at: Millis,
    ) -> Result<()> {
        side::history_put(self, key, ids, attempt, at, expires_at).await
    }

    async fn history_get(&self, ids: &[MessageId], now: Millis) -> Result<Vec<Vec<String>>> {
        side::history_get(self, ids, now).await
    }

    async fn history_recent(&self, key: &str, limit: usize, now: Millis) -> Result<Vec<MessageId>> {
        side::history_recent(self, key, limit, now).await
    }

    async fn heartbeat(&self, node: &str, info: String, now: Millis) -> Result<Vec<String>> {
        side::heartbeat(self, node, info, now).await
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

    fn receipt_key(&self) -> [u8; 32] {
        self.receipt_key
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
