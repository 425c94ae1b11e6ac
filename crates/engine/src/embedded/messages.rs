//! The embedded store's message operations: publish, receive, ack, nack, change a lease, peek.
//! Each runs the three steps of every change (see `mod.rs`): under the state lock, change the
//! index and append the records; release the lock; wait until the records are durable.

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::model::{
    message_size, Delivery, Message, MessageId, MessageState, NewMessage, Placement, Receipt,
    ReceiptResult,
};
use crate::store::Settle;

use super::record::{PublishRec, Record};
use super::rules::{
    dead_letter_if_over_limit, lookup_lease, maintain, next_ready, take_lease, Lookup,
};
use super::state::{Entry, Leased};
use super::{EmbeddedStore, Picked};

impl EmbeddedStore {
    pub(super) async fn publish_messages(
        &self,
        queue: &str,
        messages: &[NewMessage],
        now: Millis,
    ) -> Result<Vec<MessageId>> {
        self.check_writable()?;
        self.check_space()?;
        let (lsn, ids) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let config = &st.queues[&qid].info.config;
            let limit = config.max_message_bytes as usize;
            let default_delay = config.delay_seconds as u64 * 1000;
            let window = config.dedup_window_seconds as i64 * 1000;
            let default_ttl = config.default_ttl_seconds.map(|t| t as i64 * 1000);
            for m in messages {
                let size = message_size(&m.body, &m.attributes);
                if size > limit {
                    return Err(EngineError::MessageTooLarge { size, limit });
                }
            }
            let q = st.queues.get_mut(&qid).expect("queue");
            let mut ap = self.log.begin();
            let mut placed = Vec::with_capacity(messages.len());
            let mut ids = Vec::with_capacity(messages.len());
            for m in messages {
                let expires_at = m
                    .expires_at
                    .or(default_ttl.map(|t| m.enqueued_at + t))
                    .unwrap_or(0);
                // Deduplication: a repeat inside the window is accepted but not stored.
                if let Some(d) = &m.dedup_id {
                    match q.dedup.get(d) {
                        Some(&(until, earlier, _)) if until > now => {
                            ids.push(MessageId(earlier));
                            continue;
                        }
                        _ => {
                            q.dedup.insert(d.clone(), (now + window, m.id.0, 0));
                        }
                    }
                }
                let visible_at = m.enqueued_at + m.delay_ms.unwrap_or(default_delay) as i64;
                let rec = Record::Publish(PublishRec {
                    queue: qid,
                    id: m.id.0,
                    enqueued_at: m.enqueued_at,
                    visible_at,
                    receive_count: 0,
                    nonce: 0,
                    first_received_at: 0,
                    source: 0,
                    group: m.group.as_deref().unwrap_or_default(),
                    dedup: m.dedup_id.as_deref().unwrap_or_default(),
                    attributes: m
                        .attributes
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                    body: &m.body,
                    relocated: false,
                    priority: m.priority,
                    expires_at,
                });
                let est = 96
                    + m.body.len()
                    + m.group.as_ref().map_or(0, |g| g.len())
                    + m.dedup_id.as_ref().map_or(0, |g| g.len())
                    + m.attributes
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 8)
                        .sum::<usize>();
                let loc = ap.push(est, |buf| rec.encode_frame(buf));
                if let Some(kept) = m.dedup_id.as_ref().and_then(|d| q.dedup.get_mut(d)) {
                    kept.2 = loc.seg;
                }
                let mut e = Entry::new(m.id.0, loc, m.enqueued_at);
                if let Some(g) = &m.group {
                    e.group = crate::model::group_tag(g);
                }
                e.priority = m.priority;
                e.expires_at = expires_at;
                placed.push((e, visible_at));
                ids.push(m.id);
            }
            let lsn = ap.finish();
            q.stats.published += placed.len() as u64;
            for (e, visible_at) in &placed {
                if *visible_at > now {
                    q.delayed.insert(*visible_at, *e);
                } else {
                    q.put_back(*e);
                }
            }
            for (e, _) in &placed {
                st.add_live(e.loc);
            }
            (lsn, ids)
        };
        self.log.wait_durable(lsn).await?;
        Ok(ids)
    }

    pub(super) async fn receive_messages(
        &self,
        queue: &str,
        max: usize,
        visibility_ms: u64,
        now: Millis,
    ) -> Result<Vec<Delivery>> {
        self.check_writable()?;
        let (lsn, picked, leases) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            maintain(&mut st, qid, now, &mut ap);
            let q = st.queues.get_mut(&qid).expect("queue");
            // A paused queue hands out nothing (engine/pause.rs).
            let max = if q.info.config.paused_at.is_some() {
                0
            } else {
                max
            };
            let lease_until = now + visibility_ms as i64;
            let mut taken = Vec::new();
            let mut mine = Vec::new();
            let mut old = Vec::new();
            while taken.len() < max {
                let Some(mut e) = next_ready(q, &mut mine, now, &mut old) else {
                    break;
                };
                e.receive_count += 1;
                e.nonce = e.nonce.wrapping_add(1);
                if e.first_received_at == 0 {
                    e.first_received_at = now;
                }
                ap.push(48, |buf| {
                    Record::Receive {
                        queue: qid,
                        id: e.id(),
                        receive_count: e.receive_count,
                        nonce: e.nonce,
                        first_received_at: e.first_received_at,
                    }
                    .encode_frame(buf)
                });
                q.inflight.insert(
                    e.id(),
                    Leased {
                        lease_until,
                        entry: e,
                    },
                );
                q.leases.insert((lease_until, e.id()));
                q.lock_group(e.group);
                taken.push(e);
            }
            q.stats.received += taken.len() as u64;
            for e in &old {
                st.removed(e);
            }
            let lsn = ap.finish();
            let picked: Vec<Picked> = taken
                .iter()
                .map(|e| Picked {
                    entry: *e,
                    state: MessageState::InFlight,
                    visible_at: lease_until,
                    source_name: Self::source_name(&st, e),
                })
                .collect();
            (lsn, picked, lease_until)
        };
        self.log.wait_durable(lsn).await?;
        let mut out = Vec::with_capacity(picked.len());
        let mut bad = Vec::new();
        for p in picked {
            let entry = p.entry;
            match self.load_one(p)? {
                Ok(m) => out.push(Delivery {
                    receipt: Receipt {
                        id: m.id,
                        nonce: entry.nonce,
                    },
                    lease_until: leases,
                    message: m,
                }),
                Err(why) => bad.push((entry, why)),
            }
        }
        if !bad.is_empty() {
            self.quarantine(queue, bad);
        }
        Ok(out)
    }

    pub(super) async fn ack_receipts(
        &self,
        queue: &str,
        receipts: &[Receipt],
        now: Millis,
    ) -> Result<Vec<ReceiptResult>> {
        self.check_writable()?;
        let (lsn, results) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            let mut results = Vec::with_capacity(receipts.len());
            let mut gone = Vec::new();
            let q = st.queues.get_mut(&qid).expect("queue");
            for r in receipts {
                match lookup_lease(q, r, now) {
                    Lookup::Err(e) => results.push(Err(e)),
                    Lookup::Ok(l) => {
                        take_lease(q, &l);
                        ap.push(32, |buf| {
                            Record::Ack {
                                queue: qid,
                                id: r.id.0,
                            }
                            .encode_frame(buf)
                        });
                        gone.push(l.entry);
                        results.push(Ok(()));
                    }
                }
            }
            q.stats.acked += gone.len() as u64;
            for e in &gone {
                st.removed(e);
            }
            (ap.finish(), results)
        };
        self.log.wait_durable(lsn).await?;
        Ok(results)
    }

    pub(super) async fn nack_receipts(
        &self,
        queue: &str,
        receipts: &[Receipt],
        delay_ms: u64,
        placement: Placement,
        now: Millis,
    ) -> Result<Vec<ReceiptResult>> {
        self.check_writable()?;
        let (lsn, results) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            let mut results = Vec::with_capacity(receipts.len());
            for r in receipts {
                let q = st.queues.get_mut(&qid).expect("queue");
                let l = match lookup_lease(q, r, now) {
                    Lookup::Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                    Lookup::Ok(l) => l,
                };
                take_lease(q, &l);
                q.stats.nacked += 1;
                results.push(Ok(()));
                if dead_letter_if_over_limit(&mut st, qid, l.entry, &mut ap) {
                    continue;
                }
                let visible_at = now + delay_ms as i64;
                let front = placement == Placement::Front;
                ap.push(48, |buf| {
                    Record::Release {
                        queue: qid,
                        id: r.id.0,
                        visible_at,
                        front,
                    }
                    .encode_frame(buf)
                });
                let q = st.queues.get_mut(&qid).expect("queue");
                if delay_ms > 0 {
                    q.delayed.insert(visible_at, l.entry);
                    if front {
                        q.front_when_due.insert(l.entry.id());
                    }
                } else if front {
                    q.ready.push_front(l.entry);
                } else {
                    q.put_back(l.entry);
                }
            }
            (ap.finish(), results)
        };
        self.log.wait_durable(lsn).await?;
        Ok(results)
    }

    pub(super) async fn change_lease(
        &self,
        queue: &str,
        receipt: Receipt,
        timeout_ms: u64,
        now: Millis,
    ) -> Result<Millis> {
        let mut st = self.state.lock();
        let qid = Self::qid(&st, queue)?;
        let q = st.queues.get_mut(&qid).expect("queue");
        let l = match lookup_lease(q, &receipt, now) {
            Lookup::Err(e) => return Err(e),
            Lookup::Ok(l) => l,
        };
        // Leases are not logged (a restart makes every leased message visible), so this needs
        // no sync.
        take_lease(q, &l);
        let lease_until = now + timeout_ms as i64;
        q.inflight.insert(
            l.entry.id(),
            Leased {
                lease_until,
                entry: l.entry,
            },
        );
        q.leases.insert((lease_until, l.entry.id()));
        q.lock_group(l.entry.group);
        Ok(lease_until)
    }

    pub(super) async fn peek_messages(
        &self,
        queue: &str,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<Message>> {
        let (lsn, picked) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            maintain(&mut st, qid, now, &mut ap);
            ap.finish();
            let q = &st.queues[&qid];
            let mut picked = Vec::new();
            let take = |e: &Entry, state, visible_at| Picked {
                entry: *e,
                state,
                visible_at,
                source_name: Self::source_name(&st, e),
            };
            for e in q.ready.iter().take(limit) {
                picked.push(take(e, MessageState::Ready, now));
            }
            for (at, e) in q.delayed.iter().take(limit - picked.len()) {
                picked.push(take(&e, MessageState::Delayed, at));
            }
            for (at, id) in q.leases.iter().take(limit - picked.len()) {
                picked.push(take(&q.inflight[id].entry, MessageState::InFlight, *at));
            }
            (self.log.appended(), picked)
        };
        self.log.wait_durable(lsn).await?;
        // Peeking changes nothing: a damaged message is left out of the answer and reported;
        // the next receive that reaches it takes it out of the queue.
        let mut out = Vec::with_capacity(picked.len());
        for p in picked {
            match self.load_one(p)? {
                Ok(m) => out.push(m),
                Err(why) => {
                    metrics::counter!("sluice_storage_corrupt_messages_total").increment(1);
                    tracing::error!("storage corruption: queue {queue}: {why} (seen by a peek)");
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn settle_receipts(
        &self,
        queue: &str,
        receipts: &[Receipt],
        tallies: &[&str],
        how: Settle,
        now: Millis,
    ) -> Result<Vec<ReceiptResult>> {
        self.check_writable()?;
        let (code, delay_ms, hold) = match how {
            Settle::Delivered => (1, 0, false),
            Settle::Failed => (2, 0, false),
            Settle::Retried { delay_ms, hold } => (if hold { 5 } else { 3 }, delay_ms, hold),
            Settle::Throttled { delay_ms, hold } => (if hold { 6 } else { 4 }, delay_ms, hold),
        };
        let visible_at = now + delay_ms as i64;
        let (lsn, results) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            let mut results = Vec::with_capacity(receipts.len());
            let mut gone = Vec::new();
            let q = st.queues.get_mut(&qid).expect("queue");
            for (i, r) in receipts.iter().enumerate() {
                let l = match lookup_lease(q, r, now) {
                    Lookup::Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                    Lookup::Ok(l) => l,
                };
                take_lease(q, &l);
                let tally = tallies.get(i).copied().unwrap_or_default();
                ap.push(56 + tally.len(), |buf| {
                    Record::Settle {
                        queue: qid,
                        id: r.id.0,
                        how: code,
                        visible_at,
                        tally,
                    }
                    .encode_frame(buf)
                });
                if !tally.is_empty() && matches!(how, Settle::Delivered | Settle::Failed) {
                    let t = q.tallies.entry(tally.to_string()).or_default();
                    if how == Settle::Delivered {
                        t.delivered += 1;
                    } else {
                        t.failed += 1;
                    }
                }
                results.push(Ok(()));
                match how {
                    Settle::Delivered | Settle::Failed => gone.push(l.entry),
                    _ if hold => {
                        // Kept leased until the next try: its FIFO group stays locked.
                        q.inflight.insert(
                            l.entry.id(),
                            Leased {
                                lease_until: visible_at,
                                entry: l.entry,
                            },
                        );
                        q.leases.insert((visible_at, l.entry.id()));
                        q.lock_group(l.entry.group);
                    }
                    _ if delay_ms > 0 => {
                        q.delayed.insert(visible_at, l.entry);
                    }
                    _ => q.put_back(l.entry),
                }
            }
            let settled = results.iter().filter(|r| r.is_ok()).count() as u64;
            let stats = &mut q.stats;
            *match how {
                Settle::Delivered => &mut stats.delivered,
                Settle::Failed => &mut stats.failed,
                Settle::Retried { .. } => &mut stats.retried,
                Settle::Throttled { .. } => &mut stats.throttled,
            } += settled;
            for e in &gone {
                st.removed(e);
            }
            (ap.finish(), results)
        };
        self.log.wait_durable(lsn).await?;
        Ok(results)
    }
}
