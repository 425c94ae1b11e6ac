//! Outgoing webhook requests: a pooled hyper client per trust level (the guarded one resolves
//! names through `guard.rs`), private targets refused before any connection, capped response
//! reads, `Retry-After`. What the sender saw becomes the engine's `Answer`. hyper's own client
//! (with rustls and HTTP/2 by ALPN) rather than reqwest: a delivery is the server's hottest
//! outgoing path, and reqwest's layers (its URL re-parsed per request, the redirect policy
//! that is never used, boxed futures) were about a tenth of the server's CPU in `bench push`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Uri};

use sluice_engine::history::limits::RESPONSE_EXCERPT;
use sluice_engine::push::Answer;

use super::connect::{pool, Pool};
use super::guard::{is_private, Resolver};

/// Bytes of a response body read at most (the rest is dropped with the connection).
pub const RESPONSE_READ_MAX: usize = 64 * 1024;

const USER_AGENT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));

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
/// Shared: each request of a lane clones it, so a clone is a reference count, not a copy.
#[derive(Clone, Debug)]
pub struct Target(Arc<Parts>);

#[derive(Debug)]
struct Parts {
    parsed: Result<Parsed, String>,
    shown: String,
}

/// A target as the guard reads it (`url`) and as hyper sends it (`uri`, without credentials:
/// a URL's `user:password@` becomes `Authorization: Basic`, as browsers and curl do).
#[derive(Debug)]
struct Parsed {
    url: url::Url,
    uri: Uri,
    basic: Option<HeaderValue>,
}

impl Target {
    pub fn parse(url: &str) -> Target {
        Target(Arc::new(Parts {
            parsed: parse_target(url),
            shown: crate::redact::url(url),
        }))
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
        let end = self.body.len().min(1024);
        let mut out = String::with_capacity(256 + end);
        // Pieces pushed as they are rather than through `write!`: every delivery writes one.
        out.push_str(self.method.as_str());
        out.push(' ');
        out.push_str(&self.url.0.shown);
        out.push('\n');
        for (k, v) in &self.headers {
            let shown = SHOWN.iter().any(|s| k.eq_ignore_ascii_case(s))
                || k.get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case("sluice-"));
            if shown {
                let name = out.len();
                out.push_str(k);
                out[name..].make_ascii_lowercase();
                out.push_str(": ");
                out.push_str(v);
                out.push('\n');
            }
        }
        out.push('\n');
        // `from_utf8` checks a valid body faster than `from_utf8_lossy`'s walk in chunks.
        match std::str::from_utf8(&self.body[..end]) {
            Ok(text) => out.push_str(text),
            Err(_) => out.push_str(&String::from_utf8_lossy(&self.body[..end])),
        }
        if self.body.len() > end {
            out.push('…');
        }
        out
    }
}

