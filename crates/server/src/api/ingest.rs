//! File ingestion over HTTP: the wds endpoints (`POST /upload` multipart with field `file`,
//! `GET /retry`) and the native ones (`GET /v1/ingest`, `GET /v1/ingest/{id}`,
//! `POST /v1/ingest` with the raw file as body, used by `sluice ingest`). All of them hand
//! over to crate::ingest; nothing here knows how files are read.

use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body::refusing_overannounced;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::ingest::upload::{Accepted, UploadError, UploadTarget};
use crate::ingest::{DedupKey, FileRecord, Format, IngestView};

#[utoipa::path(get, path = "/v1/ingest", tag = "ingest",
    responses((status = 200, body = IngestView)))]
pub async fn list(State(s): State<AppState>) -> Json<IngestView> {
    Json(s.ingest.view().await)
}

#[utoipa::path(get, path = "/v1/ingest/{id}", tag = "ingest",
    params(("id" = String, Path, description = "file id (from the upload answer or the list)")),
    responses((status = 200, body = FileRecord), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_file(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<FileRecord>> {
    s.ingest
        .file(&id)
        .await
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no ingested file has id {id:?}")))
}

/// Where and how an uploaded file is ingested.
#[derive(Deserialize, Default, IntoParams)]
pub struct UploadParams {
    /// Queue to ingest into (default: the first watched folder's queue).
    pub queue: Option<String>,
    /// csv, jsonl or lines (default: the folder's format, csv for a queue without one).
    pub format: Option<String>,
    /// user, row or content (default: the folder's, or the format's default).
    pub dedup: Option<String>,
    /// File name in the folder (default: the upload's file name, or `upload-TIME.FORMAT`).
    pub name: Option<String>,
}

impl UploadParams {
    fn parsed(&self) -> ApiResult<(Option<Format>, Option<DedupKey>)> {
        let format = match &self.format {
            None => None,
            Some(f) => Some(Format::parse(f).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_argument",
                    format!("format: {f:?} is not one of csv, jsonl, lines"),
                )
            })?),
        };
        let dedup = match &self.dedup {
            None => None,
            Some(d) => Some(DedupKey::parse(d).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_argument",
                    format!("dedup: {d:?} is not one of user, row, content"),
                )
            })?),
        };
        Ok((format, dedup))
    }
}

#[derive(Serialize, ToSchema)]
pub struct UploadAnswer {
    /// Always `accepted`: the file is in the folder and its worker takes it at once.
    pub status: &'static str,
    #[serde(flatten)]
    pub file: Accepted,
}

fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::Invalid(field, msg) => {
            ApiError::bad_request("invalid_argument", format!("{field}: {msg}"))
        }
        UploadError::TooLarge(limit) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!("file: larger than the upload limit of {limit} bytes (--max-upload-bytes)"),
        ),
        UploadError::Timeout(d) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("file: no data received for {} s", d.as_secs()),
        ),
        UploadError::Internal(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            format!("could not store the upload: {e:#}"),
        ),
    }
}

/// `POST /v1/ingest?queue=Q&format=csv&dedup=user&name=F`: the body is the file.
#[utoipa::path(post, path = "/v1/ingest", tag = "ingest", params(UploadParams),
    request_body(content = String, content_type = "application/octet-stream", description = "the file"),
    responses((status = 202, body = UploadAnswer), (status = 400, body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody)))]
pub async fn upload_raw(
    State(s): State<AppState>,
    Query(p): Query<UploadParams>,
    req: Request,
) -> ApiResult<(StatusCode, Json<UploadAnswer>)> {
    let (parts, body) = req.into_parts();
    let body = refusing_overannounced(body, &parts.extensions, s.ingest.opts.max_upload_bytes);
    let (format, dedup) = p.parsed()?;
    let target = UploadTarget {
        queue: p.queue.as_deref(),
        name: p.name.as_deref(),
        format,
        dedup,
    };
    let file = s
        .ingest
        .accept_upload(target, body.into_data_stream(), s.body_timeout)
        .await
        .map_err(upload_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(UploadAnswer {
            status: "accepted",
            file,
        }),
    ))
}

/// wds `POST /upload`: multipart form, the file in field `file`. Optional fields (or query
/// parameters) `queue`, `format`, `dedup` come before it.
pub async fn upload_form(
    State(s): State<AppState>,
    Query(mut p): Query<UploadParams>,
    mut form: Multipart,
) -> ApiResult<Json<WdsUploadAnswer>> {
    let bad = |m: String| ApiError::bad_request("invalid_argument", m);
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|e| bad(format!("body: not a valid multipart form: {e}")))?;
        let Some(field) = field else {
            return Err(bad(
                "file: missing; send the file as multipart form field `file`".into(),
            ));
        };
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                let (format, dedup) = p.parsed()?;
                let file_name = p.name.clone().or(field.file_name().map(String::from));
                let target = UploadTarget {
                    queue: p.queue.as_deref(),
                    name: file_name.as_deref(),
                    format,
                    dedup,
                };
                let file = s
                    .ingest
                    .accept_upload(target, field, s.body_timeout)
                    .await
                    .map_err(upload_error)?;
                return Ok(Json(WdsUploadAnswer {
                    data: file.path.clone(),
                    error: "",
                    answer: UploadAnswer {
                        status: "accepted",
                        file,
                    },
                }));
            }
            "queue" | "format" | "dedup" | "name" => {
                let v = field
                    .text()
                    .await
                    .map_err(|e| bad(format!("{name}: {e}")))?;
                let slot = match name.as_str() {
                    "queue" => &mut p.queue,
                    "format" => &mut p.format,
                    "dedup" => &mut p.dedup,
                    _ => &mut p.name,
                };
                *slot = Some(v);
            }
            _ => {} // other fields are ignored
        }
    }
}

/// The wds `/upload` answer: sluice's fields plus the seed's `data` (the saved file's path,
/// which its Postman collection reads into `filePath`) and `error` (empty on success).
#[derive(Serialize)]
pub struct WdsUploadAnswer {
    #[serde(flatten)]
    pub answer: UploadAnswer,
    pub data: String,
    pub error: &'static str,
}

/// The `/retry` answer: sluice's fields plus the seed's `data` (redriven deliveries by queue)
/// and `error` (empty on success).
#[derive(Serialize, ToSchema)]
pub struct Retried {
    pub status: &'static str,
    /// Dead-lettered deliveries sent back to their subscriptions.
    pub redriven: u64,
    pub queues: std::collections::BTreeMap<String, u64>,
    /// The seed's field: the same counts as `queues`.
    pub data: std::collections::BTreeMap<String, u64>,
    /// The seed's field: empty on success.
    pub error: &'static str,
}

/// wds `GET /retry`: redrive the dead-lettered deliveries of every ingestion queue.
pub async fn retry(State(s): State<AppState>) -> ApiResult<Json<Retried>> {
    let queues = s.ingest.retry().await?;
    Ok(Json(Retried {
        status: "ok",
        redriven: queues.values().sum(),
        data: queues.clone(),
        queues,
        error: "",
    }))
}
