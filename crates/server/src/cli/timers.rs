//! `sluice timer ...` (one-shot timers: create, get, cancel, list) and `sluice schedule ...`
//! (cron schedules: put, get, delete, list), over `/v1/timers` and `/v1/schedules`. Both
//! target a URL (an HTTP call) or a queue (a published message).

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{enc, parse_kv, Body, Client};
use super::output::{cell, out, print_json, table};
use super::ClientOpts;
use crate::human_errors::{non_negative, whole};

#[derive(Args, Debug)]
pub struct TimerArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(subcommand)]
    pub cmd: TimerCmd,
}

#[derive(Subcommand, Debug)]
pub enum TimerCmd {
    /// Call a URL (or publish to a queue) once, after --delay or at --at.
    Create(CreateTimer),
    /// A timer's status and attempts.
    Get { id: String },
    /// Cancel a pending timer.
    Cancel { id: String },
    /// Timers by status: pending (due soonest first) or finished ones (newest first).
    List {
        /// pending, succeeded, failed or cancelled.
        #[arg(long, default_value = "pending")]
        status: String,
        /// Timers to show (1-1000).
        #[arg(short = 'n', long, default_value_t = 100, value_parser = whole::<usize>)]
        limit: usize,
    },
}

/// What a timer or a schedule's firing does: call a URL, or publish to a queue.
#[derive(Args, Debug)]
pub struct Target {
    /// Call this absolute http(s) URL.
    #[arg(long, required_unless_present = "queue", conflicts_with = "queue")]
    pub url: Option<String>,
    /// Publish the body to this queue instead of calling a URL.
    #[arg(long)]
    pub queue: Option<String>,
    /// POST (default), PUT, PATCH, GET or DELETE.
    #[arg(long)]
    pub method: Option<String>,
    /// A request header, `name=value` (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_kv)]
    pub headers: Vec<(String, String)>,
    /// The request (or message) body: sent as is.
    #[arg(long)]
    pub body: Option<String>,
    /// A message attribute for a queue target, `key=value` (repeatable).
    #[arg(long = "attribute", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub attributes: Vec<(String, String)>,
    /// Attempts before giving up (1-100; default 10).
    #[arg(long, value_name = "COUNT", value_parser = whole::<u32>)]
    pub max_attempts: Option<u32>,
}

impl Target {
    fn body(&self) -> Body {
        let mut b = Body::default();
        b.opt("url", self.url.clone())
            .opt("queue", self.queue.clone())
            .opt("method", self.method.clone())
            .opt("body", self.body.clone())
            .opt("max_attempts", self.max_attempts)
            .pairs("headers", &self.headers)
            .pairs("attributes", &self.attributes);
        b
    }
}

