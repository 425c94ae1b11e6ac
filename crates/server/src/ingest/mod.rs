//! Folder ingestion (seed 003, wds): files dropped into a watched folder (or uploaded) become
//! messages on a queue, one per row, and the queue's push subscription delivers them.
//!
//! - `watch.rs` finds complete files: notify events plus a periodic rescan, dotfiles and
//!   `*.tmp`/`*.part` ignored, a file written in place taken once its mtime is `settle` old,
//!   a file renamed in taken at once.
//! - `job.rs` reads one file as a stream (parse.rs) and publishes its rows under deterministic
//!   ids (the file's blake3 hash + the row's dedup key) through `Engine::publish_keyed`, which
//!   stores each id once. Progress is checkpointed in the store's settings after the rows are
//!   durable, so a restart resumes the file at its last checkpoint and re-publishing the rows
//!   since then is absorbed by the store's deduplication.
//! - `file.rs` is the per-file record (`FileRecord`, `FileState`) and a file still being written.
//! - This module keeps the per-file records (`GET /v1/ingest`), writes them back to the store
//!   (coalesced, at most every 50 ms), and counts deliveries reported by the push lanes.
//!
//! The HTTP endpoints (`/upload`, `/retry`, `/v1/ingest`) are thin adapters in api/ingest.rs.

mod file;
mod job;
pub mod parse;
mod read;
pub mod upload;
pub(crate) mod watch;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use serde::Serialize;
use sluice_engine::{Delivery, Engine};
use tokio::sync::Notify;

pub use file::{FileRecord, FileState, WaitingFile};
pub use parse::{DedupKey, Format};

/// Settings key prefix of file records: `ingest/{queue}/{file id}`.
const META_PREFIX: &str = "ingest/";
/// Finished file records kept (older ones are forgotten, oldest first).
pub const FINISHED_KEPT: usize = 1000;
/// Attributes every ingested message carries (sent as headers by push subscriptions).
pub const ATTR_FILE: &str = "sluice-ingest-file";
pub const ATTR_LINE: &str = "sluice-ingest-line";
pub const ATTR_ID: &str = "sluice-ingest-id";

/// `--watch DIR=QUEUE[:FORMAT[:DEDUP]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    pub dir: PathBuf,
    pub queue: String,
    pub format: Format,
    pub dedup: DedupKey,
}

impl WatchSpec {
    pub fn parse(s: &str) -> anyhow::Result<WatchSpec> {
        let (dir, rest) = s
            .rsplit_once('=')
            .context("expected DIR=QUEUE[:FORMAT[:DEDUP]]")?;
        if dir.is_empty() {
            anyhow::bail!("the folder is empty; expected DIR=QUEUE[:FORMAT[:DEDUP]]");
        }
        let mut parts = rest.split(':');
        let queue = parts.next().unwrap_or_default();
        sluice_engine::validate_queue_name(queue).map_err(|e| anyhow::anyhow!("{e}"))?;
        let format = match parts.next() {
            None | Some("") => Format::Csv,
            Some(f) => Format::parse(f)
                .with_context(|| format!("format {f:?}: expected csv, jsonl or lines"))?,
        };
        let dedup = match parts.next() {
            None | Some("") => format.default_dedup(),
            Some(d) => DedupKey::parse(d)
                .with_context(|| format!("dedup {d:?}: expected user, row or content"))?,
        };
        if parts.next().is_some() {
            anyhow::bail!("too many parts; expected DIR=QUEUE[:FORMAT[:DEDUP]]");
        }
        dedup.check(format).map_err(|e| anyhow::anyhow!(e))?;
        Ok(WatchSpec {
            dir: PathBuf::from(dir),
            queue: queue.to_string(),
            format,
            dedup,
        })
    }
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub watches: Vec<WatchSpec>,
    pub settle: Duration,
    pub rescan: Duration,
    pub max_upload_bytes: u64,
    /// Folders for files uploaded to queues that no watched folder feeds: `{spool}/{queue}/`.
    pub spool: PathBuf,
}

