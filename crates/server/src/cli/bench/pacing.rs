//! What the three pacing scenarios of `sluice bench push` (`--receiver sporadic`,
//! `token-bucket`, `outage`) share: the subscription they create (one message per request,
//! `--connections` as its concurrency, an optional rate limit), setting up and removing their
//! queue, and the fields every pacing report starts with. Each scenario is its own file.

use serde_json::{json, Value};

use super::api::Api;
use super::args::BenchArgs;
use super::report::round;

/// A run's queue on the server, emptied before and deleted after (unless `--keep`).
pub struct Bench {
    pub api: Api,
    pub queue: String,
}

impl Bench {
    /// A fresh queue (`--queue`, or `bench-RECEIVER`) with one subscription per (name, URL).
    pub async fn setup(
        server: &str,
        args: &BenchArgs,
        rate_limit: Option<f64>,
        endpoints: &[(&str, &str)],
    ) -> anyhow::Result<Bench> {
        let api = Api::new(server)?;
        let queue = args
            .queue
            .clone()
            .unwrap_or_else(|| format!("bench-{}", args.receiver.name()));
        api.delete_queue(&queue).await;
        for (name, url) in endpoints {
            let sub = json!({
                "url": url,
                "concurrency": args.connections.clamp(1, 1000),
                "timeout_seconds": 30,
                "rate_limit_per_second": rate_limit,
                "batch": {"max_messages": 1},
            });
            api.subscribe(&queue, name, &sub).await?;
        }
        Ok(Bench { api, queue })
    }

    /// The server's counters of subscription `name` (read before the queue goes).
    pub async fn stats(&self, name: &str) -> Value {
        self.api.subscription_stats(&self.queue, name).await
    }

    /// Delete the queue, which also stops its deliveries (unless `--keep`).
    pub async fn finish(&self, args: &BenchArgs) {
        if !args.keep {
            self.api.delete_queue(&self.queue).await;
        }
    }
}

/// The fields every pacing report starts with.
pub fn head(args: &BenchArgs, rate_limit: Option<f64>) -> Value {
    json!({
        "scenario": "push",
        "receiver": args.receiver.name(),
        "connections": args.connections,
        "size": args.size,
        "batch": 1,
        "rate_limit_per_second": rate_limit,
    })
}

/// Seconds with three decimals.
pub fn secs(d: std::time::Duration) -> f64 {
    round(d.as_secs_f64(), 3)
}

/// A rate limit for people: `300/s`, or `none`.
pub fn limit_text(rate_limit: Option<f64>) -> String {
    rate_limit.map_or("none".into(), |r| format!("{r}/s"))
}

/// The server's subscription counters on one line.
pub fn server_line(name: &str, stats: &Value) -> String {
    let rate = stats["current_rate_limit"]
        .as_f64()
        .map_or("none".into(), |r| format!("{r:.1}/s"));
    format!(
        "  server's counters for {name}: delivered {}, retried {}, throttled {}, failed {}, adaptive rate limit now {rate}",
        stats["delivered"], stats["retried"], stats["throttled"], stats["failed"]
    )
}
