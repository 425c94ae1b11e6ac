//! `sluice bench timers`: timer firing lateness at a receiver run by the bench on loopback
//! (the server must allow private targets). `--count` timers created over `--connections`
//! connections, all due at the same moment 3 s ahead (or spread at `--rate` per second).
//! Reports creations/s, firings/s and lateness (arrival minus due time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::api::{call, now_us, pad};
use super::args::BenchArgs;
use super::receivers::{delivery_report, print_delivery, Receiver};

pub async fn run(server: &str, json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    let server = server.trim_end_matches('/').to_string();
    let (sink, url) = Receiver::start().await?;
    let c = crate::cli::client::http_client()?;
    let n = args.count.unwrap_or(20_000);
    let started = Instant::now();
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
    let created_per_sec = (n as f64 / create_s).round();
    if now_us() > t0 {
        eprintln!(
            "warning: creating the timers took longer than the lead time; lateness is overstated"
        );
    }
    let errs = errors.load(Ordering::Relaxed);
    sink.wait_for(n - errs, started, 300.0).await;
    let mut extra = serde_json::Map::new();
    extra.insert("connections".into(), json!(args.connections));
    extra.insert("size".into(), json!(args.size));
    extra.insert("batch".into(), json!(1));
    extra.insert("created_per_sec".into(), json!(created_per_sec));
    extra.insert("latency".into(), json!("lateness: arrival minus due time"));
    print_delivery(
        &delivery_report(&sink, "timers", n, started, extra),
        json_out,
    )
}
