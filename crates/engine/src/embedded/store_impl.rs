//! `impl Store for EmbeddedStore`: the queue catalog calls inline, the message calls and the
//! upkeep delegated to `messages.rs` and `maintenance.rs`, settings and the archive to
//! `side.rs`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use async_trait::async_trait;

use crate::clock::Millis;
use crate::error::Result;
use crate::model::{
    Delivery, Message, MessageId, NewMessage, Placement, QueueConfig, QueueInfo, QueueStats,
    Receipt, ReceiptResult,
};
use crate::store::{HistoryRecord, Settle, Store, StoreInfo};

use super::catalog;
use super::record::{Record, COUNTERS};
use super::rules::maintain;
use super::state::{set_counters, Entry};
use super::EmbeddedStore;

#[async_trait]
impl Store for EmbeddedStore {
    async fn put_queue(
        &self,
        name: &str,
        config: QueueConfig,
        now: Millis,
    ) -> Result<(QueueInfo, bool)> {
        self.check_writable()?;
        let mut st = self.state.lock();
        if !st.names.contains_key(name) {
            self.check_space()?;
        }
        let info = match st.names.get(name).copied() {
            Some(id) => {
                let q = &st.queues[&id];
                if q.info.config == config {
                    return Ok((q.info.clone(), false));
                }
                let info = QueueInfo {
                    config,
                    updated_at: now,
                    ..q.info.clone()
                };
                let change = catalog::Change::Put(Box::new(catalog::CatalogQueue {
                    id,
                    info: info.clone(),
                }));
                self.log_change(&st, &change)?;
                let q = st.queues.get_mut(&id).expect("named queue exists");
                let (was, is) = (&q.info.config, &info.config);
                let cap_changed = was.max_in_flight_per_group != is.max_in_flight_per_group
                    || was.group_rate_per_second != is.group_rate_per_second;
                q.info = info.clone();
                if cap_changed {
                    // Groups parked at the old limits take turns again (parked again if full).
                    q.ready.unpark_all();
                }
                return Ok((info, false));
            }
            None => self.create_locked(&mut st, name, config, now)?,
        };
        Ok((info, true))
    }

    async fn ensure_queue(
        &self,
        name: &str,
        config: QueueConfig,
        now: Millis,
    ) -> Result<(QueueInfo, bool)> {
        // Checked and created under one lock: a racing creator never overwrites a config.
        let mut st = self.state.lock();
        if let Some(id) = st.names.get(name) {
            return Ok((st.queues[id].info.clone(), false));
        }
        let info = self.create_locked(&mut st, name, config, now)?;
        Ok((info, true))
    }

    async fn get_queue(&self, name: &str) -> Result<Option<QueueInfo>> {
        let st = self.state.lock();
        Ok(st.names.get(name).map(|id| st.queues[id].info.clone()))
    }

    async fn queue_count(&self) -> Result<usize> {
        Ok(self.state.lock().queues.len())
    }

