//! A sorted index of small fixed-size records, kept in chunks of up to [`CHUNK`] records each,
//! for the indexes that hold millions of entries (pending timers, delayed messages).
//!
//! Why not a `BTreeMap`: its nodes hold 11 entries and split in the middle, so entries added in
//! key order (timers, which mostly come due in the order they were made) leave every node a
//! little over half full, and each entry pays for the key and the value separately aligned.
//! Here a record is one packed struct; a full chunk passes its last record to the next chunk
//! when that one has room, the last chunk splits where the new record goes (so records added
//! in key order, or nearly, leave full chunks behind), and only a full chunk elsewhere splits
//! in halves. Records added in key order fill their chunks completely, nearly in order about
//! 90%, in random order about three quarters.
//!
//! Each chunk holds the keys from its fence (its key in `chunks`, a lower bound) up to the next
//! chunk's fence, in order. Removing a chunk's first record leaves the fence as it is: it is
//! still a lower bound, so taking records from the front costs no re-keying.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound::{Excluded, Unbounded};

/// Records per chunk at most: inserting into the middle of a full chunk moves half of it.
pub const CHUNK: usize = 256;

/// A record with its key inside it.
pub trait Keyed: Copy {
    type Key: Ord + Copy;
    fn key(&self) -> Self::Key;
}

/// Records in key order, one per key (see the module doc).
pub struct Chunked<R: Keyed> {
    chunks: BTreeMap<R::Key, VecDeque<R>>,
    len: usize,
}

impl<R: Keyed> Default for Chunked<R> {
    fn default() -> Self {
        Chunked {
            chunks: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<R: Keyed> Chunked<R> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The fence of the chunk that holds (or would hold) `k`, if some chunk's range covers it.
    fn fence_of(&self, k: &R::Key) -> Option<R::Key> {
        self.chunks.range(..=*k).next_back().map(|(f, _)| *f)
    }

    pub fn get(&self, k: &R::Key) -> Option<&R> {
        let c = &self.chunks[&self.fence_of(k)?];
        let i = c.binary_search_by(|r| r.key().cmp(k)).ok()?;
        c.get(i)
    }

    /// Add `r`, or replace the record with its key (returning that one).
    pub fn insert(&mut self, r: R) -> Option<R> {
        let k = r.key();
        // Above every key: records added in key order (timers come due in about the order
        // they are made, and recovery files them in log order) go onto the end of the last
        // chunk, or start a new one when it is full, without the searches below. The outcome
        // is the one the general path gives.
        if let Some(mut last) = self.chunks.last_entry() {
            if last.get().back().is_some_and(|b| b.key() < k) {
                self.len += 1;
                let c = last.get_mut();
                if c.len() < CHUNK {
                    room_for_one(c);
                    c.push_back(r);
                } else {
                    let mut c = VecDeque::new();
                    room_for_one(&mut c);
                    c.push_back(r);
                    self.chunks.insert(k, c);
                }
                return None;
            }
        }
        let fence = match self.fence_of(&k) {
            Some(f) => f,
            None => {
                // Below every fence: the first chunk's range grows down to `k`.
                let first = self.chunks.pop_first().map(|(_, c)| c).unwrap_or_default();
                self.chunks.insert(k, first);
                k
            }
        };
        let next = self
            .chunks
            .range((Excluded(fence), Unbounded))
            .next()
            .map(|(f, c)| (*f, c.len()));
        let c = self.chunks.get_mut(&fence).expect("fence exists");
        let i = match c.binary_search_by(|x| x.key().cmp(&k)) {
            Ok(i) => return Some(std::mem::replace(&mut c[i], r)),
            Err(i) => i,
        };
        self.len += 1;
        if c.len() < CHUNK {
            room_for_one(c);
            c.insert(i, r);
            return None;
        }
        match next {
            // Full, and the next chunk has room: the last record moves over to it.
            Some((next_fence, n)) if n < CHUNK => {
                let moved = if i == c.len() {
                    r
                } else {
                    let moved = c.pop_back().expect("full");
                    c.insert(i, r);
                    moved
                };
                let mut next = self.chunks.remove(&next_fence).expect("next exists");
                room_for_one(&mut next);
                next.push_front(moved);
                self.chunks.insert(moved.key(), next);
            }
            // The last chunk, `r` in its second half: split where `r` goes, so the left part
            // stays as full as it is. Keys added in order start a new chunk this way; keys
            // arriving a little out of order (ids made by concurrent requests) move over to it
            // later (above) instead of halving the full chunk for good.
            None if i >= CHUNK / 2 => {
                let mut right = c.split_off(i);
                right.push_front(r);
                self.chunks.insert(k, right);
            }
            _ => {
                let mut right = c.split_off(CHUNK / 2);
                if i < CHUNK / 2 {
                    c.insert(i, r);
                } else {
                    right.insert(i - CHUNK / 2, r);
                }
                self.chunks.insert(right[0].key(), right);
            }
        }
        None
    }

    pub fn remove(&mut self, k: &R::Key) -> Option<R> {
        let fence = self.fence_of(k)?;
        let c = self.chunks.get_mut(&fence).expect("fence exists");
        let i = c.binary_search_by(|r| r.key().cmp(k)).ok()?;
        let r = c.remove(i).expect("found");
        self.len -= 1;
        self.after_removal(fence);
        Some(r)
    }

    /// The record with the smallest key.
    pub fn first(&self) -> Option<&R> {
        self.chunks.first_key_value().and_then(|(_, c)| c.front())
    }

    pub fn pop_first(&mut self) -> Option<R> {
        let mut e = self.chunks.first_entry()?;
        let r = e.get_mut().pop_front()?;
        let fence = *e.key();
        self.len -= 1;
        self.after_removal(fence);
        Some(r)
    }

    /// A chunk that lost a record: gone when empty; merged with a neighbour when both are small
    /// (so removals scattered across the index do not leave many near-empty chunks).
    fn after_removal(&mut self, fence: R::Key) {
        let n = self.chunks[&fence].len();
        if n == 0 {
            self.chunks.remove(&fence);
            return;
        }
        if n >= CHUNK / 4 {
            return;
        }
        let next = self
            .chunks
            .range(fence..)
            .nth(1)
            .map(|(f, c)| (*f, c.len()));
        if let Some((nf, _)) = next.filter(|(_, nl)| n + nl <= CHUNK / 2) {
            self.merge(fence, nf);
            return;
        }
        let prev = self
            .chunks
            .range(..fence)
            .next_back()
            .map(|(f, c)| (*f, c.len()));
        if let Some((pf, _)) = prev.filter(|(_, pl)| n + pl <= CHUNK / 2) {
            self.merge(pf, fence);
        }
    }

    /// Move the chunk at `right` onto the end of its neighbour at `left`.
    fn merge(&mut self, left: R::Key, right: R::Key) {
        let mut moved = self.chunks.remove(&right).expect("right exists");
        self.chunks
            .get_mut(&left)
            .expect("left exists")
            .append(&mut moved);
    }

    /// All records, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &R> + '_ {
        self.chunks.values().flatten()
    }

    /// All records, in key order, to change in place. Changing a record's key breaks the
    /// index: callers change only what is not part of the key.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut R> + '_ {
        self.chunks.values_mut().flatten()
    }

