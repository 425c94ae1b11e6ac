//! The webhook receiver the tests deliver to, in one place: an HTTP server in this test process
//! that records every request and answers as the test scripts it, plus the helpers the push
//! tests share. Its own file because many test files use it.
//! Times are checked only as lower bounds (a busy machine makes things slower, never faster)
//! or with generous tolerances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::common::{Http, Server};

#[derive(Clone, Debug)]
pub struct Req {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub fn header(&self, n: &str) -> Option<&str> {
        self.headers.get(n).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// How the receiver answers request number `n` (0-based) to `path`: status, Retry-After
/// seconds, delay before answering ([`HOLD`]: until [`Receiver::release`]).
type Script = Arc<dyn Fn(usize, &str) -> (u16, Option<u64>, u64) + Send + Sync>;

/// A delay that holds the answer until the test calls [`Receiver::release`].
pub const HOLD: u64 = u64::MAX;

#[derive(Clone)]
pub struct Receiver {
    pub reqs: Arc<Mutex<Vec<Req>>>,
    script: Arc<Mutex<Script>>,
    /// Set by `release`: answers held by [`HOLD`] go.
    released: Arc<tokio::sync::watch::Sender<bool>>,
    pub port: u16,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::with(|_, _| (200, None, 0)).await
    }

    pub async fn with(
        f: impl Fn(usize, &str) -> (u16, Option<u64>, u64) + Send + Sync + 'static,
    ) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let r = Receiver {
            reqs: Default::default(),
            script: Arc::new(Mutex::new(Arc::new(f))),
            released: Arc::new(tokio::sync::watch::Sender::new(false)),
            port,
        };
        let app = axum::Router::new().fallback(handle).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    pub fn set(&self, f: impl Fn(usize, &str) -> (u16, Option<u64>, u64) + Send + Sync + 'static) {
        *self.script.lock() = Arc::new(f);
    }

    /// Answer the requests held by [`HOLD`], now and from now on (the script decides how).
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn got(&self) -> Vec<Req> {
        self.reqs.lock().clone()
    }

    /// Wait (bounded) until `pred` holds for the requests received.
    pub async fn wait_for(&self, what: &str, secs: u64, pred: impl Fn(&[Req]) -> bool) -> Vec<Req> {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.got();
            if pred(&got) {
                return got;
            }
            if Instant::now() > end {
                panic!("timed out waiting for {what}; got {} requests", got.len());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(State(r): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let n = {
        let mut reqs = r.reqs.lock();
        reqs.push(Req {
            at: Instant::now(),
            path: uri.path().to_string(),
            headers,
            body,
        });
        reqs.len() - 1
    };
    let script = r.script.lock().clone();
    let (status, retry_after, delay) = script(n, uri.path());
    if delay == HOLD {
        let _ = r.released.subscribe().wait_for(|released| *released).await;
    } else if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut resp = (StatusCode::from_u16(status).unwrap(), format!("answer {n}")).into_response();
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    resp
}

pub(crate) async fn open_server() -> (Server, Http) {
    let s = Server::start_with(&["--allow-private-targets"]).await;
    let h = Http::new(&s.base);
    (s, h)
}

pub(crate) async fn send(h: &Http, q: &str, body: Value) -> String {
    let (st, v) = h.post(&format!("/v1/queues/{q}/messages"), body).await;
    assert_eq!(st, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Publish `n` messages (`m0`, `m1`, ...) to queue `q` in one batch; their ids.
pub(crate) async fn send_numbered(
    h: &Http,
    q: &str,
    n: usize,
) -> std::collections::HashSet<String> {
    let msgs: Vec<Value> = (0..n).map(|i| json!({"body": format!("m{i}")})).collect();
    let (st, v) = h
        .post(
            &format!("/v1/queues/{q}/messages"),
            json!({"messages": msgs}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Wait (bounded) until `GET path` lists exactly `n` messages.
pub(crate) async fn wait_messages(h: &Http, path: &str, n: usize, what: &str, secs: u64) {
    wait_until(what, secs, || async {
        h.get(path).await.1["messages"]
            .as_array()
            .is_some_and(|m| m.len() == n)
    })
    .await;
}

pub(crate) async fn wait_until<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn verify_signature(secret: &str, r: &Req) -> bool {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.",
            r.header("webhook-id").unwrap(),
            r.header("webhook-timestamp").unwrap()
        )
        .as_bytes(),
    );
    mac.update(&r.body);
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    r.header("webhook-signature")
        .unwrap_or_default()
        .split(' ')
        .any(|s| s == want)
}

pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
