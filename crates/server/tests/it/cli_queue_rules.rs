//! The CLI's flags for the queue rules beyond SQS, through the real binary: `sluice send` with
//! `--priority`, `--ttl`, `--group` and `--idempotency-key` (a repeat prints `duplicate`; stdin
//! runs repeated with the same key store each line once), and `sluice queue create` with the
//! deduplication window, default time to live, `--on-expire` and the per-group limit.

use serde_json::Value;

use crate::cli::run;
use crate::common::{Http, Server};

fn ok(base: &str, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = run(base, args, stdin);
    assert!(ok, "{args:?} failed: {err}");
    out
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[tokio::test]
async fn send_and_queue_create_take_the_rules() {
    let s = Server::start().await;
    let b = s.base.clone();
    let h = Http::new(&s.base);
    let b2 = b.clone();
    tokio::task::spawn_blocking(move || {
        let b = b2;
        let q = json(&ok(
            &b,
            &[
                "queue",
                "create",
                "rules",
                "--dedup-window",
                "3600",
                "--default-ttl",
                "600",
                "--max-in-flight-per-group",
                "3",
                "--group-rate",
                "20",
                "--max-receives",
                "5",
                "--dead-letter-queue",
                "rules-dlq",
                "--on-expire",
                "dead-letter",
                "--json",
            ],
            None,
        ));
        let c = &q["config"];
        assert_eq!(c["dedup_window_seconds"], 3600, "{q}");
        assert_eq!(c["default_ttl_seconds"], 600);
        assert_eq!(c["max_in_flight_per_group"], 3);
        assert_eq!(c["group_rate_per_second"], 20);
        assert_eq!(c["on_expire"], "dead_letter");
        // The table names the settings too.
        let table = ok(&b, &["queue", "stats", "rules"], None);
        assert!(table.contains("max_in_flight_per_group"), "{table}");
        let q = json(&ok(
            &b,
            &[
                "queue",
                "create",
                "rules",
                "--no-default-ttl",
                "--no-max-in-flight-per-group",
                "--no-group-rate",
                "--on-expire",
                "drop",
                "--json",
            ],
            None,
        ));
        assert!(q["config"]["default_ttl_seconds"].is_null(), "{q}");
        assert!(q["config"]["max_in_flight_per_group"].is_null());
        assert!(q["config"]["group_rate_per_second"].is_null());
        assert_eq!(q["config"]["on_expire"], "drop");

        let args = [
            "send",
            "rules",
            "urgent",
            "--priority",
            "8",
            "--ttl",
            "300",
            "--group",
            "tenant-1",
            "--idempotency-key",
            "k-1",
        ];
        let id = ok(&b, &args, None).trim().to_string();
        assert!(!id.contains("duplicate"), "{id}");
        let again = ok(&b, &args, None);
        assert_eq!(again.trim(), format!("{id} duplicate"));
        let again = json(&ok(&b, &[&args[..], &["--json"]].concat(), None));
        assert_eq!(
            (&again["id"], &again["duplicate"]),
            (&Value::from(id), &Value::from(true))
        );

        // Lines from stdin: request N carries KEY:N, so the same run again stores nothing.
        let lines = "a\nb\nc\n";
        let run1 = ok(
            &b,
            &[
                "send",
                "lines",
                "--idempotency-key",
                "import-7",
                "--batch",
                "2",
            ],
            Some(lines),
        );
        assert_eq!(run1.trim(), "sent 3 messages to lines");
        let run2 = json(&ok(
            &b,
            &[
                "send",
                "lines",
                "--idempotency-key",
                "import-7",
                "--batch",
                "2",
                "--json",
            ],
            Some(lines),
        ));
        assert_eq!(
            (&run2["sent"], &run2["duplicates"]),
            (&Value::from(3), &Value::from(3))
        );
    })
    .await
    .unwrap();
    let (_, peek) = h.get("/v1/queues/rules/messages").await;
    let m = &peek["messages"][0];
    assert_eq!(
        (&m["priority"], &m["message_group_id"]),
        (&Value::from(8), &Value::from("tenant-1"))
    );
    assert!(m["expires_at"].is_string(), "{m}");
    assert_eq!(peek["messages"].as_array().unwrap().len(), 1);
    let (_, q) = h.get("/v1/queues/lines").await;
    assert_eq!(q["stats"]["ready"], 3);
}

/// `sluice queue pause|resume` and `sluice schedule pause|resume` (subscriptions have
/// `sluice subs pause|resume|enable`).
#[tokio::test]
async fn queues_and_schedules_pause_and_resume_from_the_cli() {
    let s = Server::start_with(&["--allow-private-targets"]).await;
    let b = s.base.clone();
    let h = Http::new(&s.base);
    let (st, _) = h.put("/v1/queues/held", serde_json::json!({})).await;
    assert_eq!(st, 201);
    let (st, v) = h
        .put(
            "/v1/schedules/nightly",
            serde_json::json!({"cron": "0 3 * * *", "queue": "held", "body": "tick"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let b2 = b.clone();
    let said = tokio::task::spawn_blocking(move || {
        (
            ok(&b2, &["queue", "pause", "held"], None),
            ok(&b2, &["schedule", "pause", "nightly"], None),
        )
    })
    .await
    .unwrap();
    assert_eq!(said.0.trim(), "held: consumption paused");
    let b2 = b.clone();
    let stats = tokio::task::spawn_blocking(move || ok(&b2, &["queue", "stats", "held"], None))
        .await
        .unwrap();
    assert!(stats.starts_with("consumption paused since "), "{stats}");
    assert_eq!(said.1.trim(), "schedule nightly paused");
    assert_eq!(h.get("/v1/queues/held").await.1["paused"], true);
    assert_eq!(h.get("/v1/schedules/nightly").await.1["paused"], true);
    let b2 = b.clone();
    tokio::task::spawn_blocking(move || {
        ok(&b2, &["queue", "resume", "held"], None);
        ok(&b2, &["schedule", "resume", "nightly"], None);
    })
    .await
    .unwrap();
    assert_eq!(h.get("/v1/queues/held").await.1["paused"], false);
    assert_eq!(h.get("/v1/schedules/nightly").await.1["paused"], false);
}
