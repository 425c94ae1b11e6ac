//! Message ids: UUIDv7 (RFC 9562), made here rather than by `uuid::Uuid::now_v7`, so that a
//! batch takes one lock and one clock read for all its ids instead of one each (the crate's
//! shared context cost about 340 instructions more an id in a batch of 10, measured with
//! callgrind; BENCHMARKS.md, "Fewer instructions per publish").
//!
//! The layout is the RFC's "fixed bit-length dedicated counter" (its method 1), as the `uuid`
//! crate also makes them: 48 bits of Unix milliseconds, the version (7), 42 bits of counter
//! split around the variant bits, then 32 random bits. The counter starts at a random value
//! below 2^41 in each new millisecond and counts up within it, so ids made by this process
//! always increase (ordered by time, then by the order they were made). When a millisecond's
//! counter runs out, or the clock steps back, the last millisecond is carried forward.

use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// The last id's millisecond and counter, and the random generator for the low bits.
struct Source {
    ms: u64,
    counter: u64,
    rng: u64,
}

static SOURCE: Mutex<Source> = Mutex::new(Source {
    ms: 0,
    counter: 0,
    rng: 0,
});

const COUNTER_BITS: u32 = 42;
const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;

impl Source {
    /// splitmix64, seeded from the OS on first use: fast, and unpredictable without the seed.
    fn random(&mut self) -> u64 {
        if self.rng == 0 {
            let mut seed = [0u8; 8];
            let _ = getrandom::getrandom(&mut seed);
            self.rng = u64::from_le_bytes(seed) | 1;
        }
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next (millisecond, counter) at or after `now_ms`.
    fn advance(&mut self, now_ms: u64) {
        if now_ms > self.ms {
            self.ms = now_ms;
            self.counter = self.random() & (COUNTER_MAX >> 1);
        } else if self.counter < COUNTER_MAX {
            self.counter += 1;
        } else {
            self.ms += 1;
            self.counter = self.random() & (COUNTER_MAX >> 1);
        }
    }

    fn id(&mut self) -> u128 {
        let ms = (self.ms & ((1 << 48) - 1)) as u128;
        let hi12 = (self.counter >> 30) as u128;
        let lo30 = (self.counter & ((1 << 30) - 1)) as u128;
        let random = (self.random() & 0xFFFF_FFFF) as u128;
        (ms << 80) | (0x7 << 76) | (hi12 << 64) | (0b10 << 62) | (lo30 << 32) | random
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `n` new ids, each greater than every id made before it by this process.
pub(crate) fn new_v7s(n: usize) -> Vec<u128> {
    let now = now_ms();
    let mut s = SOURCE.lock();
    (0..n)
        .map(|_| {
            s.advance(now);
            s.id()
        })
        .collect()
}

/// One new id.
pub(crate) fn new_v7() -> u128 {
    let now = now_ms();
    let mut s = SOURCE.lock();
    s.advance(now);
    s.id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_7_variant_rfc_and_carry_the_time() {
        let before = now_ms();
        let id = uuid::Uuid::from_u128(new_v7());
        let after = now_ms();
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        let ms = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!(before <= ms && ms <= after, "{before} <= {ms} <= {after}");
    }

    #[test]
    fn ids_always_increase_within_and_across_runs() {
        let mut last = new_v7();
        for n in [1, 10, 1000, 3] {
            for id in new_v7s(n) {
                assert!(id > last);
                last = id;
            }
            let one = new_v7();
            assert!(one > last);
            last = one;
        }
    }

    #[test]
    fn a_full_counter_or_a_clock_stepping_back_carries_the_millisecond_forward() {
        let mut s = Source {
            ms: 5_000,
            counter: COUNTER_MAX,
            rng: 0,
        };
        let full = s.id();
        s.advance(5_000);
        assert_eq!(s.ms, 5_001);
        assert!(s.counter <= COUNTER_MAX >> 1);
        let next = s.id();
        assert!(next > full);
        s.advance(4_000); // the clock stepped back
        assert_eq!(s.ms, 5_001);
        assert!(s.id() > next);
    }

    #[test]
    fn threads_never_get_the_same_id() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| new_v7s(20_000)))
            .collect();
        let mut all: Vec<u128> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