impl Sender {
    pub fn new(allow_private: bool) -> anyhow::Result<Sender> {
        Ok(Sender {
            guarded: pool(Resolver { guarded: true })?,
            open: pool(Resolver { guarded: false })?,
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
        let Parsed { url, uri, basic } = match &req.url.0.parsed {
            Ok(p) => p,
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
        let http = match build(req.method, uri.clone(), basic, &req.headers, req.body) {
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
                let within = req.timeout.as_secs_f64();
                let msg = format!(
                    "timeout: error sending request: operation timed out (no answer within {within} s)"
                );
                return fail(msg, false);
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

/// A target URL as the guard reads it and as hyper sends it. Only http and https, with a host.
fn parse_target(s: &str) -> Result<Parsed, String> {
    use base64::Engine as _;
    use percent_encoding::percent_decode_str;
    let url = url::Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    let mut bare = url.clone();
    let basic = match (url.username(), url.password()) {
        ("", None) => None,
        (user, password) => {
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            let pair = format!(
                "{}:{}",
                decode(user),
                password.map(decode).unwrap_or_default()
            );
            let token = base64::engine::general_purpose::STANDARD.encode(pair);
            let mut value = HeaderValue::from_str(&format!("Basic {token}"))
                .expect("base64 is a valid header value");
            value.set_sensitive(true);
            let _ = bare.set_username("");
            let _ = bare.set_password(None);
            Some(value)
        }
    };
    let uri = bare.as_str().parse::<Uri>().map_err(|e| e.to_string())?;
    Ok(Parsed { url, uri, basic })
}

/// The names sluice's push requests send, made once: `HeaderName::from_bytes` checks and
/// copies a name that is not a standard one into a new allocation each time.
static SENT_NAMES: [HeaderName; 8] = [
    hyper::header::CONTENT_TYPE,
    HeaderName::from_static("webhook-id"),
    HeaderName::from_static("webhook-timestamp"),
    HeaderName::from_static("webhook-signature"),
    HeaderName::from_static("sluice-queue"),
    HeaderName::from_static("sluice-subscription"),
    HeaderName::from_static("sluice-attempt"),
    HeaderName::from_static("sluice-batch-size"),
];

/// The hyper request: the caller's headers, then (unless given) the URL's credentials as
/// `Authorization`, `User-Agent` and `Accept: */*`, and `Content-Length: 0` for an empty POST,
/// PUT or PATCH (some servers want it).
fn build(
    method: Method,
    uri: Uri,
    basic: &Option<HeaderValue>,
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
        let name = match SENT_NAMES.iter().find(|n| n.as_str() == k) {
            Some(name) => name.clone(),
            None => {
                HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("header name {k:?}"))?
            }
        };
        let value = HeaderValue::from_str(v).map_err(|_| format!("the value of header {k}"))?;
        map.append(name, value);
    }
    if let Some(basic) = basic
        .as_ref()
        .filter(|_| !map.contains_key(hyper::header::AUTHORIZATION))
    {
        map.insert(hyper::header::AUTHORIZATION, basic.clone());
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
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
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
    if s.contains("timed out") {
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
        assert!(Target::parse("not a url").0.parsed.is_err());
        // A body cut at 1 KiB inside a character, or not UTF-8: lossy, and the cut marked.
        let mut body = vec![b'a'; 1023];
        body.extend_from_slice("é and more".as_bytes());
        let cut = Request {
            body,
            headers: vec![],
            ..req
        };
        let shown = cut.excerpt();
        assert!(shown.ends_with("aaa\u{fffd}…"), "{shown:?}");
        let bytes = Request {
            body: vec![b'x', 0xff, b'y'],
            ..cut
        };
        assert!(bytes.excerpt().ends_with("\n\nx\u{fffd}y"));
    }

    #[test]
    fn targets_are_http_urls_with_a_host() {
        let p = parse_target("http://[::1]:9000/in?x=1").unwrap();
        assert_eq!(p.url.host(), Some(url::Host::Ipv6("::1".parse().unwrap())));
        assert_eq!(p.uri.to_string(), "http://[::1]:9000/in?x=1");
        assert!(p.basic.is_none());
        // Credentials leave the URI and become Basic auth (percent-decoded), as reqwest did.
        let p = parse_target("https://us%40er:p%3Aw@hooks.example/in").unwrap();
        assert_eq!(p.uri.to_string(), "https://hooks.example/in");
        assert_eq!(p.basic.unwrap(), "Basic dXNAZXI6cDp3"); // us@er:p:w
        let p = parse_target("https://token@hooks.example/").unwrap();
        assert_eq!(p.basic.unwrap(), "Basic dG9rZW46"); // token:
        assert!(parse_target("ftp://example.com/")
            .unwrap_err()
            .contains("ftp"));
        assert!(parse_target("unix:/tmp/sock").is_err());
        assert!(parse_target("http://").is_err());
    }

    #[test]
    fn requests_carry_credentials_a_user_agent_and_an_empty_posts_length() {
        let uri: Uri = "http://h/".parse().unwrap();
        let basic = Some(HeaderValue::from_static("Basic dTpw"));
        let x = [
            ("X-A".into(), "1".into()),
            ("webhook-id".into(), "msg_1".into()),
            ("Sluice-Queue".into(), "q".into()),
        ];
        let r = build(Method::POST, uri.clone(), &basic, &x, vec![]).unwrap();
        assert_eq!(r.headers()["webhook-id"], "msg_1");
        assert_eq!(r.headers()["sluice-queue"], "q");
        assert_eq!(r.headers()["authorization"], "Basic dTpw");
        assert_eq!(r.headers()["user-agent"], USER_AGENT);
        assert_eq!(r.headers()["accept"], "*/*");
        assert_eq!(r.headers()["content-length"], "0");
        assert_eq!(r.headers()["x-a"], "1");
        let own = [
            ("User-Agent".into(), "mine".into()),
            ("Authorization".into(), "Bearer t".into()),
        ];
        let r = build(Method::GET, uri.clone(), &basic, &own, vec![]).unwrap();
        assert_eq!(r.headers()["user-agent"], "mine");
        assert_eq!(
            r.headers()["authorization"],
            "Bearer t",
            "a configured header wins"
        );
        assert!(!r.headers().contains_key("content-length"));
        let bad = [("bad name".into(), "1".into())];
        assert!(build(Method::POST, uri, &None, &bad, b"x".to_vec())
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
        let ring = tokio_rustls::rustls::crypto::ring::default_provider();
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(ring.into())
            .with_safe_default_protocol_versions()
            .unwrap()
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
