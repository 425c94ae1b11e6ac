//! Queues beyond SQS through the real binary: priorities, fair turns between message groups and
//! their in-flight limit, the `Idempotency-Key` header (single and batch), time to live (drop
//! and dead-letter), all of it again after a kill -9, and the bad input each rule refuses. The
//! rules themselves are the engine's (conformance suite); these tests check the HTTP mapping
//! and that the binary keeps them across a crash.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{err_code, millis_of, now_ms, Http, Server};

/// POST a JSON body with an `Idempotency-Key` header: (status, body).
async fn keyed(h: &Http, path: &str, body: Value, key: &str) -> (u16, Value) {
    let r =
        h.c.post(format!("{}{path}", h.base))
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Receive one message at a time (acking each), up to `n`: the bodies in order.
async fn take(h: &Http, q: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (st, v) = h.post(&format!("/v1/queues/{q}/receive"), json!({})).await;
        assert_eq!(st, 200, "{v}");
        let Some(m) = v["messages"].as_array().and_then(|m| m.first()).cloned() else {
            break;
        };
        let (st, a) = h
            .post(
                &format!("/v1/queues/{q}/ack"),
                json!({"receipt": m["receipt"]}),
            )
            .await;
        assert_eq!(st, 200, "{a}");
        out.push(m["body"].as_str().unwrap().to_string());
    }
    out
}

async fn publish(h: &Http, q: &str, messages: Vec<Value>) {
    let (st, v) = h
        .post(
            &format!("/v1/queues/{q}/messages"),
            json!({ "messages": messages }),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

fn grouped(prefix: &str, group: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"body": format!("{prefix}{i}"), "group": group}))
        .collect()
}

/// Messages of priorities 9, 6, 4 (none given), 0 in a mixed order.
async fn publish_priorities(h: &Http, q: &str) {
    publish(
        h,
        q,
        vec![
            json!({"body": "n1"}),
            json!({"body": "h1", "priority": 9}),
            json!({"body": "l1", "priority": 0}),
            json!({"body": "h2", "priority": 9}),
            json!({"body": "n2", "priority": 4}),
            json!({"body": "m1", "priority": 6}),
        ],
    )
    .await;
}
const PRIORITY_ORDER: [&str; 6] = ["h1", "h2", "m1", "n1", "n2", "l1"];

/// One big group of `big` messages, then three small groups of three.
async fn publish_groups(h: &Http, q: &str, big: usize) {
    publish(h, q, grouped("big", "big", big)).await;
    for g in ["s1-", "s2-", "s3-"] {
        publish(h, q, grouped(g, g, 3)).await;
    }
}

/// The small groups' nine messages all came within `first`, each group in its own order.
fn small_groups_had_their_turns(first: &[String]) {
    let small: Vec<&String> = first.iter().filter(|b| b.starts_with('s')).collect();
    assert_eq!(small.len(), 9, "{first:?}");
    let s2: Vec<&str> = small
        .iter()
        .filter(|b| b.starts_with("s2-"))
        .map(|b| b.as_str())
        .collect();
    assert_eq!(s2, ["s2-0", "s2-1", "s2-2"]);
}

#[tokio::test]
async fn priorities_order_receives_and_show_in_the_message() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    publish_priorities(&h, "prio").await;
    let (_, peek) = h.get("/v1/queues/prio/messages").await;
    let by_body = |b: &str| {
        peek["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["body"] == b)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_body("h1")["priority"], 9);
    assert_eq!(by_body("n1")["priority"], 4, "the default is shown too");
    assert!(by_body("n1").get("expires_at").is_none());
    // A batched receive takes the highest first as well.
    let (_, v) = h
        .post(
            "/v1/queues/prio/receive",
            json!({"max_messages": 3, "visibility_timeout_seconds": 0}),
        )
        .await;
    let bodies: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["h1", "h2", "m1"]);
    assert_eq!(take(&h, "prio", 10).await, PRIORITY_ORDER);
}

