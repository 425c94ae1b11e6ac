//! The load of `sluice bench crash` and its ledger: what every client was told, to be checked
//! against what is found once the kills are over (`crash.rs` drives the cycles).
//!
//! Each message body names its kind and the cycle it was published in (`m-c3-p1-17`):
//! - `m-…`: published to `crash-main` (one at a time, or 5 per request), received by
//!   consumers that ack most, nack some (visible again at once) and abandon a few (the lease
//!   runs out); after 3 receives a message is dead-lettered to `crash-dlq`, which a worker
//!   redrives back every half second;
//! - `p-…`: published to `crash-push`, delivered by its subscription to the bench's receiver;
//! - `t-…`: timers due 0.5-2 s after creation, fired at the same receiver.
//!
//! Every worker stops at its first failed request (the server was killed).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use parking_lot::Mutex;
use serde_json::{json, Value};

pub const MAIN: &str = "crash-main";
pub const DLQ: &str = "crash-dlq";
pub const PUSH: &str = "crash-push";

/// What the clients were told, and what they saw.
#[derive(Default)]
pub struct Ledger {
    /// Body -> the cycle whose publish (or timer creation) was answered 201.
    pub published: HashMap<String, usize>,
    /// Main queue: times each body was received (by a consumer or the final drain).
    pub received: HashMap<String, u32>,
    /// Acks answered 200 without a failure for that receipt.
    pub acked: HashSet<String>,
    /// Acks whose answer a kill cut off: they may or may not have happened.
    pub ack_cut_off: HashSet<String>,
    /// Acked (200), then received again: must stay empty.
    pub returned: HashSet<String>,
    /// Received again after an ack whose answer was cut off (at-least-once allows it).
    pub redelivered: HashMap<String, u32>,
    /// Push and timer deliveries at the receiver, by body.
    pub delivered: HashMap<String, u32>,
}

pub type Shared = Arc<Mutex<Ledger>>;

impl Ledger {
    /// A consumer (or the drain) got `body`.
    pub fn receive(&mut self, body: &str) {
        *self.received.entry(body.to_string()).or_default() += 1;
        if self.acked.contains(body) {
            self.returned.insert(body.to_string());
        }
        if self.ack_cut_off.remove(body) {
            *self.redelivered.entry(body.to_string()).or_default() += 1;
        }
    }
}

async fn deliver(State(l): State<Shared>, body: Bytes) -> &'static str {
    let text = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::String(s)) => s,
        _ => String::from_utf8_lossy(&body).into_owned(),
    };
    *l.lock().delivered.entry(text).or_default() += 1;
    "ok"
}

/// The webhook receiver for push deliveries and timers; its base URL.
pub async fn start_receiver(ledger: Shared) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(deliver).with_state(ledger);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// A client of one server process.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    /// POST JSON; the status and body, or None when the server is gone.
    pub async fn post(&self, path: &str, body: &Value) -> Option<(u16, Value)> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Option<(u16, Value)> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await
    }
    pub async fn get(&self, path: &str) -> Option<(u16, Value)> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }
    async fn send(&self, rb: reqwest::RequestBuilder) -> Option<(u16, Value)> {
        let r = rb.timeout(Duration::from_secs(30)).send().await.ok()?;
        let status = r.status().as_u16();
        let v = r.json::<Value>().await.unwrap_or(Value::Null);
        Some((status, v))
    }
}

/// Publish to `queue` (every third request a batch of 5) until the server is gone.
pub async fn publisher(c: Client, ledger: Shared, queue: &str, kind: char, tag: String) {
    let mut seq = 0u64;
    loop {
        seq += 1;
        let bodies: Vec<String> = if seq.is_multiple_of(3) {
            (0..5).map(|k| format!("{kind}-{tag}-{seq}-{k}")).collect()
        } else {
            vec![format!("{kind}-{tag}-{seq}")]
        };
        let req = if bodies.len() > 1 {
            json!({"messages": bodies.iter().map(|b| json!({"body": b})).collect::<Vec<_>>()})
        } else {
            json!({"body": bodies[0]})
        };
        match c.post(&format!("/v1/queues/{queue}/messages"), &req).await {
            Some((201, _)) => {
                let cycle = cycle_of(&tag);
                let mut l = ledger.lock();
                for b in bodies {
                    l.published.insert(b, cycle);
                }
            }
            _ => return,
        }
    }
}

/// The cycle a worker tag (`c3-p1`) names.
pub fn cycle_of(body_or_tag: &str) -> usize {
    body_or_tag
        .split('-')
        .find_map(|p| p.strip_prefix('c').and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Create timers due 0.5-2 s ahead that POST their body to the receiver.
pub async fn timer_maker(c: Client, ledger: Shared, receiver: String, tag: String) {
    let mut seq = 0u64;
    loop {
        seq += 1;
        let body = format!("t-{tag}-{seq}");
        let delay = 0.5 + (rand::random::<u64>() % 1500) as f64 / 1000.0;
        let req = json!({"url": format!("{receiver}/timer"), "body": body, "delay_seconds": delay});
        match c.post("/v1/timers", &req).await {
            Some((201, _)) => {
                ledger.lock().published.insert(body, cycle_of(&tag));
            }
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Receive from the main queue and settle: ack (3 in 4), nack (1 in 8) or abandon.
pub async fn consumer(c: Client, ledger: Shared) {
    loop {
        let req = json!({"max_messages": 10, "visibility_timeout_seconds": 3});
        let Some((200, v)) = c.post(&format!("/v1/queues/{MAIN}/receive"), &req).await else {
            return;
        };
        let msgs = v["messages"].as_array().cloned().unwrap_or_default();
        if msgs.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let mut ack = Vec::new();
        let mut nack = Vec::new();
        {
            let mut l = ledger.lock();
            for m in &msgs {
                let (Some(body), Some(receipt)) = (m["body"].as_str(), m["receipt"].as_str())
                else {
                    continue;
                };
                l.receive(body);
                match rand::random::<u8>() % 8 {
                    0 => nack.push(receipt.to_string()),
                    1 => {} // abandoned: its lease runs out
                    _ => {
                        l.ack_cut_off.insert(body.to_string());
                        ack.push((receipt.to_string(), body.to_string()));
                    }
                }
            }
        }
        if !nack.is_empty() {
            let req = json!({"receipts": nack});
            if c.post(&format!("/v1/queues/{MAIN}/nack"), &req)
                .await
                .is_none()
            {
                return;
            }
        }
        if ack.is_empty() {
            continue;
        }
        let receipts: Vec<&String> = ack.iter().map(|(r, _)| r).collect();
        let Some((200, v)) = c
            .post(
                &format!("/v1/queues/{MAIN}/ack"),
                &json!({"receipts": receipts}),
            )
            .await
        else {
            return;
        };
        let failed: HashSet<&str> = v["failed"]
            .as_array()
            .map(|f| f.iter().filter_map(|x| x["receipt"].as_str()).collect())
            .unwrap_or_default();
        let mut l = ledger.lock();
        for (receipt, body) in ack {
            l.ack_cut_off.remove(&body);
            if !failed.contains(receipt.as_str()) {
                l.acked.insert(body);
            }
        }
    }
}

/// Send the dead letters home every half second.
pub async fn redriver(c: Client) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if c.post(&format!("/v1/queues/{DLQ}/redrive"), &json!({}))
            .await
            .is_none()
        {
            return;
        }
    }
}
