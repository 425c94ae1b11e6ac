//! The native API as documented, over real sockets.

use serde_json::json;

use crate::common::{err_code, Http, Server};

#[tokio::test]
async fn queue_lifecycle() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let (st, q) = h
        .put(
            "/v1/queues/orders",
            json!({"visibility_timeout_seconds": 45}),
        )
        .await;
    assert_eq!(st, 201, "{q}");
    assert_eq!(q["name"], "orders");
    assert_eq!(q["config"]["visibility_timeout_seconds"], 45);
    assert_eq!(q["config"]["retention_seconds"], 345600);
    assert_eq!(q["config"]["max_message_bytes"], 262144);
    assert!(q["config"]["max_receives"].is_null());
    assert_eq!(q["stats"]["ready"], 0);
    let (st, q) = h
        .put("/v1/queues/orders", json!({"delay_seconds": 3}))
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        q["config"]["visibility_timeout_seconds"], 45,
        "PUT keeps unspecified fields"
    );
    assert_eq!(q["config"]["delay_seconds"], 3);
    let (st, _) = h
        .raw("PUT", "/v1/queues/empty-body", "application/json", vec![])
        .await;
    assert_eq!(st, 201, "an empty body creates with defaults");
    let (st, list) = h.get("/v1/queues").await;
    assert_eq!(st, 200);
    let names: Vec<&str> = list["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["empty-body", "orders"]);
    assert!(list["queues"][0]["stats"]["ready"].is_u64());
    let (st, _) = h.delete("/v1/queues/orders").await;
    assert_eq!(st, 204);
    let (st, v) = h.get("/v1/queues/orders").await;
    assert_eq!((st, err_code(&v).as_str()), (404, "queue_not_found"));
}

