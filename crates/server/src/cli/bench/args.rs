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
    /// Push deliveries to a receiver run by the bench (server needs --allow-private-targets);
    /// --receiver chooses how it answers (throughput, or a pacing scenario).
    Push,
    /// Timer firing lateness at a receiver run by the bench (--count timers due at once, or
    /// spread at --rate per second); --hosts 2 adds a slow second host.
    Timers,
    /// Fair queues: one group with --prefill ready messages (1,000,000), then --groups (100)
    /// small groups of --per-group (10); consumers receive and ack until every small group's
    /// message is out. Reports when the last one came out, and receive-ack throughput against
    /// the same backlog without groups.
    Fairness,
    /// The kill -9 report: a server of its own (and a redis-server with --storage redis)
    /// killed --cycles times under mixed load; what was acknowledged, found, duplicated or
    /// came back (`crash.rs`). Ignores --server.
    Crash,
}

impl Scenario {
    /// The scenario's name as typed on the command line (`publish-batch`).
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// How the receiver of `sluice bench push` answers. The pacing scenarios deliver one message
/// per request (no batches) and report against the targets of sluice's adaptive pacing.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiverKind {
    /// 200 at once: delivery throughput and publish-to-delivery latency.
    Normal,
    /// 429 Retry-After: 1 to the first delivery of one message in --refuse-every (10), 200 to
    /// the rest; subscription limit --rate-limit (300/s), --count 1,500 messages. Target: all
    /// delivered within 10 s, goodput >= 90% of the limit x the accepted share.
    Sporadic,
    /// Allows --allow requests/s (a token bucket, burst the same, starting full) and answers
    /// 429 Retry-After: 1 above; no subscription limit unless --rate-limit; runs --duration
    /// (20 s) on a backlog. Targets: 80% of --allow delivered per second within 10 s and held,
    /// fewer than 10% of requests refused from 10 s on.
    TokenBucket,
    /// One queue, two subscriptions: endpoint A answers 429 Retry-After: N to every request
    /// for the first --outage-seconds N (5), then 200; endpoint B always 200. Messages are
    /// published at --rate (200/s) for --duration (outage + 5 s). Targets: at most one probe
    /// reaches A during the outage, B's rate during the outage within 10% of its rate after.
    Outage,
}

impl ReceiverKind {
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
    /// Seconds to run (default 10; ignored with --count). push --receiver token-bucket: 20;
    /// push --receiver outage: seconds of publishing (default --outage-seconds + 5).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop after this many messages instead of after --duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// Messages per request (publish-batch) or per receive (receive-ack, roundtrip).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    #[arg(long, value_enum, default_value_t = Protocol::Http1)]
    pub protocol: Protocol,
    /// Threads the generator runs on. 1 (the default) is one event loop, as in redis-benchmark
    /// or each of wrk's threads: the generator shares the machine's cores with the server, and
    /// every hand-off between its own threads is a wake-up the server's threads wait behind.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub threads: u64,
    /// publish and publish-batch: requests each connection keeps in flight. HTTP/1.1 pipelines
    /// them (written together, answered in order); h2c sends them as concurrent streams. The
    /// figure a client that pipelines or multiplexes gets; latency is each group's round trip.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub pipeline: u64,
    /// Queue to use (default bench-SCENARIO); it is emptied before and deleted after.
    #[arg(long)]
    pub queue: Option<String>,
    /// Messages to load before receive-ack (default: enough for the run, at most 2,000,000).
    #[arg(long)]
    pub prefill: Option<u64>,
    /// Publish rate in messages per second for publish, publish-batch and roundtrip (0 = as
    /// fast as possible). Publish and publish-batch send evenly spread (a pacer thread with a
    /// 250 µs tick hands out each send's turn to whichever connection is free). Latency is
    /// measured from each request's actual send, so use a rate the server keeps up with (e.g.
    /// half the peak).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Keep the queue afterwards.
    #[arg(long)]
    pub keep: bool,
    /// push: how the bench's receiver answers.
    #[arg(long, value_enum, default_value_t = ReceiverKind::Normal)]
    pub receiver: ReceiverKind,
    /// push pacing scenarios: the subscription's rate_limit_per_second (sporadic: 300 unless
    /// given; token-bucket and outage: none unless given).
    #[arg(long)]
    pub rate_limit: Option<f64>,
    /// push --receiver sporadic: refuse the first delivery of one message in this many.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub refuse_every: u64,
    /// push --receiver token-bucket: requests per second the receiver accepts (its burst too).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub allow: u64,
    /// push --receiver outage: seconds during which endpoint A refuses everything (its
    /// Retry-After is this, rounded up).
    #[arg(long, default_value_t = 5.0)]
    pub outage_seconds: f64,
    /// push pacing scenarios and timers --hosts 2: stop waiting for deliveries this many
    /// seconds after the first publish (outage: after publishing ends; timers: after the due
    /// time) and report what was delivered by then.
    #[arg(long, default_value_t = 60.0)]
    pub give_up: f64,
    /// timers: 1 = one receiver; 2 = half the timers to a second, slow host (127.0.0.2), after
    /// a baseline run of the fast half alone.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub hosts: u8,
    /// timers: create --count timers due in a day and leave them pending (what a pending
    /// timer costs the server; `scripts/bench-core` reads its RSS around this).
    #[arg(long)]
    pub pending: bool,
    /// timers --hosts 2: the slow host answers after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub slow_ms: u64,
    /// publish, publish-batch, receive-ack (its prefill) and stream: give messages priorities
    /// 0-9 (in turn), to measure what priorities cost.
    #[arg(long)]
    pub priorities: bool,
    /// Spread messages over this many message groups (publish, publish-batch, receive-ack's
    /// prefill, stream: fair turns; 0: no groups). fairness: the number of small groups (100).
    #[arg(long)]
    pub groups: Option<u64>,
    /// receive-ack and stream: prefill with a unique deduplication id (idempotency key) per
    /// message, to measure what remembering keys costs.
    #[arg(long)]
    pub dedup_keys: bool,
    /// fairness: messages in each small group.
    #[arg(long, default_value_t = 10)]
    pub per_group: u64,
    /// crash: how many times the server is killed.
    #[arg(long, default_value_t = 20)]
    pub cycles: usize,
    /// crash: `embedded`, or `redis` (a redis-server started by the bench, with appendonly
    /// yes and appendfsync always; killed with the server).
    #[arg(long, default_value = "embedded")]
    pub storage: String,
}

impl BenchArgs {
    /// `--duration`, or `default` seconds.
    pub fn duration_or(&self, default: f64) -> f64 {
        self.duration.unwrap_or(default)
    }
}
