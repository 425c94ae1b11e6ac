//! `sluice sub ...`: a queue's push subscriptions: list them with their counters, create (or
//! replace) one with every option of `PUT /v1/queues/{queue}/subscriptions/{name}`, show one,
//! delete one, pause, resume and enable one, and show its recent deliveries with their attempts (or one message's attempts).

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{enc, parse_kv, Body, Client};
use super::output::{cell, out, print_json, table};
use super::ClientOpts;
use crate::human_errors::{non_negative, whole};

#[derive(Args, Debug)]
pub struct SubArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(subcommand)]
    pub cmd: SubCmd,
}

#[derive(Subcommand, Debug)]
pub enum SubCmd {
    /// A queue's subscriptions with their delivery counters.
    List { queue: String },
    /// Create a subscription (the queue too, if missing), or replace one: every setting not
    /// given takes its default. A new subscription receives the queue's whole backlog.
    Create(Box<CreateArgs>),
    /// One subscription: settings and counters.
    Get { queue: String, name: String },
    /// Delete a subscription; its undelivered copies are dropped.
    Delete { queue: String, name: String },
    /// Pause a subscription: nothing is sent to it, its messages wait (within retention).
    Pause { queue: String, name: String },
    /// Resume a paused subscription: what waited goes out.
    Resume { queue: String, name: String },
    /// Enable a subscription disabled after its endpoint failed too long (its circuit
    /// breaker starts closed again).
    Enable { queue: String, name: String },
    /// Recent deliveries of a subscription, newest first, with their attempts (or, with
    /// --message, the attempts of one message).
    Attempts(AttemptsArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    pub queue: String,
    /// 1-64 of A-Z a-z 0-9 _ -.
    pub name: String,
    /// Where to deliver: an absolute http(s) URL.
    #[arg(long)]
    pub url: String,
    /// POST (default), PUT, PATCH, GET or DELETE.
    #[arg(long)]
    pub method: Option<String>,
    /// An extra request header, `name=value` (repeatable; at most 32).
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_kv)]
    pub headers: Vec<(String, String)>,
    /// Time limit of one attempt, in seconds (0.1-300; default 30).
    #[arg(long, value_name = "SECONDS", value_parser = non_negative)]
    pub timeout: Option<f64>,
    /// Attempts before a message is dead-lettered (1-100; default 10).
    #[arg(long, value_name = "COUNT", value_parser = whole::<u32>)]
    pub max_attempts: Option<u32>,
    /// Delay before the second attempt, in seconds (default 1).
    #[arg(long, value_name = "SECONDS", value_parser = non_negative)]
    pub backoff_initial: Option<f64>,
    /// Each later delay is this many times the previous one (default 2).
    #[arg(long, value_name = "FACTOR", value_parser = non_negative)]
    pub backoff_multiplier: Option<f64>,
    /// Longest delay between attempts, in seconds (default 3600).
    #[arg(long, value_name = "SECONDS", value_parser = non_negative)]
    pub backoff_max: Option<f64>,
    /// Use the exact delays (by default each is spread over [d/2, d]).
    #[arg(long)]
    pub no_jitter: bool,
    /// Requests per second at most (default: no limit; 429s slow it down anyway).
    #[arg(long, value_name = "PER_SECOND", value_parser = non_negative)]
    pub rate_limit: Option<f64>,
    /// Requests in flight at once (1-1000; default 10).
    #[arg(long, value_name = "COUNT", value_parser = whole::<u32>)]
    pub concurrency: Option<u32>,
    /// Send up to this many messages per request as one JSON array (1-1000; default 1).
    #[arg(long, value_name = "COUNT", value_parser = whole::<u32>)]
    pub batch_max: Option<u32>,
    /// Send a partial batch this long after its first message, in milliseconds (0-3600000).
    #[arg(long, value_name = "MS", value_parser = whole::<u64>)]
    pub batch_wait_ms: Option<u64>,
    /// Sign requests (Standard Webhooks): `whsec_` + base64 of the key.
    #[arg(long, value_name = "SECRET")]
    pub signing_secret: Option<String>,
    /// Consecutive failed requests that open the circuit breaker (1-10000; default 20).
    #[arg(long, value_name = "COUNT", value_parser = whole::<u32>)]
    pub circuit_failures: Option<u32>,
    /// Wait before an open circuit's first probe, in seconds (0.1-86400; default 5).
    #[arg(long, value_name = "SECONDS", value_parser = non_negative)]
    pub probe_initial: Option<f64>,
    /// Longest wait between probes, in seconds (0.1-86400; default 300).
    #[arg(long, value_name = "SECONDS", value_parser = non_negative)]
    pub probe_max: Option<f64>,
    /// Disable the subscription after its endpoint failed this long without a success, in
    /// seconds (1-7776000; default 432000, 5 days).
    #[arg(long, value_name = "SECONDS", value_parser = whole::<u64>)]
    pub disable_after: Option<u64>,
    /// POST each message given up (dead-lettered) to this URL, with its last attempt.
    #[arg(long, value_name = "URL")]
    pub failure_callback: Option<String>,
}

