//! The figures every scenario shares: latency histograms (microseconds), the bench process's
//! own CPU time, and rounding for the printed report. Depends on nothing else in `bench`.

use hdrhistogram::Histogram;

/// Microseconds, 1 µs to 100 s, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("bounds")
}

/// CPU seconds (user + system) this process has used so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// After the report is printed: a run in which requests failed ends with an error, so the
/// process exits non-zero (scripts and CI must not take a broken run's figures as a result).
pub fn fail_on_errors(out: &serde_json::Value) -> anyhow::Result<()> {
    let errors = out["errors"].as_u64().unwrap_or(0);
    if errors == 0 {
        return Ok(());
    }
    match out["last_error"].as_str() {
        Some(e) => anyhow::bail!("{errors} requests failed (last: {e})"),
        None => anyhow::bail!("{errors} requests failed"),
    }
}
