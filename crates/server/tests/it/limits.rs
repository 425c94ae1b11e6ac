//! Connection and streaming limits (docs/api.md#limits, SECURITY.md): oversized request
//! headers, too many headers, too many streaming consumers. Each is refused with a clear answer
//! and nothing already stored changes.

use serde_json::json;
use tokio_tungstenite::tungstenite;

use crate::bad_input::ready_count;
use crate::common::{Http, Server};
use crate::receiver::wait_until;

#[tokio::test]
async fn oversized_headers_and_too_many_headers_get_431_and_store_nothing() {
    let s = Server::start_with(&["--max-header-bytes", "16384"]).await;
    let h = Http::new(&s.base);
    let url = format!("{}/v1/queues/q/messages", s.base);
    let (st, _) = h
        .post("/v1/queues/q/messages", json!({"body": "keep"}))
        .await;
    assert_eq!(st, 201);
    // Within the limit: accepted.
    let r =
        h.c.post(&url)
            .header("x-pad", "x".repeat(8_000))
            .json(&json!({"body": "fits"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // One header past the limit.
    let r =
        h.c.post(&url)
            .header("x-pad", "x".repeat(20_000))
            .json(&json!({"body": "too big"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status().as_u16(), 431, "oversized headers");
    // More than 100 headers.
    let mut req = h.c.post(&url).json(&json!({"body": "too many"}));
    for i in 0..120 {
        req = req.header(format!("x-h{i}"), "v");
    }
    assert_eq!(
        req.send().await.unwrap().status().as_u16(),
        431,
        "too many headers"
    );
    // HTTP/2: the header list is held to the same limit.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .post(&url)
        .header("x-pad", "x".repeat(20_000))
        .json(&json!({"body": "too big over h2"}))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status().as_u16(), 431, "oversized headers over HTTP/2"),
        Err(e) => assert!(!e.is_timeout(), "refused, not hung: {e}"),
    }
    assert_eq!(
        ready_count(&h, "q").await,
        2,
        "only the two good publishes are stored"
    );
    // The server is still serving.
    assert_eq!(h.get("/healthz").await.0, 200);
    // Out-of-range settings are refused at start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--max-header-bytes",
            "100",
            "--data-dir",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_header_bytes must be between 8192"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn streaming_consumers_are_capped_server_wide() {
    let s = Server::start_with(&["--max-streams", "2"]).await;
    let h = Http::new(&s.base);
    h.put("/v1/queues/q", json!({})).await;
    let url = format!("{}/v1/queues/q/stream", s.base.replacen("http", "ws", 1));
    let (a, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (_b, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    match tokio_tungstenite::connect_async(&url).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503);
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["error"]["code"], "too_many_streams", "{body}");
            assert!(body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--max-streams"));
        }
        other => panic!("a third consumer must be refused: {other:?}"),
    }
    // The HTTP/2 duplex consumer counts against the same limit.
    let (st, v) = h
        .raw(
            "POST",
            "/v1/queues/q/stream",
            "application/x-ndjson",
            vec![],
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (503, Some("too_many_streams"))
    );
    let info = h.get("/v1/server").await.1;
    assert_eq!(
        (info["streams_open"].as_u64(), info["max_streams"].as_u64()),
        (Some(2), Some(2))
    );
    // A consumer that leaves gives its place back.
    drop(a);
    wait_until("a slot is free again", 10, || {
        let h = h.clone();
        async move { h.get("/v1/server").await.1["streams_open"] == 1 }
    })
    .await;
    let (_c, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // Publishing is not a stream: unaffected.
    assert_eq!(
        h.post("/v1/queues/q/messages", json!({"body": "x"}))
            .await
            .0,
        201
    );
}
