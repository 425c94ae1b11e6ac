//! `sluice bench fairness`: fair queues measured. One tenant's backlog (`--prefill`, default
//! 1,000,000 messages in one group) is published first, then `--groups` (100) small tenants
//! with `--per-group` (10) messages each. Consumers (`--connections`, `--batch` per receive)
//! receive and ack until every small tenant's message is out and `--duration` has passed.
//! Reported: how many messages had been received when the last small one came out (the ideal
//! with strict turns is (groups + 1) x per-group), and receive-ack throughput against the same
//! backlog on a queue without groups (loaded beside it, drained first).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use serde_json::{json, Value};

use super::args::{BenchArgs, Protocol};
use super::conn::Conn;
use super::queue::{fresh_queue, prefill};
use super::report::{print, round};
use super::turns::body_of;

/// Counts shared by the consumers of one drain.
#[derive(Default)]
struct Drain {
    received: AtomicU64,
    small_left: AtomicU64,
    last_small_at: AtomicU64,
    stop: AtomicBool,
    errors: AtomicU64,
}

pub async fn run(server: &str, json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    let big = args.prefill.unwrap_or(1_000_000);
    let groups = args.groups.unwrap_or(100);
    let small = groups * args.per_group;
    let seconds = args.duration_or(10.0);

    // Both queues are loaded first, then drained one after the other (neither drain runs
    // beside the other's loading or deletion). The baseline: the same messages, no groups.
    let plain = "bench-fairness-plain";
    setup(server, plain).await?;
    let no_groups = BenchArgs {
        groups: None,
        priorities: false,
        ..args.clone()
    };
    prefill(server, plain, big + small, &no_groups).await?;
    // The fair queue: the big tenant first (group g0), then the small ones.
    let fair = args.queue.clone().unwrap_or("bench-fairness".into());
    setup(server, &fair).await?;
    let one_group = BenchArgs {
        groups: Some(1),
        priorities: false,
        ..args.clone()
    };
    prefill(server, &fair, big, &one_group).await?;
    let mut admin = Conn::open(server, Protocol::Http1).await?;
    for g in 0..groups {
        let msgs: Vec<Value> = (0..args.per_group)
            .map(
                |i| json!({"body": body_of(args.size, i), "message_group_id": format!("small{g}")}),
            )
            .collect();
        admin
            .json(
                "POST",
                &format!("/v1/queues/{fair}/messages"),
                &json!({ "messages": msgs }),
            )
            .await?;
    }
    let (plain_rate, _) = drain(server, plain, &args, seconds, 0).await?;
    let (fair_rate, last_small_at) = drain(server, &fair, &args, seconds, small).await?;
    cleanup(server, plain, &args).await?;
    cleanup(server, &fair, &args).await?;

    let total = big + small;
    let ideal = (groups + 1) * args.per_group;
    let out = json!({
        "scenario": "fairness",
        "big_group_messages": big,
        "small_groups": groups,
        "per_small_group": args.per_group,
        "connections": args.connections,
        "batch": args.batch,
        "last_small_received_after": last_small_at,
        "last_small_received_after_percent_of_backlog": round(last_small_at as f64 * 100.0 / total as f64, 3),
        "ideal_with_strict_turns": ideal,
        "receive_ack_msgs_per_sec_with_groups": fair_rate.round(),
        "receive_ack_msgs_per_sec_without_groups": plain_rate.round(),
        "throughput_ratio": round(fair_rate / plain_rate.max(1.0), 3),
    });
    let lines = vec![
        format!(
            "fairness: the last of {small} small-group messages ({groups} groups x {}) came out after {last_small_at} of {total} messages received ({}% of the backlog; strict turns: {ideal})",
            args.per_group, out["last_small_received_after_percent_of_backlog"]
        ),
        format!(
            "receive-ack: {:.0} msg/s with groups, {:.0} msg/s without (ratio {})",
            fair_rate, plain_rate, out["throughput_ratio"]
        ),
    ];
    print(&out, json_out, &lines);
    Ok(())
}

