//! The ready messages of one queue, in the order receives take them.
//!
//! - A FIFO queue keeps one list in publish (id) order, so a group's order survives nacks,
//!   lease expiry and redrive; a receive skips groups another consumer holds (`rules.rs`).
//! - A standard queue keeps one lane per priority (0-9, higher first; strict: a lower lane is
//!   served only while every higher one is empty). Inside a lane, each message group (tag 0:
//!   messages without a group, which count as one group) has its own list, and receives take
//!   one message per group in turn (round robin over the groups with ready messages), so one
//!   tenant's backlog of a million does not delay another tenant's ten. A group whose leased
//!   messages reach the queue's `max_in_flight_per_group` is parked (out of the turn) until
//!   one of them settles.
//!
//! Every operation is O(1) apart from `remove` (a scan of one group's list) and the whole-queue
//! walks (peek, compaction, purge). Each list is a [`Blocks`] (`blocks.rs`): a list of millions
//! grows without ever being copied under the store's lock. The same rules in Lua: `redis_store/prelude.lua`.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::limits::PRIORITY_MAX;

use super::blocks::Blocks;
use super::state::Entry;

const LANES: usize = PRIORITY_MAX as usize + 1;

#[derive(Default)]
struct Lane {
    groups: FxHashMap<u32, Blocks<Entry>>,
    /// Groups with ready messages whose turn it is, in turn order.
    turn: VecDeque<u32>,
    /// Groups with ready messages that are at their in-flight limit.
    parked: FxHashSet<u32>,
}

impl Lane {
    fn push(&mut self, e: Entry, front: bool) {
        let list = self.groups.entry(e.group).or_default();
        let was_empty = list.is_empty();
        if front {
            list.push_front(e);
        } else {
            list.push_back(e);
        }
        if was_empty && !self.parked.contains(&e.group) {
            if front {
                self.turn.push_front(e.group);
            } else {
                self.turn.push_back(e.group);
            }
        }
    }

    /// The next group's next message, parking groups `full` says are at their limit.
    fn pop(&mut self, full: &mut dyn FnMut(u32) -> bool) -> Option<Entry> {
        while let Some(g) = self.turn.pop_front() {
            if g != 0 && full(g) {
                self.parked.insert(g);
                continue;
            }
            let list = self
                .groups
                .get_mut(&g)
                .expect("a group in turn has messages");
            let e = list.pop_front().expect("a group in turn has messages");
            if list.is_empty() {
                self.groups.remove(&g);
            } else {
                self.turn.push_back(g);
            }
            return Some(e);
        }
        None
    }

    fn unpark(&mut self, g: u32) {
        if self.parked.remove(&g) && self.groups.contains_key(&g) {
            self.turn.push_back(g);
        }
    }

    /// Group `g` has no ready message left: out of the turn.
    fn forget(&mut self, g: u32) {
        self.groups.remove(&g);
        self.parked.remove(&g);
        if let Some(at) = self.turn.iter().position(|&x| x == g) {
            self.turn.remove(at);
        }
    }

    /// Rebuild the turn after entries were removed in bulk.
    fn settle(&mut self) {
        self.groups.retain(|_, l| !l.is_empty());
        let groups = &self.groups;
        self.turn.retain(|g| groups.contains_key(g));
        self.parked.retain(|g| groups.contains_key(g));
    }
}

/// See the module documentation.
pub struct Ready {
    fifo: bool,
    /// FIFO queues: every ready message, in id order.
    ordered: Blocks<Entry>,
    /// Standard queues: by priority.
    lanes: Vec<Lane>,
    len: usize,
    /// Ready messages with a time to live, by its end: (expires_at, id) -> (priority, group).
    ttl: BTreeMap<(i64, u128), (u8, u32)>,
}

impl Ready {
    pub fn new(fifo: bool) -> Self {
        Ready {
            fifo,
            ordered: Blocks::default(),
            lanes: if fifo {
                Vec::new()
            } else {
                (0..LANES).map(|_| Lane::default()).collect()
            },
            len: 0,
            ttl: BTreeMap::new(),
        }
    }

    fn entered(&mut self, e: &Entry) {
        self.len += 1;
        if e.expires_at != 0 {
            self.ttl
                .insert((e.expires_at, e.id()), (e.priority, e.group));
        }
    }

