//! The awe_queue-compatible API (seed 004), so its developer tool and scripts keep working:
//! `POST /send-message`, `GET /receive-message?count=N`, `DELETE /delete-message/{key}`,
//! `GET /get-stats`, under a configurable prefix (default the root) on one queue (default `awe`).
//!
//! A key is the message id. A checkout is a receive with the queue's visibility timeout (the
//! awe queue is created with 120 s, the seed's checkout lifetime); the receipts of open
//! checkouts are kept here, by key, so that delete-message can settle them. After a restart every
//! checkout is void anyway (leased messages become visible again), so this map needs no
//! persistence. Every answer carries the seed's CORS headers. `rescue_interval` reports the
//! seed's 2 s: sluice returns expired checkouts at the next receive (and in housekeeping every
//! second), so 2 s is an upper bound that holds.
//!
//! As in the seed's Express app, every route also answers with a trailing slash (the developer
//! tool calls `GET /receive-message/?count=N`), every answer carries the CORS headers (errors,
//! 405s and, under a prefix, 404s too), and `send-message` reads what the seed's two body
//! parsers read: JSON and form-urlencoded bodies (with `message[k]=v` nesting), taking any
//! truthy `message`. A value that is not a string is stored as its JSON text (attribute
//! `awe-json`) and given back as the same JSON value by `receive-message`.
//!
//! The router has its own state ([`AweState`]: the engine, the queue, the open checkouts), built
//! in `server.rs`; the rest of the API does not know it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sluice_engine::{Attributes, Engine, MessageId, Publish, QueueConfigPatch, ReceiveOptions};

use super::body::{BodyLimits, TimedBytes};

/// The seed's checkout lifetime.
pub const CHECKOUT_LIFETIME_S: u32 = 120;

/// The engine attribute that marks a message whose `message` was not a string: its body is
/// the value's JSON text.
const JSON_ATTRIBUTE: &str = "awe-json";

/// The awe router's state.
pub struct AweState {
    engine: Arc<Engine>,
    queue: String,
    limits: BodyLimits,
    /// key -> (receipt, lease end) of its open checkout.
    checkouts: Mutex<HashMap<String, (String, i64)>>,
}

impl AweState {
    pub fn new(engine: Arc<Engine>, queue: &str, limits: BodyLimits) -> Arc<Self> {
        Arc::new(AweState {
            engine,
            queue: queue.to_string(),
            limits,
            checkouts: Mutex::new(HashMap::new()),
        })
    }
}

impl FromRef<Arc<AweState>> for BodyLimits {
    fn from_ref(s: &Arc<AweState>) -> Self {
        s.limits
    }
}

/// The default configuration of the awe queue when sluice creates it.
pub fn queue_defaults() -> QueueConfigPatch {
    QueueConfigPatch {
        visibility_timeout_seconds: Some(CHECKOUT_LIFETIME_S),
        ..Default::default()
    }
}

/// The four routes under `prefix` (empty: the root), each with and without a trailing slash,
/// with the CORS headers on every answer.
pub fn routes<S: Clone + Send + Sync + 'static>(prefix: &str, state: Arc<AweState>) -> Router<S> {
    let routes: [(&str, MethodRouter<Arc<AweState>>); 4] = [
        ("/send-message", post(send)),
        ("/receive-message", get(receive)),
        ("/delete-message/{key}", delete(remove)),
        ("/get-stats", get(stats)),
    ];
    let mut r = Router::new();
    for (path, method) in routes {
        // Express answers a method a route lacks with 404, not 405.
        let method = method.options(preflight).fallback(not_found);
        r = r
            .route(&format!("{path}/"), method.clone())
            .route(path, method);
    }
    let prefix = prefix.trim_end_matches('/');
    let r = if prefix.is_empty() {
        r
    } else {
        // Under a prefix the awe app owns every path, so its 404s carry CORS headers too.
        Router::new().nest(prefix, r).route(
            &format!("{prefix}/{{*rest}}"),
            axum::routing::any(not_found),
        )
    };
    r.layer(axum::middleware::map_response(cors_async))
        .with_state(state)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not found.")
}

async fn cors_async(r: Response) -> Response {
    cors(r)
}

fn cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Origin, X-Requested-With, Content-Type, Accept"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS, HEAD, DELETE"),
    );
    r
}

