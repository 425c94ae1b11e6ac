//! `sluice bench push --receiver sporadic`: pacing under sporadic 429s. The receiver answers
//! `429 Retry-After: 1` to the first delivery of one message in `--refuse-every` (those whose
//! sequence number `i` has `i % 10 == 9`; each refused once) and 200 to everything else. The
//! subscription is limited to `--rate-limit` (300/s); `--count` (1,500) messages are published
//! at once. Measured: time from the first publish until every message was answered 200, and
//! goodput (distinct messages delivered per second over that time) against what the limit
//! allows once the refused requests are taken out (limit × accepted share, where the
//! accepted share is messages / (messages + the refusals the receiver makes)).
//!
//! Target (issue 19): all delivered within 10 s, goodput ≥ 90% of limit × accepted share.

use std::time::{Duration, Instant};

use serde_json::json;

use super::args::BenchArgs;
use super::pacing::{head, limit_text, secs, server_line, Bench};
use super::receivers::{Answer, Receiver};
use super::report::{extend, fail_on_errors, obj, print, progress, round, verdict, wait_until};

const ALL_WITHIN_S: f64 = 10.0;
const GOODPUT_PCT: f64 = 90.0;

pub async fn run(server: &str, json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    let n = args.count.unwrap_or(1500);
    let limit = args.rate_limit.unwrap_or(300.0);
    let every = args.refuse_every;
    let rx = Receiver::start("127.0.0.1", Answer::RefuseEveryNth { every }, true).await?;
    let bench = Bench::setup(server, &args, Some(limit), &[("bench", &rx.url)]).await?;
    let started = Instant::now();
    let (errors, last_error) = bench.api.publish_seq(&bench.queue, 0..n, args.size).await;
    let bar = progress(json_out);
    let deadline = started + Duration::from_secs_f64(args.give_up);
    wait_until(deadline, &bar, || {
        let got = rx.distinct();
        let msg = format!(
            "{got} of {n} delivered, {} refused with 429, {:.0} s",
            rx.refusals(),
            started.elapsed().as_secs_f64()
        );
        (got >= n, msg)
    })
    .await;
    bar.finish_and_clear();
    let done_at = rx.all_delivered_at(n);
    let stats = bench.stats("bench").await;
    bench.finish(&args).await;

    let delivered = rx.distinct();
    let over = done_at.map_or(started.elapsed(), |t| t - started);
    let all_delivered_s = done_at.map(|t| secs(t - started));
    let goodput = delivered as f64 / over.as_secs_f64().max(1e-3);
    let planned_refusals = n / every;
    let share = n as f64 / (n + planned_refusals) as f64;
    let ceiling = limit * share;
    let pct = goodput / ceiling * 100.0;
    let met = all_delivered_s.is_some_and(|s| s <= ALL_WITHIN_S) && pct >= GOODPUT_PCT;
    let mut out = head(&args, Some(limit));
    extend(
        &mut out,
        obj(json!({
            "messages": n,
            "delivered": delivered,
            "undelivered": n - delivered.min(n),
            "duplicates": rx.count().saturating_sub(delivered),
            "refuse_every": every,
            "refused_429": rx.refusals(),
            "requests": rx.events().len(),
            "accepted_share": round(share, 4),
            "all_delivered_s": all_delivered_s,
            "goodput_per_sec": round(goodput, 1),
            "goodput_ceiling_per_sec": round(ceiling, 1),
            "goodput_pct": round(pct, 1),
            "give_up_s": args.give_up,
            "target": "all delivered within 10 s, goodput >= 90% of limit x accepted share",
            "target_met": met,
            "server": stats,
            "errors": errors,
            "last_error": last_error,
        })),
    );
    let lines = vec![
        format!(
            "push --receiver sporadic: {n} messages, limit {}, 1 in {every} refused once with 429 Retry-After: 1",
            limit_text(Some(limit))
        ),
        format!(
            "  delivered {delivered} of {n} {} | goodput {goodput:.0}/s = {pct:.1}% of {ceiling:.0}/s (limit x accepted share {share:.3}) | {} 429s sent, {} duplicates",
            match all_delivered_s {
                Some(s) => format!("in {s:.2} s"),
                None => format!("(gave up after {:.0} s)", args.give_up),
            },
            out["refused_429"],
            out["duplicates"],
        ),
        server_line("bench", &out["server"]),
        format!(
            "target: all delivered within 10 s and goodput >= 90% of limit x accepted share: {}",
            verdict(Some(met))
        ),
    ];
    print(&out, json_out, &lines);
    fail_on_errors(&out)
}
