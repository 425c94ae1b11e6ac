//! Request body extraction with errors in the API's own shape. axum's stock extractors answer
//! bad input with plain text; these answer `400 invalid_json` naming the field path (via
//! serde_path_to_error) and `413 request_too_large` naming the limit (at once when
//! `Content-Length` declares more, or a chunked body announces more in its chunk sizes, without
//! waiting for the body; see `crate::chunk_watch`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::Extensions;
use hyper::body::{Frame, SizeHint};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::chunk_watch::{self, AnnouncedBody, Overannounced};

/// What every request body is held to: at most `max_request_bytes`, arriving within
/// `body_timeout`. Each router's state hands it out (`FromRef`), so the compatibility routers,
/// which have states of their own, read bodies under the same rules.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max_request_bytes: usize,
    pub body_timeout: Duration,
}

/// `application/json` or `application/…+json`, in any case, with any parameters (compared in
/// place: no lower-cased copy per request).
fn is_json_type(ct: &[u8]) -> bool {
    let starts = |p: &[u8]| ct.len() >= p.len() && ct[..p.len()].eq_ignore_ascii_case(p);
    starts(b"application/json")
        || (starts(b"application/") && ct.windows(5).any(|w| w.eq_ignore_ascii_case(b"+json")))
}

/// A request's body as the server read it before making the request (`direct_h1.rs`; the
/// request's own body is then empty), handed beside the request to [`RawBody::taken`]: whole,
/// taken as it is (still held to its limit), or not all within the body timeout, answered 408
/// as if [`RawBody`] had waited itself.
pub enum ReadAhead {
    Whole(Bytes),
    TimedOut,
}

/// The raw body (size-limited) and whether it was declared as JSON.
pub struct RawBody {
    pub bytes: Bytes,
    pub is_json: bool,
}

impl<S> FromRequest<S> for RawBody
where
    S: Send + Sync,
    BodyLimits: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let state = BodyLimits::from_ref(state);
        let is_json = declares_json(req.headers());
        let limit = state.max_request_bytes;
        // A body that declares more than the limit (Content-Length) is refused before a byte
        // of it is read, not after the body timeout.
        if axum::body::HttpBody::size_hint(req.body()).lower() > limit as u64 {
            linger(req.into_body());
            return Err(too_large(limit));
        }
        let (parts, body) = req.into_parts();
        let body = refusing_overannounced(body, &parts.extensions, limit as u64);
        let read = axum::body::to_bytes(body, limit);
        let bytes = tokio::time::timeout(state.body_timeout, read)
            .await
            .map_err(|_| timed_out(state.body_timeout))?
            .map_err(|e| {
                if is_length_limit(&e) || chunk_watch::overannounced(&e).is_some() {
                    too_large(limit)
                } else {
                    ApiError::bad_request(
                        "bad_body",
                        format!("could not read the request body: {e}"),
                    )
                }
            })?;
        Ok(RawBody { bytes, is_json })
    }
}

impl RawBody {
    /// The body the server read ahead when there is one (`direct_h1.rs`), held to the same
    /// limit and timeout; otherwise read from the request as the extractor reads it.
    pub async fn taken<S>(
        req: Request,
        ahead: Option<ReadAhead>,
        state: &S,
    ) -> Result<Self, ApiError>
    where
        S: Send + Sync,
        BodyLimits: FromRef<S>,
    {
        let Some(ahead) = ahead else {
            return Self::from_request(req, state).await;
        };
        let limits = BodyLimits::from_ref(state);
        match ahead {
            ReadAhead::Whole(bytes) if bytes.len() <= limits.max_request_bytes => Ok(RawBody {
                bytes,
                is_json: declares_json(req.headers()),
            }),
            ReadAhead::Whole(_) => Err(too_large(limits.max_request_bytes)),
            ReadAhead::TimedOut => Err(timed_out(limits.body_timeout)),
        }
    }
}

/// Whether the request's `Content-Type` is JSON ([`is_json_type`]).
fn declares_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| is_json_type(ct.as_bytes()))
}

/// 408: the body did not all arrive within the body timeout.
fn timed_out(body_timeout: Duration) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body did not arrive within {} s (--body-timeout-seconds)",
            body_timeout.as_secs()
        ),
    )
}

/// The raw request body, read under the same size limit and body timeout as [`RawBody`], for
/// front ends that take any content type (SQS, miniqueue's publish).
pub struct TimedBytes(pub Bytes);

impl<S> FromRequest<S> for TimedBytes
where
    S: Send + Sync,
    BodyLimits: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(TimedBytes(RawBody::from_request(req, state).await?.bytes))
    }
}

