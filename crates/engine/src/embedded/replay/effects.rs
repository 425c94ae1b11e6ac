//! Pass 1's bookkeeping for recovery (`replay.rs`): the net effect of the records that change a
//! message after its Publish (receives, acks, releases, moves, settles, purges), keyed by the
//! message's incarnation, and the queues' counters and tallies as the records count them.

use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};

use super::scan::{key, Key};
use crate::embedded::record::{Record, COUNTERS};
use crate::embedded::state::counter;

/// The net effect of the non-Publish records on one message, gathered by the first pass.
#[derive(Default)]
pub(super) struct Effect {
    pub(super) acked: bool,
    pub(super) receive: Option<(u32, u32, i64)>,
    pub(super) visible_at: Option<i64>,
    pub(super) order: Option<i64>,
    pub(super) source: Option<u32>,
    pub(super) reset: bool,
    /// (log position, queue) of each move, in log order. Usually empty.
    pub(super) moves: Vec<(u64, u32)>,
    /// Log position of the newest compaction copy: only that copy is filed.
    pub(super) relocated_at: Option<u64>,
}

/// Queue counters and tallies: a `Counters` (`Tally`) snapshot sets them, the records after it
/// count on.
pub(super) fn count(
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
pub(super) fn max_queue_id(rec: &Record<'_>) -> u32 {
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
pub(super) type Inc = (Key, u64);

#[derive(Default)]
pub(super) struct Index {
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
    /// What the later records did to the message that the Publish record at log position
    /// `pos` (of `id` into `queue`, a compaction copy if `relocated`) files, if anything.
    pub(super) fn effect_on_publish(
        &self,
        queue: u32,
        id: u128,
        relocated: bool,
        pos: u64,
    ) -> Option<&Effect> {
        let incarnation = if relocated {
            self.relocated.get(&pos).copied()
        } else {
            Some((key(queue, id), pos))
        };
        incarnation.and_then(|k| self.effects.get(&k))
    }
}

pub(super) fn gather(
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
pub(super) fn purged(
    purges: &[(u64, u32)],
    eff: Option<&Effect>,
    queue: u32,
    published: u64,
) -> bool {
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
