//! Client commands of the `sluice` binary: they talk to a server's native API over HTTP, print
//! tables for people and JSON (`--json`) for scripts.

pub mod bench;
pub mod bench_push;
pub mod client;
pub mod crash;
pub mod crash_load;
pub mod ingest;
pub mod sink;
pub mod stream_client;

use std::io::{BufRead, IsTerminal};

use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::{json, Value};

use client::Client;

#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Server to talk to. `sluice bench` also takes several, comma-separated (nodes sharing
    /// one Redis): its connections go round-robin over them.
    #[arg(
        long,
        env = "SLUICE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Create a queue or update its configuration.
    Create {
        name: String,
        #[arg(long)]
        visibility_timeout: Option<u32>,
        #[arg(long)]
        delay: Option<u32>,
        #[arg(long)]
        retention: Option<u32>,
        #[arg(long)]
        max_message_bytes: Option<u32>,
        #[arg(long, requires = "dead_letter_queue")]
        max_receives: Option<u32>,
        #[arg(long, requires = "max_receives")]
        dead_letter_queue: Option<String>,
    },
    /// List queues with their counts.
    List,
    /// Configuration and stats of one queue.
    Stats { name: String },
    /// Remove every message of a queue.
    Purge { name: String },
    /// Delete a queue and its messages.
    Delete { name: String },
}

#[derive(Args, Debug)]
pub struct SendArgs {
    pub queue: String,
    /// The message body. Without it, each line of stdin is one message.
    pub body: Option<String>,
    /// Delay before the message(s) become visible, in seconds.
    #[arg(long)]
    pub delay: Option<u32>,
    /// An attribute, `key=value` (repeatable).
    #[arg(long = "attr", value_parser = parse_kv)]
    pub attrs: Vec<(String, String)>,
    /// Messages per request when reading stdin (1-1000).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
}

#[derive(Args, Debug)]
pub struct RecvArgs {
    pub queue: String,
    /// Messages to receive (1-100).
    #[arg(short = 'n', long = "max", default_value_t = 1)]
    pub max: usize,
    /// Long-poll up to this many seconds (0-20).
    #[arg(long, default_value_t = 0)]
    pub wait: u32,
    /// Lease length in seconds (default: the queue's).
    #[arg(long)]
    pub visibility: Option<u32>,
    /// Acknowledge what was received.
    #[arg(long)]
    pub ack: bool,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    pub queue: String,
    /// Acknowledge each message after printing it (otherwise they are released on exit).
    #[arg(long)]
    pub ack: bool,
    /// Messages in flight at once.
    #[arg(long, default_value_t = 10)]
    pub prefetch: usize,
}

/// Stream a queue to stdout, one JSON line per message, until interrupted.
pub async fn tail(opts: &ClientOpts, args: TailArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let mut c = stream_client::StreamClient::open(&opts.server, &args.queue, args.prefetch).await?;
    let mut out = std::io::stdout().lock();
    loop {
        let frame = tokio::select! {
            f = c.next() => f?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(mut frame) = frame else {
            return Ok(());
        };
        match frame["type"].as_str() {
            Some("message") => {
                let receipt = frame["receipt"].clone();
                if let Some(o) = frame.as_object_mut() {
                    o.remove("type");
                }
                writeln!(out, "{frame}")?;
                out.flush()?;
                if args.ack {
                    c.send(&json!({"type": "ack", "receipt": receipt})).await?;
                }
            }
            Some("error") => eprintln!("error: {}", frame["message"].as_str().unwrap_or_default()),
            _ => {}
        }
    }
}

#[derive(Args, Debug)]
pub struct AckArgs {
    pub queue: String,
    #[arg(required = true)]
    pub receipts: Vec<String>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("json"));
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

pub async fn queue(opts: &ClientOpts, cmd: QueueCmd) -> anyhow::Result<()> {
    let c = Client::new(&opts.server)?;
    match cmd {
        QueueCmd::Create {
            name,
            visibility_timeout,
            delay,
            retention,
            max_message_bytes,
            max_receives,
            dead_letter_queue,
        } => {
            let mut body = serde_json::Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    body.insert(k.to_string(), v);
                }
            };
            put(
                "visibility_timeout_seconds",
                visibility_timeout.map(Value::from),
            );
            put("delay_seconds", delay.map(Value::from));
            put("retention_seconds", retention.map(Value::from));
            put("max_message_bytes", max_message_bytes.map(Value::from));
            put("max_receives", max_receives.map(Value::from));
            put("dead_letter_queue", dead_letter_queue.map(Value::from));
            let q = c
                .put(&format!("/v1/queues/{name}"), &Value::Object(body))
                .await?;
            if opts.json {
                print_json(&q);
            } else {
                println!("queue {name} ready");
                print_config(&q);
            }
        }
        QueueCmd::List => {
            let v = c.get("/v1/queues").await?;
            if opts.json {
                print_json(&v);
            } else {
                let mut t = table(&[
                    "queue",
                    "ready",
                    "in flight",
                    "delayed",
                    "dead-lettered",
                    "oldest (s)",
                    "published",
                    "acked",
                ]);
                for q in v["queues"].as_array().into_iter().flatten() {
                    let s = &q["stats"];
                    t.add_row(vec![
                        q["name"].as_str().unwrap_or_default().to_string(),
                        s["ready"].to_string(),
                        s["in_flight"].to_string(),
                        s["delayed"].to_string(),
                        s["dead_lettered"].to_string(),
                        s["oldest_ready_age_seconds"].to_string(),
                        s["published"].to_string(),
                        s["acked"].to_string(),
                    ]);
                }
                println!("{t}");
            }
        }
        QueueCmd::Stats { name } => {
            let q = c.get(&format!("/v1/queues/{name}")).await?;
            if opts.json {
                print_json(&q);
            } else {
                let mut t = table(&["stat", "value"]);
                if let Some(m) = q["stats"].as_object() {
                    for (k, v) in m {
                        t.add_row(vec![k.clone(), v.to_string()]);
                    }
                }
                println!("{t}");
                print_config(&q);
            }
        }
        QueueCmd::Purge { name } => {
            let v = c
                .post(&format!("/v1/queues/{name}/purge"), &json!({}))
                .await?;
            if opts.json {
                print_json(&v);
            } else {
                println!("purged {} messages from {name}", v["purged"]);
            }
        }
        QueueCmd::Delete { name } => {
            c.delete(&format!("/v1/queues/{name}")).await?;
            if opts.json {
                print_json(&json!({"deleted": name}));
            } else {
                println!("deleted queue {name}");
            }
        }
    }
    Ok(())
}