    /// Take every record out, in key order.
    pub fn drain(&mut self) -> impl Iterator<Item = R> {
        self.len = 0;
        std::mem::take(&mut self.chunks).into_values().flatten()
    }
}

/// Room for one more record in `c`: up to 16, then [`CHUNK`] at once. Not by doubling: a
/// `VecDeque` left to itself would grow a chunk of 200 records to 400, and each step between
/// leaves a freed block behind among the request path's allocations.
fn room_for_one<R>(c: &mut VecDeque<R>) {
    if c.len() == c.capacity() {
        let want = if c.len() < 16 { 16 } else { CHUNK };
        c.reserve_exact(want - c.len());
    }
}

impl<R: Keyed> FromIterator<R> for Chunked<R> {
    /// Full chunks, whatever the order of the records (a later record replaces an earlier one
    /// with the same key).
    fn from_iter<I: IntoIterator<Item = R>>(iter: I) -> Self {
        let mut all: Vec<R> = iter.into_iter().collect();
        // Stable: among equal keys the last one given is kept.
        all.sort_by_key(|r| r.key());
        all.reverse();
        all.dedup_by_key(|r| r.key());
        all.reverse();
        let mut out = Chunked::new();
        out.len = all.len();
        for part in all.chunks(CHUNK) {
            let mut c = VecDeque::with_capacity(part.len());
            c.extend(part.iter().copied());
            out.chunks.insert(part[0].key(), c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Rec(u64, u32);
    impl Keyed for Rec {
        type Key = u64;
        fn key(&self) -> u64 {
            self.0
        }
    }

    /// A small deterministic generator (no dependency for one test).
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    fn check(c: &Chunked<Rec>, model: &BTreeMap<u64, u32>) {
        assert_eq!(c.len(), model.len());
        let got: Vec<(u64, u32)> = c.iter().map(|r| (r.0, r.1)).collect();
        let want: Vec<(u64, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(got, want);
        for (f, chunk) in &c.chunks {
            assert!(!chunk.is_empty() && chunk.len() <= CHUNK);
            assert!(chunk[0].0 >= *f, "a chunk's fence is a lower bound");
        }
    }

    /// Every operation against a BTreeMap, with keys in order, in reverse and at random, and
    /// removals from the front, at random and in runs (which merge chunks).
    #[test]
    fn behaves_like_a_sorted_map() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for pattern in 0..4 {
            let mut c = Chunked::new();
            let mut model = BTreeMap::new();
            for step in 0..6000u64 {
                let k = match pattern {
                    0 => step,
                    1 => 10_000 - step,
                    _ => rng(&mut seed) % 3000,
                };
                let v = step as u32;
                assert_eq!(c.insert(Rec(k, v)).map(|r| r.1), model.insert(k, v));
                match rng(&mut seed) % 7 {
                    0 => assert_eq!(c.pop_first().map(|r| (r.0, r.1)), model.pop_first()),
                    1 | 2 => {
                        let k = rng(&mut seed) % 10_000;
                        assert_eq!(c.remove(&k).map(|r| r.1), model.remove(&k));
                    }
                    _ => {}
                }
                let probe = rng(&mut seed) % 10_000;
                assert_eq!(c.get(&probe).map(|r| r.1), model.get(&probe).copied());
            }
            check(&c, &model);
            // Remove most, in runs, then everything.
            let keys: Vec<u64> = model.keys().copied().collect();
            for k in keys.iter().filter(|k| *k % 8 != 0) {
                assert!(c.remove(k).is_some());
                model.remove(k);
            }
            check(&c, &model);
            assert!(
                c.chunks.len() <= model.len() / (CHUNK / 4) + 2,
                "small chunks merge"
            );
            let rest: Vec<u64> = c.drain().map(|r| r.0).collect();
            assert_eq!(rest, model.keys().copied().collect::<Vec<_>>());
            assert!(c.len() == 0 && c.first().is_none());
        }
    }

    #[test]
    fn keys_added_in_order_fill_their_chunks() {
        let mut c = Chunked::new();
        for k in 0..(CHUNK as u64 * 10) {
            c.insert(Rec(k, 0));
        }
        assert_eq!(c.chunks.len(), 10);
        assert!(c.chunks.values().all(|ch| ch.len() == CHUNK));
    }

    /// Records held over records room was allocated for.
    fn fill(c: &Chunked<Rec>) -> f64 {
        let room: usize = c.chunks.values().map(|ch| ch.capacity()).sum();
        c.len() as f64 / room as f64
    }

    #[test]
    fn keys_nearly_in_order_fill_their_chunks_and_random_ones_most_of_them() {
        let (mut near, mut random) = (Chunked::new(), Chunked::new());
        let mut seed = 7;
        for k in 0..(CHUNK as u64 * 200) {
            // Each key up to 50 places early or late, as concurrent requests make them.
            near.insert(Rec(k * 100 + rng(&mut seed) % 5000, 0));
            random.insert(Rec(rng(&mut seed), 0));
        }
        assert!(
            fill(&near) > 0.9,
            "nearly in order: {:.2} full",
            fill(&near)
        );
        assert!(fill(&random) > 0.65, "random: {:.2} full", fill(&random));
    }

    #[test]
    fn built_at_once_in_full_chunks_keeping_the_last_duplicate() {
        let c: Chunked<Rec> = (0..1000u64).rev().map(|k| Rec(k % 600, k as u32)).collect();
        assert_eq!(c.len(), 600);
        assert_eq!(c.chunks.len(), 600usize.div_ceil(CHUNK));
        assert_eq!(c.get(&5).map(|r| r.1), Some(5), "600+5 came first, 5 last");
        let keys: Vec<u64> = c.iter().map(|r| r.0).collect();
        assert_eq!(keys, (0..600).collect::<Vec<_>>());
    }
    /// A delayed queue's life: retries due a little later than now, the due ones taken from
    /// the front as time moves, some removed early (leases ended, queues purged), thousands
    /// pending at once so chunks split, pass records on and merge all the time.
    #[test]
    fn behaves_like_a_sorted_map_as_a_queue_of_retries() {
        let mut seed = 0x2545_f491_4f6c_dd1d;
        let mut c = Chunked::new();
        let mut model: BTreeMap<u64, u32> = BTreeMap::new();
        let (mut now, mut id) = (0u64, 0u64);
        for step in 0..200_000u32 {
            now += rng(&mut seed) % 3;
            // Due times up to 2,000 ahead; the low bits order equal times by id.
            let burst = if step % 5000 < 2500 { 3 } else { 1 };
            for _ in 0..burst {
                id += 1;
                let k = ((now + rng(&mut seed) % 2000) << 20) | (id & 0xf_ffff);
                assert_eq!(c.insert(Rec(k, step)).map(|r| r.1), model.insert(k, step));
            }
            while model.first_key_value().is_some_and(|(k, _)| k >> 20 <= now) {
                assert_eq!(c.pop_first().map(|r| (r.0, r.1)), model.pop_first());
            }
            if rng(&mut seed).is_multiple_of(4) {
                let probe = ((now + rng(&mut seed) % 2000) << 20) | (rng(&mut seed) & 0xf_ffff);
                if let Some((&k, _)) = model.range(probe..).next() {
                    assert_eq!(c.remove(&k).map(|r| r.1), model.remove(&k));
                }
            }
            assert_eq!(c.first().map(|r| r.0), model.keys().next().copied());
            if step % 20_000 == 0 {
                check(&c, &model);
            }
        }
        check(&c, &model);
    }
}
