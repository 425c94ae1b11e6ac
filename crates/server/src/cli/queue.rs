//! `sluice queue ...`: create (or reconfigure) a queue with every option of `PUT
//! /v1/queues/{queue}` (time to live, deduplication window and group limits included), list queues with where their messages are (their own and their
//! subscriptions' copies), show one, purge, delete.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{enc, parse_kv, Body, Client};
use super::output::{cell, config_value, out, print_json, table, thousands};
use super::ClientOpts;
use crate::human_errors::whole;

#[derive(Args, Debug)]
pub struct QueueArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(subcommand)]
    pub cmd: QueueCmd,
}

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Create a queue, or change the settings given of an existing one (others are kept).
    Create(CreateArgs),
    /// List queues with their counts (their subscriptions' copies included).
    List,
    /// Configuration and stats of one queue.
    Stats { name: String },
    /// Remove every message of a queue (and its subscriptions' undelivered copies).
    Purge { name: String },
    /// Delete a queue, its messages and its subscriptions.
    Delete { name: String },
    /// Pause a queue's consumption: receives (and push deliveries) hand out nothing;
    /// publishes are still accepted.
    Pause { name: String },
    /// Resume a paused queue's consumption.
    Resume { name: String },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// 1-80 of A-Z a-z 0-9 _ -, optionally ending in .fifo.
    pub name: String,
    /// A FIFO queue: order within a message group, deduplication (adds .fifo to the name).
    #[arg(long)]
    pub fifo: bool,
    /// Default lease of a receive, in seconds (0-43200; default 30).
    #[arg(long, value_name = "SECONDS", value_parser = whole::<u32>)]
    pub visibility_timeout: Option<u32>,
    /// Default delay of a new message, in seconds (0-31536000; default 0).
    #[arg(long, value_name = "SECONDS", value_parser = whole::<u32>)]
    pub delay: Option<u32>,
    /// How long a message is kept, in seconds (60-1209600; default 345600, 4 days).
    #[arg(long, value_name = "SECONDS", value_parser = whole::<u32>)]
    pub retention: Option<u32>,
    /// Largest message (body plus attribute names and values), in bytes (default 262144).
    #[arg(long, value_name = "BYTES", value_parser = whole::<u32>)]
    pub max_message_bytes: Option<u32>,
    /// Default long-poll wait of receives that name none, in seconds (0-20; default 0).
    #[arg(long, value_name = "SECONDS", value_parser = whole::<u32>)]
    pub receive_wait: Option<u32>,
    /// Receives after which a message moves to --dead-letter-queue (1-1000).
    #[arg(long, value_name = "COUNT", requires = "dead_letter_queue", value_parser = whole::<u32>)]
    pub max_receives: Option<u32>,
    /// The dead-letter queue (created if missing); goes with --max-receives.
    #[arg(long, value_name = "QUEUE", requires = "max_receives")]
    pub dead_letter_queue: Option<String>,
    /// Remove the dead-letter queue and --max-receives from the queue.
    #[arg(long, conflicts_with_all = ["max_receives", "dead_letter_queue"])]
    pub no_dead_letter_queue: bool,
    /// A tag, `key=value` (repeatable); the tags given replace all of the queue's tags.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub tags: Vec<(String, String)>,
    /// How long a deduplication id or Idempotency-Key is remembered, in seconds (1-86400;
    /// default 300).
    #[arg(long, value_name = "SECONDS", value_parser = whole::<u32>)]
    pub dedup_window: Option<u32>,
    /// Time to live of a message published without its own, in seconds (1-1209600; default
    /// none).
    #[arg(long, value_name = "SECONDS", value_parser = whole::<u32>)]
    pub default_ttl: Option<u32>,
    /// Remove the queue's default time to live.
    #[arg(long, conflicts_with = "default_ttl")]
    pub no_default_ttl: bool,
    /// What happens to a message whose time to live ends: drop (default) or dead-letter (to
    /// the queue's dead-letter queue).
    #[arg(long, value_name = "WHAT", value_parser = ["drop", "dead-letter", "dead_letter"])]
    pub on_expire: Option<String>,
    /// Standard queues: at most this many leased messages per message group (1-100000;
    /// default no limit).
    #[arg(long, value_name = "COUNT", value_parser = whole::<u32>)]
    pub max_in_flight_per_group: Option<u32>,
    /// Remove the limit of leased messages per message group.
    #[arg(long, conflicts_with = "max_in_flight_per_group")]
    pub no_max_in_flight_per_group: bool,
    /// Standard queues: hand each message group at most this many messages a second
    /// (1-100000; default no limit).
    #[arg(long, value_name = "PER_SECOND", value_parser = whole::<u32>)]
    pub group_rate: Option<u32>,
    /// Remove the rate limit per message group.
    #[arg(long, conflicts_with = "group_rate")]
    pub no_group_rate: bool,
}

impl CreateArgs {
    fn name(&self) -> String {
        if self.fifo && !self.name.ends_with(".fifo") {
            format!("{}.fifo", self.name)
        } else {
            self.name.clone()
        }
    }

