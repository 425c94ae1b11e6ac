//! miniqueue's API over HTTP/2 cleartext (h2c, prior knowledge) with a real full-duplex
//! client: commands go up the request body while messages come down the response body.

use std::convert::Infallible;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::common::{Http, Server};

type Up = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

struct Subscription {
    up: Up,
    down: hyper::body::Incoming,
    pending: Vec<u8>,
}

impl Subscription {
    async fn open(port: u16, topic: &str) -> Subscription {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let (up, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
        let body = StreamBody::new(futures::stream::poll_fn({
            let mut rx = rx;
            move |cx| rx.poll_recv(cx)
        }));
        let req = hyper::Request::post(format!("http://127.0.0.1:{port}/subscribe/{topic}"))
            .body(body)
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        Subscription {
            up,
            down: resp.into_body(),
            pending: Vec::new(),
        }
    }

    async fn send(&self, cmd: &str) {
        let bytes = Bytes::from(format!("{}\n", serde_json::to_string(cmd).unwrap()));
        self.up.send(Ok(Frame::data(bytes))).await.unwrap();
    }

    /// The next JSON line from the server (bounded wait: the server must answer).
    async fn next(&mut self) -> Value {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return serde_json::from_slice(&line).unwrap();
            }
            let frame = tokio::time::timeout(Duration::from_secs(20), self.down.frame())
                .await
                .expect("the server answered")
                .expect("stream open")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.pending.extend_from_slice(&data);
            }
        }
    }

    /// Whether a line arrives within `wait` (used to show the server blocks when empty).
    async fn nothing_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.down.frame()).await.is_err()
    }
}

fn body_of(v: &Value) -> String {
    let b = base64::engine::general_purpose::STANDARD
        .decode(v["msg"].as_str().unwrap())
        .unwrap();
    String::from_utf8(b).unwrap()
}

async fn publish_h2c(port: u16, topic: &str, body: &str) {
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = c
        .post(format!("http://127.0.0.1:{port}/publish/{topic}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert!(
        r.bytes().await.unwrap().is_empty(),
        "201 with an empty body"
    );
}

#[tokio::test]
async fn consume_and_ack_flow_over_h2c() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    for m in ["m1", "m2", "m3"] {
        publish_h2c(s.port, "jobs", m).await;
    }
    let mut sub = Subscription::open(s.port, "jobs").await;
    sub.send("INIT").await;
    let first = sub.next().await;
    assert_eq!(body_of(&first), "m1");
    assert!(first.get("dackCount").is_none(), "omitted when 0");
    sub.send("ACK").await;
    assert_eq!(body_of(&sub.next().await), "m2");
    sub.send("NACK").await; // back to the front: the same message again
    assert_eq!(body_of(&sub.next().await), "m2");
    sub.send("BACK").await; // to the back: m3 first
    assert_eq!(body_of(&sub.next().await), "m3");
    sub.send("ACK").await;
    assert_eq!(body_of(&sub.next().await), "m2");
    sub.send("DACK 1").await; // delayed a second, then back at the front with dackCount 1
    let again = sub.next().await;
    assert_eq!(body_of(&again), "m2");
    assert_eq!(again["dackCount"], 1);
    // Bad commands get an error line and change nothing.
    sub.send("HELLO").await;
    assert_eq!(
        sub.next().await,
        json!({"error": "unrecognised command received"})
    );
    sub.send("DACK").await;
    assert_eq!(
        sub.next().await,
        json!({"error": "too few arguments provided to DACK"})
    );
    sub.send("DACK soon").await;
    assert_eq!(
        sub.next().await,
        json!({"error": "invalid DACK duration argument at position [1]"})
    );
    sub.send("ACK").await;
    // Empty topic: the server blocks (writes nothing) until a message exists.
    assert!(sub.nothing_within(Duration::from_millis(300)).await);
    publish_h2c(s.port, "jobs", "m4").await;
    assert_eq!(body_of(&sub.next().await), "m4");
    // Disconnect with m4 outstanding: it is NACKed, visible again for others.
    drop(sub);
    wait_stat(&h, "jobs", "ready", 1).await; // the outstanding message went back
    let (_, q) = h.get("/v1/queues/jobs").await;
    assert_eq!(q["stats"]["acked"], 3);
    // Topics are ordinary queues; DELETE /{topic} purges.
    let (st, _) = h.delete("/jobs").await;
    assert_eq!(st, 200);
    assert_eq!(h.get("/v1/queues/jobs").await.1["stats"]["ready"], 0);
}

