//! The embedded store's upkeep, apart from the write path: housekeeping (due delays, expired
//! leases, retention, dead segments reclaimed), compaction (a few old live messages copied
//! forward so a whole prefix of segments can go), quarantine of damaged messages, the free-space
//! check, and redrive of dead letters.

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::model::MessageId;

use super::log::{Append, Loc, Log};
use super::record::{self, PublishRec, Record, COUNTERS};
use super::rules::{enforce_retention, maintain, take_lease};
use super::state::{counters_of, Entry, State};
use super::EmbeddedStore;

impl EmbeddedStore {
    /// Compaction: when the oldest segment that still holds live messages holds only a few and
    /// keeps later, dead segments from being deleted, copy those messages forward so the whole
    /// prefix can go. Finding them scans the index, so it runs at most every
    /// `compact_interval_ms`.
    pub(super) fn compact(&self, st: &mut State, ap: &mut Append<'_>, now: Millis) {
        // Not `self.log.active_segment()`: `ap` holds the log's pending lock.
        let Some(oldest) = self.compaction_due(st, ap.segment(), now) else {
            return;
        };
        self.last_compaction.store(now, Ordering::Relaxed);
        let mut moved = Vec::new();
        for q in st.queues.values_mut() {
            let qid = q.id;
            for e in q.ready.iter_mut().filter(|e| e.loc.seg == oldest) {
                moved.extend(relocate(e, qid, 0, &self.log, ap));
            }
            q.delayed.relocate_from(oldest, |at, e| {
                moved.extend(relocate(e, qid, at, &self.log, ap));
            });
            for l in q
                .inflight
                .values_mut()
                .filter(|l| l.entry.loc.seg == oldest)
            {
                moved.extend(relocate(&mut l.entry, qid, 0, &self.log, ap));
            }
        }
        for (from, to) in &moved {
            if let Some(n) = st.seg_live.get_mut(from) {
                *n = n.saturating_sub(1);
            }
            *st.seg_live.entry(*to).or_default() += 1;
        }
        if !moved.is_empty() {
            tracing::debug!(
                segment = oldest,
                messages = moved.len(),
                "compacted a log segment"
            );
        }
    }

    /// The segment compaction would copy forward now, if it is due: the oldest one holding
    /// live messages, when it holds few and is not the one before the active segment.
    fn compaction_due(&self, st: &State, active: u32, now: Millis) -> Option<u32> {
        let last = self.last_compaction.load(Ordering::Relaxed);
        if now - last < self.opts.compact_interval_ms {
            return None;
        }
        let (&oldest, &live) = st.seg_live.iter().find(|(_, &n)| n > 0)?;
        (live <= self.opts.compact_max_live && oldest + 1 < active).then_some(oldest)
    }

    /// Compaction reads its segment's live records under the state lock. The log keeps only
    /// its newest segments in the page cache (spare.rs), so read the segment about to be
    /// compacted into the cache first, off the lock and off the request threads: its reads
    /// under the lock then wait for no disk.
    async fn warm_for_compaction(&self, now: Millis) {
        let active = self.log.active_segment();
        let due = self.compaction_due(&self.state.lock(), active, now);
        if let Some(seg) = due {
            let path = Log::segment_path(&self.dir.join("log"), seg);
            let warmed = tokio::task::spawn_blocking(move || super::disk::read_through(&path));
            if let Ok(Err(e)) = warmed.await {
                tracing::debug!(error = %e, segment = seg, "could not read a segment ahead of its compaction");
            }
        }
    }

    /// Where message `id` is stored now, wherever it is in the index (a slow scan, for the rare
    /// read that finds its segment gone).
    pub(super) fn current_loc(&self, id: u128) -> Option<Loc> {
        let st = self.state.lock();
        st.queues.values().find_map(|q| {
            q.inflight
                .get(&id)
                .map(|l| l.entry.loc)
                .or_else(|| q.ready.iter().find(|e| e.id() == id).map(|e| e.loc))
                .or_else(|| {
                    q.delayed
                        .iter()
                        .find(|(_, e)| e.id() == id)
                        .map(|(_, e)| e.loc)
                })
        })
    }

