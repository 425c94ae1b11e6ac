//! Zero-filled spare segments, written ahead of the log so that a sync costs one disk round trip.
//!
//! A new segment is a sparse file of its full size. When a sync writes into a part of it never
//! written before (every second or third sync, at a couple of KB per sync), the filesystem
//! allocates blocks there, and `fdatasync` must then also write the file's metadata: on ext4 a
//! second, synchronous write of the inode before the cache flush (`ext4_write_inode` under
//! `fdatasync` in a profile). A file whose blocks were already written, with zeros, needs
//! neither. Measured: 19-23% more durable publishes a second at 50 connections, and the
//! inode write from 3.7% to 0.9% of the server's profile (BENCHMARKS.md, "Zero-filled spare
//! segments").
//!
//! So a background thread writes the log's next segment ahead of time: `log/spare.tmp`, zeros
//! to the full segment size, sent to the disk a [`PIECE`] at a time (so the log's syncs never
//! queue behind the whole segment), synced, then renamed to `log/spare`. When the log starts a
//! new segment and a spare is ready, the writer renames the spare to the segment's name
//! instead of creating a sparse file ([`Spares::install`]); a segment started without one (the
//! first after a start) is left early for the spare as soon as it is ready. Only the writer
//! thread names segment files, so a spare never overwrites a segment.
//!
//! The same thread keeps the log's page cache to about three segments: when a spare becomes
//! segment N, it drops the cached pages of segment N-2 (complete and synced) before it writes
//! the next spare ([`Spares::install`]). Left alone, the cache grows with every byte logged
//! until memory runs short, so each new page comes from memory never used before. On a virtual
//! machine whose host backs guest memory lazily (this one: a Firecracker VM) that costs about
//! 10-40 µs a page: 0.35-0.96 s of CPU per 64 MiB written, against 17-27 ms for memory just
//! freed, and the spare thread took 33-60% of a core during batched publishes. Reads of the
//! dropped segments (consumers more than a segment behind, compaction) go to the disk, with
//! the kernel's readahead.
//!
//! The zeros past the written part read as the clean end of a segment, exactly as the holes
//! of a sparse segment did, so recovery needs nothing new: a spare is not a `.seg` file and is
//! never replayed. A spare is made only once real traffic shows (a segment has received
//! [`SPARE_AFTER`] bytes) and only while the disk has room for it beyond `--min-free-bytes`
//! plus one more segment, so a quiet or nearly full server writes no zeros.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// A segment that has received this many bytes asks for a spare.
pub const SPARE_AFTER: u64 = 1024 * 1024;

/// The spare is written and sent to the disk this much at a time. Written at once and synced
/// at the end, its 64 MiB went out in one flush of about 33 ms here, and the log syncs queued
/// behind it made the longest request of every benchmark run (30-40 ms). A piece of 256 KiB
/// goes out in 0.17 ms (median; 1 ms at most) and the final sync then takes 0.3 ms
/// (BENCHMARKS.md, "The spare segment in pieces").
const PIECE: usize = 256 * 1024;

/// After a spare could not be made (no room, an I/O error), wait this long before trying again.
const BACKOFF: Duration = Duration::from_secs(10);

/// When a log keeps a spare segment.
#[derive(Debug, Clone, Copy)]
pub struct SpareRule {
    /// The data directory's free-space reserve (`--min-free-bytes`): no spare below it plus
    /// two segments.
    pub min_free_bytes: u64,
    /// A segment that started sparse asks for a spare once it has received this many bytes.
    pub after: u64,
}