#[tokio::test]
async fn publish_receive_ack_flow() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    // Publishing to a missing queue creates it.
    let (st, v) = h
        .post(
            "/v1/queues/jobs/messages",
            json!({"body": "text", "attributes": {"k": "v"}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let id1 = v["id"].as_str().unwrap().to_string();
    let (st, v) = h
        .raw(
            "POST",
            "/v1/queues/jobs/messages",
            "application/octet-stream",
            vec![0xff, 0x00, 0x41],
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let id2 = v["id"].as_str().unwrap().to_string();
    let (st, v) = h
        .post(
            "/v1/queues/jobs/messages",
            json!({"messages": [{"body": "b1"}, {"body_base64": "aGk="}]}),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(v["ids"].as_array().unwrap().len(), 2);
    let (_, q) = h.get("/v1/queues/jobs").await;
    assert_eq!(q["stats"]["ready"], 4);
    assert_eq!(q["stats"]["published"], 4);

    let (st, v) = h
        .post(
            "/v1/queues/jobs/receive",
            json!({"max_messages": 10, "visibility_timeout_seconds": 60}),
        )
        .await;
    assert_eq!(st, 200);
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4);
    assert_eq!(msgs[0]["id"], id1.as_str());
    assert_eq!(msgs[0]["body"], "text");
    assert_eq!(msgs[0]["attributes"]["k"], "v");
    assert_eq!(msgs[0]["receive_count"], 1);
    assert!(chrono::DateTime::parse_from_rfc3339(msgs[0]["enqueued_at"].as_str().unwrap()).is_ok());
    assert_eq!(msgs[1]["id"], id2.as_str());
    assert!(msgs[1].get("body").is_none());
    assert_eq!(msgs[1]["body_base64"], "/wBB");
    assert_eq!(msgs[3]["body"], "hi");
    let receipts: Vec<String> = msgs
        .iter()
        .map(|m| m["receipt"].as_str().unwrap().to_string())
        .collect();

    let (st, v) = h
        .post(
            "/v1/queues/jobs/ack",
            json!({"receipts": [receipts[0], receipts[1]]}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["acked"], 2);
    assert_eq!(v["failed"], json!([]));
    // Acking again: per-receipt failure in the batch form, a status in the single form.
    let (st, v) = h
        .post("/v1/queues/jobs/ack", json!({"receipts": [receipts[0]]}))
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["acked"], 0);
    assert_eq!(v["failed"][0]["receipt"], receipts[0].as_str());
    assert_eq!(v["failed"][0]["error"]["code"], "message_not_in_flight");
    let (st, v) = h
        .post("/v1/queues/jobs/ack", json!({"receipt": receipts[0]}))
        .await;
    assert_eq!((st, err_code(&v).as_str()), (410, "message_not_in_flight"));

    // Nack one back now, one with a delay.
    let (st, v) = h
        .post("/v1/queues/jobs/nack", json!({"receipts": [receipts[2]]}))
        .await;
    assert_eq!((st, v["nacked"].as_u64()), (200, Some(1)));
    let (st, _) = h
        .post(
            "/v1/queues/jobs/nack",
            json!({"receipt": receipts[3], "delay_seconds": 3600}),
        )
        .await;
    assert_eq!(st, 200);
    let (_, q) = h.get("/v1/queues/jobs").await;
    assert_eq!(
        (q["stats"]["ready"].as_u64(), q["stats"]["delayed"].as_u64()),
        (Some(1), Some(1))
    );

    // Receive again: a fresh receipt; the old one is stale.
    let (_, v) = h.post("/v1/queues/jobs/receive", json!({})).await;
    let m = &v["messages"][0];
    assert_eq!(m["receive_count"], 2);
    assert_ne!(m["receipt"], receipts[2].as_str());
    let (st, v) = h
        .post("/v1/queues/jobs/ack", json!({"receipt": receipts[2]}))
        .await;
    assert_eq!((st, err_code(&v).as_str()), (409, "stale_receipt"));
    // Heartbeat then ack with the fresh receipt.
    let (st, v) = h
        .post(
            "/v1/queues/jobs/visibility",
            json!({"receipt": m["receipt"], "visibility_timeout_seconds": 120}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["visible_at"].is_string());
    let (st, _) = h
        .post("/v1/queues/jobs/ack", json!({"receipt": m["receipt"]}))
        .await;
    assert_eq!(st, 200);

    // Peek shows the delayed one without receiving it.
    let (st, v) = h.get("/v1/queues/jobs/messages?limit=10").await;
    assert_eq!(st, 200);
    assert_eq!(v["messages"].as_array().unwrap().len(), 1);
    assert_eq!(v["messages"][0]["state"], "delayed");
    assert!(v["messages"][0].get("receipt").is_none());
    let (_, q) = h.get("/v1/queues/jobs").await;
    assert_eq!(q["stats"]["acked"], 3);
    assert_eq!(q["stats"]["nacked"], 2);

    let (st, v) = h.post("/v1/queues/jobs/purge", json!({})).await;
    assert_eq!((st, v["purged"].as_u64()), (200, Some(1)));
}

#[tokio::test]
async fn long_poll_answers_when_a_message_arrives() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    h.put("/v1/queues/lp", json!({})).await;
    let h2 = h.clone();
    let waiter = tokio::spawn(async move {
        h2.post("/v1/queues/lp/receive", json!({"wait_seconds": 20}))
            .await
    });
    // Publish once the receive is parked (the metrics gauge counts waiters).
    h.wait_for_waiters(1).await;
    h.post("/v1/queues/lp/messages", json!({"body": "wake"}))
        .await;
    let (st, v) = waiter.await.unwrap();
    assert_eq!(st, 200);
    assert_eq!(v["messages"][0]["body"], "wake");
}

#[tokio::test]
async fn dead_letters_and_redrive_over_http() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let (st, _) = h
        .put(
            "/v1/queues/work",
            json!({"max_receives": 1, "dead_letter_queue": "work-dlq"}),
        )
        .await;
    assert_eq!(st, 201);
    h.post("/v1/queues/work/messages", json!({"body": "poison"}))
        .await;
    let (_, v) = h.post("/v1/queues/work/receive", json!({})).await;
    h.post(
        "/v1/queues/work/nack",
        json!({"receipt": v["messages"][0]["receipt"]}),
    )
    .await;
    let (_, q) = h.get("/v1/queues/work").await;
    assert_eq!(q["stats"]["dead_lettered"], 1);
    let (_, d) = h.get("/v1/queues/work-dlq/messages").await;
    assert_eq!(d["messages"][0]["dead_letter_source"], "work");
    assert_eq!(d["messages"][0]["receive_count"], 1);
    let (st, v) = h.post("/v1/queues/work-dlq/redrive", json!({})).await;
    assert_eq!((st, v["redriven"].as_u64()), (200, Some(1)));
    let (_, v) = h.post("/v1/queues/work/receive", json!({})).await;
    assert_eq!(v["messages"][0]["body"], "poison");
    assert_eq!(v["messages"][0]["receive_count"], 1);
}

#[tokio::test]
async fn ops_routes() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let (st, v) = h.get("/healthz").await;
    assert_eq!((st, v.as_str()), (200, Some("OK")));
    let (st, _) = h.get("/readyz").await;
    assert_eq!(st, 200);
    h.post("/v1/queues/m/messages", json!({"body": "x"})).await;
    let (st, m) = h.get("/metrics").await;
    assert_eq!(st, 200);
    let m = m.as_str().unwrap();
    for needle in [
        "sluice_http_requests_total{",
        "sluice_http_request_duration_seconds_bucket{",
        "sluice_queue_messages{queue=\"m\",state=\"ready\"} 1",
        "sluice_messages_published_total{queue=\"m\"} 1",
        "sluice_storage_sync_batch_records_bucket",
        "sluice_storage_sync_seconds_bucket",
    ] {
        assert!(m.contains(needle), "metrics lack {needle}:\n{m}");
    }
    let (st, doc) = h.get("/openapi.json").await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/queues",
        "/v1/queues/{queue}",
        "/v1/queues/{queue}/purge",
        "/v1/queues/{queue}/messages",
        "/v1/queues/{queue}/receive",
        "/v1/queues/{queue}/ack",
        "/v1/queues/{queue}/nack",
        "/v1/queues/{queue}/visibility",
        "/v1/queues/{queue}/redrive",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }
    let (st, v) = h.get("/v1/server").await;
    assert_eq!(st, 200);
    assert_eq!(v["storage_backend"], "embedded");
}

