//! The few native API calls the push and timer scenarios make to set up and feed a run
//! (subscriptions, publishes, timers), through reqwest: unlike the queue scenarios, these
//! are not the figures being measured, so convenience wins over the lean [`super::conn`].

use anyhow::bail;
use serde_json::Value;

/// Wall-clock microseconds since the Unix epoch: what message bodies carry as `"t"`, so the
/// receiver can tell how late each delivery is.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Filler that brings a message body to about `size` bytes.
pub fn pad(size: usize) -> String {
    "x".repeat(size.saturating_sub(40))
}

/// One request with a JSON body; an answer other than 2xx is an error naming the URL.
pub async fn call(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: &Value,
) -> anyhow::Result<Value> {
    let r = c.request(method, &url).json(body).send().await?;
    let st = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !st.is_success() {
        bail!("{url}: {st} {v}");
    }
    Ok(v)
}
