//! The queue catalog, outside the message log (so segments can be deleted without losing queue
//! definitions), in two files:
//!
//! - `queues.json`, a snapshot: `{"next_queue_id": N, "queues": [{"id", "name", "config",
//!   "created_at", "updated_at"}, ...]}`, replaced atomically (`side::write_atomic`);
//! - `queues.log`, the changes since the snapshot, one JSON line each (`{"put": {...}}` with the
//!   whole queue, or `{"delete": ID}`), appended and `fdatasync`ed before the change is
//!   acknowledged. Creating or changing a queue writes one line, whatever the number of
//!   queues; the log is folded into a new snapshot at open and once it has more lines than
//!   `max(1024, queues)`, so the rewrites cost O(1) per change on average.
//!
//! Loading applies the log to the snapshot: the last line about an id wins, so a crash between
//! writing a snapshot and emptying the log only replays lines the snapshot already holds. A
//! line that does not parse ends the log and is reported (at the end of the file it is a torn
//! append, never acknowledged); the next snapshot cuts it off.
//!
//! **Queue ids are never reused**, so records of a deleted queue can never be taken for a new
//! queue's. `next_queue_id` is kept in the snapshot and follows every logged id, and recovery
//! also raises it past every id the segments mention (`state::replay`), in case the catalog
//! was lost or is older than the log. Messages of ids the catalog never issued (at or above
//! its `next_queue_id`: a lost or restored catalog, not a deleted queue) are not served: their
//! segments are hard-linked into `set-aside/`, where prefix deletion cannot reach them, and
//! `storage_problems` says so at every start until the operator removes that folder
//! ([`set_aside`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::QueueInfo;

use super::log::Log;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub next_queue_id: u32,
    pub queues: Vec<CatalogQueue>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogQueue {
    pub id: u32,
    #[serde(flatten)]
    pub info: QueueInfo,
}

/// One change, as a line of `queues.log`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Put(Box<CatalogQueue>),
    Delete(u32),
}

const FILE: &str = "queues.json";
const LOG: &str = "queues.log";
const SET_ASIDE: &str = "set-aside";

/// The catalog as found on disk.
pub struct Loaded {
    pub catalog: Catalog,
    /// Lines of `queues.log` applied.
    pub lines: usize,
    /// What was wrong with the files (a damaged or torn log line).
    pub problems: Vec<String>,
}

pub fn load(dir: &Path) -> Result<Loaded> {
    let path = dir.join(FILE);
    let mut catalog = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            crate::EngineError::Storage(format!("{} is not a valid catalog: {e}", path.display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Catalog::default(),
        Err(e) => return Err(e.into()),
    };
    catalog.next_queue_id = catalog.next_queue_id.max(1);
    for q in &catalog.queues {
        catalog.next_queue_id = catalog.next_queue_id.max(q.id.saturating_add(1));
    }
    let mut loaded = Loaded {
        catalog,
        lines: 0,
        problems: Vec::new(),
    };
    let text = match fs::read(dir.join(LOG)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(loaded),
        Err(e) => return Err(e.into()),
    };
    let mut at = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let change = line
            .strip_suffix(b"\n")
            .and_then(|l| serde_json::from_slice::<Change>(l).ok());
        let Some(change) = change else {
            let why = if at + line.len() == text.len() {
                "a torn last line (a crash while a queue change was written; it was not acknowledged)"
            } else {
                "a damaged line; the queue changes after it are lost"
            };
            loaded.problems.push(format!(
                "{}: {why}: {} bytes dropped from offset {at}",
                dir.join(LOG).display(),
                text.len() - at
            ));
            break;
        };
        apply(&mut loaded.catalog, change);
        loaded.lines += 1;
        at += line.len();
    }
    Ok(loaded)
}

