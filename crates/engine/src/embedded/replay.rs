//! Recovery: rebuild the index (`state.rs`) from the catalog and the log segments. It is kept
//! apart from the write path: it reads every segment in order, applies each record to a
//! temporary map keyed by message id, stops a segment at its first torn or corrupt frame
//! (reporting what it dropped), and finally files each surviving message under its queue.
//! Queue counters come from the last `Counters` snapshot of each queue plus the records after
//! it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::clock::Millis;

use super::catalog::Catalog;
use super::log::{Loc, Log};
use super::record::COUNTERS;
use super::record::{self, Frame, Record};
use super::state::{counter, set_counters, Entry, QState, State, Tally};
use scan::{key, named_keys, read_segment, resync, Key};

mod scan;

/// What recovery found, for the log.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    pub bytes: u64,
    pub messages: u64,
    /// One line per segment whose tail was dropped (a torn write at a crash).
    pub dropped: Vec<String>,
    /// One line per damaged region in the middle of a segment (a checksum mismatch or a record
    /// that does not decode): skipped, reading resumed at the next good frame. The records in
    /// it are lost; every other record, of every queue, is kept.
    pub corrupt: Vec<String>,
    pub last_segment: Option<u32>,
    /// The highest queue id any record names: new queues get higher ids (`catalog.rs`).
    pub max_queue_id: u32,
    /// Live messages of queue ids the catalog never issued (a lost or restored catalog): per
    /// id, how many, and the segments holding their Publish records. Not filed (`catalog.rs`
    /// sets them aside).
    pub unknown_queues: BTreeMap<u32, (u64, BTreeSet<u32>)>,
}

/// The net effect of the non-Publish records on one message, gathered by the first pass.
#[derive(Default)]
struct Effect {
    acked: bool,
    receive: Option<(u32, u32, i64)>,
    visible_at: Option<i64>,
    order: Option<i64>,
    source: Option<u32>,
    reset: bool,
    /// (log position, queue) of each move, in log order. Usually empty.
    moves: Vec<(u64, u32)>,
    /// Log position of the newest compaction copy: only that copy is filed.
    relocated_at: Option<u64>,
}

/// One readable segment: its number and how many bytes of it hold good frames.
struct Extent {
    seg: u32,
    good: usize,
    /// Damaged regions `[from, to)` inside `..good`, skipped by both passes.
    skips: Vec<(usize, usize)>,
}

