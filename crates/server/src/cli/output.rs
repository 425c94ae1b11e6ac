//! What the client commands print, in one place: pretty JSON for `--json`, tables for people,
//! numbers and units people read (`127,025/s`, `4 days`, `256 KiB`), and progress bars. Output
//! goes through [`out`], which reports a closed pipe (`sluice tail | head`) as an error that
//! `main` turns into a quiet exit 0.

use std::io::Write as _;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::Value;

/// Write one line to stdout (a closed pipe is an error, see [`is_broken_pipe`]).
pub fn out(line: impl std::fmt::Display) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}")?;
    o.flush()?;
    Ok(())
}

/// Was this error a write to a pipe whose reader is gone? Then the command is done, not failed.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub fn print_json(v: &Value) -> anyhow::Result<()> {
    out(serde_json::to_string_pretty(v)?)
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

/// A JSON value as a table cell: strings without quotes, null as `–`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_u64().map(thousands).unwrap_or_else(|| n.to_string()),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate for people: `0.4`, `12.5`, `127,025` (whole numbers from 100 up).
pub fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        "0".into()
    } else if per_sec < 100.0 {
        format!("{per_sec:.1}")
    } else {
        thousands(per_sec.round() as u64)
    }
}

/// Seconds for people: `45 s`, `5 min`, `1 h 30 min`, `4 days`.
pub fn seconds(s: u64) -> String {
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let unit = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    match (d, h, m, sec) {
        (0, 0, 0, s) => format!("{s} s"),
        (0, 0, m, 0) => format!("{m} min"),
        (0, 0, m, s) => format!("{m} min {s} s"),
        (0, h, 0, 0) => format!("{h} h"),
        (0, h, m, _) => format!("{h} h {m} min"),
        (d, 0, 0, 0) => unit(d, "day", "days"),
        (d, h, _, _) => format!("{} {h} h", unit(d, "day", "days")),
    }
}

/// Bytes for people: `512 B`, `256 KiB`, `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// A configuration value for people: durations and sizes in units, by the key's suffix.
pub fn config_value(key: &str, v: &Value) -> String {
    match v.as_u64() {
        Some(n) if key.ends_with("_seconds") => format!("{} ({n})", seconds(n)),
        Some(n) if key.ends_with("_bytes") => format!("{} ({n})", bytes(n)),
        _ => cell(v),
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal, or with `--json`). The
/// template may use `{rate}`: the bar's rate per second, rounded for people.
pub fn progress(len: Option<u64>, template: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let b = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    b.set_style(
        indicatif::ProgressStyle::with_template(template)
            .expect("template")
            .with_key(
                "rate",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}/s", rate(s.per_sec()));
                },
            ),
    );
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(rate(127_024.630_4), "127,025");
        assert_eq!(rate(12.345), "12.3");
        assert_eq!(rate(0.0), "0");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(seconds(30), "30 s");
        assert_eq!(seconds(345_600), "4 days");
        assert_eq!(seconds(5_400), "1 h 30 min");
        assert_eq!(seconds(90), "1 min 30 s");
        assert_eq!(bytes(262_144), "256 KiB");
        assert_eq!(bytes(1_572_864), "1.5 MiB");
        assert_eq!(
            config_value("retention_seconds", &serde_json::json!(345600)),
            "4 days (345600)"
        );
    }
}
