//! The closed-loop driver shared by every system: N workers, each with its own connection, run
//! one operation after another until the deadline; each operation's latency goes into an HDR
//! histogram (microseconds), the same way `sluice bench` measures.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::pacer::Pacer;

/// What a worker does with each operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Publish this many messages per operation and wait for the durability ack of all of them.
    Publish(usize),
    /// Receive up to this many messages and ack them.
    ReceiveAck(usize),
    /// Prefill: publish a large chunk per operation (the system's fastest durable form).
    Fill,
}

/// One client connection of one system.
pub trait Worker: Send + 'static {
    /// Run one operation; returns how many messages it published or received and acked.
    /// `Ok(0)` from a receive means the queue looked empty.
    fn op(&mut self) -> impl Future<Output = anyhow::Result<u64>> + Send;
}

/// The systems' common shape: make a fresh queue, open workers, clean up.
/// (Only used with static dispatch from `main`, so plain `async fn` is fine here.)
#[allow(async_fn_in_trait)]
pub trait System {
    type W: Worker;
    /// Create the queue (stream, table, ...) for this workload, empty.
    async fn prepare(&self) -> anyhow::Result<()>;
    /// Open one worker (its own connection) in this mode; `index` is 0..connections.
    async fn worker(&self, index: usize, mode: Mode) -> anyhow::Result<Self::W>;
    /// Called once the receive-ack prefill is done (e.g. to refresh planner statistics).
    async fn after_prefill(&self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Delete the queue (skipped with --keep).
    async fn cleanup(&self) -> anyhow::Result<()>;
}

/// A receive that keeps finding the queue empty for this long ends its worker.
const EMPTY_GRACE: Duration = Duration::from_secs(1);
/// A worker gives up after this many errors in a row (the server is gone).
const MAX_CONSECUTIVE_ERRORS: u32 = 20;

pub struct Outcome {
    pub messages: u64,
    pub requests: u64,
    pub errors: u64,
    /// Seconds the rate is computed over: the run's length, or up to the last message
    /// if the queue drained before the deadline.
    pub elapsed: f64,
    pub hist: Histogram<u64>,
    pub last_error: Option<String>,
    /// Every worker ended before the deadline because the queue was empty.
    pub drained: bool,
}

struct Shared {
    messages: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
    /// Microseconds since the start at which the last message was done.
    last_progress_us: AtomicU64,
    hist: Mutex<Histogram<u64>>,
    last_error: Mutex<Option<String>>,
}

pub fn new_hist() -> Histogram<u64> {
    // Microseconds, 1 µs to 100 s, 3 significant digits (as sluice bench).
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("bounds")
}

/// Run `workers` until `duration` has passed or `limit` messages are done (prefill). With
/// `ops_per_sec`, an operation starts only on a turn of the pacer (open loop, evenly spread, the
/// same pacer as `sluice bench --rate`), and its latency counts from its actual start.
pub async fn drive<W: Worker>(
    workers: Vec<W>,
    duration: Duration,
    limit: Option<u64>,
    ops_per_sec: Option<f64>,
) -> Outcome {
    let shared = Arc::new(Shared {
        messages: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        last_progress_us: AtomicU64::new(0),
        hist: Mutex::new(new_hist()),
        last_error: Mutex::new(None),
    });
    let started = Instant::now();
    let pacer = ops_per_sec.map(|r| Arc::new(Pacer::start(r)));
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(run_worker(w, shared.clone(), started, limit, pacer.clone())))
        .collect();
    let deadline = started + duration;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if Instant::now() >= deadline
            || shared.stop.load(Ordering::Relaxed)
            || tasks.iter().all(|t| t.is_finished())
        {
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(p) = &pacer {
        p.stop();
    }
    let mut elapsed = started.elapsed().as_secs_f64();
    let limit_reached = limit.is_some_and(|l| shared.messages.load(Ordering::Relaxed) >= l);
    let drained = elapsed < duration.as_secs_f64() && !limit_reached;
    // Workers finish their operation in flight (counted: it started before the deadline).
    for t in tasks {
        let _ = t.await;
    }
    if drained {
        // Don't charge the idle wait that detected the empty queue.
        let last = shared.last_progress_us.load(Ordering::Relaxed) as f64 / 1e6;
        if last > 0.0 {
            elapsed = last;
        }
    } else {
        elapsed = started.elapsed().as_secs_f64();
    }
    let hist = shared.hist.lock().unwrap().clone();
    let last_error = shared.last_error.lock().unwrap().clone();
    Outcome {
        messages: shared.messages.load(Ordering::Relaxed),
        requests: shared.requests.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        elapsed,
        hist,
        last_error,
        drained,
    }
}

async fn run_worker<W: Worker>(
    mut w: W,
    shared: Arc<Shared>,
    started: Instant,
    limit: Option<u64>,
    pacer: Option<Arc<Pacer>>,
) {
    let mut local = new_hist();
    let mut empty_since: Option<Instant> = None;
    let mut consecutive_errors = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(p) = &pacer {
            if !p.turn().await || shared.stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let t0 = Instant::now();
        let result = w.op().await;
        shared.requests.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(0) => {
                // Empty receive: not an operation we time. Give up after EMPTY_GRACE.
                consecutive_errors = 0;
                if empty_since.get_or_insert(t0).elapsed() >= EMPTY_GRACE {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(n) => {
                consecutive_errors = 0;
                empty_since = None;
                let _ = local.record((t0.elapsed().as_micros() as u64).max(1));
                let total = shared.messages.fetch_add(n, Ordering::Relaxed) + n;
                shared
                    .last_progress_us
                    .fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                if limit.is_some_and(|l| total >= l) {
                    shared.stop.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                *shared.last_error.lock().unwrap() = Some(format!("{e:#}"));
                consecutive_errors += 1;
                if consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if local.len() >= 1000 {
            shared
                .hist
                .lock()
                .unwrap()
                .add(&local)
                .expect("same bounds");
            local.reset();
        }
    }
    shared
        .hist
        .lock()
        .unwrap()
        .add(&local)
        .expect("same bounds");
}

/// A message body of `size` bytes: a 20-digit sequence number padded with 'x' (as sluice bench).
pub fn body(size: usize, seq: u64) -> Vec<u8> {
    let mut b = format!("{seq:020}").into_bytes();
    b.resize(size.max(1), b'x');
    b
}

/// Unique sequence numbers across workers: worker `index` uses index * 10^12 + n.
pub struct Seq(u64);

impl Seq {
    pub fn new(index: usize) -> Seq {
        Seq(index as u64 * 1_000_000_000_000)
    }
    pub fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// User + system CPU seconds of this process so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
