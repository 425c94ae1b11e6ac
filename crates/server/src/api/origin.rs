//! Who is asking, as far as a browser tells: the checks behind the keyless guard
//! (`keyless_refusal` in `mod.rs`). Without API keys every request is allowed, so a web page the
//! operator visits must not be able to drive the local server: neither by sending requests to
//! it (cross-site requests) nor by renaming it (DNS rebinding: `rebind.attacker.example`
//! resolving to 127.0.0.1, which makes the attacker's page same-origin with the server).
//!
//! - [`is_loopback_host`]: the `Host` a loopback server answers to: `localhost`, `*.localhost`,
//!   127.0.0.0/8, `[::1]` (with any port). Any other name is refused, as Docker's API, Jupyter
//!   and Vite do.
//! - [`cross_site`]: the request comes from a page of another site: its `Origin` is neither
//!   the server's own nor a loopback origin (pages served by local programs, as Vite's default
//!   CORS allows), or, without `Origin`, the browser's `Sec-Fetch-Site` says `cross-site`.
//!   Clients that are not browsers (SQS SDKs, the seeds' clients, curl) send neither.
//! - [`harmless`]: what a cross-site request may still do: a plain `GET`/`HEAD` of the
//!   dashboard's pages and the health routes (a link to the dashboard keeps working).

use std::borrow::Cow;
use std::net::IpAddr;

use axum::http::header::{HeaderName, ORIGIN, UPGRADE};
use axum::http::{HeaderMap, Method, Uri};

// Looked up on every keyless request: named once here, not parsed from text at each lookup.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const X_AMZ_TARGET: HeaderName = HeaderName::from_static("x-amz-target");

/// Split `host[:port]` (IPv6 in brackets) into the host, lower-cased and without a trailing
/// dot, and the port if given. The host is copied only when it has capitals to lower.
fn split_authority(a: &str) -> Option<(Cow<'_, str>, Option<u16>)> {
    let a = a.trim();
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (h, port)
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    let host = host.trim_end_matches('.');
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    Some((host, port))
}

fn loopback_name(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Is `host` (a `Host` header or `:authority`) a loopback name or address?
pub fn is_loopback_host(host: &str) -> bool {
    split_authority(host).is_some_and(|(h, _)| loopback_name(&h))
}

/// `scheme://host[:port]` as (scheme, host, port with the scheme's default filled in).
fn parse_origin(origin: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (host, port) = split_authority(rest.trim_end_matches('/'))?;
    Some((scheme, host.into_owned(), port.unwrap_or(default)))
}

/// Does the request come from a page of another site? `host` is the request's `Host`; `tls`
/// says whether this server speaks HTTPS.
pub fn cross_site(headers: &HeaderMap, host: Option<&str>, tls: bool) -> bool {
    if let Some(origin) = headers.get(ORIGIN) {
        let Some((scheme, o_host, o_port)) = origin.to_str().ok().and_then(parse_origin) else {
            return true; // `null` (sandboxed frames, files) or garbage
        };
        if loopback_name(&o_host) {
            return false;
        }
        let own_scheme = if tls { "https" } else { "http" };
        let default = if tls { 443 } else { 80 };
        let own = host.and_then(split_authority);
        return !own.is_some_and(|(h, p)| {
            scheme == own_scheme && h == o_host && p.unwrap_or(default) == o_port
        });
    }
    headers
        .get(SEC_FETCH_SITE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
}

/// May a cross-site request still be served? Only plain reads of the dashboard's pages and
/// the health routes: no other method, no upgrade (WebSockets are not covered by CORS), no
/// SQS action in the query string.
pub fn harmless(method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
    let path = uri.path();
    let page = matches!(path, "/" | "/ui" | "/healthz" | "/readyz" | "/openapi.json")
        || path.starts_with("/ui/");
    let action = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .any(|(k, _)| k == "Action");
    (method == Method::GET || method == Method::HEAD)
        && page
        && !action
        && !headers.contains_key(UPGRADE)
        && !headers.contains_key(X_AMZ_TARGET)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "app.localhost:3000",
            "127.0.0.1",
            "127.9.9.9:80",
            "[::1]:8080",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "rebind.attacker.example",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:8080",
            "[::2]",
            "0.0.0.0",
            "",
            "localhost:port",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn origins() {
        let host = Some("127.0.0.1:8080");
        let cross = |pairs: &[(&'static str, &str)]| cross_site(&h(pairs), host, false);
        assert!(!cross(&[]), "no browser headers: not a browser");
        assert!(!cross(&[("origin", "http://127.0.0.1:8080")]), "own");
        assert!(
            !cross(&[("origin", "http://localhost:5173")]),
            "a local page"
        );
        assert!(cross(&[("origin", "http://evil.example")]));
        assert!(cross(&[("origin", "null")]));
        assert!(cross(&[("origin", "http://rebind.attacker.example:8080")]));
        assert!(cross(&[("sec-fetch-site", "cross-site")]));
        assert!(!cross(&[("sec-fetch-site", "same-origin")]));
        assert!(!cross(&[("sec-fetch-site", "none")]));
        // The server's own origin over TLS is https.
        let on_tls = h(&[("origin", "https://sluice.internal")]);
        assert!(!cross_site(&on_tls, Some("sluice.internal:443"), true));
        assert!(cross_site(&on_tls, Some("sluice.internal"), false));
    }

    #[test]
    fn what_cross_site_requests_may_do() {
        let ok = |m: Method, u: &str| harmless(&m, &u.parse().unwrap(), &HeaderMap::new());
        assert!(ok(Method::GET, "/"));
        assert!(ok(Method::GET, "/ui/app.js"));
        assert!(!ok(Method::GET, "/?Action=DeleteQueue&QueueUrl=x"));
        assert!(!ok(Method::POST, "/"));
        assert!(!ok(Method::GET, "/v1/queues"));
        assert!(!ok(Method::GET, "/retry"));
        let ws = h(&[("upgrade", "websocket")]);
        assert!(!harmless(&Method::GET, &"/".parse().unwrap(), &ws));
    }
}
