//! The SQS-compatible front end, on the same port as the native API: real AWS SDKs and CLIs work
//! against `endpoint_url=http://HOST:PORT`.
//!
//! Two protocols, one implementation per action (`actions.rs` is the table):
//! - AWS JSON 1.0: `POST /` with `X-Amz-Target: AmazonSQS.<Action>` (current boto3, aws-cli,
//!   JS SDK v3);
//! - the query protocol: `Action=...` form-encoded in a `POST` body or in the query string of
//!   any method (`GET /?Action=ListQueues`, presigned URLs), on `/` or on a queue URL
//!   (`/ACCOUNT/NAME`), answered in XML (`query.rs` translates both ways). A `GET /` without
//!   `Action` is the dashboard.
//!
//! Modules, each depending only on those after it: `actions` (the table) → `queues`,
//! `permissions`, `messages`, `receive`, `moves` (the actions) → `queue_attrs`, `attrs`
//! (attribute rules) → `md5` → `input` (parameters) → `error`. The router has its own state
//! ([`SqsState`]), built in `server.rs`.
//!
//! Queue URLs are `http://HOST/000000000000/NAME`, HOST following the request's Host header unless
//! `--sqs-base-url` overrides it; ARNs are `arn:aws:sqs:REGION:000000000000:NAME`, REGION taken
//! from the request's SigV4 credential scope (default us-east-1). Signatures are accepted
//! without checking unless access keys are configured (`--sqs-credentials`, or SQS pairs in
//! `--auth-keys`), then verified (`sigv4.rs`) in this order: the head alone first (a missing
//! signature, an unknown access key, a stale date, a scope naming another service or region,
//! and a role that cannot run the action when the head names it: refused before a byte of
//! the body is read), then the body is read under the unverified-bytes budget and hashed as it
//! arrives (`intake.rs`), then the signature is checked, and only then is the body parsed.
//!
//! Query-protocol parameters come from one place, as AWS takes them: the form body when there
//! is one, else the query string (a query string cannot override a body's `Action`).

mod actions;
mod attrs;
mod error;
mod input;
mod intake;
mod md5;
mod messages;
mod moves;
mod permissions;
mod query;
mod queue_attrs;
mod queues;
mod receive;
mod sigv4;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRef, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use parking_lot::Mutex;
use serde_json::Value;
use sluice_engine::{Engine, MessageId};

use super::body::BodyLimits;
use crate::auth::Auth;
pub use error::SqsError;

pub const ACCOUNT: &str = "000000000000";

/// How the SQS API is set up (`--sqs-*`).
#[derive(Default)]
pub struct SqsOptions {
    pub base_url: Option<String>,
    /// Access key id -> secret. Empty (and no API keys): signatures are not checked.
    pub credentials: Vec<(String, String)>,
    /// The region credential scopes must name (`--sqs-region`); None: any.
    pub region: Option<String>,
    /// PurgeQueue's cooldown per queue (0: none).
    pub purge_interval_seconds: u64,
}

/// The SQS router's state: the engine and access rules, and what the adapter keeps besides the
/// engine (FIFO receive attempts, purge times, cancel requests of move tasks).
pub struct SqsState {
    engine: Arc<Engine>,
    auth: Arc<Auth>,
    limits: BodyLimits,
    base_url: Option<String>,
    credentials: Vec<(String, String)>,
    region: Option<String>,
    /// Bytes of bodies being read for requests whose signature is not verified yet.
    unverified: intake::Unverified,
    purge_interval_ms: i64,
    /// ReceiveRequestAttemptId -> (valid until, the answer given).
    attempts: Mutex<HashMap<String, (i64, Value)>>,
    /// Queue -> when it was last purged.
    purges: Mutex<HashMap<String, i64>>,
    /// Handles of move tasks asked to stop.
    cancels: Mutex<HashSet<String>>,
}

impl SqsState {
    pub fn new(
        engine: Arc<Engine>,
        auth: Arc<Auth>,
        limits: BodyLimits,
        opts: SqsOptions,
    ) -> Arc<Self> {
        Arc::new(SqsState {
            engine,
            auth,
            limits,
            base_url: opts.base_url,
            credentials: opts.credentials,
            region: opts.region,
            unverified: intake::Unverified::new(2 * limits.max_request_bytes),
            purge_interval_ms: opts.purge_interval_seconds as i64 * 1000,
            attempts: Mutex::default(),
            purges: Mutex::default(),
            cancels: Mutex::default(),
        })
    }