    fn left(&mut self, e: &Entry) {
        self.len -= 1;
        if e.expires_at != 0 {
            self.ttl.remove(&(e.expires_at, e.id()));
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Behind the messages of its group and priority (FIFO: at its place in publish order).
    pub fn push_back(&mut self, e: Entry) {
        self.entered(&e);
        if self.fifo {
            let id = e.id();
            let at = self.ordered.partition_point(|x| x.id() < id);
            self.ordered.insert(at, e);
        } else {
            self.lane(e.priority).push(e, false);
        }
    }

    /// Many messages behind the rest, in the order given (recovery files a queue's backlog at
    /// once; a FIFO queue's in id order). When the list they go to is empty and they share one
    /// priority and group, as a backlog usually does, the vector becomes that list: no copy,
    /// and no doubling of a list of millions while it grows (`replay.rs`).
    pub fn extend_back(&mut self, mut entries: Vec<Entry>) {
        let Some(&first) = entries.first() else {
            return;
        };
        let whole = if self.fifo {
            self.ordered.is_empty() && entries.windows(2).all(|w| w[0].id() <= w[1].id())
        } else {
            entries
                .iter()
                .all(|e| e.priority == first.priority && e.group == first.group)
                && self
                    .lane(first.priority)
                    .groups
                    .get(&first.group)
                    .is_none_or(Blocks::is_empty)
        };
        if !whole {
            return entries.into_iter().for_each(|e| self.push_back(e));
        }
        for e in &entries {
            self.entered(e);
        }
        if entries.capacity() - entries.len() > entries.len() / 8 {
            entries.shrink_to_fit();
        }
        let list = Blocks::from(entries);
        if self.fifo {
            self.ordered = list;
            return;
        }
        let lane = self.lane(first.priority);
        lane.groups.insert(first.group, list);
        if !lane.parked.contains(&first.group) {
            lane.turn.push_back(first.group);
        }
    }

    /// Ahead of the messages of its group and priority (FIFO: at its place in publish order).
    pub fn push_front(&mut self, e: Entry) {
        if self.fifo {
            return self.push_back(e);
        }
        self.entered(&e);
        self.lane(e.priority).push(e, true);
    }

    fn lane(&mut self, priority: u8) -> &mut Lane {
        &mut self.lanes[priority.min(PRIORITY_MAX) as usize]
    }

    /// Standard queues: the next message by priority, then group turn. `full(g)`: may group
    /// `g` not be handed a message now (at its in-flight limit, or out of its rate)? It is
    /// parked until `unpark(g)`.
    pub fn pop(&mut self, full: &mut dyn FnMut(u32) -> bool) -> Option<Entry> {
        let e = self
            .lanes
            .iter_mut()
            .rev()
            .find_map(|l| l.pop(&mut *full))?;
        self.left(&e);
        Some(e)
    }

    /// FIFO queues: take the first message `ok` accepts among the first `scan` (publish order).
    pub fn take_first(&mut self, scan: usize, ok: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let at = self.ordered.iter().take(scan).position(ok)?;
        let e = self.ordered.remove(at)?;
        self.left(&e);
        Some(e)
    }

    /// Group `g` fell below its in-flight limit: it takes turns again.
    pub fn unpark(&mut self, g: u32) {
        for l in &mut self.lanes {
            l.unpark(g);
        }
    }

    /// The in-flight limit changed: every parked group takes turns again (and is parked
    /// again at its next turn if still full).
    pub fn unpark_all(&mut self) {
        for l in &mut self.lanes {
            let parked: Vec<u32> = l.parked.drain().collect();
            for g in parked {
                if l.groups.contains_key(&g) {
                    l.turn.push_back(g);
                }
            }
        }
    }

    /// Take out the message `id` (of `priority` and group `group`), if it is ready.
    pub fn remove(&mut self, id: u128, priority: u8, group: u32) -> Option<Entry> {
        let e = if self.fifo {
            let at = self.ordered.iter().position(|e| e.id() == id)?;
            self.ordered.remove(at)?
        } else {
            let lane = self.lane(priority);
            let list = lane.groups.get_mut(&group)?;
            let at = list.iter().position(|e| e.id() == id)?;
            let e = list.remove(at)?;
            if list.is_empty() {
                lane.forget(group);
            }
            e
        };
        self.left(&e);
        Some(e)
    }

    /// Take out the messages whose time to live ended at or before `now`.
    pub fn take_expired(&mut self, now: i64) -> Vec<Entry> {
        let mut out = Vec::new();
        while let Some((&(at, id), &(priority, group))) = self.ttl.first_key_value() {
            if at > now {
                break;
            }
            match self.remove(id, priority, group) {
                Some(e) => out.push(e),
                None => {
                    self.ttl.remove(&(at, id));
                }
            }
        }
        out
    }

    /// Take out the messages at the head of their lists enqueued at or before `cutoff` (the
    /// retention rule; a receive also checks each message it takes).
    pub fn take_older(&mut self, cutoff: i64) -> Vec<Entry> {
        let mut out = Vec::new();
        let old = |l: &Blocks<Entry>| l.front().is_some_and(|e| e.enqueued_at <= cutoff);
        while old(&self.ordered) {
            out.extend(self.ordered.pop_front());
        }
        for l in &mut self.lanes {
            let mut emptied = false;
            for list in l.groups.values_mut() {
                while old(list) {
                    out.extend(list.pop_front());
                }
                emptied |= list.is_empty();
            }
            if emptied {
                l.settle();
            }
        }
        for e in &out {
            self.left(e);
        }
        out
    }

    /// Every ready message: FIFO in order; standard queues by priority, then group.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.ordered
            .iter()
            .chain(self.lanes.iter().rev().flat_map(|l| {
                l.turn
                    .iter()
                    .chain(l.parked.iter())
                    .flat_map(|g| &l.groups[g])
            }))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry> + '_ {
        self.ordered.iter_mut().chain(
            self.lanes
                .iter_mut()
                .flat_map(|l| l.groups.values_mut().flat_map(|q| q.iter_mut())),
        )
    }

    /// Keep only the messages `keep` accepts; returns the others.
    pub fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut sift = |list: &mut Blocks<Entry>| {
            list.retain(|e| {
                let k = keep(e);
                if !k {
                    out.push(*e);
                }
                k
            })
        };
        sift(&mut self.ordered);
        for l in &mut self.lanes {
            for list in l.groups.values_mut() {
                sift(list);
            }
            l.settle();
        }
        for e in &out {
            self.left(e);
        }
        out
    }

