//! Every request's way in. [`FrontDoor`] is the service hyper calls; `direct_h1.rs`, which
//! reads the same three requests itself on plain HTTP/1.1 connections, calls
//! [`FrontDoor::serve_hot`]. The three requests a busy queue serves over and over, `POST
//! /v1/queues/{queue}/messages`, `.../receive` and `.../ack`, go straight to their handlers;
//! everything else goes through axum's router.
//!
//! Why: per request, the router looks the path up, allocates its parameters and the matched
//! path, clones the route's boxed service and boxes a future for each layer: about 7k of a
//! single publish's 43k instructions (BENCHMARKS.md, "The front door"). The direct way runs the
//! same handlers with the same extractors in the same order, behind the same keyless guard and
//! the same request metrics and access log ([`tracked`], which the router's `track` layer also
//! calls), and with API keys the same check ([`admit`], which the router's `authorize` layer
//! also calls), so no client can tell the two ways apart. Requests whose queue name is
//! percent-encoded take the router (its `Path` extractor decodes).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{
    Extension, FromRequestParts, MatchedPath, Path, RawPathParams, Request, State,
};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::future::{BoxFuture, Either};

use super::body::{QueryParams, RawBody, ReadAhead};
use super::{error, native, origin, AppState};
use crate::auth::{Need, Principal};

/// The server's service: the hot requests directly, the rest through `router`.
#[derive(Clone)]
pub struct FrontDoor {
    router: Router,
    state: AppState,
    /// The queue awe_queue's routes act on (for `admit`; a hot request never names it).
    awe_queue: Arc<str>,
}

impl FrontDoor {
    /// The direct request a `POST` to `path` (without its query) is, with its queue; `None`
    /// for every other. `direct_h1.rs` reads only these, and hands them to [`Self::serve_hot`].
    pub(crate) fn hot(path: &str) -> Option<(Hot, &str)> {
        Hot::of(&Method::POST, path)
    }

    /// Serve a direct request: [`tracked`], then its handler.
    pub(crate) async fn serve_hot(
        &self,
        hot: Hot,
        queue: String,
        req: Request,
        ahead: Option<ReadAhead>,
    ) -> Response {
        let s = &self.state;
        tracked(s, hot.route(), req, |req| {
            hot.serve(s.clone(), &self.awe_queue, queue, req, ahead)
        })
        .await
    }

    pub(super) fn new(router: Router, state: AppState, awe_queue: Arc<str>) -> Self {
        FrontDoor {
            router,
            state,
            awe_queue,
        }
    }
}

/// The requests that take the direct way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Hot {
    Publish,
    Receive,
    Ack,
}

impl Hot {
    /// The hot request a method and path name, with its queue; `None` for every other request.
    /// Matches what the router's templates (`router` in `mod.rs`) would: one non-empty segment
    /// for the queue, nothing after the action.
    fn of<'a>(method: &Method, path: &'a str) -> Option<(Hot, &'a str)> {
        if method != Method::POST {
            return None;
        }
        let (queue, action) = path.strip_prefix("/v1/queues/")?.split_once('/')?;
        if queue.is_empty() || queue.contains('%') {
            return None;
        }
        let hot = match action {
            "messages" => Hot::Publish,
            "receive" => Hot::Receive,
            "ack" => Hot::Ack,
            _ => return None,
        };
        Some((hot, queue))
    }

    /// The router's template for this request (the metrics' `route` label).
    fn route(self) -> &'static str {
        match self {
            Hot::Publish => "/v1/queues/{queue}/messages",
            Hot::Receive => "/v1/queues/{queue}/receive",
            Hot::Ack => "/v1/queues/{queue}/ack",
        }
    }

    /// The handler, its extractors run as axum would run them: the parts' in argument order,
    /// then the body; a rejection answers at once. With API keys, first the key's check, as
    /// the router's `authorize` layer does it.
    async fn serve(
        self,
        s: AppState,
        awe_queue: &str,
        queue: String,
        req: Request,
        ahead: Option<ReadAhead>,
    ) -> Response {
        macro_rules! extract {
            ($e:expr) => {
                match $e.await {
                    Ok(v) => v,
                    Err(rejection) => return rejection.into_response(),
                }
            };
        }
        let caller = if s.auth.enabled() {
            let method = req.method();
            match admit(
                &s,
                awe_queue,
                method,
                self.route(),
                Some(&queue),
                req.headers(),
            ) {
                Ok(caller) => caller,
                Err(refused) => return refused.into_response(),
            }
        } else {
            None
        };
        match self {
            Hot::Publish => {
                let (mut parts, body) = req.into_parts();
                let query = extract!(QueryParams::from_request_parts(&mut parts, &s));
                let key = extract!(native::IdempotencyKey::from_request_parts(&mut parts, &s));
                let req = Request::from_parts(parts, body);
                let body = extract!(RawBody::taken(req, ahead, &s));
                let caller = caller.map(Extension);
                native::publish(State(s), Path(queue), query, caller, key, body)
                    .await
                    .into_response()
            }
            Hot::Receive => {
                let body = extract!(RawBody::taken(req, ahead, &s));
                native::receive(State(s), Path(queue), body)
                    .await
                    .into_response()
            }
            Hot::Ack => {
                let body = extract!(RawBody::taken(req, ahead, &s));
                native::ack(State(s), Path(queue), body)
                    .await
                    .into_response()
            }
        }
    }
}

