//! Publish: one message, a batch, or a raw body, with the per-message options (delay, group,
//! deduplication id, priority, time to live) and the `Idempotency-Key` header. The handler
//! translates the request into `Publish`es and the engine's answer (`Published`, with its
//! `duplicate` flag) into `201` or, for a repeat, `200`; every rule about those options is the
//! engine's. What is left here is the header's mapping: a single message takes the key as its
//! deduplication id, a batch entry `KEY:INDEX`.

use std::collections::BTreeMap;

use axum::extract::{Extension, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sluice_engine::clock::parse_rfc3339;
use sluice_engine::json_out::{plain, text};
use sluice_engine::limits::{FIFO_ID_MAX, PRIORITY_MAX};
use sluice_engine::validate::validate_fifo_id;
use sluice_engine::{range, Publish, Published as Outcome};
use utoipa::{IntoParams, ToSchema};

use super::json_answer;
use crate::api::body::{parse_json, QueryParams, RawBody};
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::AppState;
use crate::auth::{if_missing, Principal};

/// The request header that makes a publish idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// One message. Give `body` (text) or `body_base64` (bytes), not both.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    pub body: Option<String>,
    pub body_base64: Option<String>,
    /// 0-31536000 s; default: the queue's delay.
    pub delay_seconds: Option<u32>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The message group (also accepted as `group`), 1-128 printable ASCII characters. FIFO
    /// queues (`.fifo`): required; order holds within a group. Standard queues: receives take
    /// turns between groups (fair queues).
    #[serde(alias = "group")]
    pub message_group_id: Option<String>,
    /// The deduplication (idempotency) id (also accepted as `dedup_id`), 1-128 printable ASCII
    /// characters: a repeat within the queue's `dedup_window_seconds` (default 300) stores
    /// nothing and answers the first message's id with `duplicate: true`. FIFO queues need one
    /// unless they deduplicate by content.
    #[serde(alias = "dedup_id")]
    pub deduplication_id: Option<String>,
    /// 0-9, higher first; default 4. Standard queues only.
    #[schema(minimum = 0, maximum = 9)]
    pub priority: Option<u32>,
    /// Time to live, 1-1209600 s (14 days): the message is never delivered after it. Default:
    /// the queue's `default_ttl_seconds`. Not together with `expires_at`.
    pub ttl_seconds: Option<u32>,
    /// The end of the message's life as an RFC 3339 time: in the future, at most 14 days
    /// ahead. Not together with `ttl_seconds`.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// A batch of up to 1000 messages. (Documents the shape in OpenAPI; parsing goes through
/// `PublishEither`.)
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBatchBody {
    pub messages: Vec<PublishBody>,
}

/// The publish body as parsed: either a single message or `messages`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishEither {
    body: Option<String>,
    body_base64: Option<String>,
    delay_seconds: Option<u32>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(alias = "group")]
    message_group_id: Option<String>,
    #[serde(alias = "dedup_id")]
    deduplication_id: Option<String>,
    priority: Option<u32>,
    ttl_seconds: Option<u32>,
    expires_at: Option<String>,
    messages: Option<Vec<PublishBody>>,
}

impl PublishEither {
    /// The single message's fields; a batch must leave them all out.
    fn single(self) -> (PublishBody, Option<Vec<PublishBody>>) {
        let one = PublishBody {
            body: self.body,
            body_base64: self.body_base64,
            delay_seconds: self.delay_seconds,
            attributes: self.attributes,
            message_group_id: self.message_group_id,
            deduplication_id: self.deduplication_id,
            priority: self.priority,
            ttl_seconds: self.ttl_seconds,
            expires_at: self.expires_at,
        };
        (one, self.messages)
    }
}

impl PublishBody {
    fn is_empty(&self) -> bool {
        self.body.is_none()
            && self.body_base64.is_none()
            && self.delay_seconds.is_none()
            && self.attributes.is_empty()
            && self.message_group_id.is_none()
            && self.deduplication_id.is_none()
            && self.priority.is_none()
            && self.ttl_seconds.is_none()
            && self.expires_at.is_none()
    }
}