/// Rebuild the index from the catalog and the segments in `log_dir`.
///
/// Two passes keep memory flat, after a pre-read that finds which messages later records name
/// (`named_keys`): pass 1 checks every frame and gathers the effects of the records that
/// change a message after its Publish (usually few: a backlog is mostly Publish records), and
/// tracks only the named messages; pass 2 streams the Publish records in log order straight into each queue's
/// structures, applying those effects. Log order is delivery order unless a nack to the front
/// or a move reordered something; only then is a queue sorted.
pub fn replay(
    catalog: &Catalog,
    log_dir: &Path,
    now: Millis,
) -> crate::Result<(State, RecoveryReport)> {
    let mut report = RecoveryReport::default();
    let segs = Log::segment_numbers(log_dir)?;
    report.last_segment = segs.last().copied();

    // One buffer for every segment read: a fresh one per segment had the kernel zero 64 MiB of
    // new pages each time.
    let mut buf = Vec::new();
    let mut named = named_keys(log_dir, &segs, &mut buf)?;

    // Pass 1: validate, and gather effects. Effects are keyed by (queue, id) where the message
    // was published: the same id may live in several queues (a push queue's per-subscription
    // copies share it). A move makes the message's new place an alias of its origin.
    // An id may also come back to a queue after it was acked there (a push dead letter
    // redriven to its subscription): each Publish starts a new incarnation, and later records
    // apply to the newest one.
    let mut ix = Index::default();
    let mut counts: FxHashMap<u32, [u64; COUNTERS]> = FxHashMap::default();
    let mut tallies: HashMap<(u32, String), (u64, u64)> = HashMap::new();
    let mut purges: Vec<(u64, u32)> = Vec::new();
    let mut per_queue: FxHashMap<u32, usize> = FxHashMap::default();
    // (queue, key, published at, id, segment); carried: (queue, key, until, id, segment).
    let mut dedups: Vec<(u32, String, i64, u128, u32)> = Vec::new();
    let mut carried: Vec<(u32, String, i64, u128, u32)> = Vec::new();
    let mut extents = Vec::with_capacity(segs.len());
    let mut pos = 0u64;
    let mut front = 0i64;
    for &seg in &segs {
        read_segment(log_dir, seg, &mut buf)?;
        report.segments += 1;
        report.bytes += buf.len() as u64;
        let mut off = 0usize;
        let mut skips = Vec::new();
        loop {
            let problem = match record::read_frame(&buf[off..]) {
                Frame::End => break,
                Frame::Good(payload, len) => match record::decode(payload) {
                    Ok(rec) => {
                        pos += 1;
                        report.max_queue_id = report.max_queue_id.max(max_queue_id(&rec));
                        if let Record::Publish(p) = &rec {
                            let longest = crate::limits::DEDUP_WINDOW_MAX_S as i64 * 1000;
                            if !p.dedup.is_empty() && p.enqueued_at + longest > now {
                                let key = p.dedup.to_string();
                                dedups.push((p.queue, key, p.enqueued_at, p.id, seg));
                            }
                        }
                        if let Record::Dedup {
                            queue,
                            key,
                            until,
                            id,
                        } = &rec
                        {
                            if *until > now {
                                carried.push((*queue, key.to_string(), *until, *id, seg));
                            }
                        }
                        count(&mut counts, &mut tallies, &rec);
                        let (ix, named) = (&mut ix, &mut named);
                        gather(ix, named, &mut purges, &mut per_queue, rec, pos, &mut front);
                        report.records += 1;
                        off += len;
                        continue;
                    }
                    Err(e) => {
                        // The checksum holds but the record does not decode: skip it alone.
                        report.corrupt.push(format!(
                            "segment {seg}: skipped the {len}-byte record at offset {off}: {}",
                            e.0
                        ));
                        skips.push((off, off + len));
                        off += len;
                        continue;
                    }
                },
                Frame::Short => "torn write (frame shorter than its header says)",
                Frame::Corrupt(why) => why,
            };
            if let Some(next) = resync(&buf, off + 1) {
                report.corrupt.push(format!(
                    "segment {seg}: skipped {} damaged bytes at offset {off} ({problem}); reading resumed at offset {next}",
                    next - off
                ));
                skips.push((off, next));
                off = next;
                continue;
            }
            report.dropped.push(format!(
                "segment {seg}: dropped {} bytes from offset {off}: {problem}",
                buf.len() - off
            ));
            break;
        }
        extents.push(Extent {
            seg,
            good: off,
            skips,
        });
    }

    drop(named);

    let mut state = State {
        next_queue_id: catalog.next_queue_id.max(1),
        ..State::default()
    };
    for q in &catalog.queues {
        state.names.insert(q.info.name.clone(), q.id);
        state.queues.insert(q.id, QState::new(q.id, q.info.clone()));
        state.next_queue_id = state.next_queue_id.max(q.id + 1);
    }
    // Never reuse an id the log mentions, even one the catalog lost.
    state.next_queue_id = state
        .next_queue_id
        .max(report.max_queue_id.saturating_add(1));

    // Pass 2: file each surviving message under its queue, in log order.
    struct Filing {
        orders: Vec<i64>,
        entries: Vec<Entry>,
        sorted: bool,
    }
    let mut filing: FxHashMap<u32, Filing> = FxHashMap::default();
    let mut pos = 0u64;
    for ext in &extents {
        read_segment(log_dir, ext.seg, &mut buf)?;
        let mut off = 0usize;
        let mut skips = ext.skips.iter().peekable();
        while off < ext.good {
            if let Some(&&(from, to)) = skips.peek() {
                if off == from {
                    off = to;
                    skips.next();
                    continue;
                }
            }
            let Frame::Good(payload, len) = record::read_frame(&buf[off..ext.good]) else {
                break; // pass 1 checked every frame up to `good`
            };
            pos += 1;
            let loc = Loc {
                seg: ext.seg,
                off: off as u32,
                len: len as u32,
            };
            off += len;
            let Ok(Record::Publish(p)) = record::decode(payload) else {
                continue;
            };
            let incarnation = if p.relocated {
                ix.relocated.get(&pos).copied()
            } else {
                Some((key(p.queue, p.id), pos))
            };
            let eff = incarnation.and_then(|k| ix.effects.get(&k));
            if eff.is_some_and(|e| e.acked) {
                continue;
            }
            // A compacted message: only its newest copy counts.
            if eff.and_then(|e| e.relocated_at).is_some_and(|at| at != pos) {
                continue;
            }
            let mut queue = p.queue;
            if let Some(e) = eff {
                if let Some(&(_, to)) = e.moves.last() {
                    queue = to;
                }
            }
            if purged(&purges, eff, p.queue, pos) {
                continue;
            }
            if !state.queues.contains_key(&queue) {
                // A deleted queue's message, or one of an id the catalog never issued.
                if queue >= catalog.next_queue_id {
                    let u = report.unknown_queues.entry(queue).or_default();
                    u.0 += 1;
                    u.1.insert(ext.seg);
                }
                continue;
            }
            let mut entry = Entry::new(p.id, loc, p.enqueued_at);
            entry.receive_count = p.receive_count;
            entry.nonce = p.nonce;
            entry.first_received_at = p.first_received_at;
            entry.source = p.source;
            entry.priority = p.priority;
            // A message that was ever moved (dead-lettered) lost its time to live there.
            entry.expires_at = if eff.is_some_and(|e| !e.moves.is_empty()) {
                0
            } else {
                p.expires_at
            };
            if !p.group.is_empty() {
                entry.group = crate::model::group_tag(p.group);
            }
            let mut visible_at = p.visible_at;
            let mut order = pos as i64;
            if let Some(e) = eff {
                if let Some((rc, nonce, first)) = e.receive {
                    entry.receive_count = rc;
                    entry.nonce = nonce;
                    entry.first_received_at = first;
                }
                if e.reset {
                    entry.receive_count = 0;
                }
                if let Some(s) = e.source {
                    entry.source = s;
                }
                visible_at = e.visible_at.unwrap_or(visible_at);
                order = e.order.unwrap_or(order);
            }
            state.add_live(loc);
            let q = state.queues.get_mut(&queue).expect("checked");
            if visible_at > now {
                q.delayed.insert(visible_at, entry);
                continue;
            }
            let f = filing.entry(queue).or_insert_with(|| {
                let n = per_queue.get(&queue).copied().unwrap_or(0);
                Filing {
                    orders: Vec::with_capacity(n),
                    entries: Vec::with_capacity(n),
                    sorted: true,
                }
            });
            if f.orders.last().is_some_and(|&last| order < last) {
                f.sorted = false;
            }
            f.orders.push(order);
            f.entries.push(entry);
        }
    }
    drop(ix);
    drop(buf);
    for (qid, mut f) in filing {
        if state.queues[&qid].fifo && !f.entries.windows(2).all(|w| w[0].id() <= w[1].id()) {
            // A FIFO queue's ready list is in publish (id) order.
            f.entries.sort_unstable_by_key(|e| e.id());
            f.sorted = true;
        }
        let entries = if f.sorted {
            f.entries
        } else {
            let mut idx: Vec<u32> = (0..f.entries.len() as u32).collect();
            idx.sort_unstable_by_key(|&i| f.orders[i as usize]);
            idx.into_iter().map(|i| f.entries[i as usize]).collect()
        };
        let q = state.queues.get_mut(&qid).expect("filed queues exist");
        q.ready.extend_back(entries);
    }
    let sources: Vec<u32> = state
        .queues
        .values()
        .flat_map(|q| {
            q.ready
                .iter()
                .copied()
                .chain(q.delayed.iter().map(|(_, e)| e))
        })
        .filter(|e| e.source != 0)
        .map(|e| e.source)
        .collect();
    for s in sources {
        if let Some(src) = state.queues.get_mut(&s) {
            src.stats.dead_lettered += 1;
        }
    }
    for (queue, key, published, id, seg) in dedups {
        if let Some(q) = state.queues.get_mut(&queue) {
            let until = published + q.info.config.dedup_window_seconds as i64 * 1000;
            if until > now {
                q.dedup.insert(key, (until, id, seg));
            }
        }
    }
    for (queue, key, until, id, seg) in carried {
        if let Some(q) = state.queues.get_mut(&queue) {
            q.dedup.entry(key).or_insert((until, id, seg));
        }
    }
    for (qid, values) in counts {
        if let Some(q) = state.queues.get_mut(&qid) {
            set_counters(&mut q.stats, values);
            q.logged = values;
        }
    }
    for ((qid, key), (delivered, failed)) in tallies {
        if let Some(q) = state.queues.get_mut(&qid) {
            q.tallies.insert(
                key,
                Tally {
                    delivered,
                    failed,
                    logged: (delivered, failed),
                },
            );
        }
    }
    report.messages = state.message_count();
    Ok((state, report))
}

