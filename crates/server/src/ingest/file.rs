//! The record of one ingested file (`FileRecord`, its `FileState`) as `GET /v1/ingest` shows it
//! and as it is checkpointed in the store's settings, and a file still being written
//! (`WaitingFile`). The types only: mod.rs keeps, saves and prunes the records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DedupKey, Format};

/// Where a file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Uploaded, waiting for its folder's worker.
    Queued,
    /// Rows are being read and published.
    Reading,
    /// Every row was read; the file is in `processed/`.
    Processed,
    /// The file had bad rows (its good rows were sent) or could not be read at all; it is in
    /// `failed/` beside `NAME.errors.jsonl`.
    Failed,
    /// The same content was ingested before; nothing was sent again.
    Duplicate,
    /// The file disappeared before it was read to the end or moved.
    Vanished,
    /// Publishing failed (storage error); retried at the next scan.
    Error,
}

/// One file's progress, as `GET /v1/ingest` shows it and as it is checkpointed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileRecord {
    /// The first 32 hex digits of the content's blake3 hash (or a generated id for files that
    /// could not be read).
    pub id: String,
    pub queue: String,
    pub name: String,
    /// Where the file is now.
    pub path: String,
    pub format: Format,
    pub dedup: DedupKey,
    pub state: FileState,
    pub size: u64,
    /// Bytes read and published (the checkpoint).
    pub offset: u64,
    /// The line the next row starts on.
    pub line: u64,
    /// The csv file started with a header line.
    pub header: bool,
    /// Data rows read (sent, failed and duplicates).
    pub rows_read: u64,
    /// Rows published to the queue (each once).
    pub rows_published: u64,
    /// Bad rows (listed in the errors report).
    pub rows_failed: u64,
    /// Rows not sent because their dedup key repeated an earlier row's.
    pub duplicates: u64,
    /// Rows delivered by every subscription of the queue. Like the two counts below, counted
    /// by the store with each delivery (the file's tally key), so it is exact across crashes.
    pub rows_delivered: u64,
    /// Deliveries per subscription.
    #[serde(default)]
    pub delivered: BTreeMap<String, u64>,
    /// Deliveries that failed for good and went to the dead-letter queue (over every
    /// subscription).
    #[serde(default)]
    pub rows_dead_lettered: u64,
    /// `NAME.errors.jsonl` (line, raw, reason per bad row).
    pub report: Option<String>,
    /// `NAME.duplicates.jsonl` (line, key per repeated row).
    pub duplicates_report: Option<String>,
    /// What went wrong, for failed, vanished and error states.
    pub error: Option<String>,
    pub started_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schema(ignore)]
    pub errors_len: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schema(ignore)]
    pub dups_len: u64,
    /// Checkpointed as finished, its moves to `processed/` or `failed/` not yet done: views
    /// still call it reading, so a client that sees `processed` finds the file there.
    #[serde(skip)]
    #[schema(ignore)]
    pub(crate) moving: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl FileRecord {
    /// A record with no progress yet.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: String,
        queue: &str,
        path: &std::path::Path,
        format: Format,
        dedup: DedupKey,
        state: FileState,
        size: u64,
        now: String,
    ) -> FileRecord {
        FileRecord {
            id,
            queue: queue.to_string(),
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            path: path.display().to_string(),
            format,
            dedup,
            state,
            size,
            offset: 0,
            line: 1,
            header: false,
            rows_read: 0,
            rows_published: 0,
            rows_failed: 0,
            duplicates: 0,
            rows_delivered: 0,
            delivered: BTreeMap::new(),
            rows_dead_lettered: 0,
            report: None,
            duplicates_report: None,
            error: None,
            started_at: now.clone(),
            updated_at: now,
            finished_at: None,
            errors_len: 0,
            dups_len: 0,
            moving: false,
        }
    }

    /// Its settings key under `ingest/`: `{queue}/{id}`.
    pub(super) fn key(&self) -> String {
        format!("{}/{}", self.queue, self.id)
    }

    /// Done with (kept among the last [`super::FINISHED_KEPT`]); queued, reading and
    /// failed-to-publish files are not.
    pub(super) fn finished(&self) -> bool {
        !matches!(
            self.state,
            FileState::Queued | FileState::Reading | FileState::Error
        )
    }
}

/// A file seen in a watched folder but not complete yet.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WaitingFile {
    pub queue: String,
    pub path: String,
    pub size: u64,
    /// When it will be taken if it does not change meanwhile.
    pub ready_at: String,
}