#[tokio::test]
async fn groups_take_turns_and_respect_their_in_flight_limit() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    publish_groups(&h, "fair", 200).await;
    let first = take(&h, "fair", 15).await;
    small_groups_had_their_turns(&first);
    // The group is shown on a standard queue's messages.
    let (_, v) = h
        .post("/v1/queues/fair/receive", json!({"max_messages": 1}))
        .await;
    assert_eq!(v["messages"][0]["message_group_id"], "big");

    // At most two leased messages of a group at once.
    let (st, q) = h
        .put("/v1/queues/cap", json!({"max_in_flight_per_group": 2}))
        .await;
    assert_eq!(
        (st, &q["config"]["max_in_flight_per_group"]),
        (201, &json!(2))
    );
    publish(&h, "cap", grouped("a", "a", 5)).await;
    publish(&h, "cap", vec![json!({"body": "b0", "group": "b"})]).await;
    let (_, v) = h
        .post("/v1/queues/cap/receive", json!({"max_messages": 10}))
        .await;
    let got = v["messages"].as_array().unwrap().clone();
    let bodies: Vec<&str> = got.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert!(bodies.contains(&"b0"));
    let (_, v) = h
        .post("/v1/queues/cap/receive", json!({"max_messages": 10}))
        .await;
    assert_eq!(v["messages"], json!([]), "group a is at its limit");
    // Acking one of a's frees one place, and only one.
    let a = got.iter().find(|m| m["body"] == "a0").unwrap();
    let (st, _) = h
        .post("/v1/queues/cap/ack", json!({"receipt": a["receipt"]}))
        .await;
    assert_eq!(st, 200);
    let (_, v) = h
        .post("/v1/queues/cap/receive", json!({"max_messages": 10}))
        .await;
    let bodies: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["a2"]);
    // Lifting the limit (null) lets the rest out.
    let (st, q) = h
        .put("/v1/queues/cap", json!({"max_in_flight_per_group": null}))
        .await;
    assert_eq!(
        (st, &q["config"]["max_in_flight_per_group"]),
        (200, &json!(null))
    );
    let (_, v) = h
        .post("/v1/queues/cap/receive", json!({"max_messages": 10}))
        .await;
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn idempotency_key_stores_once_and_answers_duplicate() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let path = "/v1/queues/idem/messages";
    let (st, first) = keyed(&h, path, json!({"body": "order 7"}), "order-7").await;
    assert_eq!(st, 201, "{first}");
    assert!(first.get("duplicate").is_none(), "{first}");
    let (st, again) = keyed(&h, path, json!({"body": "order 7, again"}), "order-7").await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["duplicate"], true);
    // The body's own id, with the same value, is fine; another value is refused.
    let (st, _) = keyed(
        &h,
        path,
        json!({"body": "x", "dedup_id": "order-7"}),
        "order-7",
    )
    .await;
    assert_eq!(st, 200);
    let (st, v) = keyed(
        &h,
        path,
        json!({"body": "x", "dedup_id": "other"}),
        "order-7",
    )
    .await;
    assert_eq!((st, err_code(&v).as_str()), (400, "invalid_argument"));
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Idempotency-Key"));
    // A raw body takes the header as well.
    let raw = |key: &'static str| {
        h.c.post(format!("{}{path}", h.base))
            .header("content-type", "text/plain")
            .header("idempotency-key", key)
            .body("raw")
            .send()
    };
    assert_eq!(raw("raw-1").await.unwrap().status(), 201);
    let r = raw("raw-1").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["duplicate"], true);
    // The short alias `dedup_id` works without a header.
    let (st, _) = h.post(path, json!({"body": "y", "dedup_id": "d-1"})).await;
    assert_eq!(st, 201);
    let (st, v) = h.post(path, json!({"body": "y", "dedup_id": "d-1"})).await;
    assert_eq!((st, &v["duplicate"]), (200, &json!(true)));

    // A batch: entries get KEY:INDEX, so a retry stores nothing and answers 200.
    let batch = json!({"messages": [{"body": "b0"}, {"body": "b1"}]});
    let (st, b1) = keyed(&h, path, batch.clone(), "batch-1").await;
    assert_eq!(st, 201, "{b1}");
    assert!(b1.get("duplicate").is_none(), "{b1}");
    let (st, b2) = keyed(&h, path, batch, "batch-1").await;
    assert_eq!(st, 200, "{b2}");
    assert_eq!(b2["ids"], b1["ids"]);
    assert_eq!(b2["duplicate"], json!([true, true]));
    // A longer retry: the new entry is stored (201), the others are duplicates.
    let (st, b3) = keyed(
        &h,
        path,
        json!({"messages": [{"body": "b0"}, {"body": "b1"}, {"body": "b2"}]}),
        "batch-1",
    )
    .await;
    assert_eq!(st, 201, "{b3}");
    assert_eq!(b3["duplicate"], json!([true, true, false]));
    assert_eq!(b3["ids"][1], b1["ids"][1]);
    // Stored: order 7, raw, y, b0, b1, b2.
    let (_, q) = h.get("/v1/queues/idem").await;
    assert_eq!(q["stats"]["ready"], 6, "{q}");
    assert_eq!(q["stats"]["published"], 6, "{q}");
    // The key is checked like a deduplication id.
    let (st, v) = keyed(&h, path, json!({"body": "z"}), &"k".repeat(129)).await;
    assert_eq!(st, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{v}"
    );
}

