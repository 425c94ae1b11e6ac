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
use super::state::{set_counters, Entry, QState, State, Tally};
use effects::{count, gather, max_queue_id, purged, Index};
use scan::{named_keys, read_segment, resync, Key};

mod effects;
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

/// One readable segment: its number and how many bytes of it hold good frames.
struct Extent {
    seg: u32,
    good: usize,
    /// Damaged regions `[from, to)` inside `..good`, skipped by both passes.
    skips: Vec<(usize, usize)>,
}

/// A dedup key recovery saw: (queue, key, published at or valid until, id, segment).
type DedupSeen = (u32, String, i64, u128, u32);

/// What pass 1 gathers: the effects for pass 2, and the queues' counters, tallies and dedup keys.
#[derive(Default)]
struct Gathered {
    ix: Index,
    counts: FxHashMap<u32, [u64; COUNTERS]>,
    tallies: HashMap<(u32, String), (u64, u64)>,
    /// (log position, queue) of each purge, in log order.
    purges: Vec<(u64, u32)>,
    /// Publish records per queue: the capacity of each queue's filing.
    per_queue: FxHashMap<u32, usize>,
    /// Dedup keys of Publish records still inside the longest window (published at).
    dedups: Vec<DedupSeen>,
    /// Dedup keys carried over by compaction (valid until).
    carried: Vec<DedupSeen>,
    extents: Vec<Extent>,
}

/// One queue's surviving ready messages, in log order unless `sorted` is false.
struct Filing {
    orders: Vec<i64>,
    entries: Vec<Entry>,
    sorted: bool,
}

/// Rebuild the index from the catalog and the segments in `log_dir`.
///
/// Two passes keep memory flat, after a pre-read that finds which messages later records name
/// (`named_keys`): pass 1 ([`first_pass`]) checks every frame and gathers the effects of the
/// records that change a message after its Publish (usually few: a backlog is mostly Publish
/// records), and tracks only the named messages; pass 2 ([`read_publishes`]) streams the
/// Publish records in log order straight into each queue's structures, applying those
/// effects. Log order is delivery order unless a nack to the front or a move reordered
/// something; only then is a queue sorted ([`file`]).
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
    let named = named_keys(log_dir, &segs, &mut buf)?;
    let gathered = first_pass(log_dir, &segs, &mut buf, named, now, &mut report)?;

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

    let filings = read_publishes(
        log_dir,
        &gathered,
        &mut buf,
        catalog.next_queue_id,
        now,
        &mut state,
        &mut report,
    )?;
    let Gathered {
        ix,
        counts,
        tallies,
        dedups,
        carried,
        ..
    } = gathered;
    // Freed before the queues' ready lists are built, so that their memory and the lists' do not
    // add up at recovery's peak.
    drop(ix);
    drop(buf);
    file(&mut state, filings);
    restore_side_state(&mut state, now, dedups, carried, counts, tallies);
    report.messages = state.message_count();
    Ok((state, report))
}

/// Pass 1: validate, and gather effects. Effects are keyed by (queue, id) where the message
/// was published: the same id may live in several queues (a push queue's per-subscription
/// copies share it). A move makes the message's new place an alias of its origin. An id may
/// also come back to a queue after it was acked there (a push dead letter redriven to its
/// subscription): each Publish starts a new incarnation, and later records apply to the newest
/// one. Torn tails and damaged regions are reported and skipped (`Extent`).
fn first_pass(
    log_dir: &Path,
    segs: &[u32],
    buf: &mut Vec<u8>,
    mut named: Option<FxHashSet<Key>>,
    now: Millis,
    report: &mut RecoveryReport,
) -> crate::Result<Gathered> {
    let mut g = Gathered {
        extents: Vec::with_capacity(segs.len()),
        ..Gathered::default()
    };
    let mut pos = 0u64;
    let mut front = 0i64;
    for &seg in segs {
        read_segment(log_dir, seg, buf)?;
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
                                g.dedups.push((p.queue, key, p.enqueued_at, p.id, seg));
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
                                g.carried.push((*queue, key.to_string(), *until, *id, seg));
                            }
                        }
                        count(&mut g.counts, &mut g.tallies, &rec);
                        let (ix, named) = (&mut g.ix, &mut named);
                        gather(
                            ix,
                            named,
                            &mut g.purges,
                            &mut g.per_queue,
                            rec,
                            pos,
                            &mut front,
                        );
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
            if let Some(next) = resync(buf, off + 1) {
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
        g.extents.push(Extent {
            seg,
            good: off,
            skips,
        });
    }
    Ok(g)
}

/// Pass 2: read the Publish records again, in log order, and place each surviving message:
/// delayed ones straight into their queue, ready ones into their queue's [`Filing`]. Messages
/// of queue ids the catalog never issued are counted in the report, not filed.
fn read_publishes(
    log_dir: &Path,
    g: &Gathered,
    buf: &mut Vec<u8>,
    issued_below: u32,
    now: Millis,
    state: &mut State,
    report: &mut RecoveryReport,
) -> crate::Result<FxHashMap<u32, Filing>> {
    let mut filings: FxHashMap<u32, Filing> = FxHashMap::default();
    let mut pos = 0u64;
    for ext in &g.extents {
        read_segment(log_dir, ext.seg, buf)?;
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
            let eff = g.ix.effect_on_publish(p.queue, p.id, p.relocated, pos);
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
            if purged(&g.purges, eff, p.queue, pos) {
                continue;
            }
            if !state.queues.contains_key(&queue) {
                // A deleted queue's message, or one of an id the catalog never issued.
                if queue >= issued_below {
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
            let f = filings.entry(queue).or_insert_with(|| {
                let n = g.per_queue.get(&queue).copied().unwrap_or(0);
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
    Ok(filings)
}

/// File each queue's ready messages: in log order, sorted first only where a nack to the front
/// or a move reordered something; a FIFO queue's in publish (id) order.
fn file(state: &mut State, filings: FxHashMap<u32, Filing>) {
    for (qid, mut f) in filings {
        if state.queues[&qid].fifo && !f.entries.windows(2).all(|w| w[0].id() <= w[1].id()) {
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
}

/// What the queues keep beside their messages: dead-letter counts of the source queues, the
/// dedup keys still inside their window, the counters and the tallies.
fn restore_side_state(
    state: &mut State,
    now: Millis,
    dedups: Vec<DedupSeen>,
    carried: Vec<DedupSeen>,
    counts: FxHashMap<u32, [u64; COUNTERS]>,
    tallies: HashMap<(u32, String), (u64, u64)>,
) {
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
}

#[cfg(test)]
mod tests;
