//! Ingest one complete file: hash it, read its rows as a stream on a blocking thread
//! (`read.rs`), publish them in batches under deterministic ids, checkpoint, then move the file
//! to `processed/` or `failed/` with its reports.
//!
//! Exactly-once effect: a row's id is blake3(file hash, dedup kind, key), so a row read twice
//! (after a crash between a publish and its checkpoint) gets the same id and the store keeps
//! one copy; the checkpoint (`offset`, counters and report lengths, in one record) is written
//! only after the rows before it are durable. With dedup `user` or `content`, a resumed file is
//! read again from the start to rebuild the set of keys already sent (reading is cheap;
//! nothing is published for rows before the checkpoint).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_engine::MessageId;
use tokio::sync::mpsc;

use super::read::{
    open_and_hash, read_rows, report_at, report_len, report_line, Batch, Opened, ReadPlan,
};
use super::{FileRecord, FileState, Inbox, Ingest};

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Ingest the complete file at `path` (found in `inbox`).
pub(crate) async fn process(
    ing: &Arc<Ingest>,
    inbox: &Arc<Inbox>,
    path: &Path,
) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let p = path.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || open_and_hash(&p)).await?;
    let (size, hash) = match opened {
        Opened::Ok { size, hash } => (size, hash),
        Opened::Gone => return Ok(()), // gone before we looked: nothing to report
        refused @ (Opened::Empty | Opened::Unreadable(_) | Opened::Binary(_)) => {
            let why = refused.refusal(inbox.format);
            return reject(ing, inbox, path, &name, FileState::Failed, why).await;
        }
    };
    let id = hex(&hash[..16]);
    let key = format!("{}/{}", inbox.queue, id);
    let existing = ing.get(&key);
    if let Some(r) = &existing {
        if matches!(r.state, FileState::Processed | FileState::Failed) {
            if r.name == name && !Path::new(&r.path).exists() {
                // Checkpointed as finished, then stopped before the move: finish it.
                return finish_moves(ing, inbox, r.clone(), path).await;
            }
            let why = format!(
                "identical content was already ingested from {} (file id {}, {}); nothing was sent again",
                r.name,
                r.id,
                r.finished_at.as_deref().unwrap_or("earlier")
            );
            return reject(ing, inbox, path, &name, FileState::Duplicate, why).await;
        }
    }
    let rec = begin(ing, inbox, path, &name, &id, size, existing).await?;
    let work = inbox.work_dir();
    tokio::fs::create_dir_all(&work).await?;
    let limit = match ing.engine.queue_info(&inbox.queue).await {
        Ok(q) => q.config.max_message_bytes,
        Err(_) => sluice_engine::QueueConfig::default().max_message_bytes,
    } as usize;
    let plan = ReadPlan {
        path: path.to_path_buf(),
        name: name.clone(),
        id: id.clone(),
        hash,
        format: rec.format,
        dedup: rec.dedup,
        offset: rec.offset,
        line: rec.line,
        errors: work.join(format!("{id}.errors.jsonl")),
        errors_len: rec.errors_len,
        dups: work.join(format!("{id}.duplicates.jsonl")),
        dups_len: rec.dups_len,
        // Room for the ingest attributes.
        max_row: limit.saturating_sub(1024).max(256),
    };
    let read_error = match publish_rows(ing, &key, &inbox.queue, &name, &id, plan).await? {
        ReadEnd::Done => None,
        ReadEnd::Failed(e) => Some(e),
        ReadEnd::Vanished => return Ok(()),
    };
    conclude(ing, inbox, path, &key, &name, &id, read_error).await
}

/// Start (or resume, from its checkpoint) the file's record, saved as being read.
async fn begin(
    ing: &Arc<Ingest>,
    inbox: &Arc<Inbox>,
    path: &Path,
    name: &str,
    id: &str,
    size: u64,
    existing: Option<FileRecord>,
) -> anyhow::Result<FileRecord> {
    let now = ing.now_str();
    let mut rec = match existing {
        Some(mut r) if r.state != FileState::Queued => {
            tracing::info!(file = %name, queue = %inbox.queue, offset = r.offset, line = r.line, "resuming a file at its checkpoint");
            r.path = path.display().to_string();
            r
        }
        other => {
            let (format, dedup) = other
                .as_ref()
                .map(|q| (q.format, q.dedup))
                .unwrap_or((inbox.format, inbox.dedup));
            let mut r = FileRecord::new(
                id.to_string(),
                &inbox.queue,
                path,
                format,
                dedup,
                FileState::Reading,
                size,
                now,
            );
            r.name = name.to_string();
            r
        }
    };
    rec.state = FileState::Reading;
    rec.error = None;
    rec.size = size;
    ing.save(rec.clone()).await?;
    Ok(rec)
}

