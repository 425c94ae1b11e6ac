//! The embedded backend: one data directory, one process.
//!
//! ```text
//! DATA_DIR/queues.json          the queue catalog: a snapshot (catalog.rs)
//! DATA_DIR/queues.log           ... and the queue changes since, one line each (catalog.rs)
//! DATA_DIR/set-aside/           segments with messages of queues the catalog did not know
//! DATA_DIR/log/NNNN….seg        the append-only log segments (log.rs, record.rs)
//! DATA_DIR/log/spare            the next segment, zero-filled ahead of time (spare.rs)
//! DATA_DIR/meta.json            small settings: subscriptions, schedules (side.rs)
//! DATA_DIR/archive.bin          outcomes of finished timers, 17 bytes each (side.rs)
//! DATA_DIR/history/NNNN….seg    the delivery history: push and timer attempts (history.rs)
//! DATA_DIR/receipt.key          the secret that seals receipts (side.rs, receipts.rs)
//! DATA_DIR/LOCK                 held while a server has the directory open
//! ```
//!
//! Every operation runs in three steps: under the state lock, apply the change to the in-memory
//! index (state.rs) and append its records to the log; release the lock; wait until the log
//! writer has synced those records (group commit). Only then does the call return, so nothing is
//! acknowledged before it is durable. Bodies are read back from the log by location.
//!
//! Space is reclaimed by deleting whole segments: the oldest segments are removed as soon as no
//! live message was published in them (prefix deletion keeps replay correct: every record about
//! a live message is in a segment at or after the one holding its Publish record). A few old
//! live messages that would pin the prefix are copied forward first (`compact`).

mod blocks;
mod catalog;
mod delayed;
mod disk;
mod durable;
mod history;
mod log;
mod maintenance;
mod messages;
mod ready;
pub mod record;
mod replay;
mod rules;
mod side;
mod spare;
mod state;
mod store_impl;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::model::{Message, MessageId, MessageState, QueueConfig, QueueInfo};

use self::log::Log;
use self::record::Record;
use self::state::{Entry, QState, State};

pub use self::replay::RecoveryReport;

/// Options of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub max_queues: usize,
    /// Size of one log segment file.
    pub segment_bytes: u64,
    /// Compaction looks for a sparse old segment at most this often.
    pub compact_interval_ms: i64,
    /// A segment is compacted only if it holds at most this many live messages.
    pub compact_max_live: u64,
    /// Publishing and queue creation are refused (`StorageFull`) while the filesystem of the
    /// data directory has less free space than this; 0 turns the check off.
    pub min_free_bytes: u64,
    /// The delivery history's budget on disk (oldest attempts go first).
    pub history_max_bytes: u64,
    /// A zero-filled next segment is written ahead once a segment has received this many
    /// bytes, so syncs do not allocate (spare.rs); 0 turns spares off.
    pub spare_after_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_queues: 10_000,
            segment_bytes: log::SEGMENT_BYTES,
            compact_interval_ms: 30_000,
            compact_max_live: 10_000,
            min_free_bytes: MIN_FREE_BYTES_DEFAULT,
            history_max_bytes: crate::history::limits::BYTES_DEFAULT,
            spare_after_bytes: spare::SPARE_AFTER,
        }
    }
}

pub struct EmbeddedStore {
    dir: PathBuf,
    state: Mutex<State>,
    log: Log,
    opts: EmbeddedOptions,
    /// Damage found when the store was opened (`RecoveryReport::corrupt`).
    recovery_problems: Vec<String>,
    /// Damage found since, when messages were read (the newest 100).
    runtime_problems: Mutex<Vec<String>>,
    /// When the free space was last read, and what it was (see `check_space`).
    space: Mutex<(Option<std::time::Instant>, u64)>,
    bytes_on_disk: AtomicU64,
    last_compaction: std::sync::atomic::AtomicI64,
    meta: side::Meta,
    archive: side::Archive,
    history: history::History,
    /// `queues.json` + `queues.log`; written under the state lock.
    catalog: Mutex<catalog::CatalogLog>,
    receipt_key: [u8; 32],
    _lock: File,
}

/// A message read for delivery: its index entry plus where it stands.
struct Picked {
    entry: Entry,
    state: MessageState,
    visible_at: Millis,
    source_name: Option<String>,
}

