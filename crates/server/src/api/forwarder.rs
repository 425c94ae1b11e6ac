//! The forwarder (seed 001): `POST /log` takes one record, validates it, and publishes it to
//! the queue `log`; a push subscription `forwarder` on that queue (created at start from
//! `--post-endpoint`/`WEBHOOK_POST_ENDPOINT`) sends the records on as JSON arrays when the
//! batch is full or the interval has passed, retrying 3 times 2 s apart.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use sluice_engine::push::{Backoff, BatchConfig, Subscription};
use sluice_engine::{Delivery, Engine, Publish};

use super::body::RawBody;
use super::error::ApiError;
use super::AppState;
use crate::config::ForwarderConfig;
use crate::delivery::{DeliveryObserver, PushManager};

pub const QUEUE: &str = "log";
pub const SUBSCRIPTION: &str = "forwarder";

/// The seed's record, decoded as its Go handler decodes it: every field may be missing or
/// `null` (it then has its zero value), unknown fields are ignored, and a present field must
/// have its type (`meta.logins[].time` an RFC 3339 time, as Go's `time.Time` reads it). Only
/// `user_id` 0 is refused after decoding.
#[derive(Deserialize, Default)]
#[serde(default)]
#[allow(dead_code)]
struct Record {
    #[serde(deserialize_with = "null_is_zero")]
    user_id: i64,
    #[serde(deserialize_with = "null_is_zero")]
    total: f64,
    #[serde(deserialize_with = "null_is_zero")]
    title: String,
    #[serde(deserialize_with = "null_is_zero")]
    meta: Meta,
    #[serde(deserialize_with = "null_is_zero")]
    completed: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
#[allow(dead_code)]
struct Meta {
    #[serde(deserialize_with = "null_is_zero")]
    logins: Vec<Login>,
    #[serde(deserialize_with = "null_is_zero")]
    phone_numbers: Phones,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Login {
    #[serde(deserialize_with = "null_is_zero")]
    time: Option<String>,
    #[serde(deserialize_with = "null_is_zero")]
    #[allow(dead_code)]
    ip: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
#[allow(dead_code)]
struct Phones {
    #[serde(deserialize_with = "null_is_zero")]
    home: String,
    #[serde(deserialize_with = "null_is_zero")]
    mobile: String,
}

/// Go's decoder leaves a field at its zero value when the JSON has `null`.
fn null_is_zero<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The seed's answer to a record without a user id.
pub const EMPTY_USER_ID: &str = "can not post empty user id";

/// With `--exit-on-forward-failure`, the process exits when a batch of records is
/// dead-lettered (the seed's behaviour after its retries).
struct ExitOnFailure;

impl DeliveryObserver for ExitOnFailure {
    fn settled(&self, queue: &str, subscription: &str, _: &[Delivery], delivered: bool) {
        if !delivered && queue == QUEUE && subscription == SUBSCRIPTION {
            tracing::error!(
                "forwarding failed after all retries; exiting (--exit-on-forward-failure)"
            );
            std::process::exit(1);
        }
    }
}

/// Create (or update) the forwarder's subscription from the configuration, and exit on a
/// failed batch if asked to.
pub async fn install(
    engine: &Engine,
    push: &PushManager,
    f: &ForwarderConfig,
    exit_on_failure: bool,
) -> anyhow::Result<()> {
    if exit_on_failure {
        push.add_observer(std::sync::Arc::new(ExitOnFailure));
    }
    let mut sub = Subscription::new(f.endpoint.clone());
    sub.batch = BatchConfig {
        max_messages: f.batch_size,
        max_wait_ms: f.batch_interval_ms,
    };
    // The seed: retry 3 times, waiting 2 seconds before each retry.
    sub.max_attempts = 4;
    sub.backoff = Backoff {
        initial_seconds: 2.0,
        multiplier: 1.0,
        max_seconds: 2.0,
        jitter: false,
    };
    sub.concurrency = 1;
    sub.trusted = true;
    let same = engine
        .push()
        .get(QUEUE, SUBSCRIPTION)
        .ok()
        .is_some_and(|old| {
            Subscription {
                created_at: 0,
                updated_at: 0,
                ..old
            } == sub
        });
    if !same {
        engine.push().put(QUEUE, SUBSCRIPTION, sub).await?;
    }
    tracing::info!(
        endpoint = %f.endpoint,
        batch_size = f.batch_size,
        batch_interval_ms = f.batch_interval_ms,
        "forwarder started: records POSTed to /log are forwarded in batches"
    );
    Ok(())
}

/// Without `--post-endpoint`, a forwarder subscription left from an earlier run is removed
/// (its undelivered records stay in the queue `log`, to pull or to forward again later).
pub async fn uninstall(engine: &Engine) -> anyhow::Result<()> {
    if engine
        .push()
        .get(QUEUE, SUBSCRIPTION)
        .is_ok_and(|s| s.trusted)
    {
        // Keep the records: move them back into `log` first.
        engine
            .push()
            .delete_keeping_copies(QUEUE, SUBSCRIPTION)
            .await?;
        tracing::info!("forwarder not configured: removed the forwarder subscription of an earlier run; queued records stay in the queue \"log\"");
    }
    Ok(())
}

/// `POST /log`: validate the seed's record and queue it for forwarding. `201` once it is on
/// disk, as the seed's `TestLogHandler` expects.
pub async fn log(State(s): State<AppState>, body: RawBody) -> Response {
    let mut de = serde_json::Deserializer::from_slice(&body.bytes);
    // Like Go's json.Decoder, read the first JSON value and ignore what follows it.
    let rec: Record = match serde_path_to_error::deserialize(&mut de) {
        Ok(r) => r,
        Err(e) => {
            let path = e.path().to_string();
            let field = if path == "." {
                "body".to_string()
            } else {
                path
            };
            return ApiError::bad_request("invalid_record", format!("{field}: {}", e.into_inner()))
                .into_response();
        }
    };
    for (i, l) in rec.meta.logins.iter().enumerate() {
        let Some(time) = &l.time else { continue };
        if chrono::DateTime::parse_from_rfc3339(time).is_err() {
            return ApiError::bad_request(
                "invalid_record",
                format!("meta.logins[{i}].time: {time:?} is not an RFC 3339 time"),
            )
            .into_response();
        }
    }
    if rec.user_id == 0 {
        return ApiError::bad_request("invalid_record", EMPTY_USER_ID).into_response();
    }
    tracing::info!(
        user_id = rec.user_id,
        bytes = body.bytes.len(),
        "POST /log: record received"
    );
    match s
        .engine
        .publish(
            QUEUE,
            vec![Publish {
                body: body.bytes.to_vec(),
                ..Default::default()
            }],
        )
        .await
    {
        Ok(ids) => (
            StatusCode::CREATED,
            Json(json!({"status": "queued", "id": ids[0].to_string()})),
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
