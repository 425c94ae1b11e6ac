//! The embedded store's in-memory index: per queue, the ready messages in delivery order, the
//! delayed ones by due time, and the leased ones by lease end, and the queue's counters. Only
//! metadata lives here (about 56 bytes a ready message, 48 a delayed one: `delayed.rs`); bodies
//! stay in the log and are read back by location. Recovery (`replay.rs`) rebuilds it from the
//! catalog and the log segments.
//!
//! Maps keyed by the store's own numbers (queue ids, group tags, message ids) hash with
//! `rustc-hash` (FxHash: a few instructions a key instead of SipHash's hundred or so, on every
//! publish, receive and ack); clients cannot choose those keys. Maps keyed by client text
//! (queue names, deduplication ids, tally keys) keep std's seeded SipHash.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::clock::Millis;
use crate::model::{QueueInfo, QueueStats};

use super::catalog::Catalog;
use super::delayed::Delayed;
use super::log::Loc;
use super::ready::Ready;
use super::record::COUNTERS;

/// The metadata of one message. `id` is split into two u64 to keep the struct 8-aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    id_hi: u64,
    id_lo: u64,
    pub loc: Loc,
    pub receive_count: u32,
    pub nonce: u32,
    /// Queue id this dead letter came from; 0 when the message is not a dead letter.
    pub source: u32,
    /// `group_tag` of the message group; 0 for none.
    pub group: u32,
    pub enqueued_at: i64,
    /// 0 until the first receive.
    pub first_received_at: i64,
    /// Time to live's end; 0 for none.
    pub expires_at: i64,
    /// 0-9, higher first.
    pub priority: u8,
}

impl Entry {
    pub fn new(id: u128, loc: Loc, enqueued_at: i64) -> Self {
        Entry {
            id_hi: (id >> 64) as u64,
            id_lo: id as u64,
            loc,
            receive_count: 0,
            nonce: 0,
            source: 0,
            group: 0,
            enqueued_at,
            first_received_at: 0,
            expires_at: 0,
            priority: crate::limits::PRIORITY_DEFAULT,
        }
    }
    pub fn id(&self) -> u128 {
        ((self.id_hi as u128) << 64) | self.id_lo as u128
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Leased {
    pub lease_until: i64,
    pub entry: Entry,
}

pub struct QState {
    pub id: u32,
    pub info: QueueInfo,
    pub ready: Ready,
    pub delayed: Delayed,
    pub inflight: FxHashMap<u128, Leased>,
    pub leases: BTreeSet<(i64, u128)>,
    pub stats: QueueStats,
    /// FIFO: ready messages stay in id (publish) order and a group with a message in flight is
    /// not handed out again until that message is settled.
    pub fifo: bool,
    /// In-flight messages per group tag (FIFO: a group here is held by a consumer; standard
    /// queues: checked against `max_in_flight_per_group`).
    pub locked: FxHashMap<u32, u32>,
    /// Deduplication id -> (window end, message id, the log segment whose record remembers
    /// it: its Publish, or the Dedup record that carried it forward; see `maintenance.rs`).
    pub dedup: HashMap<String, (i64, u128, u32)>,
    /// `group_rate_per_second`: each group's token bucket (tokens, when last filled), and the
    /// groups parked for want of a token by when their next one comes.
    pub buckets: FxHashMap<u32, (f64, i64)>,
    pub rate_waits: BTreeSet<(i64, u32)>,
    /// Delayed messages that return to the front when due (a nack to the front with a delay,
    /// miniqueue's DACK).
    pub front_when_due: FxHashSet<u128>,
    /// The counters as the last `Counters` snapshot in the log has them.
    pub logged: [u64; COUNTERS],
    /// Tally keys of push copies: (delivered, failed) now, and as last logged.
    pub tallies: HashMap<String, Tally>,
}

/// A tally key's counts (see `Store::tally`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub delivered: u64,
    pub failed: u64,
    pub logged: (u64, u64),
}

impl QState {
    pub fn new(id: u32, info: QueueInfo) -> Self {
        QState {
            id,
            ready: Ready::new(crate::model::is_fifo(&info.name)),
            delayed: Delayed::default(),
            inflight: FxHashMap::default(),
            leases: BTreeSet::new(),
            stats: QueueStats::default(),
            fifo: crate::model::is_fifo(&info.name),
            locked: FxHashMap::default(),
            dedup: HashMap::new(),
            front_when_due: Default::default(),
            buckets: FxHashMap::default(),
            rate_waits: BTreeSet::new(),
            logged: [0; COUNTERS],
            tallies: HashMap::new(),
            info,
        }
    }