/// Queue counters and tallies: a `Counters` (`Tally`) snapshot sets them, the records after it
/// count on.
fn count(
    counts: &mut FxHashMap<u32, [u64; COUNTERS]>,
    tallies: &mut HashMap<(u32, String), (u64, u64)>,
    rec: &Record<'_>,
) {
    if let Record::Settle {
        queue, how, tally, ..
    } = rec
    {
        if !tally.is_empty() && (*how == 1 || *how == 2) {
            let t = tallies.entry((*queue, tally.to_string())).or_default();
            if *how == 1 {
                t.0 += 1;
            } else {
                t.1 += 1;
            }
        }
    }
    let mut bump = |queue: u32, i: usize| counts.entry(queue).or_insert([0; COUNTERS])[i] += 1;
    match rec {
        Record::Publish(p) if !p.relocated => bump(p.queue, counter::PUBLISHED),
        Record::Publish(_) | Record::Purge { .. } => {}
        Record::Receive { queue, .. } => bump(*queue, counter::RECEIVED),
        Record::Ack { queue, .. } => bump(*queue, counter::ACKED),
        Record::Release { queue, .. } => bump(*queue, counter::NACKED),
        Record::Move {
            queue, to, reset, ..
        } => match reset {
            false => bump(*queue, counter::DEAD_LETTERED_TOTAL),
            true => bump(*to, counter::REDRIVEN),
        },
        Record::Settle { queue, how, .. } => bump(
            *queue,
            match how {
                1 => counter::DELIVERED,
                2 => counter::FAILED,
                7 | 8 => counter::EXPIRED,
                3 | 5 => counter::RETRIED,
                _ => counter::THROTTLED,
            },
        ),
        Record::Counters { queue, values } => {
            counts.insert(*queue, *values);
        }
        Record::Tally {
            queue,
            key,
            delivered,
            failed,
        } => {
            if *delivered == u64::MAX && *failed == u64::MAX {
                tallies.remove(&(*queue, key.to_string()));
            } else {
                tallies.insert((*queue, key.to_string()), (*delivered, *failed));
            }
        }
        Record::Filtered { queue, n } => {
            counts.entry(*queue).or_insert([0; COUNTERS])[counter::FILTERED] += n;
        }
        Record::Dedup { .. } => {}
    }
}

