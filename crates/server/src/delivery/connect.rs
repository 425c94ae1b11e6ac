//! The webhook sender's connections: one pooled hyper client per trust level, built the way
//! reqwest built them for sluice before (`http.rs` says why hyper's own client): rustls with
//! the ring provider and the webpki roots, HTTP/2 by ALPN, no proxy, no redirects followed,
//! TCP keepalive and a user timeout so a connection a NAT dropped is noticed, and one connect
//! timeout over the whole connect (DNS, TCP, TLS handshake).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::guard::Resolver;

/// How long a connection may take to open: name resolution, TCP and the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Error = Box<dyn std::error::Error + Send + Sync>;
type Https = hyper_rustls::HttpsConnector<HttpConnector<Resolver>>;

pub type Pool = Client<Timed<Https>, Full<Bytes>>;

/// A pooled client: keep-alive connections reused for a minute, up to 256 idle per host.
pub fn pool(resolver: Resolver) -> anyhow::Result<Pool> {
    let mut http = HttpConnector::new_with_resolver(resolver);
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(15)));
    http.set_keepalive_interval(Some(Duration::from_secs(15)));
    http.set_keepalive_retries(Some(3));
    http.set_tcp_user_timeout(Some(Duration::from_secs(30)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(tokio_rustls::rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(Timed(https, CONNECT_TIMEOUT)))
}

/// A connector whose whole connect is bounded by a timeout ([`CONNECT_TIMEOUT`] in [`pool`]).
#[derive(Clone)]
pub struct Timed<C>(C, Duration);

impl<C> tower::Service<Uri> for Timed<C>
where
    C: tower::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<Error>,
{
    type Response = C::Response;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        let limit = self.1;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(done) => done.map_err(Into::into),
                Err(_) => Err(format!("connect timed out after {} s", limit.as_secs_f64()).into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connect that never finishes (a black-holed SYN, a stalled TLS handshake) fails after
    /// the timeout, through hyper's client, as a "timeout" the sender reports and retries.
    #[tokio::test]
    async fn a_connect_that_never_finishes_times_out() {
        type Io = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
        let never = tower::service_fn(|_: Uri| std::future::pending::<Result<Io, Error>>());
        let limit = Duration::from_millis(50);
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(Timed(never, limit));
        let started = std::time::Instant::now();
        let req = hyper::Request::get("http://example.test/")
            .body(Full::default())
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), client.request(req)).await;
        let err = answer
            .expect("the connect timeout fired")
            .expect_err("no connection");
        assert!(started.elapsed() >= limit);
        let shown = super::super::http::error_chain(&err);
        assert!(shown.starts_with("timeout: "), "{shown}");
        assert!(shown.contains("connect timed out after 0.05 s"), "{shown}");
    }
}