impl CreateArgs {
    fn body(&self) -> Value {
        let mut backoff = Body::default();
        backoff
            .opt("initial_seconds", self.backoff_initial)
            .opt("multiplier", self.backoff_multiplier)
            .opt("max_seconds", self.backoff_max)
            .opt("jitter", self.no_jitter.then_some(false));
        let mut batch = Body::default();
        batch
            .opt("max_messages", self.batch_max)
            .opt("max_wait_ms", self.batch_wait_ms);
        let mut breaker = Body::default();
        breaker
            .opt("failures", self.circuit_failures)
            .opt("probe_initial_seconds", self.probe_initial)
            .opt("probe_max_seconds", self.probe_max);
        let nested = |b: &mut Body| (!b.0.is_empty()).then(|| b.value());
        Body::default()
            .opt("url", Some(self.url.clone()))
            .opt("method", self.method.clone())
            .pairs("headers", &self.headers)
            .opt("timeout_seconds", self.timeout)
            .opt("max_attempts", self.max_attempts)
            .opt("rate_limit_per_second", self.rate_limit)
            .opt("concurrency", self.concurrency)
            .opt("signing_secret", self.signing_secret.clone())
            .opt("backoff", nested(&mut backoff))
            .opt("batch", nested(&mut batch))
            .opt("circuit_breaker", nested(&mut breaker))
            .opt("disable_after_seconds", self.disable_after)
            .opt("failure_callback", self.failure_callback.clone())
            .value()
    }
}

#[derive(Args, Debug)]
pub struct AttemptsArgs {
    pub queue: String,
    /// The subscription (not needed with --message).
    #[arg(required_unless_present = "message")]
    pub name: Option<String>,
    /// The attempts of this message id instead.
    #[arg(long, value_name = "ID")]
    pub message: Option<String>,
    /// Messages to show (1-1000).
    #[arg(short = 'n', long, default_value_t = 20, value_parser = whole::<usize>)]
    pub limit: usize,
    /// Only messages whose latest attempt did not deliver.
    #[arg(long)]
    pub failing: bool,
}

fn sub_path(queue: &str, name: &str) -> String {
    format!("/v1/queues/{}/subscriptions/{}", enc(queue), enc(name))
}

