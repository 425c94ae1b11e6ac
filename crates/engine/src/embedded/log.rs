//! The segmented append-only log and its group-commit writer.
//!
//! Callers append encoded frames while holding the store's state lock (so log order equals the
//! order in which state changed), get a log sequence number (LSN) back, release the lock, and
//! wait until that LSN is durable. One writer thread takes everything appended so far, writes it
//! with `pwrite`, calls `fdatasync` once, and publishes the new durable LSN: every request that
//! arrived while the previous sync was running shares the next one (group commit). Nothing is
//! answered before its records are synced.
//!
//! A sync that carried many appends (requests) is usually followed by a wave of as many: its
//! requests are answered and their clients send the next ones, spread over the time the server
//! and the clients take to serve them. Started at the wave's first append, the next sync would
//! carry that one alone while the rest of the wave waits for it (a third of the syncs did, under
//! load on a 2-core machine: BENCHMARKS.md, "The log writer gathers a wave"). The writer
//! therefore gathers: after a sync of `n` appends it waits for `n / 2` new ones, or
//! [`GATHER_WAIT`] at most, before it writes ([`gather_target`]). It writes at once after a sync
//! of fewer than 4 appends, after sitting idle for [`IDLE_RESET`], and when the log is never
//! fsynced, so a request that comes alone waits for no one.
//!
//! The writer thread is `log/writer.rs`; this file is the appending side, the segments and the
//! reads.
//!
//! Segments are files `log/NNNNNNNNNNNNNNNN.seg` of at most [`SEGMENT_BYTES`] by default. A fresh segment is
//! started at every open, so a torn tail left by a crash is never appended to.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use rustc_hash::FxHashMap;

use super::disk::sync_dir;
use super::durable::{Durable, Outcome};
use super::spare::{SpareRule, Spares};
use crate::error::{EngineError, Result};

mod writer;

pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// The longest the writer waits to gather the appends of a wave before it writes (module doc).
pub const GATHER_WAIT: Duration = Duration::from_micros(100);

/// A writer idle this long since its last sync writes what comes at once: no wave follows.
pub const IDLE_RESET: Duration = Duration::from_millis(1);

/// How many appends the writer waits for before it writes, when its last sync carried `last`
/// appends and it then sat `idle` before the first new one: half of a wave of 4 or more, else
/// none (module doc). `idle_reset` is [`IDLE_RESET`].
pub fn gather_target(last: u64, idle: Duration, idle_reset: Duration) -> u64 {
    if last >= 4 && idle < idle_reset {
        last / 2
    } else {
        0
    }
}

/// Where a frame lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub seg: u32,
    pub off: u32,
    pub len: u32,
}

struct Chunk {
    seg: u32,
    start: u64,
    data: Vec<u8>,
    /// The first chunk of a segment that takes the spare (spare.rs) as its file.
    spare: bool,
}

struct Pending {
    segment_bytes: u64,
    chunks: Vec<Chunk>,
    seg: u32,
    seg_len: u64,
    /// The active segment started as a sparse file (no spare was ready).
    sparse: bool,
    appended: u64,
    records: u64,
    /// Appends (each one request's records) since the writer last took the pending chunks.
    appends: u64,
    /// While the writer gathers: the appends it waits for; an append wakes it only once
    /// `appends` reaches this (0: every append wakes it).
    gather: u64,
    /// [`GATHER_WAIT`] and [`IDLE_RESET`]; tests stretch them so that timing cannot decide.
    gather_wait: Duration,
    idle_reset: Duration,
    shutdown: bool,
}

struct Shared {
    dir: PathBuf,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// The durable LSN and the requests waiting for theirs.
    durable: Durable,
    error: Mutex<Option<String>>,
    /// False only under `SLUICE_UNSAFE_NO_FSYNC=1` (see [`Log::start`]).
    fsync: bool,
    spares: Spares,
    /// Syncs written (tests count them).
    #[cfg(test)]
    syncs: std::sync::atomic::AtomicU64,
    /// Held by a test to keep the writer from writing what it has taken.
    #[cfg(test)]
    hold: Mutex<()>,
}

