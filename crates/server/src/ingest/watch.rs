//! A folder's worker: notify events and a periodic rescan find files; a file is taken when it
//! is complete (renamed in, or its mtime `settle` old) and ingested one at a time, oldest first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::{job, Inbox, Ingest, WaitingFile};

/// Names never taken: dotfiles (and the `.sluice` work folder), and files still being written
/// under a temporary name.
pub fn ignored(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || [".tmp", ".part", ".partial", ".crdownload", ".swp", "~"]
            .iter()
            .any(|s| lower.ends_with(s))
}

pub(crate) async fn run(ing: Arc<Ingest>, inbox: Arc<Inbox>) {
    let mut shutdown = ing.engine.shutdown_signal();
    for d in [
        inbox.dir.clone(),
        inbox.dir.join("processed"),
        inbox.dir.join("failed"),
        inbox.work_dir(),
    ] {
        if let Err(e) = std::fs::create_dir_all(&d) {
            tracing::error!(folder = %d.display(), error = %e, "cannot create an ingest folder");
        }
    }
    let _watcher = if inbox.watched { watch(&inbox) } else { None };
    tracing::info!(folder = %inbox.dir.display(), queue = %inbox.queue, format = inbox.format.as_str(), dedup = inbox.dedup.as_str(), "ingesting files");
    loop {
        if *shutdown.borrow() {
            return;
        }
        let next = scan(&ing, &inbox).await;
        let wait = next.unwrap_or(ing.opts.rescan).min(ing.opts.rescan);
        tokio::select! {
            _ = inbox.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn watch(inbox: &Arc<Inbox>) -> Option<notify::RecommendedWatcher> {
    let ib = Arc::downgrade(inbox);
    let made = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let (Ok(ev), Some(ib)) = (res, ib.upgrade()) else {
            return;
        };
        if let EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) = ev.kind {
            if let Some(p) = ev.paths.last() {
                ib.instant.lock().insert(p.clone());
            }
        }
        ib.wake.notify_one();
    });
    let mut w = match made {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(folder = %inbox.dir.display(), error = %e, "no file-system events; rescanning only");
            return None;
        }
    };
    if let Err(e) = w.watch(&inbox.dir, RecursiveMode::NonRecursive) {
        tracing::warn!(folder = %inbox.dir.display(), error = %e, "no file-system events; rescanning only");
        return None;
    }
    Some(w)
}

/// Take every complete file; return how long until a waiting file may be complete.
async fn scan(ing: &Arc<Ingest>, inbox: &Arc<Inbox>) -> Option<Duration> {
    let dir = inbox.dir.clone();
    let listed = tokio::task::spawn_blocking(move || list(&dir)).await;
    let mut files = match listed {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            tracing::warn!(folder = %inbox.dir.display(), error = %e, "cannot list a watched folder");
            return None;
        }
        Err(_) => return None,
    };
    files.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
    let settle = ing.opts.settle;
    let mut next: Option<Duration> = None;
    let mut waiting = std::collections::BTreeMap::new();
    {
        let present: std::collections::HashSet<&PathBuf> = files.iter().map(|f| &f.0).collect();
        inbox.instant.lock().retain(|p| present.contains(p));
    }
    for (path, size, mtime) in files {
        let instant = inbox.instant.lock().remove(&path);
        let age = SystemTime::now()
            .duration_since(mtime)
            .unwrap_or(Duration::ZERO);
        if instant || age >= settle {
            inbox.waiting.lock().remove(&path);
            if let Err(e) = job::process(ing, inbox, &path).await {
                tracing::warn!(file = %path.display(), error = %e, "ingesting a file failed; it will be retried");
                next = Some(next.map_or(ing.opts.rescan, |n| n.min(ing.opts.rescan)));
            }
        } else {
            let left = settle - age;
            next = Some(next.map_or(left, |n| n.min(left)));
            let ready = chrono::DateTime::<chrono::Utc>::from(SystemTime::now() + left);
            waiting.insert(
                path.clone(),
                WaitingFile {
                    queue: inbox.queue.clone(),
                    path: path.display().to_string(),
                    size,
                    ready_at: ready.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                },
            );
        }
    }
    *inbox.waiting.lock() = waiting;
    next
}

/// Candidate files: (path, size, mtime).
fn list(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64, SystemTime)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let Ok(e) = e else { continue };
        let name = e.file_name().to_string_lossy().to_string();
        if ignored(&name) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(e.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        out.push((e.path(), meta.len(), mtime));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ignored_names() {
        for n in [
            ".x.csv",
            "a.csv.tmp",
            "a.csv.part",
            "A.CSV.PART",
            ".sluice",
            "a.csv~",
        ] {
            assert!(super::ignored(n), "{n}");
        }
        for n in ["a.csv", "part.csv", "tmp"] {
            assert!(!super::ignored(n), "{n}");
        }
    }
}
