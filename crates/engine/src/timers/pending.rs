//! The pending timers by id, with when each is (was first) due: 24 bytes a timer in a
//! [`Chunked`] index (ids are time-ordered, so they fill its chunks), where a `HashMap` took
//! 40-70 bytes at its load factor.

use crate::chunked::{Chunked, Keyed};
use crate::clock::Millis;
use crate::model::MessageId;

#[derive(Clone, Copy)]
struct Timer {
    id_hi: u64,
    id_lo: u64,
    due: Millis,
}

impl Keyed for Timer {
    type Key = (u64, u64);
    fn key(&self) -> (u64, u64) {
        (self.id_hi, self.id_lo)
    }
}

fn key(id: MessageId) -> (u64, u64) {
    ((id.0 >> 64) as u64, id.0 as u64)
}

fn timer(id: MessageId, due: Millis) -> Timer {
    let (id_hi, id_lo) = key(id);
    Timer { id_hi, id_lo, due }
}

/// Pending timer id -> due time.
#[derive(Default)]
pub(super) struct Pending(Chunked<Timer>);

impl Pending {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, id: MessageId) -> Option<Millis> {
        self.0.get(&key(id)).map(|t| t.due)
    }

    pub fn contains(&self, id: MessageId) -> bool {
        self.get(id).is_some()
    }

    pub fn insert(&mut self, id: MessageId, due: Millis) {
        self.0.insert(timer(id, due));
    }

    pub fn remove(&mut self, id: MessageId) {
        self.0.remove(&key(id));
    }

    /// Every pending timer, by id.
    pub fn iter(&self) -> impl Iterator<Item = (MessageId, Millis)> + '_ {
        self.0.iter().map(|t| {
            (
                MessageId(((t.id_hi as u128) << 64) | t.id_lo as u128),
                t.due,
            )
        })
    }
}

impl FromIterator<(MessageId, Millis)> for Pending {
    fn from_iter<I: IntoIterator<Item = (MessageId, Millis)>>(iter: I) -> Self {
        Pending(iter.into_iter().map(|(id, due)| timer(id, due)).collect())
    }
}