    async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        let st = self.state.lock();
        let mut v: Vec<_> = st.queues.values().map(|q| q.info.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    async fn delete_queue(&self, name: &str) -> Result<bool> {
        self.check_writable()?;
        let mut st = self.state.lock();
        let Some(id) = st.names.get(name).copied() else {
            return Ok(false);
        };
        self.log_change(&st, &catalog::Change::Delete(id))?;
        st.names.remove(name);
        let q = st.queues.remove(&id).expect("named queue exists");
        for e in q
            .ready
            .iter()
            .copied()
            .chain(q.delayed.iter().map(|(_, e)| e))
            .chain(q.inflight.values().map(|l| l.entry))
        {
            st.removed(&e);
        }
        Ok(true)
    }

    async fn purge_queue(&self, name: &str, _now: Millis) -> Result<u64> {
        self.check_writable()?;
        let lsn;
        let n;
        {
            let mut st = self.state.lock();
            let id = Self::qid(&st, name)?;
            let q = st.queues.get_mut(&id).expect("queue");
            let mut gone: Vec<Entry> = q.ready.drain();
            gone.extend(q.delayed.drain());
            gone.extend(
                std::mem::take(&mut q.inflight)
                    .into_values()
                    .map(|l| l.entry),
            );
            q.leases.clear();
            q.locked.clear();
            q.front_when_due.clear();
            n = gone.len() as u64;
            for e in &gone {
                st.removed(e);
            }
            let mut ap = self.log.begin();
            ap.push(16, |buf| Record::Purge { queue: id }.encode_frame(buf));
            lsn = ap.finish();
        }
        self.log.wait_durable(lsn).await?;
        Ok(n)
    }

    async fn publish(
        &self,
        queue: &str,
        messages: &[NewMessage],
        now: Millis,
    ) -> Result<Vec<MessageId>> {
        self.publish_messages(queue, messages, now).await
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_ms: u64,
        now: Millis,
    ) -> Result<Vec<Delivery>> {
        self.receive_messages(queue, max, visibility_ms, now).await
    }

    async fn ack(
        &self,
        queue: &str,
        receipts: &[Receipt],
        now: Millis,
    ) -> Result<Vec<ReceiptResult>> {
        self.ack_receipts(queue, receipts, now).await
    }

    async fn nack(
        &self,
        queue: &str,
        receipts: &[Receipt],
        delay_ms: u64,
        placement: Placement,
        now: Millis,
    ) -> Result<Vec<ReceiptResult>> {
        self.nack_receipts(queue, receipts, delay_ms, placement, now)
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
        self.settle_receipts(queue, receipts, tallies, how, now)
            .await
    }

    async fn tally(&self, queue: &str, key: &str) -> Result<(u64, u64)> {
        let st = self.state.lock();
        let q = &st.queues[&Self::qid(&st, queue)?];
        Ok(q.tallies
            .get(key)
            .map_or((0, 0), |t| (t.delivered, t.failed)))
    }

    async fn tally_forget(&self, queue: &str, key: &str) -> Result<()> {
        self.check_writable()?;
        let lsn = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let q = st.queues.get_mut(&qid).expect("queue");
            if q.tallies.remove(key).is_none() {
                return Ok(());
            }
            let mut ap = self.log.begin();
            ap.push(40 + key.len(), |buf| {
                Record::Tally {
                    queue: qid,
                    key,
                    delivered: u64::MAX,
                    failed: u64::MAX,
                }
                .encode_frame(buf)
            });
            ap.finish()
        };
        self.log.wait_durable(lsn).await
    }

