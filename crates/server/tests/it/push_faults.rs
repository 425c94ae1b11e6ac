//! Push delivery when things go wrong: private targets refused by default, a `kill -9` during
//! delivery losing nothing, bad subscription, timer and schedule input refused clearly, and
//! hostile endpoints (endless bodies, resets, hangs) contained. The well-behaved endpoints are
//! the receiver in `receiver.rs`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;

use crate::common::{Http, Server};
use crate::receiver::{open_server, send, send_numbered, wait_messages, wait_until, Receiver};

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
    let ids = send_numbered(&h, "k", 80).await;
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
