//! `sluice bench push --receiver token-bucket`: pacing against an endpoint with a hard rate
//! limit. The receiver accepts `--allow` N requests a second (a token bucket of N tokens a
//! second holding at most N, starting full) and answers `429 Retry-After: 1` above that. The
//! subscription has no rate limit (unless `--rate-limit`), and a backlog of N × (duration + 2)
//! messages is published at the start, so sluice has to find the endpoint's rate itself. The
//! run lasts `--duration` (20 s); then the queue is deleted.
//!
//! Measured per whole second from the first publish: requests answered 200 and 429. From
//! them: the first second in which ≥ 80% of N were delivered, the mean delivered rate in the
//! steady state (from 10 s on; the second half of a shorter run), and the share of requests
//! refused in the steady state. Targets (issue 19): 80% of N reached within 10 s, and held in
//! the steady state (a sender that collapses after the bucket's first burst would otherwise
//! pass), fewer than 10% of requests refused in the steady state.

use std::time::{Duration, Instant};

use serde_json::json;

use super::args::BenchArgs;
use super::pacing::{head, limit_text, server_line, Bench};
use super::receivers::{per_second, Answer, Receiver};
use super::report::{extend, fail_on_errors, obj, print, progress, round, verdict, wait_until};

const REACH_PCT: f64 = 80.0;
const REACH_WITHIN_S: usize = 10;
const STEADY_FROM_S: usize = 10;
const STEADY_429_PCT: f64 = 10.0;

pub async fn run(server: &str, json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    let allow = args.allow;
    let seconds = args.duration_or(20.0).round().max(1.0) as usize;
    let n = args.count.unwrap_or(allow * (seconds as u64 + 2));
    let answer = Answer::TokenBucket {
        per_sec: allow as f64,
    };
    let rx = Receiver::start("127.0.0.1", answer, true).await?;
    let bench = Bench::setup(server, &args, args.rate_limit, &[("bench", &rx.url)]).await?;
    let started = Instant::now();
    let (errors, last_error) = bench.api.publish_seq(&bench.queue, 0..n, args.size).await;
    let bar = progress(json_out);
    let end = started + Duration::from_secs(seconds as u64);
    wait_until(end, &bar, || {
        let msg = format!(
            "{} delivered, {} refused with 429, {:.0} of {seconds} s",
            rx.count(),
            rx.refusals(),
            started.elapsed().as_secs_f64()
        );
        (false, msg)
    })
    .await;
    bar.finish_and_clear();
    let stats = bench.stats("bench").await;
    bench.finish(&args).await;

    let (ok, refused) = per_second(&rx.events(), started, seconds);
    let floor = allow as f64 * REACH_PCT / 100.0;
    let first_80pct_s = ok.iter().position(|&d| d as f64 >= floor).map(|s| s + 1);
    let steady_from = STEADY_FROM_S.min(seconds / 2);
    let steady_ok: u64 = ok[steady_from..].iter().sum();
    let steady_refused: u64 = refused[steady_from..].iter().sum();
    let steady_secs = (seconds - steady_from).max(1) as f64;
    let steady_rate = steady_ok as f64 / steady_secs;
    let steady_total = steady_ok + steady_refused;
    let steady_429_pct =
        (steady_total > 0).then(|| steady_refused as f64 / steady_total as f64 * 100.0);
    let reach_met = first_80pct_s.is_some_and(|s| s <= REACH_WITHIN_S);
    let rate_met = steady_rate >= floor;
    let refused_met = steady_429_pct.is_some_and(|p| p < STEADY_429_PCT);
    let met = reach_met && rate_met && refused_met;
    let mut out = head(&args, args.rate_limit);
    extend(
        &mut out,
        obj(json!({
            "allow_per_sec": allow,
            "duration_s": seconds,
            "messages": n,
            "delivered": rx.count(),
            "refused_429": rx.refusals(),
            "delivered_per_second": ok,
            "refused_per_second": refused,
            "first_80pct_s": first_80pct_s,
            "steady_from_s": steady_from,
            "steady_delivered_per_sec": round(steady_rate, 1),
            "steady_delivered_pct": round(steady_rate / allow as f64 * 100.0, 1),
            "steady_429_pct": steady_429_pct.map(|p| round(p, 1)),
            "target": "80% of allow delivered per second within 10 s and held from 10 s on; < 10% of requests refused from 10 s on",
            "reach_target_met": reach_met,
            "steady_rate_target_met": rate_met,
            "steady_429_target_met": refused_met,
            "target_met": met,
            "server": stats,
            "errors": errors,
            "last_error": last_error,
        })),
    );
    let list = |v: &[u64]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let lines = vec![
        format!(
            "push --receiver token-bucket: endpoint allows {allow}/s (429 Retry-After: 1 above), subscription limit {}, {seconds} s on a backlog of {n}",
            limit_text(args.rate_limit)
        ),
        format!("  delivered per second: {}", list(&ok)),
        format!("  429s per second:      {}", list(&refused)),
        format!(
            "  first second with >= 80% of {allow}: {} | from {steady_from} s on: {steady_rate:.1}/s delivered ({:.1}% of {allow}), {} of requests refused",
            first_80pct_s.map_or("never".into(), |s| format!("{s} s")),
            steady_rate / allow as f64 * 100.0,
            steady_429_pct.map_or("-".into(), |p| format!("{p:.1}%")),
        ),
        server_line("bench", &out["server"]),
        format!(
            "target: 80% of {allow}/s within 10 s: {}; held from {steady_from} s on: {}; < 10% refused from {steady_from} s on: {}",
            verdict(Some(reach_met)),
            verdict(Some(rate_met)),
            verdict(steady_429_pct.map(|_| refused_met)),
        ),
    ];
    print(&out, json_out, &lines);
    fail_on_errors(&out)
}
