//! Native streaming consumers: WebSocket and HTTP/2 duplex, credit, settling by receipt.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Http, Server};
use crate::receiver::{send_numbered, wait_until};

async fn in_flight(h: &Http, q: &str) -> u64 {
    h.get(&format!("/v1/queues/{q}")).await.1["stats"]["in_flight"]
        .as_u64()
        .unwrap()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

#[tokio::test]
async fn websocket_consumer_with_credit() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    send_numbered(&h, "ws", 20).await;
    let url = format!(
        "ws://127.0.0.1:{}/v1/queues/ws/stream?prefetch=5&visibility_timeout_seconds=60",
        s.port
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let m = next(&mut ws).await;
        assert_eq!(m["type"], "message");
        got.push(m);
    }
    assert_eq!(got[0]["body"], "m0");
    assert_eq!(got[4]["body"], "m4");
    // The credit is spent: no sixth message until one is settled.
    assert!(tokio::time::timeout(Duration::from_millis(300), ws.next())
        .await
        .is_err());
    assert_eq!(in_flight(&h, "ws").await, 5);
    send(
        &mut ws,
        json!({"type": "ack", "receipt": got[0]["receipt"]}),
    )
    .await;
    let mut frames = [next(&mut ws).await, next(&mut ws).await];
    frames.sort_by_key(|f| f["type"].as_str().unwrap().to_string());
    assert_eq!(frames[0]["type"], "acked");
    assert_eq!(frames[1]["body"], "m5");
    // Nack goes back to the front: it is the next delivery, received a second time.
    send(
        &mut ws,
        json!({"type": "nack", "receipt": got[1]["receipt"]}),
    )
    .await;
    let mut frames = [next(&mut ws).await, next(&mut ws).await];
    frames.sort_by_key(|f| f["type"].as_str().unwrap().to_string());
    assert_eq!(frames[0]["type"], "message");
    assert_eq!(frames[0]["body"], "m1");
    assert_eq!(frames[0]["receive_count"], 2);
    assert_eq!(frames[1]["type"], "nacked");
    send(
        &mut ws,
        json!({"type": "extend", "receipt": got[2]["receipt"], "visibility_timeout_seconds": 120}),
    )
    .await;
    let ext = next(&mut ws).await;
    assert_eq!(ext["type"], "extended");
    assert!(ext["visible_at"].is_string());
    // Bad frames and stale receipts are answered, not fatal.
    send(&mut ws, json!({"type": "dance"})).await;
    assert_eq!(next(&mut ws).await["code"], "invalid_frame");
    send(
        &mut ws,
        json!({"type": "ack", "receipt": got[1]["receipt"]}),
    )
    .await;
    let stale = next(&mut ws).await;
    assert_eq!(stale["type"], "error");
    assert_eq!(stale["code"], "stale_receipt");
    // Closing releases everything the connection held.
    ws.close(None).await.unwrap();
    drop(ws);
    let mut left = u64::MAX;
    for _ in 0..100 {
        left = in_flight(&h, "ws").await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0);
    assert_eq!(h.get("/v1/queues/ws").await.1["stats"]["ready"], 19);
}

#[tokio::test]
async fn bad_stream_requests() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let (st, v) = h
        .raw(
            "POST",
            "/v1/queues/nope/stream",
            "application/x-ndjson",
            vec![],
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("queue_not_found"))
    );
    h.put("/v1/queues/q", json!({})).await;
    let (st, v) = h
        .raw(
            "POST",
            "/v1/queues/q/stream?prefetch=0",
            "application/x-ndjson",
            vec![],
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let (st, _) = h
        .raw(
            "POST",
            "/v1/queues/q/stream?prefetch=1001",
            "application/x-ndjson",
            vec![],
        )
        .await;
    assert_eq!(st, 400);
}

struct Lines {
    down: hyper::body::Incoming,
    pending: Vec<u8>,
}

impl Lines {
    async fn next(&mut self) -> Value {
        use http_body_util::BodyExt;
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return serde_json::from_slice(&line).unwrap();
            }
            let f = tokio::time::timeout(Duration::from_secs(20), self.down.frame())
                .await
                .expect("a frame in time")
                .expect("open")
                .unwrap();
            if let Ok(d) = f.into_data() {
                self.pending.extend_from_slice(&d);
            }
        }
    }
}

type Up =
    tokio::sync::mpsc::Sender<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>;

/// Open an HTTP/2 duplex consumer on `path`: frames go up through the sender, lines come down.
async fn open_duplex(port: u16, path: &str) -> (Up, Lines) {
    use http_body_util::StreamBody;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (up, mut rx) = tokio::sync::mpsc::channel(8);
    let body = StreamBody::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let req = hyper::Request::post(format!("http://127.0.0.1:{port}{path}"))
        .body(body)
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let lines = Lines {
        down: resp.into_body(),
        pending: Vec::new(),
    };
    (up, lines)
}

#[tokio::test]
async fn http2_duplex_consumer() {
    use bytes::Bytes;
    use hyper::body::Frame;

    let s = Server::start().await;
    let h = Http::new(&s.base);
    send_numbered(&h, "h2", 6).await;
    let (up, mut lines) = open_duplex(s.port, "/v1/queues/h2/stream?prefetch=3").await;
    let mut receipts = Vec::new();
    for i in 0..3 {
        let m = lines.next().await;
        assert_eq!(m["body"], format!("m{i}"));
        receipts.push(m["receipt"].as_str().unwrap().to_string());
    }
    for r in &receipts {
        let line = format!("{}\n", json!({"type": "ack", "receipt": r}));
        up.send(Ok(Frame::data(Bytes::from(line)))).await.unwrap();
    }
    let mut bodies = Vec::new();
    let mut acked = 0;
    while bodies.len() < 3 || acked < 3 {
        let f = lines.next().await;
        match f["type"].as_str().unwrap() {
            "acked" => acked += 1,
            "message" => bodies.push(f["body"].as_str().unwrap().to_string()),
            other => panic!("{other}: {f}"),
        }
    }
    assert_eq!(bodies, vec!["m3", "m4", "m5"]);
    assert_eq!(h.get("/v1/queues/h2").await.1["stats"]["acked"], 3);
}

/// A client line that never ends is not buffered without bound: past 64 KiB the stream answers
/// an error frame and ends; the queue's messages are untouched.
#[tokio::test]
async fn an_endless_client_frame_ends_the_stream() {
    use bytes::Bytes;
    use hyper::body::Frame;

    let s = Server::start().await;
    let h = Http::new(&s.base);
    send_numbered(&h, "endless", 2).await;
    let (up, mut lines) = open_duplex(s.port, "/v1/queues/endless/stream?prefetch=1").await;
    let first = lines.next().await;
    assert_eq!(first["type"], "message", "{first}");
    let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
    for _ in 0..5 {
        if up.send(Ok(Frame::data(chunk.clone()))).await.is_err() {
            break;
        }
    }
    let err = lines.next().await;
    assert_eq!(err["type"], "error", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("65536"),
        "{err}"
    );
    // The leased message goes back when the stream ends; nothing is lost.
    wait_until("the stream's lease is given back", 20, || {
        let h = h.clone();
        async move {
            let st = &h.get("/v1/queues/endless").await.1["stats"];
            st["ready"] == 2 && st["in_flight"] == 0
        }
    })
    .await;
}
