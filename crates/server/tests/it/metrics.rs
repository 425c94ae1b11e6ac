//! `/metrics` as Prometheus reads it: checked by `promtool check metrics` (Debian's prometheus
//! package, installed by `scripts/metrics-test-deps`), a `# HELP` for every family, and the
//! push series: deliveries by outcome, request latency per subscription, backlog.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::receiver::{open_server, wait_until, Receiver};

fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is needed for this test ({e}): run scripts/metrics-test-deps")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// The value of the sample `series` (name and labels, as written) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_pass_promtool_with_help_for_every_family_and_push_series() {
    let (_s, h) = open_server().await;
    let rx = Receiver::with(|_, path| (if path == "/bad" { 500 } else { 200 }, None, 0)).await;
    h.put(
        "/v1/queues/m/subscriptions/ok",
        json!({"url": rx.url("/ok")}),
    )
    .await;
    h.put(
        "/v1/queues/m/subscriptions/bad",
        json!({"url": rx.url("/bad"), "max_attempts": 1}),
    )
    .await;
    h.post("/v1/queues/m/messages", json!({"body": "x"})).await;
    h.post("/v1/timers", json!({"url": rx.url("/timer")})).await;
    let settled = |text: &str| {
        sample(text, r#"sluice_push_deliveries_total{queue="m",subscription="ok",outcome="delivered"}"#) == Some(1.0)
            && sample(text, r#"sluice_push_deliveries_total{queue="m",subscription="bad",outcome="failed"}"#) == Some(1.0)
            && sample(text, r#"sluice_timer_deliveries_total{outcome="delivered"}"#) == Some(1.0)
            // The failed delivery is a dead letter of m (in m-dlq), as the queue's own
            // figures say.
            && sample(text, r#"sluice_queue_messages{queue="m",state="dead_lettered"}"#) == Some(1.0)
    };
    let mut text = String::new();
    wait_until("push and timer outcomes in /metrics", 30, || {
        let h = h.clone();
        async move { settled(h.get("/metrics").await.1.as_str().unwrap_or_default()) }
    })
    .await;
    text.push_str(h.get("/metrics").await.1.as_str().unwrap());

    let (ok, said) = promtool(&text);
    assert!(ok, "promtool check metrics: {said}\n{text}");
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no # HELP line"
        );
    }
    // Attempts and latency per subscription (each lane's own series), backlog per
    // subscription, depth and dead letters per queue.
    assert_eq!(
        sample(
            &text,
            r#"sluice_push_attempts_total{queue="m",subscription="ok",outcome="delivered"}"#
        ),
        Some(1.0),
        "{text}"
    );
    for sub in ["ok", "bad"] {
        let series =
            format!(r#"sluice_push_request_seconds_count{{queue="m",subscription="{sub}"}}"#);
        assert_eq!(sample(&text, &series), Some(1.0), "{text}");
    }
    assert!(
        sample(
            &text,
            r#"sluice_push_backlog{queue="m",subscription="bad"}"#
        )
        .is_some(),
        "{text}"
    );
    assert!(
        sample(&text, r#"sluice_queue_depth{queue="m"}"#).is_some(),
        "{text}"
    );
    // A subscription's pause, disable and circuit state as gauges.
    let (st, v) = h
        .post("/v1/queues/m/subscriptions/ok/pause", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    wait_until("the pause in /metrics", 30, || {
        let h = h.clone();
        async move {
            let text = h
                .get("/metrics")
                .await
                .1
                .as_str()
                .unwrap_or_default()
                .to_string();
            sample(&text, r#"sluice_push_paused{queue="m",subscription="ok"}"#) == Some(1.0)
                && sample(&text, r#"sluice_push_paused{queue="m",subscription="bad"}"#) == Some(0.0)
                && sample(
                    &text,
                    r#"sluice_push_disabled{queue="m",subscription="ok"}"#,
                ) == Some(0.0)
                && sample(
                    &text,
                    r#"sluice_push_circuit_open{queue="m",subscription="bad"}"#,
                ) == Some(0.0)
        }
    })
    .await;
}
