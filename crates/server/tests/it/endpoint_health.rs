//! A subscription's health and state end to end, through the real binary: its owner's pause
//! and resume (HTTP and CLI), surviving a `kill -9`. The receiver is `receiver::Receiver`, in this
//! process.

use serde_json::{json, Value};

use crate::cli::run;
use crate::common::Http;
use crate::receiver::{open_server, send, verify_signature, Receiver, HOLD, SECRET};

/// A lane that sends in parallel keeps more messages leased than its requests in flight (the
/// lease's sync is then off the request's path); a pause that comes meanwhile holds them,
/// still leased and unsent, and a resume sends them: once each, every one as attempt 1.
#[tokio::test]
async fn messages_leased_ahead_wait_out_a_pause_and_go_after_the_resume() {
    let (_s, h) = open_server().await;
    // The first two requests are held until the test releases them; the rest answered at once.
    let r = Receiver::with(|n, _| (200, None, if n < 2 { HOLD } else { 0 })).await;
    let (st, v) = h
        .put(
            "/v1/queues/ahead/subscriptions/s",
            json!({"url": r.url("/a"), "concurrency": 2}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    for i in 0..5 {
        send(&h, "ahead", json!({"body": format!("m{i}")})).await;
    }
    let stats = || async { h.get("/v1/queues/ahead/subscriptions/s").await.1["stats"].clone() };
    // While the first two requests are held: two more are leased, two requests are made.
    crate::receiver::wait_until("two leased ahead of the first answers", 20, || async {
        let st = stats().await;
        st["in_flight"] == 4 && st["requests_in_flight"] == 2 && st["ready"] == 1
    })
    .await;
    let (st, v) = h
        .post("/v1/queues/ahead/subscriptions/s/pause", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    r.release();
    // The first two are answered and settled; the two leased before the pause wait unsent.
    crate::receiver::wait_until("two delivered, two held", 30, || async {
        let st = stats().await;
        st["delivered"] == 2
            && st["in_flight"] == 2
            && st["requests_in_flight"] == 0
            && st["ready"] == 1
    })
    .await;
    assert_eq!(r.got().len(), 2, "nothing sent while paused");
    let (st, v) = h
        .post("/v1/queues/ahead/subscriptions/s/resume", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    r.wait_for("the other three", 30, |x| x.len() >= 5).await;
    crate::receiver::wait_until("all delivered", 30, || async {
        stats().await["delivered"] == 5
    })
    .await;
    let got = r.got();
    let mut seen: Vec<(String, Option<&str>)> = got
        .iter()
        .map(|q| {
            (
                String::from_utf8_lossy(&q.body).into_owned(),
                q.header("sluice-attempt"),
            )
        })
        .collect();
    seen.sort();
    let want: Vec<(String, Option<&str>)> = (0..5).map(|i| (format!("m{i}"), Some("1"))).collect();
    assert_eq!(seen, want, "each once, each its first attempt");
}

#[tokio::test]
async fn a_paused_subscription_sends_nothing_across_a_kill_nine_then_resumes() {
    let (mut s, h) = open_server().await;
    let r = Receiver::start().await;
    for name in ["a", "b"] {
        let (st, v) = h
            .put(
                &format!("/v1/queues/ps/subscriptions/{name}"),
                json!({"url": r.url(&format!("/{name}"))}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["state"], "active", "{v}");
        assert!(v["paused_at"].is_null(), "{v}");
    }
    let (st, v) = h
        .post("/v1/queues/ps/subscriptions/a/pause", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "paused", "{v}");
    let paused_at = v["paused_at"].clone();
    assert!(paused_at.is_string(), "{v}");
    send(&h, "ps", json!({"body": "m1"})).await;
    send(&h, "ps", json!({"body": "m2"})).await;
    // b gets both; by then a's lane has had every chance to lease them.
    r.wait_for("b's two deliveries", 20, |x| {
        x.iter().filter(|q| q.path == "/b").count() == 2
    })
    .await;
    // A PUT replacing the settings keeps the pause.
    let (st, v) = h
        .put(
            "/v1/queues/ps/subscriptions/a",
            json!({"url": r.url("/a"), "timeout_seconds": 5}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "paused", "{v}");
    s.kill();
    s.spawn().await;
    let (_, v) = h.get("/v1/queues/ps/subscriptions/a").await;
    assert_eq!(v["state"], "paused", "{v}");
    assert_eq!(v["paused_at"], paused_at, "{v}");
    assert_eq!(
        (
            v["stats"]["ready"].as_u64(),
            v["stats"]["in_flight"].as_u64()
        ),
        (Some(2), Some(0)),
        "waiting, never leased: {v}"
    );
    assert!(
        r.got().iter().all(|q| q.path != "/a"),
        "nothing sent to a while paused"
    );
    // The CLI resumes it; both go out, as first attempts.
    let base = s.base.clone();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run(&base, &["sub", "resume", "ps", "a"], None))
            .await
            .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("is active"), "{out}");
    let got = r
        .wait_for("a's two deliveries", 20, |x| {
            x.iter().filter(|q| q.path == "/a").count() == 2
        })
        .await;
    for q in got.iter().filter(|q| q.path == "/a") {
        assert_eq!(q.header("sluice-attempt"), Some("1"));
    }
    let base = s.base.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        run(&base, &["sub", "pause", "ps", "a", "--json"], None)
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("\"paused\""), "{out}");
    // The CLI sets the breaker and the disable delay.
    let (base, url) = (s.base.clone(), r.url("/c"));
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        let args = [
            "sub",
            "create",
            "ps",
            "c",
            "--url",
            &url,
            "--circuit-failures",
            "7",
            "--probe-initial",
            "2",
            "--probe-max",
            "60",
            "--disable-after",
            "120",
            "--json",
        ];
        run(&base, &args, None)
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["circuit_breaker"],
        json!({"failures": 7, "probe_initial_seconds": 2.0, "probe_max_seconds": 60.0}),
        "{v}"
    );
    assert_eq!(v["disable_after_seconds"], 120, "{v}");
    let (st, v) = h
        .post("/v1/queues/ps/subscriptions/nope/pause", json!({}))
        .await;
    assert_eq!(st, 404, "{v}");
    let (_, doc) = h.get("/openapi.json").await;
    for p in [
        "/v1/queues/{queue}/subscriptions/{name}/pause",
        "/v1/queues/{queue}/subscriptions/{name}/resume",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi lacks {p}");
    }
}

/// GET `path` until `pred` holds (bounded); that view.
async fn view_when(h: &Http, path: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let (_, v) = h.get(path).await;
        if pred(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < end, "timed out; last view: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The requests the receiver got at `path`.
fn count(r: &Receiver, path: &str) -> usize {
    r.got().iter().filter(|q| q.path == path).count()
}

#[tokio::test]
async fn the_circuit_opens_after_failures_probes_then_closes_and_drains() {
    let (mut s, h) = open_server().await;
    let r = Receiver::with(|_, _| (500, None, 0)).await;
    let (st, v) = h
        .put(
            "/v1/queues/cb/subscriptions/a",
            json!({"url": r.url("/cb"), "concurrency": 1, "max_attempts": 100,
                   "backoff": {"initial_seconds": 0.1, "max_seconds": 0.1, "jitter": false},
                   "circuit_breaker": {"failures": 3, "probe_initial_seconds": 0.5,
                                       "probe_max_seconds": 1}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["circuit_breaker"]["failures"], 3, "{v}");
    assert_eq!(v["stats"]["circuit"]["state"], "closed", "{v}");
    for i in 0..5 {
        send(&h, "cb", json!({"body": format!("m{i}")})).await;
    }
    r.wait_for("three failures", 20, |x| x.len() >= 3).await;
    let v = view_when(&h, "/v1/queues/cb/subscriptions/a", 20, |v| {
        v["stats"]["circuit"]["state"] == "open"
    })
    .await;
    let c = &v["stats"]["circuit"];
    assert!(
        c["opened_at"].is_string() && c["next_probe_at"].is_string(),
        "{v}"
    );
    assert!(c["consecutive_failures"].as_u64().unwrap() >= 3, "{v}");
    // Open: only probes, at most one per 0.5-1 s (unchecked, 0.1 s retries would make ~25).
    let before = count(&r, "/cb");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let probes = count(&r, "/cb") - before;
    assert!(probes <= 5, "{probes} requests in 2.5 s while open");
    // Durable: a restart keeps it open.
    s.kill();
    s.spawn().await;
    let (_, v) = h.get("/v1/queues/cb/subscriptions/a").await;
    assert_ne!(v["stats"]["circuit"]["state"], "closed", "{v}");
    // The endpoint recovers: the next probe closes the circuit and the backlog drains.
    r.set(|_, _| (200, None, 0));
    view_when(&h, "/v1/queues/cb/subscriptions/a", 30, |v| {
        v["stats"]["delivered"] == 5
    })
    .await;
    let (_, v) = h.get("/v1/queues/cb/subscriptions/a").await;
    assert_eq!(v["stats"]["circuit"]["state"], "closed", "{v}");
    assert_eq!(v["stats"]["circuit"]["consecutive_failures"], 0, "{v}");
    assert_eq!(v["stats"]["failed"], 0, "nothing dead-lettered: {v}");
    // Bad settings name the field.
    let (st, v) = h
        .put(
            "/v1/queues/cb/subscriptions/b",
            json!({"url": r.url("/b"), "circuit_breaker": {"failures": 0}}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("circuit_breaker.failures:"));
}

/// Messages leased ahead when the circuit opens wait, still leased, while it is open (nothing
/// but its probes goes, one per probe interval), then go as their first attempt: leasing
/// ahead never counts a receive that was no attempt.
#[tokio::test]
async fn messages_leased_ahead_wait_out_an_open_circuit_as_first_attempts() {
    let (_s, h) = open_server().await;
    // The first two requests are held until released, then fail; later ones fail at once
    // until the endpoint recovers.
    let r = Receiver::with(|n, _| (500, None, if n < 2 { HOLD } else { 0 })).await;
    let path = "/v1/queues/cba/subscriptions/a";
    let (st, v) = h
        .put(
            path,
            json!({"url": r.url("/cba"), "concurrency": 2, "max_attempts": 100,
                   "backoff": {"initial_seconds": 0.1, "max_seconds": 0.1, "jitter": false},
                   "circuit_breaker": {"failures": 1, "probe_initial_seconds": 1,
                                       "probe_max_seconds": 1}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    for i in 0..6 {
        send(&h, "cba", json!({"body": format!("m{i}")})).await;
    }
    // Two requests held, two more messages leased ahead of their answers.
    view_when(&h, path, 20, |v| {
        v["stats"]["in_flight"] == 4 && v["stats"]["requests_in_flight"] == 2
    })
    .await;
    let released = std::time::Instant::now();
    r.release();
    view_when(&h, path, 20, |v| v["stats"]["circuit"]["state"] == "open").await;
    // Open: the only requests are its probes, a second apart. (Copies leased ahead sent
    // while it is open would come at once after the release.)
    r.wait_for("two probes", 30, |x| x.len() >= 4).await;
    let recovered = std::time::Instant::now();
    r.set(|_, _| (200, None, 0));
    let mut at: Vec<std::time::Instant> = r
        .got()
        .iter()
        .map(|q| q.at)
        .filter(|t| *t > released && *t < recovered)
        .collect();
    at.insert(0, released);
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= std::time::Duration::from_millis(900),
            "requests {gap:?} apart while the circuit was open"
        );
    }
    view_when(&h, path, 30, |v| v["stats"]["delivered"] == 6).await;
    // Each message's first request is its attempt 1.
    let mut first: std::collections::BTreeMap<String, String> = Default::default();
    for q in r.got() {
        let body = String::from_utf8_lossy(&q.body).into_owned();
        let attempt = q.header("sluice-attempt").unwrap_or("").to_string();
        first.entry(body).or_insert(attempt);
    }
    assert_eq!(first.len(), 6, "{first:?}");
    assert!(first.values().all(|a| a == "1"), "{first:?}");
}

#[tokio::test]
async fn a_subscription_failing_too_long_is_disabled_until_enabled() {
    let (mut s, h) = open_server().await;
    let r = Receiver::with(|_, _| (503, None, 0)).await;
    let path = "/v1/queues/dis/subscriptions/a";
    let (st, v) = h
        .put(
            path,
            json!({"url": r.url("/dis"), "concurrency": 1, "max_attempts": 100,
                   "disable_after_seconds": 1,
                   "backoff": {"initial_seconds": 0.2, "max_seconds": 0.2, "jitter": false},
                   "circuit_breaker": {"failures": 1000}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["disable_after_seconds"], 1, "{v}");
    send(&h, "dis", json!({"body": "m1"})).await;
    let v = view_when(&h, path, 30, |v| v["state"] == "disabled").await;
    assert!(v["disabled_at"].is_string(), "{v}");
    let reason = v["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("no successful request"), "{reason}");
    assert_eq!(v["stats"]["failed"], 0, "nothing dead-lettered: {v}");
    // Messages keep accumulating; nothing is sent while disabled, across a kill -9.
    send(&h, "dis", json!({"body": "m2"})).await;
    s.kill();
    let sent = count(&r, "/dis");
    s.spawn().await;
    let (_, v) = h.get(path).await;
    assert_eq!(v["state"], "disabled", "{v}");
    assert_eq!(
        v["stats"]["ready"].as_u64().unwrap() + v["stats"]["delayed"].as_u64().unwrap(),
        2,
        "{v}"
    );
    // A long poll's worth of time (on an empty queue) for a lane that would wrongly lease.
    h.put("/v1/queues/other", json!({})).await;
    let (st, _) = h
        .post("/v1/queues/other/receive", json!({"wait_seconds": 1}))
        .await;
    assert_eq!(st, 200);
    assert_eq!(count(&r, "/dis"), sent, "nothing sent while disabled");
    r.set(|_, _| (200, None, 0));
    let base = s.base.clone();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run(&base, &["sub", "enable", "dis", "a"], None))
            .await
            .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("is active"), "{out}");
    let v = view_when(&h, path, 30, |v| v["stats"]["delivered"] == 2).await;
    assert_eq!(v["stats"]["circuit"]["state"], "closed", "{v}");
    assert!(v["disabled_reason"].is_null(), "{v}");
    let (st, v) = h
        .put(
            path,
            json!({"url": r.url("/dis"), "disable_after_seconds": 0}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("disable_after_seconds:"));
    let (_, doc) = h.get("/openapi.json").await;
    assert!(doc["paths"]
        .get("/v1/queues/{queue}/subscriptions/{name}/enable")
        .is_some());
}

#[tokio::test]
async fn a_given_up_message_is_posted_signed_to_the_failure_callback() {
    let (_s, h) = open_server().await;
    let r = Receiver::with(|_, path| (if path == "/cb" { 200 } else { 400 }, None, 0)).await;
    let (st, v) = h
        .put(
            "/v1/queues/fcb/subscriptions/a",
            json!({"url": r.url("/hook"), "signing_secret": SECRET,
                   "failure_callback": r.url("/cb")}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["failure_callback"], r.url("/cb"), "{v}");
    let id = send(
        &h,
        "fcb",
        json!({"body": "doomed", "attributes": {"k": "v"}}),
    )
    .await;
    let got = r
        .wait_for("the failure callback", 20, |x| {
            x.iter().any(|q| q.path == "/cb")
        })
        .await;
    let cb = got.iter().find(|q| q.path == "/cb").unwrap();
    let body = cb.json();
    assert_eq!(body["type"], "message.failed", "{body}");
    assert_eq!(body["queue"], "fcb");
    assert_eq!(body["subscription"], "a");
    assert_eq!(body["dead_letter_queue"], "fcb-dlq");
    assert_eq!(body["messages"][0]["id"], id.as_str());
    assert_eq!(body["messages"][0]["body"], "doomed");
    assert_eq!(body["messages"][0]["attributes"]["k"], "v");
    assert_eq!(body["last_attempt"]["status"], 400, "{body}");
    assert!(verify_signature(SECRET, cb), "signed like deliveries");
    let (st, v) = h
        .put(
            "/v1/queues/fcb/subscriptions/b",
            json!({"url": r.url("/hook"), "failure_callback": "ftp://x"}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("failure_callback:"));
}

#[tokio::test]
async fn operational_events_tell_the_operator_signed() {
    let ops = Receiver::start().await;
    let events_url = ops.url("/events");
    let s = crate::common::Server::start_with(&[
        "--allow-private-targets",
        "--events-url",
        &events_url,
        "--events-secret",
        SECRET,
    ])
    .await;
    let h = Http::new(&s.base);
    let r = Receiver::with(|_, path| (if path == "/bad" { 400 } else { 500 }, None, 0)).await;
    let fast = json!({"initial_seconds": 0.1, "max_seconds": 0.1, "jitter": false});
    for (name, path, extra) in [
        (
            "flaky",
            "/flaky",
            json!({"circuit_breaker": {"failures": 2, "probe_initial_seconds": 0.2, "probe_max_seconds": 0.5}}),
        ),
        ("bad", "/bad", json!({})),
        (
            "dead",
            "/dead",
            json!({"disable_after_seconds": 1, "circuit_breaker": {"failures": 1000}}),
        ),
    ] {
        let mut body =
            json!({"url": r.url(path), "concurrency": 1, "max_attempts": 100, "backoff": fast});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (st, v) = h
            .put(&format!("/v1/queues/ev/subscriptions/{name}"), body)
            .await;
        assert_eq!(st, 201, "{v}");
    }
    send(&h, "ev", json!({"body": "m1"})).await;
    let kinds = |x: &[crate::receiver::Req]| -> Vec<String> {
        x.iter()
            .map(|q| q.json()["type"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    ops.wait_for("opened, exhausted and disabled", 30, |x| {
        let k = kinds(x);
        [
            "endpoint.circuit_opened",
            "attempt.exhausted",
            "endpoint.disabled",
        ]
        .iter()
        .all(|w| k.iter().any(|g| g == w))
    })
    .await;
    r.set(|_, path| (if path == "/bad" { 400 } else { 200 }, None, 0));
    let got = ops
        .wait_for("closed", 30, |x| {
            kinds(x).iter().any(|k| k == "endpoint.circuit_closed")
        })
        .await;
    for q in &got {
        assert!(verify_signature(SECRET, q), "signed: {:?}", q.json());
        let e = q.json();
        assert!(e["timestamp"].is_string(), "{e}");
        assert_eq!(e["data"]["queue"], "ev", "{e}");
    }
    let find = |k: &str| {
        got.iter()
            .map(|q| q.json())
            .find(|e| e["type"] == k)
            .unwrap()
    };
    assert_eq!(
        find("endpoint.circuit_opened")["data"]["subscription"],
        "flaky"
    );
    assert_eq!(find("attempt.exhausted")["data"]["subscription"], "bad");
    assert_eq!(
        find("attempt.exhausted")["data"]["dead_letter_queue"],
        "ev-dlq"
    );
    let disabled = find("endpoint.disabled");
    assert_eq!(disabled["data"]["subscription"], "dead");
    assert!(disabled["data"]["reason"].is_string(), "{disabled}");
}
