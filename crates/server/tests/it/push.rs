//! Push delivery end to end: fan-out with headers and signatures, retries, backoff and dead
//! letters, 4xx and 429 answers, isolation of a dead endpoint, rate limits, batches, adaptive
//! pacing against 429s and FIFO group order. The endpoints are the receiver in `receiver.rs`;
//! times are checked only as lower bounds or with generous tolerances.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::receiver::{
    open_server, send, send_numbered, verify_signature, wait_messages, wait_until, Receiver, SECRET,
};

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
    send_numbered(&h, "iso", 30).await;
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
    send_numbered(&h, "rl", 250).await;
    let got = r.wait_for("250 deliveries", 60, |r| r.len() >= 250).await;
    // Burst of 50, then 50/s: 250 take at least 4 s; no 1-second window of sending holds
    // more than the burst plus one second's worth (101). The receiver's clock sees them late
    // by however long each took to arrive, so its window is 950 ms: 50 ms of such jitter
    // (a busy 2-core machine) cannot push a lawful second over 101, and a limiter that let
    // through even a tenth more could not stay under.
    let span = got[249].at - got[0].at;
    assert!(
        span >= Duration::from_millis(3600),
        "250 at 50/s took {span:?}"
    );
    for (i, g) in got.iter().enumerate() {
        let in_window = got[i..]
            .iter()
            .take_while(|x| x.at - g.at < Duration::from_millis(950))
            .count();
        assert!(in_window <= 101, "{in_window} requests within 950 ms");
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
    let ids = send_numbered(&h, "ad", 150).await;
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
