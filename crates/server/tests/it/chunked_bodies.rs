//! Chunked request bodies over raw TCP: a chunk announcing more than the limit is answered
//! `413` at once, naming the limit, on every body reader that holds bodies to one (before, the
//! request waited for `--body-timeout-seconds`); legitimate chunked traffic (pipelined,
//! extensions, trailers, 1-byte writes, keep-alive, then a WebSocket upgrade on the same
//! connection) passes untouched.

use futures::StreamExt;
use serde_json::Value;

use crate::common::*;

const HUGE_CHUNK: &str = "FFFFFFFFFFFFFFFF\r\n";

/// A chunked `text/plain` publish to `queue` of `chunks`, each with `ext` after its size, and
/// `trailers` after the last chunk.
fn chunked_publish(queue: &str, chunks: &[&str], ext: &str, trailers: &str) -> String {
    let mut req = format!(
        "POST /v1/queues/{queue}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for c in chunks {
        req.push_str(&format!("{:x}{ext}\r\n{c}\r\n", c.len()));
    }
    req.push_str(&format!("0{ext}\r\n{trailers}\r\n"));
    req
}

#[tokio::test]
async fn a_chunk_announcing_more_than_the_limit_is_refused_at_once() {
    let s = Server::start_with(&["--body-timeout-seconds", "300"]).await;
    // (head, what the answer must name: its error code and the limit)
    let cases = [
        (
            "POST /v1/queues/q/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            "request_too_large",
            "16777216 bytes (--max-request-bytes)",
        ),
        (
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AmazonSQS.SendMessage\r\nContent-Type: application/x-amz-json-1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "RequestEntityTooLarge",
            "16777216 bytes (--max-request-bytes)",
        ),
        (
            "POST /publish/t HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "request_too_large",
            "16777216 bytes (--max-request-bytes)",
        ),
        (
            "POST /v1/ingest?queue=files&format=lines HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "file_too_large",
            "1073741824 bytes (--max-upload-bytes)",
        ),
    ];
    for (head, code, limit) in cases {
        let mut c = RawConn::open(s.port).await;
        // The chunk-size line with its extension arrives in pieces, and no data follows.
        c.send(head.as_bytes()).await;
        c.send(b"FFFFFFFF").await;
        c.send(b"FFFFFFFF;x=1").await;
        c.send(b"\r\n").await;
        let (st, body) = c.answer().await;
        assert_eq!(st, 413, "{head}: {body}");
        assert!(
            body.contains(code) && body.contains(limit),
            "{head}: {body}"
        );
        if !head.contains("SQS") {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(err_code(&v), code, "the API's error shape");
        }
    }
    let h = Http::new(&s.base);
    assert_eq!(h.get("/v1/queues/q").await.0, 404, "nothing stored");
}

/// A refusal is for its own request only: the requests before it on the connection, pipelined
/// in the same write, are served as usual.
#[tokio::test]
async fn a_huge_chunk_after_pipelined_requests_is_refused_for_its_request_only() {
    let s = Server::start_with(&["--body-timeout-seconds", "300"]).await;
    let mut c = RawConn::open(s.port).await;
    let mut wire = chunked_publish("pipe", &["first"], "", "");
    wire.push_str("GET /v1/queues/pipe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    wire.push_str(&chunked_publish(
        "pipe",
        &["sec", "ond"],
        ";a=b",
        "X-Sum: 1\r\n",
    ));
    wire.push_str("POST /v1/queues/pipe/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
    wire.push_str(HUGE_CHUNK);
    c.send(wire.as_bytes()).await;
    let statuses = [
        c.answer().await.0,
        c.answer().await.0,
        c.answer().await.0,
        c.answer().await.0,
    ];
    assert_eq!(statuses, [201, 200, 201, 413]);
    let h = Http::new(&s.base);
    assert_eq!(h.peek_bodies("pipe").await, ["first", "second"]);
}

#[tokio::test]
async fn legitimate_chunked_requests_pass_untouched() {
    let s = Server::start_with(&["--body-timeout-seconds", "300"]).await;
    let h = Http::new(&s.base);
    let mut c = RawConn::open(s.port).await;
    // Pipelined in one write: extensions and trailers, a GET, a Content-Length body, 1-byte
    // chunks, and a body whose data looks like framing.
    let mut wire = chunked_publish(
        "legit",
        &["with ", "extensions"],
        ";name=\"v w\"",
        "X-Checksum: abc\r\nX-Other: 2\r\n",
    );
    wire.push_str("GET /v1/queues/legit HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    wire.push_str("POST /v1/queues/legit/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nlength");
    wire.push_str(&chunked_publish("legit", &["o", "n", "e", "s"], "", ""));
    wire.push_str(&chunked_publish(
        "legit",
        &["0\r\n\r\nFFFFFFFFFFFFFFFF\r\n"],
        "",
        "",
    ));
    c.send(wire.as_bytes()).await;
    for want in [201, 200, 201, 201, 201] {
        let (st, body) = c.answer().await;
        assert_eq!(st, want, "{body}");
    }
    // The same connection, kept alive: a request written one byte at a time.
    for b in chunked_publish("legit", &["bytewise"], ";e", "T: 1\r\n").bytes() {
        c.send(&[b]).await;
    }
    assert_eq!(c.answer().await.0, 201);
    // A large body within the limit, in chunks of up to 64 KiB, written in odd pieces.
    let big = "b".repeat(200_000);
    let pieces: Vec<&str> = (0..big.len())
        .step_by(65_536)
        .map(|i| &big[i..(i + 65_536).min(big.len())])
        .collect();
    let wire = chunked_publish("legit", &pieces, "", "");
    for piece in wire.as_bytes().chunks(7_777) {
        c.send(piece).await;
    }
    let (st, body) = c.answer().await;
    assert_eq!(st, 201, "{body}");
    let bodies = h.peek_bodies("legit").await;
    assert_eq!(
        bodies[..5],
        [
            "with extensions",
            "length",
            "ones",
            "0\r\n\r\nFFFFFFFFFFFFFFFF\r\n",
            "bytewise"
        ]
    );
    assert_eq!(bodies[5], big);
}

/// After chunked requests, the same connection upgrades to a WebSocket: the watch lets go
/// of the connection and the upgraded stream works.
#[tokio::test]
async fn a_websocket_upgrade_after_chunked_requests_works() {
    let s = Server::start_with(&["--body-timeout-seconds", "300"]).await;
    let mut c = RawConn::open(s.port).await;
    c.send(chunked_publish("wsq", &["over ", "the socket"], ";x", "").as_bytes())
        .await;
    assert_eq!(c.answer().await.0, 201);
    assert!(c.buf.is_empty(), "nothing more was sent");
    let url = format!("ws://127.0.0.1:{}/v1/queues/wsq/stream?prefetch=1", s.port);
    let (mut ws, _) = tokio_tungstenite::client_async(url, c.tcp).await.unwrap();
    let frame = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("a message frame")
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["body"].as_str()),
        (Some("message"), Some("over the socket"))
    );
}
