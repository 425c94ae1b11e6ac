//! The receivers the push and timer scenarios deliver to: small HTTP servers run inside the
//! bench process on loopback, so every figure is measured where a webhook endpoint would see
//! it. A receiver answers as its [`Answer`] says (at once, refusing some deliveries with
//! `429 Retry-After`, slowly...), counts what it accepted and records each message's lateness
//! (arrival minus the `"t"` its body carries) in a histogram. Messages that carry a sequence
//! number (`"i"`, the pacing scenarios) are also tracked one by one, and every request can be
//! kept in a log of [`Event`]s for the scenario to analyse afterwards.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::api::now_us;
use super::report::{ms, new_hist, obj};

/// How a receiver answers a delivery.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 at once.
    Accept,
    /// `429 Retry-After: 1` to the first delivery of every message whose sequence number `i`
    /// has `i % every == every - 1` (each refused once), 200 to everything else.
    RefuseEveryNth { every: u64 },
    /// A token bucket of `per_sec` tokens a second, holding at most `per_sec` (it starts
    /// full): a request that finds a token gets 200, one that finds none `429 Retry-After: 1`.
    TokenBucket { per_sec: f64 },
    /// `429 Retry-After: retry_after_s` to every request for `seconds` from
    /// [`Receiver::begin`] (and before it), 200 afterwards.
    Outage { seconds: f64, retry_after_s: u64 },
    /// 200 after `delay` (the request is counted when it arrives).
    Slow { delay: Duration },
}

/// One request as the receiver saw it.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub at: Instant,
    pub status: u16,
}

pub struct Receiver {
    /// Where to deliver (`http://IP:PORT/bench`).
    pub url: String,
    answer: Answer,
    begun: OnceLock<Instant>,
    /// Messages accepted (each message of a batch counts).
    count: AtomicU64,
    refusals: AtomicU64,
    hist: Mutex<Histogram<u64>>,
    span: Mutex<Option<(Instant, Instant)>>,
    /// When each sequence number was first accepted.
    delivered: Mutex<HashMap<u64, Instant>>,
    refused: Mutex<HashSet<u64>>,
    bucket: Mutex<(f64, Instant)>,
    log: Option<Mutex<Vec<Event>>>,
}

impl Receiver {
    /// Start a receiver on a free port of the loopback address `ip` (`127.0.0.1`, or
    /// `127.0.0.2` for a second host: Linux routes all of 127/8 to the loopback device).
    /// `keep_log` keeps an [`Event`] per request.
    pub async fn start(ip: &str, answer: Answer, keep_log: bool) -> anyhow::Result<Arc<Self>> {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let per_sec = match answer {
            Answer::TokenBucket { per_sec } => per_sec,
            _ => 0.0,
        };
        let rx = Arc::new(Receiver {
            url: format!("http://{addr}/bench"),
            answer,
            begun: OnceLock::new(),
            count: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            hist: Mutex::new(new_hist()),
            span: Mutex::new(None),
            delivered: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashSet::new()),
            bucket: Mutex::new((per_sec, Instant::now())),
            log: keep_log.then(|| Mutex::new(Vec::new())),
        });
        let app = axum::Router::new().fallback(receive).with_state(rx.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(rx)
    }

    /// The moment the run starts: an [`Answer::Outage`] lasts from here.
    pub fn begin(&self, at: Instant) {
        let _ = self.begun.set(at);
    }

    /// Messages accepted so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// 429s answered so far.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Distinct sequence numbers accepted so far.
    pub fn distinct(&self) -> u64 {
        self.delivered.lock().len() as u64
    }

    /// When the last of sequence numbers `0..n` was first accepted, if all were.
    pub fn all_delivered_at(&self, n: u64) -> Option<Instant> {
        let d = self.delivered.lock();
        (0..n)
            .map(|i| d.get(&i).copied())
            .try_fold(None, |acc: Option<Instant>, t| {
                t.map(|t| Some(acc.map_or(t, |a| a.max(t))))
            })?
    }

    /// The request log (empty unless started with `keep_log`).
    pub fn events(&self) -> Vec<Event> {
        self.log
            .as_ref()
            .map(|l| l.lock().clone())
            .unwrap_or_default()
    }

    /// Seconds from the first accepted message to the last.
    pub fn span_s(&self) -> f64 {
        match *self.span.lock() {
            Some((a, b)) => (b - a).as_secs_f64(),
            None => 0.0,
        }
    }