    /// Are signatures checked (access keys configured)?
    fn checks_signatures(&self) -> bool {
        !self.credentials.is_empty() || self.auth.enabled()
    }

    /// Resume the message move tasks that were running when the server stopped.
    pub async fn resume_move_tasks(self: &Arc<Self>) -> Result<(), sluice_engine::EngineError> {
        moves::resume(self.clone()).await
    }
}

impl FromRef<Arc<SqsState>> for BodyLimits {
    fn from_ref(s: &Arc<SqsState>) -> Self {
        s.limits
    }
}

/// The SQS API's routes: the root (JSON 1.0 and query protocol; a plain `GET /` is the
/// dashboard) and queue URLs.
pub fn routes<S: Clone + Send + Sync + 'static>(state: Arc<SqsState>) -> Router<S> {
    Router::new()
        .route("/", any(entry))
        .route("/{account}/{queue}", any(entry_queue))
        .with_state(state)
}

pub struct Ctx<'a> {
    pub engine: &'a Engine,
    pub sqs: &'a Arc<SqsState>,
    base: String,
    pub region: String,
    queue_from_path: Option<String>,
    /// The caller, when API keys are on: lists show it only the queues it covers.
    pub principal: Option<crate::auth::Principal>,
}

impl Ctx<'_> {
    pub fn url(&self, name: &str) -> String {
        format!("{}/{ACCOUNT}/{name}", self.base)
    }
    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:sqs:{}:{ACCOUNT}:{name}", self.region)
    }
    /// The queue a request is about: `QueueUrl`, else the request path.
    pub fn queue(&self, input: &Value) -> Result<String, SqsError> {
        let name = match input.get("QueueUrl").and_then(|u| u.as_str()) {
            Some(url) if !url.is_empty() => url
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
            _ => self
                .queue_from_path
                .clone()
                .ok_or_else(|| SqsError::missing("QueueUrl"))?,
        };
        if sluice_engine::validate_queue_name(&name).is_err() {
            return Err(SqsError::no_queue());
        }
        Ok(name)
    }
}

/// The queue name in an SQS ARN (`arn:aws:sqs:region:account:name`).
pub fn name_of_arn(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.split(':').collect();
    (parts.len() == 6 && parts[0] == "arn" && parts[2] == "sqs").then(|| parts[5])
}

/// Does the query string name an action (`GET /?Action=...`, presigned URLs)?
fn names_action(uri: &axum::http::Uri) -> bool {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).any(|(k, _)| k == "Action")
}

/// `/`: every request with `Action` (query string or body) or `X-Amz-Target` is SQS; a `GET`
/// or `HEAD` without one is the dashboard's page.
async fn entry(State(s): State<Arc<SqsState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let reads = parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD;
    if reads && !names_action(&parts.uri) && !parts.headers.contains_key("x-amz-target") {
        return crate::ui::index(parts.headers).await;
    }
    handle(&s, parts, None, body).await
}

