//! The awe_queue seed's manual walkthrough, automated, with a 2-second checkout lifetime.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{Http, Server};

async fn stats(h: &Http) -> Value {
    let (st, v) = h.get("/get-stats").await;
    assert_eq!(st, 200);
    assert_eq!(v["status"], "okay");
    v["stats"].clone()
}

async fn receive(h: &Http, count: usize) -> Value {
    let (st, v) = h.get(&format!("/receive-message?count={count}")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "okay");
    v
}

fn texts(v: &Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_seed_walkthrough() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    // The default checkout lifetime is the seed's 120 s; the test shortens it.
    assert_eq!(stats(&h).await["checkout_lifetime"], "120s");
    let (st, _) = h
        .put("/v1/queues/awe", json!({"visibility_timeout_seconds": 2}))
        .await;
    assert_eq!(st, 200);
    let st0 = stats(&h).await;
    assert_eq!(
        st0,
        json!({"queue_length": 0, "checkouts_count": 0, "checkout_lifetime": "2s", "rescue_interval": "2s"})
    );

    // An empty message is refused in the seed's words, with CORS headers.
    let r =
        h.c.post(format!("{}/send-message", s.base))
            .json(&json!({"message": ""}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.text().await.unwrap(), "Message content required.");
    let (st, _) = h.post("/send-message", json!({})).await;
    assert_eq!(st, 400);

    let mut keys = Vec::new();
    for i in 1..=7 {
        let (st, v) = h
            .post(
                "/send-message",
                json!({"message": format!("job-details-0{i}")}),
            )
            .await;
        assert_eq!(st, 200);
        assert_eq!(v["status"], "okay");
        let key = v["key"].as_str().unwrap().to_string();
        assert_eq!(key.len(), 36, "a UUID");
        keys.push(key);
    }
    assert_eq!(stats(&h).await["queue_length"], 7);

    // Batches of three are disjoint.
    let b1 = receive(&h, 3).await;
    assert_eq!(b1["message"], "Requested batch-size available.");
    assert_eq!(
        texts(&b1),
        vec!["job-details-01", "job-details-02", "job-details-03"]
    );
    assert_eq!(b1["messages"][0]["key"], keys[0].as_str());
    assert_eq!(b1["messages"][0]["retry_count"], 0);
    assert!(
        b1["messages"][0]["timestamp"].as_i64().unwrap() > 1_600_000_000_000,
        "milliseconds"
    );
    let b2 = receive(&h, 3).await;
    assert_eq!(
        texts(&b2),
        vec!["job-details-04", "job-details-05", "job-details-06"]
    );
    let b3 = receive(&h, 3).await;
    assert_eq!(b3["message"], "Fewer messages available than requested.");
    assert_eq!(texts(&b3), vec!["job-details-07"]);
    let st = stats(&h).await;
    assert_eq!(
        (st["queue_length"].as_u64(), st["checkouts_count"].as_u64()),
        (Some(0), Some(7))
    );
    let none = receive(&h, 1).await;
    assert_eq!(
        none,
        json!({"status": "okay", "message": "No messages available in queue.", "messages": []})
    );

    // Not deleted within the checkout lifetime: back in the queue, in order, retry_count 1.
    let mut back = Value::Null;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        back = receive(&h, 3).await;
        if !back["messages"].as_array().unwrap().is_empty() {
            break;
        }
    }
    assert_eq!(
        texts(&back),
        vec!["job-details-01", "job-details-02", "job-details-03"]
    );
    assert!(back["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["retry_count"] == 1));

    // Delete one checked-out message: it is gone for good.
    let one = receive(&h, 1).await;
    assert_eq!(texts(&one), vec!["job-details-04"]);
    assert_eq!(one["messages"][0]["retry_count"], 1);
    let key = one["messages"][0]["key"].as_str().unwrap().to_string();
    let (st, v) = h.delete(&format!("/delete-message/{key}")).await;
    assert_eq!((st, v), (200, json!({"status": "okay"})));
    let (st, v) = h.delete(&format!("/delete-message/{key}")).await;
    assert_eq!(st, 404, "a key that is not checked out: {v}");
    assert_eq!(v["status"], "error");
    let (st, _) = h.delete("/delete-message/not-a-uuid").await;
    assert_eq!(st, 404);
    let st = stats(&h).await;
    assert_eq!(
        st["queue_length"].as_u64().unwrap() + st["checkouts_count"].as_u64().unwrap(),
        6
    );

    // Everything else can still be checked out; job-details-04 never again.
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen.extend(texts(&receive(&h, 10).await));
        if seen.len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert!(!seen.contains(&"job-details-04".to_string()));

    // CORS on every answer, and the preflight.
    let r =
        h.c.request(reqwest::Method::OPTIONS, format!("{}/send-message", s.base))
            .send()
            .await
            .unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        r.headers()["access-control-allow-methods"],
        "POST, GET, OPTIONS, HEAD, DELETE"
    );
    assert_eq!(
        r.headers()["access-control-allow-headers"],
        "Origin, X-Requested-With, Content-Type, Accept"
    );
    let r =
        h.c.get(format!("{}/get-stats", s.base))
            .send()
            .await
            .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    // The awe queue is an ordinary queue in the native API.
    let (st, q) = h.get("/v1/queues/awe").await;
    assert_eq!(st, 200);
    assert_eq!(q["stats"]["acked"], 1);
}

#[tokio::test]
async fn a_prefix_and_another_queue() {
    let s = Server::start_with(&["--awe-prefix", "/awe", "--awe-queue", "jobs"]).await;
    let h = Http::new(&s.base);
    let (st, v) = h.post("/awe/send-message", json!({"message": "hi"})).await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = h.post("/send-message", json!({"message": "hi"})).await;
    assert_eq!(st, 404, "not at the root when a prefix is set");
    let (_, q) = h.get("/v1/queues/jobs").await;
    assert_eq!(q["stats"]["ready"], 1);
    assert_eq!(q["config"]["visibility_timeout_seconds"], 120);
    let (st, v) = h.get("/awe/receive-message?count=abc").await;
    assert_eq!(st, 400, "{v}");
}
