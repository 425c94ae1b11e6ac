//! Files that arrive over HTTP (`POST /upload`, `POST /v1/ingest`, `sluice ingest`): streamed
//! to a temporary file in the folder's work directory (constant memory, size limit, idle
//! timeout), synced, then renamed into the folder, where the folder's worker takes it at once
//! like any file renamed in.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::job::{hex, unique_dest};
use super::{safe_name, watch, DedupKey, FileRecord, FileState, Format, Ingest};

#[derive(Debug)]
pub enum UploadError {
    /// 400: the field and what is wrong with it.
    Invalid(&'static str, String),
    /// 413: the limit in bytes.
    TooLarge(u64),
    /// 408: no bytes for this long.
    Timeout(Duration),
    Internal(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for UploadError {
    fn from(e: E) -> Self {
        UploadError::Internal(e.into())
    }
}

/// What an upload became.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The file id (`GET /v1/ingest/{id}`).
    pub id: String,
    pub queue: String,
    /// The name it has in the folder.
    pub name: String,
    pub path: String,
    pub size: u64,
    pub format: Format,
    pub dedup: DedupKey,
    /// Set when identical content was already ingested into this queue (the earlier file's
    /// name): nothing is sent again, and the copy goes to `failed/` with a report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

/// Where an upload goes and how it is read.
pub struct UploadTarget<'a> {
    pub queue: Option<&'a str>,
    pub name: Option<&'a str>,
    pub format: Option<Format>,
    pub dedup: Option<DedupKey>,
}

impl Ingest {
    pub async fn accept_upload<S, E>(
        self: &Arc<Self>,
        target: UploadTarget<'_>,
        mut body: S,
        idle: Duration,
    ) -> Result<Accepted, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::error::Error + 'static,
    {
        let inbox = match target.queue {
            Some(q) => {
                sluice_engine::validate_queue_name(q)
                    .map_err(|e| UploadError::Invalid("queue", e.to_string()))?;
                self.inbox_for(Some(q))
                    .unwrap_or_else(|| self.spool_inbox(q))
            }
            None => self.inbox_for(None).ok_or_else(|| {
                UploadError::Invalid(
                    "queue",
                    "is required: no folder is watched (start the server with --watch DIR=QUEUE, or name a queue)".into(),
                )
            })?,
        };
        let format = target.format.unwrap_or(inbox.format);
        let dedup = target.dedup.unwrap_or(if format == inbox.format {
            inbox.dedup
        } else {
            format.default_dedup()
        });
        dedup
            .check(format)
            .map_err(|e| UploadError::Invalid("dedup", e))?;
        let name = target
            .name
            .and_then(safe_name)
            .filter(|n| !watch::ignored(n))
            .unwrap_or_else(|| {
                format!(
                    "upload-{}.{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
                    format.as_str()
                )
            });
        let work = inbox.work_dir();
        tokio::fs::create_dir_all(&work).await?;
        let tmp = work.join(format!(
            "upload-{}.part",
            sluice_engine::MessageId::new_v7()
        ));
        let (size, hash) = receive(&mut body, &tmp, idle, self.opts.max_upload_bytes).await?;
        let id = hex(&hash[..16]);
        let dest = unique_dest(&inbox.dir, &name, &id);
        let key = format!("{}/{}", inbox.queue, id);
        let existing = self.get(&key);
        let duplicate_of = existing
            .as_ref()
            .filter(|r| matches!(r.state, FileState::Processed | FileState::Failed))
            .map(|r| r.name.clone());
        if existing.is_none() {
            let rec = FileRecord::new(
                id.clone(),
                &inbox.queue,
                &dest,
                format,
                dedup,
                FileState::Queued,
                size,
                self.now_str(),
            );
            self.save(rec).await?;
        }
        tokio::fs::rename(&tmp, &dest).await?;
        let dir = inbox.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all()).await??;
        inbox.instant.lock().insert(dest.clone());
        inbox.wake.notify_one();
        Ok(Accepted {
            id,
            queue: inbox.queue.clone(),
            name: dest
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            path: dest.display().to_string(),
            size,
            format,
            dedup,
            duplicate_of,
        })
    }
}

/// Write an upload's body to `tmp` as it arrives, hashing it, at most `limit` bytes and no
/// longer than `idle` between two chunks; synced once complete. Its size and hash, or (with
/// `tmp` removed) why it was refused.
async fn receive<S, E>(
    body: &mut S,
    tmp: &Path,
    idle: Duration,
    limit: u64,
) -> Result<(u64, [u8; 32]), UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::error::Error + 'static,
{
    let result = async {
        let mut file = tokio::fs::File::create(tmp).await?;
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        loop {
            let chunk = match tokio::time::timeout(idle, body.next()).await {
                Err(_) => return Err(UploadError::Timeout(idle)),
                Ok(None) => break,
                // A chunked body that announced more than the limit (crate::chunk_watch).
                Ok(Some(Err(e))) if crate::chunk_watch::overannounced(&e).is_some() => {
                    return Err(UploadError::TooLarge(limit))
                }
                Ok(Some(Err(e))) => {
                    return Err(UploadError::Invalid("file", format!("upload failed: {e}")))
                }
                Ok(Some(Ok(c))) => c,
            };
            size += chunk.len() as u64;
            if size > limit {
                return Err(UploadError::TooLarge(limit));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        if size == 0 {
            return Err(UploadError::Invalid("file", "is empty: no rows".into()));
        }
        file.sync_all().await?;
        Ok((size, *hasher.finalize().as_bytes()))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(tmp).await;
    }
    result
}
