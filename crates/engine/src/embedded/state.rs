//! The embedded store's in-memory index: per queue, the ready messages in delivery order, the
//! delayed ones by due time, and the leased ones by lease end. Only metadata lives here (about
//! 56 bytes a message); bodies stay in the log and are read back by location.
//!
//! Recovery (`replay`) rebuilds this index from the catalog and the log segments. It is kept
//! apart from the write path: it reads every segment in order, applies each record to a
//! temporary map keyed by message id, stops a segment at its first torn or corrupt frame
//! (reporting what it dropped), and finally files each surviving message under its queue.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;

use crate::clock::Millis;
use crate::model::{QueueInfo, QueueStats};

use super::catalog::Catalog;
use super::log::{Loc, Log};
use super::record::{self, Frame, Record};

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
    pub enqueued_at: i64,
    /// 0 until the first receive.
    pub first_received_at: i64,
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
            enqueued_at,
            first_received_at: 0,
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
    pub ready: VecDeque<Entry>,
    pub delayed: BTreeMap<(i64, u128), Entry>,
    pub inflight: HashMap<u128, Leased>,
    pub leases: BTreeSet<(i64, u128)>,
    pub stats: QueueStats,
}

impl QState {
    pub fn new(id: u32, info: QueueInfo) -> Self {
        QState {
            id,
            info,
            ready: VecDeque::new(),
            delayed: BTreeMap::new(),
            inflight: HashMap::new(),
            leases: BTreeSet::new(),
            stats: QueueStats::default(),
        }
    }
    pub fn len(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.inflight.len()
    }
    pub fn next_due(&self) -> Option<Millis> {
        let d = self.delayed.keys().next().map(|k| k.0);
        let l = self.leases.iter().next().map(|k| k.0);
        match (d, l) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Default)]
pub struct State {
    pub queues: HashMap<u32, QState>,
    pub names: HashMap<String, u32>,
    pub next_queue_id: u32,
    /// Live messages whose Publish record sits in each segment.
    pub seg_live: BTreeMap<u32, u64>,
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

/// What recovery found, for the log.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    pub bytes: u64,
    pub messages: u64,
    /// One line per segment whose tail was dropped.
    pub dropped: Vec<String>,
    pub last_segment: Option<u32>,
}

#[derive(Clone, Copy)]
struct Replayed {
    queue: u32,
    entry: Entry,
    order: i64,
    visible_at: i64,
}

/// Rebuild the index from the catalog and the segments in `log_dir`.
pub fn replay(
    catalog: &Catalog,
    log_dir: &Path,
    now: Millis,
) -> crate::Result<(State, RecoveryReport)> {
    let mut report = RecoveryReport::default();
    let mut segs: Vec<u32> = Vec::new();
    if log_dir.exists() {
        for e in std::fs::read_dir(log_dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u32>().ok())
            {
                segs.push(n);
            }
        }
    }
    segs.sort_unstable();
    let mut msgs: HashMap<u128, Replayed> = HashMap::new();
    let (mut back, mut front) = (0i64, -1i64);
    for &seg in &segs {
        let buf = std::fs::read(Log::segment_path(log_dir, seg))?;
        report.segments += 1;
        report.bytes += buf.len() as u64;
        let mut off = 0usize;
        loop {
            let problem = match record::read_frame(&buf[off..]) {
                Frame::End => break,
                Frame::Good(payload, len) => match record::decode(payload) {
                    Ok(rec) => {
                        let loc = Loc {
                            seg,
                            off: off as u32,
                            len: len as u32,
                        };
                        apply(&mut msgs, rec, loc, &mut back, &mut front);
                        report.records += 1;
                        off += len;
                        continue;
                    }
                    Err(e) => e.0,
                },
                Frame::Short => "torn write (frame shorter than its header says)",
                Frame::Corrupt(why) => why,
            };
            report.dropped.push(format!(
                "segment {seg}: dropped {} bytes from offset {off}: {problem}",
                buf.len() - off
            ));
            break;
        }
    }
    report.last_segment = segs.last().copied();

    let mut state = State {
        next_queue_id: catalog.next_queue_id.max(1),
        ..State::default()
    };
    for q in &catalog.queues {
        state.names.insert(q.info.name.clone(), q.id);
        state.queues.insert(q.id, QState::new(q.id, q.info.clone()));
        state.next_queue_id = state.next_queue_id.max(q.id + 1);
    }
    let mut by_queue: HashMap<u32, Vec<Replayed>> = HashMap::new();
    for (_, m) in msgs {
        if state.queues.contains_key(&m.queue) {
            by_queue.entry(m.queue).or_default().push(m);
        }
    }
    for (qid, mut list) in by_queue {
        list.sort_unstable_by_key(|m| m.order);
        for m in list {
            state.add_live(m.entry.loc);
            if m.entry.source != 0 {
                if let Some(src) = state.queues.get_mut(&m.entry.source) {
                    src.stats.dead_lettered += 1;
                }
            }
            let q = state.queues.get_mut(&qid).expect("queue exists");
            if m.visible_at > now {
                q.delayed.insert((m.visible_at, m.entry.id()), m.entry);
            } else {
                q.ready.push_back(m.entry);
            }
        }
    }
    report.messages = state.message_count();
    Ok((state, report))
}

fn apply(
    msgs: &mut HashMap<u128, Replayed>,
    rec: Record<'_>,
    loc: Loc,
    back: &mut i64,
    front: &mut i64,
) {
    let mut next_back = || {
        *back += 1;
        *back
    };
    match rec {
        Record::Publish(p) => {
            let mut entry = Entry::new(p.id, loc, p.enqueued_at);
            entry.receive_count = p.receive_count;
            entry.nonce = p.nonce;
            entry.first_received_at = p.first_received_at;
            entry.source = p.source;
            msgs.insert(
                p.id,
                Replayed {
                    queue: p.queue,
                    entry,
                    order: next_back(),
                    visible_at: p.visible_at,
                },
            );
        }
        Record::Receive {
            id,
            receive_count,
            nonce,
            first_received_at,
            ..
        } => {
            if let Some(m) = msgs.get_mut(&id) {
                m.entry.receive_count = receive_count;
                m.entry.nonce = nonce;
                m.entry.first_received_at = first_received_at;
                // It was leased when the server stopped: visible again now.
                m.visible_at = i64::MIN;
            }
        }
        Record::Ack { id, .. } => {
            msgs.remove(&id);
        }
        Record::Release {
            id,
            visible_at,
            front: at_front,
            ..
        } => {
            if let Some(m) = msgs.get_mut(&id) {
                m.visible_at = visible_at;
                m.order = if at_front {
                    *front -= 1;
                    *front
                } else {
                    next_back()
                };
            }
        }
        Record::Move {
            id,
            to,
            source,
            reset,
            ..
        } => {
            if let Some(m) = msgs.get_mut(&id) {
                m.queue = to;
                m.entry.source = source;
                if reset {
                    m.entry.receive_count = 0;
                }
                m.visible_at = i64::MIN;
                m.order = next_back();
            }
        }
        Record::Purge { queue } => {
            msgs.retain(|_, m| m.queue != queue);
        }
    }
}