pub async fn run(a: SubArgs) -> anyhow::Result<()> {
    let c = Client::new(&a.client.server)?;
    let json = a.client.json;
    match a.cmd {
        SubCmd::List { queue } => {
            let v = c
                .get(&format!("/v1/queues/{}/subscriptions", enc(&queue)))
                .await?;
            if json {
                return print_json(&v);
            }
            let subs = v["subscriptions"].as_array().cloned().unwrap_or_default();
            if subs.is_empty() {
                return out(format_args!("{queue} has no subscriptions"));
            }
            let mut t = table(&[
                "subscription",
                "endpoint",
                "backlog",
                "delivered",
                "retried",
                "throttled",
                "failed",
            ]);
            for s in &subs {
                let st = &s["stats"];
                let backlog: u64 = ["ready", "delayed", "in_flight"]
                    .iter()
                    .map(|k| st[k].as_u64().unwrap_or(0))
                    .sum();
                t.add_row(vec![
                    cell(&s["name"]),
                    format!("{} {}", cell(&s["method"]), cell(&s["url"])),
                    cell(&json!(backlog)),
                    cell(&st["delivered"]),
                    cell(&st["retried"]),
                    cell(&st["throttled"]),
                    cell(&st["failed"]),
                ]);
            }
            out(t)
        }
        SubCmd::Create(args) => {
            let v = c
                .put(&sub_path(&args.queue, &args.name), &args.body())
                .await?;
            if json {
                return print_json(&v);
            }
            out(format_args!(
                "subscription {} of {} delivers to {} {}",
                args.name,
                args.queue,
                cell(&v["method"]),
                cell(&v["url"])
            ))?;
            show(&v)
        }
        SubCmd::Get { queue, name } => {
            let v = c.get(&sub_path(&queue, &name)).await?;
            if json {
                return print_json(&v);
            }
            show(&v)
        }
        SubCmd::Delete { queue, name } => {
            c.delete(&sub_path(&queue, &name)).await?;
            if json {
                return print_json(&json!({"deleted": format!("{queue}/{name}")}));
            }
            out(format_args!("deleted subscription {name} of {queue}"))
        }
        SubCmd::Pause { queue, name } => state(&c, json, &queue, &name, "pause").await,
        SubCmd::Resume { queue, name } => state(&c, json, &queue, &name, "resume").await,
        SubCmd::Enable { queue, name } => state(&c, json, &queue, &name, "enable").await,
        SubCmd::Attempts(args) => attempts(&c, json, args).await,
    }
}

/// `POST …/{action}` (pause, resume) and the state it left.
async fn state(
    c: &Client,
    json: bool,
    queue: &str,
    name: &str,
    action: &str,
) -> anyhow::Result<()> {
    let v = c
        .post(&format!("{}/{action}", sub_path(queue, name)), &json!({}))
        .await?;
    if json {
        return print_json(&v);
    }
    out(format_args!(
        "subscription {name} of {queue} is {}",
        cell(&v["state"])
    ))
}

/// A subscription's settings and counters as two tables.
fn show(v: &Value) -> anyhow::Result<()> {
    let mut t = table(&["setting", "value"]);
    for k in [
        "url",
        "method",
        "headers",
        "timeout_seconds",
        "max_attempts",
        "backoff",
        "rate_limit_per_second",
        "concurrency",
        "batch",
        "signing_secret",
        "dead_letter_queue",
        "state",
        "paused_at",
        "disabled_reason",
        "circuit_breaker",
        "disable_after_seconds",
    ] {
        t.add_row(vec![k.to_string(), cell(&v[k])]);
    }
    out(t)?;
    let mut s = table(&["stat", "value"]);
    for (k, val) in v["stats"].as_object().into_iter().flatten() {
        s.add_row(vec![k.replace('_', " "), cell(val)]);
    }
    out(s)
}

async fn attempts(c: &Client, json: bool, a: AttemptsArgs) -> anyhow::Result<()> {
    let messages: Vec<Value> = match (&a.message, &a.name) {
        (Some(id), _) => {
            let v = c
                .get(&format!(
                    "/v1/queues/{}/messages/{}/attempts",
                    enc(&a.queue),
                    enc(id)
                ))
                .await?;
            if json {
                return print_json(&v);
            }
            vec![json!({"message_id": id, "attempts": v["attempts"]})]
        }
        (None, Some(name)) => {
            let mut path = format!("{}/attempts?limit={}", sub_path(&a.queue, name), a.limit);
            if a.failing {
                path.push_str("&failing=true");
            }
            let v = c.get(&path).await?;
            if json {
                return print_json(&v);
            }
            v["messages"].as_array().cloned().unwrap_or_default()
        }
        (None, None) => unreachable!("clap requires one"),
    };
    if messages.is_empty() {
        return out("no attempts recorded");
    }
    let mut t = table(&[
        "message", "attempt", "at", "outcome", "status", "ms", "error",
    ]);
    for m in &messages {
        for at in m["attempts"].as_array().into_iter().flatten() {
            t.add_row(vec![
                cell(&m["message_id"]),
                cell(&at["attempt"]),
                cell(&at["at"]),
                cell(&at["outcome"]),
                cell(&at["status"]),
                cell(&at["duration_ms"]),
                cell(&at["error"]),
            ]);
        }
    }
    out(t)
}