/// After answering a request without reading its body (a refusal from its head): go on
/// reading and discarding what the client is still sending, for a short while, so that it
/// gets to read the answer instead of a connection reset (as nginx's lingering close does).
/// At most 1 MiB and 2 s; nothing is kept.
pub fn linger(body: axum::body::Body) {
    use http_body_util::BodyExt;
    tokio::spawn(async move {
        let mut body = body;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut drained = 0usize;
        while drained < 1 << 20 {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(f))) => drained += f.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    });
}

/// `body`, cut short with an [`Overannounced`] error as soon as the chunk sizes its request
/// announced add up to more than `limit` bytes (seen by `crate::chunk_watch`), without waiting
/// for the data; what the client still sends is then lingered over. Every body reader that
/// holds bodies to a limit reads through this (or races an [`Alarm`] itself). A body that
/// declares its length, or a request the watch does not follow, is given back as it is, and
/// nothing is allocated.
pub fn refusing_overannounced(body: Body, extensions: &Extensions, limit: u64) -> Body {
    let alarm = Alarm::new(&body, extensions, limit);
    if !alarm.is_armed() {
        return body;
    }
    Body::new(Refusing {
        body: Some(body),
        alarm,
        limit,
    })
}

/// Resolves once the request's chunked body has announced more than the limit (see
/// [`refusing_overannounced`]); pending for ever if the request is not watched or the body
/// declares its length.
pub struct Alarm(Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl Alarm {
    pub fn new(body: &Body, extensions: &Extensions, limit: u64) -> Alarm {
        use axum::body::HttpBody as _;
        // The size hint first: it is cheaper than looking the extension up.
        if body.size_hint().exact().is_some() {
            return Alarm(None);
        }
        Alarm(
            extensions
                .get::<AnnouncedBody>()
                .map(|a| Box::pin(a.clone().beyond(limit)) as Pin<Box<_>>),
        )
    }

    /// Whether it can ever resolve.
    pub fn is_armed(&self) -> bool {
        self.0.is_some()
    }
}

impl Future for Alarm {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().0 {
            Some(f) => f.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// See [`refusing_overannounced`].
struct Refusing {
    /// `None` once refused.
    body: Option<Body>,
    alarm: Alarm,
    limit: u64,
}

impl hyper::body::Body for Refusing {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        if Pin::new(&mut this.alarm).poll(cx).is_ready() {
            if let Some(body) = this.body.take() {
                linger(body);
            }
            let limit = this.limit;
            return Poll::Ready(Some(Err(Box::new(Overannounced { limit }))));
        }
        Pin::new(body).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        format!("request body exceeds the limit of {limit} bytes (--max-request-bytes)"),
    )
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if s.to_string().contains("length limit exceeded") {
            return true;
        }
        src = s.source();
    }
    false
}

/// Parse JSON, reporting the path of the offending field.
///
/// The common case, valid input, is parsed directly; only a body that fails is parsed a second
/// time with path tracking (which costs about twice as much) to name the field in the error.
/// The body's UTF-8 is checked once, whole: parsing from bytes checks each string again as it
/// goes (about 3% of a batch publish's instructions).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Ok(v) = serde_json::from_str(text) {
            return Ok(v);
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg =
            if path == "." || path == "?" || path.is_empty() || inner.is_syntax() || inner.is_eof()
            {
                format!("request body is not valid JSON for this call: {inner}")
            } else {
                let inner = inner.to_string();
                format!(
                    "field `{path}`: {}",
                    crate::human_errors::humanize_serde(&inner)
                )
            };
        ApiError::bad_request("invalid_json", msg)
    })
}

/// JSON body that may be empty (then `T::default()`).
pub fn parse_json_or_default<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        Ok(T::default())
    } else {
        parse_json(bytes)
    }
}

/// Deserialize `null` as `Some(None)` and absence (with `#[serde(default)]`) as `None`.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Option::<T>::deserialize(d).map(Some)
}

/// Query-string parameters with errors in the API's shape (axum's `Query` answers plain text).
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S>
    for QueryParams<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| QueryParams(q.0))
            .map_err(|e| {
                let why = crate::human_errors::humanize_query(&e.body_text(), parts.uri.query());
                ApiError::bad_request("invalid_query", format!("query string: {why}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::is_json_type;

    #[test]
    fn json_content_types_in_any_case() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
            "APPLICATION/CloudEvents+JSON",
        ] {
            assert!(is_json_type(yes.as_bytes()), "{yes}");
        }
        for no in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "text/json",
            "",
            "application/",
        ] {
            assert!(!is_json_type(no.as_bytes()), "{no}");
        }
    }
}