/// The highest queue id a record names.
fn max_queue_id(rec: &Record<'_>) -> u32 {
    match rec {
        Record::Publish(p) => p.queue.max(p.source),
        Record::Move {
            queue, to, source, ..
        } => (*queue).max(*to).max(*source),
        Record::Receive { queue, .. }
        | Record::Ack { queue, .. }
        | Record::Release { queue, .. }
        | Record::Purge { queue }
        | Record::Settle { queue, .. }
        | Record::Counters { queue, .. }
        | Record::Tally { queue, .. }
        | Record::Filtered { queue, .. }
        | Record::Dedup { queue, .. } => *queue,
    }
}

/// A message incarnation: where it was published, and the log position of that Publish.
type Inc = (Key, u64);

#[derive(Default)]
struct Index {
    effects: FxHashMap<Inc, Effect>,
    /// Where a moved message is now -> where it was published.
    alias: FxHashMap<Key, Key>,
    /// The newest incarnation published at each key. (Fx: not SipHash, which was a third of
    /// recovery's time; the keys come from our own log, so no hash flooding to resist.)
    current: FxHashMap<Key, u64>,
    /// Log position of a compaction copy -> the incarnation it copies.
    relocated: FxHashMap<u64, Inc>,
}

impl Index {
    /// The incarnation a record about (queue, id) applies to.
    fn at(&self, at: Key) -> Option<Inc> {
        let origin = self.alias.get(&at).copied().unwrap_or(at);
        self.current.get(&origin).map(|&p| (origin, p))
    }
    fn effect(&mut self, at: Key) -> Option<&mut Effect> {
        let inc = self.at(at)?;
        Some(self.effects.entry(inc).or_default())
    }
}

