//! `sluice bench push --receiver outage`: an endpoint in a real outage must not be hammered,
//! and must not hold up anyone else. One queue with two subscriptions: `a` to endpoint A,
//! which answers `429 Retry-After: N` to every request for the first `--outage-seconds` N (5)
//! and 200 afterwards, and `b` to endpoint B, which always answers 200 (both on 127.0.0.1,
//! different ports). Messages are published at `--rate` (200/s) for `--duration` (N + 5 s).
//!
//! Measured: requests reaching A during the outage after its first 429. Requests already in
//! flight when A answered its first 429 arrive within milliseconds; those arriving later than
//! [`IN_FLIGHT_GRACE`] after it were sent after sluice had the answer, and count as probes.
//! B's delivery rate during the outage and after it; and the time from the outage's end until
//! A has every message published before that end.
//!
//! Targets (issue 19): at most one probe reaches A during the outage; B's rate during the
//! outage within 10% of its rate after it.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde_json::json;

use super::args::BenchArgs;
use super::pacing::{head, limit_text, secs, server_line, Bench};
use super::receivers::{Answer, Event, Receiver};
use super::report::{extend, fail_on_errors, obj, print, progress, round, verdict, wait_until};

/// Requests that reach A this soon after its first 429 were already on their way (the same
/// spacing sluice's throttle counts as one congestion event).
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(250);
const MAX_PROBES: usize = 1;
const B_RATE_TOLERANCE: f64 = 0.10;

pub async fn run(server: &str, json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    let outage = Duration::from_secs_f64(args.outage_seconds.max(0.1));
    let publish_for = Duration::from_secs_f64(args.duration_or(outage.as_secs_f64() + 5.0));
    if publish_for <= outage {
        anyhow::bail!("--duration must be longer than --outage-seconds (B's rate after the outage is measured in between)");
    }
    let rate = if args.rate > 0 { args.rate } else { 200 };
    let retry_after_s = outage.as_secs_f64().ceil() as u64;
    let a = Receiver::start(
        "127.0.0.1",
        Answer::Outage {
            seconds: outage.as_secs_f64(),
            retry_after_s,
        },
        true,
    )
    .await?;
    let b = Receiver::start("127.0.0.1", Answer::Accept, true).await?;
    let endpoints = [("a", a.url.as_str()), ("b", b.url.as_str())];
    let bench = Bench::setup(server, &args, args.rate_limit, &endpoints).await?;

    // Publish at `rate`, every 100 ms, from `started` (the outage starts then too).
    let started = Instant::now();
    a.begin(started);
    let outage_end = started + outage;
    let phases = Phases {
        started,
        outage_end,
    };
    let bar = progress(json_out);
    let Published {
        sent,
        sent_in_outage,
        errors,
        last_error,
    } = publish(&bench, &args, rate, phases, publish_for, &bar, (&*a, &*b)).await;
    let publish_end = Instant::now();
    let deadline = publish_end + Duration::from_secs_f64(args.give_up);
    wait_until(deadline, &bar, || {
        let (ga, gb) = (a.distinct(), b.distinct());
        let msg = format!("A: {ga} of {sent} delivered, B: {gb} of {sent}");
        (ga >= sent && gb >= sent, msg)
    })
    .await;
    bar.finish_and_clear();
    let (stats_a, stats_b) = (bench.stats("a").await, bench.stats("b").await);
    bench.finish(&args).await;

    let Seen {
        a_during,
        a_after_first,
        probes,
        b_during,
        b_after,
    } = Seen::read(&a.events(), &b.events(), phases, publish_end);
    let ratio = (b_after > 0.0).then(|| b_during / b_after);
    let backlog_s = a
        .all_delivered_at(sent_in_outage)
        .map(|t| secs(t.saturating_duration_since(outage_end)));
    let probes_met = probes <= MAX_PROBES;
    let b_met = ratio.is_some_and(|r| (r - 1.0).abs() <= B_RATE_TOLERANCE);
    let mut out = head(&args, args.rate_limit);
    extend(
        &mut out,
        obj(json!({
            "publish_rate": rate,
            "duration_s": secs(publish_end - started),
            "outage_seconds": outage.as_secs_f64(),
            "retry_after_s": retry_after_s,
            "messages": sent,
            "published_during_outage": sent_in_outage,
            "a_delivered": a.distinct(),
            "a_refused_429": a.refusals(),
            "a_requests_during_outage": a_during,
            "a_requests_after_first_429": a_after_first,
            "a_probes_during_outage": probes,
            "a_backlog_delivered_s": backlog_s,
            "b_delivered": b.distinct(),
            "b_rate_during_outage": round(b_during, 1),
            "b_rate_after_outage": round(b_after, 1),
            "b_rate_ratio": ratio.map(|r| round(r, 3)),
            "target": "at most 1 probe reaches A during the outage; B's rate during the outage within 10% of its rate after",
            "probes_target_met": probes_met,
            "b_target_met": b_met,
            "target_met": probes_met && b_met,
            "server": {"a": stats_a, "b": stats_b},
            "errors": errors,
            "last_error": last_error,
        })),
    );
    let lines = vec![
        format!(
            "push --receiver outage: {sent} messages at {rate}/s over {:.1} s to subscriptions a and b of one queue (limit {}); A answers 429 Retry-After: {retry_after_s} for {:.1} s",
            (publish_end - started).as_secs_f64(),
            limit_text(args.rate_limit),
            outage.as_secs_f64(),
        ),
        format!(
            "  A during the outage: {a_during} requests, {a_after_first} after its first 429, {probes} of them later than {} ms after it (probes)",
            IN_FLIGHT_GRACE.as_millis()
        ),
        format!(
            "  A's backlog ({sent_in_outage} messages published during the outage): {}",
            backlog_s.map_or(
                format!("not all delivered within {} s", args.give_up),
                |s| format!("delivered {s:.2} s after the outage ended")
            )
        ),
        format!(
            "  B: {b_during:.1}/s during the outage, {b_after:.1}/s after (ratio {})",
            ratio.map_or("-".into(), |r| format!("{r:.3}"))
        ),
        server_line("a", &out["server"]["a"]),
        server_line("b", &out["server"]["b"]),
        format!(
            "target: at most one probe to A during the outage: {}; B unaffected (within 10%): {}",
            verdict(Some(probes_met)),
            verdict(ratio.map(|_| b_met))
        ),
    ];
    print(&out, json_out, &lines);
    fail_on_errors(&out)
}