/// A folder that feeds a queue.
pub(crate) struct Inbox {
    pub dir: PathBuf,
    pub queue: String,
    pub format: Format,
    pub dedup: DedupKey,
    /// A configured watch (false: a spool folder for uploads).
    pub watched: bool,
    pub wake: Notify,
    /// Paths renamed into the folder (complete at once).
    pub instant: Mutex<HashSet<PathBuf>>,
    pub waiting: Mutex<BTreeMap<PathBuf, WaitingFile>>,
}

impl Inbox {
    pub fn work_dir(&self) -> PathBuf {
        self.dir.join(".sluice")
    }
}

pub struct Ingest {
    pub(crate) engine: Arc<Engine>,
    pub(crate) opts: IngestOptions,
    inboxes: Mutex<Vec<Arc<Inbox>>>,
    records: Mutex<BTreeMap<String, FileRecord>>,
    dirty: Mutex<BTreeSet<String>>,
    flush: Notify,
}

/// The `GET /v1/ingest` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestView {
    pub watches: Vec<WatchView>,
    pub waiting: Vec<WaitingFile>,
    pub files: Vec<FileRecord>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WatchView {
    pub dir: String,
    pub queue: String,
    pub format: Format,
    pub dedup: DedupKey,
    pub watched: bool,
}

