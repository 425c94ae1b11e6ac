//! The `sluice` binary: `serve` runs the server; the other commands are clients of a server.

use clap::{Parser, Subcommand};
use sluice::{cli, config, server};

// mimalloc: the request path allocates many small short-lived buffers; glibc malloc showed up at
// ~10% of a publish profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Durable queues, webhooks and schedules over HTTP, in one binary."
)]
struct Cli {
    #[command(flatten)]
    client: cli::ClientOpts,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server. A flag given twice takes its last value.
    #[command(args_override_self = true)]
    Serve(Box<config::ServeArgs>),
    /// Manage queues.
    #[command(subcommand)]
    Queue(cli::QueueCmd),
    /// Publish a message (or stdin lines) to a queue.
    Send(cli::SendArgs),
    /// Receive messages from a queue.
    Recv(cli::RecvArgs),
    /// Acknowledge received messages by receipt.
    Ack(cli::AckArgs),
    /// Stream a queue to stdout, one JSON line per message (HTTP/2 streaming consumer).
    Tail(cli::TailArgs),
    /// Load generator: measure msgs/s and latency of a scenario against a server.
    Bench(cli::bench::BenchArgs),
    /// Ingest a file into a queue through the server's ingestion pipeline (progress bar).
    Ingest(cli::ingest::IngestArgs),
    /// A webhook receiver for demos and tests: records each request as a JSON line.
    Sink(cli::sink::SinkArgs),
}

/// The forwarder seed's Go-style single-dash flags (`-post-endpoint URL`, `-batch-size 10`,
/// `-batch-interval 10s`, `-http :8080`) are accepted as their two-dash forms.
fn seed_flags(args: impl Iterator<Item = String>) -> Vec<String> {
    const SEED: [&str; 4] = ["-post-endpoint", "-batch-size", "-batch-interval", "-http"];
    args.map(|a| {
        let name = a.split('=').next().unwrap_or_default();
        if SEED.contains(&name) {
            format!("-{a}")
        } else {
            a
        }
    })
    .collect()
}

fn main() {
    let cli = Cli::parse_from(seed_flags(std::env::args()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Serve(args) => server::run(config::ServeConfig::resolve(*args)?).await,
            Cmd::Queue(c) => cli::queue(&cli.client, c).await,
            Cmd::Send(a) => cli::send(&cli.client, a).await,
            Cmd::Recv(a) => cli::recv(&cli.client, a).await,
            Cmd::Ack(a) => cli::ack(&cli.client, a).await,
            Cmd::Tail(a) => cli::tail(&cli.client, a).await,
            Cmd::Bench(a) => cli::bench::run(&cli.client.server, cli.client.json, a).await,
            Cmd::Sink(a) => cli::sink::run(a).await,
            Cmd::Ingest(a) => cli::ingest::run(&cli.client, a).await,
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seed_single_dash_flags() {
        let got = super::seed_flags(
            [
                "sluice",
                "serve",
                "-post-endpoint",
                "http://x",
                "-batch-size=5",
                "-h",
                "--listen",
            ]
            .into_iter()
            .map(String::from),
        );
        assert_eq!(
            got,
            vec![
                "sluice",
                "serve",
                "--post-endpoint",
                "http://x",
                "--batch-size=5",
                "-h",
                "--listen"
            ]
        );
    }
}