fn ok(v: Value) -> Response {
    cors((StatusCode::OK, Json(v)).into_response())
}

fn error(status: StatusCode, message: &str) -> Response {
    cors((status, Json(json!({"status": "error", "message": message}))).into_response())
}

fn engine_error(e: sluice_engine::EngineError) -> Response {
    let api: super::error::ApiError = e.into();
    error(api.status, &api.message)
}

async fn preflight() -> Response {
    cors(StatusCode::NO_CONTENT.into_response())
}

async fn ensure_queue(s: &AweState) -> Result<(), Response> {
    if s.engine.queue_info(&s.queue).await.is_err() {
        s.engine
            .put_queue(&s.queue, queue_defaults())
            .await
            .map_err(engine_error)?;
    }
    Ok(())
}

/// The `message` of a send-message body as the seed's parsers see it: form-urlencoded bodies
/// by the form parser, anything else as JSON (the seed parses JSON only under a JSON content
/// type; sluice also reads a JSON body sent without one, as it always has).
fn message_of(headers: &HeaderMap, body: &[u8]) -> Option<Value> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let from_form = form.then(|| form_message(body)).flatten();
    from_form.or_else(|| {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|mut v| v.get_mut("message").map(Value::take))
    })
}

/// `message` from form pairs, nested as the seed's extended parser (qs) nests it:
/// `message=x` is a string (repeated: a list), `message[a]=1&message[b]=2` an object,
/// `message[]=x` a list.
fn form_message(body: &[u8]) -> Option<Value> {
    let mut root: Option<Value> = None;
    for (k, v) in form_urlencoded::parse(body) {
        let Some(rest) = k.strip_prefix("message") else {
            continue;
        };
        let mut path = Vec::new();
        let mut tail = rest;
        while let Some(seg) = tail.strip_prefix('[') {
            let Some(end) = seg.find(']') else { break };
            path.push(&seg[..end]);
            tail = &seg[end + 1..];
        }
        if !tail.is_empty() {
            continue; // `messages=...` or a malformed key: not `message`
        }
        let v = Value::String(v.into_owned());
        root = Some(match root.take() {
            None if path.is_empty() => v,
            None => nest(Value::Null, &path, v),
            Some(Value::String(first)) if path.is_empty() => json!([first, v]),
            Some(Value::Array(mut a)) if path.is_empty() => {
                a.push(v);
                Value::Array(a)
            }
            Some(old) => nest(old, &path, v),
        });
    }
    root
}

fn nest(node: Value, path: &[&str], v: Value) -> Value {
    let Some((first, rest)) = path.split_first() else {
        return v;
    };
    if first.is_empty() {
        let mut a = match node {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        a.push(nest(Value::Null, rest, v));
        return Value::Array(a);
    }
    let mut m = match node {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let child = m.remove(*first).unwrap_or(Value::Null);
    m.insert(first.to_string(), nest(child, rest, v));
    Value::Object(m)
}

/// JavaScript's truthiness, which the seed's `if (!req.body.message)` applies.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

async fn send(
    State(s): State<Arc<AweState>>,
    headers: HeaderMap,
    TimedBytes(body): TimedBytes,
) -> Response {
    let Some(message) = message_of(&headers, &body).filter(truthy) else {
        // The seed answers this one in plain text.
        return cors((StatusCode::BAD_REQUEST, "Message content required.").into_response());
    };
    if let Err(r) = ensure_queue(&s).await {
        return r;
    }
    let mut attributes = Attributes::new();
    let body = match message {
        Value::String(m) => m.into_bytes(),
        other => {
            attributes.insert(JSON_ATTRIBUTE.to_string(), "true".to_string());
            other.to_string().into_bytes()
        }
    };
    match s
        .engine
        .publish(
            &s.queue,
            vec![Publish {
                body,
                attributes,
                ..Default::default()
            }],
        )
        .await
    {
        Ok(ids) => ok(json!({"status": "okay", "key": ids[0].to_string()})),
        Err(e) => engine_error(e),
    }
}

#[derive(Deserialize)]
struct Count {
    count: Option<String>,
}

async fn receive(State(s): State<Arc<AweState>>, Query(q): Query<Count>) -> Response {
    let count = match q.count.as_deref().map(str::parse::<usize>) {
        None => 1,
        Some(Ok(n)) if (1..=sluice_engine::limits::RECEIVE_BATCH_MAX).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "count must be a whole number from 1 to {}.",
                    sluice_engine::limits::RECEIVE_BATCH_MAX
                ),
            )
        }
    };
    if let Err(r) = ensure_queue(&s).await {
        return r;
    }
    let got = match s
        .engine
        .receive(
            &s.queue,
            ReceiveOptions {
                max_messages: count,
                wait_seconds: Some(0),
                visibility_timeout_seconds: None,
            },
        )
        .await
    {
        Ok(g) => g,
        Err(e) => return engine_error(e),
    };
    let mut checkouts = s.checkouts.lock();
    // Forget checkouts whose lease is over: their messages went back to the queue.
    let now = s.engine.now();
    checkouts.retain(|_, (_, until)| *until > now);
    let messages: Vec<Value> = got
        .iter()
        .map(|d| {
            let key = d.message.id.to_string();
            checkouts.insert(
                key.clone(),
                (s.engine.receipt(&s.queue, &d.receipt), d.lease_until),
            );
            json!({
                "key": key,
                "timestamp": d.message.enqueued_at,
                "retry_count": d.message.receive_count.saturating_sub(1),
                "message": stored_message(&d.message),
            })
        })
        .collect();
    let message = if messages.is_empty() {
        "No messages available in queue."
    } else if messages.len() < count {
        "Fewer messages available than requested."
    } else {
        "Requested batch-size available."
    };
    ok(json!({"status": "okay", "message": message, "messages": messages}))
}