fn apply(c: &mut Catalog, change: Change) {
    match change {
        Change::Put(q) => {
            c.next_queue_id = c.next_queue_id.max(q.id.saturating_add(1));
            match c.queues.iter_mut().find(|x| x.id == q.id) {
                Some(x) => *x = *q,
                None => c.queues.push(*q),
            }
        }
        Change::Delete(id) => {
            c.next_queue_id = c.next_queue_id.max(id.saturating_add(1));
            c.queues.retain(|x| x.id != id);
        }
    }
}

/// The open catalog: appends changes to `queues.log`, folds it into a snapshot now and then.
pub struct CatalogLog {
    dir: PathBuf,
    file: File,
    lines: usize,
    /// A write failed half-way: the next change starts with a fresh snapshot.
    dirty: bool,
}

impl CatalogLog {
    /// Start appending. With `fold` (the log has lines, or recovery changed the catalog), the
    /// catalog is first written as a new snapshot and the log emptied.
    pub fn open(dir: &Path, catalog: &Catalog, fold: bool) -> Result<CatalogLog> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(dir.join(LOG))?;
        let mut log = CatalogLog {
            dir: dir.to_path_buf(),
            file,
            lines: 0,
            dirty: fold,
        };
        if fold {
            log.fold(catalog)?;
        }
        Ok(log)
    }

    /// Write `catalog` as the snapshot and empty the log.
    fn fold(&mut self, catalog: &Catalog) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(catalog).expect("catalog serializes");
        super::side::write_atomic(&self.dir, FILE, &bytes)?;
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.lines = 0;
        self.dirty = false;
        Ok(())
    }

    /// Make `change` durable. `queues` is about the number of queues; `before` gives the
    /// whole catalog without the change, for when the log is folded into a snapshot.
    pub fn record(
        &mut self,
        change: &Change,
        queues: usize,
        before: impl FnOnce() -> Catalog,
    ) -> Result<()> {
        let snapshot = || {
            let mut c = before();
            apply(&mut c, change.clone());
            c
        };
        if self.dirty {
            return self.fold(&snapshot());
        }
        let mut line = serde_json::to_vec(change).expect("a change serializes");
        line.push(b'\n');
        let written = self
            .file
            .write_all(&line)
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            self.dirty = true;
            return Err(e.into());
        }
        self.lines += 1;
        if self.lines >= 1024 && self.lines >= queues {
            self.fold(&snapshot())?;
        }
        Ok(())
    }
}

/// Keep the messages of queue ids the catalog never issued out of reach of segment deletion:
/// hard-link the segments that hold them into `DATA_DIR/set-aside/`. Returns the lines for
/// `storage_problems`: one per such queue id, and one if the folder holds anything.
/// `unknown` is recovery's `RecoveryReport::unknown_queues`: per queue id, its live messages
/// and the segments holding them.
pub fn set_aside(
    dir: &Path,
    log_dir: &Path,
    unknown: &BTreeMap<u32, (u64, BTreeSet<u32>)>,
) -> Result<Vec<String>> {
    let aside = dir.join(SET_ASIDE);
    let mut lines = Vec::new();
    if !unknown.is_empty() {
        fs::create_dir_all(&aside)?;
        let segs: BTreeSet<u32> = unknown
            .values()
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        for &seg in &segs {
            let from = Log::segment_path(log_dir, seg);
            let to = Log::segment_path(&aside, seg);
            if to.exists() {
                continue;
            }
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to)?;
            }
        }
        super::disk::sync_dir(&aside)?;
        for (id, (messages, segs)) in unknown {
            lines.push(format!(
                "queue id {id} is in the log but not in the catalog (queues.json lost, or older than the log): its {messages} messages are not served, and the segments holding them ({}) are kept in {}; new queues never take this id",
                segs.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
                aside.display()
            ));
        }
    }
    let kept = fs::read_dir(&aside)
        .map(|rd| rd.filter_map(|e| e.ok()).count())
        .unwrap_or(0);
    if kept > 0 {
        lines.push(format!(
            "{} holds {kept} segment files with messages of queues the catalog did not know; they are not served (restore the catalog to recover them, or remove the folder)",
            aside.display()
        ));
    }
    Ok(lines)
}
