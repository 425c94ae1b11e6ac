//! The CLI's client commands against a real server.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{Server, BIN};

pub fn run(server: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("SLUICE_SERVER", server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut i = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            i.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[tokio::test]
async fn cli_round_trip() {
    let s = Server::start().await;
    let b = s.base.clone();
    tokio::task::spawn_blocking(move || {
        let (ok, out, err) = run(
            &b,
            &["queue", "create", "cli", "--visibility-timeout", "60"],
            None,
        );
        assert!(ok, "{err}");
        assert!(out.contains("visibility_timeout_seconds"));
        let (ok, out, _) = run(&b, &["send", "cli", "hello", "--attr", "k=v"], None);
        assert!(ok);
        assert_eq!(out.trim().len(), 36, "prints the id: {out}");
        let lines: String = (0..250).map(|i| format!("line {i}\n")).collect();
        let (ok, out, _) = run(&b, &["send", "cli", "--json"], Some(&lines));
        assert!(ok);
        assert_eq!(json(&out)["sent"], 250);
        let (ok, out, _) = run(&b, &["queue", "stats", "cli", "--json"], None);
        assert!(ok);
        assert_eq!(json(&out)["stats"]["ready"], 251);
        let (ok, out, _) = run(&b, &["queue", "list"], None);
        assert!(ok);
        assert!(out.contains("cli") && out.contains("251"), "{out}");
        let (ok, out, _) = run(&b, &["recv", "cli", "-n", "1", "--json"], None);
        assert!(ok);
        let v = json(&out);
        assert_eq!(v["messages"][0]["body"], "hello");
        assert_eq!(v["messages"][0]["attributes"]["k"], "v");
        let receipt = v["messages"][0]["receipt"].as_str().unwrap().to_string();
        let (ok, out, _) = run(&b, &["ack", "cli", &receipt], None);
        assert!(ok, "{out}");
        assert!(out.contains("acked 1"));
        let (ok, out, _) = run(&b, &["ack", "cli", &receipt], None);
        assert!(!ok, "a failed ack exits non-zero");
        assert!(out.contains("failed"));
        let (ok, out, _) = run(
            &b,
            &["recv", "cli", "-n", "100", "--ack", "--wait", "1"],
            None,
        );
        assert!(ok);
        assert!(out.contains("line 0") && out.contains("acked 100"), "{out}");
        let (ok, out, _) = run(&b, &["queue", "purge", "cli"], None);
        assert!(ok);
        assert!(out.contains("purged 150"), "{out}");
        let (ok, _, _) = run(&b, &["queue", "delete", "cli"], None);
        assert!(ok);
        let (ok, _, err) = run(&b, &["queue", "stats", "cli"], None);
        assert!(!ok);
        assert!(err.contains("queue_not_found"), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tail_streams_and_acks() {
    use std::io::BufRead;
    let s = Server::start().await;
    let h = crate::common::Http::new(&s.base);
    h.put("/v1/queues/t", serde_json::json!({})).await;
    let mut child = Command::new(BIN)
        .args(["tail", "t", "--ack"])
        .env("SLUICE_SERVER", &s.base)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for i in 0..3 {
        h.post(
            "/v1/queues/t/messages",
            serde_json::json!({"body": format!("line {i}")}),
        )
        .await;
    }
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .take(3)
            .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["body"], "line 0");
    assert!(lines[0]["receipt"].is_string());
    let mut acked = 0;
    for _ in 0..100 {
        acked = h.get("/v1/queues/t").await.1["stats"]["acked"]
            .as_u64()
            .unwrap();
        if acked == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(acked, 3);
}

/// A few seconds of each bench scenario, so the load generator cannot rot. Speed is not
/// asserted (benchmarks measure it); only that it runs and reports.
#[tokio::test]
async fn bench_smoke() {
    let s = Server::start().await;
    let b = s.base.clone();
    tokio::task::spawn_blocking(move || {
        for args in [
            vec!["publish", "--connections", "4"],
            vec!["publish-batch", "--connections", "2", "--batch", "10"],
            vec!["receive-ack", "--connections", "2", "--prefill", "500"],
            vec!["roundtrip", "--connections", "2"],
            vec!["stream", "--connections", "2", "--prefill", "500"],
            vec!["publish", "--connections", "2", "--protocol", "http2"],
            // The generator on a two-thread runtime instead of its default single thread.
            vec![
                "receive-ack",
                "--connections",
                "2",
                "--prefill",
                "500",
                "--threads",
                "2",
            ],
        ] {
            let mut full = vec!["bench"];
            full.extend(args.iter().copied());
            full.extend(["--duration", "1", "--size", "64", "--json"]);
            let (ok, out, err) = run(&b, &full, None);
            assert!(ok, "{args:?}: {err}");
            let v = json(out.trim());
            for k in [
                "scenario",
                "messages",
                "msgs_per_sec",
                "p50_ms",
                "p99_ms",
                "errors",
            ] {
                assert!(v.get(k).is_some(), "{args:?}: no {k} in {v}");
            }
            assert_eq!(v["errors"], 0, "{args:?}: {v}");
            assert!(v["messages"].as_u64().unwrap() > 0, "{args:?}: {v}");
            let threads = if args.contains(&"--threads") { 2 } else { 1 };
            assert_eq!(v["threads"], threads, "{args:?}: {v}");
        }
    })
    .await
    .unwrap();
}

/// `--rate` is a ceiling the pacer keeps: at 200 a second for 1 s over 4 connections, never
/// more than the 200 turns handed out (and the connections' last turns), batches counted in
/// messages. The lower end is not asserted: a busy machine may send fewer.
#[tokio::test]
async fn bench_rate_paces_publishers() {
    let s = Server::start().await;
    let b = s.base.clone();
    tokio::task::spawn_blocking(move || {
        for (args, per_request) in [
            (vec!["publish"], 1),
            (vec!["publish-batch", "--batch", "10"], 10),
        ] {
            let mut full = args.clone();
            full.extend(["--rate", "200", "--connections", "4", "--duration", "1"]);
            let v = bench_json(&b, &full);
            let secs = v["duration_s"].as_f64().unwrap();
            let sent = v["messages"].as_u64().unwrap();
            assert!(sent > 0, "{args:?}: {v}");
            let ceiling = (200.0 * secs) as u64 + 4 * per_request;
            assert!(
                sent <= ceiling,
                "{args:?}: {sent} sent, ceiling {ceiling}: {v}"
            );
            assert_eq!(sent % per_request, 0, "{v}");
        }
    })
    .await
    .unwrap();
}

/// A run in which the server refuses requests still prints its report, then exits non-zero:
/// scripts must not take a broken run's figures for a result. Here every publish is over the
/// server's message size limit; `--count` cannot be reached, and the run still ends.
#[tokio::test]
async fn bench_exits_non_zero_when_requests_fail() {
    let s = Server::start().await;
    let b = s.base.clone();
    tokio::task::spawn_blocking(move || {
        let args = [
            "bench",
            "publish",
            "--connections",
            "2",
            "--count",
            "5",
            "--size",
            "300000",
            "--json",
        ];
        let (ok, out, err) = run(&b, &args, None);
        assert!(!ok, "exit status 0 although publishes failed: {out}");
        let v = json(out.trim());
        assert!(v["errors"].as_u64().unwrap() > 0, "{v}");
        assert!(err.contains("requests failed"), "{err}");
        // The same in text mode.
        let (ok, out, err) = run(&b, &args[..args.len() - 1], None);
        assert!(!ok, "exit status 0 although publishes failed: {out}");
        assert!(out.contains("errors"), "no report printed: {out}");
        assert!(err.contains("requests failed"), "{err}");
    })
    .await
    .unwrap();
}

/// `sluice bench ARGS --json` against `base`: it must succeed and print one JSON object.
fn bench_json(base: &str, args: &[&str]) -> Value {
    let mut full = vec!["bench"];
    full.extend(args);
    full.push("--json");
    let (ok, out, err) = run(base, &full, None);
    assert!(ok, "{args:?}: {err}\n{out}");
    let v = json(out.trim());
    assert_eq!(v["errors"], 0, "{args:?}: {v}");
    v
}

/// `bench_json` against a fresh server that allows loopback targets (the bench's receivers).
async fn bench_push_server(args: &'static [&'static str]) -> Value {
    let s = Server::start_with(&["--allow-private-targets"]).await;
    let b = s.base.clone();
    tokio::task::spawn_blocking(move || bench_json(&b, args))
        .await
        .unwrap()
}

/// Every field in `keys` is in the report.
fn has_fields(v: &Value, keys: &[&str]) {
    for k in keys {
        assert!(v.get(k).is_some(), "no {k} in {v}");
    }
}

/// The push and timer scenarios, briefly: every message or timer reaches the bench's receivers
/// and the reports carry their figures (speed is not asserted).
#[tokio::test]
async fn bench_push_and_timers() {
    let s = Server::start_with(&["--allow-private-targets"]).await;
    let b = s.base.clone();
    tokio::task::spawn_blocking(move || {
        let v = bench_json(&b, &["push", "--count", "200", "--connections", "4"]);
        assert_eq!(v["messages"], 200, "{v}");
        let v = bench_json(&b, &["timers", "--count", "40", "--connections", "4"]);
        has_fields(
            &v,
            &["p50_ms", "p99_ms", "max_ms", "msgs_per_sec", "target"],
        );
        assert_eq!(v["messages"], 40, "{v}");
        assert!(v["target_met"].is_boolean(), "{v}");
        let v = bench_json(
            &b,
            &[
                "timers",
                "--hosts",
                "2",
                "--slow-ms",
                "300",
                "--count",
                "40",
                "--connections",
                "4",
                "--give-up",
                "120",
            ],
        );
        has_fields(&v, &["fast_p99_delta_ms", "target_met", "slow_ms"]);
        assert_eq!(v["baseline"]["messages"], 20, "{v}");
        assert_eq!(v["fast"]["messages"], 20, "{v}");
        assert_eq!(v["slow"]["messages"], 20, "{v}");
        assert_eq!(v["slow"]["undelivered"], 0, "{v}");
        for host in ["baseline", "fast", "slow"] {
            has_fields(&v[host], &["p50_ms", "p99_ms", "max_ms"]);
        }
    })
    .await
    .unwrap();
}

/// Sporadic 429s: every message is delivered in the end, and the receiver refused exactly
/// the planned one in ten, once each.
#[tokio::test]
async fn bench_push_sporadic() {
    let v = bench_push_server(&[
        "push",
        "--receiver",
        "sporadic",
        "--count",
        "30",
        "--connections",
        "4",
        "--give-up",
        "120",
    ])
    .await;
    has_fields(
        &v,
        &[
            "goodput_per_sec",
            "goodput_pct",
            "accepted_share",
            "target",
            "server",
        ],
    );
    assert_eq!(v["receiver"], "sporadic", "{v}");
    assert_eq!(v["delivered"], 30, "{v}");
    assert_eq!(v["undelivered"], 0, "{v}");
    assert_eq!(v["refused_429"], 3, "{v}");
    assert!(v["all_delivered_s"].is_number(), "{v}");
    assert!(v["target_met"].is_boolean(), "{v}");
}

/// A token-bucket endpoint: per-second counts for each second of the run, consistent with
/// the totals, and deliveries made.
#[tokio::test]
async fn bench_push_token_bucket() {
    let v = bench_push_server(&[
        "push",
        "--receiver",
        "token-bucket",
        "--allow",
        "20",
        "--duration",
        "3",
        "--connections",
        "4",
    ])
    .await;
    has_fields(
        &v,
        &[
            "first_80pct_s",
            "steady_delivered_per_sec",
            "steady_429_pct",
            "reach_target_met",
            "steady_rate_target_met",
            "steady_429_target_met",
            "target_met",
        ],
    );
    let per_sec = |k: &str| -> Vec<u64> {
        let a = v[k].as_array().unwrap_or_else(|| panic!("no {k}: {v}"));
        a.iter().map(|x| x.as_u64().unwrap()).collect()
    };
    let (ok, refused) = (
        per_sec("delivered_per_second"),
        per_sec("refused_per_second"),
    );
    assert_eq!((ok.len(), refused.len()), (3, 3), "{v}");
    assert!(ok.iter().sum::<u64>() > 0, "nothing delivered: {v}");
    assert!(
        ok.iter().sum::<u64>() <= v["delivered"].as_u64().unwrap(),
        "{v}"
    );
    // The bucket holds 20 and refills 20 a second: never more than 40 in one second.
    assert!(ok.iter().all(|&n| n <= 40), "{v}");
}

/// An outage at one endpoint: both endpoints get every message in the end, A refused at least
/// once, and the report has its figures.
#[tokio::test]
async fn bench_push_outage() {
    let v = bench_push_server(&[
        "push",
        "--receiver",
        "outage",
        "--outage-seconds",
        "1",
        "--duration",
        "2",
        "--rate",
        "20",
        "--connections",
        "4",
        "--give-up",
        "120",
    ])
    .await;
    has_fields(
        &v,
        &[
            "a_requests_during_outage",
            "a_requests_after_first_429",
            "a_probes_during_outage",
            "b_rate_during_outage",
            "b_rate_after_outage",
            "b_rate_ratio",
            "probes_target_met",
            "b_target_met",
            "target_met",
        ],
    );
    let sent = v["messages"].as_u64().unwrap();
    assert!(sent > 0, "{v}");
    assert_eq!(v["a_delivered"], sent, "{v}");
    assert_eq!(v["b_delivered"], sent, "{v}");
    assert!(v["a_refused_429"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["a_backlog_delivered_s"].is_number(), "{v}");
}