/// When the run and the outage began (together), and when the outage ended.
#[derive(Clone, Copy)]
struct Phases {
    started: Instant,
    outage_end: Instant,
}

/// What was published: in all, and before the outage ended.
struct Published {
    sent: u64,
    sent_in_outage: u64,
    errors: u64,
    last_error: Option<String>,
}

/// Publish at `rate`, every 100 ms, from `started` for `publish_for`, showing what A and B
/// received meanwhile.
async fn publish(
    bench: &Bench,
    args: &BenchArgs,
    rate: u64,
    Phases {
        started,
        outage_end,
    }: Phases,
    publish_for: Duration,
    bar: &ProgressBar,
    (a, b): (&Receiver, &Receiver),
) -> Published {
    let (mut sent, mut sent_in_outage, mut errors, mut last_error) = (0u64, 0u64, 0u64, None);
    let mut tick = 0u32;
    while started.elapsed() < publish_for {
        tick += 1;
        let at = started + Duration::from_millis(100) * tick;
        let due = (rate as f64 * (at - started).as_secs_f64()) as u64;
        if due > sent {
            let (e, l) = bench
                .api
                .publish_seq(&bench.queue, sent..due, args.size)
                .await;
            errors += e;
            last_error = l.or(last_error);
            sent = due;
        }
        if Instant::now() < outage_end {
            sent_in_outage = sent;
        }
        bar.set_message(format!(
            "published {sent}; A: {} delivered, {} refused; B: {} delivered",
            a.count(),
            a.refusals(),
            b.count()
        ));
        tokio::time::sleep_until(at.into()).await;
    }
    Published {
        sent,
        sent_in_outage,
        errors,
        last_error,
    }
}

/// What the two endpoints saw.
struct Seen {
    /// Requests reaching A during the outage; after its first 429; and later than
    /// [`IN_FLIGHT_GRACE`] after it (probes).
    a_during: usize,
    a_after_first: usize,
    probes: usize,
    /// B's deliveries a second during the outage, and between its end and the last publish.
    b_during: f64,
    b_after: f64,
}

impl Seen {
    fn read(
        ea: &[Event],
        eb: &[Event],
        Phases {
            started,
            outage_end,
        }: Phases,
        publish_end: Instant,
    ) -> Seen {
        let first_429 = ea.iter().find(|e| e.status == 429).map(|e| e.at);
        let in_outage = |e: &&Event| e.at < outage_end;
        let after = |from: Instant| ea.iter().filter(in_outage).filter(|e| e.at > from).count();
        let b_ok = |from: Instant, to: Instant| {
            eb.iter()
                .filter(|e| e.status == 200 && e.at >= from && e.at < to)
                .count() as f64
        };
        Seen {
            a_during: ea.iter().filter(in_outage).count(),
            a_after_first: first_429.map_or(0, after),
            probes: first_429.map_or(0, |t| after(t + IN_FLIGHT_GRACE)),
            b_during: b_ok(started, outage_end) / (outage_end - started).as_secs_f64(),
            b_after: b_ok(outage_end, publish_end)
                / (publish_end - outage_end).as_secs_f64().max(1e-3),
        }
    }
}