impl<B> tower::Service<axum::http::Request<B>> for FrontDoor
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        <Router as tower::Service<axum::http::Request<B>>>::Future,
        BoxFuture<'static, Result<Response, Infallible>>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        if let Some((hot, queue)) = Hot::of(req.method(), req.uri().path()) {
            let queue = queue.to_owned();
            let door = self.clone();
            let req = req.map(Body::new);
            return Either::Right(Box::pin(async move {
                Ok(door.serve_hot(hot, queue, req, None).await)
            }));
        }
        Either::Left(self.router.call(req))
    }
}

/// The router's layer with API keys ([`admit`] under the route's template and queue parameter);
/// it hands the caller's principal to the handlers (those that list queues show only the ones
/// its key covers). Layered only when keys are configured (`router`).
pub(super) async fn authorize(
    State((s, awe_queue)): State<(AppState, Arc<str>)>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let queue = RawPathParams::from_request_parts(&mut parts, &s)
        .await
        .ok()
        .and_then(|ps| {
            ps.iter()
                .find(|(k, _)| *k == "queue" || *k == "topic")
                .map(|(_, v)| v.to_string())
        });
    match admit(
        &s,
        &awe_queue,
        &parts.method,
        &template,
        queue.as_deref(),
        &parts.headers,
    ) {
        Ok(Some(principal)) => {
            parts.extensions.insert(principal);
        }
        Ok(None) => {}
        Err(refused) => return refused.into_response(),
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Check the API key against what the route needs (see `crate::auth::need`): 401 without a
/// valid key, 403 when the key's role or queues do not cover the request; otherwise the
/// caller's principal (`None` for what needs no key: public routes, and the SQS API, which
/// checks SigV4 itself). Only with keys configured.
fn admit(
    s: &AppState,
    awe_queue: &str,
    method: &Method,
    template: &str,
    queue: Option<&str>,
    headers: &HeaderMap,
) -> Result<Option<Principal>, Refused> {
    let need = crate::auth::need(method, template, queue, awe_queue);
    if matches!(need, Need::Public | Need::Sqs) {
        return Ok(None);
    }
    let principal = s.auth.bearer(headers).map_err(Refused::NoKey)?;
    principal.allows(&need).map_err(Refused::NotCovered)?;
    Ok(Some(principal))
}

/// Why [`admit`] refused a request.
enum Refused {
    /// 401: no key, or not a valid one.
    NoKey(&'static str),
    /// 403: the key's role or queues do not cover the request.
    NotCovered(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::NoKey(msg) => {
                let mut r = error::ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg)
                    .into_response();
                r.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer realm=\"sluice\""),
                );
                r
            }
            Refused::NotCovered(msg) => {
                error::ApiError::new(StatusCode::FORBIDDEN, "forbidden", msg).into_response()
            }
        }
    }
}

