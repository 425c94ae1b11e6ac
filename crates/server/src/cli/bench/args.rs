//! The command line of `sluice bench`: which scenario to run and how hard. Every scenario
//! module reads its settings from [`BenchArgs`]; this file depends on nothing else in `bench`.

use clap::{Args, ValueEnum};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// One message per request.
    Publish,
    /// `--batch` messages per request.
    PublishBatch,
    /// Receive up to `--batch` messages, ack them (prefills the queue first).
    ReceiveAck,
    /// Publish-to-receive latency: half the connections publish, half long-poll and ack.
    Roundtrip,
    /// Streaming consumers (HTTP/2 duplex) with `--batch` as prefetch, acking each message
    /// (prefills the queue first).
    Stream,
    /// Push deliveries to a receiver run by the bench (server needs --allow-private-targets).
    Push,
    /// Timer firing lateness at a receiver run by the bench (--count timers due at once, or
    /// spread at --rate per second).
    Timers,
}

impl Scenario {
    /// The scenario's name as typed on the command line (`publish-batch`).
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    pub scenario: Scenario,
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Seconds to run (ignored with --count).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many messages instead of after --duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// Messages per request (publish-batch) or per receive (receive-ack, roundtrip).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    #[arg(long, value_enum, default_value_t = Protocol::Http1)]
    pub protocol: Protocol,
    /// Queue to use (default bench-SCENARIO); it is emptied before and deleted after.
    #[arg(long)]
    pub queue: Option<String>,
    /// Messages to load before receive-ack (default: enough for the run, at most 2,000,000).
    #[arg(long)]
    pub prefill: Option<u64>,
    /// Publish rate in messages per second, spread evenly over the connections, for publish,
    /// publish-batch and roundtrip (0 = as fast as possible). Latency is measured from each
    /// request's actual send, so use a rate the server keeps up with (e.g. half the peak).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Keep the queue afterwards.
    #[arg(long)]
    pub keep: bool,
}