/// The spare of one log directory, and the thread that writes it.
pub struct Spares {
    shared: Option<Arc<Shared>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    dir: PathBuf,
    segment_bytes: u64,
    min_free_bytes: u64,
    after: u64,
    /// `log/spare` exists, complete and synced, and nobody has claimed it.
    ready: AtomicBool,
    /// Someone asked for a spare and the thread has not finished one since.
    asked: AtomicBool,
    /// A finished segment whose cached pages the thread drops before it writes the next
    /// spare (see [`Spares::install`]).
    done_with: Mutex<Option<PathBuf>>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Spares {
    /// No spares: every segment starts sparse (the delivery history's log, tests).
    pub fn none() -> Spares {
        Spares {
            shared: None,
            thread: Mutex::new(None),
        }
    }

    /// Spares for the segments of `dir`, made as `rule` says.
    ///
    /// A spare left by an earlier run is removed, not used: a crash between the writer's
    /// rename of the spare and the directory's sync can leave records (never acknowledged)
    /// in a file still named `spare`, and a segment must start as zeros.
    pub fn start(dir: &Path, segment_bytes: u64, rule: SpareRule) -> std::io::Result<Spares> {
        for left in [tmp_path(dir), spare_path(dir)] {
            match fs::remove_file(left) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let shared = Arc::new(Shared::new(dir, segment_bytes, rule));
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-log-spare".into())
            .spawn(move || s2.run())?;
        Ok(Spares {
            shared: Some(shared),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// True while a spare is waiting to be claimed.
    pub fn ready(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|s| s.ready.load(Ordering::Acquire))
    }

    /// Take the ready spare for the next segment, if there is one. Called by the appender (under
    /// the log's pending lock, so one claim at a time); [`Spares::install`] then moves it into
    /// place when the writer first writes that segment, and asks for the next spare. (Asking
    /// here instead would let the thread rename a new spare over the claimed one before the
    /// writer has moved it, leaving `ready` set with no spare behind it.)
    pub fn claim(&self) -> bool {
        let Some(s) = &self.shared else { return false };
        s.ready.swap(false, Ordering::AcqRel)
    }

    /// The active segment started sparse and now holds `written` bytes: ask for a spare once
    /// it has received enough to show real traffic.
    pub fn note_sparse(&self, written: u64) {
        if let Some(s) = &self.shared {
            if written >= s.after
                && !s.ready.load(Ordering::Acquire)
                && !s.asked.swap(true, Ordering::AcqRel)
            {
                s.wake_thread();
            }
        }
    }

    /// Writer thread: move the claimed spare to `segment`, then ask for the next one. Does
    /// nothing when `segment` exists already (a failed write being retried) or there is no
    /// spare; the caller then opens the segment as usual.
    ///
    /// `done_with` is the segment two before `segment`, complete and synced: the thread drops
    /// its pages from the page cache before it writes the next spare, which then takes that
    /// memory (the module's doc says why).
    pub fn install(&self, segment: &Path, done_with: PathBuf) -> std::io::Result<()> {
        let Some(s) = &self.shared else { return Ok(()) };
        if segment.exists() {
            return Ok(());
        }
        match fs::rename(spare_path(&s.dir), segment) {
            Ok(()) => {
                *s.done_with.lock() = Some(done_with);
                // Always wake the thread: an ask that came while the last spare was being
                // finished may have found the flag already set.
                s.asked.store(true, Ordering::Release);
                s.wake_thread();
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stop the thread (a spare being written is abandoned and removed).
    pub fn stop(&self) {
        if let Some(s) = &self.shared {
            *s.stop.lock() = true;
            s.wake.notify_one();
        }
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spare_path(dir: &Path) -> PathBuf {
    dir.join("spare")
}

fn tmp_path(dir: &Path) -> PathBuf {
    dir.join("spare.tmp")
}

impl Shared {
    /// Nothing asked for yet, no spare ready.
    fn new(dir: &Path, segment_bytes: u64, rule: SpareRule) -> Shared {
        Shared {
            dir: dir.to_path_buf(),
            segment_bytes,
            min_free_bytes: rule.min_free_bytes,
            after: rule.after,
            ready: AtomicBool::new(false),
            asked: AtomicBool::new(false),
            done_with: Mutex::new(None),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    fn wake_thread(&self) {
        let _stop = self.stop.lock();
        self.wake.notify_one();
    }

    fn run(&self) {
        loop {
            {
                let mut stop = self.stop.lock();
                // Wait until stopped, or asked for a spare while none is ready.
                while !*stop && (!self.asked.load(Ordering::Acquire) || self.ready()) {
                    self.wake.wait(&mut stop);
                }
                if *stop {
                    return;
                }
            }
            let done_with = self.done_with.lock().take();
            if let Some(old) = done_with {
                if let Err(e) = super::disk::drop_cache(&old) {
                    tracing::debug!(error = %e, segment = %old.display(), "could not drop a finished segment's cached pages");
                }
            }
            match self.make() {
                Ok(true) => {
                    self.asked.store(false, Ordering::Release);
                    self.ready.store(true, Ordering::Release);
                    metrics::counter!("sluice_storage_spare_segments_total").increment(1);
                }
                Ok(false) => {
                    let _ = fs::remove_file(tmp_path(&self.dir));
                    if *self.stop.lock() {
                        return;
                    }
                    self.back_off();
                }
                Err(e) => {
                    let _ = fs::remove_file(tmp_path(&self.dir));
                    tracing::warn!(error = %e, "could not write a spare log segment; new segments start sparse (slower syncs) until one is made");
                    self.back_off();
                }
            }
        }
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Wait before the next attempt; a later ask then starts it.
    fn back_off(&self) {
        let mut stop = self.stop.lock();
        if !*stop {
            self.wake.wait_for(&mut stop, BACKOFF);
        }
        self.asked.store(false, Ordering::Release);
    }

    /// Write the spare. Ok(false): not made (no room, or stopping).
    fn make(&self) -> std::io::Result<bool> {
        let free = super::disk::free_bytes(&self.dir).unwrap_or(0);
        if free < self.min_free_bytes.saturating_add(2 * self.segment_bytes) {
            tracing::debug!(
                free,
                "no room for a spare log segment; new segments start sparse"
            );
            return Ok(false);
        }
        let tmp = tmp_path(&self.dir);
        let f: File = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)?;
        let zeros = vec![0u8; PIECE];
        let mut off = 0u64;
        while off < self.segment_bytes {
            if *self.stop.lock() {
                return Ok(false);
            }
            let n = (self.segment_bytes - off).min(zeros.len() as u64) as usize;
            f.write_all_at(&zeros[..n], off)?;
            // Out to the disk piece by piece: the log's next sync then waits behind one piece
            // at most, instead of behind the whole segment in one flush.
            super::disk::write_out(&f, off, n as u64)?;
            off += n as u64;
        }
        f.sync_all()?;
        fs::rename(&tmp, spare_path(&self.dir))?;
        super::disk::sync_dir(&self.dir)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::log::{Loc, Log};
    use std::os::unix::fs::MetadataExt;

    const SEG: u64 = 64 * 1024;

    fn rule() -> SpareRule {
        SpareRule {
            min_free_bytes: 0,
            after: 4 * 1024,
        }
    }

    async fn append(log: &Log, byte: u8) -> Loc {
        let mut a = log.begin();
        let loc = a.push(1024, |b| {
            b.extend_from_slice(&[byte; 1024]);
            1024
        });
        let lsn = a.finish();
        log.wait_durable(lsn).await.unwrap();
        loc
    }

    /// Bytes the filesystem has allocated to a file (a sparse file has far fewer than its size).
    fn allocated(path: &Path) -> u64 {
        fs::metadata(path).unwrap().blocks() * 512
    }

    async fn until(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..3000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// A segment that received enough asks for a spare; once it is written the log leaves its
    /// sparse segment for it, so the next segment's blocks are all written before any record
    /// goes in. Every record reads back from both segments.
    #[tokio::test]
    async fn the_log_moves_to_a_zero_filled_spare_once_traffic_shows() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::start(dir.path(), 1, SEG, Some(rule())).unwrap();
        let mut locs = Vec::new();
        for i in 0..3 {
            locs.push(append(&log, i).await);
        }
        assert!(
            !spare_path(dir.path()).exists(),
            "3 KiB is below the rule's 4 KiB: no spare yet"
        );
        for i in 3..5 {
            locs.push(append(&log, i).await);
        }
        until("a spare is ready", || log.spare_ready()).await;
        assert_eq!(fs::metadata(spare_path(dir.path())).unwrap().len(), SEG);
        assert!(
            allocated(&spare_path(dir.path())) >= SEG,
            "written, not sparse"
        );
        let next = append(&log, 9).await;
        locs.push(next);
        assert_eq!((locs[0].seg, next.seg, next.off), (1, 2, 0), "left early");
        let seg1 = Log::segment_path(dir.path(), 1);
        let seg2 = Log::segment_path(dir.path(), 2);
        assert!(allocated(&seg1) < SEG, "the first segment started sparse");
        assert!(allocated(&seg2) >= SEG, "the second is the spare");
        assert_eq!(fs::metadata(&seg2).unwrap().len(), SEG);
        for (i, loc) in locs.iter().enumerate() {
            let want = if i == 5 { 9 } else { i as u8 };
            assert_eq!(log.read(*loc).unwrap(), vec![want; 1024]);
        }
        // Taking the spare asked for the next one.
        until("the next spare is ready", || log.spare_ready()).await;
        log.shutdown();
    }

    /// Spares left by an earlier run (complete or half-written) are removed at the start: the
    /// next run's first segment starts sparse, and asks for a new spare as any other.
    #[tokio::test]
    async fn spares_left_by_an_earlier_run_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::start(dir.path(), 1, SEG, Some(rule())).unwrap();
        for i in 0..5 {
            append(&log, i).await;
        }
        until("a spare is ready", || log.spare_ready()).await;
        log.shutdown();
        drop(log);
        // As if the last run crashed with a record in its spare after renaming it.
        fs::write(spare_path(dir.path()), [7u8; SEG as usize]).unwrap();
        fs::write(tmp_path(dir.path()), b"half").unwrap();
        let log = Log::start(dir.path(), 7, SEG, Some(rule())).unwrap();
        assert!(!tmp_path(dir.path()).exists() && !spare_path(dir.path()).exists());
        let loc = append(&log, 1).await;
        assert_eq!(loc.seg, 7);
        assert!(
            allocated(&Log::segment_path(dir.path(), 7)) < SEG,
            "started sparse"
        );
        log.shutdown();
    }

    /// When a spare becomes a segment, the thread drops the cached pages of the segment named
    /// as done with (two before it) before it writes the next spare; the new segment's stay.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_finished_segment_leaves_the_page_cache_when_a_spare_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        if crate::embedded::disk::tests::on_tmpfs(dir.path()) {
            return;
        }
        let old = Log::segment_path(dir.path(), 1);
        fs::write(&old, vec![1u8; SEG as usize]).unwrap();
        File::open(&old).unwrap().sync_all().unwrap();
        assert!(
            crate::embedded::disk::tests::cached_pages(&old) > 0,
            "just written: cached"
        );
        let spares = Spares::start(dir.path(), SEG, rule()).unwrap();
        spares.note_sparse(SEG);
        until("a spare is ready", || spares.ready()).await;
        assert!(spares.claim());
        let seg = Log::segment_path(dir.path(), 3);
        spares.install(&seg, old.clone()).unwrap();
        until("the next spare is ready", || spares.ready()).await;
        assert_eq!(
            crate::embedded::disk::tests::cached_pages(&old),
            0,
            "dropped from the cache"
        );
        assert!(
            crate::embedded::disk::tests::cached_pages(&seg) > 0,
            "the segment in use keeps its pages"
        );
        assert_eq!(
            fs::read(&old).unwrap(),
            vec![1u8; SEG as usize],
            "still on disk"
        );
        spares.stop();
    }

    /// A claimed spare is not replaced before the writer has moved it into place: the next one
    /// is asked for only by `install`, after the rename.
    #[tokio::test]
    async fn the_next_spare_is_asked_for_only_once_the_claimed_one_is_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::start(dir.path(), SEG, rule()).unwrap();
        let shared = spares.shared.clone().unwrap();
        spares.note_sparse(SEG);
        until("a spare is ready", || spares.ready()).await;
        assert!(spares.claim());
        assert!(!spares.ready() && !spares.claim(), "claimed once");
        assert!(
            !shared.asked.load(Ordering::Acquire),
            "no new spare while the claimed one is still named spare"
        );
        let seg = Log::segment_path(dir.path(), 1);
        spares
            .install(&seg, Log::segment_path(dir.path(), 0))
            .unwrap();
        assert!(!spare_path(dir.path()).exists());
        assert_eq!(fs::metadata(&seg).unwrap().len(), SEG);
        until("the next spare is ready", || spares.ready()).await;
        assert!(spare_path(dir.path()).exists());
        spares.stop();
    }

    /// A spare larger than one piece, ending in a partial piece, is written whole: every byte
    /// of its full size, zeros, with its blocks allocated.
    #[test]
    fn a_spare_of_several_pieces_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let size = 2 * PIECE as u64 + 4096 + 512;
        let shared = Shared::new(dir.path(), size, rule());
        assert!(shared.make().unwrap());
        let path = spare_path(dir.path());
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert!(bytes.iter().all(|b| *b == 0));
        assert!(allocated(&path) >= size, "written, not sparse");
    }

    /// Without room beyond the free-space reserve and two segments, no spare is written.
    #[test]
    fn no_spare_without_room_beyond_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let no_room = SpareRule {
            min_free_bytes: u64::MAX / 2,
            ..rule()
        };
        let shared = Shared::new(dir.path(), SEG, no_room);
        assert!(!shared.make().unwrap());
        assert!(!spare_path(dir.path()).exists() && !tmp_path(dir.path()).exists());
        let shared = Shared {
            min_free_bytes: 0,
            ..shared
        };
        assert!(shared.make().unwrap());
        assert_eq!(fs::metadata(spare_path(dir.path())).unwrap().len(), SEG);
    }
}