/// A stored message as send-message was given it: a string, or the JSON value it was.
fn stored_message(m: &sluice_engine::Message) -> Value {
    if m.attributes.contains_key(JSON_ATTRIBUTE) {
        if let Ok(v) = serde_json::from_slice(&m.body) {
            return v;
        }
    }
    Value::String(String::from_utf8_lossy(&m.body).into_owned())
}

/// Deleting a key that is not checked out (unknown, already deleted, or its checkout expired and
/// the message went back to the queue) answers 404 with `{"status":"error"}`.
async fn remove(State(s): State<Arc<AweState>>, Path(key): Path<String>) -> Response {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "Message not found or not checked out.",
        )
    };
    if MessageId::parse(&key).is_none() {
        return not_found();
    }
    let Some((receipt, _)) = s.checkouts.lock().remove(&key) else {
        return not_found();
    };
    match s.engine.ack(&s.queue, &[receipt]).await {
        Ok(r) if r.first().is_some_and(|x| x.is_ok()) => ok(json!({"status": "okay"})),
        Ok(_) => not_found(),
        Err(e) => engine_error(e),
    }
}

async fn stats(State(s): State<Arc<AweState>>) -> Response {
    if let Err(r) = ensure_queue(&s).await {
        return r;
    }
    match s.engine.get_queue(&s.queue).await {
        Ok((info, st)) => ok(json!({"status": "okay", "stats": {
            "queue_length": st.ready + st.delayed,
            "checkouts_count": st.in_flight,
            "checkout_lifetime": format!("{}s", info.config.visibility_timeout_seconds),
            "rescue_interval": "2s",
        }})),
        Err(e) => engine_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Option<Value> {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        message_of(&h, body.as_bytes())
    }

    #[test]
    fn form_bodies_nest_like_the_seeds_extended_parser() {
        assert_eq!(form("message=hi+there"), Some(json!("hi there")));
        assert_eq!(form("message=a&message=b"), Some(json!(["a", "b"])));
        assert_eq!(
            form("message[a]=1&message[b][c]=2&other=x"),
            Some(json!({"a": "1", "b": {"c": "2"}}))
        );
        assert_eq!(form("message[]=x&message[]=y"), Some(json!(["x", "y"])));
        assert_eq!(form("messages=x"), None);
        // A JSON body sent with the form content type (curl -d) is still read.
        assert_eq!(form(r#"{"message":"j"}"#), Some(json!("j")));
    }

    #[test]
    fn truthiness_is_javascripts() {
        for v in [
            json!("x"),
            json!(1),
            json!(-0.5),
            json!(true),
            json!({}),
            json!([]),
        ] {
            assert!(truthy(&v), "{v}");
        }
        for v in [json!(""), json!(0), json!(false), json!(null)] {
            assert!(!truthy(&v), "{v}");
        }
    }
}
