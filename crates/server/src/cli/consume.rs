//! Consuming by hand: `sluice recv` (with a lease), `peek` (without one), `ack` and `nack` by
//! receipt, and `redrive` (dead letters back to their source). A batch settle that fails for
//! any receipt exits non-zero after printing what did succeed.

use clap::Args;
use serde_json::{json, Value};

use super::client::{enc, Client};
use super::output::{cell, out, print_json, table};
use super::ClientOpts;
use crate::human_errors::whole;

#[derive(Args, Debug)]
pub struct RecvArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    pub queue: String,
    /// Messages to receive (1-100).
    #[arg(short = 'n', long = "max", default_value_t = 1, value_parser = whole::<usize>)]
    pub max: usize,
    /// Long-poll up to this many seconds for a message (0-20).
    #[arg(long, default_value_t = 0, value_name = "SECONDS", value_parser = whole::<u32>)]
    pub wait: u32,
    /// Lease length in seconds (0-43200; default: the queue's visibility timeout).
    #[arg(long, value_name = "SECONDS", value_parser = whole::<u32>)]
    pub visibility: Option<u32>,
    /// Acknowledge what was received.
    #[arg(long)]
    pub ack: bool,
}

#[derive(Args, Debug)]
pub struct PeekArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    pub queue: String,
    /// Messages to show (1-1000): ready first, then delayed, then in flight.
    #[arg(short = 'n', long, default_value_t = 20, value_parser = whole::<usize>)]
    pub limit: usize,
}

#[derive(Args, Debug)]
pub struct AckArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    pub queue: String,
    /// Receipts from a receive (1-1000).
    #[arg(required = true)]
    pub receipts: Vec<String>,
}

#[derive(Args, Debug)]
pub struct NackArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    pub queue: String,
    /// Receipts from a receive (1-1000).
    #[arg(required = true)]
    pub receipts: Vec<String>,
    /// Visible again after this many seconds (0-31536000; default 0: at once).
    #[arg(long, value_name = "SECONDS", value_parser = whole::<u32>)]
    pub delay: Option<u32>,
    /// Put the messages at the front of the queue instead of the back.
    #[arg(long)]
    pub front: bool,
}

#[derive(Args, Debug)]
pub struct RedriveArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// A dead-letter queue (its dead letters go home) or a source queue (its own dead letters
    /// come back).
    pub queue: String,
    /// Move only these dead letters (ids as `sluice peek` shows them in the dead-letter queue).
    #[arg(long = "id", value_name = "ID", conflicts_with = "max")]
    pub ids: Vec<String>,
    /// Move at most this many (default: all).
    #[arg(long, value_name = "COUNT", value_parser = whole::<usize>)]
    pub max: Option<usize>,
}

fn body_text(m: &Value) -> String {
    m["body"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("(base64) {}", m["body_base64"].as_str().unwrap_or_default()))
}

fn short(s: &str, n: usize) -> String {
    let cut: String = s.chars().take(n).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

pub async fn recv(args: RecvArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.client.server)?;
    let mut req = json!({ "max_messages": args.max, "wait_seconds": args.wait });
    if let Some(v) = args.visibility {
        req["visibility_timeout_seconds"] = json!(v);
    }
    let q = enc(&args.queue);
    let v = c.post(&format!("/v1/queues/{q}/receive"), &req).await?;
    let msgs = v["messages"].as_array().cloned().unwrap_or_default();
    let mut acked = None;
    if args.ack && !msgs.is_empty() {
        let receipts: Vec<Value> = msgs.iter().map(|m| m["receipt"].clone()).collect();
        acked = Some(
            c.post(
                &format!("/v1/queues/{q}/ack"),
                &json!({ "receipts": receipts }),
            )
            .await?,
        );
    }
    if args.client.json {
        let mut all = v.clone();
        if let Some(a) = acked {
            all["ack"] = a;
        }
        return print_json(&all);
    }
    if msgs.is_empty() {
        return out("no messages");
    }
    let mut t = table(&["id", "receives", "body", "receipt"]);
    for m in &msgs {
        t.add_row(vec![
            cell(&m["id"]),
            cell(&m["receive_count"]),
            short(&body_text(m), 60),
            cell(&m["receipt"]),
        ]);
    }
    out(t)?;
    if let Some(a) = acked {
        out(format_args!("acked {}", a["acked"]))?;
    }
    Ok(())
}

pub async fn peek(args: PeekArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.client.server)?;
    let v = c
        .get(&format!(
            "/v1/queues/{}/messages?limit={}",
            enc(&args.queue),
            args.limit
        ))
        .await?;
    if args.client.json {
        return print_json(&v);
    }
    let msgs = v["messages"].as_array().cloned().unwrap_or_default();
    if msgs.is_empty() {
        return out(format_args!("{} is empty", args.queue));
    }
    let mut t = table(&["id", "state", "receives", "enqueued", "from", "body"]);
    for m in &msgs {
        let from = m["dead_letter_source"]
            .as_str()
            .or(m["attributes"]["sluice-source-queue"].as_str())
            .unwrap_or("");
        t.add_row(vec![
            cell(&m["id"]),
            cell(&m["state"]),
            cell(&m["receive_count"]),
            cell(&m["enqueued_at"]),
            from.to_string(),
            short(&body_text(m), 50),
        ]);
    }
    out(t)
}

/// Print a batch settle's answer; fail when any receipt failed.
fn settled(v: &Value, json: bool, done: &str) -> anyhow::Result<()> {
    let failed = v["failed"].as_array().cloned().unwrap_or_default();
    if json {
        print_json(v)?;
    } else {
        out(format_args!("{done} {}", v[done]))?;
        for f in &failed {
            out(format_args!(
                "failed {}: {}",
                f["receipt"].as_str().unwrap_or_default(),
                f["error"]["message"].as_str().unwrap_or_default()
            ))?;
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("{} of the receipts could not be settled", failed.len());
    }
    Ok(())
}

pub async fn ack(args: AckArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.client.server)?;
    let v = c
        .post(
            &format!("/v1/queues/{}/ack", enc(&args.queue)),
            &json!({ "receipts": args.receipts }),
        )
        .await?;
    settled(&v, args.client.json, "acked")
}

pub async fn nack(args: NackArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.client.server)?;
    let mut body = json!({ "receipts": args.receipts });
    if let Some(d) = args.delay {
        body["delay_seconds"] = json!(d);
    }
    if args.front {
        body["placement"] = json!("front");
    }
    let v = c
        .post(&format!("/v1/queues/{}/nack", enc(&args.queue)), &body)
        .await?;
    settled(&v, args.client.json, "nacked")
}

pub async fn redrive(args: RedriveArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.client.server)?;
    let mut body = json!({});
    if !args.ids.is_empty() {
        body["ids"] = json!(args.ids);
    }
    if let Some(m) = args.max {
        body["max_messages"] = json!(m);
    }
    let v = c
        .post(&format!("/v1/queues/{}/redrive", enc(&args.queue)), &body)
        .await?;
    if args.client.json {
        return print_json(&v);
    }
    out(format_args!("redrove {} messages", v["redriven"]))
}