pub struct Log {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: RwLock<FxHashMap<u32, Arc<File>>>,
}

/// An open append: holds the pending-buffer lock until `finish`.
pub struct Append<'a> {
    guard: parking_lot::MutexGuard<'a, Pending>,
    wake: &'a Condvar,
    spares: &'a Spares,
    touched: bool,
}

impl Append<'_> {
    /// Append one frame written by `encode` (which returns the frame length). Returns its location.
    pub fn push(&mut self, max_len: usize, encode: impl FnOnce(&mut Vec<u8>) -> usize) -> Loc {
        let p = &mut *self.guard;
        // A full segment ends; so does a sparse one as soon as a zero-filled spare is ready.
        let full = p.seg_len + max_len as u64 > p.segment_bytes;
        if p.seg_len > 0 && (full || (p.sparse && self.spares.ready())) {
            p.seg += 1;
            p.seg_len = 0;
            p.sparse = true;
        }
        let need_chunk = match p.chunks.last() {
            Some(c) => c.seg != p.seg,
            None => true,
        };
        if need_chunk {
            let spare = p.seg_len == 0 && p.sparse && self.spares.claim();
            if spare {
                p.sparse = false;
            }
            p.chunks.push(Chunk {
                seg: p.seg,
                start: p.seg_len,
                data: Vec::with_capacity(max_len.max(4096)),
                spare,
            });
        }
        let chunk = p.chunks.last_mut().expect("chunk");
        let len = encode(&mut chunk.data);
        let loc = Loc {
            seg: p.seg,
            off: p.seg_len as u32,
            len: len as u32,
        };
        p.seg_len += len as u64;
        p.records += 1;
        if p.sparse {
            self.spares.note_sparse(p.seg_len);
        }
        self.touched = true;
        loc
    }

    /// The segment new frames go to (the log's active segment).
    pub fn segment(&self) -> u32 {
        self.guard.seg
    }

    /// Close the append and return the LSN to wait for.
    pub fn finish(mut self) -> u64 {
        if self.touched {
            self.guard.appended += 1;
            self.guard.appends += 1;
            if self.guard.appends >= self.guard.gather {
                self.wake.notify_one();
            }
        }
        self.guard.appended
    }
}

