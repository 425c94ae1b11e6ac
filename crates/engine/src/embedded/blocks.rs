//! A double-ended list of ready messages that never moves what it holds: [`Blocks`].
//!
//! A queue's ready list can hold millions of entries. In a `VecDeque` it grows by doubling, and
//! each doubling copies the whole list into a new allocation while the store's lock is held:
//! at a million 80-byte entries that is 80 MB copied into fresh pages, and on this machine it
//! stopped every publish for 0.3-0.9 s (BENCHMARKS.md, "Ready lists in blocks"). Here a list is
//! a deque of blocks. A block grows like a `VecDeque` only up to [`BLOCK`] entries (so a list of
//! a few messages, like most message groups' lists, stays small); past that the list starts a
//! new block instead of moving the old ones, and frees a block as soon as it empties. A block
//! taken whole ([`Blocks::from`], recovery's backlog) may be larger; it is never grown either.
//! The one copy left: an insert into the middle of a full block (a FIFO queue's sorted insert)
//! splits it, moving half of it once; for a recovered FIFO backlog that is half the backlog.

use std::collections::VecDeque;

/// Entries per block once a list is long (80-byte entries: 320 KB per block).
pub const BLOCK: usize = 4096;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Blocks<T> {
    blocks: VecDeque<VecDeque<T>>,
    len: usize,
}