    async fn count_filtered(&self, queue: &str, n: u64, _now: Millis) -> Result<()> {
        self.check_writable()?;
        let lsn = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let q = st.queues.get_mut(&qid).expect("queue");
            q.stats.filtered += n;
            let mut ap = self.log.begin();
            ap.push(16, |buf| {
                Record::Filtered { queue: qid, n }.encode_frame(buf)
            });
            ap.finish()
        };
        self.log.wait_durable(lsn).await
    }

    async fn reset_counters(&self, queue: &str, _now: Millis) -> Result<()> {
        self.check_writable()?;
        let lsn = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let q = st.queues.get_mut(&qid).expect("queue");
            set_counters(&mut q.stats, [0; COUNTERS]);
            q.logged = [0; COUNTERS];
            let mut ap = self.log.begin();
            ap.push(16 + 8 * COUNTERS, |buf| {
                Record::Counters {
                    queue: qid,
                    values: [0; COUNTERS],
                }
                .encode_frame(buf)
            });
            ap.finish()
        };
        self.log.wait_durable(lsn).await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: Receipt,
        timeout_ms: u64,
        now: Millis,
    ) -> Result<Millis> {
        self.change_lease(queue, receipt, timeout_ms, now).await
    }

    async fn peek(&self, queue: &str, limit: usize, now: Millis) -> Result<Vec<Message>> {
        self.peek_messages(queue, limit, now).await
    }

    async fn redrive(
        &self,
        queue: &str,
        max: usize,
        only: Option<&HashSet<MessageId>>,
        now: Millis,
    ) -> Result<u64> {
        self.redrive_dead_letters(queue, max, only, now).await
    }

    async fn stats(&self, queue: &str, now: Millis) -> Result<QueueStats> {
        let (lsn, stats) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            maintain(&mut st, qid, now, &mut ap);
            let lsn = ap.finish();
            let q = &st.queues[&qid];
            let mut s = q.stats.clone();
            s.ready = q.ready.len() as u64;
            s.delayed = q.delayed.len() as u64;
            s.in_flight = q.inflight.len() as u64;
            s.oldest_ready_age_seconds = q
                .ready
                .oldest_enqueued_at()
                .map(|at| ((now - at).max(0) / 1000) as u64)
                .unwrap_or(0);
            (lsn, s)
        };
        self.log.wait_durable(lsn).await?;
        Ok(stats)
    }

    async fn next_due(&self, queue: &str, _now: Millis) -> Result<Option<Millis>> {
        let st = self.state.lock();
        let qid = Self::qid(&st, queue)?;
        Ok(st.queues[&qid].next_due())
    }

    async fn tick(&self, now: Millis) -> Result<Vec<String>> {
        self.housekeeping(now).await
    }

    async fn ids(&self, queue: &str) -> Result<Vec<(MessageId, Millis)>> {
        let st = self.state.lock();
        let q = &st.queues[&Self::qid(&st, queue)?];
        let mut v = Vec::with_capacity(q.len());
        v.extend(q.ready.iter().map(|e| (MessageId(e.id()), e.enqueued_at)));
        v.extend(q.delayed.iter().map(|(at, e)| (MessageId(e.id()), at)));
        v.extend(
            q.inflight
                .iter()
                .map(|(&id, l)| (MessageId(id), l.lease_until)),
        );
        Ok(v)
    }

    async fn meta_put(&self, key: &str, value: Option<String>) -> Result<()> {
        self.check_writable()?;
        self.meta.put(key, value)
    }

    async fn meta_list(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        Ok(self.meta.list(prefix))
    }

    async fn archive_put(&self, entries: &[(MessageId, u8)]) -> Result<()> {
        self.check_writable()?;
        self.archive.put(entries).await
    }

    async fn archive_list(&self) -> Result<Vec<(MessageId, u8)>> {
        self.archive.list()
    }

    async fn history_put(
        &self,
        key: &str,
        ids: &[MessageId],
        attempt: String,
        at: Millis,
        expires_at: Millis,
    ) -> Result<()> {
        self.check_writable()?;
        self.history.put(key, ids, &attempt, at, expires_at).await
    }

    async fn history_put_many(&self, records: Vec<HistoryRecord>) -> Result<()> {
        self.check_writable()?;
        self.history.put_many(&records).await
    }

    async fn history_get(&self, ids: &[MessageId], now: Millis) -> Result<Vec<Vec<String>>> {
        self.history.get(ids, now).await
    }

    async fn history_recent(&self, key: &str, limit: usize, now: Millis) -> Result<Vec<MessageId>> {
        Ok(self.history.recent(key, limit, now))
    }

    fn info(&self) -> StoreInfo {
        // Healthy means new messages are accepted: the log writes, and the disk is above the
        // reserve (below it, publishes are refused even before the writer fails, also right
        // after a restart, when nothing has been written yet).
        let short = self.short_of_space();
        let st = self.state.lock();
        StoreInfo {
            backend: "embedded",
            bytes_on_disk: self.bytes_on_disk.load(Ordering::Relaxed) + self.history.bytes(),
            messages: st.message_count(),
            healthy: self.log.failure().is_none() && short.is_none(),
            problems: self
                .recovery_problems
                .iter()
                .cloned()
                .chain(self.runtime_problems.lock().iter().cloned())
                .chain(
                    self.log
                        .failure()
                        .map(|e| format!("log writes are failing: {e}")),
                )
                .chain(
                    self.history
                        .failure()
                        .map(|e| format!("delivery history writes are failing: {e}")),
                )
                .chain(short.map(|(free, reserve)| {
                    format!("the disk holding the data directory has {free} bytes free, below the {reserve}-byte reserve (--min-free-bytes): new messages and queues are refused; receives and acks still work")
                }))
                .collect(),
        }
    }

    fn receipt_key(&self) -> [u8; 32] {
        self.receipt_key
    }

    async fn close(&self) -> Result<()> {
        self.log.shutdown();
        self.history.shutdown();
        Ok(())
    }
}