/// A queue URL (`/ACCOUNT/NAME`) with a numeric account: SQS when POSTed or when the query
/// string names an action, else not a route.
async fn entry_queue(
    State(s): State<Arc<SqsState>>,
    Path((account, queue)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    if (parts.method != axum::http::Method::POST && !names_action(&parts.uri))
        || account.is_empty()
        || !account.bytes().all(|b| b.is_ascii_digit())
    {
        return super::error::not_found().await.into_response();
    }
    handle(&s, parts, Some(queue), body).await
}

enum Protocol {
    Json,
    Query,
}

/// Read a request's protocol, action and input: AWS JSON 1.0 when `X-Amz-Target` is present
/// (the action from the header, the input from the JSON body), else the query protocol (form
/// pairs from the body, or from the URL's query when there is no body, rebuilt into the JSON
/// shape by `query.rs`). Pure: the fuzz target `sqs_request` drives it with arbitrary bytes.
fn decode(
    target: Option<&str>,
    query_string: &str,
    body: &[u8],
) -> (Protocol, String, Result<Value, SqsError>) {
    match target {
        Some(t) => {
            let action = t.strip_prefix("AmazonSQS.").unwrap_or(t).to_string();
            let input = if body.iter().all(|b| b.is_ascii_whitespace()) {
                Ok(Value::Object(Default::default()))
            } else {
                serde_json::from_slice::<Value>(body).map_err(|e| {
                    SqsError::new(
                        "SerializationException",
                        "SerializationException",
                        format!("invalid JSON: {e}"),
                    )
                })
            };
            (Protocol::Json, action, input)
        }
        None => {
            // One place, as AWS does: a query string never adds to (or overrides) a body.
            let source = if body.iter().all(|b| b.is_ascii_whitespace()) {
                query_string.as_bytes()
            } else {
                body
            };
            let pairs: Vec<(String, String)> =
                form_urlencoded::parse(source).into_owned().collect();
            let action = pairs
                .iter()
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let input = Ok(query::input_from_form(&action, &pairs));
            (Protocol::Query, action, input)
        }
    }
}

/// The fuzz target `sqs_request`: decode a request as either protocol, run the engine-free
/// input checks of the actions on it (messages, attributes, batches, visibility, tags), and
/// render the input back as a query-protocol answer. Must never panic.
#[doc(hidden)]
pub fn fuzz_request(target: Option<&str>, query_string: &str, body: &[u8]) {
    let (_, action, input) = decode(target, query_string, body);
    match input {
        Ok(v) => {
            actions::fuzz_inputs(&v);
            let xml = query::success_xml(&action, &v, "fuzz");
            assert!(xml.starts_with('<'));
        }
        Err(e) => {
            let _ = query::error_xml("Sender", e.code, &e.message, "fuzz");
        }
    }
}

/// The largest body a key whose role cannot send messages may send (its largest legitimate
/// request, a batch of ten receipts or a queue's attributes, is a few KiB).
const SMALL_BODY_BYTES: usize = 64 * 1024;

/// The action a request's head names, if it does (JSON protocol, or a query-protocol request
/// without a body): enough to refuse a key whose role cannot run it before the body is read.
fn action_in_head(parts: &axum::http::request::Parts, body: &Body) -> Option<String> {
    use axum::body::HttpBody as _;
    if let Some(t) = parts.headers.get("x-amz-target") {
        let t = t.to_str().ok()?;
        return Some(t.strip_prefix("AmazonSQS.").unwrap_or(t).to_string());
    }
    if body.size_hint().exact() != Some(0) {
        return None;
    }
    form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
}

/// Authenticate (when keys are configured), read the body, and run the action. See the module
/// doc for the order of the checks.
async fn handle(
    s: &Arc<SqsState>,
    parts: axum::http::request::Parts,
    queue: Option<String>,
    body: Body,
) -> Response {
    let request_id = MessageId::new_v7().to_string();
    let protocol = if parts.headers.contains_key("x-amz-target") {
        Protocol::Json
    } else {
        Protocol::Query
    };
    // 1. From the head alone: who claims to sign it, and may that key run the action at all.
    let claim = match claim_in_head(s, &parts, &body) {
        Ok(c) => c,
        Err(e) => {
            super::body::linger(body);
            return respond(protocol, "", Err(e), &request_id);
        }
    };
    // 2. The body, hashed as it arrives; unverified bytes count against the budget. A
    // query-protocol POST names its action in the body, so its role is checked after it is
    // read; a key whose role cannot send messages never needs a large body, so its bodies
    // are held to `SMALL_BODY_BYTES` before anything is read.
    let budget = claim.as_ref().map(|_| &s.unverified);
    let mut limits = s.limits;
    if let Some(c) = &claim {
        if s.auth
            .sqs_role_allows(&c.access_key, "SendMessage")
            .is_err()
        {
            limits.max_request_bytes = limits.max_request_bytes.min(SMALL_BODY_BYTES);
        }
    }
    let alarm = super::body::Alarm::new(&body, &parts.extensions, limits.max_request_bytes as u64);
    let mut intake = match intake::read(body, limits, budget, alarm).await {
        Ok(b) => b,
        Err(e) => return respond(protocol, "", Err(e), &request_id),
    };
    // 3. The signature itself.
    let signer = match &claim {
        Some(c) => {
            let verified = c.verify(&parts.method, &parts.uri, &parts.headers, &intake.sha256);
            intake.release();
            match verified {
                Ok(key) => Some(key),
                Err(e) => return respond(protocol, "", Err(e), &request_id),
            }
        }
        None => None,
    };
    let (_, action, input) = decode(
        parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok()),
        parts.uri.query().unwrap_or_default(),
        &intake.bytes,
    );
    let headers = &parts.headers;
    let base = match &s.base_url {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => format!(
            "http://{}",
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1:8080")
        ),
    };
    let mut ctx = Ctx {
        engine: &s.engine,
        sqs: s,
        base,
        region: sigv4::region(headers, &parts.uri).unwrap_or_else(|| "us-east-1".to_string()),
        queue_from_path: queue,
        principal: None,
    };
    // 4. With keys, the signing pair's role must allow the action on the queue.
    let authorized = match signer {
        None => Ok(()),
        Some(key) => {
            let q = ctx
                .queue_from_path
                .clone()
                .or_else(|| queue_in_input(input.as_ref().ok()?));
            ctx.principal = s.auth.sqs_principal(&key);
            s.auth
                .sqs_allows(&key, &action, q.as_deref())
                .map_err(|m| sigv4::denied("AccessDenied", &m))
        }
    };
    let result = match authorized.and(input) {
        Ok(input) => {
            if action.is_empty() {
                Err(SqsError::new(
                    "MissingAction",
                    "MissingAction",
                    "The request must contain the parameter Action.",
                ))
            } else {
                actions::dispatch(&ctx, &action, &input).await
            }
        }
        Err(e) => Err(e),
    };
    metrics::counter!("sluice_sqs_requests_total", "action" => action.clone(), "outcome" => if result.is_ok() { "ok" } else { "error" }).increment(1);
    respond(protocol, &action, result, &request_id)
}