    /// The PUT body: only the settings given.
    fn body(&self) -> Value {
        let mut b = Body::default();
        b.opt("visibility_timeout_seconds", self.visibility_timeout)
            .opt("delay_seconds", self.delay)
            .opt("retention_seconds", self.retention)
            .opt("max_message_bytes", self.max_message_bytes)
            .opt("receive_wait_seconds", self.receive_wait)
            .opt("max_receives", self.max_receives)
            .opt("dead_letter_queue", self.dead_letter_queue.clone())
            .pairs("tags", &self.tags)
            .opt("dedup_window_seconds", self.dedup_window)
            .opt("default_ttl_seconds", self.default_ttl)
            .opt(
                "on_expire",
                self.on_expire.as_ref().map(|w| w.replace('-', "_")),
            )
            .opt("max_in_flight_per_group", self.max_in_flight_per_group)
            .opt("group_rate_per_second", self.group_rate);
        if self.no_dead_letter_queue {
            b.opt("max_receives", Some(Value::Null))
                .opt("dead_letter_queue", Some(Value::Null));
        }
        if self.no_default_ttl {
            b.opt("default_ttl_seconds", Some(Value::Null));
        }
        if self.no_max_in_flight_per_group {
            b.opt("max_in_flight_per_group", Some(Value::Null));
        }
        if self.no_group_rate {
            b.opt("group_rate_per_second", Some(Value::Null));
        }
        b.value()
    }
}

pub async fn run(a: QueueArgs) -> anyhow::Result<()> {
    let c = Client::new(&a.client.server)?;
    let json = a.client.json;
    match a.cmd {
        QueueCmd::Create(args) => {
            let name = args.name();
            let q = c
                .put(&format!("/v1/queues/{}", enc(&name)), &args.body())
                .await?;
            if json {
                return print_json(&q);
            }
            out(format_args!("queue {name} ready"))?;
            print_config(&q)
        }
        QueueCmd::List => {
            let v = c.get("/v1/queues").await?;
            if json {
                return print_json(&v);
            }
            print_list(&v)
        }
        QueueCmd::Stats { name } => {
            let q = c.get(&format!("/v1/queues/{}", enc(&name))).await?;
            if json {
                return print_json(&q);
            }
            print_stats(&name, &q)?;
            print_config(&q)
        }
        QueueCmd::Purge { name } => {
            let v = c
                .post(&format!("/v1/queues/{}/purge", enc(&name)), &json!({}))
                .await?;
            if json {
                return print_json(&v);
            }
            out(format_args!(
                "purged {} messages from {name}",
                cell(&v["purged"])
            ))
        }
        QueueCmd::Delete { name } => {
            c.delete(&format!("/v1/queues/{}", enc(&name))).await?;
            if json {
                return print_json(&json!({"deleted": name}));
            }
            out(format_args!("deleted queue {name}"))
        }
        cmd @ (QueueCmd::Pause { .. } | QueueCmd::Resume { .. }) => {
            let (verb, name) = match cmd {
                QueueCmd::Pause { name } => ("pause", name),
                QueueCmd::Resume { name } => ("resume", name),
                _ => unreachable!("matched above"),
            };
            let v = c
                .post(&format!("/v1/queues/{}/{verb}", enc(&name)), &json!({}))
                .await?;
            if json {
                return print_json(&v);
            }
            out(format_args!("{name}: consumption {verb}d"))
        }
    }
}

/// `queue list`: one row per queue, its counts and totals.
fn print_list(v: &Value) -> anyhow::Result<()> {
    let mut t = table(&[
        "queue",
        "messages",
        "ready",
        "in flight",
        "delayed",
        "dead-lettered",
        "oldest (s)",
        "published",
        "acked",
    ]);
    for q in v["queues"].as_array().into_iter().flatten() {
        let (s, n) = (&q["stats"], &q["counts"]);
        t.add_row(vec![
            cell(&q["name"]),
            cell(&n["total"]),
            cell(&n["ready"]),
            cell(&n["in_flight"]),
            thousands(n["delayed"].as_u64().unwrap_or(0) + n["retrying"].as_u64().unwrap_or(0)),
            cell(&n["dead_lettered"]),
            cell(&s["oldest_ready_age_seconds"]),
            cell(&n["published"]),
            cell(&s["acked"]),
        ]);
    }
    out(t)
}

/// `queue stats`: the counts now and the totals since the server started.
fn print_stats(name: &str, q: &Value) -> anyhow::Result<()> {
    if q["paused"] == true {
        out(format_args!(
            "consumption paused since {} (sluice queue resume {name})",
            q["paused_at"].as_str().unwrap_or("?")
        ))?;
    }
    let mut t = table(&["", "messages"]);
    let n = &q["counts"];
    for k in [
        "total",
        "ready",
        "in_flight",
        "delayed",
        "retrying",
        "dead_lettered",
    ] {
        t.add_row(vec![k.replace('_', " "), cell(&n[k])]);
    }
    let subs = &n["subscriptions"];
    if subs["count"].as_u64().unwrap_or(0) > 0 {
        t.add_row(vec![
            format!("of which subscriptions' copies ({})", cell(&subs["count"])),
            format!(
                "{} ready, {} in flight, {} retrying",
                cell(&subs["ready"]),
                cell(&subs["in_flight"]),
                cell(&subs["retrying"])
            ),
        ]);
    }
    if let Some(held) = n["dead_letters_held"].as_object() {
        t.add_row(vec![
            "dead letters held".into(),
            format!(
                "{} (of {})",
                cell(&held["messages"]),
                cell(&held["sources"])
            ),
        ]);
    }
    t.add_row(vec![
        "oldest ready (s)".into(),
        cell(&q["stats"]["oldest_ready_age_seconds"]),
    ]);
    t.add_row(vec![
        "published (since start)".into(),
        cell(&q["counts"]["published"]),
    ]);
    for k in [
        "received",
        "acked",
        "nacked",
        "expired",
        "visibility_timeouts",
        "dead_lettered_total",
        "redriven",
    ] {
        t.add_row(vec![
            format!("{} (since start)", k.replace('_', " ")),
            cell(&q["stats"][k]),
        ]);
    }
    out(t)
}

fn print_config(q: &Value) -> anyhow::Result<()> {
    let mut t = table(&["config", "value"]);
    for (k, v) in q["config"].as_object().into_iter().flatten() {
        t.add_row(vec![k.clone(), config_value(k, v)]);
    }
    out(t)
}
