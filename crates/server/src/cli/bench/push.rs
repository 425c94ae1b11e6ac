//! `sluice bench push`: push deliveries to a receiver run by the bench on loopback (the
//! server must allow private targets: `sluice serve --allow-private-targets`). A subscription
//! to the receiver with `--connections` as its concurrency, then `--count` messages (or
//! `--duration` seconds' worth at `--rate`) published in batches of 1000. Reports deliveries/s
//! at the receiver and publish-to-delivery latency.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use super::api::{call, now_us, pad};
use super::args::BenchArgs;
use super::receivers::{delivery_report, print_delivery, Receiver};

pub async fn run(server: &str, json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    let server = server.trim_end_matches('/').to_string();
    let (sink, url) = Receiver::start().await?;
    let c = crate::cli::client::http_client()?;
    let n = args.count.unwrap_or(100_000);
    let started = Instant::now();
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
    sink.wait_for(n, started, 300.0).await;
    if !args.keep {
        let _ = c.delete(format!("{server}/v1/queues/{queue}")).send().await;
    }
    let mut extra = serde_json::Map::new();
    extra.insert("connections".into(), json!(args.connections));
    extra.insert("size".into(), json!(args.size));
    extra.insert("batch".into(), json!(args.batch));
    extra.insert("created_per_sec".into(), Value::Null);
    extra.insert("latency".into(), json!("publish to delivery"));
    print_delivery(&delivery_report(&sink, "push", n, started, extra), json_out)
}
