//! Ingest one complete file: hash it, read its rows as a stream on a blocking thread, publish
//! them in batches under deterministic ids, checkpoint, then move the file to `processed/` or
//! `failed/` with its reports.
//!
//! Exactly-once effect: a row's id is blake3(file hash, dedup kind, key), so a row read twice
//! (after a crash between a publish and its checkpoint) gets the same id and the store keeps
//! one copy; the checkpoint (`offset`, counters and report lengths, in one record) is written
//! only after the rows before it are durable. With dedup `user` or `content`, a resumed file is
//! read again from the start to rebuild the set of keys already sent (reading is cheap;
//! nothing is published for rows before the checkpoint).

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_engine::{KeyedPublish, MessageId};
use tokio::sync::mpsc;

use super::parse::{DedupKey, Format, RowKind, RowReader};
use super::{tally_key, FileRecord, FileState, Inbox, Ingest, ATTR_FILE, ATTR_ID, ATTR_LINE};
use sluice_engine::push::ATTR_TALLY;

/// Rows per publish (one store append and one sync).
const BATCH_ROWS: usize = 1000;
const BATCH_BYTES: usize = 1 << 20;
/// Bytes read at the start of a file to tell text from binary.
const SNIFF: usize = 8192;

enum Opened {
    Ok { size: u64, hash: [u8; 32] },
    Gone,
    Unreadable(String),
    Empty,
    Binary(u64),
}

fn open_and_hash(path: &Path) -> Opened {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Opened::Gone,
        Err(e) => return Opened::Unreadable(format!("cannot open the file: {e}")),
    };
    let size = match f.metadata() {
        Ok(m) => m.len(),
        Err(e) => return Opened::Unreadable(format!("cannot stat the file: {e}")),
    };
    if size == 0 {
        return Opened::Empty;
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Opened::Unreadable(format!("read error at byte {pos}: {e}")),
        };
        if pos < SNIFF as u64 {
            let upto = n.min(SNIFF - pos as usize);
            if let Some(i) = buf[..upto].iter().position(|&b| b == 0) {
                return Opened::Binary(pos + i as u64);
            }
        }
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    if pos == 0 {
        return Opened::Empty;
    }
    Opened::Ok {
        size: pos,
        hash: *hasher.finalize().as_bytes(),
    }
}

/// A row's id: UUIDv8 bits over blake3(file hash, kind, key).
pub fn row_id(file_hash: &[u8; 32], kind: &[u8], key: &[u8]) -> MessageId {
    let mut h = blake3::Hasher::new();
    h.update(file_hash);
    h.update(kind);
    h.update(&[0]);
    h.update(key);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    MessageId(u128::from_be_bytes(b))
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the reader thread hands over: rows up to `end`, ready to publish.
struct Batch {
    msgs: Vec<KeyedPublish>,
    end: u64,
    line: u64,
    header: bool,
    read: u64,
    failed: u64,
    dups: u64,
    errors_len: u64,
    dups_len: u64,
}

/// Where the reader starts and what it must know to continue a file.
struct ReadPlan {
    path: PathBuf,
    name: String,
    id: String,
    hash: [u8; 32],
    format: Format,
    dedup: DedupKey,
    offset: u64,
    line: u64,
    errors: PathBuf,
    errors_len: u64,
    dups: PathBuf,
    dups_len: u64,
    max_row: usize,
}

/// A report file opened for appending at the checkpointed length (anything after it was
/// written past the last checkpoint and will be written again).
fn report_at(path: &Path, len: u64) -> io::Result<BufWriter<File>> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    f.set_len(len)?;
    f.seek(SeekFrom::Start(len))?;
    Ok(BufWriter::new(f))
}

/// Flush a report and return its length (synced when it grew).
fn report_len(w: &mut BufWriter<File>, grew: bool) -> io::Result<u64> {
    w.flush()?;
    if grew {
        w.get_ref().sync_data()?;
    }
    w.get_ref().stream_position()
}

fn report_line(line: u64, raw: &[u8], reason: &str) -> Vec<u8> {
    let mut v = serde_json::to_vec(&serde_json::json!({
        "line": line,
        "raw": String::from_utf8_lossy(raw),
        "reason": reason,
    }))
    .expect("json");
    v.push(b'\n');
    v
}

