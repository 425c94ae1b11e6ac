//! Outgoing webhook requests: a pooled reqwest client per trust level (the guarded one
//! resolves names through `guard.rs`), private targets refused before any connection, capped
//! response reads, `Retry-After`. What the sender saw becomes the engine's `Answer`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_engine::history::limits::RESPONSE_EXCERPT;
use sluice_engine::push::Answer;

use super::guard::{is_private, GuardedResolver};

/// Bytes of a response body read at most (the rest is dropped with the connection).
pub const RESPONSE_READ_MAX: usize = 64 * 1024;

pub struct Sender {
    guarded: reqwest::Client,
    open: reqwest::Client,
    allow_private: bool,
}

/// What came back from one attempt.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub retry_after_ms: Option<u64>,
    pub excerpt: String,
    pub duration: Duration,
    /// The target was refused by the address guard: a permanent failure.
    pub refused: bool,
}

impl Response {
    /// What the engine needs to know of it to decide.
    pub fn answer(&self) -> Answer {
        Answer {
            status: self.status,
            error: self.error.clone(),
            retry_after_ms: self.retry_after_ms,
            refused: self.refused,
        }
    }
}

/// A target URL parsed once (a lane's, for all its requests), with the form the attempts log
/// shows (credentials and query values masked). One that does not parse fails at `send`.
#[derive(Clone, Debug)]
pub struct Target {
    parsed: Result<reqwest::Url, String>,
    shown: String,
}

impl Target {
    pub fn parse(url: &str) -> Target {
        Target {
            parsed: reqwest::Url::parse(url).map_err(|e| e.to_string()),
            shown: crate::redact::url(url),
        }
    }
}

pub struct Request {
    pub method: reqwest::Method,
    pub url: Target,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
    /// Operator-configured: may reach private addresses.
    pub trusted: bool,
    /// Set by `send`: an empty POST/PUT/PATCH body carries `Content-Length: 0`.
    pub empty_body_length: bool,
}

impl Request {
    /// What the attempts log keeps of a request: the request line (credentials in the URL
    /// masked), the headers that are not secrets (no signature, no configured headers such as
    /// `authorization`), and the first 1 KiB of the body (lossy UTF-8).
    pub fn excerpt(&self) -> String {
        const SHOWN: &[&str] = &["content-type", "webhook-id", "webhook-timestamp"];
        let mut out = String::with_capacity(256 + self.body.len().min(1024));
        let _ = writeln!(out, "{} {}", self.method, self.url.shown);
        for (k, v) in &self.headers {
            let shown = SHOWN.iter().any(|s| k.eq_ignore_ascii_case(s))
                || k.get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case("sluice-"));
            if shown {
                let _ = writeln!(out, "{}: {v}", k.to_ascii_lowercase());
            }
        }
        out.push('\n');
        let end = self.body.len().min(1024);
        out.push_str(&String::from_utf8_lossy(&self.body[..end]));
        if self.body.len() > end {
            out.push('…');
        }
        out
    }
}

impl Sender {
    pub fn new(allow_private: bool) -> anyhow::Result<Sender> {
        let base = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(256)
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(10))
                // An HTTP_PROXY from the environment would connect for us and bypass the
                // address guard: webhooks go direct.
                .no_proxy()
                .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
        };
        Ok(Sender {
            guarded: base().dns_resolver(Arc::new(GuardedResolver)).build()?,
            open: base().build()?,
            allow_private,
        })
    }

    pub async fn send(&self, req: Request) -> Response {
        let started = Instant::now();
        let fail = |error: String, refused: bool| Response {
            status: None,
            error: Some(error),
            retry_after_ms: None,
            excerpt: String::new(),
            duration: started.elapsed(),
            refused,
        };
        let guard = !(self.allow_private || req.trusted);
        let url = match &req.url.parsed {
            Ok(u) => u.clone(),
            Err(e) => return fail(format!("invalid url: {e}"), true),
        };
        if guard {
            let literal = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            let local_name = url
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case("localhost") || h.ends_with(".localhost"));
            if literal.is_some_and(is_private) || local_name {
                return fail(
                    format!(
                        "target refused: {} is a private, loopback or link-local address (start the server with --allow-private-targets to allow it)",
                        url.host_str().unwrap_or_default()
                    ),
                    true,
                );
            }
        }
        let client = if guard { &self.guarded } else { &self.open };
        let needs_length = req.body.is_empty()
            && matches!(
                req.method,
                reqwest::Method::POST | reqwest::Method::PUT | reqwest::Method::PATCH
            );
        let req = Request {
            empty_body_length: needs_length,
            ..req
        };
        let mut rb = client
            .request(req.method.clone(), url)
            .timeout(req.timeout)
            .body(req.body.clone());
        for (k, v) in &req.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if req.empty_body_length {
            // Some servers answer 411 to a POST without a length.
            rb = rb.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        let mut resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                // reqwest names the URL in its errors: they go to the attempts log and the
                // logs, so without it (it may carry credentials).
                let msg = error_chain(&e.without_url());
                let refused = msg.contains("target refused");
                return fail(msg, refused);
            }
        };
        let status = resp.status().as_u16();
        let retry_after_ms = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = Vec::new();
        let mut error = None;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    body.extend_from_slice(&c);
                    if body.len() >= RESPONSE_READ_MAX {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let e = e.without_url();
                    error = Some(format!("reading the response: {}", error_chain(&e)));
                    break;
                }
            }
        }
        body.truncate(RESPONSE_EXCERPT);
        Response {
            status: Some(status),
            error,
            retry_after_ms,
            excerpt: String::from_utf8_lossy(&body).into_owned(),
            duration: started.elapsed(),
            refused: false,
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    if s.contains("operation timed out") || s.contains("TimedOut") {
        s = format!("timeout: {s}");
    }
    s
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<u64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some((secs.min(86_400.0) * 1000.0) as u64);
        }
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = t.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(ms.clamp(0, 86_400_000) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excerpt_masks_the_url_and_keeps_secret_headers_out() {
        let req = Request {
            method: reqwest::Method::POST,
            url: Target::parse("https://user:pw@hooks.example/in?token=abc"),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Authorization".into(), "Bearer s3cret".into()),
                ("webhook-signature".into(), "v1,xyz".into()),
                ("Sluice-Queue".into(), "orders".into()),
                ("webhook-id".into(), "msg_1".into()),
            ],
            body: b"{\"a\":1}".to_vec(),
            timeout: Duration::from_secs(1),
            trusted: false,
            empty_body_length: false,
        };
        assert_eq!(
            req.excerpt(),
            "POST https://****@hooks.example/in?token=****\ncontent-type: application/json\n\
             sluice-queue: orders\nwebhook-id: msg_1\n\n{\"a\":1}"
        );
        assert!(Target::parse("not a url").parsed.is_err());
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(3000));
        assert_eq!(parse_retry_after("0.5"), Some(500));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(0),
            "a date in the past means now"
        );
    }
}