/// The router's layer around every route: [`tracked`] under the route's template.
pub(super) async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", |r| r.as_str());
    tracked(&s, route, req, |req| next.run(req)).await
}

/// Count the request by route template and status, time it, log it with `--access-log`;
/// without API keys, refuse web pages first ([`keyless_refusal`]). Both ways in call this.
async fn tracked<F>(
    s: &AppState,
    route: &str,
    req: Request,
    inner: impl FnOnce(Request) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
    let method = req.method().clone();
    let path = s.access_log.then(|| req.uri().path().to_string());
    let started = Instant::now();
    let mut resp = match keyless_refusal(s, &req) {
        Some(refused) => refused,
        None => inner(req).await,
    };
    if s.tls {
        // Browsers (the dashboard) keep to HTTPS for this host from now on.
        resp.headers_mut().insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static("max-age=31536000"),
        );
    }
    let status = resp.status().as_u16();
    if let Some(path) = path {
        tracing::info!(method = %method, path = %path, status = %status, duration_ms = started.elapsed().as_millis() as u64, "request");
    }
    s.http_metrics
        .record(route, &method, status, started.elapsed().as_secs_f64());
    resp
}

/// Without API keys, every request is allowed: keep web pages out (see `origin.rs`). A server
/// listening on loopback answers only to loopback names (`Host`), against DNS rebinding; any
/// keyless server refuses requests from other sites' pages, except plain reads of the
/// dashboard's pages. Browsers say where a request comes from (`Origin`, `Sec-Fetch-Site`);
/// other clients (SQS SDKs, the seeds' clients, curl) send neither and are not affected. With
/// keys configured this does nothing: a page has no key.
/// Returns the refusal, if any.
fn keyless_refusal(s: &AppState, req: &Request) -> Option<Response> {
    if s.auth.enabled() {
        return None;
    }
    let headers = req.headers();
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let refuse = |code: &'static str, msg: String| {
        error::ApiError::new(StatusCode::FORBIDDEN, code, msg).into_response()
    };
    if s.loopback {
        if let Some(h) = host.filter(|h| !origin::is_loopback_host(h)) {
            return Some(refuse(
                "forbidden_host",
                format!("Host {h:?} is not a loopback name: a server without API keys answers only to localhost, 127.0.0.1 and [::1] (configure --auth-keys to serve other names)"),
            ));
        }
    }
    if origin::cross_site(headers, host, s.tls)
        && !origin::harmless(req.method(), req.uri(), headers)
    {
        return Some(refuse(
            "cross_site_request",
            "requests from other sites' pages are refused by a server without API keys (Origin or Sec-Fetch-Site names another site); configure --auth-keys to serve them".into(),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::Hot;
    use axum::http::Method;

    #[test]
    fn only_the_three_hot_requests_take_the_direct_way() {
        let post = Method::POST;
        assert_eq!(
            Hot::of(&post, "/v1/queues/jobs/messages"),
            Some((Hot::Publish, "jobs"))
        );
        assert_eq!(
            Hot::of(&post, "/v1/queues/a.b-c_d/receive"),
            Some((Hot::Receive, "a.b-c_d"))
        );
        assert_eq!(Hot::of(&post, "/v1/queues/q/ack"), Some((Hot::Ack, "q")));
        for path in [
            "/v1/queues/q/nack",
            "/v1/queues/q/messages/",
            "/v1/queues/q/messages/x",
            "/v1/queues//messages",
            "/v1/queues/a%20b/messages",
            "/v1/queues/q",
            "/v1/queues/",
            "/v1/queuesx/q/messages",
            "/v2/queues/q/messages",
            "/",
        ] {
            assert_eq!(Hot::of(&post, path), None, "{path}");
        }
        assert_eq!(Hot::of(&Method::GET, "/v1/queues/q/messages"), None);
        assert_eq!(Hot::of(&Method::PUT, "/v1/queues/q/ack"), None);
    }
}