    /// Refuse new data while the disk is nearly full, before anything changes: what is stored
    /// stays readable and acknowledgeable, and the reserve leaves room for acks, receives and
    /// compaction. The free space is read at most every 50 ms.
    pub(super) fn check_space(&self) -> Result<()> {
        match self.short_of_space() {
            Some((free, reserve)) => {
                metrics::counter!("sluice_storage_full_refusals_total").increment(1);
                Err(EngineError::StorageFull { free, reserve })
            }
            None => Ok(()),
        }
    }

    /// (free bytes, reserve) while the data directory's disk is below `--min-free-bytes`.
    pub(super) fn short_of_space(&self) -> Option<(u64, u64)> {
        let reserve = self.opts.min_free_bytes;
        if reserve == 0 {
            return None;
        }
        let free = {
            let mut s = self.space.lock();
            let stale = match s.0 {
                Some(at) => at.elapsed() >= std::time::Duration::from_millis(50),
                None => true,
            };
            if stale {
                s.1 = super::disk::free_bytes(&self.dir).unwrap_or(u64::MAX);
                s.0 = Some(std::time::Instant::now());
            }
            s.1
        };
        (free < reserve).then_some((free, reserve))
    }

    /// Messages whose records turned out damaged when a receive read them cannot be delivered:
    /// take them out of their queue (an Ack record, so they stay out) and report each. The
    /// rest of the queue, and every other queue, go on.
    pub(super) fn quarantine(&self, queue: &str, bad: Vec<(Entry, String)>) {
        {
            let mut st = self.state.lock();
            let Some(qid) = st.names.get(queue).copied() else {
                return;
            };
            let mut ap = self.log.begin();
            let mut gone = Vec::new();
            if let Some(q) = st.queues.get_mut(&qid) {
                for (e, _) in &bad {
                    let Some(l) = q.inflight.get(&e.id()).copied() else {
                        continue;
                    };
                    if l.entry.nonce != e.nonce {
                        continue;
                    }
                    take_lease(q, &l);
                    ap.push(32, |buf| {
                        Record::Ack {
                            queue: qid,
                            id: e.id(),
                        }
                        .encode_frame(buf)
                    });
                    gone.push(l.entry);
                }
            }
            for e in &gone {
                st.removed(e);
            }
            ap.finish();
        }
        for (_, why) in bad {
            metrics::counter!("sluice_storage_corrupt_messages_total").increment(1);
            self.report_problem(format!(
                "queue {queue}: {why}; the message was taken out of the queue"
            ));
        }
    }

