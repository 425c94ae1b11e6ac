//! Operational events for the operator (`--events-url`): `endpoint.disabled`,
//! `endpoint.circuit_opened`, `endpoint.circuit_closed` and `attempt.exhausted`, each a JSON
//! `POST` `{"type", "timestamp", "data"}`, signed with `--events-secret` (Standard Webhooks)
//! when one is given. The URL is the operator's, so it may be a private address (like the
//! forwarder's). Best effort, and said so: each event is tried up to 5 times (1, 2, 4, 8 s
//! apart) from memory; a restart or a long outage of the receiver loses it (the state it
//! reports stays readable in the API: `state`, `stats.circuit`, the dead-letter queue).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{Request, Sender, Target};

/// Tries of one event.
const TRIES: u32 = 5;

pub struct Events {
    /// Parsed once, for every event.
    url: Target,
    secret: Option<String>,
    sender: Arc<Sender>,
}

impl Events {
    pub fn new(url: String, secret: Option<String>, sender: Arc<Sender>) -> Events {
        Events {
            url: Target::parse(&url),
            secret,
            sender,
        }
    }

    /// Send event `kind` with `data`, in the background.
    pub fn emit(self: &Arc<Self>, kind: &'static str, data: Value) {
        let me = self.clone();
        tokio::spawn(async move { me.send(kind, data).await });
    }

    async fn send(&self, kind: &'static str, data: Value) {
        let now = chrono::Utc::now();
        let id = format!("evt_{}", sluice_engine::MessageId::new_v7());
        let body = json!({"type": kind, "timestamp": now.to_rfc3339(), "data": data})
            .to_string()
            .into_bytes();
        for attempt in 1..=TRIES {
            let timestamp = chrono::Utc::now().timestamp();
            let mut headers = vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("webhook-id".to_string(), id.clone()),
                ("webhook-timestamp".to_string(), timestamp.to_string()),
            ];
            let secrets: Vec<&str> = self.secret.iter().map(String::as_str).collect();
            if let Some(sig) = super::signing::signature_header(&secrets, &id, timestamp, &body) {
                headers.push(("webhook-signature".into(), sig));
            }
            let resp = self
                .sender
                .send(Request {
                    method: hyper::Method::POST,
                    url: self.url.clone(),
                    headers,
                    body: body.clone(),
                    timeout: Duration::from_secs(10),
                    trusted: true,
                })
                .await;
            if resp.status.is_some_and(|s| (200..300).contains(&s)) {
                return;
            }
            if attempt == TRIES {
                tracing::warn!(event = kind, status = ?resp.status, error = ?resp.error, "could not send an operational event; dropped");
                return;
            }
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        }
    }
}
