//! The native API calls the push and timer scenarios make to set up and feed a run (queues,
//! subscriptions, publishes, timers), through reqwest: unlike the queue scenarios, these are
//! not the figures being measured, so convenience wins over the lean [`super::conn`].

use std::ops::Range;

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

/// Wall-clock microseconds since the Unix epoch: what message bodies carry as `"t"`, so the
/// receiver can tell how late each delivery is.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Filler that brings a message body to about `size` bytes.
pub fn pad(size: usize) -> String {
    "x".repeat(size.saturating_sub(40))
}

/// A message body that carries its send time `t` and, for the scenarios that follow each
/// message, its sequence number `i`.
pub fn message_body(t: i64, seq: Option<u64>, size: usize) -> Value {
    match seq {
        Some(i) => json!({"t": t, "i": i, "p": pad(size)}),
        None => json!({"t": t, "p": pad(size)}),
    }
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(server: &str) -> anyhow::Result<Api> {
        Ok(Api {
            http: crate::cli::client::http_client()?,
            base: server.trim_end_matches('/').to_string(),
        })
    }

    /// One request with a JSON body; an answer other than 2xx is an error naming the path.
    pub async fn call(&self, method: Method, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let r = self.http.request(method, &url).json(body).send().await?;
        let st = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !st.is_success() {
            bail!("{url}: {st} {v}");
        }
        Ok(v)
    }

    /// A DELETE whose outcome does not matter (cleaning up).
    async fn delete(&self, path: &str) {
        let _ = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await;
    }

    /// Delete a queue (its messages and subscriptions) if it exists.
    pub async fn delete_queue(&self, queue: &str) {
        self.delete(&format!("/v1/queues/{queue}")).await
    }

    /// Create or replace subscription `name` of `queue`.
    pub async fn subscribe(&self, queue: &str, name: &str, body: &Value) -> anyhow::Result<()> {
        let path = format!("/v1/queues/{queue}/subscriptions/{name}");
        self.call(Method::PUT, &path, body)
            .await
            .with_context(|| format!("creating the bench subscription {queue}/{name}"))?;
        Ok(())
    }

    /// A subscription's `stats` as the server counts them (null if it cannot be read).
    pub async fn subscription_stats(&self, queue: &str, name: &str) -> Value {
        let path = format!("/v1/queues/{queue}/subscriptions/{name}");
        match self.call(Method::GET, &path, &Value::Null).await {
            Ok(v) => v["stats"].clone(),
            Err(_) => Value::Null,
        }
    }

    /// Publish message bodies to `queue` in one request.
    pub async fn publish(&self, queue: &str, bodies: Vec<Value>) -> anyhow::Result<()> {
        let msgs: Vec<Value> = bodies
            .into_iter()
            .map(|b| json!({"body": b.to_string()}))
            .collect();
        let path = format!("/v1/queues/{queue}/messages");
        self.call(Method::POST, &path, &json!({"messages": msgs}))
            .await?;
        Ok(())
    }

    /// Publish the messages with sequence numbers `seqs`, 1000 per request. Returns how many
    /// requests failed and the last failure.
    pub async fn publish_seq(
        &self,
        queue: &str,
        seqs: Range<u64>,
        size: usize,
    ) -> (u64, Option<String>) {
        let (mut failed, mut last) = (0, None);
        let mut from = seqs.start;
        while from < seqs.end {
            let to = (from + 1000).min(seqs.end);
            let bodies = (from..to)
                .map(|i| message_body(now_us(), Some(i), size))
                .collect();
            if let Err(e) = self.publish(queue, bodies).await {
                failed += 1;
                last = Some(format!("{e:#}"));
            }
            from = to;
        }
        (failed, last)
    }

    /// Create a timer that calls `url` with `body` at `due_us`; returns its id.
    pub async fn create_timer(
        &self,
        url: &str,
        due_us: i64,
        body: &Value,
    ) -> anyhow::Result<String> {
        let at = chrono::DateTime::from_timestamp_micros(due_us)
            .context("due time out of range")?
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let v = self
            .call(
                Method::POST,
                "/v1/timers",
                &json!({"url": url, "at": at, "body": body}),
            )
            .await?;
        Ok(v["id"].as_str().unwrap_or_default().to_string())
    }

    /// Cancel a timer that has not fired (best effort: it may just have).
    pub async fn cancel_timer(&self, id: &str) {
        self.delete(&format!("/v1/timers/{id}")).await
    }
}