impl Ingest {
    /// Load the file records and start a worker per folder (and for spool folders that
    /// already exist), plus the checkpoint writer.
    pub async fn start(engine: Arc<Engine>, opts: IngestOptions) -> anyhow::Result<Arc<Ingest>> {
        let mut records = BTreeMap::new();
        for (k, v) in engine.store_meta_list(META_PREFIX).await? {
            match serde_json::from_str::<FileRecord>(&v) {
                Ok(r) => {
                    records.insert(k[META_PREFIX.len()..].to_string(), r);
                }
                Err(e) => {
                    tracing::warn!(key = %k, error = %e, "ignoring an unreadable ingest record")
                }
            }
        }
        let ing = Arc::new(Ingest {
            engine,
            opts,
            inboxes: Mutex::new(Vec::new()),
            records: Mutex::new(records),
            dirty: Mutex::new(BTreeSet::new()),
            flush: Notify::new(),
        });
        for w in ing.opts.watches.clone() {
            let dir = std::path::absolute(&w.dir).unwrap_or(w.dir.clone());
            ing.add_inbox(dir, w.queue, w.format, w.dedup, true);
        }
        if let Ok(rd) = std::fs::read_dir(&ing.opts.spool) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if e.path().is_dir() && sluice_engine::validate_queue_name(&name).is_ok() {
                    ing.spool_inbox(&name);
                }
            }
        }
        let me = ing.clone();
        let mut shutdown = ing.engine.shutdown_signal();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = me.flush.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => { me.flush_dirty().await; return; }
                }
                me.flush_dirty().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Ok(ing)
    }

    fn add_inbox(
        self: &Arc<Self>,
        dir: PathBuf,
        queue: String,
        format: Format,
        dedup: DedupKey,
        watched: bool,
    ) -> Arc<Inbox> {
        let inbox = Arc::new(Inbox {
            dir,
            queue,
            format,
            dedup,
            watched,
            wake: Notify::new(),
            instant: Mutex::new(HashSet::new()),
            waiting: Mutex::new(BTreeMap::new()),
        });
        self.inboxes.lock().push(inbox.clone());
        tokio::spawn(watch::run(self.clone(), inbox.clone()));
        inbox
    }

    /// The folder uploads for `queue` go to: its watched folder, or a spool folder.
    pub(crate) fn inbox_for(self: &Arc<Self>, queue: Option<&str>) -> Option<Arc<Inbox>> {
        let inboxes = self.inboxes.lock();
        match queue {
            None => inboxes.iter().find(|i| i.watched).cloned(),
            Some(q) => inboxes.iter().find(|i| i.queue == q).cloned(),
        }
    }

    pub(crate) fn spool_inbox(self: &Arc<Self>, queue: &str) -> Arc<Inbox> {
        if let Some(i) = self.inbox_for(Some(queue)) {
            return i;
        }
        let dir = self.opts.spool.join(queue);
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        self.add_inbox(
            dir,
            queue.to_string(),
            Format::Csv,
            Format::Csv.default_dedup(),
            false,
        )
    }

    /// Queues fed by ingestion (for `/retry`).
    pub fn queues(&self) -> Vec<String> {
        let mut q: Vec<String> = self
            .inboxes
            .lock()
            .iter()
            .map(|i| i.queue.clone())
            .collect();
        q.sort();
        q.dedup();
        q
    }

    pub async fn view(&self) -> IngestView {
        let inboxes = self.inboxes.lock().clone();
        let records: Vec<FileRecord> = self.records.lock().values().cloned().collect();
        let mut files = Vec::with_capacity(records.len());
        for r in records {
            files.push(self.with_delivered(r).await);
        }
        files.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(a.id.cmp(&b.id)));
        IngestView {
            watches: inboxes
                .iter()
                .map(|i| WatchView {
                    dir: i.dir.display().to_string(),
                    queue: i.queue.clone(),
                    format: i.format,
                    dedup: i.dedup,
                    watched: i.watched,
                })
                .collect(),
            waiting: inboxes
                .iter()
                .flat_map(|i| i.waiting.lock().values().cloned().collect::<Vec<_>>())
                .collect(),
            files,
        }
    }

    /// One file's record by id (the first match over queues).
    pub async fn file(&self, id: &str) -> Option<FileRecord> {
        let r = self.records.lock().values().find(|r| r.id == id).cloned()?;
        Some(self.with_delivered(r).await)
    }

    /// The delivery counts, from the store's tallies of the file's rows: per subscription,
    /// `rows_delivered` (the rows every current subscription delivered) and
    /// `rows_dead_lettered`.
    async fn with_delivered(&self, mut r: FileRecord) -> FileRecord {
        if r.moving {
            r.state = FileState::Reading;
            r.finished_at = None;
        }
        let push = self.engine.push();
        let key = tally_key(&r.id);
        let mut delivered = BTreeMap::new();
        let mut failed = 0;
        for s in push.all().into_iter().filter(|s| s.queue == r.queue) {
            let (d, f) = push.tally(&s.queue, &s.name, &key).await.unwrap_or((0, 0));
            delivered.insert(s.name, d);
            failed += f;
        }
        if !delivered.is_empty() || r.delivered.is_empty() {
            r.rows_delivered = delivered.values().copied().min().unwrap_or(0);
            r.delivered = delivered;
            r.rows_dead_lettered = failed;
        }
        r.rows_delivered = r.rows_delivered.min(r.rows_published);
        r
    }

    pub(crate) fn get(&self, key: &str) -> Option<FileRecord> {
        self.records.lock().get(key).cloned()
    }

    /// Change a record in memory; the checkpoint writer stores it soon.
    pub(crate) fn update(&self, key: &str, f: impl FnOnce(&mut FileRecord)) {
        let mut recs = self.records.lock();
        if let Some(r) = recs.get_mut(key) {
            f(r);
            r.updated_at = self.now_str();
            self.dirty.lock().insert(key.to_string());
            self.flush.notify_one();
        }
    }

    /// Store a record now (durable on return).
    pub(crate) async fn save(&self, mut rec: FileRecord) -> anyhow::Result<()> {
        rec.updated_at = self.now_str();
        let key = rec.key();
        let value = {
            let mut recs = self.records.lock();
            let value = serde_json::to_string(&rec)?;
            recs.insert(key.clone(), rec);
            value
        };
        self.dirty.lock().remove(&key);
        self.engine
            .store_meta_put(&format!("{META_PREFIX}{key}"), Some(value))
            .await?;
        self.prune().await;
        Ok(())
    }

    async fn flush_dirty(&self) {
        let keys: Vec<String> = std::mem::take(&mut *self.dirty.lock())
            .into_iter()
            .collect();
        for key in keys {
            let Some(value) = self
                .records
                .lock()
                .get(&key)
                .map(|r| serde_json::to_string(r).expect("record serializes"))
            else {
                continue;
            };
            if let Err(e) = self
                .engine
                .store_meta_put(&format!("{META_PREFIX}{key}"), Some(value))
                .await
            {
                tracing::warn!(key = %key, error = %e, "could not checkpoint an ingest record; retrying");
                self.dirty.lock().insert(key);
            }
        }
    }

    /// Forget the oldest finished records beyond [`FINISHED_KEPT`].
    async fn prune(&self) {
        let drop: Vec<String> = {
            let recs = self.records.lock();
            let mut finished: Vec<(&String, &FileRecord)> =
                recs.iter().filter(|(_, r)| r.finished()).collect();
            if finished.len() <= FINISHED_KEPT {
                return;
            }
            finished.sort_by(|a, b| a.1.updated_at.cmp(&b.1.updated_at));
            finished[..finished.len() - FINISHED_KEPT]
                .iter()
                .map(|(k, _)| (*k).clone())
                .collect()
        };
        for k in drop {
            if let Some(r) = self.records.lock().get(&k) {
                let (queue, key) = (r.queue.clone(), tally_key(&r.id));
                let push = self.engine.push().clone();
                tokio::spawn(async move {
                    if let Err(e) = push.forget_tally(&queue, &key).await {
                        tracing::warn!(error = %e, "could not forget a finished file's tally");
                    }
                });
            }
            self.records.lock().remove(&k);
            self.dirty.lock().remove(&k);
            let _ = self
                .engine
                .store_meta_put(&format!("{META_PREFIX}{k}"), None)
                .await;
        }
    }

    pub(crate) fn now_str(&self) -> String {
        sluice_engine::rfc3339(self.engine.now())
    }

    /// The push lanes report settled deliveries here: rows by outcome, for `/metrics` (the
    /// counts per file are the store's tallies, see `with_delivered`).
    pub fn count_settled(&self, queue: &str, messages: &[Delivery], delivered: bool) {
        let n = messages
            .iter()
            .filter(|d| d.message.attributes.contains_key(ATTR_ID))
            .count() as u64;
        if n > 0 {
            let outcome = if delivered {
                "delivered"
            } else {
                "dead_lettered"
            };
            metrics::counter!("sluice_ingest_rows_total", "queue" => queue.to_string(), "outcome" => outcome).increment(n);
        }
    }

    /// Redrive the dead letters of every ingestion queue (`/retry`). Returns counts per queue.
    pub async fn retry(&self) -> sluice_engine::Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for q in self.queues() {
            let n = match self.engine.redrive(&q, None).await {
                Ok(n) => n,
                Err(sluice_engine::EngineError::QueueNotFound(_)) => 0,
                Err(e) => return Err(e),
            };
            out.insert(q, n);
        }
        Ok(out)
    }
}