/// Step 1 of [`handle`], from the head alone: the signature a request claims (`None` when the
/// server checks none), and whether that key may run the action the head names at all.
fn claim_in_head(
    s: &SqsState,
    parts: &axum::http::request::Parts,
    body: &Body,
) -> Result<Option<sigv4::Claim>, SqsError> {
    if !s.checks_signatures() {
        return Ok(None);
    }
    let scope = sigv4::Scope {
        service: "sqs",
        region: s.region.as_deref(),
    };
    let c = sigv4::claim(
        &s.credentials,
        scope,
        &parts.uri,
        &parts.headers,
        s.engine.now(),
    )?;
    if let Some(action) = action_in_head(parts, body) {
        s.auth
            .sqs_role_allows(&c.access_key, &action)
            .map_err(|m| sigv4::denied("AccessDenied", &m))?;
    }
    Ok(Some(c))
}

/// The queue an action's input names: the last part of its `QueueUrl`, or its `QueueName`.
fn queue_in_input(v: &Value) -> Option<String> {
    v.get("QueueUrl")
        .and_then(|u| u.as_str())
        .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
        .or_else(|| v.get("QueueName").and_then(|n| n.as_str()))
        .map(str::to_string)
}

/// An answer in the protocol's shape.
fn respond(
    protocol: Protocol,
    action: &str,
    result: Result<Value, SqsError>,
    request_id: &str,
) -> Response {
    let rid = HeaderValue::from_str(request_id).expect("uuid is a header value");
    match (protocol, result) {
        (Protocol::Json, Ok(out)) => {
            let mut r = (StatusCode::OK, serde_json::to_vec(&out).expect("json")).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.0"),
            );
            r.headers_mut().insert("x-amzn-requestid", rid);
            r
        }
        (Protocol::Json, Err(e)) => {
            let body = serde_json::json!({"__type": format!("com.amazonaws.sqs#{}", e.name), "message": e.message});
            let mut r = (
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                serde_json::to_vec(&body).expect("json"),
            )
                .into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.0"),
            );
            r.headers_mut().insert("x-amzn-requestid", rid);
            let kind = if e.sender { "Sender" } else { "Receiver" };
            if let Ok(v) = HeaderValue::from_str(&format!("{};{kind}", e.code)) {
                r.headers_mut().insert("x-amzn-query-error", v);
            }
            r
        }
        (Protocol::Query, Ok(out)) => {
            let mut r =
                (StatusCode::OK, query::success_xml(action, &out, request_id)).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
            r.headers_mut().insert("x-amzn-requestid", rid);
            r
        }
        (Protocol::Query, Err(e)) => {
            let kind = if e.sender { "Sender" } else { "Receiver" };
            let mut r = (
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                query::error_xml(kind, e.code, &e.message, request_id),
            )
                .into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
            r.headers_mut().insert("x-amzn-requestid", rid);
            r
        }
    }
}
