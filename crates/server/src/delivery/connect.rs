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
        .build(Timed(https)))
}

/// A connector whose whole connect is bounded by [`CONNECT_TIMEOUT`].
#[derive(Clone)]
pub struct Timed<C>(C);

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
        Box::pin(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                Ok(done) => done.map_err(Into::into),
                Err(_) => {
                    Err(format!("connect timed out after {} s", CONNECT_TIMEOUT.as_secs()).into())
                }
            }
        })
    }
}
