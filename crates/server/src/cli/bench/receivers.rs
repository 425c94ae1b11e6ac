//! The receivers the push and timer scenarios deliver to: small HTTP servers run inside the
//! bench process on loopback, so every figure is measured where a webhook endpoint would see
//! it. A receiver counts what arrives and records each message's lateness (arrival minus the
//! `"t"` its body carries) in a histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::Value;

use super::api::now_us;
use super::report::{fail_on_errors, new_hist};

pub struct Receiver {
    pub count: AtomicU64,
    pub hist: Mutex<Histogram<u64>>,
    pub first: Mutex<Option<Instant>>,
    pub last: Mutex<Option<Instant>>,
}

async fn receive(State(s): State<Arc<Receiver>>, body: Bytes) -> &'static str {
    let arrived = now_us();
    // One message, or a batch (a JSON array of them).
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(a)) => a,
        Ok(v) => vec![v],
        Err(_) => vec![Value::Null],
    };
    {
        let mut h = s.hist.lock();
        for v in &items {
            if let Some(t) = v["t"].as_i64() {
                let _ = h.record(((arrived - t).max(1) as u64).min(100_000_000));
            }
        }
    }
    let now = Instant::now();
    s.first.lock().get_or_insert(now);
    *s.last.lock() = Some(now);
    s.count.fetch_add(items.len() as u64, Ordering::Relaxed);
    "ok"
}

impl Receiver {
    /// Start a receiver on a free loopback port; returns it and its URL.
    pub async fn start() -> anyhow::Result<(Arc<Receiver>, String)> {
        let sink = Arc::new(Receiver {
            count: AtomicU64::new(0),
            hist: Mutex::new(new_hist()),
            first: Mutex::new(None),
            last: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(sink.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((sink, format!("http://{addr}/bench")))
    }

    /// Seconds from the first arrival to the last.
    pub fn span_s(&self) -> f64 {
        match (*self.first.lock(), *self.last.lock()) {
            (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Wait until `n` messages arrived, `max_s` passed since `started`, or nothing arrived for
    /// 30 s.
    pub async fn wait_for(&self, n: u64, started: Instant, max_s: f64) {
        let mut last = 0;
        let mut last_change = Instant::now();
        loop {
            let got = self.count.load(Ordering::Relaxed);
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
}

/// The report of a push or timers run, measured at `rx`: `n` messages were sent or
/// scheduled, `extra` adds the scenario's own fields.
pub fn delivery_report(
    rx: &Receiver,
    scenario: &str,
    n: u64,
    started: Instant,
    extra: serde_json::Map<String, Value>,
) -> Value {
    let got = rx.count.load(Ordering::Relaxed);
    let span = rx.span_s();
    let h = rx.hist.lock();
    let ms = |v: u64| (v as f64 / 10.0).round() / 100.0;
    let mut out = serde_json::json!({
        "scenario": scenario,
        "messages": got,
        "duration_s": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "msgs_per_sec": if span > 0.0 { (got as f64 / span).round() } else { 0.0 },
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
        "errors": n.saturating_sub(got),
    });
    if let Some(o) = out.as_object_mut() {
        o.extend(extra);
    }
    out
}

/// Print a push or timers report (the JSON object, or one line for people); an error when
/// messages went missing.
pub fn print_delivery(out: &Value, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        println!("{out}");
    } else {
        let f = |k: &str| out[k].as_f64().unwrap_or(0.0);
        println!(
            "{}: {} deliveries, {:.0} /s at the receiver{} | {} p50 {} ms p90 {} ms p99 {} ms max {} ms | missing {}",
            out["scenario"].as_str().unwrap_or_default(),
            out["messages"],
            f("msgs_per_sec"),
            out["created_per_sec"]
                .as_f64()
                .map(|c| format!(" ({c:.0} timers created /s)"))
                .unwrap_or_default(),
            out["latency"].as_str().unwrap_or_default(),
            f("p50_ms"),
            f("p90_ms"),
            f("p99_ms"),
            f("max_ms"),
            out["errors"],
        );
    }
    fail_on_errors(out)
}
