//! The figures and output every scenario shares: latency histograms (microseconds), the bench
//! process's own CPU time, rounding, the progress line shown while a run waits, printing a
//! report, and the exit status. Depends on nothing else in `bench`.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use serde_json::Value;

/// Microseconds, 1 µs to 100 s, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("bounds")
}

/// Microseconds as milliseconds with two decimals.
pub fn ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

/// `x` rounded to `places` decimals (for the JSON report: no `127024.6304`).
pub fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// CPU seconds (user + system) this process has used so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A one-line progress display on stderr, shown only to a person (a terminal, no `--json`).
pub fn progress(json_out: bool) -> ProgressBar {
    if json_out || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new_spinner();
    b.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("template"));
    b.enable_steady_tick(Duration::from_millis(200));
    b
}

/// Check `done` every 50 ms until it says so or `deadline` passes; `done` also gives the
/// progress line. Returns whether it was done in time.
pub async fn wait_until(
    deadline: Instant,
    bar: &ProgressBar,
    mut done: impl FnMut() -> (bool, String),
) -> bool {
    loop {
        let (ok, msg) = done();
        bar.set_message(msg);
        if ok {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// "met" / "NOT met" / "no figure" for a report line.
pub fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "no figure",
    }
}

/// A JSON number, or `-` when absent, for a report line.
pub fn or_dash(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{x}"),
        None => "-".into(),
    }
}

/// Print a run's report: the JSON object with `--json`, else the lines for people.
pub fn print(out: &Value, json_out: bool, lines: &[String]) {
    if json_out {
        println!("{out}");
    } else {
        for l in lines {
            println!("{l}");
        }
    }
}

/// After the report is printed: a run in which requests failed ends with an error, so the
/// process exits non-zero (scripts and CI must not take a broken run's figures as a result).
pub fn fail_on_errors(out: &Value) -> anyhow::Result<()> {
    let errors = out["errors"].as_u64().unwrap_or(0);
    if errors == 0 {
        return Ok(());
    }
    match out["last_error"].as_str() {
        Some(e) => anyhow::bail!("{errors} requests failed (last: {e})"),
        None => anyhow::bail!("{errors} requests failed"),
    }
}

/// Add `fields` to the JSON object `out`.
pub fn extend(out: &mut Value, fields: serde_json::Map<String, Value>) {
    if let Some(o) = out.as_object_mut() {
        o.extend(fields);
    }
}

/// The one-line report of a push or timers run, for people.
pub fn delivery_line(out: &Value) -> String {
    let f = |k: &str| out[k].as_f64().unwrap_or(0.0);
    format!(
        "{}: {} deliveries, {:.0} /s at the receiver{} | {} p50 {} ms p90 {} ms p99 {} ms max {} ms | missing {}",
        out["scenario"].as_str().unwrap_or_default(),
        out["messages"],
        f("msgs_per_sec"),
        out["created_per_sec"]
            .as_f64()
            .map(|c| format!(" ({c:.0} timers created /s)"))
            .unwrap_or_default(),
        out["latency"].as_str().unwrap_or_default(),
        f("p50_ms"),
        f("p90_ms"),
        f("p99_ms"),
        f("max_ms"),
        out["errors"],
    )
}

/// The fields of a JSON object (empty for anything else).
pub fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}
