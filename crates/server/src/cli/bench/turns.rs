//! One turn of a queue scenario's worker (`queue.rs`): the requests it sends and what it
//! counts. Publishes alone, in batches or pipelined; receive+ack; the roundtrip consumer's
//! receive with its latencies. The messages' bodies carry their sequence number.

use std::time::Instant;

use anyhow::bail;
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::args::BenchArgs;
use super::conn::Conn;

/// One message to publish: the body, and with `--priorities` / `--groups` its priority and
/// group, both taken in turn from the sequence number.
pub(super) fn message_json(args: &BenchArgs, seq: u64) -> Value {
    let mut m = json!({"body": body_of(args.size, seq)});
    if args.priorities {
        m["priority"] = json!(seq % 10);
    }
    if let Some(g) = args.groups.filter(|&g| g > 0) {
        m["message_group_id"] = json!(format!("g{}", seq % g));
    }
    m
}

pub(super) fn body_of(size: usize, seq: u64) -> String {
    let mut s = format!("{seq:020}");
    while s.len() < size {
        s.push('x');
    }
    s.truncate(size.max(1));
    s
}

/// The body of a publish of `n` messages, numbered on from `seq`: one message alone, or `n`
/// in a batch.
fn publish_body(args: &BenchArgs, n: usize, seq: &mut u64) -> Value {
    let mut next = || {
        *seq += 1;
        message_json(args, *seq)
    };
    if n == 1 {
        next()
    } else {
        json!({ "messages": (0..n).map(|_| next()).collect::<Vec<Value>>() })
    }
}

/// Publish `n` messages: one alone, or `n` in one batch.
pub(super) async fn publish(
    conn: &mut Conn,
    path: &str,
    args: &BenchArgs,
    n: usize,
    seq: &mut u64,
) -> anyhow::Result<u64> {
    conn.json("POST", path, &publish_body(args, n, seq)).await?;
    Ok(n as u64)
}

/// `--pipeline` publishes of `n` messages each, written together on one connection.
pub(super) async fn publish_pipelined(
    conn: &mut Conn,
    path: &str,
    args: &BenchArgs,
    n: usize,
    seq: &mut u64,
) -> anyhow::Result<u64> {
    let bodies: Vec<Bytes> = (0..args.pipeline)
        .map(|_| Bytes::from(serde_json::to_vec(&publish_body(args, n, seq)).expect("json")))
        .collect();
    for (status, bytes) in conn.call_many("POST", path, &bodies).await? {
        if !(200..300).contains(&status) {
            bail!("POST {path}: {status} {}", String::from_utf8_lossy(&bytes));
        }
    }
    Ok(args.pipeline * n as u64)
}

/// Receive up to `batch` messages and ack them: the number acked, or `None` when the queue
/// was empty.
pub(super) async fn receive_ack(
    conn: &mut Conn,
    recv_path: &str,
    ack_path: &str,
    batch: usize,
) -> anyhow::Result<Option<u64>> {
    // Only the receipts are read from the answer (borrowed, no tree of values): the
    // generator's CPU is taken from the same two cores as the server's.
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
    let body = serde_json::to_vec(&json!({ "max_messages": batch }))?;
    let (status, bytes) = conn.call("POST", recv_path, Bytes::from(body)).await?;
    if !(200..300).contains(&status) {
        bail!(
            "POST {recv_path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let got: Received = serde_json::from_slice(&bytes)?;
    let receipts: Vec<_> = got.messages.iter().map(|m| &m.receipt).collect();
    if receipts.is_empty() {
        return Ok(None);
    }
    let a = conn
        .json("POST", ack_path, &json!({ "receipts": receipts }))
        .await?;
    Ok(Some(a["acked"].as_u64().unwrap_or(0)))
}

/// The roundtrip consumer's turn: a long-poll receive, each message's publish-to-receive time
/// recorded from the send time its body starts with, then one ack for all.
pub(super) async fn roundtrip_consume(
    conn: &mut Conn,
    (recv_path, ack_path): (&str, &str),
    batch: usize,
    started: Instant,
    local: &mut Histogram<u64>,
) -> anyhow::Result<u64> {
    let v = conn
        .json(
            "POST",
            recv_path,
            &json!({ "max_messages": batch, "wait_seconds": 1 }),
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
        conn.json("POST", ack_path, &json!({ "receipts": receipts }))
            .await?;
    }
    Ok(msgs.len() as u64)
}
