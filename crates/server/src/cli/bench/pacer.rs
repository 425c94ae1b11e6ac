//! `sluice bench ... --rate N`: an open-loop pacer that lets N requests a second go out,
//! evenly spread. One OS thread wakes every [`TICK`] (250 µs) and hands out the sends that
//! have come due since, as permits the publishing connections wait for.
//!
//! Why not each connection sleeping on its own schedule with tokio's timer: that timer ticks in
//! whole milliseconds, so at 14,000/s the server saw a burst of ~14 requests every millisecond
//! and each burst's latency included waiting behind the rest of it. Real publishers arrive
//! independently; a pacer with a finer clock is closer to them.
//!
//! `bench/peers` compiles this same file (`#[path]`), so the peers' clients are paced exactly
//! as sluice's: keep it to `std` and `tokio`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// How often the pacer hands out what came due. `thread::sleep` overshoots by ~50 µs here,
/// which the next tick makes up (permits follow the clock, not the ticks). 100 µs gave the
/// same medians with a noisier p99 and a fifth more of the generator's CPU (BENCHMARKS.md).
const TICK: Duration = Duration::from_micros(250);

pub struct Pacer {
    permits: Arc<Semaphore>,
    stop: Arc<AtomicBool>,
}

impl Pacer {
    /// Start handing out `rate` permits a second, from now.
    pub fn start(rate: f64) -> Pacer {
        let permits = Arc::new(Semaphore::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (permits.clone(), stop.clone());
        std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || {
                let started = Instant::now();
                let mut released = 0u64;
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    let due = (rate * started.elapsed().as_secs_f64()) as u64;
                    // At most a second of turns waits: after a stall the publishers catch up
                    // with that burst at most, not with everything the stall held back.
                    let room = (rate.max(1.0) as u64).saturating_sub(p.available_permits() as u64);
                    let owed = (due - released).min(room);
                    if owed > 0 {
                        p.add_permits(owed as usize);
                    }
                    released = due;
                }
                p.close();
            })
            .expect("spawn the bench pacer");
        Pacer { permits, stop }
    }

    /// Stop handing out turns: within a tick every waiter's `turn` answers false, so a run's
    /// end does not wait for one more turn per connection (50 connections at 10/s: 5 s).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Wait for the next send's turn. False once the pacer has stopped.
    pub async fn turn(&self) -> bool {
        match self.permits.acquire().await {
            Ok(p) => {
                p.forget();
                true
            }
            Err(_) => false,
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Turns never come early: 50 of them at 1,000 a second take at least 49 ms, however
    /// slow the machine (no upper bound is asserted). The clock starts before the pacer's.
    #[tokio::test]
    async fn turns_follow_the_rate() {
        let started = Instant::now();
        let pacer = Pacer::start(1_000.0);
        for _ in 0..50 {
            assert!(pacer.turn().await);
        }
        assert!(
            started.elapsed() >= Duration::from_millis(49),
            "{:?}",
            started.elapsed()
        );
    }

    /// A pacer stopped while publishers still hold it lets the waiting ones go, long before
    /// its next turn (at 0.001 a second, 1,000 s away).
    #[tokio::test]
    async fn stop_lets_waiters_go_at_once() {
        let pacer = Arc::new(Pacer::start(0.001));
        let waiter = tokio::spawn({
            let pacer = pacer.clone();
            async move { pacer.turn().await }
        });
        pacer.stop();
        let got = tokio::time::timeout(Duration::from_secs(60), waiter).await;
        assert!(!got.expect("let go before the next turn").unwrap());
    }

    /// Once the pacer is dropped, a waiting publisher is let go.
    #[tokio::test]
    async fn a_stopped_pacer_lets_waiters_go() {
        let pacer = Pacer::start(1.0);
        let permits = pacer.permits.clone();
        drop(pacer);
        while permits.acquire().await.map(|p| p.forget()).is_ok() {}
        assert!(permits.is_closed());
    }
}
