//! A small JSON client for the native API, shared by the CLI commands: it turns error bodies
//! into `"<status> <code>: <message>"` and a refused connection into a question a user can act
//! on ("is `sluice serve` running on …?").

use anyhow::{anyhow, Context};
use serde_json::{Map, Value};

/// A JSON request body built from command-line options: options not given are left out, so
/// the server applies its defaults (or, on a PUT of a queue, keeps the current value).
#[derive(Default)]
pub struct Body(pub Map<String, Value>);

impl Body {
    /// Set `k` if the option was given.
    pub fn opt(&mut self, k: &str, v: Option<impl Into<Value>>) -> &mut Self {
        if let Some(v) = v {
            self.0.insert(k.to_string(), v.into());
        }
        self
    }

    /// Set `k` to an object of `key=value` pairs, if any were given.
    pub fn pairs(&mut self, k: &str, kv: &[(String, String)]) -> &mut Self {
        if !kv.is_empty() {
            self.0.insert(k.to_string(), pairs(kv));
        }
        self
    }

    pub fn value(&mut self) -> Value {
        Value::Object(std::mem::take(&mut self.0))
    }
}

/// `key=value` (a clap value parser).
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// `key=value` pairs as a JSON object.
pub fn pairs(kv: &[(String, String)]) -> Value {
    Value::Object(
        kv.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    )
}

/// `localhost:8080` → `http://localhost:8080`; a URL with a scheme is kept (without a trailing
/// slash).
pub fn with_scheme(server: &str) -> String {
    let s = server.trim().trim_end_matches('/');
    if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    }
}

/// The error for a request that never reached the server: a refused or failed connection says
/// where a server was expected.
pub fn unreachable(base: &str, e: reqwest::Error) -> anyhow::Error {
    let authority = base.split("://").nth(1).unwrap_or(base);
    if e.is_connect() {
        let why = std::error::Error::source(&e)
            .map(|s| {
                let mut s: &dyn std::error::Error = s;
                while let Some(next) = s.source() {
                    s = next;
                }
                s.to_string()
            })
            .unwrap_or_else(|| e.to_string());
        anyhow!("cannot connect to {base} ({why}): is `sluice serve` running on {authority}? (--server or SLUICE_SERVER say where)")
    } else {
        anyhow!(e).context(format!("talking to {base}"))
    }
}

/// Percent-encode one path segment or query value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

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
            base: with_scheme(server),
            http: http_client()?,
        })
    }

    /// The server's base URL, with its scheme.
    pub fn base(&self) -> &str {
        &self.base
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
            .map_err(|e| unreachable(&self.base, e))?;
        self.handle(r).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .map_err(|e| unreachable(&self.base, e))?;
        self.handle(r).await
    }
    /// POST with an `Idempotency-Key` header, when one is given.
    pub async fn post_keyed(
        &self,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut r = self.http.post(self.url(path)).json(body);
        if let Some(k) = key {
            r = r.header("idempotency-key", k);
        }
        let r = r.send().await.map_err(|e| unreachable(&self.base, e))?;
        self.handle(r).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .map_err(|e| unreachable(&self.base, e))?;
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
            .map_err(|e| unreachable(&self.base, e))?;
        self.handle(r).await
    }
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .delete(self.url(path))
            .send()
            .await
            .map_err(|e| unreachable(&self.base, e))?;
        self.handle(r).await
    }
}