/// How reading a file ended.
enum ReadEnd {
    Done,
    /// A read error part-way: what was read before it was published.
    Failed(io::Error),
    /// The file vanished before the reader opened it (the record says so).
    Vanished,
}

/// Publish the rows `read_rows` reads on a blocking thread, batch by batch, checkpointing the
/// file's record after each batch is durable.
async fn publish_rows(
    ing: &Arc<Ingest>,
    key: &str,
    queue: &str,
    name: &str,
    id: &str,
    plan: ReadPlan,
) -> anyhow::Result<ReadEnd> {
    let (tx, mut rx) = mpsc::channel::<Batch>(4);
    let reader = tokio::task::spawn_blocking(move || read_rows(plan, tx));
    while let Some(b) = rx.recv().await {
        let n = b.msgs.len() as u64;
        if n > 0 {
            if let Err(e) = ing.engine.publish_keyed(queue, b.msgs, id).await {
                drop(rx);
                let _ = reader.await;
                tracing::warn!(file = %name, queue = %queue, error = %e, "publishing rows failed; the file will be retried");
                ing.update(key, |r| {
                    r.state = FileState::Error;
                    r.error = Some(format!("publishing rows failed: {e}"));
                });
                return Err(e.into());
            }
        }
        ing.update(key, |r| {
            r.offset = b.end;
            r.line = b.line;
            r.header |= b.header;
            r.rows_read += b.read;
            r.rows_published += n;
            r.rows_failed += b.failed;
            r.duplicates += b.dups;
            r.errors_len = b.errors_len;
            r.dups_len = b.dups_len;
        });
        for (outcome, k) in [
            ("published", n),
            ("failed", b.failed),
            ("duplicate", b.dups),
        ] {
            if k > 0 {
                metrics::counter!("sluice_ingest_rows_total", "queue" => queue.to_string(), "outcome" => outcome).increment(k);
            }
        }
    }
    Ok(match reader.await? {
        Ok(()) => ReadEnd::Done,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Vanished before the reader opened it: keep the checkpoint, report it.
            ing.update(key, |r| {
                r.state = FileState::Vanished;
                r.error = Some("the file vanished while it was being read".into());
            });
            metrics::counter!("sluice_ingest_files_total", "queue" => queue.to_string(), "state" => "vanished").increment(1);
            ReadEnd::Vanished
        }
        Err(e) => ReadEnd::Failed(e),
    })
}

/// After the last row: report a read error, checkpoint the file as processed or failed, and
/// move it (with its reports) to `processed/` or `failed/`.
async fn conclude(
    ing: &Arc<Ingest>,
    inbox: &Arc<Inbox>,
    path: &Path,
    key: &str,
    name: &str,
    id: &str,
    read_error: Option<io::Error>,
) -> anyhow::Result<()> {
    let mut rec = ing.get(key).expect("record");
    if let Some(e) = read_error {
        // Keep what was sent; report where reading stopped.
        let errors = inbox.work_dir().join(format!("{id}.errors.jsonl"));
        let mut w = report_at(&errors, rec.errors_len)?;
        let why = format!("read error after line {}: {e}", rec.line.saturating_sub(1));
        w.write_all(&report_line(rec.line, b"", &why))?;
        rec.errors_len = report_len(&mut w, true)?;
        rec.error = Some(why);
    }
    let failed = rec.rows_failed > 0 || rec.error.is_some();
    let dir = inbox.dir.join(if failed { "failed" } else { "processed" });
    tokio::fs::create_dir_all(&dir).await?;
    let dest = unique_dest(&dir, name, id);
    let dest_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    rec.state = if failed {
        FileState::Failed
    } else {
        FileState::Processed
    };
    rec.path = dest.display().to_string();
    rec.report = failed.then(|| {
        dir.join(format!("{dest_name}.errors.jsonl"))
            .display()
            .to_string()
    });
    rec.duplicates_report = (rec.duplicates > 0).then(|| {
        dir.join(format!("{dest_name}.duplicates.jsonl"))
            .display()
            .to_string()
    });
    rec.finished_at = Some(ing.now_str());
    rec.moving = true;
    ing.save(rec.clone()).await?;
    tracing::info!(file = %name, queue = %inbox.queue, rows = rec.rows_read, published = rec.rows_published, failed = rec.rows_failed, duplicates = rec.duplicates, "file ingested");
    finish_moves(ing, inbox, rec, path).await
}