#[tokio::test]
async fn expired_messages_are_never_delivered() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    // Paused while the short-lived message's time runs out, so that no receive can get it
    // before then; the queue's housekeeping still expires it.
    let (st, _) = h.put("/v1/queues/ttl", json!({})).await;
    assert_eq!(st, 201);
    let (st, _) = h.post("/v1/queues/ttl/pause", json!({})).await;
    assert_eq!(st, 200);
    publish(
        &h,
        "ttl",
        vec![
            json!({"body": "short", "ttl_seconds": 1}),
            json!({"body": "keep"}),
        ],
    )
    .await;
    let (_, peek) = h.get("/v1/queues/ttl/messages").await;
    let short = &peek["messages"][0];
    assert_eq!(short["body"], "short");
    let ends = millis_of(&short["expires_at"]);
    assert!(
        (ends - millis_of(&short["enqueued_at"]) - 1000).abs() < 5,
        "{short}"
    );
    while now_ms() <= ends {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, _) = h.post("/v1/queues/ttl/resume", json!({})).await;
    assert_eq!(st, 200);
    let mut got = Vec::new();
    for _ in 0..100 {
        let (_, v) = h
            .post("/v1/queues/ttl/receive", json!({"wait_seconds": 1}))
            .await;
        for m in v["messages"].as_array().unwrap() {
            got.push(m["body"].as_str().unwrap().to_string());
        }
        if got.iter().any(|b| b == "keep") {
            break;
        }
    }
    assert_eq!(got, ["keep"], "the expired message never came");
    let mut expired = json!(0);
    for _ in 0..100 {
        let (_, q) = h.get("/v1/queues/ttl").await;
        expired = q["stats"]["expired"].clone();
        if expired == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(expired, 1);

    // A queue's default time to live, dead-lettered at its end instead of dropped.
    let (st, q) = h
        .put(
            "/v1/queues/ttl-dl",
            json!({"default_ttl_seconds": 1, "on_expire": "dead_letter",
                   "max_receives": 5, "dead_letter_queue": "ttl-dl-dlq"}),
        )
        .await;
    assert_eq!(st, 201, "{q}");
    assert_eq!(q["config"]["on_expire"], "dead_letter");
    assert_eq!(q["config"]["default_ttl_seconds"], 1);
    publish(&h, "ttl-dl", vec![json!({"body": "late"})]).await;
    let mut dead = Vec::new();
    for _ in 0..100 {
        let (_, v) = h
            .post("/v1/queues/ttl-dl-dlq/receive", json!({"wait_seconds": 1}))
            .await;
        dead.extend(v["messages"].as_array().unwrap().iter().cloned());
        if !dead.is_empty() {
            break;
        }
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["body"], "late");
    assert_eq!(dead[0]["dead_letter_source"], "ttl-dl");
    assert!(
        dead[0].get("expires_at").is_none(),
        "a dead letter has no time to live"
    );
}