async fn setup(server: &str, queue: &str) -> anyhow::Result<()> {
    let mut admin = Conn::open(server, Protocol::Http1).await?;
    fresh_queue(&mut admin, queue).await
}

async fn cleanup(server: &str, queue: &str, args: &BenchArgs) -> anyhow::Result<()> {
    if !args.keep {
        let mut admin = Conn::open(server, Protocol::Http1).await?;
        let _ = admin
            .call("DELETE", &format!("/v1/queues/{queue}"), Bytes::new())
            .await;
    }
    Ok(())
}

/// Receive and ack with `--connections` consumers for `seconds` and until the `small` messages
/// of the small groups are out (bounded by --give-up). Answers messages per second and how many
/// had been received when the last small one came out.
async fn drain(
    server: &str,
    queue: &str,
    args: &BenchArgs,
    seconds: f64,
    small: u64,
) -> anyhow::Result<(f64, u64)> {
    let d = Arc::new(Drain::default());
    d.small_left.store(small, Ordering::Relaxed);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let conn = Conn::open(server, Protocol::Http1).await?;
        tasks.push(tokio::spawn(consumer(
            conn,
            queue.to_string(),
            args.batch,
            d.clone(),
        )));
    }
    let give_up = Duration::from_secs_f64(args.give_up.max(seconds));
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let el = started.elapsed();
        let small_done = d.small_left.load(Ordering::Relaxed) == 0;
        if (el.as_secs_f64() >= seconds && small_done) || el >= give_up {
            break;
        }
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    d.stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    if d.errors.load(Ordering::Relaxed) > 0 {
        bail!(
            "{} receive or ack requests failed",
            d.errors.load(Ordering::Relaxed)
        );
    }
    if d.small_left.load(Ordering::Relaxed) > 0 {
        bail!(
            "{} small-group messages were still not received after {:.0} s",
            d.small_left.load(Ordering::Relaxed),
            elapsed
        );
    }
    let rate = d.received.load(Ordering::Relaxed) as f64 / elapsed;
    Ok((rate, d.last_small_at.load(Ordering::Relaxed)))
}

async fn consumer(mut conn: Conn, queue: String, batch: usize, d: Arc<Drain>) {
    #[derive(serde::Deserialize)]
    struct Received<'a> {
        #[serde(borrow)]
        messages: Vec<Got<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Got<'a> {
        #[serde(borrow)]
        receipt: std::borrow::Cow<'a, str>,
        #[serde(borrow, default)]
        message_group_id: Option<std::borrow::Cow<'a, str>>,
    }
    let recv_path = format!("/v1/queues/{queue}/receive");
    let ack_path = format!("/v1/queues/{queue}/ack");
    let body = Bytes::from(serde_json::to_vec(&json!({ "max_messages": batch })).expect("json"));
    while !d.stop.load(Ordering::Relaxed) {
        let step: anyhow::Result<bool> = async {
            let (status, bytes) = conn.call("POST", &recv_path, body.clone()).await?;
            if !(200..300).contains(&status) {
                bail!("{recv_path}: {status}");
            }
            let got: Received = serde_json::from_slice(&bytes)?;
            if got.messages.is_empty() {
                return Ok(false);
            }
            let n = got.messages.len() as u64;
            let before = d.received.fetch_add(n, Ordering::Relaxed);
            for (i, m) in got.messages.iter().enumerate() {
                if m.message_group_id
                    .as_deref()
                    .is_some_and(|g| g.starts_with("small"))
                {
                    d.small_left.fetch_sub(1, Ordering::Relaxed);
                    d.last_small_at
                        .fetch_max(before + i as u64 + 1, Ordering::Relaxed);
                }
            }
            let receipts: Vec<&str> = got.messages.iter().map(|m| m.receipt.as_ref()).collect();
            conn.json("POST", &ack_path, &json!({ "receipts": receipts }))
                .await?;
            Ok(true)
        }
        .await;
        match step {
            Ok(true) => {}
            Ok(false) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(_) => {
                d.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}
