//! Plain HTTP/1.1 connections served without hyper (`direct_h1.rs`), from a raw client: the
//! direct requests and the others on one connection (the hand-over to hyper keeps every byte),
//! pipelined and cut requests, the answer's head as hyper writes it, a client that leaves
//! during a long poll, an idle connection at shutdown.

use serde_json::{json, Value};

use crate::common::*;

/// A JSON `POST` to `path`, as one string of bytes.
fn post(path: &str, json: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    )
}

fn publish(queue: &str, body: &str) -> String {
    post(
        &format!("/v1/queues/{queue}/messages"),
        &json!({ "body": body }).to_string(),
    )
}

/// The header names of an answer's head, in order, and its status line.
fn shape(head: &str) -> (String, Vec<String>) {
    let mut lines = head.trim_end().split("\r\n");
    let status = lines.next().unwrap().to_string();
    let names = lines
        .map(|l| l.split_once(':').unwrap().0.to_ascii_lowercase())
        .collect();
    (status, names)
}

#[tokio::test]
async fn direct_and_other_requests_share_a_connection_and_no_byte_is_lost() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let mut c = RawConn::open(s.port).await;
    // One at a time, then three pipelined in one write, then one cut into pieces.
    c.send(publish("mix", "m1").as_bytes()).await;
    assert_eq!(c.answer().await.0, 201);
    let three = [
        publish("mix", "m2"),
        publish("mix", "m3"),
        publish("mix", "m4"),
    ]
    .concat();
    c.send(three.as_bytes()).await;
    for _ in 0..3 {
        assert_eq!(c.answer().await.0, 201);
    }
    let cut = publish("mix", "m5");
    for piece in [
        &cut[..10],
        &cut[10..60],
        &cut[60..cut.len() - 3],
        &cut[cut.len() - 3..],
    ] {
        c.send(piece.as_bytes()).await;
    }
    assert_eq!(c.answer().await.0, 201);
    // A request of another route, pipelined with a direct one behind it: the connection goes
    // to hyper with both, and both are answered in order.
    let other = "GET /v1/queues/mix HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    c.send([other, &publish("mix", "m6")].concat().as_bytes())
        .await;
    let (status, body) = c.answer().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(c.answer().await.0, 201);
    // Receive and ack over the same connection, now hyper's.
    let receive = json!({ "max_messages": 10 }).to_string();
    c.send(post("/v1/queues/mix/receive", &receive).as_bytes())
        .await;
    let (status, body) = c.answer().await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let bodies: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["m1", "m2", "m3", "m4", "m5", "m6"]);
    assert_eq!(h.get("/v1/queues/mix").await.1["stats"]["in_flight"], 6);
}

#[tokio::test]
async fn the_direct_answer_has_the_head_hyper_writes() {
    let s = Server::start().await;
    // The same publish, direct and (chunked, so hyper reads it) through hyper.
    let mut direct = RawConn::open(s.port).await;
    direct.send(publish("heads", "x").as_bytes()).await;
    let (direct_head, direct_body) = direct.answer_with_head().await;
    let mut hyper = RawConn::open(s.port).await;
    let json = json!({ "body": "x" }).to_string();
    hyper
        .send(
            format!(
                "POST /v1/queues/heads/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{json}\r\n0\r\n\r\n",
                json.len()
            )
            .as_bytes(),
        )
        .await;
    let (hyper_head, hyper_body) = hyper.answer_with_head().await;
    assert_eq!(shape(&direct_head), shape(&hyper_head));
    assert_eq!(
        shape(&direct_head).1,
        ["content-type", "content-length", "date"]
    );
    assert_eq!(direct_body.len(), hyper_body.len());
    // A refusal too: an unknown field.
    let bad = "{\"bod\":1}";
    let refusal = format!(
        "POST /v1/queues/heads/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{bad}",
        bad.len()
    );
    direct.send(refusal.as_bytes()).await;
    let (head, body) = direct.answer_with_head().await;
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    assert_eq!(
        err_code(&serde_json::from_str(&body).unwrap()),
        "invalid_json"
    );
}

/// A client that closes its connection during a long poll has its receive dropped (the
/// waiters' gauge falls to 0 long before the poll's 20 s), so a message published after it is
/// not leased to nobody.
#[tokio::test]
async fn a_client_gone_during_a_long_poll_is_not_given_messages() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    assert_eq!(h.put("/v1/queues/gone", json!({})).await.0, 201);
    let mut c = RawConn::open(s.port).await;
    let receive = json!({ "max_messages": 1, "wait_seconds": 20 }).to_string();
    c.send(post("/v1/queues/gone/receive", &receive).as_bytes())
        .await;
    h.wait_for_waiters(1).await;
    drop(c);
    h.wait_for_waiters(0).await;
    assert_eq!(
        h.post("/v1/queues/gone/messages", json!({ "body": "after" }))
            .await
            .0,
        201
    );
    let (_, v) = h
        .post("/v1/queues/gone/receive", json!({ "max_messages": 1 }))
        .await;
    assert_eq!(v["messages"][0]["body"], "after", "{v}");
}