#[tokio::test]
async fn rules_survive_kill_nine() {
    let mut s = Server::start().await;
    let h = Http::new(&s.base);
    let path = "/v1/queues/crash-idem/messages";
    let (st, first) = keyed(&h, path, json!({"body": "once"}), "pay-42").await;
    assert_eq!(st, 201);
    let (st, b1) = keyed(
        &h,
        path,
        json!({"messages": [{"body": "x0"}, {"body": "x1"}]}),
        "batch-9",
    )
    .await;
    assert_eq!(st, 201);
    publish_priorities(&h, "crash-prio").await;
    publish_groups(&h, "crash-fair", 50).await;
    let (st, _) = h
        .put(
            "/v1/queues/crash-cfg",
            json!({"dedup_window_seconds": 3600, "default_ttl_seconds": 600,
                   "max_in_flight_per_group": 7}),
        )
        .await;
    assert_eq!(st, 201);

    s.kill();
    s.spawn().await;

    let (st, again) = keyed(&h, path, json!({"body": "once more"}), "pay-42").await;
    assert_eq!((st, &again["id"]), (200, &first["id"]), "{again}");
    assert_eq!(again["duplicate"], true);
    let (st, b2) = keyed(
        &h,
        path,
        json!({"messages": [{"body": "x0"}, {"body": "x1"}]}),
        "batch-9",
    )
    .await;
    assert_eq!((st, &b2["ids"]), (200, &b1["ids"]), "{b2}");
    let (_, q) = h.get("/v1/queues/crash-idem").await;
    assert_eq!(q["stats"]["ready"], 3);
    assert_eq!(take(&h, "crash-prio", 10).await, PRIORITY_ORDER);
    small_groups_had_their_turns(&take(&h, "crash-fair", 15).await);
    let (_, q) = h.get("/v1/queues/crash-cfg").await;
    let c = &q["config"];
    assert_eq!(
        (
            &c["dedup_window_seconds"],
            &c["default_ttl_seconds"],
            &c["max_in_flight_per_group"]
        ),
        (&json!(3600), &json!(600), &json!(7))
    );
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let publish_cases = [
        ("q", json!({"body": "x", "priority": 10}), "priority"),
        ("q", json!({"body": "x", "priority": 300}), "priority"),
        ("q", json!({"body": "x", "ttl_seconds": 0}), "ttl_seconds"),
        (
            "q",
            json!({"body": "x", "ttl_seconds": 1_209_601}),
            "ttl_seconds",
        ),
        (
            "q",
            json!({"body": "x", "expires_at": "2020-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            "q",
            json!({"body": "x", "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            "q",
            json!({"body": "x", "ttl_seconds": 5, "expires_at": "2099-01-01T00:00:00Z"}),
            "ttl_seconds",
        ),
        (
            "q",
            json!({"messages": [{"body": "ok"}, {"body": "x", "priority": 10}]}),
            "messages[1].priority",
        ),
        (
            "q.fifo",
            json!({"body": "x", "group": "g", "dedup_id": "d", "priority": 5}),
            "priority",
        ),
    ];
    for (q, body, field) in publish_cases {
        let (st, v) = h
            .post(&format!("/v1/queues/{q}/messages"), body.clone())
            .await;
        assert_eq!(st, 400, "{body} → {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{body} → {msg}");
    }
    // Nothing of those was stored: not even the queue was created.
    let (st, v) = h.get("/v1/queues/q/messages").await;
    assert_eq!((st, err_code(&v).as_str()), (404, "queue_not_found"));
    let config_cases = [
        (
            "c.fifo",
            json!({"max_in_flight_per_group": 2}),
            "max_in_flight_per_group",
        ),
        (
            "c",
            json!({"max_in_flight_per_group": 0}),
            "max_in_flight_per_group",
        ),
        (
            "c",
            json!({"dedup_window_seconds": 0}),
            "dedup_window_seconds",
        ),
        (
            "c",
            json!({"dedup_window_seconds": 86401}),
            "dedup_window_seconds",
        ),
        (
            "c",
            json!({"default_ttl_seconds": 0}),
            "default_ttl_seconds",
        ),
        ("c", json!({"on_expire": "dead_letter"}), "on_expire"),
        ("c", json!({"on_expire": "explode"}), "on_expire"),
    ];
    for (q, body, field) in config_cases {
        let (st, v) = h.put(&format!("/v1/queues/{q}"), body.clone()).await;
        assert_eq!(st, 400, "{body} → {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{body} → {msg}");
    }
    // The edges are accepted.
    let (st, q) = h
        .put(
            "/v1/queues/c",
            json!({"dedup_window_seconds": 86400, "max_in_flight_per_group": 100000}),
        )
        .await;
    assert_eq!(st, 201, "{q}");
    assert_eq!(q["config"]["on_expire"], "drop");
}

/// `group_rate_per_second`: a burst of the rate per group, then one message per token; a long
/// poll ends when the next token comes (well before its deadline), and the setting shows.
#[tokio::test]
async fn groups_are_held_to_their_rate() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let (st, v) = h
        .put("/v1/queues/rated", json!({"group_rate_per_second": 1}))
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["config"]["group_rate_per_second"], 1, "{v}");
    publish(&h, "rated", grouped("a", "a", 3)).await;
    let (_, v) = h
        .post(
            "/v1/queues/rated/receive",
            json!({"max_messages": 10, "visibility_timeout_seconds": 60}),
        )
        .await;
    assert_eq!(v["messages"].as_array().unwrap().len(), 1, "{v}");
    let started = std::time::Instant::now();
    let (_, v) = h
        .post(
            "/v1/queues/rated/receive",
            json!({"max_messages": 10, "wait_seconds": 20, "visibility_timeout_seconds": 60}),
        )
        .await;
    assert_eq!(v["messages"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the long poll ended with the next token, not at its deadline"
    );
    let (st, v) = h
        .put("/v1/queues/rated", json!({"group_rate_per_second": 0}))
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v.to_string().contains("group_rate_per_second"), "{v}");
}