    pub(super) async fn redrive_dead_letters(
        &self,
        queue: &str,
        max: usize,
        only: Option<&std::collections::HashSet<MessageId>>,
        now: Millis,
    ) -> Result<u64> {
        self.check_writable()?;
        let (lsn, moved) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            maintain(&mut st, qid, now, &mut ap);
            let holds_dead_letters = st.queues[&qid].ready.iter().any(|e| e.source != 0)
                || st.queues[&qid].delayed.iter().any(|(_, e)| e.source != 0);
            // Which queue to take dead letters from, and whose dead letters to take.
            let (from, only_source) = if holds_dead_letters {
                (qid, None)
            } else {
                match st.queues[&qid]
                    .info
                    .config
                    .dead_letter_queue
                    .as_ref()
                    .and_then(|n| st.names.get(n))
                {
                    Some(&dlq) => {
                        maintain(&mut st, dlq, now, &mut ap);
                        (dlq, Some(qid))
                    }
                    None => (qid, None),
                }
            };
            let live: rustc_hash::FxHashSet<u32> = st.queues.keys().copied().collect();
            let wanted = |e: &Entry| {
                e.source != 0
                    && live.contains(&e.source)
                    && only_source.is_none_or(|s| s == e.source)
                    && only.is_none_or(|o| o.contains(&MessageId(e.id())))
            };
            let q = st.queues.get_mut(&from).expect("queue");
            let mut picked = 0usize;
            let mut going: Vec<Entry> = q.ready.retain(|e| {
                let take = picked < max && wanted(e);
                picked += take as usize;
                !take
            });
            let delayed_keys: Vec<(i64, u128)> = q
                .delayed
                .iter()
                .filter(|(_, e)| wanted(e))
                .map(|(at, e)| (at, e.id()))
                .take(max - going.len())
                .collect();
            for (at, id) in delayed_keys {
                going.push(q.delayed.remove(at, id).expect("present"));
            }
            let moved = going.len() as u64;
            for mut e in going {
                let to = e.source;
                ap.push(64, |buf| {
                    Record::Move {
                        queue: from,
                        id: e.id(),
                        to,
                        source: 0,
                        reset: true,
                    }
                    .encode_frame(buf)
                });
                e.source = 0;
                e.receive_count = 0;
                let home = st.queues.get_mut(&to).expect("live source");
                home.stats.dead_lettered = home.stats.dead_lettered.saturating_sub(1);
                home.stats.redriven += 1;
                home.put_back(e);
            }
            (ap.finish(), moved)
        };
        self.log.wait_durable(lsn).await?;
        Ok(moved)
    }

    pub(super) async fn housekeeping(&self, now: Millis) -> Result<Vec<String>> {
        if self.log.failure().is_some() {
            return Ok(Vec::new());
        }
        if let Err(e) = self.history.reclaim(now) {
            tracing::warn!(error = %e, "could not reclaim delivery history segments");
        }
        self.warm_for_compaction(now).await;
        let (lsn, woke, dead_segments) = {
            let mut st = self.state.lock();
            let mut ap = self.log.begin();
            let ids: Vec<u32> = st.queues.keys().copied().collect();
            let mut woke = Vec::new();
            for qid in ids {
                if maintain(&mut st, qid, now, &mut ap) {
                    woke.push(st.queues[&qid].info.name.clone());
                }
                enforce_retention(&mut st, qid, now);
                let q = st.queues.get_mut(&qid).expect("queue");
                if !q.dedup.is_empty() {
                    q.dedup.retain(|_, (until, _, _)| *until > now);
                }
                // A bucket refilled for a second is full: forgotten (a new one starts full).
                q.buckets.retain(|_, (_, at)| now - *at < 1000);
            }
            self.compact(&mut st, &mut ap, now);
            snapshot_counters(&mut st, &mut ap);
            // Prefix deletion: the oldest segments with nothing live, never the active one.
            // (`ap.segment()`: `ap` holds the log's pending lock.)
            let active = ap.segment();
            let mut dead = Vec::new();
            for (&seg, &live) in st.seg_live.iter() {
                if seg >= active || live > 0 {
                    break;
                }
                dead.push(seg);
            }
            for s in &dead {
                st.seg_live.remove(s);
            }
            // Every segment below the first live one goes (also those the index never saw,
            // e.g. all of their messages were acked before a restart): first, deduplication
            // keys still in their window whose record is there are carried forward.
            let first_live = st
                .seg_live
                .iter()
                .find(|(_, &n)| n > 0)
                .map(|(&s, _)| s)
                .unwrap_or(u32::MAX)
                .min(active);
            carry_dedup_keys(&mut st, first_live, &mut ap);
            let lsn = ap.finish();
            (lsn, woke, (dead, first_live))
        };
        let (dead_segments, first_live) = dead_segments;
        self.log.wait_durable(lsn).await?;
        let active = self.log.active_segment();
        let gone = reclaimable(
            &self.dir.join("log"),
            first_live.min(active),
            &dead_segments,
        );
        for &seg in &gone {
            self.log.remove_segment(seg)?;
        }
        if !gone.is_empty() {
            tracing::debug!(removed = gone.len(), "reclaimed log segments");
        }
        let mut bytes = 0;
        if let Ok(rd) = std::fs::read_dir(self.dir.join("log")) {
            for e in rd.flatten() {
                // Allocated bytes: segments are pre-sized sparse files, or zero-filled spares
                // (spare.rs).
                bytes += e
                    .metadata()
                    .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
                    .unwrap_or(0);
            }
        }
        self.bytes_on_disk.store(bytes, Ordering::Relaxed);
        Ok(woke)
    }
}