fn print_config(q: &Value) {
    let mut t = table(&["config", "value"]);
    if let Some(m) = q["config"].as_object() {
        for (k, v) in m {
            t.add_row(vec![k.clone(), v.to_string()]);
        }
    }
    println!("{t}");
}

fn message_json(body: String, args: &SendArgs) -> Value {
    let mut m = json!({ "body": body });
    if let Some(d) = args.delay {
        m["delay_seconds"] = json!(d);
    }
    if !args.attrs.is_empty() {
        m["attributes"] = Value::Object(
            args.attrs
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect(),
        );
    }
    m
}

pub async fn send(opts: &ClientOpts, args: SendArgs) -> anyhow::Result<()> {
    let c = Client::new(&opts.server)?;
    let path = format!("/v1/queues/{}/messages", args.queue);
    if let Some(body) = args.body.clone() {
        let v = c.post(&path, &message_json(body, &args)).await?;
        if opts.json {
            print_json(&v);
        } else {
            println!("{}", v["id"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    if !(1..=1000).contains(&args.batch) {
        anyhow::bail!("--batch must be between 1 and 1000");
    }
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos} messages sent ({per_sec}) {elapsed}",
            )
            .expect("template"),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let stdin = std::io::stdin();
    let mut batch = Vec::with_capacity(args.batch);
    let mut sent = 0u64;
    for line in stdin.lock().lines() {
        batch.push(message_json(line?, &args));
        if batch.len() == args.batch {
            c.post(&path, &json!({ "messages": std::mem::take(&mut batch) }))
                .await?;
            sent += args.batch as u64;
            bar.set_position(sent);
        }
    }
    if !batch.is_empty() {
        sent += batch.len() as u64;
        c.post(&path, &json!({ "messages": batch })).await?;
        bar.set_position(sent);
    }
    bar.finish_and_clear();
    if opts.json {
        print_json(&json!({ "sent": sent }));
    } else {
        println!("sent {sent} messages to {}", args.queue);
    }
    Ok(())
}

pub async fn recv(opts: &ClientOpts, args: RecvArgs) -> anyhow::Result<()> {
    let c = Client::new(&opts.server)?;
    let mut req = json!({ "max_messages": args.max, "wait_seconds": args.wait });
    if let Some(v) = args.visibility {
        req["visibility_timeout_seconds"] = json!(v);
    }
    let v = c
        .post(&format!("/v1/queues/{}/receive", args.queue), &req)
        .await?;
    let msgs = v["messages"].as_array().cloned().unwrap_or_default();
    let mut acked = None;
    if args.ack && !msgs.is_empty() {
        let receipts: Vec<Value> = msgs.iter().map(|m| m["receipt"].clone()).collect();
        acked = Some(
            c.post(
                &format!("/v1/queues/{}/ack", args.queue),
                &json!({ "receipts": receipts }),
            )
            .await?,
        );
    }
    if opts.json {
        let mut out = v.clone();
        if let Some(a) = acked {
            out["ack"] = a;
        }
        print_json(&out);
        return Ok(());
    }
    if msgs.is_empty() {
        println!("no messages");
        return Ok(());
    }
    let mut t = table(&["id", "receives", "body", "receipt"]);
    for m in &msgs {
        let body = m["body"]
            .as_str()
            .map(|s| s.to_string())
            .unwrap_or_else(|| {
                format!("(base64) {}", m["body_base64"].as_str().unwrap_or_default())
            });
        let short: String = body.chars().take(60).collect();
        t.add_row(vec![
            m["id"].as_str().unwrap_or_default().to_string(),
            m["receive_count"].to_string(),
            if short.len() < body.len() {
                format!("{short}…")
            } else {
                short
            },
            m["receipt"].as_str().unwrap_or_default().to_string(),
        ]);
    }
    println!("{t}");
    if let Some(a) = acked {
        println!("acked {}", a["acked"]);
    }
    Ok(())
}

pub async fn ack(opts: &ClientOpts, args: AckArgs) -> anyhow::Result<()> {
    let c = Client::new(&opts.server)?;
    let v = c
        .post(
            &format!("/v1/queues/{}/ack", args.queue),
            &json!({ "receipts": args.receipts }),
        )
        .await?;
    let failed = v["failed"].as_array().cloned().unwrap_or_default();
    if opts.json {
        print_json(&v);
    } else {
        println!("acked {}", v["acked"]);
        for f in &failed {
            println!(
                "failed {}: {}",
                f["receipt"].as_str().unwrap_or_default(),
                f["error"]["message"].as_str().unwrap_or_default()
            );
        }
    }
    if !failed.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