#[derive(Serialize, ToSchema)]
pub struct Published {
    /// The message's id; for a duplicate, the id of the message first published with that
    /// deduplication id.
    pub id: String,
    /// Present (true) when the deduplication id (or `Idempotency-Key`) was seen within the
    /// queue's window: nothing was stored, and the answer is `200`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// Set when the raw body looked like a JSON envelope (`{"body": ...}`) sent without
    /// `Content-Type: application/json`: it was stored as text, and this says how to publish
    /// its `body` instead. Also sent as the `Sluice-Hint` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PublishedBatch {
    /// In request order; a duplicate's is the first message's id.
    pub ids: Vec<String>,
    /// Parallel to `ids`, present only when at least one entry was a duplicate (nothing stored
    /// for it). Every entry a duplicate: the answer is `200`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<Vec<bool>>,
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct PublishQuery {
    /// Delay for a raw (non-JSON) body.
    pub delay_seconds: Option<u32>,
}

/// The hint for a raw body that is really a publish envelope sent without a JSON content type
/// (`curl -d '{"body":"x"}'` sends `application/x-www-form-urlencoded`).
fn envelope_hint(bytes: &[u8]) -> Option<&'static str> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes).ok()?;
    ["body", "body_base64", "messages"]
        .iter()
        .any(|k| v.contains_key(*k))
        .then_some(
            "this body looks like a JSON publish envelope but was sent without Content-Type: \
             application/json, so it was stored as the message text itself; to publish its \
             \"body\", send it with -H 'content-type: application/json'",
        )
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_argument", message)
}

/// The name of a message's field in errors: `body`, or `messages[3].body` for a batch entry.
/// Built only for an error, not for every entry of every batch.
fn field(entry: Option<usize>, name: &str) -> String {
    match entry {
        Some(i) => format!("messages[{i}].{name}"),
        None => name.to_string(),
    }
}

/// One message of the request as the engine's `Publish`; `entry` is its place in a batch.
fn to_publish(p: PublishBody, entry: Option<usize>) -> ApiResult<Publish> {
    let f = |name: &str| field(entry, name);
    let body = match (p.body, p.body_base64) {
        (Some(b), None) => b.into_bytes(),
        (None, Some(b64)) => B64
            .decode(b64.as_bytes())
            .map_err(|e| invalid(format!("{}: not valid base64: {e}", f("body_base64"))))?,
        (None, None) => return Err(invalid(format!("{}: required (or body_base64)", f("body")))),
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "{}: give either body or body_base64, not both",
                f("body")
            )))
        }
    };
    let expires_at = match p.expires_at {
        Some(t) => Some(parse_rfc3339(&t).ok_or_else(|| {
            invalid(format!(
                "{}: is {t:?}; must be an RFC 3339 time such as 2026-12-31T23:59:00Z",
                f("expires_at")
            ))
        })?),
        None => None,
    };
    // Taken wider than the engine's u8, so that 300 is refused like 10, naming the range.
    let priority = match p.priority {
        Some(v) => match u8::try_from(v) {
            Ok(b) => Some(b),
            Err(_) => {
                range(&f("priority"), v.into(), 0, PRIORITY_MAX.into())?;
                None
            }
        },
        None => None,
    };
    Ok(Publish {
        body,
        attributes: p.attributes,
        delay_seconds: p.delay_seconds,
        group: p.message_group_id,
        dedup_id: p.deduplication_id,
        priority,
        ttl_seconds: p.ttl_seconds,
        expires_at,
    })
}

/// The `Idempotency-Key` header, checked like a deduplication id. An extractor that reads the
/// one header in place (axum's `HeaderMap` extractor copies every header of the request).
pub struct IdempotencyKey(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        let Some(v) = parts.headers.get(IDEMPOTENCY_KEY) else {
            return Ok(IdempotencyKey(None));
        };
        let key = String::from_utf8_lossy(v.as_bytes()).into_owned();
        validate_fifo_id(&key, "Idempotency-Key")?;
        Ok(IdempotencyKey(Some(key)))
    }
}

/// A single message's deduplication id from the header (the same as the body's, if any).
fn key_one(m: &mut Publish, key: Option<String>) -> ApiResult<()> {
    let Some(key) = key else { return Ok(()) };
    match &m.dedup_id {
        Some(d) if *d != key => Err(invalid(format!(
            "Idempotency-Key: is {key:?} but the body's deduplication_id is {d:?}; give one of \
             them, or the same value in both"
        ))),
        _ => {
            m.dedup_id = Some(key);
            Ok(())
        }
    }
}