impl Log {
    /// Start the writer on a new segment numbered `first_seg`.
    ///
    /// `SLUICE_UNSAFE_NO_FSYNC=1` in the environment makes the writer skip `fdatasync`: records
    /// are written to the page cache and acknowledged, so a power loss or kernel crash loses
    /// acknowledged messages (a process crash does not). It exists only to measure what
    /// durability costs (BENCHMARKS.md); it is not a configuration setting and is logged loudly.
    ///
    /// With a `spare` rule, a thread keeps a zero-filled next segment ready (spare.rs).
    pub fn start(
        dir: &Path,
        first_seg: u32,
        segment_bytes: u64,
        spare: Option<SpareRule>,
    ) -> Result<Log> {
        fs::create_dir_all(dir)?;
        let spares = match spare {
            Some(rule) => Spares::start(dir, segment_bytes, rule)?,
            None => Spares::none(),
        };
        let fsync =
            std::env::var_os("SLUICE_UNSAFE_NO_FSYNC").is_none_or(|v| v.is_empty() || v == "0");
        if !fsync {
            tracing::warn!("SLUICE_UNSAFE_NO_FSYNC is set: the log is never fsynced, acknowledged messages are lost on a power failure (for measurements only)");
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            pending: Mutex::new(Pending {
                segment_bytes,
                chunks: Vec::new(),
                seg: first_seg,
                seg_len: 0,
                sparse: true,
                appended: 0,
                records: 0,
                appends: 0,
                gather: 0,
                gather_wait: GATHER_WAIT,
                idle_reset: IDLE_RESET,
                shutdown: false,
            }),
            wake: Condvar::new(),
            durable: Durable::default(),
            error: Mutex::new(None),
            fsync,
            spares,
            #[cfg(test)]
            syncs: Default::default(),
            #[cfg(test)]
            hold: Mutex::new(()),
        });
        let s2 = shared.clone();
        let writer = std::thread::Builder::new()
            .name("sluice-log-writer".into())
            .spawn(move || {
                // The gather's deadline to the microsecond, not the default 50 µs timer slack.
                // SAFETY: PR_SET_TIMERSLACK takes a plain integer and sets this thread's slack.
                #[cfg(target_os = "linux")]
                unsafe {
                    libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong);
                }
                writer::run(&s2, segment_bytes);
                // Appends after this would wait forever: end their waits.
                s2.durable.stop();
            })?;
        Ok(Log {
            shared,
            writer: Mutex::new(Some(writer)),
            readers: RwLock::new(FxHashMap::default()),
        })
    }

    pub fn segment_path(dir: &Path, seg: u32) -> PathBuf {
        dir.join(format!("{seg:016}.seg"))
    }

    /// The numbers of the segment files in `dir`, oldest first (none when `dir` is missing).
    pub fn segment_numbers(dir: &Path) -> std::io::Result<Vec<u32>> {
        let mut segs = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for e in entries {
                    let name = e?.file_name();
                    if let Some(n) = name
                        .to_str()
                        .and_then(|n| n.strip_suffix(".seg"))
                        .and_then(|n| n.parse::<u32>().ok())
                    {
                        segs.push(n);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        segs.sort_unstable();
        Ok(segs)
    }

    pub fn begin(&self) -> Append<'_> {
        Append {
            guard: self.shared.pending.lock(),
            wake: &self.shared.wake,
            spares: &self.shared.spares,
            touched: false,
        }
    }

    /// The LSN of everything appended so far.
    pub fn appended(&self) -> u64 {
        self.shared.pending.lock().appended
    }

    pub fn active_segment(&self) -> u32 {
        self.shared.pending.lock().seg
    }

    /// A zero-filled spare segment is ready to be taken (spare.rs).
    #[cfg(test)]
    pub fn spare_ready(&self) -> bool {
        self.shared.spares.ready()
    }

    pub fn failure(&self) -> Option<String> {
        self.shared.error.lock().clone()
    }

    /// Wait until `lsn` is on disk. Fails if the writer hit an I/O error.
    pub async fn wait_durable(&self, lsn: u64) -> Result<()> {
        match self.shared.durable.wait(lsn).await {
            Outcome::Durable => Ok(()),
            Outcome::Failed => Err(EngineError::StorageUnavailable(
                self.failure().unwrap_or_else(|| "write failed".into()),
            )),
            Outcome::Stopped => Err(EngineError::StorageUnavailable("log writer stopped".into())),
        }
    }

    /// Read the frame at `loc`. Only call for frames whose LSN is durable (they are written).
    pub fn read(&self, loc: Loc) -> Result<Vec<u8>> {
        let file = self.reader(loc.seg)?;
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.off as u64)?;
        Ok(buf)
    }

    fn reader(&self, seg: u32) -> Result<Arc<File>> {
        if let Some(f) = self.readers.read().get(&seg) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(Self::segment_path(&self.shared.dir, seg))?);
        self.readers.write().insert(seg, f.clone());
        Ok(f)
    }

    /// Delete a segment file that holds nothing live any more, and sync the directory, so that
    /// segments removed one after another leave the disk in that order even after a power cut.
    pub fn remove_segment(&self, seg: u32) -> Result<()> {
        self.readers.write().remove(&seg);
        match fs::remove_file(Self::segment_path(&self.shared.dir, seg)) {
            Ok(()) => Ok(sync_dir(&self.shared.dir)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Flush everything and stop the writer thread.
    pub fn shutdown(&self) {
        {
            let mut p = self.shared.pending.lock();
            p.shutdown = true;
            self.shared.wake.notify_one();
        }
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
        self.shared.spares.stop();
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A record appended after the writer has stopped can never become durable: its wait ends
    /// with an error instead of hanging; what was synced before the stop still counts as durable.
    #[tokio::test]
    async fn a_wait_after_the_writer_stopped_fails_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::start(dir.path(), 1, SEGMENT_BYTES, None).unwrap();
        let frame = |b: &mut Vec<u8>| {
            b.extend_from_slice(&[7u8; 16]);
            16
        };
        let mut a = log.begin();
        a.push(16, frame);
        let synced = a.finish();
        log.wait_durable(synced).await.unwrap();
        log.shutdown();
        let mut a = log.begin();
        a.push(16, frame);
        let late = a.finish();
        let waited = tokio::time::timeout(Duration::from_secs(30), log.wait_durable(late)).await;
        assert!(
            matches!(waited, Ok(Err(EngineError::StorageUnavailable(_)))),
            "{waited:?}"
        );
        log.wait_durable(synced).await.unwrap();
    }

    /// After a sync of a wave the writer waits for half as many appends; after a small sync, or
    /// after sitting idle, for none.
    #[test]
    fn the_writer_gathers_half_a_wave_and_nothing_after_a_small_sync_or_idleness() {
        let (busy, reset) = (Duration::from_micros(20), IDLE_RESET);
        assert_eq!(gather_target(0, busy, reset), 0);
        assert_eq!(gather_target(1, busy, reset), 0);
        assert_eq!(gather_target(3, busy, reset), 0);
        assert_eq!(gather_target(4, busy, reset), 2);
        assert_eq!(gather_target(31, busy, reset), 15);
        assert_eq!(gather_target(31, reset, reset), 0);
        assert_eq!(gather_target(31, Duration::from_secs(5), reset), 0);
    }

    fn append(log: &Log) -> u64 {
        let mut a = log.begin();
        a.push(16, |b: &mut Vec<u8>| {
            b.extend_from_slice(&[7u8; 16]);
            16
        });
        a.finish()
    }

    fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::yield_now();
        }
    }

    async fn durable(log: &Log, lsn: u64) {
        tokio::time::timeout(Duration::from_secs(30), log.wait_durable(lsn))
            .await
            .expect("synced in time")
            .unwrap();
    }

    fn syncs(log: &Log) -> u64 {
        log.shared.syncs.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A log whose writer never counts itself idle, after a sync of a wave of 8 appends: the
    /// writer takes a first append and waits at the hold while 8 more pile up.
    async fn after_a_wave(dir: &Path, gather_wait: Duration) -> Log {
        let log = Log::start(dir, 1, SEGMENT_BYTES, None).unwrap();
        {
            let mut p = log.shared.pending.lock();
            p.gather_wait = gather_wait;
            p.idle_reset = Duration::from_secs(60);
        }
        let held = log.shared.hold.lock();
        append(&log);
        until("the writer took the first append", || {
            log.shared.pending.lock().chunks.is_empty()
        });
        let wave = (0..8).map(|_| append(&log)).last().unwrap();
        drop(held);
        durable(&log, wave).await;
        assert_eq!(syncs(&log), 2, "the first append, then the wave of 8");
        log
    }

    /// After a wave the next append finds the writer gathering half of one, and it and the 3
    /// made after it go to disk in one sync. The gather may last a minute: only counts decide.
    #[tokio::test]
    async fn after_a_wave_the_writer_gathers_the_next_appends_into_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let log = after_a_wave(dir.path(), Duration::from_secs(60)).await;
        append(&log);
        until("the writer gathers half the wave", || {
            log.shared.pending.lock().gather == 4
        });
        let last = (0..3).map(|_| append(&log)).last().unwrap();
        durable(&log, last).await;
        assert_eq!(
            syncs(&log),
            3,
            "the four appends after the wave went in one sync"
        );
    }

    /// An append that comes alone after a wave is written when the gather's deadline passes,
    /// and the next one, after that small sync, at once.
    #[tokio::test]
    async fn a_lone_append_after_a_wave_is_synced_when_the_gather_ends() {
        let dir = tempfile::tempdir().unwrap();
        let log = after_a_wave(dir.path(), GATHER_WAIT).await;
        let lone = append(&log);
        durable(&log, lone).await;
        let next = append(&log);
        durable(&log, next).await;
        assert_eq!(syncs(&log), 4);
    }
}
