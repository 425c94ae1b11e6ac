//! Outgoing webhook requests: a pooled hyper client per trust level (the guarded one resolves
//! names through `guard.rs`), private targets refused before any connection, capped response
//! reads, `Retry-After`. What the sender saw becomes the engine's `Answer`. hyper's own client
//! (with rustls and HTTP/2 by ALPN) rather than reqwest: a delivery is the server's hottest
//! outgoing path, and reqwest's layers (its URL re-parsed per request, the redirect policy
//! that is never used, boxed futures) were about a tenth of the server's CPU in `bench push`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use sluice_engine::history::limits::RESPONSE_EXCERPT;
use sluice_engine::push::Answer;

use super::guard::{is_private, Resolver};

/// Bytes of a response body read at most (the rest is dropped with the connection).
pub const RESPONSE_READ_MAX: usize = 64 * 1024;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));

type Pool = Client<hyper_rustls::HttpsConnector<HttpConnector<Resolver>>, Full<Bytes>>;

pub struct Sender {
    guarded: Pool,
    open: Pool,
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
    parsed: Result<(url::Url, Uri), String>,
    shown: String,
}

impl Target {
    pub fn parse(url: &str) -> Target {
        Target {
            parsed: parse_target(url),
            shown: crate::redact::url(url),
        }
    }
}

pub struct Request {
    pub method: Method,
    pub url: Target,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
    /// Operator-configured: may reach private addresses.
    pub trusted: bool,
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
        Ok(Sender {
            guarded: pool(Resolver { guarded: true }),
            open: pool(Resolver { guarded: false }),
            allow_private,
        })
    }

    /// Send one request, reading at most [`RESPONSE_READ_MAX`] bytes of the answer, all within
    /// the request's timeout. Never fails: what went wrong is in the response's `error`.
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
        let (url, uri) = match &req.url.parsed {
            Ok(u) => u,
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
        let http = match build(req.method, uri.clone(), &req.headers, req.body) {
            Ok(r) => r,
            Err(e) => return fail(format!("invalid request: {e}"), false),
        };
        let client = if guard { &self.guarded } else { &self.open };
        let deadline = tokio::time::Instant::now() + req.timeout;
        let resp = match tokio::time::timeout_at(deadline, client.request(http)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let msg = format!("error sending request: {}", error_chain(&e));
                let refused = msg.contains("target refused");
                return fail(msg, refused);
            }
            Err(_) => {
                return fail(
                    format!(
                    "timeout: error sending request: operation timed out (no answer within {} s)",
                    req.timeout.as_secs_f64()
                ),
                    false,
                )
            }
        };
        let status = resp.status().as_u16();
        let retry_after_ms = resp
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = resp.into_body();
        let mut read = Vec::new();
        let mut error = None;
        while read.len() < RESPONSE_READ_MAX {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(f))) => {
                    if let Some(d) = f.data_ref() {
                        read.extend_from_slice(d);
                    }
                }
                Ok(Some(Err(e))) => {
                    error = Some(format!("reading the response: {}", error_chain(&e)));
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    error = Some("reading the response: timeout: operation timed out".into());
                    break;
                }
            }
        }
        read.truncate(RESPONSE_EXCERPT);
        Response {
            status: Some(status),
            error,
            retry_after_ms,
            excerpt: String::from_utf8_lossy(&read).into_owned(),
            duration: started.elapsed(),
            refused: false,
        }
    }
}

/// A pooled client: keep-alive connections reused for a minute, up to 256 idle per host, no
/// redirects followed (a 3xx is an answer), HTTP/2 when a TLS server offers it.
fn pool(resolver: Resolver) -> Pool {
    let mut http = HttpConnector::new_with_resolver(resolver);
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https)
}

/// A target URL as the guard reads it and as hyper sends it. Only http and https, with a host.
fn parse_target(s: &str) -> Result<(url::Url, Uri), String> {
    let url = url::Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    let uri = url.as_str().parse::<Uri>().map_err(|e| e.to_string())?;
    Ok((url, uri))
}

