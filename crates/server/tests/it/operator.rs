//! What an operator runs into: `sluice tail` in a pipeline and across a server restart, a
//! prompt shutdown with streams open, internal names kept out of logs after a queue delete,
//! the hint for a JSON envelope sent as text, and out-of-range numbers named with their limit.

use std::io::BufRead;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::{err_code, Http, Server, BIN};
use crate::receiver::{wait_until, Receiver};

#[tokio::test]
async fn tail_into_head_exits_quietly() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    // More output than a pipe holds, so tail writes after head has gone.
    let body = "x".repeat(200);
    for _ in 0..5 {
        let batch: Vec<Value> = (0..200).map(|_| json!({"body": body})).collect();
        h.post("/v1/queues/t/messages", json!({ "messages": batch }))
            .await;
    }
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args([
                "-c",
                &format!(
                    "set -o pipefail; timeout 60 {BIN} tail t --ack --prefetch 100 | head -n 1"
                ),
            ])
            .env("SLUICE_SERVER", base)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {:?}: {err}", out.status);
    assert!(
        !err.contains("Broken pipe") && !err.contains("error"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_reconnects_after_a_restart_and_shutdown_does_not_wait_for_it() {
    let mut s = Server::start().await;
    let h = Http::new(&s.base);
    h.put("/v1/queues/t", json!({})).await;
    let mut tail = Command::new(BIN)
        .args(["tail", "t", "--ack"])
        .env("SLUICE_SERVER", &s.base)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(tail.stdout.take().unwrap()).lines();
    h.post("/v1/queues/t/messages", json!({"body": "before"}))
        .await;
    let first = tokio::task::block_in_place(|| lines.next().unwrap().unwrap());
    assert!(first.contains("before"), "{first}");
    // Acked before the restart, so it is not delivered again.
    wait_until("the ack", 20, || async {
        h.get("/v1/queues/t").await.1["stats"]["acked"] == 1
    })
    .await;

    // Shutdown with the stream open: it is closed at once, not after the 30 s drain.
    let status = tokio::task::block_in_place(|| s.terminate());
    assert!(status.success(), "{status:?}");
    assert!(
        !s.log().contains("did not finish"),
        "shutdown waited for the stream: {}",
        s.log()
    );

    s.spawn().await;
    let h = Http::new(&s.base);
    h.post("/v1/queues/t/messages", json!({"body": "after"}))
        .await;
    let second = tokio::task::block_in_place(|| lines.next().unwrap().unwrap());
    assert!(second.contains("after"), "{second}");
    tail.kill().unwrap();
    let out = tail.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reconnecting") && err.contains("reconnected"),
        "{err}"
    );
}

#[tokio::test]
async fn internal_names_stay_out_of_logs_and_errors_after_a_queue_delete() {
    let s = Server::start_with(&[
        "--allow-private-targets",
        "--log-level",
        "info,sluice::delivery::lane=debug",
    ])
    .await;
    let h = Http::new(&s.base);
    let rx = Receiver::start().await;
    let (st, v) = h
        .put(
            "/v1/queues/orders/subscriptions/billing",
            json!({"url": rx.url("/hook")}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    // Once a delivery went out, the lane long-polls its copies for the next message.
    h.post("/v1/queues/orders/messages", json!({"body": "one"}))
        .await;
    rx.wait_for("the delivery", 20, |r| r.len() == 1).await;
    let (st, _) = h.delete("/v1/queues/orders").await;
    assert_eq!(st, 204);
    wait_until("the lane to notice the delete", 20, || async {
        s.log().contains("queue deleted; the lane stops")
    })
    .await;
    let (st, v) = h.get("/v1/queues/orders/subscriptions/billing").await;
    assert_eq!(st, 404, "{v}");
    let (_, list) = h.get("/v1/queues/orders/subscriptions").await;
    for text in [s.log(), v.to_string(), list.to_string()] {
        assert!(!text.contains("orders~"), "an internal name leaked: {text}");
    }
}

#[tokio::test]
async fn a_json_envelope_sent_as_text_is_stored_as_text_with_a_hint() {
    let s = Server::start_with(&["--log-level", "warn"]).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/queues/q/messages", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"body":"order 1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let hint = r.headers()["sluice-hint"].to_str().unwrap().to_string();
    assert!(hint.contains("content-type: application/json"), "{hint}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["hint"], hint.as_str(), "{v}");
    let h = Http::new(&s.base);
    let (_, peek) = h.get("/v1/queues/q/messages").await;
    assert_eq!(peek["messages"][0]["body"], r#"{"body":"order 1"}"#);
    assert!(s.log().contains("stored as text"), "{}", s.log());
    // A raw body that is no envelope gets no hint.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/queues/q/messages", s.base))
        .header("content-type", "text/plain")
        .body("just text")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("sluice-hint").is_none());
    assert!(r.json::<Value>().await.unwrap().get("hint").is_none());
}

#[tokio::test]
async fn out_of_range_numbers_name_the_field_and_the_limit() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    h.put("/v1/queues/q", json!({})).await;
    let (st, v) = h
        .post("/v1/queues/q/receive", json!({"max_messages": -1}))
        .await;
    assert_eq!((st, err_code(&v).as_str()), (400, "invalid_json"));
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("max_messages") && m.contains("is -1; must be ≥ 0"),
        "{m}"
    );
    assert!(!m.contains("usize"), "{m}");
    let (_, v) = h.get("/v1/queues/q/messages?limit=-1").await;
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("limit: is -1; must be ≥ 0"), "{m}");
    let (_, v) = h
        .put(
            "/v1/queues/q",
            json!({"visibility_timeout_seconds": 4294967296u64}),
        )
        .await;
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("visibility_timeout_seconds") && m.contains("must be ≤ 4294967295"),
        "{m}"
    );
}
