//! `sluice bench push` and `sluice bench timers`: scenarios measured at a receiver that the
//! bench itself runs on loopback (the server must allow private targets:
//! `sluice serve --allow-private-targets`).
//!
//! - push: a subscription to the receiver with `--connections` as its concurrency, then
//!   `--count` messages (or `--duration` seconds' worth at `--rate`) published in batches of
//!   1000. Reports deliveries/s at the receiver and publish-to-delivery latency.
//! - timers: `--count` timers created over `--connections` connections, all due at the same
//!   moment 3 s ahead (or spread at `--rate` per second). Reports creations/s, firings/s and
//!   lateness (arrival minus due time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::extract::State;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::bench::BenchArgs;

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

struct Sink {
    count: AtomicU64,
    hist: Mutex<Histogram<u64>>,
    first: Mutex<Option<Instant>>,
    last: Mutex<Option<Instant>>,
}

async fn receive(State(s): State<Arc<Sink>>, body: Bytes) -> &'static str {
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

async fn start_sink() -> anyhow::Result<(Arc<Sink>, String)> {
    let sink = Arc::new(Sink {
        count: AtomicU64::new(0),
        hist: Mutex::new(Histogram::new_with_bounds(1, 100_000_000, 3).expect("bounds")),
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

fn pad(size: usize) -> String {
    "x".repeat(size.saturating_sub(40))
}

async fn call(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: &Value,
) -> anyhow::Result<Value> {
    let r = c.request(method, &url).json(body).send().await?;
    let st = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !st.is_success() {
        bail!("{url}: {st} {v}");
    }
    Ok(v)
}

pub async fn run(
    server: &str,
    json_out: bool,
    args: BenchArgs,
    timers: bool,
) -> anyhow::Result<()> {
    let server = server.trim_end_matches('/').to_string();
    let (sink, url) = start_sink().await?;
    let c = super::client::http_client()?;
    let n = args.count.unwrap_or(if timers { 20_000 } else { 100_000 });
    let started = Instant::now();
    let mut created_per_sec = None;
    let scenario = if timers { "timers" } else { "push" };
    if !timers {
        let queue = args.queue.clone().unwrap_or_else(|| "bench-push".into());
        let _ = c.delete(format!("{server}/v1/queues/{queue}")).send().await;
        call(
            &c,
            reqwest::Method::PUT,
            format!("{server}/v1/queues/{queue}/subscriptions/bench"),
            &json!({"url": url, "concurrency": args.connections.min(1000), "timeout_seconds": 30,
                    "batch": {"max_messages": args.batch.clamp(1, 1000), "max_wait_ms": if args.batch > 1 { 50 } else { 0 }}}),
        )
        .await
        .context("creating the bench subscription")?;
        let body = pad(args.size);
        let mut sent = 0u64;
        while sent < n {
            let k = (n - sent).min(1000);
            let msgs: Vec<Value> = (0..k)
                .map(|_| json!({"body": json!({"t": now_us(), "p": body}).to_string()}))
                .collect();
            call(
                &c,
                reqwest::Method::POST,
                format!("{server}/v1/queues/{queue}/messages"),
                &json!({"messages": msgs}),
            )
            .await?;
            sent += k;
            if args.rate > 0 {
                let due = started + Duration::from_secs_f64(sent as f64 / args.rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
        }
        wait_for(&sink, n, started, 300.0).await;
        if !args.keep {
            let _ = c.delete(format!("{server}/v1/queues/{queue}")).send().await;
        }
    } else {
        let lead_ms = 3000 + (n / 5) as i64; // time to create them all first
        let t0 = now_us() + lead_ms * 1000;
        let next = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        let create_start = Instant::now();
        for _ in 0..args.connections.max(1) {
            let (c, next, errors, server, url) = (
                c.clone(),
                next.clone(),
                errors.clone(),
                server.clone(),
                url.clone(),
            );
            let rate = args.rate;
            let size = args.size;
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let due = if rate > 0 {
                        t0 + (i as i64 * 1_000_000) / rate as i64
                    } else {
                        t0
                    };
                    let at = chrono::DateTime::from_timestamp_micros(due)
                        .expect("time")
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                    let body = json!({"t": due, "p": pad(size)});
                    if call(
                        &c,
                        reqwest::Method::POST,
                        format!("{server}/v1/timers"),
                        &json!({"url": url, "at": at, "body": body}),
                    )
                    .await
                    .is_err()
                    {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let create_s = create_start.elapsed().as_secs_f64();
        created_per_sec = Some((n as f64 / create_s).round());
        if now_us() > t0 {
            eprintln!("warning: creating the timers took longer than the lead time; lateness is overstated");
        }
        let errs = errors.load(Ordering::Relaxed);
        wait_for(&sink, n - errs, started, 300.0).await;
    }
    let got = sink.count.load(Ordering::Relaxed);
    let span = match (*sink.first.lock(), *sink.last.lock()) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let h = sink.hist.lock();
    let ms = |q: f64| (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0;
    let out = json!({
        "scenario": scenario,
        "connections": args.connections,
        "size": args.size,
        "batch": if timers { 1 } else { args.batch },
        "messages": got,
        "duration_s": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "msgs_per_sec": if span > 0.0 { (got as f64 / span).round() } else { 0.0 },
        "created_per_sec": created_per_sec,
        "p50_ms": ms(0.5),
        "p90_ms": ms(0.9),
        "p99_ms": ms(0.99),
        "max_ms": (h.max() as f64 / 10.0).round() / 100.0,
        "errors": n.saturating_sub(got),
        "latency": if timers { "lateness: arrival minus due time" } else { "publish to delivery" },
    });
    if json_out {
        println!("{out}");
    } else {
        println!(
            "{scenario}: {got} deliveries, {} /s at the receiver{} | {} p50 {} ms p90 {} ms p99 {} ms max {} ms | missing {}",
            out["msgs_per_sec"],
            created_per_sec.map(|c| format!(" ({c} timers created /s)")).unwrap_or_default(),
            out["latency"].as_str().unwrap_or_default(),
            out["p50_ms"],
            out["p90_ms"],
            out["p99_ms"],
            out["max_ms"],
            out["errors"],
        );
    }
    Ok(())
}

async fn wait_for(sink: &Sink, n: u64, started: Instant, max_s: f64) {
    let mut last = 0;
    let mut last_change = Instant::now();
    loop {
        let got = sink.count.load(Ordering::Relaxed);
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