impl crate::delivery::DeliveryObserver for Ingest {
    fn settled(&self, queue: &str, _subscription: &str, messages: &[Delivery], delivered: bool) {
        self.count_settled(queue, messages, delivered);
    }
}

/// The tally key of a file's rows (attribute `sluice-tally`): the store counts their
/// deliveries under it.
pub fn tally_key(file_id: &str) -> String {
    format!("ingest/{file_id}")
}

/// `name` made safe as a file name in a folder: its last path component, no leading dots.
pub fn safe_name(name: &str) -> Option<String> {
    let base = Path::new(name).file_name()?.to_string_lossy().to_string();
    let base = base.trim_start_matches('.').to_string();
    (!base.is_empty() && !base.contains('/') && !base.contains('\\')).then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_specs() {
        let w = WatchSpec::parse("./in=alerts").unwrap();
        assert_eq!(
            (w.dir, w.queue.as_str(), w.format, w.dedup),
            (PathBuf::from("./in"), "alerts", Format::Csv, DedupKey::User)
        );
        let w = WatchSpec::parse("/a=b/c=q:jsonl").unwrap();
        assert_eq!(w.dir, PathBuf::from("/a=b/c"));
        assert_eq!((w.format, w.dedup), (Format::Jsonl, DedupKey::Row));
        let w = WatchSpec::parse("d=q:lines:content").unwrap();
        assert_eq!(w.dedup, DedupKey::Content);
        for bad in [
            "noequals",
            "=q",
            "d=",
            "d=q:xml",
            "d=q:csv:who",
            "d=q:lines:user",
            "d=q:csv:row:x",
        ] {
            assert!(WatchSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn safe_names() {
        assert_eq!(safe_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(safe_name(".hidden.csv").as_deref(), Some("hidden.csv"));
        assert_eq!(safe_name("a.csv").as_deref(), Some("a.csv"));
        assert_eq!(safe_name(".."), None);
        assert_eq!(safe_name(""), None);
    }
}