    /// Return a message to the ready messages: behind its group's (see `ready.rs`), or on a
    /// FIFO queue at its place in publish order (so a group's order survives nacks, lease
    /// expiry and redrive).
    pub fn put_back(&mut self, e: Entry) {
        self.ready.push_back(e);
    }

    /// A message of group `g` was leased.
    pub fn lock_group(&mut self, g: u32) {
        if g != 0 {
            *self.locked.entry(g).or_default() += 1;
        }
    }

    /// A leased message of group `g` settled (acked, released, expired): a group parked at
    /// its in-flight limit takes turns again.
    pub fn unlock_group(&mut self, g: u32) {
        if let Some(n) = self.locked.get_mut(&g) {
            *n -= 1;
            let left = *n;
            if left == 0 {
                self.locked.remove(&g);
            }
            if let Some(cap) = self.info.config.max_in_flight_per_group {
                if left < cap {
                    self.ready.unpark(g);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.inflight.len()
    }
    pub fn next_due(&self) -> Option<Millis> {
        let d = self.delayed.first_due();
        let l = self.leases.iter().next().map(|k| k.0);
        let r = self.rate_waits.iter().next().map(|k| k.0);
        [d, l, r].into_iter().flatten().min()
    }
}

#[derive(Default)]
pub struct State {
    pub queues: FxHashMap<u32, QState>,
    pub names: HashMap<String, u32>,
    pub next_queue_id: u32,
    /// Live messages whose Publish record sits in each segment.
    pub seg_live: BTreeMap<u32, u64>,
    /// The segment holding the last snapshot of every queue's counters: while it is the
    /// active one, no older segment is needed for them.
    pub counters_segment: u32,
}

impl State {
    pub fn catalog(&self) -> Catalog {
        let mut queues: Vec<_> = self
            .queues
            .values()
            .map(|q| super::catalog::CatalogQueue {
                id: q.id,
                info: q.info.clone(),
            })
            .collect();
        queues.sort_by_key(|q| q.id);
        Catalog {
            next_queue_id: self.next_queue_id,
            queues,
        }
    }

    pub fn add_live(&mut self, loc: Loc) {
        *self.seg_live.entry(loc.seg).or_default() += 1;
    }

    /// Book-keeping for a message that leaves the store for good.
    pub fn removed(&mut self, e: &Entry) {
        if let Some(n) = self.seg_live.get_mut(&e.loc.seg) {
            *n = n.saturating_sub(1);
        }
        if e.source != 0 {
            if let Some(src) = self.queues.get_mut(&e.source) {
                src.stats.dead_lettered = src.stats.dead_lettered.saturating_sub(1);
            }
        }
    }

    pub fn message_count(&self) -> u64 {
        self.queues.values().map(|q| q.len() as u64).sum()
    }
}

/// The counters of `QueueStats` in the order of a `Counters` record, written once.
macro_rules! counters {
    ($s:expr) => {
        [
            $s.published,
            $s.received,
            $s.acked,
            $s.nacked,
            $s.expired,
            $s.visibility_timeouts,
            $s.dead_lettered_total,
            $s.redriven,
            $s.delivered,
            $s.retried,
            $s.throttled,
            $s.failed,
            $s.filtered,
        ]
    };
}

/// A queue's counters in the order of a `Counters` record.
pub fn counters_of(s: &QueueStats) -> [u64; COUNTERS] {
    counters!(s)
}

/// Set a queue's counters from a `Counters` record's values (its gauges are left alone).
pub fn set_counters(s: &mut QueueStats, v: [u64; COUNTERS]) {
    counters!(s) = v;
}

/// Where the counter a record raises sits in a `Counters` record (see `counters_of`).
pub mod counter {
    pub const PUBLISHED: usize = 0;
    pub const RECEIVED: usize = 1;
    pub const ACKED: usize = 2;
    pub const NACKED: usize = 3;
    pub const EXPIRED: usize = 4;
    pub const DEAD_LETTERED_TOTAL: usize = 6;
    pub const REDRIVEN: usize = 7;
    pub const DELIVERED: usize = 8;
    pub const RETRIED: usize = 9;
    pub const THROTTLED: usize = 10;
    pub const FAILED: usize = 11;
    pub const FILTERED: usize = 12;
}