/// The hyper request: the caller's headers, then `User-Agent` and `Accept: */*` unless given, and
/// `Content-Length: 0` for an empty POST, PUT or PATCH (some servers want it).
fn build(
    method: Method,
    uri: Uri,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<hyper::Request<Full<Bytes>>, String> {
    let empty_needs_length =
        body.is_empty() && matches!(method, Method::POST | Method::PUT | Method::PATCH);
    let mut req = hyper::Request::new(Full::new(Bytes::from(body)));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let map = req.headers_mut();
    map.reserve(headers.len() + 2);
    for (k, v) in headers {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("header name {k:?}"))?;
        let value = HeaderValue::from_str(v).map_err(|_| format!("the value of header {k}"))?;
        map.append(name, value);
    }
    if !map.contains_key(hyper::header::USER_AGENT) {
        map.insert(
            hyper::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
    }
    if !map.contains_key(hyper::header::ACCEPT) {
        map.insert(hyper::header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    if empty_needs_length {
        map.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    Ok(req)
}

/// An error and its causes in one line ("client error (Connect): tcp connect error:
/// Connection refused (os error 111)"); a connect timeout says "timeout" first.
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
    if s.contains("deadline has elapsed") || s.contains("timed out") {
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
            method: Method::POST,
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
        };
        assert_eq!(
            req.excerpt(),
            "POST https://****@hooks.example/in?token=****\ncontent-type: application/json\n\
             sluice-queue: orders\nwebhook-id: msg_1\n\n{\"a\":1}"
        );
        assert!(Target::parse("not a url").parsed.is_err());
    }

    #[test]
    fn targets_are_http_urls_with_a_host() {
        let (url, uri) = parse_target("http://[::1]:9000/in?x=1").unwrap();
        assert_eq!(url.host(), Some(url::Host::Ipv6("::1".parse().unwrap())));
        assert_eq!(uri.to_string(), "http://[::1]:9000/in?x=1");
        assert!(parse_target("ftp://example.com/")
            .unwrap_err()
            .contains("ftp"));
        assert!(parse_target("unix:/tmp/sock").is_err());
        assert!(parse_target("http://").is_err());
    }

    #[test]
    fn requests_carry_a_user_agent_and_an_empty_posts_length() {
        let uri: Uri = "http://h/".parse().unwrap();
        let r = build(
            Method::POST,
            uri.clone(),
            &[("X-A".into(), "1".into())],
            vec![],
        )
        .unwrap();
        assert_eq!(r.headers()["user-agent"], USER_AGENT);
        assert_eq!(r.headers()["accept"], "*/*");
        assert_eq!(r.headers()["content-length"], "0");
        assert_eq!(r.headers()["x-a"], "1");
        let own = [("User-Agent".into(), "mine".into())];
        let r = build(Method::GET, uri.clone(), &own, vec![]).unwrap();
        assert_eq!(r.headers()["user-agent"], "mine");
        assert!(!r.headers().contains_key("content-length"));
        let bad = [("bad name".into(), "1".into())];
        assert!(build(Method::POST, uri, &bad, b"x".to_vec())
            .unwrap_err()
            .contains("bad name"));
    }

    /// An https target gets a TLS handshake, and a certificate no public root vouches for is
    /// refused (webpki roots, as browsers would).
    #[tokio::test]
    async fn https_targets_are_verified() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let config = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handshakes = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            acceptor.accept(tcp).await.err().map(|e| e.to_string())
        });
        let resp = Sender::new(true)
            .unwrap()
            .send(Request {
                method: Method::POST,
                url: Target::parse(&format!("https://localhost:{port}/in")),
                headers: vec![],
                body: b"{}".to_vec(),
                timeout: Duration::from_secs(10),
                trusted: false,
            })
            .await;
        assert_eq!(resp.status, None);
        let error = resp.error.unwrap();
        assert!(error.contains("invalid peer certificate"), "{error}");
        assert!(!resp.refused, "a certificate error may be fixed: retried");
        handshakes
            .await
            .unwrap()
            .expect("the server saw a TLS handshake");
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