impl<T> Default for Blocks<T> {
    fn default() -> Self {
        Blocks {
            blocks: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> From<Vec<T>> for Blocks<T> {
    /// The vector becomes one block, without a copy.
    fn from(v: Vec<T>) -> Self {
        let mut b = Blocks::default();
        if !v.is_empty() {
            b.len = v.len();
            b.blocks.push_back(VecDeque::from(v));
        }
        b
    }
}

/// May `block` take one more entry without moving the ones it holds (or while still small)?
fn has_room<T>(block: &VecDeque<T>) -> bool {
    block.len() < block.capacity() || block.capacity() < BLOCK
}

impl<T> Blocks<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn front(&self) -> Option<&T> {
        self.blocks.front().and_then(VecDeque::front)
    }

    pub fn push_back(&mut self, t: T) {
        match self.blocks.back_mut() {
            Some(b) if has_room(b) => b.push_back(t),
            _ => {
                let mut b = self.new_block();
                b.push_back(t);
                self.blocks.push_back(b);
            }
        }
        self.len += 1;
    }

    pub fn push_front(&mut self, t: T) {
        match self.blocks.front_mut() {
            Some(b) if has_room(b) => b.push_front(t),
            _ => {
                let mut b = self.new_block();
                b.push_front(t);
                self.blocks.push_front(b);
            }
        }
        self.len += 1;
    }

    /// A list's first block starts small and grows; the next ones are allocated full size.
    fn new_block(&self) -> VecDeque<T> {
        match self.blocks.is_empty() {
            true => VecDeque::new(),
            false => VecDeque::with_capacity(BLOCK),
        }
    }

    pub fn pop_front(&mut self) -> Option<T> {
        let block = self.blocks.front_mut()?;
        let t = block.pop_front();
        if block.is_empty() {
            self.blocks.pop_front();
        }
        if t.is_some() {
            self.len -= 1;
        }
        t
    }

    /// Insert at position `at` (at most `len`). A full block is split in two first.
    pub fn insert(&mut self, at: usize, t: T) {
        assert!(at <= self.len, "insert at {at} beyond {}", self.len);
        if at == self.len {
            return self.push_back(t);
        }
        let (i, mut off) = self.locate(at);
        let mut i = i;
        if !has_room(&self.blocks[i]) {
            let head = self.blocks[i].len() / 2;
            let tail = self.blocks[i].split_off(head);
            self.blocks.insert(i + 1, tail);
            if off >= head {
                i += 1;
                off -= head;
            }
        }
        self.blocks[i].insert(off, t);
        self.len += 1;
    }

    /// Take out the entry at position `at`.
    pub fn remove(&mut self, at: usize) -> Option<T> {
        if at >= self.len {
            return None;
        }
        let (i, off) = self.locate(at);
        let t = self.blocks[i].remove(off);
        if self.blocks[i].is_empty() {
            self.blocks.remove(i);
        }
        self.len -= 1;
        t
    }

    /// The block holding position `at` (< `len`) and the offset in it.
    fn locate(&self, mut at: usize) -> (usize, usize) {
        for (i, b) in self.blocks.iter().enumerate() {
            if at < b.len() {
                return (i, at);
            }
            at -= b.len();
        }
        unreachable!("position within len")
    }

    /// The number of leading entries `pred` holds for, in a list partitioned by it (all the
    /// entries it holds for come first). Looks from the back: an entry that belongs at the end
    /// (the usual case) costs one block's binary search.
    pub fn partition_point(&self, pred: impl Fn(&T) -> bool) -> usize {
        let mut after = 0;
        for b in self.blocks.iter().rev() {
            if b.front().is_some_and(&pred) {
                return self.len - after - b.len() + b.partition_point(&pred);
            }
            after += b.len();
        }
        0
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for b in &mut self.blocks {
            b.retain(&mut keep);
        }
        self.blocks.retain(|b| !b.is_empty());
        self.len = self.blocks.iter().map(VecDeque::len).sum();
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.blocks.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.blocks.iter_mut().flatten()
    }
}

impl<'a, T> IntoIterator for &'a Blocks<T> {
    type Item = &'a T;
    type IntoIter = std::iter::Flatten<std::collections::vec_deque::Iter<'a, VecDeque<T>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.blocks.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation against a `VecDeque` doing the same, across block boundaries.
    #[test]
    fn behaves_like_a_vecdeque() {
        let mut b: Blocks<u64> = Blocks::default();
        let mut v: VecDeque<u64> = VecDeque::new();
        let mut x = 0u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        for round in 0..60_000u64 {
            match next() % 10 {
                0..=3 => {
                    b.push_back(round);
                    v.push_back(round);
                }
                4 => {
                    b.push_front(round);
                    v.push_front(round);
                }
                5 | 6 => assert_eq!(b.pop_front(), v.pop_front()),
                7 => {
                    let at = (next() as usize) % (v.len() + 1);
                    b.insert(at, round);
                    v.insert(at, round);
                }
                8 if !v.is_empty() => {
                    let at = (next() as usize) % v.len();
                    assert_eq!(b.remove(at), v.remove(at));
                }
                _ => {}
            }
            assert_eq!(b.len(), v.len());
            assert_eq!(b.front(), v.front());
        }
        assert!(b.blocks.len() > 2, "spans several blocks");
        assert!(b.iter().eq(v.iter()));
        b.retain(|n| n % 3 != 0);
        v.retain(|n| n % 3 != 0);
        assert!(b.iter().eq(v.iter()));
        assert_eq!(b.len(), v.len());
        for n in b.iter_mut() {
            *n += 1;
        }
        assert!(b.iter().copied().eq(v.iter().map(|n| n + 1)));
    }

    /// A long list grows by new blocks, never by moving the full ones.
    #[test]
    fn a_full_block_is_never_moved() {
        let mut b: Blocks<u32> = Blocks::default();
        for n in 0..(BLOCK as u32 * 3) {
            b.push_back(n);
        }
        let first = b.blocks[0].as_slices().0.as_ptr();
        for n in 0..(BLOCK as u32 * 3) {
            b.push_back(n);
        }
        assert_eq!(b.blocks[0].as_slices().0.as_ptr(), first);
        assert!(b.blocks.iter().all(|x| x.capacity() <= BLOCK * 2));
        // Emptied blocks are freed.
        for _ in 0..(BLOCK * 5) {
            b.pop_front();
        }
        assert!(b.blocks.len() <= 2, "{} blocks", b.blocks.len());
    }

    #[test]
    fn partition_point_finds_the_place_in_a_sorted_list() {
        let mut b: Blocks<u32> = Blocks::default();
        for n in (0..20_000).map(|n| n * 2) {
            b.push_back(n);
        }
        for probe in [0, 1, 2, 8191, 8192, 20_000, 39_998, 39_999, 50_000] {
            let want = b.iter().filter(|&&n| n < probe).count();
            assert_eq!(b.partition_point(|&n| n < probe), want, "probe {probe}");
        }
        let at = b.partition_point(|&n| n < 9_001);
        b.insert(at, 9_001);
        assert!(b.iter().zip(b.iter().skip(1)).all(|(a, c)| a < c));
    }

    #[test]
    fn a_vector_taken_whole_is_one_block() {
        let b = Blocks::from((0..10_000u32).collect::<Vec<_>>());
        assert_eq!(b.blocks.len(), 1);
        assert_eq!(b.len(), 10_000);
        assert!(b.iter().copied().eq(0..10_000));
    }
}