/// A batch's entries without their own deduplication id get `KEY:INDEX`, so a retried request
/// stores each entry once.
fn key_batch(msgs: &mut [Publish], key: Option<String>) -> ApiResult<()> {
    let Some(key) = key else { return Ok(()) };
    let longest = key.len() + 1 + msgs.len().saturating_sub(1).to_string().len();
    if longest > FIFO_ID_MAX {
        return Err(invalid(format!(
            "Idempotency-Key: is {} characters; each entry of this batch of {} gets KEY:INDEX, \
             which must stay within {FIFO_ID_MAX} characters, so the key may have at most {}",
            key.len(),
            msgs.len(),
            FIFO_ID_MAX - (longest - key.len())
        )));
    }
    for (i, m) in msgs.iter_mut().enumerate() {
        if m.dedup_id.is_none() {
            m.dedup_id = Some(format!("{key}:{i}"));
        }
    }
    Ok(())
}

/// `201` for a new message, `200` for a duplicate.
fn status_of(duplicate: bool) -> StatusCode {
    if duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    }
}

/// Publish one message, or a batch with `{"messages":[...]}`. The queue is created if missing
/// (without API keys, or with a key that may create queues; else 404).
/// With any Content-Type other than JSON, the raw request body is the message body.
/// A repeat of a deduplication id (or `Idempotency-Key`) within the queue's window stores
/// nothing and answers `200` with the first message's id and `duplicate: true`.
#[utoipa::path(post, path = "/v1/queues/{queue}/messages", tag = "messages",
    params(("queue" = String, Path), PublishQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "1-128 printable ASCII \
         characters. One message: its deduplication id. A batch: each entry without its own \
         gets KEY:INDEX (its place in the batch), so a retried request stores each entry once.")),
    request_body(content = PublishBody, description = "or PublishBatchBody, or any raw body"),
    responses((status = 201, description = "durably stored (PublishedBatch for a batch)", body = Published),
        (status = 200, description = "a duplicate: nothing stored (for a batch, every entry a duplicate)", body = Published),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn publish(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    QueryParams(q): QueryParams<PublishQuery>,
    caller: Option<Extension<Principal>>,
    IdempotencyKey(key): IdempotencyKey,
    body: RawBody,
) -> ApiResult<Response> {
    let missing = if_missing(caller.as_deref());
    if !body.is_json {
        let hint = envelope_hint(&body.bytes);
        let mut m = Publish {
            body: body.bytes.to_vec(),
            delay_seconds: q.delay_seconds,
            ..Default::default()
        };
        key_one(&mut m, key)?;
        let out = s.engine.publish_detailed(&queue, vec![m], missing).await?;
        let mut resp = one_answer(&out[0], hint);
        if let Some(h) = hint {
            tracing::warn!(queue = %queue, "a JSON publish envelope was sent without Content-Type: application/json and stored as text");
            resp.headers_mut()
                .insert("sluice-hint", axum::http::HeaderValue::from_static(h));
        }
        return Ok(resp);
    }
    // One parse for both shapes: a batch has `messages`, a single message has the rest.
    let (one, messages) = parse_json::<PublishEither>(&body.bytes)?.single();
    if let Some(messages) = messages {
        if !one.is_empty() {
            return Err(invalid(
                "messages: a batch takes only `messages`; put body, delay_seconds, attributes \
                 and the other message fields inside each message"
                    .into(),
            ));
        }
        let mut msgs = messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| to_publish(m, Some(i)))
            .collect::<ApiResult<Vec<_>>>()?;
        key_batch(&mut msgs, key)?;
        let out = s.engine.publish_detailed(&queue, msgs, missing).await?;
        Ok(batch_answer(&out))
    } else {
        let mut m = to_publish(one, None)?;
        key_one(&mut m, key)?;
        let out = s.engine.publish_detailed(&queue, vec![m], missing).await?;
        Ok(one_answer(&out[0], None))
    }
}

// The two answers below are `Published` and `PublishedBatch` (their shapes in OpenAPI, tested
// against serde's output) written by hand: an id is hex and hyphens, so only a hint needs
// escaping, and the answer is one buffer of the right size. Through serde_json they cost
// about 7% of a batch's instructions (callgrind), most of it escaping the ids.

/// A single message's answer: `{"id":"…"}`, with `"duplicate":true` for a repeat and the
/// raw-body `hint` when there is one (the only part that may need escaping).
fn one_answer(out: &Outcome, hint: Option<&str>) -> Response {
    let mut id = [0u8; 36];
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(b"{\"id\":");
    plain(&mut body, out.id.encode(&mut id));
    if out.duplicate {
        body.extend_from_slice(b",\"duplicate\":true");
    }
    if let Some(h) = hint {
        body.extend_from_slice(b",\"hint\":");
        text(&mut body, h);
    }
    body.push(b'}');
    json_answer(status_of(out.duplicate), body)
}

