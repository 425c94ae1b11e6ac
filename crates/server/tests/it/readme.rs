//! The README's tour, run as written: the `sh` blocks of its sections "A two-minute tour",
//! "Webhooks, timers and schedules" and "Folder ingestion", in order, as one bash script in a
//! fresh directory, with the built `sluice` first on the PATH. Only the ports change (8080 and
//! 9000 become free ones, through `SLUICE_LISTEN`, `SLUICE_SERVER` and the URLs' text), and
//! `curl` fails on an HTTP error, so a command the README shows going wrong fails the test.

use std::process::Command;

use crate::common::{free_port, BIN};

const SECTIONS: [&str; 3] = [
    "## A two-minute tour",
    "## Webhooks, timers and schedules",
    "## Folder ingestion",
];

/// The `sh` blocks of the tour's sections, in order.
fn tour(readme: &str) -> String {
    let mut script = String::new();
    let mut section = "";
    let mut in_block = false;
    for line in readme.lines() {
        if line.starts_with("## ") {
            section = line;
        } else if in_block && line == "```" {
            in_block = false;
        } else if in_block {
            script.push_str(line);
            script.push('\n');
        } else if line == "```sh" && SECTIONS.contains(&section) {
            in_block = true;
        }
    }
    script
}

#[test]
fn the_readme_tour_runs_top_to_bottom() {
    let readme = include_str!("../../../../README.md");
    let body = tour(readme);
    assert!(
        body.contains("sluice serve") && body.contains("sluice ingest"),
        "the tour's blocks were not found:\n{body}"
    );
    let (api, sink) = (free_port(), free_port());
    let body = body
        .replace(":8080", &format!(":{api}"))
        .replace(":9000", &format!(":{sink}"));
    let prelude = "set -euo pipefail\n\
                   curl() { command curl --fail-with-body \"$@\"; }\n\
                   trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n";
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("timeout")
        .args(["600", "bash", "-c"])
        .arg(format!("{prelude}{body}"))
        .current_dir(dir.path())
        .env("PATH", path)
        .env("SLUICE_LISTEN", format!("127.0.0.1:{api}"))
        .env("SLUICE_SERVER", format!("127.0.0.1:{api}"))
        .env_remove("SLUICE_DATA_DIR")
        .env_remove("SLUICE_API_KEY")
        .output()
        .unwrap();
    let said = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the tour failed ({:?}):\n{said}",
        out.status
    );
    // What the tour says happens did happen: a signed delivery at the sink, ingested rows.
    let hooks = std::fs::read_to_string(dir.path().join("hooks.jsonl")).unwrap();
    assert!(
        hooks
            .lines()
            .any(|l| l.contains(r#"\"order\": 1001"#) && l.contains(r#""signature":"valid""#)),
        "{hooks}"
    );
    assert!(
        hooks.contains(r#""path":"/webhook""#),
        "no ingested row delivered: {hooks}"
    );
}