    /// Accepted messages and their lateness: `messages`, `msgs_per_sec` (over the span from
    /// the first arrival to the last), `p50_ms`, `p90_ms`, `p99_ms`, `max_ms`.
    pub fn figures(&self) -> serde_json::Map<String, Value> {
        let got = self.count();
        let span = self.span_s();
        let h = self.hist.lock();
        obj(json!({
            "messages": got,
            "msgs_per_sec": if span > 0.0 { (got as f64 / span).round() } else { 0.0 },
            "p50_ms": ms(h.value_at_quantile(0.5)),
            "p90_ms": ms(h.value_at_quantile(0.9)),
            "p99_ms": ms(h.value_at_quantile(0.99)),
            "max_ms": ms(h.max()),
        }))
    }

    /// Whether sequence number `seq` was accepted.
    pub fn has(&self, seq: u64) -> bool {
        self.delivered.lock().contains_key(&seq)
    }

    /// Wait until `n` messages were accepted, `max_s` passed since `started`, or nothing
    /// arrived for 30 s.
    pub async fn wait_for(&self, n: u64, started: Instant, max_s: f64) {
        let mut last = 0;
        let mut last_change = Instant::now();
        loop {
            let got = self.count();
            if got >= n || started.elapsed().as_secs_f64() > max_s {
                return;
            }
            if got != last {
                last = got;
                last_change = Instant::now();
            } else if last_change.elapsed() > Duration::from_secs(30) {
                eprintln!("no delivery for 30 s; giving up at {got} of {n} (is the server started with --allow-private-targets?)");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The status (and Retry-After seconds) for a request carrying `seq`.
    fn decide(&self, seq: Option<u64>, now: Instant) -> (StatusCode, Option<u64>) {
        let refuse = |secs| (StatusCode::TOO_MANY_REQUESTS, Some(secs));
        match &self.answer {
            Answer::Accept | Answer::Slow { .. } => (StatusCode::OK, None),
            Answer::RefuseEveryNth { every } => match seq {
                Some(i) if i % every == every - 1 && self.refused.lock().insert(i) => refuse(1),
                _ => (StatusCode::OK, None),
            },
            Answer::TokenBucket { per_sec } => {
                let mut b = self.bucket.lock();
                let (tokens, at) = *b;
                let tokens = (tokens + (now - at).as_secs_f64() * per_sec).min(*per_sec);
                if tokens >= 1.0 {
                    *b = (tokens - 1.0, now);
                    (StatusCode::OK, None)
                } else {
                    *b = (tokens, now);
                    refuse(1)
                }
            }
            Answer::Outage {
                seconds,
                retry_after_s,
            } => match self.begun.get() {
                Some(b) if now >= *b + Duration::from_secs_f64(*seconds) => (StatusCode::OK, None),
                _ => refuse(*retry_after_s),
            },
        }
    }
}

async fn receive(State(rx): State<Arc<Receiver>>, body: Bytes) -> Response {
    let arrived_us = now_us();
    let now = Instant::now();
    // One message, or a batch (a JSON array of them).
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(a)) => a,
        Ok(v) => vec![v],
        Err(_) => vec![Value::Null],
    };
    let seq = items.first().and_then(|v| v["i"].as_u64());
    let (status, retry_after) = rx.decide(seq, now);
    if let Some(log) = &rx.log {
        log.lock().push(Event {
            at: now,
            status: status.as_u16(),
        });
    }
    if let Some(secs) = retry_after {
        rx.refusals.fetch_add(1, Ordering::Relaxed);
        return (
            status,
            [(header::RETRY_AFTER, secs.to_string())],
            "slow down",
        )
            .into_response();
    }
    {
        let mut h = rx.hist.lock();
        let mut delivered = rx.delivered.lock();
        for v in &items {
            if let Some(t) = v["t"].as_i64() {
                let _ = h.record(((arrived_us - t).max(1) as u64).min(100_000_000));
            }
            if let Some(i) = v["i"].as_u64() {
                delivered.entry(i).or_insert(now);
            }
        }
    }
    {
        let mut span = rx.span.lock();
        let first = span.map_or(now, |(a, _)| a);
        *span = Some((first, now));
    }
    rx.count.fetch_add(items.len() as u64, Ordering::Relaxed);
    if let Answer::Slow { delay } = rx.answer {
        tokio::time::sleep(delay).await;
    }
    (status, "ok").into_response()
}

/// Requests answered 200 and 429 in each whole second after `started`, for `secs` seconds.
pub fn per_second(events: &[Event], started: Instant, secs: usize) -> (Vec<u64>, Vec<u64>) {
    let mut ok = vec![0; secs];
    let mut refused = vec![0; secs];
    for e in events {
        let Some(d) = e.at.checked_duration_since(started) else {
            continue;
        };
        let s = d.as_secs() as usize;
        if s >= secs {
            continue;
        }
        match e.status {
            200 => ok[s] += 1,
            429 => refused[s] += 1,
            _ => {}
        }
    }
    (ok, refused)
}