/// At shutdown, a keep-alive connection waiting between direct requests is closed at once:
/// the server exits without waiting out its 30 s drain.
#[tokio::test]
async fn an_idle_direct_connection_does_not_hold_up_shutdown() {
    let mut s = Server::start().await;
    let mut c = RawConn::open(s.port).await;
    c.send(publish("idle", "x").as_bytes()).await;
    assert_eq!(c.answer().await.0, 201);
    let started = std::time::Instant::now();
    assert!(s.terminate().success());
    assert!(
        !s.log().contains("did not finish"),
        "the drain waited: {}",
        s.log()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    drop(c);
}

/// What the direct way leaves to hyper is answered by hyper as before, on a connection that
/// was served directly until then: a head sent a byte at a time is still direct; a body over
/// 64 KiB, `Expect: 100-continue`, a head over `--max-header-bytes` (431) and a chunk
/// announcing more than the limit (413 at once: the chunk watch counts from the hand-over) go
/// to hyper.
#[tokio::test]
async fn what_the_direct_way_leaves_is_hyper_s_as_before() {
    let s = Server::start_with(&["--body-timeout-seconds", "300"]).await;
    let h = Http::new(&s.base);
    // A byte at a time.
    let mut c = RawConn::open(s.port).await;
    for b in publish("left", "bytes").bytes() {
        c.send(&[b]).await;
    }
    assert_eq!(c.answer().await.0, 201);
    // A body over 64 KiB, then one more on the same connection, now hyper's.
    let big = "x".repeat(100 * 1024);
    c.send(publish("left", &big).as_bytes()).await;
    assert_eq!(c.answer().await.0, 201);
    c.send(publish("left", "after").as_bytes()).await;
    assert_eq!(c.answer().await.0, 201);
    assert_eq!(
        h.peek_bodies("left").await,
        ["bytes".to_string(), big, "after".to_string()]
    );

    // Expect: 100-continue: hyper asks for the body.
    let mut c = RawConn::open(s.port).await;
    c.send(publish("left", "first").as_bytes()).await;
    assert_eq!(c.answer().await.0, 201);
    let json = json!({ "body": "continued" }).to_string();
    c.send(
        format!(
            "POST /v1/queues/left/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            json.len()
        )
        .as_bytes(),
    )
    .await;
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(
            PATIENCE,
            tokio::io::AsyncReadExt::read_exact(&mut c.tcp, &mut byte),
        )
        .await
        .expect("100 Continue in time")
        .unwrap();
        seen.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 100 Continue"));
    c.send(json.as_bytes()).await;
    assert_eq!(c.answer().await.0, 201);

    // A head over the limit (64 KiB by default): 431.
    let mut c = RawConn::open(s.port).await;
    c.send(publish("left", "before").as_bytes()).await;
    assert_eq!(c.answer().await.0, 201);
    c.send(
        format!(
            "POST /v1/queues/left/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(70 * 1024)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(c.answer().await.0, 431);

    // A chunk announcing more than the limit, after direct publishes: refused at once.
    let mut c = RawConn::open(s.port).await;
    for body in ["one", "two"] {
        c.send(publish("left", body).as_bytes()).await;
        assert_eq!(c.answer().await.0, 201);
    }
    c.send(b"POST /v1/queues/left/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFF\r\n").await;
    let (status, body) = c.answer().await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("request_too_large"), "{body}");
}

/// An idle keep-alive connection is closed after --header-timeout-seconds, as hyper closes
/// one; a body that does not all come within --body-timeout-seconds is answered 408 with
/// `connection: close` and nothing is stored.
#[tokio::test]
async fn idle_connections_and_slow_bodies_are_cut_off() {
    use tokio::io::AsyncReadExt;
    let s = Server::start_with(&[
        "--header-timeout-seconds",
        "1",
        "--body-timeout-seconds",
        "1",
    ])
    .await;
    let h = Http::new(&s.base);
    let mut c = RawConn::open(s.port).await;
    c.send(publish("cut", "x").as_bytes()).await;
    assert_eq!(c.answer().await.0, 201);
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, c.tcp.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));

    let mut c = RawConn::open(s.port).await;
    let full = publish("cut", "never whole");
    c.send(&full.as_bytes()[..full.len() - 4]).await;
    let (head, body) = c.answer_with_head().await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(
        err_code(&serde_json::from_str(&body).unwrap()),
        "request_timeout"
    );
    assert_eq!(h.peek_bodies("cut").await, ["x"]);
}
