//! `sluice send`: publish one message (every option of the publish call: body or a file's
//! bytes, attributes, delay, group, deduplication id, priority, time to live, the
//! `Idempotency-Key` header), or one message per stdin line in batches with a progress bar.

use std::io::BufRead;

use base64::Engine as _;
use clap::Args;
use serde_json::{json, Value};

use super::client::{enc, parse_kv, Body, Client};
use super::output::{out, print_json, progress};
use super::ClientOpts;
use crate::human_errors::whole;

#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    pub queue: String,
    /// The message body. Without it (and without --file), each line of stdin is one message.
    #[arg(conflicts_with = "file")]
    pub body: Option<String>,
    /// Send this file's bytes as the body (binary is fine).
    #[arg(long, value_name = "PATH")]
    pub file: Option<std::path::PathBuf>,
    /// Delay before the message(s) become visible, in seconds (0-31536000; default: the
    /// queue's delay).
    #[arg(long, value_name = "SECONDS", value_parser = whole::<u32>)]
    pub delay: Option<u32>,
    /// An attribute, `key=value` (repeatable; at most 32).
    #[arg(long = "attribute", visible_alias = "attr", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub attrs: Vec<(String, String)>,
    /// The message group: required on FIFO queues (order holds within a group); on standard
    /// queues, receives take turns between groups.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// The deduplication id: a repeat within the queue's deduplication window (default 5
    /// minutes) is stored once.
    #[arg(long, value_name = "ID")]
    pub dedup_id: Option<String>,
    /// Priority, 0-9, higher first (default 4; standard queues only).
    #[arg(long, value_name = "N", value_parser = whole::<u8>)]
    pub priority: Option<u8>,
    /// Time to live in seconds (1-1209600): the message is never delivered after it.
    #[arg(long, value_name = "SECONDS", value_parser = whole::<u32>)]
    pub ttl: Option<u32>,
    /// Sent as the Idempotency-Key header: a repeat within the queue's deduplication window is
    /// stored once (the answer says `duplicate`). With stdin, request N of the run sends
    /// KEY:N, so running the same input again stores each line once.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Messages per request when reading stdin (1-1000).
    #[arg(long, default_value_t = 100, value_name = "COUNT", value_parser = whole::<usize>)]
    pub batch: usize,
}

fn message(body: Value, args: &SendArgs) -> Value {
    let Value::Object(m) = body else {
        unreachable!("bodies are objects")
    };
    Body(m)
        .opt("delay_seconds", args.delay)
        .pairs("attributes", &args.attrs)
        .opt("message_group_id", args.group.clone())
        .opt("deduplication_id", args.dedup_id.clone())
        .opt("priority", args.priority)
        .opt("ttl_seconds", args.ttl)
        .value()
}

/// `{"body": text}`, or `{"body_base64": ...}` for bytes that are not UTF-8.
fn body_of(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(text) => json!({ "body": text }),
        Err(e) => json!({
            "body_base64": base64::engine::general_purpose::STANDARD.encode(e.into_bytes())
        }),
    }
}

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.client.server)?;
    let path = format!("/v1/queues/{}/messages", enc(&args.queue));
    let one = match (&args.body, &args.file) {
        (Some(b), _) => Some(body_of(b.clone().into_bytes())),
        (None, Some(f)) => {
            Some(body_of(std::fs::read(f).map_err(|e| {
                anyhow::anyhow!("--file {}: {e}", f.display())
            })?))
        }
        (None, None) => None,
    };
    if let Some(body) = one {
        let v = c
            .post_keyed(
                &path,
                &message(body, &args),
                args.idempotency_key.as_deref(),
            )
            .await?;
        if args.client.json {
            return print_json(&v);
        }
        let id = v["id"].as_str().unwrap_or_default();
        if v["duplicate"] == true {
            return out(format_args!("{id} duplicate"));
        }
        return out(id);
    }
    if !(1..=1000).contains(&args.batch) {
        anyhow::bail!("--batch: is {}; must be between 1 and 1000", args.batch);
    }
    if args.dedup_id.is_some() {
        anyhow::bail!("--dedup-id: one id would make every line after the first a repeat; give a body, or leave it out (content-based deduplication, if the queue has it)");
    }
    let bar = progress(
        None,
        "{spinner} {pos} messages sent ({rate}) {elapsed}",
        args.client.json,
    );
    let mut batch = Vec::with_capacity(args.batch);
    let (mut sent, mut duplicates, mut requests) = (0u64, 0u64, 0u64);
    let mut lines = std::io::stdin().lock().lines();
    loop {
        let line = lines.next().transpose()?;
        let last = line.is_none();
        if let Some(line) = line {
            batch.push(message(json!({ "body": line }), &args));
        }
        if batch.len() == args.batch || (last && !batch.is_empty()) {
            // Request N carries KEY:N, so its entries get KEY:N:INDEX.
            let key = args
                .idempotency_key
                .as_ref()
                .map(|k| format!("{k}:{requests}"));
            sent += batch.len() as u64;
            let v = c
                .post_keyed(
                    &path,
                    &json!({ "messages": std::mem::take(&mut batch) }),
                    key.as_deref(),
                )
                .await?;
            duplicates += v["duplicate"]
                .as_array()
                .map_or(0, |d| d.iter().filter(|x| **x == true).count() as u64);
            requests += 1;
            bar.set_position(sent);
        }
        if last {
            break;
        }
    }
    bar.finish_and_clear();
    if args.client.json {
        print_json(&json!({ "sent": sent, "duplicates": duplicates }))
    } else if duplicates > 0 {
        out(format_args!(
            "sent {sent} messages to {} ({duplicates} duplicates, stored before)",
            args.queue
        ))
    } else {
        out(format_args!("sent {sent} messages to {}", args.queue))
    }
}
