//! `peers`: drive another queue system the way `sluice bench` drives sluice, and print the same
//! JSON shape, so scripts/bench-peers can put them side by side.
//!
//!   peers --system redis --workload publish --connections 50 --size 100 --duration 10 \
//!         --url redis://127.0.0.1:6379 --json
//!
//! Workloads (closed loop unless --rate, one task and one connection per --connections):
//! - `publish`: one durable message per operation; wait for the durability ack before the next.
//! - `publish-batch`: --batch messages per operation in the system's batch form; wait for all acks.
//! - `receive-ack`: receive up to --batch messages, then ack them. The queue is prefilled first
//!   (for at most --prefill-seconds or --prefill messages, whichever comes first); the run ends at
//!   --duration or when the queue is empty, and the rate is taken up to the last message.
//!
//! Latency is per operation (one publish, one batch, one receive+ack), in an HDR histogram.
//! `--rate N` paces the operations to N messages a second (open loop), as `sluice bench --rate`
//! does, so a peer's latency can be read at the same rate as sluice's (the p99 at half the peak).

mod driver;
// `sluice bench --rate`'s own pacer, so that both generators pace alike.
#[path = "../../../crates/server/src/cli/bench/pacer.rs"]
mod pacer;
mod systems;

use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use serde_json::json;