#[derive(Args, Debug)]
pub struct CreateTimer {
    #[command(flatten)]
    pub target: Target,
    /// Due this many seconds from now (0-31536000; fractions allowed).
    #[arg(long, value_name = "SECONDS", value_parser = non_negative, conflicts_with = "at")]
    pub delay: Option<f64>,
    /// Due at this RFC 3339 time (2026-11-23T10:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(subcommand)]
    pub cmd: ScheduleCmd,
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCmd {
    /// Create or replace a cron schedule.
    Put(PutSchedule),
    /// One schedule: its next and last firing, how often it fired.
    Get { name: String },
    /// Delete a schedule (firings already made still run).
    Delete { name: String },
    /// Every schedule.
    List,
    /// Pause a schedule: nothing fires until it is resumed.
    Pause { name: String },
    /// Resume a paused schedule (firings missed meanwhile follow its catch_up policy).
    Resume { name: String },
}

#[derive(Args, Debug)]
pub struct PutSchedule {
    pub name: String,
    /// 5 fields (`min hour day month weekday`), 6 with seconds first, or @hourly, @daily...
    #[arg(long)]
    pub cron: String,
    /// IANA time zone of the cron expression (default UTC), e.g. Europe/Berlin.
    #[arg(long)]
    pub timezone: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

fn timer_row(t: &Value) -> Vec<String> {
    let last = t["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .map(|a| match a["status"].as_u64() {
            Some(s) => format!("HTTP {s}"),
            None => cell(&a["error"]),
        })
        .unwrap_or_else(|| "–".into());
    vec![
        cell(&t["id"]),
        cell(&t["status"]),
        cell(&t["due_at"]),
        cell(&json!(t["attempts"].as_array().map_or(0, |a| a.len()))),
        last,
    ]
}

const TIMER_HEADER: [&str; 5] = ["timer", "status", "due", "attempts", "last result"];

pub async fn timer(a: TimerArgs) -> anyhow::Result<()> {
    let c = Client::new(&a.client.server)?;
    let v = match a.cmd {
        TimerCmd::Create(t) => {
            let body = t
                .target
                .body()
                .opt("delay_seconds", t.delay)
                .opt("at", t.at)
                .value();
            c.post("/v1/timers", &body).await?
        }
        TimerCmd::Get { id } => c.get(&format!("/v1/timers/{}", enc(&id))).await?,
        TimerCmd::Cancel { id } => c.delete(&format!("/v1/timers/{}", enc(&id))).await?,
        TimerCmd::List { status, limit } => {
            let v = c
                .get(&format!("/v1/timers?status={}&limit={limit}", enc(&status)))
                .await?;
            if a.client.json {
                return print_json(&v);
            }
            out(format_args!(
                "{} pending, {} finished",
                cell(&v["pending"]),
                cell(&v["finished"])
            ))?;
            let mut t = table(&TIMER_HEADER);
            for timer in v["timers"].as_array().into_iter().flatten() {
                t.add_row(timer_row(timer));
            }
            return out(t);
        }
    };
    if a.client.json {
        return print_json(&v);
    }
    let mut t = table(&TIMER_HEADER);
    t.add_row(timer_row(&v));
    out(t)
}

fn schedule_row(s: &Value) -> Vec<String> {
    let target = match s["url"].as_str() {
        Some(url) => format!("{} {url}", cell(&s["method"])),
        None => format!("publish to {}", cell(&s["queue"])),
    };
    vec![
        cell(&s["name"]),
        format!("{} ({})", cell(&s["cron"]), cell(&s["timezone"])),
        target,
        if s["paused"] == true {
            "paused".into()
        } else {
            cell(&s["next_fire_at"])
        },
        cell(&s["last_fired_at"]),
        cell(&s["fired"]),
        cell(&s["missed"]),
    ]
}

const SCHEDULE_HEADER: [&str; 7] = [
    "schedule", "cron", "target", "next", "last", "fired", "missed",
];

pub async fn schedule(a: ScheduleArgs) -> anyhow::Result<()> {
    let c = Client::new(&a.client.server)?;
    let path = |n: &str| format!("/v1/schedules/{}", enc(n));
    let rows: Vec<Value> = match a.cmd {
        ScheduleCmd::Put(p) => {
            let body = p
                .target
                .body()
                .opt("cron", Some(p.cron))
                .opt("timezone", p.timezone)
                .value();
            let v = c.put(&path(&p.name), &body).await?;
            if a.client.json {
                return print_json(&v);
            }
            vec![v]
        }
        ScheduleCmd::Get { name } => {
            let v = c.get(&path(&name)).await?;
            if a.client.json {
                return print_json(&v);
            }
            vec![v]
        }
        cmd @ (ScheduleCmd::Pause { .. } | ScheduleCmd::Resume { .. }) => {
            let (verb, name) = match cmd {
                ScheduleCmd::Pause { name } => ("pause", name),
                ScheduleCmd::Resume { name } => ("resume", name),
                _ => unreachable!("matched above"),
            };
            let v = c
                .post(&format!("{}/{verb}", path(&name)), &json!({}))
                .await?;
            if a.client.json {
                return print_json(&v);
            }
            return out(format_args!("schedule {name} {verb}d"));
        }
        ScheduleCmd::Delete { name } => {
            c.delete(&path(&name)).await?;
            if a.client.json {
                return print_json(&json!({"deleted": name}));
            }
            return out(format_args!("deleted schedule {name}"));
        }
        ScheduleCmd::List => {
            let v = c.get("/v1/schedules").await?;
            if a.client.json {
                return print_json(&v);
            }
            v["schedules"].as_array().cloned().unwrap_or_default()
        }
    };
    if rows.is_empty() {
        return out("no schedules");
    }
    let mut t = table(&SCHEDULE_HEADER);
    for s in &rows {
        t.add_row(schedule_row(s));
    }
    out(t)
}