#[tokio::test]
async fn subscribers_share_a_topic() {
    let s = Server::start().await;
    for m in ["a", "b"] {
        publish_h2c(s.port, "shared", m).await;
    }
    let mut one = Subscription::open(s.port, "shared").await;
    let mut two = Subscription::open(s.port, "shared").await;
    one.send("INIT").await;
    two.send("INIT").await;
    let mut got = vec![body_of(&one.next().await), body_of(&two.next().await)];
    got.sort();
    assert_eq!(got, vec!["a", "b"], "each message goes to one subscriber");
}

/// The seed's own way of publishing: `curl --http2-prior-knowledge` (skipped without curl).
#[tokio::test]
async fn curl_publishes_over_h2c() {
    let s = Server::start().await;
    let url = format!("http://127.0.0.1:{}/publish/curl", s.port);
    let out = match std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "--data",
            "helloworld",
            &url,
        ])
        .output()
    {
        Ok(o) => o,
        Err(_) => {
            eprintln!("curl not installed: skipped");
            return;
        }
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201 2");
    let h = Http::new(&s.base);
    assert_eq!(h.get("/v1/queues/curl").await.1["stats"]["ready"], 1);
}

/// Waits (bounded, 5 s) until the topic's `stat` counter reads `n`.
async fn wait_stat(h: &Http, topic: &str, stat: &str, n: u64) {
    let mut now = u64::MAX;
    for _ in 0..200 {
        let (_, q) = h.get(&format!("/v1/queues/{topic}")).await;
        now = q["stats"][stat].as_u64().unwrap();
        if now == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{topic}: {stat} is {now}, expected {n}");
}

/// A subscriber that answers quickly gets messages leased ahead for it (session.rs); whatever
/// it does, the order is the seed's: a NACKed message comes straight back, what was leased
/// ahead goes back to the front when the subscriber holds a message too long or goes away,
/// and nothing is delivered twice except a NACKed message.
#[tokio::test]
async fn a_fast_subscriber_keeps_the_order_with_messages_leased_ahead() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    let batch: Vec<Value> = (0..30)
        .map(|i| json!({"body": format!("m{i:02}")}))
        .collect();
    let (st, _) = h
        .post("/v1/queues/order/messages", json!({ "messages": batch }))
        .await;
    assert_eq!(st, 201);
    let mut sub = Subscription::open(s.port, "order").await;
    sub.send("INIT").await;
    for i in 0..10 {
        assert_eq!(body_of(&sub.next().await), format!("m{i:02}"));
        sub.send("ACK").await;
    }
    assert_eq!(body_of(&sub.next().await), "m10");
    sub.send("NACK").await;
    assert_eq!(
        body_of(&sub.next().await),
        "m10",
        "a NACKed message is next"
    );
    for i in 10..14 {
        sub.send("ACK").await;
        assert_eq!(body_of(&sub.next().await), format!("m{:02}", i + 1));
    }
    // Holding m14: anything leased ahead goes back, so only m14 stays in flight.
    wait_stat(&h, "order", "in_flight", 1).await;
    let mut other = Subscription::open(s.port, "order").await;
    other.send("INIT").await;
    assert_eq!(body_of(&other.next().await), "m15", "handed back in order");
    // The first subscriber goes away holding m14: it goes back to the front.
    drop(sub);
    wait_stat(&h, "order", "in_flight", 1).await;
    other.send("ACK").await;
    assert_eq!(body_of(&other.next().await), "m14");
    for i in 16..30 {
        other.send("ACK").await;
        assert_eq!(body_of(&other.next().await), format!("m{i:02}"));
    }
    other.send("ACK").await;
    // Every ACK reaches the store (not waited for: the protocol has no reply to it).
    wait_stat(&h, "order", "acked", 30).await;
    drop(other);
    let (_, q) = h.get("/v1/queues/order").await;
    assert_eq!(q["stats"]["ready"], 0);
    assert_eq!(q["stats"]["in_flight"], 0);
}
