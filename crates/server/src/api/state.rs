//! The ground floor of the HTTP front ends: [`AppState`], what every handler gets (the engine,
//! the push manager, ingestion, telemetry and the server-wide settings), and the per-route
//! request metrics. Adapters import it from here; it imports no adapter.

use std::sync::Arc;

use sluice_engine::Engine;

use axum::http::StatusCode;

use super::error::ApiError;
use crate::telemetry::Telemetry;

/// What every handler gets: one `Arc`, so the per-request clone axum makes for `State` is a
/// single reference-count increment (cloning the fields themselves showed up at ~2-3% of a
/// publish profile).
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

impl AppState {
    pub fn new(inner: AppInner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl axum::extract::FromRef<AppState> for super::body::BodyLimits {
    fn from_ref(s: &AppState) -> Self {
        super::body::BodyLimits {
            max_request_bytes: s.max_request_bytes,
            body_timeout: s.body_timeout,
        }
    }
}

/// The state shared by every handler (see [`AppState`]).
pub struct AppInner {
    pub engine: Arc<Engine>,
    pub telemetry: Arc<Telemetry>,
    pub max_request_bytes: usize,
    pub push: Arc<crate::delivery::PushManager>,
    pub ingest: Arc<crate::ingest::Ingest>,
    /// Log every request at info level (`--access-log`; on by default with the forwarder).
    pub access_log: bool,
    /// A request body must arrive within this long (slow-body guard).
    pub body_timeout: std::time::Duration,
    /// Recent per-queue rates for the dashboard.
    pub rates: Arc<crate::rates::Rates>,
    /// The address this node listens on (shown in `/v1/server`).
    pub listen: String,
    /// `listen` is a loopback address (a keyless server then answers only to loopback names;
    /// read once here, not parsed per request).
    pub loopback: bool,
    /// API keys (empty: no access checks).
    pub auth: Arc<crate::auth::Auth>,
    /// Serving TLS: responses carry HSTS.
    pub tls: bool,
    /// Streaming consumers open now, against `--max-streams`.
    pub streams: Arc<Slots>,
    /// Handles of the per-route request metrics (see `track`).
    pub http_metrics: RequestMetrics,
}

/// The request counter and duration histogram of each route, method and status, registered
/// once and then looked up without allocating: building a labelled metric key per request
/// (three label strings, a registry lookup) was a measurable part of a small request's cost.
/// The keys are the router's own templates, never a client's text, so FxHash will do.
#[derive(Default)]
pub struct RequestMetrics {
    routes: parking_lot::RwLock<rustc_hash::FxHashMap<String, RouteMetrics>>,
}

struct RouteMetrics {
    duration: metrics::Histogram,
    counts: Vec<(axum::http::Method, u16, metrics::Counter)>,
}

impl RequestMetrics {
    pub(super) fn record(
        &self,
        route: &str,
        method: &axum::http::Method,
        status: u16,
        seconds: f64,
    ) {
        {
            let routes = self.routes.read();
            if let Some(r) = routes.get(route) {
                if let Some((_, _, c)) = r
                    .counts
                    .iter()
                    .find(|(m, s, _)| *s == status && m == method)
                {
                    c.increment(1);
                    r.duration.record(seconds);
                    return;
                }
            }
        }
        let mut routes = self.routes.write();
        let r = routes.entry(route.to_string()).or_insert_with(|| RouteMetrics {
            duration: metrics::histogram!("sluice_http_request_duration_seconds", "route" => route.to_string()),
            counts: Vec::new(),
        });
        if !r.counts.iter().any(|(m, s, _)| *s == status && m == method) {
            let c = metrics::counter!("sluice_http_requests_total", "route" => route.to_string(), "method" => method.to_string(), "status" => status.to_string());
            r.counts.push((method.clone(), status, c));
        }
        let (_, _, c) = r
            .counts
            .iter()
            .find(|(m, s, _)| *s == status && m == method)
            .expect("just added");
        c.increment(1);
        r.duration.record(seconds);
    }
}

/// One open streaming consumer's place (see [`Slots`]); given back when dropped.
pub struct Slot(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!("sluice_streams_open").decrement(1.0);
    }
}

/// Streaming consumers open at once, server-wide (`--max-streams`): WebSocket and duplex
/// consumers here, and miniqueue's subscribe.
pub struct Slots {
    sem: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl Slots {
    pub fn new(max: usize) -> Self {
        Slots {
            sem: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
        }
    }

    /// A slot for one streaming consumer, held for its life. None left: 503 too_many_streams.
    pub fn take(&self) -> Result<Slot, ApiError> {
        let permit = self.sem.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("sluice_streams_refused_total").increment(1);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!(
                    "{} streaming consumers are open, the most this server allows (--max-streams); retry later",
                    self.max
                ),
            )
        })?;
        metrics::gauge!("sluice_streams_open").increment(1.0);
        Ok(Slot(permit))
    }

    /// Streaming consumers open now.
    pub fn open(&self) -> usize {
        self.max - self.sem.available_permits()
    }

    /// The most that may be open at once.
    pub fn max(&self) -> usize {
        self.max
    }
}
