//! A small JSON client for the native API, shared by the CLI commands (and later `bench`).

use anyhow::{anyhow, Context};
use serde_json::Value;

/// An HTTP client for the CLI: it sends `Authorization: Bearer $SLUICE_API_KEY` when that
/// variable is set (the header is marked sensitive, so it never shows in debug output).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(v) = bearer_header() {
        let mut v = reqwest::header::HeaderValue::from_str(&v)
            .context("SLUICE_API_KEY holds characters a header cannot carry")?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

/// `Bearer $SLUICE_API_KEY`, when the variable is set and not empty.
pub fn bearer_header() -> Option<String> {
    std::env::var("SLUICE_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .map(|k| format!("Bearer {k}"))
}

pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str) -> anyhow::Result<Client> {
        Ok(Client {
            base: server.trim_end_matches('/').to_string(),
            http: http_client()?,
        })
    }

    async fn handle(&self, resp: reqwest::Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).context("server sent invalid JSON");
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if v["error"]["code"].is_string() => Err(anyhow!(
                "{} {}: {}",
                status.as_u16(),
                v["error"]["code"].as_str().unwrap_or_default(),
                v["error"]["message"].as_str().unwrap_or_default()
            )),
            _ => Err(anyhow!("{}: {}", status, String::from_utf8_lossy(&bytes))),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(self.url(path))
            .send()
            .await
            .with_context(|| format!("connecting to {}", self.base))?;
        self.handle(r).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .with_context(|| format!("connecting to {}", self.base))?;
        self.handle(r).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .with_context(|| format!("connecting to {}", self.base))?;
        self.handle(r).await
    }
    /// POST a streamed body (a file upload).
    pub async fn post_body(&self, path: &str, body: reqwest::Body) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .with_context(|| format!("connecting to {}", self.base))?;
        self.handle(r).await
    }
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .delete(self.url(path))
            .send()
            .await
            .with_context(|| format!("connecting to {}", self.base))?;
        self.handle(r).await
    }
}
