//! `sluice bench timers`: timer firing lateness at receivers run by the bench on loopback (the
//! server must allow private targets). `--count` timers created over `--connections`
//! connections, all due at the same moment a few seconds ahead (or spread at `--rate` per
//! second); lateness is arrival minus due time, measured at the receiver.
//!
//! - `--hosts 1` (default): one receiver. Reports creations/s, firings/s and lateness
//!   p50/p90/p99/max against the target p99 ≤ 1 s (for a burst).
//! - `--hosts 2`: half the timers call a fast receiver on `127.0.0.1`, half a slow one on
//!   `127.0.0.2` that answers after `--slow-ms` (sluice's per-host limits key on the URL's
//!   host, and Linux routes all of 127/8 to loopback). A baseline run with the fast half alone
//!   comes first, so the report can say how much the slow host delayed the fast one (target:
//!   fast p99 at most 100 ms above the baseline's). The slow host is waited for at most
//!   `--give-up` seconds after the due time; timers it has not received by then are cancelled.
//! - `--pending`: the timers are created due in a day and left pending; only the creation rate
//!   is reported (`scripts/bench-core` measures the server's memory around it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::api::{message_body, now_us, Api};
use super::args::BenchArgs;
use super::receivers::{Answer, Receiver};
use super::report::{
    delivery_line, extend, fail_on_errors, obj, or_dash, print, progress, round, verdict,
    wait_until,
};

/// The burst target: every timer fired within 1 s of its due time (p99).
const BURST_P99_MS: f64 = 1000.0;
/// The two-host target: the slow host adds at most this to the fast host's p99.
const SLOW_HOST_BUDGET_MS: f64 = 100.0;

pub async fn run(server: &str, json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    let api = Api::new(server)?;
    let n = args.count.unwrap_or(20_000);
    if args.hosts >= 2 {
        return two_hosts(&api, json_out, &args, n).await;
    }
    let rx = Receiver::start("127.0.0.1", Answer::Accept, false).await?;
    let started = Instant::now();
    let f = create(&api, &args, n, std::slice::from_ref(&rx)).await;
    if args.pending {
        let mut out = head(&args, started, &f);
        extend(
            &mut out,
            obj(json!({"pending": f.ids.len(), "errors": f.errors, "last_error": f.last_error})),
        );
        let line = format!(
            "{} timers created and left pending (due in a day), {} creations/s, {} errors",
            f.ids.len(),
            f.created_per_sec,
            f.errors
        );
        print(&out, json_out, &[line]);
        return fail_on_errors(&out);
    }
    rx.wait_for(f.per_receiver[0], started, 300.0).await;
    let mut out = head(&args, started, &f);
    extend(&mut out, rx.figures());
    extend(
        &mut out,
        obj(json!({
            "errors": n.saturating_sub(rx.count()),
            "last_error": f.last_error,
        })),
    );
    let burst = args.rate == 0;
    let met = burst.then(|| out["p99_ms"].as_f64().unwrap_or(f64::MAX) <= BURST_P99_MS);
    extend(
        &mut out,
        obj(json!({
            "target": burst.then_some("p99 lateness <= 1000 ms"),
            "target_met": met,
        })),
    );
    let mut lines = vec![delivery_line(&out)];
    if burst {
        lines.push(format!(
            "target: p99 lateness <= 1 s (max {} ms): {}",
            or_dash(&out["max_ms"]),
            verdict(met)
        ));
    }
    print(&out, json_out, &lines);
    fail_on_errors(&out)
}

async fn two_hosts(api: &Api, json_out: bool, args: &BenchArgs, n: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    // The baseline: the fast half alone.
    let base = Receiver::start("127.0.0.1", Answer::Accept, false).await?;
    let fb = create(api, args, n.div_ceil(2), std::slice::from_ref(&base)).await;
    base.wait_for(fb.per_receiver[0], Instant::now(), 300.0)
        .await;
    // Both hosts.
    let fast = Receiver::start("127.0.0.1", Answer::Accept, false).await?;
    let delay = Duration::from_millis(args.slow_ms);
    let slow = Receiver::start("127.0.0.2", Answer::Slow { delay }, false).await?;
    let f = create(api, args, n, &[fast.clone(), slow.clone()]).await;
    fast.wait_for(f.per_receiver[0], Instant::now(), 300.0)
        .await;
    let deadline = f.due + Duration::from_secs_f64(args.give_up);
    let bar = progress(json_out);
    let want = f.per_receiver[1];
    wait_until(deadline, &bar, || {
        let got = slow.count();
        (
            got >= want,
            format!("slow host: {got} of {want} timers fired"),
        )
    })
    .await;
    bar.finish_and_clear();
    let slow_missing = f.per_receiver[1].saturating_sub(slow.count());
    if slow_missing > 0 {
        cancel_undelivered(api, args, &f, &slow).await;
    }
    let (bf, ff, sf) = (base.figures(), fast.figures(), slow.figures());
    let p99 = |m: &serde_json::Map<String, Value>| m["p99_ms"].as_f64().unwrap_or(f64::MAX);
    let delta = round(p99(&ff) - p99(&bf), 2);
    let met = delta <= SLOW_HOST_BUDGET_MS;
    let missing =
        (fb.per_receiver[0] + f.per_receiver[0]).saturating_sub(base.count() + fast.count());
    let mut slow_fields = sf;
    slow_fields.insert("undelivered".into(), json!(slow_missing));
    let mut out = head(args, started, &f);
    extend(
        &mut out,
        obj(json!({
            "slow_ms": args.slow_ms,
            "messages": fast.count() + slow.count(),
            "baseline": bf,
            "fast": ff,
            "slow": slow_fields,
            "fast_p99_delta_ms": delta,
            "target": "fast host's p99 lateness at most 100 ms above the baseline (fast host alone)",
            "target_met": met,
            "errors": fb.errors + f.errors + missing,
            "last_error": f.last_error.clone().or(fb.last_error),
        })),
    );
    let host = |name: &str, v: &Value| {
        format!(
            "{name}: {} timers fired, {} /s | lateness p50 {} ms p90 {} ms p99 {} ms max {} ms",
            v["messages"],
            or_dash(&v["msgs_per_sec"]),
            or_dash(&v["p50_ms"]),
            or_dash(&v["p90_ms"]),
            or_dash(&v["p99_ms"]),
            or_dash(&v["max_ms"]),
        )
    };
    let lines = vec![
        format!(
            "timers, two hosts ({n} timers due at once, half to a host answering after {} ms):",
            args.slow_ms
        ),
        host("  baseline, fast host alone", &out["baseline"]),
        host("  fast host (127.0.0.1)     ", &out["fast"]),
        host("  slow host (127.0.0.2)     ", &out["slow"]),
        if slow_missing > 0 {
            format!(
                "  slow host: {slow_missing} timers not fired within {} s of their due time (cancelled)",
                args.give_up
            )
        } else {
            "  slow host: every timer fired".into()
        },
        format!(
            "target: fast host's p99 at most 100 ms above the baseline: {delta:+} ms: {}",
            verdict(Some(met))
        ),
    ];
    print(&out, json_out, &lines);
    fail_on_errors(&out)
}