    /// Take every message out.
    pub fn drain(&mut self) -> Vec<Entry> {
        self.retain(|_| false)
    }

    /// The earliest `enqueued_at` among the messages at the head of their lists.
    pub fn oldest_enqueued_at(&self) -> Option<i64> {
        self.ordered
            .front()
            .into_iter()
            .chain(
                self.lanes
                    .iter()
                    .flat_map(|l| l.groups.values().filter_map(|q| q.front())),
            )
            .map(|e| e.enqueued_at)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::log::Loc;

    fn e(id: u128, priority: u8, group: u32) -> Entry {
        let mut e = Entry::new(
            id,
            Loc {
                seg: 0,
                off: 0,
                len: 0,
            },
            0,
        );
        e.priority = priority;
        e.group = group;
        e
    }

    fn ids(r: &mut Ready, n: usize, full: &dyn Fn(u32) -> bool) -> Vec<u128> {
        let mut full = |g| full(g);
        (0..n)
            .filter_map(|_| r.pop(&mut full))
            .map(|e| e.id())
            .collect()
    }

    #[test]
    fn higher_priority_first_then_publish_order() {
        let mut r = Ready::new(false);
        for (id, p) in [(1, 4), (2, 9), (3, 0), (4, 9), (5, 4)] {
            r.push_back(e(id, p, 0));
        }
        assert_eq!(ids(&mut r, 10, &|_| false), vec![2, 4, 1, 5, 3]);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn groups_take_turns() {
        let mut r = Ready::new(false);
        for id in 0..100 {
            r.push_back(e(id, 4, 7));
        }
        for g in 1..=3u32 {
            for k in 0..2 {
                r.push_back(e(1000 + g as u128 * 10 + k, 4, g));
            }
        }
        let first: Vec<u128> = ids(&mut r, 8, &|_| false);
        // Each of the four groups got two of the first eight.
        assert_eq!(first, vec![0, 1010, 1020, 1030, 1, 1011, 1021, 1031]);
        assert_eq!(r.len(), 98);
    }

    #[test]
    fn full_groups_are_parked_until_unparked() {
        let mut r = Ready::new(false);
        for id in 0..3 {
            r.push_back(e(id, 4, 5));
        }
        r.push_back(e(10, 4, 6));
        let full = |g: u32| g == 5;
        assert_eq!(ids(&mut r, 5, &full), vec![10]);
        r.unpark(5);
        assert_eq!(ids(&mut r, 5, &|_| false), vec![0, 1, 2]);
    }

    #[test]
    fn front_remove_retain() {
        let mut r = Ready::new(false);
        for id in 0..4 {
            r.push_back(e(id, 4, 0));
        }
        r.push_front(e(9, 4, 0));
        assert_eq!(r.remove(2, 4, 0).map(|e| e.id()), Some(2));
        let gone = r.retain(|e| e.id() != 3);
        assert_eq!(gone.len(), 1);
        assert_eq!(ids(&mut r, 10, &|_| false), vec![9, 0, 1]);
    }

    /// `extend_back` keeps the order and the turn whether it moves the vector whole or pushes
    /// one by one (mixed priorities or groups, or a list already there), and counts each entry.
    #[test]
    fn extend_back_is_push_back_in_order() {
        let backlog: Vec<Entry> = (0..5).map(|id| e(id, 4, 0)).collect();
        let mixed = vec![e(10, 4, 3), e(11, 9, 0), e(12, 4, 3)];
        for fifo in [false, true] {
            let (mut one, mut many) = (Ready::new(fifo), Ready::new(fifo));
            for batch in [backlog.clone(), mixed.clone(), vec![e(20, 4, 0)], vec![]] {
                batch.iter().for_each(|&x| one.push_back(x));
                many.extend_back(batch);
            }
            assert_eq!(many.len(), one.len());
            let all = |r: &mut Ready| match fifo {
                false => ids(r, 20, &|_| false),
                true => std::iter::from_fn(|| r.take_first(1, |_| true).map(|e| e.id())).collect(),
            };
            assert_eq!(all(&mut many), all(&mut one), "fifo {fifo}");
        }
        let mut r = Ready::new(false);
        r.push_back(e(1, 4, 0));
        r.extend_back(vec![e(2, 4, 0), e(3, 4, 0)]);
        r.push_front(e(0, 4, 0));
        assert_eq!(ids(&mut r, 10, &|_| false), vec![0, 1, 2, 3]);
    }
}
