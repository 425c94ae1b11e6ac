//! Push delivery, timers, schedules and the forwarder, end to end: the real server delivers to
//! a receiver running in this test process (so each test scripts its endpoint's answers).
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
use sluice_engine::timers::firing_id;

use crate::common::{millis_of, now_ms, Http, Server};

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

/// Wait (bounded) until `GET path` lists exactly `n` messages.
async fn wait_messages(h: &Http, path: &str, n: usize, what: &str, secs: u64) {
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

#[tokio::test]
async fn fan_out_delivery_with_headers_signature_and_attributes() {
    let (_s, h) = open_server().await;
    let a = Receiver::start().await;
    let b = Receiver::start().await;
    let (st, v) = h
        .put(
            "/v1/queues/orders/subscriptions/a",
            json!({"url": a.url("/hook"), "signing_secret": SECRET, "headers": {"X-Team": "core"}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        v["signing_secret"], "whsec_MfKQ…",
        "secrets are never returned in full"
    );
    let (st, _) = h
        .put(
            "/v1/queues/orders/subscriptions/b",
            json!({"url": b.url("/other")}),
        )
        .await;
    assert_eq!(st, 201);
    let id = send(
        &h,
        "orders",
        json!({"body": "{\"order\":42}", "attributes": {"x-trace": "t-1"}}),
    )
    .await;
    // Pull receive on a push queue is refused.
    let (st, v) = h.post("/v1/queues/orders/receive", json!({})).await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("push_queue")));

    let got = a.wait_for("a's delivery", 20, |r| !r.is_empty()).await;
    let r = &got[0];
    assert_eq!(r.path, "/hook");
    assert_eq!(r.json(), json!({"order": 42}));
    assert_eq!(r.header("webhook-id"), Some(id.as_str()));
    assert_eq!(
        r.header("x-trace"),
        Some("t-1"),
        "attributes travel as headers"
    );
    assert_eq!(r.header("x-team"), Some("core"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        verify_signature(SECRET, r),
        "valid Standard Webhooks signature"
    );
    let got_b = b.wait_for("b's delivery", 20, |r| !r.is_empty()).await;
    assert_eq!(got_b[0].header("webhook-id"), Some(id.as_str()));
    assert!(got_b[0].header("webhook-signature").is_none());

    wait_until("delivered counted", 10, || async {
        h.get("/v1/queues/orders/subscriptions/a").await.1["stats"]["delivered"] == 1
    })
    .await;
    let (st, list) = h.get("/v1/queues/orders/subscriptions").await;
    assert_eq!(st, 200);
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 2);
    let (st, att) = h
        .get(&format!("/v1/queues/orders/messages/{id}/attempts"))
        .await;
    assert_eq!(st, 200);
    let subs: Vec<&str> = att["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["subscription"].as_str().unwrap())
        .collect();
    assert!(subs.contains(&"a") && subs.contains(&"b"), "{att}");
    assert_eq!(h.delete("/v1/queues/orders/subscriptions/b").await.0, 204);
    assert_eq!(h.get("/v1/queues/orders/subscriptions/b").await.0, 404);
}

#[tokio::test]
async fn retries_follow_the_backoff_then_dead_letter_and_redrive() {
    let (_s, h) = open_server().await;
    let r = Receiver::with(|_, _| (503, None, 0)).await;
    h.put(
        "/v1/queues/jobs/subscriptions/w",
        json!({"url": r.url("/w"), "max_attempts": 3,
               "backoff": {"initial_seconds": 0.3, "multiplier": 2, "max_seconds": 10, "jitter": false}}),
    )
    .await;
    let id = send(&h, "jobs", json!({"body": "work"})).await;
    let got = r.wait_for("3 attempts", 30, |r| r.len() >= 3).await;
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(
        gap1 >= Duration::from_millis(270),
        "first retry after ~0.3 s, was {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(540),
        "second retry after ~0.6 s, was {gap2:?}"
    );
    assert!(gap1 < Duration::from_secs(5) && gap2 < Duration::from_secs(6));
    let attempts: Vec<&str> = got
        .iter()
        .map(|g| g.header("sluice-attempt").unwrap())
        .collect();
    assert_eq!(attempts, vec!["1", "2", "3"]);
    assert!(
        got.iter()
            .all(|g| g.header("webhook-id") == Some(id.as_str())),
        "stable webhook-id"
    );

    // Dead-lettered with its history.
    wait_messages(&h, "/v1/queues/jobs-dlq/messages", 1, "dead letter", 20).await;
    let (_, dead) = h.get("/v1/queues/jobs-dlq/messages").await;
    let m = &dead["messages"][0];
    assert_eq!(m["attributes"]["sluice-message-id"], id.as_str());
    assert_eq!(m["attributes"]["sluice-subscription"], "w");
    assert_eq!(m["attributes"]["sluice-attempts"], "3");
    assert!(m["attributes"]["sluice-error"]
        .as_str()
        .unwrap()
        .contains("503"));
    let (_, att) = h
        .get(&format!("/v1/queues/jobs/messages/{id}/attempts"))
        .await;
    let outcomes: Vec<&str> = att["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["retry", "retry", "failed"]);
    assert_eq!(att["attempts"][0]["status"], 503);
    assert_eq!(att["attempts"][0]["response"], "answer 0");
    assert_eq!(r.got().len(), 3, "no attempt after the last");

    // The endpoint recovers; a redrive sends the dead letter again.
    r.set(|_, _| (200, None, 0));
    let (st, v) = h.post("/v1/queues/jobs/redrive", json!({})).await;
    assert_eq!(st, 200, "{v}");
    let got = r
        .wait_for("the redriven delivery", 20, |r| r.len() >= 4)
        .await;
    assert_eq!(got[3].header("webhook-id"), Some(id.as_str()));
    wait_messages(&h, "/v1/queues/jobs-dlq/messages", 0, "dlq empty", 10).await;
}

#[tokio::test]
async fn a_4xx_fails_at_once_and_429_retry_after_is_honoured_without_burning_attempts() {
    let (_s, h) = open_server().await;
    let r = Receiver::with(|_, path| {
        if path == "/gone" {
            (404, None, 0)
        } else {
            (200, None, 0)
        }
    })
    .await;
    h.put(
        "/v1/queues/p/subscriptions/gone",
        json!({"url": r.url("/gone")}),
    )
    .await;
    let id = send(&h, "p", json!({"body": "x"})).await;
    wait_messages(&h, "/v1/queues/p-dlq/messages", 1, "404 dead letter", 20).await;
    assert_eq!(r.got().len(), 1, "a permanent failure is not retried");
    let (_, att) = h.get(&format!("/v1/queues/p/messages/{id}/attempts")).await;
    assert_eq!(att["attempts"][0]["outcome"], "failed");

    // 429 three times with Retry-After: 1, then 200; max_attempts 2 is not used up by 429s.
    let t = Receiver::with(|n, _| {
        if n < 3 {
            (429, Some(1), 0)
        } else {
            (200, None, 0)
        }
    })
    .await;
    h.put(
        "/v1/queues/t/subscriptions/s",
        json!({"url": t.url("/t"), "max_attempts": 2, "backoff": {"initial_seconds": 0.1, "jitter": false}}),
    )
    .await;
    send(&h, "t", json!({"body": "y"})).await;
    let got = t
        .wait_for("delivery after 429s", 30, |r| r.len() >= 4)
        .await;
    for w in got.windows(2).take(3) {
        assert!(
            w[1].at - w[0].at >= Duration::from_millis(900),
            "Retry-After: 1 honoured ({:?})",
            w[1].at - w[0].at
        );
    }
    assert_eq!(
        h.get("/v1/queues/t-dlq/messages").await.0,
        404,
        "nothing dead-lettered"
    );
}

#[tokio::test]
async fn a_dead_endpoint_does_not_delay_a_healthy_one() {
    let (_s, h) = open_server().await;
    let dead = Receiver::with(|_, _| (200, None, 60_000)).await;
    let healthy = Receiver::start().await;
    h.put(
        "/v1/queues/iso/subscriptions/dead",
        json!({"url": dead.url("/d"), "concurrency": 2, "timeout_seconds": 30}),
    )
    .await;
    h.put(
        "/v1/queues/iso/subscriptions/ok",
        json!({"url": healthy.url("/ok")}),
    )
    .await;
    let msgs: Vec<Value> = (0..30).map(|i| json!({"body": format!("m{i}")})).collect();
    let (st, _) = h
        .post("/v1/queues/iso/messages", json!({"messages": msgs}))
        .await;
    assert_eq!(st, 201);
    healthy
        .wait_for("all 30 at the healthy endpoint", 20, |r| r.len() == 30)
        .await;
    assert!(
        dead.got().len() <= 2,
        "the dead endpoint holds only its own 2 slots"
    );
}

#[tokio::test]
async fn the_rate_limit_holds_over_hundreds_of_deliveries() {
    let (_s, h) = open_server().await;
    let r = Receiver::start().await;
    h.put(
        "/v1/queues/rl/subscriptions/s",
        json!({"url": r.url("/rl"), "rate_limit_per_second": 50, "concurrency": 20}),
    )
    .await;
    let msgs: Vec<Value> = (0..250).map(|i| json!({"body": format!("m{i}")})).collect();
    h.post("/v1/queues/rl/messages", json!({"messages": msgs}))
        .await;
    let got = r.wait_for("250 deliveries", 60, |r| r.len() >= 250).await;
    // Burst of 50, then 50/s: 250 take at least 4 s; no 1-second window holds more than
    // the burst plus one second's worth.
    let span = got[249].at - got[0].at;
    assert!(
        span >= Duration::from_millis(3600),
        "250 at 50/s took {span:?}"
    );
    for (i, g) in got.iter().enumerate() {
        let in_window = got[i..]
            .iter()
            .take_while(|x| x.at - g.at < Duration::from_secs(1))
            .count();
        assert!(in_window <= 101, "{in_window} requests within one second");
    }
}

#[tokio::test]
async fn batches_leave_when_full_or_after_max_wait() {
    let (_s, h) = open_server().await;
    let r = Receiver::start().await;
    h.put(
        "/v1/queues/b/subscriptions/s",
        json!({"url": r.url("/b"), "batch": {"max_messages": 5, "max_wait_ms": 400}}),
    )
    .await;
    let msgs: Vec<Value> = (0..12)
        .map(|i| json!({"body": format!("{{\"n\":{i}}}")}))
        .collect();
    h.post("/v1/queues/b/messages", json!({"messages": msgs}))
        .await;
    let got = r
        .wait_for("12 messages in batches", 20, |r| {
            r.iter()
                .map(|x| x.json().as_array().map_or(0, |a| a.len()))
                .sum::<usize>()
                >= 12
        })
        .await;
    let mut sizes: Vec<usize> = got
        .iter()
        .map(|x| x.json().as_array().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, vec![2, 5, 5]);
    let mut ns: Vec<i64> = got
        .iter()
        .flat_map(|x| x.json().as_array().unwrap().clone())
        .map(|v| v["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, (0..12).collect::<Vec<_>>());
    assert!(got[0].header("sluice-batch-size").is_some());

    // One message alone leaves after max_wait_ms.
    let before = r.got().len();
    let t0 = Instant::now();
    send(&h, "b", json!({"body": "{\"n\":99}"})).await;
    let got = r
        .wait_for("the lone message", 20, |x| x.len() > before)
        .await;
    assert!(got[before].at - t0 >= Duration::from_millis(380));
    assert_eq!(got[before].json(), json!([{"n": 99}]));
}

#[tokio::test]
async fn private_targets_are_refused_by_default() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let r = Receiver::start().await;
    h.put(
        "/v1/queues/ssrf/subscriptions/s",
        json!({"url": r.url("/x")}),
    )
    .await;
    let id = send(&h, "ssrf", json!({"body": "x"})).await;
    wait_messages(
        &h,
        "/v1/queues/ssrf-dlq/messages",
        1,
        "refused delivery dead-lettered",
        20,
    )
    .await;
    let (_, att) = h
        .get(&format!("/v1/queues/ssrf/messages/{id}/attempts"))
        .await;
    assert!(
        att["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("target refused"),
        "{att}"
    );
    for url in [
        "http://localhost:1/x",
        "http://169.254.169.254/latest/meta-data",
    ] {
        h.put("/v1/queues/ssrf2/subscriptions/s", json!({"url": url}))
            .await;
        send(&h, "ssrf2", json!({"body": "x"})).await;
    }
    wait_messages(&h, "/v1/queues/ssrf2-dlq/messages", 2, "both refused", 20).await;
    assert!(r.got().is_empty(), "nothing reached the private address");
}

#[tokio::test]
async fn httpqueue_timers_fire_once_across_a_kill_nine() {
    let (mut s, h) = open_server().await;
    let r = Receiver::start().await;
    let (st, v) = h
        .post("/timers", json!({"seconds": 2, "url": r.url("/cb")}))
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (st, t) = h.get(&format!("/timers/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(t["id"], id.as_str());
    assert_eq!(t["ID"], id.as_str());
    assert!(matches!(t["time_left"].as_i64(), Some(1..=2)), "{t}");
    // The native API reads the same timer, with its exact due time.
    let due = millis_of(&h.get(&format!("/v1/timers/{id}")).await.1["due_at"]);
    s.kill();
    // Down while it falls due: it fires right after the start.
    wait_until("the timer's due time, with the server down", 30, || async {
        now_ms() > due
    })
    .await;
    assert!(r.got().is_empty());
    s.spawn().await;
    let got = r.wait_for("the timer call", 20, |x| !x.is_empty()).await;
    assert_eq!(got[0].path, format!("/cb/{id}"));
    assert!(got[0].body.is_empty());
    // Once the timer is archived as succeeded and its message is gone from the internal timer
    // queue (the only thing this server stores), no call of it can start or be under way.
    wait_until("the timer settled", 20, || async {
        h.get(&format!("/v1/timers/{id}")).await.1["status"] == "succeeded"
            && h.metric("sluice_storage_messages").await == 0.0
    })
    .await;
    assert_eq!(r.got().len(), 1, "fired once");
    let (_, t) = h.get(&format!("/timers/{id}")).await;
    assert_eq!(t["time_left"], 0);
    // Errors in the seed's shapes.
    let (st, e) = h.get("/timers/nope").await;
    assert_eq!(st, 404);
    assert_eq!(e["Code"], 404);
    assert_eq!(e["error"]["code"], 404);
    assert_eq!(e["Details"], "Not found - timer does not exist");
    let (st, e) = h
        .post("/timers", json!({"seconds": "two", "url": r.url("/")}))
        .await;
    assert_eq!((st, e["Code"].as_i64()), (400, Some(400)));
    let (st, _) = h
        .post("/timers", json!({"seconds": 1, "url": "not a url"}))
        .await;
    assert_eq!(st, 422);
    let (st, _) = h
        .post("/timers", json!({"seconds": -5, "url": r.url("/")}))
        .await;
    assert_eq!(st, 422);
}

#[tokio::test]
async fn native_timers_call_cancel_and_report() {
    let (_s, h) = open_server().await;
    let r = Receiver::start().await;
    let (st, t) = h
        .post(
            "/v1/timers",
            json!({"url": r.url("/n"), "method": "PUT", "headers": {"X-K": "v"},
                   "body": {"hello": "world"}, "delay_seconds": 1}),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(t["status"], "scheduled");
    let (_, c) = h
        .post(
            "/v1/timers",
            json!({"url": r.url("/never"), "delay_seconds": 1}),
        )
        .await;
    let cid = c["id"].as_str().unwrap();
    let (st, v) = h.delete(&format!("/v1/timers/{cid}")).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("cancelled")));
    let got = r.wait_for("the timer call", 20, |x| !x.is_empty()).await;
    assert_eq!(got[0].path, "/n");
    assert_eq!(got[0].header("x-k"), Some("v"));
    assert_eq!(got[0].json(), json!({"hello": "world"}));
    wait_until("succeeded", 10, || async {
        h.get(&format!("/v1/timers/{id}")).await.1["status"] == "succeeded"
    })
    .await;
    let (_, v) = h.get(&format!("/v1/timers/{id}")).await;
    assert_eq!(v["attempts"][0]["status"], 200);
    assert_eq!(v["time_left"], 0);
    assert_eq!(h.delete(&format!("/v1/timers/{id}")).await.0, 409);
    // A cancelled timer's message stays in the internal timer queue until it comes due; the
    // worker then finds the cancel and removes it without calling. Nothing else is stored
    // here, so an empty store is the moment after which it can never fire.
    wait_until("the cancelled timer's message settled", 20, || async {
        h.metric("sluice_storage_messages").await == 0.0
    })
    .await;
    let (_, v) = h.get(&format!("/v1/timers/{cid}")).await;
    assert_eq!(v["status"], "cancelled", "{v}");
    assert!(v["due_at"].is_null(), "settled: {v}");
    assert!(
        r.got().iter().all(|x| x.path != "/never"),
        "cancelled timer never fires"
    );
    let (st, e) = h.post("/v1/timers", json!({"delay_seconds": 1})).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    assert_eq!(
        h.get("/v1/timers/0191a0b0-0000-7000-8000-000000000000")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn cron_schedules_fire_each_second_once() {
    let (_s, h) = open_server().await;
    let r = Receiver::start().await;
    let created_at = now_ms();
    let (st, v) = h
        .put(
            "/v1/schedules/tick",
            json!({"cron": "* * * * * *", "url": r.url("/tick")}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert!(v["next_fire_at"].is_string());
    let (st, _) = h
        .put(
            "/v1/schedules/toqueue",
            json!({"cron": "* * * * * *", "queue": "ticks", "body": "tick"}),
        )
        .await;
    assert_eq!(st, 201);
    let got = r.wait_for("3 firings", 20, |x| x.len() >= 3).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|g| g.header("webhook-id").unwrap())
        .collect();
    // A firing's id is derived from (schedule, time): a double fire would repeat an id.
    // (No gap assertion: a late firing may land close to the next one on a busy machine.)
    let distinct: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "each firing is called once");
    assert_eq!(got[0].header("sluice-schedule"), Some("tick"));
    wait_until("queue firings", 10, || async {
        h.get("/v1/queues/ticks").await.1["stats"]["ready"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    })
    .await;
    let (_, v) = h.get("/v1/schedules/tick").await;
    assert!(v["fired"].as_u64().unwrap() >= 3);
    assert_eq!(h.delete("/v1/schedules/tick").await.0, 204);
    let deleted_at = now_ms();
    let n = r.got().len();
    // The scheduler makes one pass at a time over every schedule, reading the clock and then
    // the list of schedules. A pass that still listed "tick" read its clock before the delete,
    // so it fired a second at or before `deleted_at`. A firing of "toqueue" for a later second
    // comes from a pass that began after the delete, when the earlier passes were done: every
    // firing of "tick" there will ever be exists by then, as a timer ...
    let later_second = (deleted_at / 1000 + 1) * 1000;
    wait_until("a scheduler pass after the delete", 20, || async {
        let (_, v) = h.get("/v1/schedules/toqueue").await;
        !v["last_fired_at"].is_null() && millis_of(&v["last_fired_at"]) >= later_second
    })
    .await;
    // ... and once no timer is pending, each of those has made its call.
    wait_until("every firing made", 20, || async {
        h.get("/v1/timers").await.1["pending"] == 0
    })
    .await;
    let got = r.got();
    assert!(got.len() <= n + 1, "stops after delete");
    // Each call is the firing of a second before the delete (a firing's id is derived from
    // the schedule and the second).
    let before_delete: std::collections::HashSet<String> = (created_at / 1000..=deleted_at / 1000)
        .map(|s| firing_id("tick", s * 1000).to_string())
        .collect();
    for g in &got {
        let id = g.header("webhook-id").unwrap();
        assert!(
            before_delete.contains(id),
            "a firing of tick for a second after the delete: {id}"
        );
    }
    let (st, e) = h
        .put(
            "/v1/schedules/bad",
            json!({"cron": "99 * * * *", "url": r.url("/")}),
        )
        .await;
    assert_eq!(st, 400);
    assert!(e["error"]["message"].as_str().unwrap().starts_with("cron:"));
}

#[tokio::test]
async fn forwarder_batches_records_by_size_and_interval() {
    let r = Receiver::start().await;
    let endpoint = r.url("/collect");
    let s = Server::start_with(&[
        "--post-endpoint",
        &endpoint,
        "--batch-size",
        "3",
        "--batch-interval",
        "500ms",
    ])
    .await;
    let h = Http::new(&s.base);
    let rec = |i: i64| {
        json!({"user_id": i, "total": 1.65, "title": "delectus aut autem",
               "meta": {"logins": [{"time": "2020-08-08T01:52:50Z", "ip": "0.0.0.0"}],
                        "phone_numbers": {"home": "555-1212", "mobile": "123-5555"}},
               "completed": false})
    };
    for i in 1..=7 {
        let (st, v) = h.post("/log", rec(i)).await;
        assert_eq!(st, 201, "{v}");
    }
    let got = r
        .wait_for("7 records forwarded", 20, |x| {
            x.iter()
                .map(|g| g.json().as_array().map_or(0, |a| a.len()))
                .sum::<usize>()
                >= 7
        })
        .await;
    let sizes: Vec<usize> = got
        .iter()
        .map(|g| g.json().as_array().unwrap().len())
        .collect();
    assert!(sizes.iter().all(|&n| n <= 3), "{sizes:?}");
    let mut users: Vec<i64> = got
        .iter()
        .flat_map(|g| g.json().as_array().unwrap().clone())
        .map(|v| v["user_id"].as_i64().unwrap())
        .collect();
    users.sort();
    assert_eq!(users, (1..=7).collect::<Vec<_>>());
    // Validation names the field.
    let mut bad = rec(1);
    bad["meta"]["logins"][0]["time"] = json!("yesterday");
    let (st, e) = h.post("/log", bad).await;
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("meta.logins[0].time"),
        "{e}"
    );
    let mut bad = rec(1);
    bad["user_id"] = json!("one");
    let (st, e) = h.post("/log", bad).await;
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("user_id"),
        "{e}"
    );
}

#[tokio::test]
async fn forwarder_retries_three_times_two_seconds_apart_then_dead_letters() {
    let r = Receiver::with(|_, _| (500, None, 0)).await;
    let endpoint = r.url("/collect");
    let s = Server::start_with(&["--post-endpoint", &endpoint, "--batch-size", "1"]).await;
    let h = Http::new(&s.base);
    let (st, _) = h
        .post(
            "/log",
            json!({"user_id": 1, "total": 1.0, "title": "t",
                   "meta": {"logins": [], "phone_numbers": {"home": "1", "mobile": "2"}},
                   "completed": true}),
        )
        .await;
    assert_eq!(st, 201);
    let got = r.wait_for("4 attempts", 30, |x| x.len() >= 4).await;
    for w in got.windows(2) {
        assert!(w[1].at - w[0].at >= Duration::from_millis(1900));
    }
    wait_messages(
        &h,
        "/v1/queues/log-dlq/messages",
        1,
        "dead-lettered batch",
        20,
    )
    .await;
    assert_eq!(r.got().len(), 4);
}

#[tokio::test]
async fn a_kill_nine_during_delivery_loses_no_message() {
    // Two subscriptions (copies sharing ids, delivered at different speeds, one of them
    // failing now and then) and three kills mid-delivery: each endpoint still gets every id.
    let (mut s, h) = open_server().await;
    let slow = Receiver::with(|_, _| (200, None, 100)).await;
    let flaky = Receiver::with(|n, _| {
        if n % 7 == 3 {
            (500, None, 0)
        } else {
            (200, None, 5)
        }
    })
    .await;
    h.put(
        "/v1/queues/k/subscriptions/slow",
        json!({"url": slow.url("/k"), "concurrency": 4}),
    )
    .await;
    h.put(
        "/v1/queues/k/subscriptions/flaky",
        json!({"url": flaky.url("/k"), "concurrency": 2,
               "backoff": {"initial_seconds": 0.2, "jitter": false}}),
    )
    .await;
    let msgs: Vec<Value> = (0..80).map(|i| json!({"body": format!("m{i}")})).collect();
    let (_, v) = h
        .post("/v1/queues/k/messages", json!({"messages": msgs}))
        .await;
    let ids: std::collections::HashSet<String> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    for cycle in 1..=3 {
        slow.wait_for("some deliveries", 30, |x| x.len() >= 8 * cycle)
            .await;
        s.kill();
        s.spawn().await;
    }
    // Count only requests answered 200 (the flaky one failed every 7th, from index 3).
    for (r, failed) in [(&slow, None), (&flaky, Some(3usize))] {
        r.wait_for("every message delivered", 90, |x| {
            let seen: std::collections::HashSet<&str> = x
                .iter()
                .enumerate()
                .filter(|(n, _)| failed.is_none_or(|f| n % 7 != f))
                .filter_map(|(_, g)| g.header("webhook-id"))
                .collect();
            ids.iter().all(|i| seen.contains(i.as_str()))
        })
        .await;
    }
    assert_eq!(
        h.get("/v1/queues/k-dlq/messages").await.0,
        404,
        "nothing dead-lettered"
    );
}

/// `sluice sink` answering 429 past 20 requests/s: the subscription (no rate limit of its
/// own) slows down for that endpoint instead of burning attempts, everything arrives signed,
/// and a healthy endpoint on the same queue is not slowed.
#[tokio::test]
async fn sink_429s_slow_one_endpoint_down_adaptively() {
    let (_s, h) = open_server().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sink.jsonl");
    let port = crate::common::free_port();
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _sink = KillOnDrop(
        std::process::Command::new(crate::common::BIN)
            .args([
                "sink",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--secret",
                SECRET,
                "--rate-limit",
                "20",
                "--out",
            ])
            .arg(&out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    crate::common::wait_healthy(&format!("http://127.0.0.1:{port}")).await;
    let healthy = Receiver::start().await;
    h.put(
        "/v1/queues/ad/subscriptions/limited",
        json!({"url": format!("http://127.0.0.1:{port}/in"), "signing_secret": SECRET,
               "max_attempts": 3, "concurrency": 10}),
    )
    .await;
    h.put(
        "/v1/queues/ad/subscriptions/fast",
        json!({"url": healthy.url("/f")}),
    )
    .await;
    let msgs: Vec<Value> = (0..150).map(|i| json!({"body": format!("m{i}")})).collect();
    let (_, v) = h
        .post("/v1/queues/ad/messages", json!({"messages": msgs}))
        .await;
    let ids: std::collections::HashSet<String> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    let t0 = Instant::now();
    healthy
        .wait_for("the healthy endpoint", 20, |r| r.len() >= 150)
        .await;
    let healthy_took = t0.elapsed();
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["path"] == "/in")
            .collect()
    };
    wait_until("all 150 accepted by the sink", 90, || async {
        read().iter().filter(|l| l["status"] == 200).count() >= 150
    })
    .await;
    let lines = read();
    let ok: std::collections::HashSet<String> = lines
        .iter()
        .filter(|l| l["status"] == 200)
        .map(|l| l["headers"]["webhook-id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ok, ids, "every message delivered, none dead-lettered");
    assert!(lines.iter().all(|l| l["signature"] == "valid"));
    let throttled = lines.iter().filter(|l| l["status"] == 429).count();
    assert!(throttled > 0, "the sink did push back");
    assert!(
        throttled < 150,
        "adaptive slowdown keeps 429s well below one per message ({throttled})"
    );
    assert!(
        healthy_took < Duration::from_secs(15),
        "healthy endpoint not slowed: {healthy_took:?}"
    );
    let (_, sub) = h.get("/v1/queues/ad/subscriptions/limited").await;
    assert_eq!(sub["stats"]["failed"], 0);
    assert!(sub["stats"]["throttled"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn exit_on_forward_failure_reproduces_the_seed() {
    let r = Receiver::with(|_, _| (500, None, 0)).await;
    let endpoint = r.url("/collect");
    let mut s = Server::start_with(&[
        "--post-endpoint",
        &endpoint,
        "--batch-size",
        "1",
        "--exit-on-forward-failure",
    ])
    .await;
    let h = Http::new(&s.base);
    let (st, _) = h
        .post(
            "/log",
            json!({"user_id": 1, "total": 1.0, "title": "t",
                   "meta": {"logins": [], "phone_numbers": {"home": "1", "mobile": "2"}},
                   "completed": true}),
        )
        .await;
    assert_eq!(st, 201);
    let child = s.child.as_mut().unwrap();
    let end = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "the server did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(1));
    assert_eq!(r.got().len(), 4, "1 attempt + 3 retries before exiting");
    s.child = None;
}

#[tokio::test]
async fn bad_subscription_timer_and_schedule_input_is_refused_clearly() {
    let (_s, h) = open_server().await;
    let cases = [
        (json!({"url": "ftp://x/"}), "url:"),
        (
            json!({"url": "http://x/", "max_attempts": 0}),
            "max_attempts:",
        ),
        (
            json!({"url": "http://x/", "concurrency": 5000}),
            "concurrency:",
        ),
        (
            json!({"url": "http://x/", "timeout_seconds": 0}),
            "timeout_seconds:",
        ),
        (
            json!({"url": "http://x/", "rate_limit_per_second": -1}),
            "rate_limit_per_second:",
        ),
        (
            json!({"url": "http://x/", "batch": {"max_messages": 0}}),
            "batch.max_messages:",
        ),
        (
            json!({"url": "http://x/", "backoff": {"multiplier": 0.5}}),
            "backoff.multiplier:",
        ),
        (
            json!({"url": "http://x/", "signing_secret": "secret"}),
            "signing_secret:",
        ),
        (
            json!({"url": "http://x/", "headers": {"Host": "evil"}}),
            "headers:",
        ),
        (
            json!({"url": "http://x/", "headers": {"sluice-queue": "x"}}),
            "headers:",
        ),
        (json!({"url": "http://x/", "bogus": 1}), "bogus"),
        (json!({}), "url"),
    ];
    for (body, field) in cases {
        let (st, e) = h.put("/v1/queues/bad/subscriptions/s", body.clone()).await;
        assert_eq!(st, 400, "{body} -> {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{body}: {msg:?} should name {field}");
    }
    let (st, _) = h
        .put(
            "/v1/queues/bad/subscriptions/no%20spaces",
            json!({"url": "http://x/"}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        h.get("/v1/queues/bad/subscriptions").await.0,
        404,
        "nothing was created"
    );
    for (body, field) in [
        (
            json!({"url": "http://x/", "delay_seconds": 1, "at": "2030-01-01T00:00:00Z"}),
            "delay_seconds",
        ),
        (
            json!({"url": "http://x/", "delay_seconds": 40000000}),
            "delay_seconds",
        ),
        (json!({"url": "http://x/", "at": "tomorrow"}), "at:"),
        (json!({"url": "http://x/", "queue": "q"}), "url"),
        (json!({"url": "http://x/", "method": "TRACE"}), "method:"),
    ] {
        let (st, e) = h.post("/v1/timers", body.clone()).await;
        assert_eq!(st, 400, "{body} -> {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {e}"
        );
    }
    for (body, field) in [
        (json!({"cron": "* * *", "url": "http://x/"}), "cron:"),
        (
            json!({"cron": "* * * * *", "timezone": "Nowhere/Land", "url": "http://x/"}),
            "timezone:",
        ),
        (json!({"cron": "* * * * *"}), "url"),
    ] {
        let (st, e) = h.put("/v1/schedules/s", body.clone()).await;
        assert_eq!(st, 400, "{body} -> {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {e}"
        );
    }
    assert_eq!(h.get("/v1/schedules").await.1["schedules"], json!([]));
    let (st, e) = h.get("/v1/queues/x/messages/not-a-uuid/attempts").await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
}

/// Hostile endpoints: one streams an endless body, one resets every connection, one never
/// answers. Each costs only its own lane: bounded reads, timeouts, retries, dead letters.
#[tokio::test]
async fn endless_bodies_resets_and_hangs_are_contained() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_s, h) = open_server().await;
    let endless = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endless_port = endless.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = endless.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let _ = c
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
                    .await;
                let chunk = vec![b'z'; 16 * 1024];
                while c.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    let reset = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reset_port = reset.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (c, _) = reset.accept().await.unwrap();
            #[allow(deprecated)] // linger 0 makes the close a reset (RST), which is the point
            let _ = c.set_linger(Some(Duration::ZERO));
            drop(c);
        }
    });
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let held2 = held.clone();
    tokio::spawn(async move {
        loop {
            let (c, _) = hang.accept().await.unwrap();
            held2.lock().push(c);
        }
    });
    for (name, port, extra) in [
        ("endless", endless_port, json!({})),
        (
            "reset",
            reset_port,
            json!({"max_attempts": 2, "backoff": {"initial_seconds": 0.1, "jitter": false}}),
        ),
        (
            "hang",
            hang_port,
            json!({"max_attempts": 1, "timeout_seconds": 1}),
        ),
    ] {
        let mut body = json!({"url": format!("http://127.0.0.1:{port}/x")});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (st, v) = h
            .put(&format!("/v1/queues/{name}/subscriptions/s"), body)
            .await;
        assert_eq!(st, 201, "{v}");
    }
    let mut ids = std::collections::HashMap::new();
    for q in ["endless", "reset", "hang"] {
        ids.insert(q, send(&h, q, json!({"body": "x"})).await);
    }
    wait_until(
        "the endless body is cut and the delivery counted",
        20,
        || async { h.get("/v1/queues/endless/subscriptions/s").await.1["stats"]["delivered"] == 1 },
    )
    .await;
    let (_, att) = h
        .get(&format!(
            "/v1/queues/endless/messages/{}/attempts",
            ids["endless"]
        ))
        .await;
    assert_eq!(att["attempts"][0]["status"], 200);
    // A delivered attempt keeps the shorter excerpt, cut with an ellipsis.
    assert_eq!(
        att["attempts"][0]["response"].as_str().unwrap(),
        format!("{}…", "z".repeat(256)),
        "a successful attempt keeps 256 bytes of the response"
    );
    for q in ["reset", "hang"] {
        wait_messages(
            &h,
            &format!("/v1/queues/{q}-dlq/messages"),
            1,
            &format!("{q} dead-lettered"),
            30,
        )
        .await;
    }
    let (_, att) = h
        .get(&format!(
            "/v1/queues/hang/messages/{}/attempts",
            ids["hang"]
        ))
        .await;
    let err = att["attempts"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("timeout") || err.contains("timed out"),
        "{err}"
    );
    let (_, att) = h
        .get(&format!(
            "/v1/queues/reset/messages/{}/attempts",
            ids["reset"]
        ))
        .await;
    assert_eq!(att["attempts"].as_array().unwrap().len(), 2);
    assert!(att["attempts"][0]["status"].is_null());
}

#[tokio::test]
async fn fifo_push_keeps_group_order_through_retries() {
    let (_s, h) = open_server().await;
    let r = Receiver::with(|n, _| {
        if n == 0 {
            (503, None, 0)
        } else {
            (200, None, 0)
        }
    })
    .await;
    h.put(
        "/v1/queues/ledger.fifo/subscriptions/s",
        json!({"url": r.url("/l"), "backoff": {"initial_seconds": 0.3, "jitter": false}}),
    )
    .await;
    let msgs: Vec<Value> = (1..=4)
        .map(|i| json!({"body": format!("f{i}"), "message_group_id": "g", "deduplication_id": format!("d{i}")}))
        .collect();
    let (st, v) = h
        .post("/v1/queues/ledger.fifo/messages", json!({"messages": msgs}))
        .await;
    assert_eq!(st, 201, "{v}");
    let got = r.wait_for("5 requests", 20, |x| x.len() >= 5).await;
    let bodies: Vec<String> = got
        .iter()
        .map(|g| String::from_utf8_lossy(&g.body).into_owned())
        .collect();
    assert_eq!(
        bodies,
        vec!["f1", "f1", "f2", "f3", "f4"],
        "f1 retried in place, before f2"
    );
    assert!(got[1].at - got[0].at >= Duration::from_millis(270));
    assert_eq!(got[1].header("sluice-attempt"), Some("2"));
}