impl EmbeddedStore {
    /// Open (or create) the store in `dir`, recovering from whatever a crash left behind.
    pub fn open(
        dir: &Path,
        opts: EmbeddedOptions,
        now: Millis,
    ) -> Result<(EmbeddedStore, RecoveryReport)> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        lock_exclusive(&lock, dir)?;
        let loaded = catalog::load(dir)?;
        let log_dir = dir.join("log");
        let (state, report) = replay::replay(&loaded.catalog, &log_dir, now)?;
        for line in report.dropped.iter().chain(&loaded.problems) {
            tracing::warn!("recovery: {line}");
        }
        // What recovery found stays listed in `storage_problems` until the next start.
        let mut problems: Vec<String> = report.corrupt.clone();
        problems.extend(report.dropped.iter().cloned());
        problems.extend(loaded.problems.iter().cloned());
        for line in catalog::set_aside(dir, &log_dir, &report.unknown_queues)? {
            tracing::error!("recovery: {line}");
            problems.push(line);
        }
        let fold = loaded.lines > 0
            || !loaded.problems.is_empty()
            || state.next_queue_id != loaded.catalog.next_queue_id;
        let catalog = catalog::CatalogLog::open(dir, &state.catalog(), fold)?;
        for line in &report.corrupt {
            tracing::error!("recovery: storage corruption: {line}");
        }
        metrics::counter!("sluice_storage_corrupt_regions_total")
            .increment(report.corrupt.len() as u64);
        let first_seg = report.last_segment.map(|s| s + 1).unwrap_or(1);
        let spare = (opts.spare_after_bytes > 0).then_some(spare::SpareRule {
            min_free_bytes: opts.min_free_bytes,
            after: opts.spare_after_bytes,
        });
        let log = Log::start(&log_dir, first_seg, opts.segment_bytes, spare)?;
        let history_max_bytes = opts.history_max_bytes;
        let store = EmbeddedStore {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
            log,
            opts,
            space: Mutex::new((None, u64::MAX)),
            recovery_problems: problems,
            runtime_problems: Mutex::new(Vec::new()),
            bytes_on_disk: AtomicU64::new(report.bytes),
            last_compaction: std::sync::atomic::AtomicI64::new(0),
            meta: side::Meta::open(dir)?,
            archive: side::Archive::open(dir)?,
            history: history::History::open(dir, history_max_bytes)?,
            receipt_key: side::receipt_key(dir)?,
            catalog: Mutex::new(catalog),
            _lock: lock,
        };
        Ok((store, report))
    }

    /// Add a new queue: durable in the catalog first, then in the index.
    fn create_locked(
        &self,
        st: &mut State,
        name: &str,
        config: QueueConfig,
        now: Millis,
    ) -> Result<QueueInfo> {
        if st.queues.len() >= self.opts.max_queues {
            return Err(EngineError::TooManyQueues {
                limit: self.opts.max_queues,
            });
        }
        let id = st.next_queue_id;
        st.next_queue_id = id
            .checked_add(1)
            .ok_or_else(|| EngineError::Storage("queue ids are exhausted".into()))?;
        let info = QueueInfo {
            name: name.to_string(),
            config,
            created_at: now,
            updated_at: now,
        };
        self.log_change(
            st,
            &catalog::Change::Put(Box::new(catalog::CatalogQueue {
                id,
                info: info.clone(),
            })),
        )?;
        st.names.insert(name.to_string(), id);
        st.queues.insert(id, QState::new(id, info.clone()));
        Ok(info)
    }

    /// Make a queue change durable in the catalog (before the index shows it).
    fn log_change(&self, st: &State, change: &catalog::Change) -> Result<()> {
        self.catalog
            .lock()
            .record(change, st.queues.len(), || st.catalog())
    }

    fn qid(st: &State, name: &str) -> Result<u32> {
        st.names
            .get(name)
            .copied()
            .ok_or_else(|| EngineError::QueueNotFound(name.to_string()))
    }

    fn check_writable(&self) -> Result<()> {
        match self.log.failure() {
            Some(e) => Err(EngineError::StorageUnavailable(e)),
            None => Ok(()),
        }
    }

    /// Read the stored body of one picked message (its record is durable). The outer error is
    /// an I/O failure; the inner one says the record on disk is damaged (checksum or content).
    fn load_one(&self, p: Picked) -> Result<std::result::Result<Message, String>> {
        let frame = match self.log.read(p.entry.loc) {
            Ok(f) => f,
            // Compaction may have copied the message forward and removed its old segment
            // between the pick (under the state lock) and this read (after the sync): read
            // it where the index says it is now.
            Err(e) => match self.current_loc(p.entry.id()) {
                Some(loc) if loc != p.entry.loc => self.log.read(loc)?,
                _ => return Err(e),
            },
        };
        let payload = match record::read_frame(&frame) {
            record::Frame::Good(payload, _) => payload,
            other => {
                return Ok(Err(format!(
                    "message {} is corrupt on disk (segment {}, offset {}: {})",
                    MessageId(p.entry.id()),
                    p.entry.loc.seg,
                    p.entry.loc.off,
                    match other {
                        record::Frame::Corrupt(why) => why,
                        _ => "short frame",
                    }
                )))
            }
        };
        Ok(match record::decode(payload) {
            Ok(Record::Publish(rec)) if rec.id == p.entry.id() => Ok(Message {
                id: MessageId(rec.id),
                body: rec.body.to_vec(),
                attributes: rec
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                enqueued_at: p.entry.enqueued_at,
                visible_at: p.visible_at,
                receive_count: p.entry.receive_count,
                first_received_at: (p.entry.first_received_at != 0)
                    .then_some(p.entry.first_received_at),
                dead_letter_source: p.source_name,
                state: p.state,
                group: (!rec.group.is_empty()).then(|| rec.group.to_string()),
                dedup_id: (!rec.dedup.is_empty()).then(|| rec.dedup.to_string()),
                priority: p.entry.priority,
                expires_at: (p.entry.expires_at != 0).then_some(p.entry.expires_at),
            }),
            _ => Err(format!(
                "message {} does not match its record on disk (segment {}, offset {})",
                MessageId(p.entry.id()),
                p.entry.loc.seg,
                p.entry.loc.off
            )),
        })
    }

    /// Remember a storage problem for `/v1/server` (the newest 100) and log it.
    fn report_problem(&self, line: String) {
        tracing::error!("storage corruption: {line}");
        let mut p = self.runtime_problems.lock();
        if p.len() >= 100 {
            p.remove(0);
        }
        p.push(line);
    }

    fn source_name(st: &State, e: &Entry) -> Option<String> {
        (e.source != 0).then(|| {
            st.queues
                .get(&e.source)
                .map(|q| q.info.name.clone())
                .unwrap_or_else(|| format!("(deleted queue #{})", e.source))
        })
    }
}

/// `--min-free-bytes` when not set: 64 MiB.
pub const MIN_FREE_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

fn lock_exclusive(f: &File, dir: &Path) -> Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(EngineError::StorageUnavailable(format!(
            "data directory {} is in use by another sluice process",
            dir.display()
        )));
    }
    Ok(())
}
