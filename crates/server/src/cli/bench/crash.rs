//! `sluice bench crash`: the kill -9 test as a report anyone can rerun. The bench starts its own
//! server (this same binary, `serve` on a free loopback port, private data in a temporary
//! folder) and, with `--storage redis`, its own `redis-server` with `appendonly yes` and
//! `appendfsync always`. Then, `--cycles` times: mixed load for 0.3-1.5 s (`crash_load.rs`:
//! publish, batches, receive, ack, nack, abandoned leases, dead letters, redrive, timers, a
//! push subscription), SIGKILL (the server, and Redis too: a power cut), restart. At the end
//! it waits for the timers and push deliveries, drains both queues and prints, per cycle:
//!
//! - `acknowledged`: publishes and timer creations answered 201 in that cycle;
//! - `found`: of those, how many were seen again (received, drained, delivered or fired);
//! - `lost` = acknowledged − found (must be 0);
//! - `duplicates`: extra deliveries at-least-once allows: a message received again after an
//!   ack whose answer the kill cut off, a second webhook delivery or timer firing;
//! - `acked_then_returned`: acks answered 200 whose message came back (must be 0).
//!
//! Exit status 1 if anything was lost or came back. `--json` prints the same as JSON.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::args::BenchArgs;
use super::crash_load::{self as load, Client, Ledger, Shared, DLQ, MAIN, PUSH};

/// One killable process and how to start it again.
struct Proc {
    cmd: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.cmd[0])
            .args(&self.cmd[1..])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.cmd[0]))?;
        self.child = Some(child);
        Ok(())
    }
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Wait (at most 60 s) until `redis` (a port) or else the sluice `client` answers.
async fn wait_up(redis: Option<u16>, client: &Client) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let up = match redis {
            Some(port) => redis_answers(port).await,
            None => matches!(client.get("/healthz").await, Some((200, _))),
        };
        if up {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!(
        "{} did not come up within 60 s",
        if redis.is_some() {
            "redis-server"
        } else {
            "sluice"
        }
    )
}

async fn redis_answers(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").await.is_ok()
        && matches!(s.read(&mut buf).await, Ok(n) if buf[..n].starts_with(b"+PONG"))
}

struct Setup {
    server: Proc,
    redis: Option<(Proc, u16)>,
    client: Client,
}