use driver::{cpu_seconds, drive, Mode, System};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemName {
    Redis,
    Beanstalkd,
    Rabbitmq,
    Nats,
    Postgres,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Publish,
    PublishBatch,
    ReceiveAck,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Publish => "publish",
            Workload::PublishBatch => "publish-batch",
            Workload::ReceiveAck => "receive-ack",
        }
    }
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmark a peer queue system like `sluice bench` does sluice")]
pub struct Args {
    #[arg(long, value_enum)]
    pub system: SystemName,
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// Concurrent client tasks, each with its own connection.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Messages per operation for publish-batch and receive-ack.
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Server address (default: the system's standard port on 127.0.0.1). Forms:
    /// redis://127.0.0.1:6379, 127.0.0.1:11300 (beanstalkd), amqp://guest:guest@127.0.0.1:5672/%2f,
    /// nats://127.0.0.1:4222, postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long)]
    pub url: Option<String>,
    /// Most messages to prefill before receive-ack.
    #[arg(long, default_value_t = 2_000_000)]
    pub prefill: u64,
    /// Most seconds to spend prefilling before receive-ack (default: 3 x --duration, at least 5).
    #[arg(long)]
    pub prefill_seconds: Option<f64>,
    /// Parallel connections used for the prefill.
    #[arg(long, default_value_t = 8)]
    pub prefill_connections: usize,
    /// Keep the queue afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON object (the shape of `sluice bench --json`).
    #[arg(long)]
    pub json: bool,
    /// Threads the generator runs on; 1 (the default) is one event loop, as `sluice bench`.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Open loop: at most this many messages a second, evenly spread over the connections
    /// (the pacer of `sluice bench --rate`); each operation's latency counts from its actual
    /// start. 0 (the default): as fast as the answers come (closed loop).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
}

impl Args {
    pub fn url(&self) -> String {
        self.url.clone().unwrap_or_else(|| {
            match self.system {
                SystemName::Redis => "redis://127.0.0.1:6379",
                SystemName::Beanstalkd => "127.0.0.1:11300",
                SystemName::Rabbitmq => "amqp://guest:guest@127.0.0.1:5672/%2f",
                SystemName::Nats => "nats://127.0.0.1:4222",
                SystemName::Postgres => "postgres://postgres@127.0.0.1:5432/postgres",
            }
            .to_string()
        })
    }
    /// The queue / tube / stream / table name for this workload (each workload its own).
    pub fn queue(&self, sep: char) -> String {
        format!(
            "bench{sep}{}",
            self.workload.name().replace('-', &sep.to_string())
        )
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        rt.worker_threads(args.threads);
        rt
    };
    rt.enable_all().build()?.block_on(start(args))
}

async fn start(args: Args) -> anyhow::Result<()> {
    if args.connections == 0 || args.batch == 0 || args.batch > 1000 {
        bail!("--connections must be at least 1 and --batch between 1 and 1000");
    }
    match args.system {
        SystemName::Redis => run(systems::redis::Redis::new(&args)?, &args).await,
        SystemName::Beanstalkd => run(systems::beanstalkd::Beanstalkd::new(&args), &args).await,
        SystemName::Rabbitmq => run(systems::rabbitmq::Rabbitmq::new(&args), &args).await,
        SystemName::Nats => run(systems::nats::Nats::new(&args), &args).await,
        SystemName::Postgres => run(systems::postgres::Postgres::new(&args), &args).await,
    }
}

async fn run<S: System>(sys: S, args: &Args) -> anyhow::Result<()> {
    let system = args
        .system
        .to_possible_value()
        .expect("named")
        .get_name()
        .to_string();
    sys.prepare().await?;

    let mut prefilled = 0;
    let mut prefill_s = 0.0;
    if args.workload == Workload::ReceiveAck {
        let mut fillers = Vec::new();
        for i in 0..args.prefill_connections.max(1) {
            fillers.push(sys.worker(i, Mode::Fill).await?);
        }
        let budget = args
            .prefill_seconds
            .unwrap_or((args.duration * 3.0).max(5.0));
        let out = drive(
            fillers,
            Duration::from_secs_f64(budget),
            Some(args.prefill),
            None,
        )
        .await;
        if out.errors > 0 {
            bail!("prefill failed: {}", out.last_error.unwrap_or_default());
        }
        prefilled = out.messages;
        prefill_s = out.elapsed;
        sys.after_prefill().await?;
    }

    let mode = match args.workload {
        Workload::Publish => Mode::Publish(1),
        Workload::PublishBatch => Mode::Publish(args.batch),
        Workload::ReceiveAck => Mode::ReceiveAck(args.batch),
    };
    let mut workers = Vec::new();
    for i in 0..args.connections {
        workers.push(sys.worker(i, mode).await?);
    }
    let cpu0 = cpu_seconds();
    let per_op = match mode {
        Mode::Publish(n) | Mode::ReceiveAck(n) => n.max(1) as f64,
        Mode::Fill => 1.0,
    };
    let ops_per_sec = (args.rate > 0.0).then(|| args.rate / per_op);
    let out = drive(
        workers,
        Duration::from_secs_f64(args.duration),
        None,
        ops_per_sec,
    )
    .await;
    let cpu = cpu_seconds() - cpu0;
    if !args.keep {
        if let Err(e) = sys.cleanup().await {
            eprintln!("peers: cleanup of {system} failed: {e:#}");
        }
    }

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let cpu_pct = ((cpu / out.elapsed.max(1e-9) / cores) * 1000.0).round() / 10.0;
    let ms = |q: f64| out.hist.value_at_quantile(q) as f64 / 1000.0;
    let rate = if out.elapsed > 0.0 {
        (out.messages as f64 / out.elapsed).round()
    } else {
        0.0
    };
    let result = json!({
        "system": system,
        "scenario": args.workload.name(),
        "connections": args.connections,
        "size": args.size,
        "batch": if args.workload == Workload::Publish { 1 } else { args.batch },
        "messages": out.messages,
        "requests": out.requests,
        "duration_s": (out.elapsed * 1000.0).round() / 1000.0,
        "msgs_per_sec": rate,
        "rate_limit": (args.rate > 0.0).then_some(args.rate),
        "p50_ms": ms(0.50),
        "p90_ms": ms(0.90),
        "p99_ms": ms(0.99),
        "max_ms": out.hist.max() as f64 / 1000.0,
        "errors": out.errors,
        "client_cpu_pct": cpu_pct,
        // The same figure under sluice bench's name for it.
        "client_cpu_percent_of_machine": cpu_pct,
        "prefilled": prefilled,
        "prefill_s": (prefill_s * 1000.0).round() / 1000.0,
        "drained": out.drained,
        "last_error": out.last_error,
    });
    if args.json {
        println!("{result}");
    } else {
        println!(
            "{system} {}: {} msgs in {:.2} s = {rate:.0} msg/s | p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms max {:.2} ms | errors {} | client CPU {cpu_pct}% of machine{}",
            args.workload.name(),
            out.messages,
            out.elapsed,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            out.hist.max() as f64 / 1000.0,
            out.errors,
            if out.drained { " | queue drained before the deadline" } else { "" },
        );
        if let Some(e) = &out.last_error {
            println!("last error: {e}");
        }
    }
    Ok(())
}
