//! The queue scenarios of `sluice bench`: publish, publish-batch, receive-ack, roundtrip and
//! stream. Each `--connections` is one [`Conn`] driven by its own task in a closed loop (or at
//! `--rate`); latencies go into an HDR histogram. The generator runs on the same cores as the
//! server, so it adds as little CPU as it can, and reports its own CPU share so a run can show
//! it was not the bottleneck.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::args::{BenchArgs, Protocol, Scenario};
use super::conn::Conn;
use super::pacer::Pacer;
use super::report::{cpu_seconds, fail_on_errors, new_hist};
use super::turns::{message_json, publish, publish_pipelined, receive_ack, roundtrip_consume};
use crate::cli::stream_client::StreamClient;

struct Shared {
    messages: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
    hist: Mutex<Histogram<u64>>,
    last_error: Mutex<Option<String>>,
    /// Each paced publish's turn (`--rate`).
    pacer: Option<Pacer>,
}

impl Shared {
    fn record(&self, local: &mut Histogram<u64>) {
        self.hist.lock().add(&*local).expect("same bounds");
        local.reset();
    }
    fn fail(&self, e: anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(format!("{e:#}"));
    }
}

/// Run one of the queue scenarios with its connections spread round-robin over `nodes` (the
/// queue is set up through the first).
pub async fn run(nodes: &[&str], json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    let server = nodes[0];
    let queue = args
        .queue
        .clone()
        .unwrap_or_else(|| format!("bench-{}", args.scenario.name()));
    if args.pipeline > 1 && !matches!(args.scenario, Scenario::Publish | Scenario::PublishBatch) {
        bail!("--pipeline applies to publish and publish-batch only");
    }
    let mut admin = Conn::open(server, Protocol::Http1).await?;
    fresh_queue(&mut admin, &queue).await?;
    if matches!(args.scenario, Scenario::ReceiveAck | Scenario::Stream) {
        let n = args
            .prefill
            .unwrap_or_else(|| args.count.unwrap_or(2_000_000).min(2_000_000));
        prefill(server, &queue, n, &args).await?;
    }

    let started = Instant::now();
    // --rate for publishers: requests a second, each carrying batch × pipeline messages,
    // counted from `started` (a ceiling: never more turns than rate × elapsed).
    let per_request = match args.scenario {
        Scenario::Publish => args.pipeline.max(1),
        Scenario::PublishBatch => args.pipeline.max(1) * args.batch as u64,
        _ => 0,
    };
    let pacer = (args.rate > 0 && per_request > 0)
        .then(|| Pacer::start(args.rate as f64 / per_request as f64));
    let shared = Arc::new(Shared {
        messages: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        hist: Mutex::new(new_hist()),
        last_error: Mutex::new(None),
        pacer,
    });
    let cpu_start = cpu_seconds();
    let tasks = spawn_workers(nodes, &queue, &args, &shared, started).await?;
    watch(&args, &shared, &tasks, started, json_out).await;
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(p) = &shared.pacer {
        p.stop();
    }
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    let cpu = cpu_seconds() - cpu_start;
    if !args.keep {
        let _ = admin
            .call("DELETE", &format!("/v1/queues/{queue}"), Bytes::new())
            .await;
    }
    report(&args, &shared, elapsed, cpu, json_out)
}

/// One task per `--connections`, spread round-robin over `nodes`: stream consumers for
/// `stream`, otherwise the closed-loop worker in the scenario's role.
async fn spawn_workers(
    nodes: &[&str],
    queue: &str,
    args: &BenchArgs,
    shared: &Arc<Shared>,
    started: Instant,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    if args.scenario == Scenario::Stream {
        for i in 0..args.connections {
            let node = nodes[i % nodes.len()];
            let c = StreamClient::open(node, queue, args.batch).await?;
            tasks.push(tokio::spawn(stream_worker(c, shared.clone())));
        }
    }
    for i in 0..args.connections {
        let role = match args.scenario {
            Scenario::Stream
            | Scenario::Push
            | Scenario::Timers
            | Scenario::Crash
            | Scenario::Fairness => break,
            Scenario::Roundtrip if i % 2 == 1 => Role::RoundtripConsumer,
            Scenario::Roundtrip => Role::RoundtripPublisher,
            Scenario::Publish => Role::Publish(1),
            Scenario::PublishBatch => Role::Publish(args.batch),
            Scenario::ReceiveAck => Role::ReceiveAck,
        };
        let conn = Conn::open(nodes[i % nodes.len()], args.protocol).await?;
        let publishers = args.connections.div_ceil(2).max(1) as u64;
        tasks.push(tokio::spawn(worker(
            conn,
            role,
            queue.to_string(),
            args.clone(),
            shared.clone(),
            started,
            publishers,
        )));
    }
    Ok(tasks)
}