fn read_rows(plan: ReadPlan, tx: mpsc::Sender<Batch>) -> io::Result<()> {
    let mut errors = report_at(&plan.errors, plan.errors_len)?;
    let mut dups = report_at(&plan.dups, plan.dups_len)?;
    let mut file = File::open(&plan.path)?;
    let keyed = plan.dedup != DedupKey::Row;
    // Without a key set to rebuild, jump straight to the checkpoint.
    let (start, line) = if keyed {
        (0, 1)
    } else {
        (plan.offset, plan.line)
    };
    file.seek(SeekFrom::Start(start))?;
    let mut rows = RowReader::new(
        BufReader::with_capacity(256 * 1024, file),
        plan.format,
        start,
        line,
        plan.max_row,
    );
    let mut seen: HashSet<MessageId> = HashSet::new();
    let header_name = plan
        .name
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b))
        .then(|| plan.name.clone());
    let new_batch = || Batch {
        msgs: Vec::with_capacity(BATCH_ROWS),
        end: 0,
        line: 0,
        header: false,
        read: 0,
        failed: 0,
        dups: 0,
        errors_len: 0,
        dups_len: 0,
    };
    let mut b = new_batch();
    let mut bytes = 0usize;
    let (mut errors_grew, mut dups_grew) = (false, false);
    loop {
        let row = rows.next_row()?;
        let eof = row.is_none();
        if let Some(row) = row {
            let replay = row.end <= plan.offset;
            match row.kind {
                RowKind::Header => b.header = true,
                RowKind::Bad { raw, reason } => {
                    if !replay {
                        b.read += 1;
                        b.failed += 1;
                        errors.write_all(&report_line(row.line, &raw, &reason))?;
                        errors_grew = true;
                    }
                }
                RowKind::Message { body, user } => {
                    let id = match plan.dedup {
                        DedupKey::Row => {
                            row_id(&plan.hash, b"row", row.line.to_string().as_bytes())
                        }
                        DedupKey::Content => row_id(&plan.hash, b"content", &body),
                        DedupKey::User => match &user {
                            Some(u) => row_id(&plan.hash, b"user", u.as_bytes()),
                            None => {
                                if !replay {
                                    b.read += 1;
                                    b.failed += 1;
                                    errors.write_all(&report_line(
                                        row.line,
                                        &body,
                                        "has no userId field (dedup `user` needs one)",
                                    ))?;
                                    errors_grew = true;
                                }
                                continue;
                            }
                        },
                    };
                    if keyed && !seen.insert(id) {
                        if !replay {
                            b.read += 1;
                            b.dups += 1;
                            let (key, reason) = match plan.dedup {
                                DedupKey::User => (
                                    user.unwrap_or_default(),
                                    "repeated user: an earlier row of this file already alerts this user",
                                ),
                                _ => (
                                    String::from_utf8_lossy(&body[..body.len().min(200)])
                                        .to_string(),
                                    "repeated content: an earlier row of this file is identical",
                                ),
                            };
                            let mut v = serde_json::to_vec(&serde_json::json!({
                                "line": row.line, "key": key, "reason": reason,
                            }))
                            .expect("json");
                            v.push(b'\n');
                            dups.write_all(&v)?;
                            dups_grew = true;
                        }
                        continue;
                    }
                    if replay {
                        continue;
                    }
                    b.read += 1;
                    let mut attributes = BTreeMap::new();
                    if let Some(n) = &header_name {
                        attributes.insert(ATTR_FILE.to_string(), n.clone());
                    }
                    attributes.insert(ATTR_LINE.to_string(), row.line.to_string());
                    attributes.insert(ATTR_ID.to_string(), plan.id.clone());
                    attributes.insert(ATTR_TALLY.to_string(), tally_key(&plan.id));
                    bytes += body.len();
                    b.msgs.push(KeyedPublish {
                        id,
                        body,
                        attributes,
                    });
                }
            }
            b.end = row.end.max(plan.offset);
            b.line = rows.line();
            if b.msgs.len() < BATCH_ROWS && bytes < BATCH_BYTES {
                continue;
            }
        } else {
            b.end = rows.offset().max(plan.offset);
            b.line = rows.line().max(plan.line);
        }
        if b.end > plan.offset || eof {
            b.errors_len = report_len(&mut errors, std::mem::take(&mut errors_grew))?;
            b.dups_len = report_len(&mut dups, std::mem::take(&mut dups_grew))?;
            let full = std::mem::replace(&mut b, new_batch());
            bytes = 0;
            if tx.blocking_send(full).is_err() {
                return Ok(()); // the publisher stopped (an error it reports itself)
            }
        }
        if eof {
            return Ok(());
        }
    }
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
        Opened::Empty => {
            return reject(
                ing,
                inbox,
                path,
                &name,
                FileState::Failed,
                "file is empty: no rows".into(),
            )
            .await
        }
        Opened::Unreadable(why) => {
            return reject(ing, inbox, path, &name, FileState::Failed, why).await
        }
        Opened::Binary(at) => {
            return reject(
                ing,
                inbox,
                path,
                &name,
                FileState::Failed,
                format!(
                    "binary file: NUL byte at byte {at}; expected {} text",
                    inbox.format.as_str()
                ),
            )
            .await
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
                id.clone(),
                &inbox.queue,
                path,
                format,
                dedup,
                FileState::Reading,
                size,
                now,
            );
            r.name = name.clone();
            r
        }
    };
    rec.state = FileState::Reading;
    rec.error = None;
    rec.size = size;
    ing.save(rec.clone()).await?;
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
    let (tx, mut rx) = mpsc::channel::<Batch>(4);
    let reader = tokio::task::spawn_blocking(move || read_rows(plan, tx));
    let queue = inbox.queue.clone();
    while let Some(b) = rx.recv().await {
        let n = b.msgs.len() as u64;
        if n > 0 {
            if let Err(e) = ing.engine.publish_keyed(&queue, b.msgs, &id).await {
                drop(rx);
                let _ = reader.await;
                tracing::warn!(file = %name, queue = %queue, error = %e, "publishing rows failed; the file will be retried");
                ing.update(&key, |r| {
                    r.state = FileState::Error;
                    r.error = Some(format!("publishing rows failed: {e}"));
                });
                return Err(e.into());
            }
        }
        ing.update(&key, |r| {
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
                metrics::counter!("sluice_ingest_rows_total", "queue" => queue.clone(), "outcome" => outcome).increment(k);
            }
        }
    }
    let read_error = match reader.await? {
        Ok(()) => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Vanished before the reader opened it: keep the checkpoint, report it.
            ing.update(&key, |r| {
                r.state = FileState::Vanished;
                r.error = Some("the file vanished while it was being read".into());
            });
            metrics::counter!("sluice_ingest_files_total", "queue" => queue.clone(), "state" => "vanished").increment(1);
            return Ok(());
        }
        Err(e) => Some(e),
    };
    let mut rec = ing.get(&key).expect("record");
    if let Some(e) = read_error {
        // Keep what was sent; report where reading stopped.
        let errors = work.join(format!("{id}.errors.jsonl"));
        let mut w = report_at(&errors, rec.errors_len)?;
        let why = format!("read error after line {}: {e}", rec.line.saturating_sub(1));
        w.write_all(&report_line(rec.line, b"", &why))?;
        rec.errors_len = report_len(&mut w, true)?;
        rec.error = Some(why);
    }
    let failed = rec.rows_failed > 0 || rec.error.is_some();
    let dir = inbox.dir.join(if failed { "failed" } else { "processed" });
    tokio::fs::create_dir_all(&dir).await?;
    let dest = unique_dest(&dir, &name, &id);
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
    tracing::info!(file = %name, queue = %queue, rows = rec.rows_read, published = rec.rows_published, failed = rec.rows_failed, duplicates = rec.duplicates, "file ingested");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ids_are_deterministic_uuids() {
        let h = [7u8; 32];
        let a = row_id(&h, b"user", b"u1");
        assert_eq!(a, row_id(&h, b"user", b"u1"));
        assert_ne!(a, row_id(&h, b"user", b"u2"));
        assert_ne!(a, row_id(&[8u8; 32], b"user", b"u1"));
        assert_ne!(a, row_id(&h, b"row", b"u1"));
        let b = a.0.to_be_bytes();
        assert_eq!(b[6] >> 4, 8, "UUID version 8");
        assert_eq!(b[8] >> 6, 2, "RFC 4122 variant");
    }
}
