//! The receivers the push and timer scenarios deliver to: small HTTP servers run inside the
//! bench process on loopback, so every figure is measured where a webhook endpoint would see
//! it. A receiver answers as its [`Answer`] says (at once, refusing some deliveries with
//! `429 Retry-After`, slowly...), counts what it accepted and records each message's lateness
//! (arrival minus the `"t"` its body carries) in a histogram. Messages that carry a sequence
//! number (`"i"`, the pacing scenarios) are also tracked one by one, and every request can be
//! kept in a log of [`Event`]s for the scenario to analyse afterwards.
//!
//! A receiver shares the machine's cores with the server it measures, so it costs as little
//! as it can: hyper's HTTP/1.1 connection without a router, the body read into a typed item
//! (only `t` and `i`; the padding is skipped, not copied), one lock per request. With axum and
//! a `serde_json::Value` per body, the bench (its receiver and its publisher) took about a
//! third of the machine's CPU in `bench push`, 15% more per delivery than now (BENCHMARKS.md,
//! "Push: a leaner receiver in the bench").

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, Response, StatusCode};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde::Deserialize;
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

/// What the accepted messages showed, behind one lock.
struct Tally {
    /// Lateness (arrival minus the message's `t`), microseconds.
    hist: Histogram<u64>,
    /// The first and the last accepted message's arrival.
    span: Option<(Instant, Instant)>,
    /// When each sequence number was first accepted.
    delivered: HashMap<u64, Instant>,
}

/// What a receiver reads of a delivered message: the bench's bodies are `{"t": …, "i": …,
/// "p": "…"}`, and the padding is skipped unread.
#[derive(Deserialize, Default)]
struct Item {
    t: Option<i64>,
    i: Option<u64>,
}

/// A delivery's body: one message, or a batch (a JSON array of them). A body that is not
/// JSON is still a delivery, of one message without `t` or `i`; an array whose items are not
/// all objects is read item by item.
fn items(body: &[u8]) -> Vec<Item> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        if let Ok(v) = serde_json::from_slice::<Vec<Item>>(body) {
            return v;
        }
        if let Ok(v) = serde_json::from_slice::<Vec<Value>>(body) {
            return v
                .iter()
                .map(|v| Item {
                    t: v["t"].as_i64(),
                    i: v["i"].as_u64(),
                })
                .collect();
        }
    }
    vec![serde_json::from_slice::<Item>(body).unwrap_or_default()]
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
    tally: Mutex<Tally>,
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
            tally: Mutex::new(Tally {
                hist: new_hist(),
                span: None,
                delivered: HashMap::new(),
            }),
            refused: Mutex::new(HashSet::new()),
            bucket: Mutex::new((per_sec, Instant::now())),
            log: keep_log.then(|| Mutex::new(Vec::new())),
        });
        let serving = rx.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    // Out of descriptors, say: wait a little rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let rx = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let rx = rx.clone();
                            async move {
                                // A body cut short is no delivery (the sender retries it).
                                Ok::<_, Infallible>(match req.into_body().collect().await {
                                    Ok(body) => rx.receive(&body.to_bytes()).await,
                                    Err(_) => {
                                        plain_answer(StatusCode::BAD_REQUEST, "incomplete body")
                                    }
                                })
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
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
        self.tally.lock().delivered.len() as u64
    }

    /// When the last of sequence numbers `0..n` was first accepted, if all were.
    pub fn all_delivered_at(&self, n: u64) -> Option<Instant> {
        let t = self.tally.lock();
        let d = &t.delivered;
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
        match self.tally.lock().span {
            Some((a, b)) => (b - a).as_secs_f64(),
            None => 0.0,
        }
    }

    /// Accepted messages and their lateness: `messages`, `msgs_per_sec` (over the span from
    /// the first arrival to the last), `p50_ms`, `p90_ms`, `p99_ms`, `max_ms`.
    pub fn figures(&self) -> serde_json::Map<String, Value> {
        let got = self.count();
        let span = self.span_s();
        let t = self.tally.lock();
        let h = &t.hist;
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
        self.tally.lock().delivered.contains_key(&seq)
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

    /// Answer one delivery of `body` as [`Answer`] says, and count what it carried.
    async fn receive(&self, body: &Bytes) -> Response<Full<Bytes>> {
        let arrived_us = now_us();
        let now = Instant::now();
        let items = items(body);
        let (status, retry_after) = self.decide(items.first().and_then(|i| i.i), now);
        if let Some(log) = &self.log {
            log.lock().push(Event {
                at: now,
                status: status.as_u16(),
            });
        }
        if let Some(secs) = retry_after {
            self.refusals.fetch_add(1, Ordering::Relaxed);
            let mut r = plain_answer(status, "slow down");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return r;
        }
        {
            let mut t = self.tally.lock();
            let Tally {
                hist,
                span,
                delivered,
            } = &mut *t;
            for item in &items {
                if let Some(t) = item.t {
                    let _ = hist.record(((arrived_us - t).max(1) as u64).min(100_000_000));
                }
                if let Some(i) = item.i {
                    delivered.entry(i).or_insert(now);
                }
            }
            *span = Some((span.map_or(now, |(a, _)| a), now));
        }
        self.count.fetch_add(items.len() as u64, Ordering::Relaxed);
        if let Answer::Slow { delay } = self.answer {
            tokio::time::sleep(delay).await;
        }
        plain_answer(status, "ok")
    }
}

/// A plain-text answer.
fn plain_answer(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
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

#[cfg(test)]
mod tests {
    use super::items;

    fn read(body: &str) -> Vec<(Option<i64>, Option<u64>)> {
        items(body.as_bytes()).iter().map(|i| (i.t, i.i)).collect()
    }

    #[test]
    fn a_body_counts_as_the_messages_it_carries() {
        assert_eq!(read(r#"{"t": 5, "i": 7, "p": "xx"}"#), [(Some(5), Some(7))]);
        assert_eq!(
            read(r#" [{"t": 1, "p": "x"}, {"i": 2}]"#),
            [(Some(1), None), (None, Some(2))]
        );
        // Items that are not objects are read one by one, and still count.
        assert_eq!(
            read(r#"[{"t": 1}, "text", 3]"#),
            [(Some(1), None), (None, None), (None, None)]
        );
        assert_eq!(read("[]"), []);
        // Not JSON, or not the bench's shape: one message without t or i.
        assert_eq!(read("plain text"), [(None, None)]);
        assert_eq!(read(r#"{"t": "soon"}"#), [(None, None)]);
    }
}