fn gather(
    ix: &mut Index,
    named: &mut Option<FxHashSet<Key>>,
    purges: &mut Vec<(u64, u32)>,
    per_queue: &mut FxHashMap<u32, usize>,
    rec: Record<'_>,
    pos: u64,
    front: &mut i64,
) {
    match rec {
        Record::Publish(p) => {
            if p.relocated {
                // The copy's original Publish may be gone (its segment deleted, which is what
                // compaction is for): then the copy starts the incarnation, so the records
                // after it (receives, acks) still apply.
                let inc = ix.at(key(p.queue, p.id)).unwrap_or_else(|| {
                    ix.current.insert(key(p.queue, p.id), pos);
                    *per_queue.entry(p.queue).or_default() += 1;
                    (key(p.queue, p.id), pos)
                });
                ix.effects.entry(inc).or_default().relocated_at = Some(pos);
                ix.relocated.insert(pos, inc);
            } else {
                // Tracked when a later record names it (`named_keys`), or when an earlier
                // incarnation is (this one replaces it).
                let k = key(p.queue, p.id);
                if named.as_mut().is_none_or(|n| n.remove(&k)) || ix.current.contains_key(&k) {
                    ix.current.insert(k, pos);
                }
                *per_queue.entry(p.queue).or_default() += 1;
            }
        }
        Record::Receive {
            queue,
            id,
            receive_count,
            nonce,
            first_received_at,
        } => {
            let Some(e) = ix.effect(key(queue, id)) else {
                return;
            };
            e.receive = Some((receive_count, nonce, first_received_at));
            e.reset = false;
            // It was leased when the server stopped: visible again now.
            e.visible_at = Some(i64::MIN);
        }
        Record::Ack { queue, id } => {
            if let Some(e) = ix.effect(key(queue, id)) {
                e.acked = true;
            }
        }
        Record::Release {
            queue,
            id,
            visible_at,
            front: at_front,
        } => {
            let Some(e) = ix.effect(key(queue, id)) else {
                return;
            };
            e.visible_at = Some(visible_at);
            e.order = Some(if at_front {
                *front -= 1;
                *front
            } else {
                pos as i64
            });
        }
        Record::Move {
            queue,
            id,
            to,
            source,
            reset,
        } => {
            let Some(inc) = ix.at(key(queue, id)) else {
                return;
            };
            let origin = inc.0;
            ix.alias.remove(&key(queue, id));
            if origin != key(to, id) {
                ix.alias.insert(key(to, id), origin);
            } else {
                ix.alias.remove(&key(to, id));
            }
            let e = ix.effects.entry(inc).or_default();
            e.moves.push((pos, to));
            e.source = Some(source);
            if reset {
                e.reset = true;
            }
            e.visible_at = Some(i64::MIN);
            e.order = Some(pos as i64);
        }
        Record::Purge { queue } => purges.push((pos, queue)),
        Record::Settle {
            queue,
            id,
            how,
            visible_at,
            ..
        } => {
            let Some(e) = ix.effect(key(queue, id)) else {
                return;
            };
            match how {
                // Delivered or failed, or expired (time to live): gone.
                1 | 2 | 7 => e.acked = true,
                // Released until `visible_at`, at the back.
                3 | 4 => {
                    e.visible_at = Some(visible_at);
                    e.order = Some(pos as i64);
                }
                // Held in its lease: leases are not kept across a restart.
                _ => {}
            }
        }
        Record::Counters { .. }
        | Record::Tally { .. }
        | Record::Filtered { .. }
        | Record::Dedup { .. } => {}
    }
}

/// Whether a purge removed the message published at `published` into `queue`: a purge of the
/// queue the message was in at the purge's moment, after the publish.
fn purged(purges: &[(u64, u32)], eff: Option<&Effect>, queue: u32, published: u64) -> bool {
    let first = purges.partition_point(|&(p, _)| p <= published);
    purges[first..].iter().any(|&(at, purged_queue)| {
        let here = eff
            .and_then(|e| {
                e.moves
                    .iter()
                    .rev()
                    .find(|&&(mp, _)| mp < at)
                    .map(|&(_, to)| to)
            })
            .unwrap_or(queue);
        here == purged_queue
    })
}

#[cfg(test)]
mod tests;
