//! `sluice bench push` (`--receiver normal`, the default): push throughput and latency at a
//! receiver run by the bench on loopback that answers 200 at once (the server must allow
//! private targets: `sluice serve --allow-private-targets`). A subscription to the receiver
//! with `--connections` as its concurrency and `--batch` messages per request, then `--count`
//! messages (or `--duration` seconds' worth at `--rate`) published in batches of 1000.
//! Reports deliveries/s at the receiver and publish-to-delivery latency. The pacing scenarios
//! (`--receiver sporadic|token-bucket|outage`) are in their own files.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::api::{message_body, now_us, Api};
use super::args::BenchArgs;
use super::receivers::{Answer, Receiver};
use super::report::{delivery_line, extend, fail_on_errors, print, round};

pub async fn run(server: &str, json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    let api = Api::new(server)?;
    let rx = Receiver::start("127.0.0.1", Answer::Accept, false).await?;
    let n = args.count.unwrap_or(100_000);
    let started = Instant::now();
    let queue = args.queue.clone().unwrap_or_else(|| "bench-push".into());
    api.delete_queue(&queue).await;
    let batch = args.batch.clamp(1, 1000);
    let sub = json!({"url": rx.url, "concurrency": args.connections.min(1000), "timeout_seconds": 30,
        "batch": {"max_messages": batch, "max_wait_ms": if batch > 1 { 50 } else { 0 }}});
    api.subscribe(&queue, "bench", &sub).await?;
    let mut sent = 0u64;
    while sent < n {
        let k = (n - sent).min(1000);
        let bodies = (0..k)
            .map(|_| message_body(now_us(), None, args.size))
            .collect();
        api.publish(&queue, bodies).await?;
        sent += k;
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64(sent as f64 / args.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
    }
    rx.wait_for(n, started, 300.0).await;
    if !args.keep {
        api.delete_queue(&queue).await;
    }
    let mut out = json!({
        "scenario": "push",
        "receiver": "normal",
        "connections": args.connections,
        "size": args.size,
        "batch": args.batch,
        "duration_s": round(started.elapsed().as_secs_f64(), 3),
        "created_per_sec": Value::Null,
        "latency": "publish to delivery",
        "errors": n.saturating_sub(rx.count()),
    });
    extend(&mut out, rx.figures());
    print(&out, json_out, &[delivery_line(&out)]);
    fail_on_errors(&out)
}
