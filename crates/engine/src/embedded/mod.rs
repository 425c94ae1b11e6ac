//! The embedded backend: one data directory, one process.
//!
//! ```text
//! DATA_DIR/queues.json          the queue catalog (catalog.rs)
//! DATA_DIR/log/NNNN….seg        the append-only log segments (log.rs, record.rs)
//! DATA_DIR/meta.json            small settings: subscriptions, schedules (side.rs)
//! DATA_DIR/archive.bin          outcomes of finished timers, 17 bytes each (side.rs)
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

mod catalog;
mod log;
pub mod record;
mod side;
mod state;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::limits;
use crate::model::{
    message_size, Delivery, Message, MessageId, MessageState, NewMessage, Placement, QueueConfig,
    QueueInfo, QueueStats, Receipt, ReceiptResult,
};
use crate::store::{Store, StoreInfo};

use self::log::{Append, Loc, Log};
use self::record::{PublishRec, Record};
use self::state::{Entry, Leased, QState, State};

pub use self::state::RecoveryReport;

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
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_queues: 10_000,
            segment_bytes: log::SEGMENT_BYTES,
            compact_interval_ms: 30_000,
            compact_max_live: 10_000,
            min_free_bytes: MIN_FREE_BYTES_DEFAULT,
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
        let catalog = catalog::load(dir)?;
        let log_dir = dir.join("log");
        let (state, report) = state::replay(&catalog, &log_dir, now)?;
        for line in &report.dropped {
            tracing::warn!("recovery: {line}");
        }
        for line in &report.corrupt {
            tracing::error!("recovery: storage corruption: {line}");
        }
        metrics::counter!("sluice_storage_corrupt_regions_total")
            .increment(report.corrupt.len() as u64);
        let first_seg = report.last_segment.map(|s| s + 1).unwrap_or(1);
        let log = Log::start(&log_dir, first_seg, opts.segment_bytes)?;
        let store = EmbeddedStore {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
            log,
            opts,
            space: Mutex::new((None, u64::MAX)),
            recovery_problems: report.corrupt.clone(),
            runtime_problems: Mutex::new(Vec::new()),
            bytes_on_disk: AtomicU64::new(report.bytes),
            last_compaction: std::sync::atomic::AtomicI64::new(0),
            meta: side::Meta::open(dir)?,
            archive: side::Archive::open(dir)?,
            _lock: lock,
        };
        Ok((store, report))
    }

    /// Add a new queue to the index (the caller saves the catalog).
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
        st.next_queue_id += 1;
        let info = QueueInfo {
            name: name.to_string(),
            config,
            created_at: now,
            updated_at: now,
        };
        st.names.insert(name.to_string(), id);
        st.queues.insert(id, QState::new(id, info.clone()));
        Ok(info)
    }

    /// Compaction: when the oldest segment that still holds live messages holds only a few and
    /// keeps later, dead segments from being deleted, copy those messages forward so the whole
    /// prefix can go. Finding them scans the index, so it runs at most every
    /// `compact_interval_ms`.
    fn compact(&self, st: &mut State, ap: &mut Append<'_>, now: Millis) {
        let last = self.last_compaction.load(Ordering::Relaxed);
        if now - last < self.opts.compact_interval_ms {
            return;
        }
        self.last_compaction.store(now, Ordering::Relaxed);
        // Not `self.log.active_segment()`: `ap` holds the log's pending lock.
        let active = ap.segment();
        let Some((&oldest, &live)) = st.seg_live.iter().find(|(_, &n)| n > 0) else {
            return;
        };
        if live > self.opts.compact_max_live || oldest + 1 >= active {
            return;
        }
        let mut moved = Vec::new();
        for q in st.queues.values_mut() {
            let qid = q.id;
            for e in q.ready.iter_mut().filter(|e| e.loc.seg == oldest) {
                moved.extend(relocate(e, qid, 0, &self.log, ap));
            }
            for ((at, _), e) in q.delayed.iter_mut().filter(|(_, e)| e.loc.seg == oldest) {
                moved.extend(relocate(e, qid, *at, &self.log, ap));
            }
            for l in q
                .inflight
                .values_mut()
                .filter(|l| l.entry.loc.seg == oldest)
            {
                moved.extend(relocate(&mut l.entry, qid, 0, &self.log, ap));
            }
        }
        for (from, to) in &moved {
            if let Some(n) = st.seg_live.get_mut(from) {
                *n = n.saturating_sub(1);
            }
            *st.seg_live.entry(*to).or_default() += 1;
        }
        if !moved.is_empty() {
            tracing::debug!(
                segment = oldest,
                messages = moved.len(),
                "compacted a log segment"
            );
        }
    }

    /// Where message `id` is stored now, wherever it is in the index (a slow scan, for the rare
    /// read that finds its segment gone).
    fn current_loc(&self, id: u128) -> Option<Loc> {
        let st = self.state.lock();
        st.queues.values().find_map(|q| {
            q.inflight
                .get(&id)
                .map(|l| l.entry.loc)
                .or_else(|| q.ready.iter().find(|e| e.id() == id).map(|e| e.loc))
                .or_else(|| q.delayed.values().find(|e| e.id() == id).map(|e| e.loc))
        })
    }

    fn save_catalog(&self, st: &State) -> Result<()> {
        catalog::save(&self.dir, &st.catalog())
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

    /// Refuse new data while the disk is nearly full, before anything changes: what is stored
    /// stays readable and acknowledgeable, and the reserve leaves room for acks, receives and
    /// compaction. The free space is read at most every 50 ms.
    fn check_space(&self) -> Result<()> {
        let reserve = self.opts.min_free_bytes;
        if reserve == 0 {
            return Ok(());
        }
        let free = {
            let mut s = self.space.lock();
            let stale = match s.0 {
                Some(at) => at.elapsed() >= std::time::Duration::from_millis(50),
                None => true,
            };
            if stale {
                s.1 = free_bytes(&self.dir).unwrap_or(u64::MAX);
                s.0 = Some(std::time::Instant::now());
            }
            s.1
        };
        if free < reserve {
            metrics::counter!("sluice_storage_full_refusals_total").increment(1);
            return Err(EngineError::StorageFull { free, reserve });
        }
        Ok(())
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

    /// Messages whose records turned out damaged when a receive read them cannot be delivered:
    /// take them out of their queue (an Ack record, so they stay out) and report each. The
    /// rest of the queue, and every other queue, go on.
    fn quarantine(&self, queue: &str, bad: Vec<(Entry, String)>) {
        {
            let mut st = self.state.lock();
            let Some(qid) = st.names.get(queue).copied() else {
                return;
            };
            let mut ap = self.log.begin();
            let mut gone = Vec::new();
            if let Some(q) = st.queues.get_mut(&qid) {
                for (e, _) in &bad {
                    let Some(l) = q.inflight.get(&e.id()).copied() else {
                        continue;
                    };
                    if l.entry.nonce != e.nonce {
                        continue;
                    }
                    take_lease(q, &l);
                    ap.push(32, |buf| {
                        Record::Ack {
                            queue: qid,
                            id: e.id(),
                        }
                        .encode_frame(buf)
                    });
                    gone.push(l.entry);
                }
            }
            for e in &gone {
                st.removed(e);
            }
            ap.finish();
        }
        for (_, why) in bad {
            metrics::counter!("sluice_storage_corrupt_messages_total").increment(1);
            self.report_problem(format!(
                "queue {queue}: {why}; the message was taken out of the queue"
            ));
        }
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

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then(|| (st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

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

/// Copy one live message forward (a Relocate record with its whole state) and point its entry
/// at the copy. Returns the old and new locations, or None if the old record cannot be read.
fn relocate(
    e: &mut Entry,
    qid: u32,
    visible_at: i64,
    log: &Log,
    ap: &mut Append<'_>,
) -> Option<(u32, u32)> {
    let frame = log.read(e.loc).ok()?;
    let record::Frame::Good(payload, _) = record::read_frame(&frame) else {
        return None;
    };
    let Ok(Record::Publish(old)) = record::decode(payload) else {
        return None;
    };
    let copy = Record::Publish(PublishRec {
        queue: qid,
        id: e.id(),
        enqueued_at: e.enqueued_at,
        visible_at,
        receive_count: e.receive_count,
        nonce: e.nonce,
        first_received_at: e.first_received_at,
        source: e.source,
        group: old.group,
        dedup: old.dedup,
        attributes: old.attributes,
        body: old.body,
        relocated: true,
    });
    let from = e.loc.seg;
    e.loc = ap.push(frame.len() + 16, |buf| copy.encode_frame(buf));
    Some((from, e.loc.seg))
}

/// Housekeeping of one queue at `now`: due delays become ready, expired leases return (or go to
/// the dead-letter queue once over `max_receives`). Returns whether anything became ready.
fn maintain(st: &mut State, qid: u32, now: Millis, ap: &mut Append<'_>) -> bool {
    let Some(q) = st.queues.get_mut(&qid) else {
        return false;
    };
    let mut became_ready = false;
    while let Some((&(at, id), _)) = q.delayed.first_key_value() {
        if at > now {
            break;
        }
        let e = q.delayed.remove(&(at, id)).expect("present");
        if q.front_when_due.remove(&id) && !q.fifo {
            q.ready.push_front(e);
        } else {
            q.put_back(e);
        }
        became_ready = true;
    }
    let mut expired: Vec<Entry> = Vec::new();
    while let Some(&(at, id)) = q.leases.first() {
        if at > now {
            break;
        }
        q.leases.pop_first();
        if let Some(l) = q.inflight.remove(&id) {
            q.unlock_group(l.entry.group);
            expired.push(l.entry);
        }
    }
    if expired.is_empty() {
        return became_ready;
    }
    q.stats.visibility_timeouts += expired.len() as u64;
    for e in expired {
        if !dead_letter_if_over_limit(st, qid, e, ap) {
            st.queues.get_mut(&qid).expect("queue").put_back(e);
            became_ready = true;
        }
    }
    became_ready
}

/// The dead-letter rule: a message returning to its queue after `max_receives` receives moves to
/// the queue's dead-letter queue instead. Returns true if it moved.
fn dead_letter_if_over_limit(st: &mut State, qid: u32, mut e: Entry, ap: &mut Append<'_>) -> bool {
    let q = &st.queues[&qid];
    let (Some(max), Some(dlq_name)) =
        (q.info.config.max_receives, &q.info.config.dead_letter_queue)
    else {
        return false;
    };
    if e.receive_count < max {
        return false;
    }
    let Some(&dlq) = st.names.get(dlq_name) else {
        return false;
    };
    ap.push(64, |buf| {
        Record::Move {
            queue: qid,
            id: e.id(),
            to: dlq,
            source: qid,
            reset: false,
        }
        .encode_frame(buf)
    });
    if e.source != 0 {
        if let Some(old) = st.queues.get_mut(&e.source) {
            old.stats.dead_lettered = old.stats.dead_lettered.saturating_sub(1);
        }
    }
    e.source = qid;
    let src = st.queues.get_mut(&qid).expect("queue");
    src.stats.dead_lettered += 1;
    src.stats.dead_lettered_total += 1;
    st.queues.get_mut(&dlq).expect("dlq").put_back(e);
    true
}

/// Drop ready messages at the head of the queue that outlived the retention period.
fn enforce_retention(st: &mut State, qid: u32, now: Millis) {
    let Some(q) = st.queues.get_mut(&qid) else {
        return;
    };
    let keep_ms = q.info.config.retention_seconds as i64 * 1000;
    let mut dropped = Vec::new();
    while let Some(e) = q.ready.front() {
        if e.enqueued_at + keep_ms > now {
            break;
        }
        dropped.push(q.ready.pop_front().expect("front"));
    }
    q.stats.expired += dropped.len() as u64;
    for e in &dropped {
        st.removed(e);
    }
}

enum Lookup {
    Ok(Leased),
    Err(EngineError),
}

fn lookup_lease(q: &QState, r: &Receipt, now: Millis) -> Lookup {
    match q.inflight.get(&r.id.0) {
        None => Lookup::Err(EngineError::MessageGone),
        Some(l) if l.entry.nonce != r.nonce => Lookup::Err(EngineError::StaleReceipt),
        Some(l) if l.lease_until <= now => Lookup::Err(EngineError::StaleReceipt),
        Some(l) => Lookup::Ok(*l),
    }
}

fn take_lease(q: &mut QState, l: &Leased) {
    q.inflight.remove(&l.entry.id());
    q.leases.remove(&(l.lease_until, l.entry.id()));
    q.unlock_group(l.entry.group);
}

/// Take the next message a receive may have: the head of the ready list, or on a FIFO queue
/// the first message whose group is not held by another consumer (`mine`: groups this receive
/// already holds, which it may keep taking from, in order). The scan is bounded.
fn next_ready(q: &mut QState, mine: &mut Vec<u32>) -> Option<Entry> {
    if !q.fifo {
        return q.ready.pop_front();
    }
    const SCAN_MAX: usize = 10_000;
    let at = q.ready.iter().take(SCAN_MAX).position(|e| {
        e.group == 0 || !q.locked.contains_key(&e.group) || mine.contains(&e.group)
    })?;
    let e = q.ready.remove(at)?;
    if !mine.contains(&e.group) {
        mine.push(e.group);
    }
    Some(e)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn put_queue(
        &self,
        name: &str,
        config: QueueConfig,
        now: Millis,
    ) -> Result<(QueueInfo, bool)> {
        self.check_writable()?;
        let mut st = self.state.lock();
        if !st.names.contains_key(name) {
            self.check_space()?;
        }
        let created;
        let info = match st.names.get(name).copied() {
            Some(id) => {
                let q = st.queues.get_mut(&id).expect("named queue exists");
                if q.info.config != config {
                    q.info.config = config;
                    q.info.updated_at = now;
                }
                created = false;
                q.info.clone()
            }
            None => {
                created = true;
                self.create_locked(&mut st, name, config, now)?
            }
        };
        self.save_catalog(&st)?;
        Ok((info, created))
    }

    async fn ensure_queue(
        &self,
        name: &str,
        config: QueueConfig,
        now: Millis,
    ) -> Result<(QueueInfo, bool)> {
        // Checked and created under one lock: a racing creator never overwrites a config.
        let mut st = self.state.lock();
        if let Some(id) = st.names.get(name) {
            return Ok((st.queues[id].info.clone(), false));
        }
        let info = self.create_locked(&mut st, name, config, now)?;
        self.save_catalog(&st)?;
        Ok((info, true))
    }

    async fn get_queue(&self, name: &str) -> Result<Option<QueueInfo>> {
        let st = self.state.lock();
        Ok(st.names.get(name).map(|id| st.queues[id].info.clone()))
    }

    async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        let st = self.state.lock();
        let mut v: Vec<_> = st.queues.values().map(|q| q.info.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    async fn delete_queue(&self, name: &str) -> Result<bool> {
        self.check_writable()?;
        let mut st = self.state.lock();
        let Some(id) = st.names.remove(name) else {
            return Ok(false);
        };
        let q = st.queues.remove(&id).expect("named queue exists");
        for e in q
            .ready
            .iter()
            .chain(q.delayed.values())
            .chain(q.inflight.values().map(|l| &l.entry))
        {
            st.removed(e);
        }
        self.save_catalog(&st)?;
        Ok(true)
    }

    async fn purge_queue(&self, name: &str, _now: Millis) -> Result<u64> {
        self.check_writable()?;
        let lsn;
        let n;
        {
            let mut st = self.state.lock();
            let id = Self::qid(&st, name)?;
            let q = st.queues.get_mut(&id).expect("queue");
            let mut gone: Vec<Entry> = q.ready.drain(..).collect();
            gone.extend(std::mem::take(&mut q.delayed).into_values());
            gone.extend(
                std::mem::take(&mut q.inflight)
                    .into_values()
                    .map(|l| l.entry),
            );
            q.leases.clear();
            q.locked.clear();
            q.front_when_due.clear();
            n = gone.len() as u64;
            for e in &gone {
                st.removed(e);
            }
            let mut ap = self.log.begin();
            ap.push(16, |buf| Record::Purge { queue: id }.encode_frame(buf));
            lsn = ap.finish();
        }
        self.log.wait_durable(lsn).await?;
        Ok(n)
    }

    async fn publish(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
        now: Millis,
    ) -> Result<Vec<MessageId>> {
        self.check_writable()?;
        self.check_space()?;
        let (lsn, ids) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let config = &st.queues[&qid].info.config;
            let limit = config.max_message_bytes as usize;
            let default_delay = config.delay_seconds as u64 * 1000;
            for m in &messages {
                let size = message_size(&m.body, &m.attributes);
                if size > limit {
                    return Err(EngineError::MessageTooLarge { size, limit });
                }
            }
            let q = st.queues.get_mut(&qid).expect("queue");
            let mut ap = self.log.begin();
            let mut placed = Vec::with_capacity(messages.len());
            let mut ids = Vec::with_capacity(messages.len());
            for m in &messages {
                // FIFO deduplication: a repeat inside the window is accepted but not stored.
                if let Some(d) = &m.dedup_id {
                    match q.dedup.get(d) {
                        Some(&(until, earlier)) if until > now => {
                            ids.push(MessageId(earlier));
                            continue;
                        }
                        _ => {
                            q.dedup
                                .insert(d.clone(), (now + limits::DEDUP_WINDOW_MS, m.id.0));
                        }
                    }
                }
                let visible_at = m.enqueued_at + m.delay_ms.unwrap_or(default_delay) as i64;
                let rec = Record::Publish(PublishRec {
                    queue: qid,
                    id: m.id.0,
                    enqueued_at: m.enqueued_at,
                    visible_at,
                    receive_count: 0,
                    nonce: 0,
                    first_received_at: 0,
                    source: 0,
                    group: m.group.as_deref().unwrap_or_default(),
                    dedup: m.dedup_id.as_deref().unwrap_or_default(),
                    attributes: m
                        .attributes
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                    body: &m.body,
                    relocated: false,
                });
                let est = 96
                    + m.body.len()
                    + m.group.as_ref().map_or(0, |g| g.len())
                    + m.dedup_id.as_ref().map_or(0, |g| g.len())
                    + m.attributes
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 8)
                        .sum::<usize>();
                let loc = ap.push(est, |buf| rec.encode_frame(buf));
                let mut e = Entry::new(m.id.0, loc, m.enqueued_at);
                if let Some(g) = &m.group {
                    e.group = crate::model::group_tag(g);
                }
                placed.push((e, visible_at));
                ids.push(m.id);
            }
            let lsn = ap.finish();
            q.stats.published += placed.len() as u64;
            for (e, visible_at) in &placed {
                if *visible_at > now {
                    q.delayed.insert((*visible_at, e.id()), *e);
                } else {
                    q.put_back(*e);
                }
            }
            for (e, _) in &placed {
                st.add_live(e.loc);
            }
            (lsn, ids)
        };
        self.log.wait_durable(lsn).await?;
        Ok(ids)
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_ms: u64,
        now: Millis,
    ) -> Result<Vec<Delivery>> {
        self.check_writable()?;
        let (lsn, picked, leases) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            maintain(&mut st, qid, now, &mut ap);
            enforce_retention(&mut st, qid, now);
            let q = st.queues.get_mut(&qid).expect("queue");
            let lease_until = now + visibility_ms as i64;
            let mut taken = Vec::new();
            let mut mine = Vec::new();
            while taken.len() < max {
                let Some(mut e) = next_ready(q, &mut mine) else {
                    break;
                };
                e.receive_count += 1;
                e.nonce = e.nonce.wrapping_add(1);
                if e.first_received_at == 0 {
                    e.first_received_at = now;
                }
                ap.push(48, |buf| {
                    Record::Receive {
                        queue: qid,
                        id: e.id(),
                        receive_count: e.receive_count,
                        nonce: e.nonce,
                        first_received_at: e.first_received_at,
                    }
                    .encode_frame(buf)
                });
                q.inflight.insert(
                    e.id(),
                    Leased {
                        lease_until,
                        entry: e,
                    },
                );
                q.leases.insert((lease_until, e.id()));
                q.lock_group(e.group);
                taken.push(e);
            }
            q.stats.received += taken.len() as u64;
            let lsn = ap.finish();
            let picked: Vec<Picked> = taken
                .iter()
                .map(|e| Picked {
                    entry: *e,
                    state: MessageState::InFlight,
                    visible_at: lease_until,
                    source_name: Self::source_name(&st, e),
                })
                .collect();
            (lsn, picked, lease_until)
        };
        self.log.wait_durable(lsn).await?;
        let mut out = Vec::with_capacity(picked.len());
        let mut bad = Vec::new();
        for p in picked {
            let entry = p.entry;
            match self.load_one(p)? {
                Ok(m) => out.push(Delivery {
                    receipt: Receipt {
                        id: m.id,
                        nonce: entry.nonce,
                    },
                    lease_until: leases,
                    message: m,
                }),
                Err(why) => bad.push((entry, why)),
            }
        }
        if !bad.is_empty() {
            self.quarantine(queue, bad);
        }
        Ok(out)
    }

    async fn ack(
        &self,
        queue: &str,
        receipts: &[Receipt],
        now: Millis,
    ) -> Result<Vec<ReceiptResult>> {
        self.check_writable()?;
        let (lsn, results) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            let mut results = Vec::with_capacity(receipts.len());
            let mut gone = Vec::new();
            let q = st.queues.get_mut(&qid).expect("queue");
            for r in receipts {
                match lookup_lease(q, r, now) {
                    Lookup::Err(e) => results.push(Err(e)),
                    Lookup::Ok(l) => {
                        take_lease(q, &l);
                        ap.push(32, |buf| {
                            Record::Ack {
                                queue: qid,
                                id: r.id.0,
                            }
                            .encode_frame(buf)
                        });
                        gone.push(l.entry);
                        results.push(Ok(()));
                    }
                }
            }
            q.stats.acked += gone.len() as u64;
            for e in &gone {
                st.removed(e);
            }
            (ap.finish(), results)
        };
        self.log.wait_durable(lsn).await?;
        Ok(results)
    }

    async fn nack(
        &self,
        queue: &str,
        receipts: &[Receipt],
        delay_ms: u64,
        placement: Placement,
        now: Millis,
    ) -> Result<Vec<ReceiptResult>> {
        self.check_writable()?;
        let (lsn, results) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            let mut results = Vec::with_capacity(receipts.len());
            for r in receipts {
                let q = st.queues.get_mut(&qid).expect("queue");
                let l = match lookup_lease(q, r, now) {
                    Lookup::Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                    Lookup::Ok(l) => l,
                };
                take_lease(q, &l);
                q.stats.nacked += 1;
                results.push(Ok(()));
                if dead_letter_if_over_limit(&mut st, qid, l.entry, &mut ap) {
                    continue;
                }
                let visible_at = now + delay_ms as i64;
                let front = placement == Placement::Front;
                ap.push(48, |buf| {
                    Record::Release {
                        queue: qid,
                        id: r.id.0,
                        visible_at,
                        front,
                    }
                    .encode_frame(buf)
                });
                let q = st.queues.get_mut(&qid).expect("queue");
                if delay_ms > 0 {
                    q.delayed.insert((visible_at, l.entry.id()), l.entry);
                    if front {
                        q.front_when_due.insert(l.entry.id());
                    }
                } else if front && !q.fifo {
                    q.ready.push_front(l.entry);
                } else {
                    q.put_back(l.entry);
                }
            }
            (ap.finish(), results)
        };
        self.log.wait_durable(lsn).await?;
        Ok(results)
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: Receipt,
        timeout_ms: u64,
        now: Millis,
    ) -> Result<Millis> {
        let mut st = self.state.lock();
        let qid = Self::qid(&st, queue)?;
        let q = st.queues.get_mut(&qid).expect("queue");
        let l = match lookup_lease(q, &receipt, now) {
            Lookup::Err(e) => return Err(e),
            Lookup::Ok(l) => l,
        };
        // Leases are not logged (a restart makes every leased message visible), so this needs
        // no sync.
        take_lease(q, &l);
        let lease_until = now + timeout_ms as i64;
        q.inflight.insert(
            l.entry.id(),
            Leased {
                lease_until,
                entry: l.entry,
            },
        );
        q.leases.insert((lease_until, l.entry.id()));
        q.lock_group(l.entry.group);
        Ok(lease_until)
    }

    async fn peek(&self, queue: &str, limit: usize, now: Millis) -> Result<Vec<Message>> {
        let (lsn, picked) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            maintain(&mut st, qid, now, &mut ap);
            ap.finish();
            let q = &st.queues[&qid];
            let mut picked = Vec::new();
            let take = |e: &Entry, state, visible_at| Picked {
                entry: *e,
                state,
                visible_at,
                source_name: Self::source_name(&st, e),
            };
            for e in q.ready.iter().take(limit) {
                picked.push(take(e, MessageState::Ready, now));
            }
            for ((at, _), e) in q.delayed.iter().take(limit - picked.len()) {
                picked.push(take(e, MessageState::Delayed, *at));
            }
            for (at, id) in q.leases.iter().take(limit - picked.len()) {
                picked.push(take(&q.inflight[id].entry, MessageState::InFlight, *at));
            }
            (self.log.appended(), picked)
        };
        self.log.wait_durable(lsn).await?;
        // Peeking changes nothing: a damaged message is left out of the answer and reported;
        // the next receive that reaches it takes it out of the queue.
        let mut out = Vec::with_capacity(picked.len());
        for p in picked {
            match self.load_one(p)? {
                Ok(m) => out.push(m),
                Err(why) => {
                    metrics::counter!("sluice_storage_corrupt_messages_total").increment(1);
                    tracing::error!("storage corruption: queue {queue}: {why} (seen by a peek)");
                }
            }
        }
        Ok(out)
    }

    async fn redrive(
        &self,
        queue: &str,
        max: usize,
        only: Option<&std::collections::HashSet<MessageId>>,
        now: Millis,
    ) -> Result<u64> {
        self.check_writable()?;
        let (lsn, moved) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            maintain(&mut st, qid, now, &mut ap);
            let holds_dead_letters = st.queues[&qid].ready.iter().any(|e| e.source != 0)
                || st.queues[&qid].delayed.values().any(|e| e.source != 0);
            // Which queue to take dead letters from, and whose dead letters to take.
            let (from, only_source) = if holds_dead_letters {
                (qid, None)
            } else {
                match st.queues[&qid]
                    .info
                    .config
                    .dead_letter_queue
                    .as_ref()
                    .and_then(|n| st.names.get(n))
                {
                    Some(&dlq) => {
                        maintain(&mut st, dlq, now, &mut ap);
                        (dlq, Some(qid))
                    }
                    None => (qid, None),
                }
            };
            let live: std::collections::HashSet<u32> = st.queues.keys().copied().collect();
            let wanted = |e: &Entry| {
                e.source != 0
                    && live.contains(&e.source)
                    && only_source.is_none_or(|s| s == e.source)
                    && only.is_none_or(|o| o.contains(&MessageId(e.id())))
            };
            let q = st.queues.get_mut(&from).expect("queue");
            let mut going: Vec<Entry> = Vec::new();
            let mut keep = std::collections::VecDeque::with_capacity(q.ready.len());
            for e in q.ready.drain(..) {
                if going.len() < max && wanted(&e) {
                    going.push(e);
                } else {
                    keep.push_back(e);
                }
            }
            q.ready = keep;
            let delayed_keys: Vec<(i64, u128)> = q
                .delayed
                .iter()
                .filter(|(_, e)| wanted(e))
                .map(|(k, _)| *k)
                .take(max - going.len())
                .collect();
            for k in delayed_keys {
                going.push(q.delayed.remove(&k).expect("present"));
            }
            let moved = going.len() as u64;
            for mut e in going {
                let to = e.source;
                ap.push(64, |buf| {
                    Record::Move {
                        queue: from,
                        id: e.id(),
                        to,
                        source: 0,
                        reset: true,
                    }
                    .encode_frame(buf)
                });
                e.source = 0;
                e.receive_count = 0;
                let home = st.queues.get_mut(&to).expect("live source");
                home.stats.dead_lettered = home.stats.dead_lettered.saturating_sub(1);
                home.stats.redriven += 1;
                home.put_back(e);
            }
            (ap.finish(), moved)
        };
        self.log.wait_durable(lsn).await?;
        Ok(moved)
    }

    async fn stats(&self, queue: &str, now: Millis) -> Result<QueueStats> {
        let (lsn, stats) = {
            let mut st = self.state.lock();
            let qid = Self::qid(&st, queue)?;
            let mut ap = self.log.begin();
            maintain(&mut st, qid, now, &mut ap);
            let lsn = ap.finish();
            let q = &st.queues[&qid];
            let mut s = q.stats.clone();
            s.ready = q.ready.len() as u64;
            s.delayed = q.delayed.len() as u64;
            s.in_flight = q.inflight.len() as u64;
            s.oldest_ready_age_seconds = q
                .ready
                .front()
                .map(|e| ((now - e.enqueued_at).max(0) / 1000) as u64)
                .unwrap_or(0);
            (lsn, s)
        };
        self.log.wait_durable(lsn).await?;
        Ok(stats)
    }

    async fn next_due(&self, queue: &str, _now: Millis) -> Result<Option<Millis>> {
        let st = self.state.lock();
        let qid = Self::qid(&st, queue)?;
        Ok(st.queues[&qid].next_due())
    }

    async fn tick(&self, now: Millis) -> Result<Vec<String>> {
        if self.log.failure().is_some() {
            return Ok(Vec::new());
        }
        let (lsn, woke, dead_segments) = {
            let mut st = self.state.lock();
            let mut ap = self.log.begin();
            let ids: Vec<u32> = st.queues.keys().copied().collect();
            let mut woke = Vec::new();
            for qid in ids {
                if maintain(&mut st, qid, now, &mut ap) {
                    woke.push(st.queues[&qid].info.name.clone());
                }
                enforce_retention(&mut st, qid, now);
                let q = st.queues.get_mut(&qid).expect("queue");
                if !q.dedup.is_empty() {
                    q.dedup.retain(|_, (until, _)| *until > now);
                }
            }
            self.compact(&mut st, &mut ap, now);
            let lsn = ap.finish();
            // Prefix deletion: the oldest segments with nothing live, never the active one.
            let active = self.log.active_segment();
            let mut dead = Vec::new();
            for (&seg, &live) in st.seg_live.iter() {
                if seg >= active || live > 0 {
                    break;
                }
                dead.push(seg);
            }
            for s in &dead {
                st.seg_live.remove(s);
            }
            (lsn, woke, dead)
        };
        self.log.wait_durable(lsn).await?;
        // Segments below the first live one that the index never saw (e.g. all of their
        // messages were acked before a restart) are also garbage.
        let first_live = {
            let st = self.state.lock();
            st.seg_live
                .iter()
                .find(|(_, &n)| n > 0)
                .map(|(&s, _)| s)
                .unwrap_or(u32::MAX)
        };
        let active = self.log.active_segment();
        let mut removed = 0u64;
        if let Ok(rd) = std::fs::read_dir(self.dir.join("log")) {
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(seg) = name
                    .to_string_lossy()
                    .strip_suffix(".seg")
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                if seg < first_live.min(active) || dead_segments.contains(&seg) {
                    self.log.remove_segment(seg)?;
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::debug!(removed, "reclaimed log segments");
        }
        let mut bytes = 0;
        if let Ok(rd) = std::fs::read_dir(self.dir.join("log")) {
            for e in rd.flatten() {
                // Allocated bytes: segments are pre-sized sparse files.
                bytes += e
                    .metadata()
                    .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
                    .unwrap_or(0);
            }
        }
        self.bytes_on_disk.store(bytes, Ordering::Relaxed);
        Ok(woke)
    }

    async fn ids(&self, queue: &str) -> Result<Vec<(MessageId, Millis)>> {
        let st = self.state.lock();
        let q = &st.queues[&Self::qid(&st, queue)?];
        let mut v = Vec::with_capacity(q.len());
        v.extend(q.ready.iter().map(|e| (MessageId(e.id()), e.enqueued_at)));
        v.extend(q.delayed.iter().map(|(&(at, id), _)| (MessageId(id), at)));
        v.extend(
            q.inflight
                .iter()
                .map(|(&id, l)| (MessageId(id), l.lease_until)),
        );
        Ok(v)
    }

    async fn meta_put(&self, key: &str, value: Option<String>) -> Result<()> {
        self.check_writable()?;
        self.meta.put(key, value)
    }

    async fn meta_list(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        Ok(self.meta.list(prefix))
    }

    async fn archive_put(&self, entries: &[(MessageId, u8)]) -> Result<()> {
        self.check_writable()?;
        self.archive.put(entries).await
    }

    async fn archive_list(&self) -> Result<Vec<(MessageId, u8)>> {
        self.archive.list()
    }

    fn info(&self) -> StoreInfo {
        let st = self.state.lock();
        StoreInfo {
            backend: "embedded",
            bytes_on_disk: self.bytes_on_disk.load(Ordering::Relaxed),
            messages: st.message_count(),
            healthy: self.log.failure().is_none(),
            problems: self
                .recovery_problems
                .iter()
                .cloned()
                .chain(self.runtime_problems.lock().iter().cloned())
                .chain(
                    self.log
                        .failure()
                        .map(|e| format!("log writes are failing: {e}")),
                )
                .collect(),
        }
    }

    async fn close(&self) -> Result<()> {
        self.log.shutdown();
        Ok(())
    }
}