/// The fields every timers report starts with.
fn head(args: &BenchArgs, started: Instant, f: &Created) -> Value {
    json!({
        "scenario": "timers",
        "hosts": args.hosts,
        "connections": args.connections,
        "size": args.size,
        "batch": 1,
        "duration_s": round(started.elapsed().as_secs_f64(), 3),
        "created_per_sec": f.created_per_sec,
        "latency": "lateness: arrival minus due time",
    })
}

/// Timers created for one phase of a run.
struct Created {
    /// When they are all due.
    due: Instant,
    created_per_sec: f64,
    /// Timers created for each receiver.
    per_receiver: Vec<u64>,
    /// (sequence number, timer id) of every timer created.
    ids: Vec<(u64, String)>,
    errors: u64,
    last_error: Option<String>,
}

/// Create `n` timers over `--connections` tasks, timer `i` calling `receivers[i % len]`, all
/// due at one moment far enough ahead to create them first (or spread at `--rate`).
async fn create(api: &Api, args: &BenchArgs, n: u64, receivers: &[Arc<Receiver>]) -> Created {
    let lead_ms = match args.pending {
        true => 86_400_000,
        false => 3000 + (n / 5) as i64,
    };
    let t0 = now_us() + lead_ms * 1000;
    let due = Instant::now() + Duration::from_millis(lead_ms as u64);
    let urls: Arc<Vec<String>> = Arc::new(receivers.iter().map(|r| r.url.clone()).collect());
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(Mutex::new(Vec::with_capacity(n as usize)));
    let last_error = Arc::new(Mutex::new(None));
    let create_start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections.max(1) {
        let (api, urls, next, errors, ids, last_error) = (
            api.clone(),
            urls.clone(),
            next.clone(),
            errors.clone(),
            ids.clone(),
            last_error.clone(),
        );
        let (rate, size) = (args.rate, args.size);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let due = match rate {
                    0 => t0,
                    r => t0 + (i as i64 * 1_000_000) / r as i64,
                };
                let url = &urls[(i % urls.len() as u64) as usize];
                match api
                    .create_timer(url, due, &message_body(due, Some(i), size))
                    .await
                {
                    Ok(id) => ids.lock().push((i, id)),
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        *last_error.lock() = Some(format!("{e:#}"));
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let create_s = create_start.elapsed().as_secs_f64();
    if now_us() > t0 {
        eprintln!(
            "warning: creating the timers took longer than the lead time; lateness is overstated"
        );
    }
    let ids = std::mem::take(&mut *ids.lock());
    let mut per_receiver = vec![0; receivers.len()];
    for (i, _) in &ids {
        per_receiver[(i % receivers.len() as u64) as usize] += 1;
    }
    let last_error = last_error.lock().take();
    Created {
        due,
        created_per_sec: (n as f64 / create_s).round(),
        per_receiver,
        ids,
        errors: errors.load(Ordering::Relaxed),
        last_error,
    }
}

/// Cancel the timers of the slow host (odd sequence numbers) that have not reached it, so
/// they do not go on firing at a receiver that is gone.
async fn cancel_undelivered(api: &Api, args: &BenchArgs, f: &Created, slow: &Receiver) {
    let pending: Vec<&String> = f
        .ids
        .iter()
        .filter(|(i, _)| i % 2 == 1 && !slow.has(*i))
        .map(|(_, id)| id)
        .collect();
    futures::stream::iter(pending)
        .for_each_concurrent(args.connections.max(1), |id| api.cancel_timer(id))
        .await;
}
