//! The storage trait. Every backend (embedded log, Redis) implements the queue semantics
//! atomically behind these calls: leases, receipts, delays, dead-letter moves and redrive happen
//! inside the store, so that a Redis backend can run each call as one Lua script and several
//! nodes never disagree. The engine above it validates input, creates queues on first use, and
//! runs long polls; it never touches storage any other way.
//!
//! Contract: every call that changes what is stored about a message (publish, receive counts,
//! ack, nack, dead-letter moves, redrive, purge) returns only after that change is durable.
//! Leases may or may not survive a restart: the embedded store forgets them (every leased
//! message is visible again); Redis keeps them (other nodes' consumers hold them). Either way a
//! leased message is visible again at the latest when its lease ends.
//! Time is always passed in (`now`), never read inside a store, so tests control it.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::error::Result;
use crate::model::{
    Delivery, Message, MessageId, NewMessage, Placement, QueueConfig, QueueInfo, QueueStats,
    Receipt, ReceiptResult,
};

/// What a backend reports about itself (for `/readyz`, the dashboard and metrics).
#[derive(Debug, Clone, Default)]
pub struct StoreInfo {
    pub backend: &'static str,
    pub bytes_on_disk: u64,
    pub messages: u64,
    pub healthy: bool,
    /// What is wrong with the storage, in words: damage found at recovery, a failing disk.
    pub problems: Vec<String>,
}

/// How one push attempt settles its leased copies ([`Store::settle`]), and the counter it
/// raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// 2xx: the copies are removed.
    Delivered,
    /// Given up (its dead letter is published separately): the copies are removed.
    Failed,
    /// To be tried again after `delay_ms`: released, or with `hold` kept leased until then (a
    /// FIFO copy: its group stays locked, so nothing passes it).
    Retried { delay_ms: u64, hold: bool },
    /// Answered 429: like `Retried`, counted apart.
    Throttled { delay_ms: u64, hold: bool },
}

impl Settle {
    /// The counter of `QueueStats` it raises.
    pub fn counter(self) -> &'static str {
        match self {
            Settle::Delivered => "delivered",
            Settle::Failed => "failed",
            Settle::Retried { .. } => "retried",
            Settle::Throttled { .. } => "throttled",
        }
    }
}

/// One attempt to record in the delivery history: the arguments of [`Store::history_put`].
#[derive(Debug, Clone)]
pub struct HistoryRecord {
    pub key: String,
    pub ids: Vec<MessageId>,
    /// The attempt, as JSON.
    pub attempt: String,
    pub at: Millis,
    pub expires_at: Millis,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Create the queue, or replace its configuration. Returns the queue and whether it was created.
    async fn put_queue(
        &self,
        name: &str,
        config: QueueConfig,
        now: Millis,
    ) -> Result<(QueueInfo, bool)>;
    /// Create the queue with `config` unless it exists (then leave it untouched).
    async fn ensure_queue(
        &self,
        name: &str,
        config: QueueConfig,
        now: Millis,
    ) -> Result<(QueueInfo, bool)>;
    async fn get_queue(&self, name: &str) -> Result<Option<QueueInfo>>;
    async fn list_queues(&self) -> Result<Vec<QueueInfo>>;
    /// How many queues exist (internal ones included), cheaply: the engine checks it before
    /// creating a queue on first use.
    async fn queue_count(&self) -> Result<usize> {
        Ok(self.list_queues().await?.len())
    }
    /// Delete the queue and all its messages. Returns false if it did not exist.
    async fn delete_queue(&self, name: &str) -> Result<bool>;
    /// Remove every message of the queue. Returns how many were removed.
    async fn purge_queue(&self, name: &str, now: Millis) -> Result<u64>;

