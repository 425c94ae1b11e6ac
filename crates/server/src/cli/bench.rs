//! `sluice bench`: the built-in load generator (like `nats bench` or `redis-benchmark`).
//!
//! Each `--connections` is one connection driven by its own task in a closed loop: HTTP/1.1 by
//! a minimal client of its own ([`RawH1`]), h2c (prior knowledge) by hyper. The generator runs
//! on the same cores as the server, so it adds as little CPU as it can; latencies go into an
//! HDR histogram. The JSON output (`--json`) is what scripts and BENCHMARKS.md read.
//! The generator reports its own CPU share so a run can show it was not the bottleneck.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde_json::{json, Value};

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
    /// The kill -9 report: a server of its own (and a redis-server with --storage redis)
    /// killed --cycles times under mixed load; what was acknowledged, found, duplicated or
    /// came back (`crash.rs`). Ignores --server.
    Crash,
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
    /// crash: how many times the server is killed.
    #[arg(long, default_value_t = 20)]
    pub cycles: usize,
    /// crash: `embedded`, or `redis` (a redis-server started by the bench, with appendonly
    /// yes and appendfsync always; killed with the server).
    #[arg(long, default_value = "embedded")]
    pub storage: String,
}

struct Conn {
    h1: Option<RawH1>,
    h2: Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>>,
    authority: String,
}

/// A minimal HTTP/1.1 client connection: one request written with one `write`, the response
/// read in the same task. hyper's client runs the connection in a second task, which costs a
/// cross-task (often cross-thread) wake-up per request; on a 2-core machine shared with the
/// server that showed as ~20% fewer requests per second than `wrk` got from the same server.
struct RawH1 {
    stream: tokio::net::TcpStream,
    host: String,
    auth: Option<String>,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl RawH1 {
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Bytes)> {
        use std::io::Write;
        use tokio::io::AsyncWriteExt;
        self.out.clear();
        write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.host,
            body.len()
        )?;
        if let Some(auth) = &self.auth {
            write!(self.out, "authorization: {auth}\r\n")?;
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        self.stream.write_all(&self.out).await?;
        self.buf.clear();
        let (status, head_len, length, chunked) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = resp.parse(&self.buf)? {
                let mut length = None;
                let mut chunked = false;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = h.value.eq_ignore_ascii_case(b"chunked");
                    }
                }
                break (resp.code.unwrap_or(0), n, length, chunked);
            }
            self.read_more().await?;
        };
        let body = if chunked {
            self.read_chunked(head_len).await?
        } else {
            let len = length.unwrap_or(0);
            while self.buf.len() < head_len + len {
                self.read_more().await?;
            }
            Bytes::copy_from_slice(&self.buf[head_len..head_len + len])
        };
        Ok((status, body))
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt;
        let at = self.buf.len();
        self.buf.resize(at + 16 * 1024, 0);
        let n = self.stream.read(&mut self.buf[at..]).await?;
        self.buf.truncate(at + n);
        if n == 0 {
            bail!("connection closed by the server");
        }
        Ok(())
    }

    /// Decode a chunked body that starts at `pos` in the buffer.
    async fn read_chunked(&mut self, mut pos: usize) -> anyhow::Result<Bytes> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf[pos..].windows(2).position(|w| w == b"\r\n") {
                    break pos + i;
                }
                self.read_more().await?;
            };
            let size_text = std::str::from_utf8(&self.buf[pos..line_end])?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            pos = line_end + 2;
            while self.buf.len() < pos + size + 2 {
                self.read_more().await?;
            }
            body.extend_from_slice(&self.buf[pos..pos + size]);
            pos += size + 2;
            if size == 0 {
                return Ok(Bytes::from(body));
            }
        }
    }
}