/// A batch's answer: `{"ids":[…]}`, with `"duplicate":[…]` beside it when any entry was a
/// repeat; `200` when all were.
fn batch_answer(out: &[Outcome]) -> Response {
    let any = out.iter().any(|p| p.duplicate);
    let all = out.iter().all(|p| p.duplicate);
    let mut id = [0u8; 36];
    let mut body = Vec::with_capacity(16 + out.len() * if any { 45 } else { 39 });
    body.extend_from_slice(b"{\"ids\":[");
    for (i, p) in out.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        plain(&mut body, p.id.encode(&mut id));
    }
    body.push(b']');
    if any {
        body.extend_from_slice(b",\"duplicate\":[");
        for (i, p) in out.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(if p.duplicate { b"true" } else { b"false" });
        }
        body.push(b']');
    }
    body.push(b'}');
    json_answer(status_of(all), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(n: usize) -> Vec<Publish> {
        (0..n).map(|_| Publish::default()).collect()
    }

    #[test]
    fn a_batch_key_numbers_the_entries_without_their_own_id() {
        let mut m = msgs(3);
        m[1].dedup_id = Some("own".into());
        key_batch(&mut m, Some("k".into())).unwrap();
        let ids: Vec<_> = m.iter().map(|p| p.dedup_id.clone().unwrap()).collect();
        assert_eq!(ids, ["k:0", "own", "k:2"]);
    }

    #[test]
    fn a_batch_key_leaves_room_for_the_index() {
        let mut m = msgs(1000);
        let err = key_batch(&mut m, Some("x".repeat(125))).unwrap_err();
        assert!(err.message.contains("at most 124"), "{}", err.message);
        key_batch(&mut m, Some("x".repeat(124))).unwrap();
        assert_eq!(m[999].dedup_id.as_ref().unwrap().len(), 128);
    }

    /// The answers written by hand are what serde writes for their documented shapes.
    #[test]
    fn the_answers_match_their_documented_shapes() {
        async fn text(r: Response) -> (StatusCode, String) {
            let status = r.status();
            assert_eq!(r.headers()["content-type"], "application/json");
            let b = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            (status, String::from_utf8(b.to_vec()).unwrap())
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let a = sluice_engine::MessageId::new_v7();
        let b = sluice_engine::MessageId::new_v7();
        let o = |id, duplicate| Outcome { id, duplicate };
        let hint = "a \"quoted\" hint\\";
        for (p, h) in [
            (o(a, false), None),
            (o(b, true), None),
            (o(a, false), Some(hint)),
            (o(b, true), Some(hint)),
        ] {
            let want = Published {
                id: p.id.to_string(),
                duplicate: p.duplicate,
                hint: h.map(str::to_string),
            };
            let (status, got) = rt.block_on(text(one_answer(&p, h)));
            assert_eq!(status, status_of(p.duplicate));
            assert_eq!(got, serde_json::to_string(&want).unwrap());
        }
        for batch in [
            vec![o(a, false)],
            vec![o(a, false), o(b, false)],
            vec![o(a, false), o(b, true), o(a, false)],
            vec![o(a, true), o(b, true)],
        ] {
            let want = PublishedBatch {
                ids: batch.iter().map(|p| p.id.to_string()).collect(),
                duplicate: batch
                    .iter()
                    .any(|p| p.duplicate)
                    .then(|| batch.iter().map(|p| p.duplicate).collect()),
            };
            let (status, got) = rt.block_on(text(batch_answer(&batch)));
            assert_eq!(status, status_of(batch.iter().all(|p| p.duplicate)));
            assert_eq!(got, serde_json::to_string(&want).unwrap());
        }
    }

    #[test]
    fn a_single_key_must_match_the_body_id() {
        let mut m = Publish {
            dedup_id: Some("a".into()),
            ..Default::default()
        };
        key_one(&mut m, Some("a".into())).unwrap();
        assert!(key_one(&mut m, Some("b".into())).is_err());
        let mut m = Publish::default();
        key_one(&mut m, Some("b".into())).unwrap();
        assert_eq!(m.dedup_id.as_deref(), Some("b"));
    }
}