    /// Append messages (ids and times already assigned) to an existing queue. Returns the id of
    /// each: on a FIFO queue, a message whose deduplication id was seen in the last 5 minutes
    /// is not stored again and the earlier message's id is returned.
    async fn publish(
        &self,
        queue: &str,
        messages: &[NewMessage],
        now: Millis,
    ) -> Result<Vec<MessageId>>;
    /// Lease up to `max` visible messages for `visibility_ms`. Never blocks for messages.
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_ms: u64,
        now: Millis,
    ) -> Result<Vec<Delivery>>;
    async fn ack(
        &self,
        queue: &str,
        receipts: &[Receipt],
        now: Millis,
    ) -> Result<Vec<ReceiptResult>>;
    /// Release leased messages: visible again after `delay_ms`, at the back or the front.
    async fn nack(
        &self,
        queue: &str,
        receipts: &[Receipt],
        delay_ms: u64,
        placement: Placement,
        now: Millis,
    ) -> Result<Vec<ReceiptResult>>;
    /// Set a lease to end `timeout_ms` (> 0) from now. (A release is a `nack`: the engine
    /// turns a zero timeout into one.)
    async fn change_visibility(
        &self,
        queue: &str,
        receipt: Receipt,
        timeout_ms: u64,
        now: Millis,
    ) -> Result<Millis>;
    /// Push: settle leased copies after one attempt as `how` says, and count it in the queue's
    /// stats (`delivered`, `failed`, `retried`, `throttled`), in one durable step. A copy with
    /// a tally key (`tallies[i]`, "" for none) also counts as delivered or failed under that key
    /// ([`Store::tally`]): so a producer (file ingestion) knows exactly what became of its
    /// messages, whatever crashed when.
    async fn settle(
        &self,
        queue: &str,
        receipts: &[Receipt],
        tallies: &[&str],
        how: Settle,
        now: Millis,
    ) -> Result<Vec<ReceiptResult>>;
    /// The (delivered, failed) counts of a tally key in a queue (0, 0 if none).
    async fn tally(&self, queue: &str, key: &str) -> Result<(u64, u64)>;
    /// Forget a tally key (its producer is done with it). Durable on return.
    async fn tally_forget(&self, queue: &str, key: &str) -> Result<()>;
    /// Push fan-out: count `n` messages that a subscription's filter kept out of its copy
    /// queue `queue` in that queue's `filtered` counter. Durable on return.
    async fn count_filtered(&self, queue: &str, n: u64, now: Millis) -> Result<()>;
    /// Set a queue's counters back to zero (its gauges stay). Durable on return.
    async fn reset_counters(&self, queue: &str, now: Millis) -> Result<()>;
    /// Look at up to `limit` messages without receiving them: ready first, then delayed, then in flight.
    async fn peek(&self, queue: &str, limit: usize, now: Millis) -> Result<Vec<Message>>;
    /// Move dead letters back to their source queues with a fresh receive count. With `queue` a
    /// dead-letter queue, all its dead letters go home; with `queue` a source queue, its own dead
    /// letters come back from its dead-letter queue. With `only`, just the dead letters with
    /// those ids move (a targeted resend). Returns how many moved.
    async fn redrive(
        &self,
        queue: &str,
        max: usize,
        only: Option<&std::collections::HashSet<MessageId>>,
        now: Millis,
    ) -> Result<u64>;
    async fn stats(&self, queue: &str, now: Millis) -> Result<QueueStats>;
    /// The next moment something in this queue changes by itself (a delay ends or a lease
    /// expires), if any: long polls sleep until then at most.
    async fn next_due(&self, queue: &str, now: Millis) -> Result<Option<Millis>>;
    /// Periodic housekeeping: promote due delays, expire leases (dead-lettering over the receive
    /// limit), drop messages past retention, reclaim space. Returns queues that got messages ready.
    async fn tick(&self, now: Millis) -> Result<Vec<String>>;
    /// Every message of a queue by id, with the moment it is (or was) due: ready messages
    /// report their enqueue time, delayed ones their due time, leased ones their lease end.
    /// Used to rebuild indexes (pending timers) at start; not for hot paths.
    async fn ids(&self, queue: &str) -> Result<Vec<(MessageId, Millis)>>;

    /// Small durable settings outside any queue (push subscriptions, schedules and their last
    /// firing): set `key` to `value`, or remove it with `None`. Durable on return.
    async fn meta_put(&self, key: &str, value: Option<String>) -> Result<()>;
    /// Every setting whose key starts with `prefix`, sorted by key.
    async fn meta_list(&self, prefix: &str) -> Result<Vec<(String, String)>>;
    /// Archive outcomes of finished work (timers): a compact, append-only id -> status map.
    /// Durable on return; a later entry for the same id wins.
    async fn archive_put(&self, entries: &[(MessageId, u8)]) -> Result<()>;
    /// The whole archive (loaded once at start).
    async fn archive_list(&self) -> Result<Vec<(MessageId, u8)>>;
    /// One archive entry (a shared store: another node may have just written it).
    async fn archive_get(&self, id: MessageId) -> Result<Option<u8>> {
        Ok(self
            .archive_list()
            .await?
            .into_iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, c)| c))
    }

    /// The delivery history (push and timer attempts): record one attempt (JSON) for each of
    /// `ids`, under `key` (`QUEUE/SUBSCRIPTION`, or `timer`), kept until `expires_at` at least
    /// if the history's budget allows. Durable on return. Each message keeps its first attempt
    /// and its latest ones (`history::limits::ATTEMPTS_PER_MESSAGE` in all).
    async fn history_put(
        &self,
        key: &str,
        ids: &[MessageId],
        attempt: String,
        at: Millis,
        expires_at: Millis,
    ) -> Result<()>;
    /// Several attempts at once (the calls of a batch of timers), each as [`Store::history_put`]
    /// would record it. Durable on return. By default the puts run concurrently (their writes
    /// share syncs); a store may write them as one append.
    async fn history_put_many(&self, records: Vec<HistoryRecord>) -> Result<()> {
        futures::future::try_join_all(records.into_iter().map(|r| async move {
            self.history_put(&r.key, &r.ids, r.attempt, r.at, r.expires_at)
                .await
        }))
        .await
        .map(|_| ())
    }
    /// The recorded attempts (JSON, oldest first) of each of `ids`.
    async fn history_get(&self, ids: &[MessageId], now: Millis) -> Result<Vec<Vec<String>>>;
    /// Messages with attempts under `key`, the most recently attempted first (at most `limit`).
    async fn history_recent(&self, key: &str, limit: usize, now: Millis) -> Result<Vec<MessageId>>;

    /// Shared stores: record that node `node` (a JSON description) is alive at `now`, and
    /// return every node seen alive in the last 10 s. Others return nothing.
    async fn heartbeat(&self, _node: &str, _info: String, _now: Millis) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn info(&self) -> StoreInfo;
    /// The secret that seals receipts (`receipts.rs`): made once per data set, kept with it,
    /// the same for every node that shares it.
    fn receipt_key(&self) -> [u8; 32];
    /// Shared backends (several nodes on one store): names of queues that got ready messages
    /// through another node (`q:NAME`), `meta:KEY` when a subscription (`sub/...`) or schedule
    /// (`schedule/...`) changed there, or `meta` when anything may have been missed (re-read
    /// everything). None for a store only this process uses.
    fn remote_wakeups(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
    /// Make everything durable and stop background work.
    async fn close(&self) -> Result<()>;
}