impl Conn {
    async fn open(server: &str, protocol: Protocol) -> anyhow::Result<Conn> {
        let authority = server
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        if server.starts_with("https://") {
            bail!("bench talks plain HTTP (h1 or h2c); got {server}");
        }
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        stream.set_nodelay(true)?;
        match protocol {
            Protocol::Http1 => Ok(Conn {
                h1: Some(RawH1 {
                    stream,
                    host: authority.clone(),
                    auth: super::client::bearer_header(),
                    out: Vec::with_capacity(4096),
                    buf: Vec::with_capacity(16 * 1024),
                }),
                h2: None,
                authority,
            }),
            Protocol::Http2 => {
                let io = TokioIo::new(stream);
                let (send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Ok(Conn {
                    h1: None,
                    h2: Some(send),
                    authority,
                })
            }
        }
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
        if let Some(h1) = &mut self.h1 {
            return h1.call(method, path, &body).await;
        }
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.authority, path))
            .header("host", &self.authority)
            .header("content-type", "application/json");
        if let Some(auth) = super::client::bearer_header() {
            req = req.header("authorization", auth);
        }
        let req = req.body(Full::new(body))?;
        let s = self.h2.as_mut().expect("a connection");
        s.ready().await?;
        let resp = s.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    async fn json(&mut self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let (status, bytes) = self
            .call(method, path, Bytes::from(serde_json::to_vec(body)?))
            .await?;
        if !(200..300).contains(&status) {
            bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}

struct Shared {
    messages: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
    hist: Mutex<Histogram<u64>>,
    last_error: Mutex<Option<String>>,
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

fn new_hist() -> Histogram<u64> {
    // Microseconds, 1 µs to 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("bounds")
}

fn body_of(size: usize, seq: u64) -> String {
    let mut s = format!("{seq:020}");
    while s.len() < size {
        s.push('x');
    }
    s.truncate(size.max(1));
    s
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub async fn run(servers: &str, json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    // Several nodes (`--server http://a,http://b`): connections go round-robin over them;
    // the queue is set up through the first.
    let nodes: Vec<&str> = servers.split(',').filter(|s| !s.is_empty()).collect();
    let server = *nodes.first().context("--server names no server")?;
    if args.connections == 0 || args.batch == 0 || args.batch > 1000 {
        bail!("--connections must be at least 1 and --batch between 1 and 1000");
    }
    if args.scenario == Scenario::Crash {
        return super::crash::run(json_out, args).await;
    }
    if matches!(args.scenario, Scenario::Push | Scenario::Timers) {
        let timers = args.scenario == Scenario::Timers;
        return super::bench_push::run(server, json_out, args, timers).await;
    }
    let scenario_name = args
        .scenario
        .to_possible_value()
        .expect("named")
        .get_name()
        .to_string();
    let queue = args
        .queue
        .clone()
        .unwrap_or_else(|| format!("bench-{scenario_name}"));
    let mut admin = Conn::open(server, Protocol::Http1).await?;
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
    if matches!(args.scenario, Scenario::ReceiveAck | Scenario::Stream) {
        let n = args
            .prefill
            .unwrap_or_else(|| args.count.unwrap_or(2_000_000).min(2_000_000));
        prefill(server, &queue, n, args.size).await?;
    }

    let shared = Arc::new(Shared {
        messages: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        hist: Mutex::new(new_hist()),
        last_error: Mutex::new(None),
    });
    let started = Instant::now();
    let cpu_start = cpu_seconds();
    let mut tasks = Vec::new();
    if args.scenario == Scenario::Stream {
        for i in 0..args.connections {
            let node = nodes[i % nodes.len()];
            let c = super::stream_client::StreamClient::open(node, &queue, args.batch).await?;
            tasks.push(tokio::spawn(stream_worker(c, shared.clone())));
        }
    }
    for i in 0..args.connections {
        let role = match args.scenario {
            Scenario::Stream | Scenario::Push | Scenario::Timers | Scenario::Crash => break,
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
            queue.clone(),
            args.clone(),
            shared.clone(),
            started,
            publishers,
        )));
    }

    let bar = if !json_out && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = indicatif::ProgressBar::new(args.count.unwrap_or((args.duration * 10.0) as u64));
        b.set_style(indicatif::ProgressStyle::with_template("{bar:40} {msg}").expect("template"));
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let deadline = started + Duration::from_secs_f64(args.duration);
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
            Some(c) => {
                bar.set_position(n.min(c));
                n >= c
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
    shared.stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    bar.finish_and_clear();
    let cpu = cpu_seconds() - cpu_start;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    if !args.keep {
        let _ = admin
            .call("DELETE", &format!("/v1/queues/{queue}"), Bytes::new())
            .await;
    }

    let h = shared.hist.lock();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let messages = shared.messages.load(Ordering::Relaxed);
    let out = json!({
        "scenario": scenario_name,
        "protocol": match args.protocol { Protocol::Http1 => "http1", Protocol::Http2 => "h2c" },
        "connections": args.connections,
        "size": args.size,
        "batch": if matches!(args.scenario, Scenario::Publish) { 1 } else { args.batch },
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
        if let Some(e) = out["last_error"].as_str() {
            println!("last error: {e}");
        }
    }
    Ok(())
}

async fn prefill(server: &str, queue: &str, n: u64, size: usize) -> anyhow::Result<()> {
    let per_conn = 8u64;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..per_conn {
        let mut c = Conn::open(server, Protocol::Http1).await?;
        let next = next.clone();
        let queue = queue.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(1000, Ordering::Relaxed);
                if start >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let k = (n - start).min(1000);
                let msgs: Vec<Value> = (0..k)
                    .map(|i| json!({"body": body_of(size, start + i)}))
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
async fn stream_worker(mut c: super::stream_client::StreamClient, shared: Arc<Shared>) {
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
    // Paced publishers: each worker sends its share of --rate on a fixed schedule.
    let paced = match role {
        Role::Publish(n) if args.rate > 0 => Some(Duration::from_secs_f64(
            args.connections as f64 * n as f64 / args.rate as f64,
        )),
        _ => None,
    };
    let mut next_send = tokio::time::Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(iv) = paced {
            next_send += iv;
            tokio::time::sleep_until(next_send).await;
        }
        let t0 = Instant::now();
        let result: anyhow::Result<u64> = async {
            match role {
                Role::Publish(1) => {
                    seq += 1;
                    conn.json("POST", &pub_path, &json!({"body": body_of(args.size, seq)}))
                        .await?;
                    Ok(1)
                }
                Role::Publish(n) => {
                    let msgs: Vec<Value> = (0..n)
                        .map(|_| {
                            seq += 1;
                            json!({"body": body_of(args.size, seq)})
                        })
                        .collect();
                    conn.json("POST", &pub_path, &json!({"messages": msgs}))
                        .await?;
                    Ok(n as u64)
                }
                Role::ReceiveAck => {
                    // Only the receipts are read from the answer (borrowed, no tree of values):
                    // the generator's CPU is taken from the same two cores as the server's.
                    #[derive(serde::Deserialize)]
                    struct Received<'a> {
                        #[serde(borrow)]
                        messages: Vec<Rcpt<'a>>,
                    }
                    #[derive(serde::Deserialize, serde::Serialize)]
                    struct Rcpt<'a> {
                        #[serde(borrow)]
                        receipt: std::borrow::Cow<'a, str>,
                    }
                    let body = serde_json::to_vec(&json!({"max_messages": args.batch}))?;
                    let (status, bytes) = conn.call("POST", &recv_path, Bytes::from(body)).await?;
                    if !(200..300).contains(&status) {
                        bail!(
                            "POST {recv_path}: {status} {}",
                            String::from_utf8_lossy(&bytes)
                        );
                    }
                    let got: Received = serde_json::from_slice(&bytes)?;
                    let receipts: Vec<_> = got.messages.iter().map(|m| &m.receipt).collect();
                    if receipts.is_empty() {
                        shared.stop.store(true, Ordering::Relaxed);
                        return Ok(0);
                    }
                    let a = conn
                        .json("POST", &ack_path, &json!({"receipts": receipts}))
                        .await?;
                    Ok(a["acked"].as_u64().unwrap_or(0))
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
                    conn.json("POST", &pub_path, &json!({"body": body})).await?;
                    Ok(0)
                }
                Role::RoundtripConsumer => {
                    let v = conn
                        .json(
                            "POST",
                            &recv_path,
                            &json!({"max_messages": args.batch, "wait_seconds": 1}),
                        )
                        .await?;
                    let now_us = started.elapsed().as_micros() as u64;
                    let msgs = v["messages"].as_array().cloned().unwrap_or_default();
                    let mut receipts = Vec::new();
                    for m in &msgs {
                        if let Some(sent) = m["body"]
                            .as_str()
                            .and_then(|b| b.get(..20))
                            .and_then(|d| d.parse::<u64>().ok())
                        {
                            let _ = local.record(now_us.saturating_sub(sent).max(1));
                        }
                        receipts.push(m["receipt"].clone());
                    }
                    if !receipts.is_empty() {
                        conn.json("POST", &ack_path, &json!({"receipts": receipts}))
                            .await?;
                    }
                    Ok(msgs.len() as u64)
                }
            }
        }
        .await;
        shared.requests.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The raw HTTP/1.1 client reads content-length and chunked bodies, split over reads.
    #[tokio::test]
    async fn raw_h1_reads_sized_and_chunked_bodies() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let replies: [&[&[u8]]; 2] = [
                &[
                    b"HTTP/1.1 201 Created\r\ncontent-le",
                    b"ngth: 5\r\n\r\nhel",
                    b"lo",
                ],
                &[
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab",
                    b"c\r\n2;x=y\r\nde\r\n0\r\n\r\n",
                ],
            ];
            for parts in replies {
                // Read one request (headers and a 2-byte body).
                let mut buf = [0u8; 1024];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    if got.ends_with(b"\r\n\r\n{}") {
                        break;
                    }
                }
                got.clear();
                for p in parts {
                    s.write_all(p).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        let mut c = Conn::open(&format!("http://{addr}"), Protocol::Http1)
            .await
            .unwrap();
        let (status, body) = c
            .call("POST", "/a", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!((status, &body[..]), (201, &b"hello"[..]));
        let (status, body) = c
            .call("POST", "/b", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!((status, &body[..]), (200, &b"abcde"[..]));
        server.await.unwrap();
    }
}