#[tokio::test]
async fn restart_keeps_messages_and_shutdown_is_graceful() {
    let mut s = Server::start().await;
    let h = Http::new(&s.base);
    h.post("/v1/queues/keep/messages", json!({"body": "survives"}))
        .await;
    let (_, v) = h
        .post(
            "/v1/queues/keep/receive",
            json!({"visibility_timeout_seconds": 3600}),
        )
        .await;
    assert_eq!(v["messages"][0]["receive_count"], 1);
    // A long poll in progress is answered (empty) when the server is told to stop.
    h.put("/v1/queues/idle", json!({})).await;
    let h2 = h.clone();
    let waiter = tokio::spawn(async move {
        h2.post("/v1/queues/idle/receive", json!({"wait_seconds": 20}))
            .await
    });
    h.wait_for_waiters(1).await;
    let status = s.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        s.log()
    );
    let (st, v) = waiter.await.unwrap();
    assert_eq!(st, 200);
    assert_eq!(v["messages"], serde_json::json!([]));
    s.spawn().await;
    let (_, v) = h.post("/v1/queues/keep/receive", json!({})).await;
    assert_eq!(
        v["messages"][0]["body"], "survives",
        "in-flight message visible after restart"
    );
    assert_eq!(v["messages"][0]["receive_count"], 2, "receive count kept");
}

/// Publish, receive and ack take the front door's direct way unless the queue name is
/// percent-encoded (then the router's, which decodes it): both ways reach the same queue, with
/// the same answers, errors and request metrics.
#[tokio::test]
async fn the_hot_requests_answer_alike_by_either_way_in() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let direct = "/v1/queues/ways";
    let routed = "/v1/queues/w%61ys";
    for (i, way) in [direct, routed].into_iter().enumerate() {
        let (st, out) = h
            .post(&format!("{way}/messages"), json!({"body": format!("m{i}")}))
            .await;
        assert_eq!(st, 201, "{way}: {out}");
        assert_eq!(out.as_object().unwrap().len(), 1, "{way}: {out}");
        let (st, out) = h
            .raw(
                "POST",
                &format!("{way}/messages"),
                "application/json",
                b"{".to_vec(),
            )
            .await;
        assert_eq!((st, err_code(&out)), (400, "invalid_json".into()), "{way}");
        let (st, out) = h
            .post(&format!("{way}/ack"), json!({"receipt": "zz"}))
            .await;
        assert_eq!(
            (st, err_code(&out)),
            (400, "invalid_receipt".into()),
            "{way}"
        );
    }
    assert_eq!(h.peek_bodies("ways").await, ["m0", "m1"]);
    // Received one way, acked the other.
    for (get, settle) in [(direct, routed), (routed, direct)] {
        let (st, got) = h
            .post(&format!("{get}/receive"), json!({"max_messages": 1}))
            .await;
        assert_eq!(st, 200, "{got}");
        let receipt = got["messages"][0]["receipt"].as_str().unwrap().to_string();
        let (st, out) = h
            .post(&format!("{settle}/ack"), json!({"receipt": receipt}))
            .await;
        assert_eq!(st, 200, "{out}");
    }
    assert!(h.peek_bodies("ways").await.is_empty());
    let series = |route: &str, status: u16| {
        format!("sluice_http_requests_total{{route=\"/v1/queues/{{queue}}/{route}\",method=\"POST\",status=\"{status}\"}}")
    };
    assert_eq!(h.metric(&series("messages", 201)).await, 2.0);
    assert_eq!(h.metric(&series("messages", 400)).await, 2.0);
    assert_eq!(h.metric(&series("receive", 200)).await, 2.0);
    assert_eq!(h.metric(&series("ack", 200)).await, 2.0);
    assert_eq!(h.metric(&series("ack", 400)).await, 2.0);
}