/// The segment files of `log_dir` housekeeping deletes: every one below `below`, and the
/// `dead` ones. Oldest first: removed in this order, each removal synced, a crash part-way
/// leaves a suffix of the log. In the directory's own order a later segment could go while an
/// earlier one stayed, and acked messages published in the earlier one would come back without
/// the acks in the later one (found by `sluice bench crash`).
fn reclaimable(log_dir: &Path, below: u32, dead: &[u32]) -> Vec<u32> {
    let mut gone = Log::segment_numbers(log_dir).unwrap_or_default();
    gone.retain(|&seg| seg < below || dead.contains(&seg));
    gone
}

/// Copy one live message forward (a Relocate record with its whole state) and point its entry
/// at the copy. Returns the old and new locations, or None if the old record cannot be read.
fn relocate(
    e: &mut Entry,
    qid: u32,
    visible_at: i64,
    log: &Log,
    ap: &mut Append<'_>,
) -> Option<(u32, u32)> {
    let frame = log.read(e.loc).ok()?;
    let record::Frame::Good(payload, _) = record::read_frame(&frame) else {
        return None;
    };
    let Ok(Record::Publish(old)) = record::decode(payload) else {
        return None;
    };
    let copy = Record::Publish(PublishRec {
        queue: qid,
        id: e.id(),
        enqueued_at: e.enqueued_at,
        visible_at,
        receive_count: e.receive_count,
        nonce: e.nonce,
        first_received_at: e.first_received_at,
        source: e.source,
        group: old.group,
        dedup: old.dedup,
        attributes: old.attributes,
        body: old.body,
        relocated: true,
        priority: e.priority,
        expires_at: e.expires_at,
    });
    let from = e.loc.seg;
    e.loc = ap.push(frame.len() + 16, |buf| copy.encode_frame(buf));
    Some((from, e.loc.seg))
}

/// Write a Dedup record for every deduplication key (still in its window) whose record sits
/// in a segment below `keep_from`, which is about to be deleted, so a restart still knows it.
fn carry_dedup_keys(st: &mut State, keep_from: u32, ap: &mut Append<'_>) {
    for q in st.queues.values_mut() {
        let qid = q.id;
        for (key, (until, id, seg)) in q.dedup.iter_mut().filter(|(_, v)| v.2 < keep_from) {
            let rec = Record::Dedup {
                queue: qid,
                key,
                until: *until,
                id: *id,
            };
            *seg = ap.push(40 + key.len(), |buf| rec.encode_frame(buf)).seg;
        }
    }
}

/// Log the counters of every queue whose counters changed since their last snapshot, and of
/// every queue when the active segment is not the one holding the last full snapshot: so the
/// latest snapshot of each queue is always in the active segment or after, and deleting older
/// segments never loses a counter. (Replay takes the last snapshot and counts the records
/// after it.)
fn snapshot_counters(st: &mut State, ap: &mut Append<'_>) {
    let segment = ap.segment();
    let full = st.counters_segment != segment;
    for q in st.queues.values_mut() {
        let values = counters_of(&q.stats);
        if full || values != q.logged {
            ap.push(16 + 8 * COUNTERS, |buf| {
                Record::Counters {
                    queue: q.id,
                    values,
                }
                .encode_frame(buf)
            });
            q.logged = values;
        }
        for (key, t) in q.tallies.iter_mut() {
            let now = (t.delivered, t.failed);
            if full || now != t.logged {
                ap.push(40 + key.len(), |buf| {
                    Record::Tally {
                        queue: q.id,
                        key,
                        delivered: now.0,
                        failed: now.1,
                    }
                    .encode_frame(buf)
                });
                t.logged = now;
            }
        }
    }
    // A snapshot that spilled into the next segment is done again there at the next tick.
    if full && ap.segment() == segment {
        st.counters_segment = segment;
    }
}

#[cfg(test)]
mod tests {
    /// Segments are deleted oldest first whatever order the directory lists them in (here
    /// created out of order, as a directory that reuses freed entries lists them).
    #[test]
    fn segments_are_reclaimed_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        for seg in [5u32, 2, 9, 1, 7, 3, 8] {
            std::fs::write(super::Log::segment_path(dir.path(), seg), b"").unwrap();
        }
        std::fs::write(dir.path().join("spare"), b"").unwrap();
        assert_eq!(
            super::reclaimable(dir.path(), 4, &[5, 7]),
            vec![1, 2, 3, 5, 7]
        );
    }
}