/// Wait, showing progress on a terminal, until the run is over: `--count` messages (or as
/// many failed requests), the `--duration`, or every worker gone.
async fn watch(
    args: &BenchArgs,
    shared: &Shared,
    tasks: &[tokio::task::JoinHandle<()>],
    started: Instant,
    json_out: bool,
) {
    let bar = if !json_out && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = indicatif::ProgressBar::new(
            args.count.unwrap_or((args.duration_or(10.0) * 10.0) as u64),
        );
        b.set_style(indicatif::ProgressStyle::with_template("{bar:40} {msg}").expect("template"));
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let deadline = started + Duration::from_secs_f64(args.duration_or(10.0));
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = shared.messages.load(Ordering::Relaxed);
        let el = started.elapsed().as_secs_f64();
        bar.set_message(format!(
            "{n} msgs, {:.0} msg/s, {} errors",
            n as f64 / el,
            shared.errors.load(Ordering::Relaxed)
        ));
        let done = match args.count {
            // As many failed requests as messages wanted also ends the run: a server that
            // refuses everything would otherwise keep a counted run going forever.
            Some(c) => {
                bar.set_position(n.min(c));
                n >= c || shared.errors.load(Ordering::Relaxed) >= c
            }
            None => {
                bar.set_position((el * 10.0) as u64);
                Instant::now() >= deadline
            }
        };
        if done || tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    bar.finish_and_clear();
}

/// The run's figures, as one JSON object (`--json`) or one line; an error when any request
/// failed.
fn report(
    args: &BenchArgs,
    shared: &Shared,
    elapsed: f64,
    cpu: f64,
    json_out: bool,
) -> anyhow::Result<()> {
    let scenario_name = args.scenario.name();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let h = shared.hist.lock();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let messages = shared.messages.load(Ordering::Relaxed);
    let out = json!({
        "scenario": scenario_name,
        "protocol": match args.protocol { Protocol::Http1 => "http1", Protocol::Http2 => "h2c" },
        "connections": args.connections,
        "size": args.size,
        "batch": if matches!(args.scenario, Scenario::Publish) { 1 } else { args.batch },
        "pipeline": args.pipeline,
        "threads": args.threads,
        "messages": messages,
        "requests": shared.requests.load(Ordering::Relaxed),
        "duration_s": (elapsed * 1000.0).round() / 1000.0,
        "msgs_per_sec": (messages as f64 / elapsed).round(),
        "p50_ms": ms(0.50),
        "p90_ms": ms(0.90),
        "p99_ms": ms(0.99),
        "max_ms": h.max() as f64 / 1000.0,
        "errors": shared.errors.load(Ordering::Relaxed),
        "client_cpu_percent_of_machine": ((cpu / elapsed / cores) * 1000.0).round() / 10.0,
        "last_error": *shared.last_error.lock(),
    });
    if json_out {
        println!("{out}");
    } else {
        println!(
            "{scenario_name}: {messages} msgs in {elapsed:.2} s = {:.0} msg/s | latency p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms max {:.2} ms | errors {} | bench client used {:.1}% of the machine's CPU",
            out["msgs_per_sec"].as_f64().unwrap_or(0.0),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            h.max() as f64 / 1000.0,
            out["errors"],
            out["client_cpu_percent_of_machine"].as_f64().unwrap_or(0.0),
        );
    }
    fail_on_errors(&out)
}

/// Delete `queue` if it exists and create it again, empty, with 5-minute leases (a run's
/// messages are acked well within them).
pub(super) async fn fresh_queue(admin: &mut Conn, queue: &str) -> anyhow::Result<()> {
    let _ = admin
        .call("DELETE", &format!("/v1/queues/{queue}"), Bytes::new())
        .await;
    admin
        .json(
            "PUT",
            &format!("/v1/queues/{queue}"),
            &json!({"visibility_timeout_seconds": 300}),
        )
        .await?;
    Ok(())
}

/// Load `n` messages (built by [`message_json`]) in batches of 1,000 over 8 connections.
pub(super) async fn prefill(
    server: &str,
    queue: &str,
    n: u64,
    args: &BenchArgs,
) -> anyhow::Result<()> {
    let per_conn = 8u64;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..per_conn {
        let mut c = Conn::open(server, Protocol::Http1).await?;
        let next = next.clone();
        let queue = queue.to_string();
        let args = args.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(1000, Ordering::Relaxed);
                if start >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let k = (n - start).min(1000);
                let msgs: Vec<Value> = (0..k)
                    .map(|i| {
                        let mut m = message_json(&args, start + i);
                        if args.dedup_keys {
                            m["deduplication_id"] = json!(format!("key-{:020}", start + i));
                        }
                        m
                    })
                    .collect();
                c.json(
                    "POST",
                    &format!("/v1/queues/{queue}/messages"),
                    &json!({"messages": msgs}),
                )
                .await?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| anyhow!("prefill task: {e}"))??;
    }
    Ok(())
}

