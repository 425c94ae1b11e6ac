//! A queue's delayed messages by due time, in 48 bytes each: the index that holds every pending
//! timer (a timer is a delayed message in `~timers`), so its size is the size of a timer.
//!
//! A delayed message that was never received and carries no group, time to live or
//! dead-letter source (every timer, most delayed publishes) is one packed record in a
//! [`Chunked`] index. The rest of an [`Entry`] (receive count, nonce, first receive, source
//! queue, group, end of life) is kept beside it, by id, only for the messages that have one:
//! those nacked with a delay, dead letters, grouped messages, messages with a time to live.

use rustc_hash::FxHashMap;

use crate::chunked::{Chunked, Keyed};

use super::log::Loc;
use super::state::Entry;

/// One delayed message: what every entry has. Fields ordered to pack into 48 bytes.
#[derive(Clone, Copy)]
struct Due {
    at: i64,
    id_hi: u64,
    id_lo: u64,
    enqueued_at: i64,
    loc: Loc,
    priority: u8,
    /// The entry's other fields are in `Delayed::rest`.
    rest: bool,
}

impl Keyed for Due {
    type Key = (i64, u64, u64);
    fn key(&self) -> Self::Key {
        (self.at, self.id_hi, self.id_lo)
    }
}

/// The fields of an [`Entry`] that a message that was never received usually leaves at zero.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Rest {
    receive_count: u32,
    nonce: u32,
    source: u32,
    group: u32,
    first_received_at: i64,
    expires_at: i64,
}

fn key(at: i64, id: u128) -> (i64, u64, u64) {
    (at, (id >> 64) as u64, id as u64)
}

/// The delayed messages of one queue, soonest due first.
#[derive(Default)]
pub struct Delayed {
    due: Chunked<Due>,
    rest: FxHashMap<u128, Rest>,
}

impl Delayed {
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Add (or replace) the message `e`, due at `at`.
    pub fn insert(&mut self, at: i64, e: Entry) {
        let (due, rest) = split(at, e);
        if let Some(old) = self.due.insert(due) {
            if old.rest && !due.rest {
                self.rest.remove(&e.id());
            }
        }
        if let Some(rest) = rest {
            self.rest.insert(e.id(), rest);
        }
    }

    pub fn remove(&mut self, at: i64, id: u128) -> Option<Entry> {
        let due = self.due.remove(&key(at, id))?;
        Some(self.join_taking(due))
    }

    /// When the soonest message is due.
    pub fn first_due(&self) -> Option<i64> {
        self.due.first().map(|d| d.at)
    }

    /// Take the soonest message if it is due at `now`.
    pub fn pop_due(&mut self, now: i64) -> Option<(i64, Entry)> {
        if self.first_due()? > now {
            return None;
        }
        let due = self.due.pop_first().expect("a first one");
        Some((due.at, self.join_taking(due)))
    }

    /// Every message with its due time, soonest first.
    pub fn iter(&self) -> impl Iterator<Item = (i64, Entry)> + '_ {
        self.due.iter().map(|d| (d.at, self.join(d)))
    }

    /// Change messages in place, soonest first: `f` sees each message whose `loc` is in
    /// segment `seg` and may change its `loc` (compaction moving it); nothing else it changes
    /// is kept.
    pub fn relocate_from(&mut self, seg: u32, mut f: impl FnMut(i64, &mut Entry)) {
        let rest = &self.rest;
        for d in self.due.iter_mut().filter(|d| d.loc.seg == seg) {
            let mut e = join(d, rest);
            f(d.at, &mut e);
            d.loc = e.loc;
        }
    }

    /// Take every message out.
    pub fn drain(&mut self) -> Vec<Entry> {
        let rest = std::mem::take(&mut self.rest);
        self.due.drain().map(|d| join(&d, &rest)).collect()
    }

    fn join(&self, d: &Due) -> Entry {
        join(d, &self.rest)
    }

    fn join_taking(&mut self, d: Due) -> Entry {
        let e = join(&d, &self.rest);
        if d.rest {
            self.rest.remove(&e.id());
        }
        e
    }
}

impl FromIterator<(i64, Entry)> for Delayed {
    /// The index built at once, in full chunks (recovery).
    fn from_iter<I: IntoIterator<Item = (i64, Entry)>>(iter: I) -> Self {
        let mut rest = FxHashMap::default();
        let due = iter
            .into_iter()
            .map(|(at, e)| {
                let (d, r) = split(at, e);
                if let Some(r) = r {
                    rest.insert(e.id(), r);
                }
                d
            })
            .collect();
        Delayed { due, rest }
    }
}

fn split(at: i64, e: Entry) -> (Due, Option<Rest>) {
    let id = e.id();
    let rest = Rest {
        receive_count: e.receive_count,
        nonce: e.nonce,
        source: e.source,
        group: e.group,
        first_received_at: e.first_received_at,
        expires_at: e.expires_at,
    };
    let has_rest = rest != Rest::default();
    let due = Due {
        at,
        id_hi: (id >> 64) as u64,
        id_lo: id as u64,
        enqueued_at: e.enqueued_at,
        loc: e.loc,
        priority: e.priority,
        rest: has_rest,
    };
    (due, has_rest.then_some(rest))
}

fn join(d: &Due, rest: &FxHashMap<u128, Rest>) -> Entry {
    let id = ((d.id_hi as u128) << 64) | d.id_lo as u128;
    let mut e = Entry::new(id, d.loc, d.enqueued_at);
    e.priority = d.priority;
    if d.rest {
        let r = rest.get(&id).copied().unwrap_or_default();
        e.receive_count = r.receive_count;
        e.nonce = r.nonce;
        e.source = r.source;
        e.group = r.group;
        e.first_received_at = r.first_received_at;
        e.expires_at = r.expires_at;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u128, rc: u32) -> Entry {
        let mut e = Entry::new(
            id,
            Loc {
                seg: 1,
                off: id as u32,
                len: 9,
            },
            5,
        );
        e.receive_count = rc;
        e.priority = 7;
        e
    }

    #[test]
    fn a_record_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Due>(), 48);
    }

    #[test]
    fn entries_come_back_whole_in_due_order() {
        let mut d = Delayed::default();
        d.insert(30, entry(1, 0));
        d.insert(10, entry(2, 3));
        d.insert(20, entry(3, 0));
        assert_eq!(d.rest.len(), 1, "only the received one keeps the rest");
        let all: Vec<(i64, Entry)> = d.iter().collect();
        assert_eq!(
            all,
            vec![(10, entry(2, 3)), (20, entry(3, 0)), (30, entry(1, 0))]
        );
        assert_eq!(d.pop_due(9), None);
        assert_eq!(d.pop_due(10), Some((10, entry(2, 3))));
        assert!(d.rest.is_empty());
        assert_eq!(d.remove(30, 1), Some(entry(1, 0)));
        assert_eq!(d.remove(30, 1), None);
        d.relocate_from(1, |_, e| e.loc.seg = 4);
        assert_eq!(d.first_due(), Some(20));
        assert_eq!(d.drain()[0].loc.seg, 4);
        assert_eq!(d.len(), 0);
    }
}
