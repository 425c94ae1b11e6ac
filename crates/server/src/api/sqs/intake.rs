//! Reading an SQS request's body when signatures are checked, so that clients who are not (yet)
//! verified cannot make the server hold much memory.
//!
//! By the time a body is read, `mod.rs` has already refused, from the head alone, every request
//! without a signature, from an unknown access key, out of time or scoped elsewhere
//! (`sigv4::claim`). What is left may still be a forgery by someone who knows an access key
//! id (ids are not secret), so the body is read under a server-wide budget of *unverified*
//! bytes ([`Unverified`], twice `--max-request-bytes`): a body declaring its length reserves
//! all of it before the first byte is read, a chunked one reserves as it arrives. A request
//! that cannot get its share within the body timeout is answered 503 `ServiceUnavailable`
//! (SDKs retry it). The body's SHA-256 is computed as it streams in, for the signature check,
//! and the reservation ends when the request is verified or refused.
//!
//! Bodies declaring more than `--max-request-bytes` (`Content-Length`) are answered 413 before
//! anything is read, and so are chunked bodies as soon as their chunk sizes announce more (the
//! caller passes the body's `api::body::Alarm`, raced against both the next frame and the wait
//! for the budget, so a huge chunk is refused even while the budget is exhausted).

use std::future::Future;
use std::sync::Arc;

use axum::body::HttpBody as _;
use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::md5::hex;
use super::SqsError;
use crate::api::body::BodyLimits;

/// Bytes are reserved in units of this many.
const UNIT: usize = 1024;

/// The server-wide budget of bytes of bodies being read for requests not yet verified.
pub struct Unverified {
    units: Arc<Semaphore>,
    total: usize,
}

impl Unverified {
    /// A budget of `bytes` (at least one maximum-size request).
    pub fn new(bytes: usize) -> Self {
        let total = bytes.div_ceil(UNIT).max(1);
        Unverified {
            units: Arc::new(Semaphore::new(total)),
            total,
        }
    }
}

/// A body read in full, with its SHA-256 (hex) and the budget it holds until dropped.
pub struct Intake {
    pub bytes: Bytes,
    pub sha256: String,
    held: Vec<OwnedSemaphorePermit>,
}

impl Intake {
    /// The request is verified (or refused): its bytes no longer count against the budget.
    pub fn release(&mut self) {
        self.held.clear();
    }
}

fn too_large(limit: usize) -> SqsError {
    SqsError {
        name: "RequestEntityTooLarge",
        code: "RequestEntityTooLarge",
        status: 413,
        sender: true,
        message: format!("request body exceeds the limit of {limit} bytes (--max-request-bytes)"),
    }
}

fn timed_out(limits: &BodyLimits) -> SqsError {
    SqsError {
        name: "RequestTimeout",
        code: "RequestTimeout",
        status: 408,
        sender: true,
        message: format!(
            "the request body did not arrive within {} s (--body-timeout-seconds)",
            limits.body_timeout.as_secs()
        ),
    }
}

fn busy() -> SqsError {
    SqsError {
        name: "ServiceUnavailable",
        code: "ServiceUnavailable",
        status: 503,
        sender: false,
        message: "too many request bodies from unverified clients are being read; retry later"
            .into(),
    }
}

/// The share of the budget one request holds.
struct Share<'a> {
    budget: Option<&'a Unverified>,
    held: Vec<OwnedSemaphorePermit>,
    units: usize,
}

impl Share<'_> {
    /// Hold enough of the budget for `bytes` in all, waiting at most until `deadline`.
    async fn grow_to(
        &mut self,
        bytes: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), SqsError> {
        let Some(b) = self.budget else {
            return Ok(());
        };
        let want = bytes.div_ceil(UNIT).min(b.total).saturating_sub(self.units);
        if want == 0 {
            return Ok(());
        }
        let permit =
            tokio::time::timeout_at(deadline, b.units.clone().acquire_many_owned(want as u32))
                .await
                .map_err(|_| busy())?
                .map_err(|_| busy())?;
        self.units += want;
        self.held.push(permit);
        Ok(())
    }
}

/// `f`'s output, or `None` if `alarm` resolves first.
async fn or_alarm<T>(
    alarm: &mut (impl Future<Output = ()> + Unpin),
    f: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = alarm => None,
        out = f => Some(out),
    }
}

/// Read `body` (at most `limits.max_request_bytes`, within `limits.body_timeout`), hashing it;
/// with `budget`, under the unverified-bytes budget. Refused as too large as soon as `alarm`
/// resolves (`api::body::Alarm`: its chunks announced more than the limit).
pub async fn read(
    mut body: Body,
    limits: BodyLimits,
    budget: Option<&Unverified>,
    mut alarm: impl Future<Output = ()> + Unpin,
) -> Result<Intake, SqsError> {
    let limit = limits.max_request_bytes;
    let hint = body.size_hint();
    if hint.lower() > limit as u64 {
        crate::api::body::linger(body);
        return Err(too_large(limit));
    }
    let deadline = tokio::time::Instant::now() + limits.body_timeout;
    let mut share = Share {
        budget,
        held: Vec::new(),
        units: 0,
    };
    let declared = hint.exact().unwrap_or(0) as usize;
    share.grow_to(declared, deadline).await?;
    let mut out = Vec::with_capacity(declared);
    let mut hash = Sha256::new();
    loop {
        let next = tokio::time::timeout_at(deadline, body.frame());
        let Some(next) = or_alarm(&mut alarm, next).await else {
            crate::api::body::linger(body);
            return Err(too_large(limit));
        };
        let frame = match next {
            Err(_) => return Err(timed_out(&limits)),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(SqsError::new(
                    "InvalidRequest",
                    "InvalidRequest",
                    format!("could not read the request body: {e}"),
                ))
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if out.len() + data.len() > limit {
            crate::api::body::linger(body);
            return Err(too_large(limit));
        }
        let grown = or_alarm(&mut alarm, share.grow_to(out.len() + data.len(), deadline)).await;
        let Some(grown) = grown else {
            crate::api::body::linger(body);
            return Err(too_large(limit));
        };
        grown?;
        hash.update(&data);
        out.extend_from_slice(&data);
    }
    Ok(Intake {
        bytes: Bytes::from(out),
        sha256: hex(&hash.finalize()),
        held: share.held,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A 2000-byte chunk of a body of unknown length, waiting for a budget someone else holds.
    async fn starved(alarm_after: Option<Duration>) -> (Result<Intake, SqsError>, Duration) {
        let budget = Unverified::new(UNIT);
        let _others = budget.units.clone().acquire_many_owned(1).await.unwrap();
        let chunk = Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'x'; 2000]));
        let body = Body::from_stream(futures::stream::iter([chunk]));
        let limits = BodyLimits {
            max_request_bytes: 1 << 20,
            body_timeout: Duration::from_millis(500),
        };
        let alarm = Box::pin(async move {
            match alarm_after {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        });
        let start = std::time::Instant::now();
        let read = read(body, limits, Some(&budget), alarm).await;
        (read, start.elapsed())
    }

    #[tokio::test]
    async fn an_alarm_while_waiting_for_the_budget_is_a_413_at_once() {
        let (read, took) = starved(Some(Duration::from_millis(20))).await;
        assert_eq!(read.err().map(|e| e.status), Some(413));
        assert!(took < Duration::from_millis(400), "took {took:?}");
        let (read, _) = starved(None).await;
        assert_eq!(read.err().map(|e| e.status), Some(503), "no alarm: busy");
    }
}
