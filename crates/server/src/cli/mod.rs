//! Client commands of the `sluice` binary: they talk to a server's native API over HTTP and
//! print tables for people and JSON (`--json`) for scripts. Each command group has its file:
//! `queue.rs` (queues), `publish.rs` (send), `consume.rs` (recv, peek, ack, nack, redrive),
//! `tail.rs` (streaming), `subs.rs` (push subscriptions), `timers.rs` (timers and cron
//! schedules), `shell.rs` (completions and the man page); `output.rs` and `client.rs` are what
//! they share. `bench/`, `ingest.rs` and `sink.rs` are the load generator, the file uploader and
//! the demo webhook receiver.
//!
//! The client flags (`--server`, `--json`) belong to the client commands only, so `serve
//! --help` does not list them; they may come anywhere after the command's name.

pub mod bench;
pub mod client;
mod consume;
pub mod ingest;
mod output;
mod publish;
mod queue;
pub mod shell;
pub mod sink;
pub mod stream_client;
mod subs;
mod tail;
mod timers;

use clap::{Args, Subcommand};

pub use output::is_broken_pipe;

/// Where the server is and how to print: every client command takes these.
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Server to talk to: a URL, or HOST:PORT (http:// is assumed). `sluice bench` also takes
    /// several, comma-separated (nodes sharing one Redis): its connections go round-robin.
    #[arg(
        long,
        env = "SLUICE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true,
        value_name = "URL"
    )]
    pub server: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ClientOpts {
    /// `--server` with a scheme: `localhost:8080` means `http://localhost:8080`. With several
    /// servers (bench), each one.
    pub fn server_url(&self) -> String {
        self.server
            .split(',')
            .map(client::with_scheme)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The client commands, as `sluice COMMAND ...`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage queues: create (or reconfigure), list, stats, purge, delete.
    Queue(queue::QueueArgs),
    /// Publish a message (or one per stdin line) to a queue.
    Send(publish::SendArgs),
    /// Receive messages from a queue, with a lease.
    Recv(consume::RecvArgs),
    /// Look at a queue's messages without receiving them.
    Peek(consume::PeekArgs),
    /// Acknowledge (delete) received messages by receipt.
    Ack(consume::AckArgs),
    /// Give received messages back (visible again now, or after --delay).
    Nack(consume::NackArgs),
    /// Move dead letters back to their source queue (all, some, or chosen ids).
    Redrive(consume::RedriveArgs),
    /// Stream a queue to stdout, one JSON line per message (HTTP/2 streaming consumer);
    /// reconnects when the server restarts.
    Tail(tail::TailArgs),
    /// Push subscriptions of a queue: list, create (or replace), get, delete, attempts.
    Sub(subs::SubArgs),
    /// One-shot timers: call a URL (or publish to a queue) later.
    Timer(timers::TimerArgs),
    /// Cron schedules: call a URL (or publish to a queue) on a schedule.
    Schedule(timers::ScheduleArgs),
    /// Load generator: measure msgs/s and latency of a scenario against a server.
    Bench(BenchCmd),
    /// Ingest a file into a queue through the server's ingestion pipeline (progress bar).
    Ingest(ingest::IngestArgs),
}

/// `sluice bench`: its scenario flags plus the client flags.
#[derive(Args, Debug)]
pub struct BenchCmd {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(flatten)]
    pub args: bench::BenchArgs,
}

/// Run one client command.
pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Queue(a) => queue::run(a).await,
        Command::Send(a) => publish::send(a).await,
        Command::Recv(a) => consume::recv(a).await,
        Command::Peek(a) => consume::peek(a).await,
        Command::Ack(a) => consume::ack(a).await,
        Command::Nack(a) => consume::nack(a).await,
        Command::Redrive(a) => consume::redrive(a).await,
        Command::Tail(a) => tail::run(a).await,
        Command::Sub(a) => subs::run(a).await,
        Command::Timer(a) => timers::timer(a).await,
        Command::Schedule(a) => timers::schedule(a).await,
        Command::Bench(b) => bench::run(&b.client.server_url(), b.client.json, b.args).await,
        Command::Ingest(a) => ingest::run(a).await,
    }
}
