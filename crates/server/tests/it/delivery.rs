//! Delivery you can trust, end to end: the delivery history and the counters are the same
//! after a `kill -9` (embedded store and Redis), a replay after an outage sends exactly the
//! chosen window again. (The attempts route's ownership check is in `auth.rs`.)

use serde_json::{json, Value};
use sluice_engine::redis_store::testing::RedisServer;

use crate::common::{Http, Server};
use crate::receiver::{wait_until, Receiver};

async fn publish(h: &Http, q: &str, body: &str) -> String {
    let (st, v) = h
        .post(&format!("/v1/queues/{q}/messages"), json!({ "body": body }))
        .await;
    assert_eq!(st, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// What must not change across a restart: the subscription's counters and each message's
/// attempts (without the gauges, which move on their own).
async fn durable_view(h: &Http, q: &str, ids: &[String]) -> Value {
    let sub = h.get(&format!("/v1/queues/{q}/subscriptions/s")).await.1;
    let st = &sub["stats"];
    let mut attempts = Vec::new();
    for id in ids {
        attempts.push(
            h.get(&format!("/v1/queues/{q}/messages/{id}/attempts"))
                .await
                .1,
        );
    }
    let recent = h
        .get(&format!("/v1/queues/{q}/subscriptions/s/attempts?limit=10"))
        .await
        .1;
    json!({
        "counters": [st["delivered"], st["retried"], st["throttled"], st["failed"]],
        "attempts": attempts,
        "recent": recent,
    })
}

/// One message delivered at once, one after a 503, one refused with 404 (dead-lettered), one
/// throttled once: then `kill -9` and a restart, and everything reads the same.
async fn history_and_counters_survive_a_kill(s: &mut Server) {
    let h = Http::new(&s.base);
    // With concurrency 1, requests go in publish order: the first attempt of each of the
    // four messages, then the retries.
    let r = Receiver::with(|n, _| match n {
        0 => (503, None, 0),
        2 => (404, None, 0),
        3 => (429, Some(1), 0),
        _ => (200, None, 0),
    })
    .await;
    let (st, v) = h
        .put(
            "/v1/queues/hist/subscriptions/s",
            json!({"url": r.url("/hook"), "concurrency": 1,
                   "backoff": {"initial_seconds": 0.2, "jitter": false}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = h
        .post(
            "/v1/queues/hist/messages",
            json!({"messages": [{"body": "first"}, {"body": "second"}, {"body": "third"},
                                {"body": "fourth"}]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let ids: Vec<String> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    wait_until("every message settled", 60, || async {
        let st = h.get("/v1/queues/hist/subscriptions/s").await.1["stats"].clone();
        st["delivered"].as_u64().unwrap_or(0) + st["failed"].as_u64().unwrap_or(0) == 4
            && st["ready"] == 0
            && st["delayed"] == 0
            && st["in_flight"] == 0
    })
    .await;
    let before = durable_view(&h, "hist", &ids).await;
    assert_eq!(before["counters"], json!([3, 1, 1, 1]), "{before}");
    assert!(
        before["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| !a["attempts"].as_array().unwrap().is_empty()),
        "{before}"
    );
    s.kill();
    s.spawn().await;
    let after = durable_view(&h, "hist", &ids).await;
    assert_eq!(after, before, "the same after kill -9 and a restart");
}

#[tokio::test]
async fn history_and_counters_survive_a_kill_nine_embedded() {
    let mut s = Server::start_with(&["--allow-private-targets"]).await;
    history_and_counters_survive_a_kill(&mut s).await;
}

#[tokio::test]
async fn history_and_counters_survive_a_kill_nine_redis() {
    let redis = RedisServer::start(&[]);
    let url = redis.url();
    let mut s = Server::start_with(&[
        "--allow-private-targets",
        "--storage",
        &url,
        "--redis-prefix",
        "killed",
    ])
    .await;
    history_and_counters_survive_a_kill(&mut s).await;
}

/// An endpoint down for a while: its messages are dead-lettered; a replay of exactly the
/// outage's window sends those (and only those) again, under the same `webhook-id`. A
/// delivered message kept with `retain_delivered_seconds` can be replayed too.
#[tokio::test]
async fn a_replay_after_an_outage_sends_exactly_the_window() {
    let s = Server::start_with(&["--allow-private-targets"]).await;
    let h = Http::new(&s.base);
    let r = Receiver::with(|_, _| (503, None, 0)).await;
    let (st, v) = h
        .put(
            "/v1/queues/outage/subscriptions/s",
            json!({"url": r.url("/hook"), "max_attempts": 1}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let dead = |n: usize| {
        let h = h.clone();
        async move {
            h.get("/v1/queues/outage-dlq/messages?limit=100").await.1["messages"]
                .as_array()
                .is_some_and(|m| m.len() == n)
        }
    };
    let before = publish(&h, "outage", "before the window").await;
    wait_until("the first dead letter", 30, || dead(1)).await;
    let window_start = sluice_engine::rfc3339(crate::common::now_ms());
    let in_window = vec![
        publish(&h, "outage", "in the window 1").await,
        publish(&h, "outage", "in the window 2").await,
    ];
    wait_until("the window's dead letters", 30, || dead(3)).await;
    let window_end = sluice_engine::rfc3339(crate::common::now_ms());
    let after = publish(&h, "outage", "after the window").await;
    wait_until("the last dead letter", 30, || dead(4)).await;
    // The endpoint is back.
    r.set(|_, _| (200, None, 0));
    let calls_before = r.got().len();
    let (st, task) = h
        .post(
            "/v1/queues/outage/subscriptions/s/replay",
            json!({"since": window_start, "until": window_end, "outcome": "failed"}),
        )
        .await;
    assert_eq!(st, 202, "{task}");
    assert_eq!(task["total"], 2, "{task}");
    let path = format!(
        "/v1/queues/outage/subscriptions/s/replay/{}",
        task["id"].as_str().unwrap()
    );
    wait_until("the replay done", 30, || async {
        h.get(&path).await.1["state"] == "done"
    })
    .await;
    let got = r
        .wait_for("the window's messages", 30, |g| g.len() >= calls_before + 2)
        .await;
    let mut sent: Vec<String> = got[calls_before..]
        .iter()
        .map(|q| q.header("webhook-id").unwrap().to_string())
        .collect();
    sent.sort();
    let mut want = in_window.clone();
    want.sort();
    assert_eq!(sent, want, "exactly the window, under the same webhook-ids");
    // The others stay dead letters.
    let left: Vec<String> = h.get("/v1/queues/outage-dlq/messages?limit=100").await.1["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["attributes"]["sluice-message-id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&before) && left.contains(&after), "{left:?}");
    assert_eq!(h.get(&path).await.1["replayed"], 2);

    // Delivered messages are kept for replay only when the queue says so.
    let (st, v) = h
        .put(
            "/v1/queues/outage",
            json!({"retain_delivered_seconds": 3600}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["config"]["retain_delivered_seconds"], 3600);
    let since = sluice_engine::rfc3339(crate::common::now_ms() - 1000);
    let kept = publish(&h, "outage", "delivered and kept").await;
    r.wait_for("the kept message", 30, |g| {
        g.iter()
            .any(|q| q.header("webhook-id") == Some(kept.as_str()))
    })
    .await;
    let n = r.got().len();
    let (st, task) = h
        .post(
            "/v1/queues/outage/subscriptions/s/replay",
            json!({"since": since, "outcome": "delivered"}),
        )
        .await;
    assert_eq!((st, task["total"].clone()), (202, json!(1)), "{task}");
    let got = r
        .wait_for("the replayed delivery", 30, |g| g.len() > n)
        .await;
    assert_eq!(got[n].header("webhook-id"), Some(kept.as_str()));
    // Bad input names the field.
    let (st, e) = h
        .post(
            "/v1/queues/outage/subscriptions/s/replay",
            json!({"since": "yesterday", "outcome": "failed"}),
        )
        .await;
    assert_eq!(st, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("since:"),
        "{e}"
    );
}
