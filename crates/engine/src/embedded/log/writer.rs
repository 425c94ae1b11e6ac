//! The log's writer thread: it takes the pending chunks, writes each to its segment with
//! `pwrite`, calls `fdatasync` once for all of them, and advances the durable LSN, so every
//! request appended meanwhile shares one sync (group commit). A failed write or sync is
//! retried, everything since the last good sync written again. The appending side, the
//! segments and the reads are `log.rs`'s.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::time::Instant;

use rustc_hash::FxHashMap;

use super::{gather_target, Chunk, Log, Shared};
use crate::embedded::disk::sync_dir;

/// The writer's metrics, looked up once: a `metrics::histogram!` per sync looks its name up in
/// the registry every time (about 800 instructions a sync for the four, on the thread every
/// acknowledgement waits for). The server installs its recorder before it opens the log.
struct SyncMetrics {
    seconds: metrics::Histogram,
    records: metrics::Histogram,
    bytes: metrics::Histogram,
    syncs: metrics::Counter,
}

impl SyncMetrics {
    fn new() -> Self {
        SyncMetrics {
            seconds: metrics::histogram!("sluice_storage_sync_seconds"),
            records: metrics::histogram!("sluice_storage_sync_batch_records"),
            bytes: metrics::histogram!("sluice_storage_sync_batch_bytes"),
            syncs: metrics::counter!("sluice_storage_syncs_total"),
        }
    }
}

/// The writer thread: take what was appended (gathering a wave first: the module doc of
/// `log.rs`), write it, sync it once, and advance the durable LSN; on a failure, retry until
/// written or shut down.
pub(super) fn run(shared: &Shared, segment_bytes: u64) {
    let mut files: FxHashMap<u32, File> = FxHashMap::default();
    let m = SyncMetrics::new();
    let mut last = 0;
    let mut synced_at = Instant::now();
    loop {
        let (chunks, lsn, records) = {
            let mut p = shared.pending.lock();
            while p.chunks.is_empty() && !p.shutdown {
                shared.wake.wait(&mut p);
            }
            if p.chunks.is_empty() && p.shutdown {
                return;
            }
            let target = gather_target(last, synced_at.elapsed(), p.idle_reset);
            if p.appends < target && shared.fsync {
                let until = Instant::now() + p.gather_wait;
                p.gather = target;
                while p.appends < target && !p.shutdown {
                    if shared.wake.wait_until(&mut p, until).timed_out() {
                        break;
                    }
                }
                p.gather = 0;
            }
            let records = std::mem::take(&mut p.records);
            last = std::mem::take(&mut p.appends);
            (std::mem::take(&mut p.chunks), p.appended, records)
        };
        let started = Instant::now();
        let bytes: usize = chunks.iter().map(|c| c.data.len()).sum();
        #[cfg(test)]
        drop(shared.hold.lock());
        match write_and_sync(shared, &mut files, &chunks, segment_bytes) {
            Ok(()) => {
                m.seconds.record(started.elapsed().as_secs_f64());
                m.records.record(records as f64);
                m.bytes.record(bytes as f64);
                m.syncs.increment(1);
                #[cfg(test)]
                shared
                    .syncs
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                shared.durable.advance(lsn);
            }
            Err(e) => {
                if !retry_until_written(shared, &mut files, chunks, segment_bytes, e) {
                    return;
                }
            }
        }
        synced_at = Instant::now();
        // Close files of segments that are complete: only the newest stays open for writing.
        if files.len() > 1 {
            let newest = *files.keys().max().expect("non-empty");
            files.retain(|s, _| *s == newest);
        }
    }
}

/// After a failed write or sync (a full disk, an I/O error): report the failure (waiters get
/// `StorageUnavailable`, `/readyz` turns unhealthy), then retry once a second, writing again
/// every chunk since the last good sync together with whatever was appended meanwhile, in log
/// order, on freshly opened files. Everything is rewritten because after a failed fsync the
/// kernel may have dropped the dirty pages: a second fsync could "succeed" without them. When a
/// retry succeeds the log is healthy again and the new durable LSN covers it all. Returns false
/// if shut down first (what was not written is not durable, and was never acknowledged).
fn retry_until_written(
    shared: &Shared,
    files: &mut FxHashMap<u32, File>,
    mut chunks: Vec<Chunk>,
    segment_bytes: u64,
    first: std::io::Error,
) -> bool {
    let mut error = first;
    for attempt in 0u64.. {
        if attempt % 60 == 0 {
            tracing::error!(error = %error, attempt, "log write failed; retrying every second (writes are refused meanwhile)");
        }
        metrics::counter!("sluice_storage_write_errors_total").increment(1);
        *shared.error.lock() = Some(error.to_string());
        shared.durable.fail();
        let lsn = {
            let mut p = shared.pending.lock();
            if !p.shutdown {
                shared
                    .wake
                    .wait_for(&mut p, std::time::Duration::from_secs(1));
            }
            chunks.extend(std::mem::take(&mut p.chunks));
            p.records = 0;
            p.appends = 0;
            p.appended
        };
        files.clear();
        match write_and_sync(shared, files, &chunks, segment_bytes) {
            Ok(()) => {
                tracing::warn!("log writes succeed again; storage is healthy");
                *shared.error.lock() = None;
                shared.durable.advance(lsn);
                return true;
            }
            Err(e) => error = e,
        }
        if shared.pending.lock().shutdown {
            tracing::error!(error = %error, "shutting down with log writes failing: the unwritten tail was never acknowledged");
            return false;
        }
    }
    unreachable!("the retry loop only returns")
}

fn write_and_sync(
    shared: &Shared,
    files: &mut FxHashMap<u32, File>,
    chunks: &[Chunk],
    segment_bytes: u64,
) -> std::io::Result<()> {
    let dir = &shared.dir;
    let mut touched: Vec<u32> = Vec::new();
    let mut created = false;
    for c in chunks {
        let f = match files.entry(c.seg) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                created = true;
                let path = Log::segment_path(dir, c.seg);
                if c.spare {
                    let done_with = Log::segment_path(dir, c.seg.saturating_sub(2));
                    shared.spares.install(&path, done_with)?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)?;
                // Pre-size the segment: appends then never change the file size, so each
                // fdatasync flushes data without also committing a size change to the
                // filesystem journal (measured +15-60% syncs/s here; bench/storage-choice).
                // The zeros past the written part read as the clean end of the segment. A
                // spare has its full size, with its blocks written (spare.rs).
                if f.metadata()?.len() < segment_bytes {
                    f.set_len(segment_bytes)?;
                }
                v.insert(f)
            }
        };
        f.write_all_at(&c.data, c.start)?;
        if !touched.contains(&c.seg) {
            touched.push(c.seg);
        }
    }
    if !shared.fsync {
        return Ok(());
    }
    for s in touched {
        files[&s].sync_data()?;
    }
    if created {
        sync_dir(dir)?;
    }
    Ok(())
}