/// A streaming consumer: ack every message as it arrives; latency is the ack's round trip.
async fn stream_worker(mut c: StreamClient, shared: Arc<Shared>) {
    let mut local = new_hist();
    let mut sent: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let frame = match tokio::time::timeout(Duration::from_millis(500), c.next()).await {
            Err(_) => continue,
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                shared.fail(e);
                break;
            }
        };
        match frame["type"].as_str() {
            Some("message") => {
                let receipt = frame["receipt"].as_str().unwrap_or_default().to_string();
                sent.insert(receipt.clone(), Instant::now());
                if let Err(e) = c.send(&json!({"type": "ack", "receipt": receipt})).await {
                    shared.fail(e);
                    break;
                }
            }
            Some("acked") => {
                if let Some(t0) = frame["receipt"].as_str().and_then(|r| sent.remove(r)) {
                    let _ = local.record((t0.elapsed().as_micros() as u64).max(1));
                }
                shared.messages.fetch_add(1, Ordering::Relaxed);
                shared.requests.fetch_add(1, Ordering::Relaxed);
            }
            Some("error") => shared.fail(anyhow!("{}", frame["message"])),
            _ => {}
        }
        if local.len() >= 1000 {
            shared.record(&mut local);
        }
    }
    shared.record(&mut local);
}

#[derive(Clone, Copy)]
enum Role {
    Publish(usize),
    ReceiveAck,
    RoundtripPublisher,
    RoundtripConsumer,
}

async fn worker(
    mut conn: Conn,
    role: Role,
    queue: String,
    args: BenchArgs,
    shared: Arc<Shared>,
    started: Instant,
    publishers: u64,
) {
    let mut local = new_hist();
    let mut seq = 0u64;
    let pub_path = format!("/v1/queues/{queue}/messages");
    let recv_path = format!("/v1/queues/{queue}/receive");
    let ack_path = format!("/v1/queues/{queue}/ack");
    let per_publisher_interval = if args.rate > 0 {
        Some(Duration::from_secs_f64(
            publishers as f64 / args.rate as f64,
        ))
    } else {
        None
    };
    while !shared.stop.load(Ordering::Relaxed) {
        // Paced publishers (--rate) wait for their turn; the latency counts from the send.
        if let (Role::Publish(_), Some(p)) = (role, &shared.pacer) {
            if !p.turn().await || shared.stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let t0 = Instant::now();
        let result: anyhow::Result<u64> = match role {
            Role::Publish(n) if args.pipeline > 1 => {
                publish_pipelined(&mut conn, &pub_path, &args, n, &mut seq).await
            }
            Role::Publish(n) => publish(&mut conn, &pub_path, &args, n, &mut seq).await,
            Role::ReceiveAck => {
                let got = receive_ack(&mut conn, &recv_path, &ack_path, args.batch).await;
                if matches!(got, Ok(None)) {
                    // The queue is empty: the run is over.
                    shared.stop.store(true, Ordering::Relaxed);
                }
                got.map(|acked| acked.unwrap_or(0))
            }
            Role::RoundtripPublisher => {
                if let Some(iv) = per_publisher_interval {
                    tokio::time::sleep(iv).await;
                }
                let sent_us = started.elapsed().as_micros() as u64;
                let mut body = format!("{sent_us:020}");
                while body.len() < args.size {
                    body.push('x');
                }
                conn.json("POST", &pub_path, &json!({"body": body}))
                    .await
                    .map(|_| 0)
            }
            Role::RoundtripConsumer => {
                let paths = (recv_path.as_str(), ack_path.as_str());
                roundtrip_consume(&mut conn, paths, args.batch, started, &mut local).await
            }
        };
        let requests = if matches!(role, Role::Publish(_)) {
            args.pipeline
        } else {
            1
        };
        shared.requests.fetch_add(requests, Ordering::Relaxed);
        match result {
            Ok(n) => {
                shared.messages.fetch_add(n, Ordering::Relaxed);
                if !matches!(role, Role::RoundtripConsumer | Role::RoundtripPublisher) {
                    let _ = local.record((t0.elapsed().as_micros() as u64).max(1));
                }
            }
            Err(e) => {
                shared.fail(e);
                // Reconnect after a failure (the server may have closed the connection).
                tokio::time::sleep(Duration::from_millis(50)).await;
                match Conn::open(&format!("http://{}", conn.authority), args.protocol).await {
                    Ok(c) => conn = c,
                    Err(e) => shared.fail(e),
                }
            }
        }
        if local.len() >= 1000 {
            shared.record(&mut local);
        }
    }
    shared.record(&mut local);
}