impl Setup {
    fn new(dir: &Path, storage: &str) -> anyhow::Result<Setup> {
        let port = free_port()?;
        let exe = std::env::current_exe()?.to_string_lossy().into_owned();
        let mut cmd: Vec<String> = [
            exe.as_str(),
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            &dir.join("data").to_string_lossy(),
            "--allow-private-targets",
            "--log-level",
            "error",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let redis = match storage {
            "embedded" => None,
            "redis" => {
                let rport = free_port()?;
                let rdir = dir.join("redis");
                std::fs::create_dir_all(&rdir)?;
                let rcmd = [
                    "redis-server",
                    "--port",
                    &rport.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    &rdir.to_string_lossy(),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                cmd.extend(["--storage".into(), format!("redis://127.0.0.1:{rport}")]);
                let p = Proc {
                    cmd: rcmd,
                    log: dir.join("redis.log"),
                    child: None,
                };
                Some((p, rport))
            }
            other => bail!("--storage {other:?}: use embedded or redis"),
        };
        Ok(Setup {
            server: Proc {
                cmd,
                log: dir.join("server.log"),
                child: None,
            },
            redis,
            client: Client {
                base: format!("http://127.0.0.1:{port}"),
                http: reqwest::Client::new(),
            },
        })
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        if let Some((r, port)) = &mut self.redis {
            r.start()?;
            wait_up(Some(*port), &self.client).await?;
        }
        self.server.start()?;
        wait_up(None, &self.client).await
    }

    fn kill(&mut self) {
        self.server.kill();
        if let Some((r, _)) = &mut self.redis {
            r.kill();
        }
    }
}

async fn prepare(c: &Client, receiver: &str) -> anyhow::Result<()> {
    let calls = [
        (format!("/v1/queues/{DLQ}"), json!({})),
        (
            format!("/v1/queues/{MAIN}"),
            json!({"dead_letter_queue": DLQ, "max_receives": 3, "visibility_timeout_seconds": 3}),
        ),
        (
            format!("/v1/queues/{PUSH}/subscriptions/sink"),
            json!({"url": format!("{receiver}/push"), "timeout_seconds": 1, "max_attempts": 100,
                   "backoff": {"initial_seconds": 0.2, "max_seconds": 1}}),
        ),
    ];
    for (path, body) in calls {
        match c.put(&path, &body).await {
            Some((200 | 201, _)) => {}
            other => bail!("PUT {path}: {other:?}"),
        }
    }
    Ok(())
}

/// Mixed load until the server is killed after a random 0.3-1.5 s.
async fn cycle(setup: &mut Setup, ledger: &Shared, receiver: &str, n: usize) {
    let c = setup.client.clone();
    let mut tasks = Vec::new();
    for p in 0..3 {
        let (c, l) = (c.clone(), ledger.clone());
        tasks.push(tokio::spawn(async move {
            load::publisher(c, l, MAIN, 'm', format!("c{n}-p{p}")).await
        }));
    }
    let (cc, l) = (c.clone(), ledger.clone());
    tasks.push(tokio::spawn(async move {
        load::publisher(cc, l, PUSH, 'p', format!("c{n}-s0")).await
    }));
    let (cc, l, r) = (c.clone(), ledger.clone(), receiver.to_string());
    tasks.push(tokio::spawn(async move {
        load::timer_maker(cc, l, r, format!("c{n}-t0")).await
    }));
    for _ in 0..2 {
        tasks.push(tokio::spawn(load::consumer(c.clone(), ledger.clone())));
    }
    tasks.push(tokio::spawn(load::redriver(c.clone())));
    let run = 300 + rand::random::<u64>() % 1200;
    tokio::time::sleep(Duration::from_millis(run)).await;
    setup.kill();
    for t in tasks {
        let _ = t.await;
    }
}

/// After the last restart: wait for timers and push deliveries, then drain both queues. On
/// Redis, leases survive the kill: copies a killed server had leased for delivery come back
/// when their lease ends (the subscription's timeout + 60 s), and timers after 330 s, so this
/// may take minutes.
async fn settle(c: &Client, ledger: &Shared) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(420);
    while Instant::now() < until {
        let pending = {
            let l = ledger.lock();
            l.published
                .keys()
                .filter(|b| !b.starts_with('m') && !l.delivered.contains_key(*b))
                .count()
        };
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Leases of killed consumers end after 3 s (Redis keeps them across a restart): wait
    // until nothing is leased or delayed, then take everything.
    for q in [MAIN, DLQ] {
        loop {
            let (_, stats) = c
                .get(&format!("/v1/queues/{q}"))
                .await
                .context("queue stats")?;
            let waiting = stats["stats"]["in_flight"].as_u64().unwrap_or(0)
                + stats["stats"]["delayed"].as_u64().unwrap_or(0);
            if waiting == 0 || Instant::now() > until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        loop {
            let req = json!({"max_messages": 100, "visibility_timeout_seconds": 600});
            let got = c.post(&format!("/v1/queues/{q}/receive"), &req).await;
            let Some((200, v)) = got else {
                bail!("draining {q}: {got:?}");
            };
            let msgs = v["messages"].as_array().cloned().unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            let mut l = ledger.lock();
            for m in msgs {
                if let Some(b) = m["body"].as_str() {
                    l.receive(b);
                }
            }
        }
    }
    Ok(())
}

/// The per-cycle figures (see the module doc).
fn report(l: &Ledger, cycles: usize) -> Vec<Value> {
    let mut rows = vec![[0u64; 5]; cycles];
    for (body, &c) in &l.published {
        let Some(row) = rows.get_mut(c) else { continue };
        row[0] += 1;
        let (seen, extra) = if body.starts_with('m') {
            let n = l.received.get(body).copied().unwrap_or(0);
            (n > 0, l.redelivered.get(body).copied().unwrap_or(0))
        } else {
            let n = l.delivered.get(body).copied().unwrap_or(0);
            (n > 0, n.saturating_sub(1))
        };
        row[1] += seen as u64;
        row[2] += (!seen) as u64;
        row[3] += extra as u64;
        row[4] += l.returned.contains(body) as u64;
    }
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            json!({"cycle": i + 1, "acknowledged": r[0], "found": r[1], "lost": r[2],
                   "duplicates": r[3], "acked_then_returned": r[4]})
        })
        .collect()
}

pub async fn run(json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    if args.cycles == 0 {
        bail!("--cycles must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!(
        "sluice-crash-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    ));
    std::fs::create_dir_all(&dir)?;
    let ledger = Shared::default();
    let receiver = load::start_receiver(ledger.clone()).await?;
    let mut setup = Setup::new(&dir, &args.storage)?;
    let started = Instant::now();
    setup.start().await?;
    prepare(&setup.client, &receiver).await?;
    for n in 0..args.cycles {
        cycle(&mut setup, &ledger, &receiver, n).await;
        setup.start().await?;
    }
    settle(&setup.client, &ledger).await?;
    setup.kill();
    let l = ledger.lock();
    let rows = report(&l, args.cycles);
    let total = |k: &str| rows.iter().map(|r| r[k].as_u64().unwrap_or(0)).sum::<u64>();
    let summary = json!({
        "scenario": "crash",
        "storage": args.storage,
        "cycles": args.cycles,
        "seconds": started.elapsed().as_secs_f64().round(),
        "acknowledged": total("acknowledged"),
        "found": total("found"),
        "lost": total("lost"),
        "duplicates": total("duplicates"),
        "acked_then_returned": total("acked_then_returned"),
        "acks_ok": l.acked.len(),
        "per_cycle": rows,
    });
    if json_out {
        println!("{summary}");
    } else {
        println!("cycle  acknowledged  found  lost  duplicates  acked_then_returned");
        for r in &rows {
            println!(
                "{:>5}  {:>12}  {:>5}  {:>4}  {:>10}  {:>19}",
                r["cycle"],
                r["acknowledged"],
                r["found"],
                r["lost"],
                r["duplicates"],
                r["acked_then_returned"]
            );
        }
        println!(
            "crash ({}, {} cycles, {} s): acknowledged={} found={} lost={} duplicates={} acked_then_returned={} (acks answered 200: {})",
            args.storage, args.cycles, summary["seconds"], summary["acknowledged"], summary["found"],
            summary["lost"], summary["duplicates"], summary["acked_then_returned"], l.acked.len()
        );
    }
    let bad = total("lost") + total("acked_then_returned");
    if bad > 0 {
        let mut lost: Vec<&String> = l
            .published
            .keys()
            .filter(|b| {
                !l.received.contains_key(*b) && !l.delivered.contains_key(*b)
                    || l.returned.contains(*b)
            })
            .collect();
        lost.sort();
        lost.truncate(20);
        bail!(
            "{bad} acknowledged messages were lost or came back (first: {lost:?}); the data and logs are kept in {}",
            dir.display()
        );
    }
    drop(l);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
