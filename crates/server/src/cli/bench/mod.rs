//! `sluice bench`: the built-in load generator (like `nats bench` or `redis-benchmark`).
//! The JSON output (`--json`) is what scripts and BENCHMARKS.md read.
//!
//! This file only dispatches; dependencies go one way, downward:
//!
//! ```text
//! mod.rs ──► queue.rs (publish, receive-ack, roundtrip, stream) ──► turns.rs (a worker's requests)
//!              queue.rs, turns.rs ──► conn.rs (raw HTTP/1.1, h2c)
//!        ──► push.rs (throughput), timers.rs (burst, two hosts)
//!        ──► fairness.rs (fair queues: a big group and many small ones) ──► queue.rs (prefill),
//!              turns.rs (bodies)
//!        ──► sporadic.rs, token_bucket.rs, outage.rs (push pacing) ──► pacing.rs (their setup)
//!              all of these ──► receivers.rs (in-process webhook receivers), api.rs (setup calls)
//!        ──► crash.rs (the kill -9 report: its own server, killed under load) ──► crash_load.rs
//!        every file ──► args.rs (the command line), report.rs (figures, output, exit status)
//! ```

mod api;
mod args;
mod conn;
mod crash;
mod crash_load;
mod fairness;
mod outage;
mod pacer;
mod pacing;
mod push;
mod queue;
mod receivers;
mod report;
mod sporadic;
mod timers;
mod token_bucket;
mod turns;

use anyhow::{bail, Context};

pub use args::{BenchArgs, Protocol, ReceiverKind, Scenario};

pub async fn run(servers: &str, json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    // Several nodes (`--server http://a,http://b`): the queue scenarios spread their
    // connections round-robin over them; everything is set up through the first.
    let nodes: Vec<&str> = servers.split(',').filter(|s| !s.is_empty()).collect();
    let server = *nodes.first().context("--server names no server")?;
    if args.connections == 0 || args.batch == 0 || args.batch > 1000 {
        bail!("--connections must be at least 1 and --batch between 1 and 1000");
    }
    match args.scenario {
        Scenario::Crash => crash::run(json_out, args).await,
        Scenario::Push => match args.receiver {
            ReceiverKind::Normal => push::run(server, json_out, args).await,
            ReceiverKind::Sporadic => sporadic::run(server, json_out, args).await,
            ReceiverKind::TokenBucket => token_bucket::run(server, json_out, args).await,
            ReceiverKind::Outage => outage::run(server, json_out, args).await,
        },
        Scenario::Timers => timers::run(server, json_out, args).await,
        Scenario::Fairness => fairness::run(server, json_out, args).await,
        _ => queue::run(&nodes, json_out, args).await,
    }
}