/// Move a finished file and its reports to where its record says.
async fn finish_moves(
    ing: &Arc<Ingest>,
    inbox: &Arc<Inbox>,
    rec: FileRecord,
    src: &Path,
) -> anyhow::Result<()> {
    let work = inbox.work_dir();
    let key = format!("{}/{}", rec.queue, rec.id);
    let state = match tokio::fs::rename(src, &rec.path).await {
        Ok(()) => {
            if rec.state == FileState::Failed {
                "failed"
            } else {
                "processed"
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            ing.update(&key, |r| {
                r.state = FileState::Vanished;
                r.error =
                    Some("the file vanished before it could be moved (its rows were sent)".into());
            });
            "vanished"
        }
        Err(e) => return Err(e.into()),
    };
    for (from, to) in [
        (work.join(format!("{}.errors.jsonl", rec.id)), &rec.report),
        (
            work.join(format!("{}.duplicates.jsonl", rec.id)),
            &rec.duplicates_report,
        ),
    ] {
        match to {
            Some(to) => {
                if let Err(e) = tokio::fs::rename(&from, to).await {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::warn!(report = %to, error = %e, "could not move a report");
                    }
                }
            }
            None => {
                let _ = tokio::fs::remove_file(&from).await;
            }
        }
    }
    ing.update(&key, |r| r.moving = false);
    metrics::counter!("sluice_ingest_files_total", "queue" => rec.queue.clone(), "state" => state)
        .increment(1);
    Ok(())
}

/// A file refused as a whole (empty, binary, unreadable, already ingested): moved to
/// `failed/` beside a one-line report.
async fn reject(
    ing: &Arc<Ingest>,
    inbox: &Arc<Inbox>,
    path: &Path,
    name: &str,
    state: FileState,
    why: String,
) -> anyhow::Result<()> {
    let id = MessageId::new_v7().to_string().replace('-', "");
    let dir = inbox.dir.join("failed");
    tokio::fs::create_dir_all(&dir).await?;
    let dest = unique_dest(&dir, name, &id);
    let dest_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let report = dir.join(format!("{dest_name}.errors.jsonl"));
    let size = tokio::fs::metadata(path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    tokio::fs::write(&report, report_line(0, b"", &why)).await?;
    let now = ing.now_str();
    let mut rec = FileRecord::new(
        id,
        &inbox.queue,
        &dest,
        inbox.format,
        inbox.dedup,
        state,
        size,
        now.clone(),
    );
    rec.name = name.to_string();
    rec.report = Some(report.display().to_string());
    rec.error = Some(why.clone());
    rec.finished_at = Some(now);
    let label = match tokio::fs::rename(path, &dest).await {
        Ok(()) => match state {
            FileState::Duplicate => "duplicate",
            _ => "failed",
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            rec.state = FileState::Vanished;
            "vanished"
        }
        Err(e) => {
            // The folder is not writable either: leave the file, but say so once.
            rec.error = Some(format!("{why}; and it could not be moved to failed/: {e}"));
            "failed"
        }
    };
    tracing::warn!(file = %name, queue = %inbox.queue, reason = %why, "file refused");
    metrics::counter!("sluice_ingest_files_total", "queue" => inbox.queue.clone(), "state" => label).increment(1);
    ing.save(rec).await
}

/// `dir/name`, or `dir/STEM.ID8.EXT` when that name is taken.
pub(crate) fn unique_dest(dir: &Path, name: &str, id: &str) -> PathBuf {
    let plain = dir.join(name);
    if !plain.exists() {
        return plain;
    }
    let p = Path::new(name);
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let short = &id[..id.len().min(8)];
    let mut candidate = match p.extension() {
        Some(ext) => dir.join(format!("{stem}.{short}.{}", ext.to_string_lossy())),
        None => dir.join(format!("{name}.{short}")),
    };
    let mut n = 1;
    while candidate.exists() {
        candidate = dir.join(format!("{name}.{short}.{n}"));
        n += 1;
    }
    candidate
}
