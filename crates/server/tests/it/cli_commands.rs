//! The client commands that cover the API, through the real binary: every publish option,
//! peek, nack, redrive, every queue option, subscriptions, timers and schedules, `--json`
//! everywhere, `--server` without a scheme, and the errors a user can act on.

use serde_json::Value;

use crate::cli::run;
use crate::common::{free_port, Server};
use crate::receiver::Receiver;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// Run a command that must succeed and print JSON.
fn ok_json(base: &str, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.push("--json");
    let (ok, out, err) = run(base, &full, None);
    assert!(ok, "{args:?} failed: {err}");
    json(&out)
}

/// Run a command that must fail; its stderr.
fn fails(base: &str, args: &[&str]) -> String {
    let (ok, out, err) = run(base, args, None);
    assert!(!ok, "{args:?} succeeded: {out}");
    err
}

/// Poll (bounded) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn fifo_publish_options_peek_nack_and_redrive() {
    let s = Server::start().await;
    // No scheme: HOST:PORT is enough.
    let b = format!("127.0.0.1:{}", s.port);
    tokio::task::spawn_blocking(move || {
        let q = ok_json(
            &b,
            &[
                "queue",
                "create",
                "jobs",
                "--fifo",
                "--visibility-timeout",
                "45",
                "--delay",
                "0",
                "--retention",
                "3600",
                "--max-message-bytes",
                "4096",
                "--receive-wait",
                "1",
                "--tag",
                "team=ops",
            ],
        );
        assert_eq!(q["name"], "jobs.fifo", "{q}");
        let c = &q["config"];
        assert_eq!(
            (
                c["visibility_timeout_seconds"].as_u64(),
                c["retention_seconds"].as_u64()
            ),
            (Some(45), Some(3600)),
            "{q}"
        );
        assert_eq!(
            (
                c["max_message_bytes"].as_u64(),
                c["receive_wait_seconds"].as_u64()
            ),
            (Some(4096), Some(1))
        );
        assert_eq!(c["tags"]["team"], "ops");
        // The table shows sizes and durations in units.
        let (ok, out, _) = run(&b, &["queue", "stats", "jobs.fifo"], None);
        assert!(
            ok && out.contains("1 h (3600)") && out.contains("4 KiB (4096)"),
            "{out}"
        );

        let first = ok_json(
            &b,
            &[
                "send",
                "jobs.fifo",
                "one",
                "--group",
                "g1",
                "--dedup-id",
                "d1",
                "--attribute",
                "k=v",
            ],
        );
        let again = ok_json(
            &b,
            &[
                "send",
                "jobs.fifo",
                "one again",
                "--group",
                "g1",
                "--dedup-id",
                "d1",
            ],
        );
        assert_eq!(
            first["id"], again["id"],
            "a repeat within 5 minutes is stored once"
        );
        let bin = std::env::temp_dir().join(format!("sluice-cli-{}.bin", std::process::id()));
        std::fs::write(&bin, [0u8, 159, 146, 150]).unwrap();
        ok_json(
            &b,
            &[
                "send",
                "jobs.fifo",
                "--file",
                bin.to_str().unwrap(),
                "--group",
                "g2",
                "--dedup-id",
                "d2",
            ],
        );
        std::fs::remove_file(&bin).unwrap();
        let peeked = ok_json(&b, &["peek", "jobs.fifo", "-n", "10"]);
        let msgs = peeked["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 2, "{peeked}");
        assert_eq!(
            (
                msgs[0]["message_group_id"].as_str(),
                msgs[0]["attributes"]["k"].as_str()
            ),
            (Some("g1"), Some("v"))
        );
        assert_eq!(
            msgs[1]["body_base64"], "AJ+Slg==",
            "binary bodies go as base64"
        );
        let (ok, out, _) = run(&b, &["peek", "jobs.fifo"], None);
        assert!(ok && out.contains("one") && out.contains("ready"), "{out}");

        // nack gives a message back; it can be received again.
        let got = ok_json(&b, &["recv", "jobs.fifo"]);
        let receipt = got["messages"][0]["receipt"].as_str().unwrap().to_string();
        let n = ok_json(&b, &["nack", "jobs.fifo", &receipt, "--delay", "0"]);
        assert_eq!(n["nacked"], 1, "{n}");
        let (ok, out, _) = run(&b, &["nack", "jobs.fifo", &receipt], None);
        assert!(
            !ok && out.contains("failed"),
            "a stale receipt fails the command: {out}"
        );
        let got = ok_json(&b, &["recv", "jobs.fifo"]);
        assert_eq!(got["messages"][0]["receive_count"], 2, "{got}");

        // redrive: a message received past --max-receives goes to the dead-letter queue.
        ok_json(
            &b,
            &[
                "queue",
                "create",
                "work",
                "--max-receives",
                "1",
                "--dead-letter-queue",
                "work-dlq",
            ],
        );
        ok_json(&b, &["send", "work", "poison"]);
        let got = ok_json(&b, &["recv", "work", "--visibility", "0"]);
        assert_eq!(got["messages"].as_array().unwrap().len(), 1);
        eventually("the dead letter", || {
            ok_json(&b, &["queue", "stats", "work"])["counts"]["dead_lettered"] == 1
        });
        let dlq = ok_json(&b, &["queue", "stats", "work-dlq"]);
        assert_eq!(dlq["counts"]["dead_letters_held"]["messages"], 1, "{dlq}");
        assert_eq!(
            dlq["counts"]["dead_letters_held"]["sources"][0], "work",
            "{dlq}"
        );
        let r = ok_json(&b, &["redrive", "work-dlq"]);
        assert_eq!(r["redriven"], 1, "{r}");
        assert_eq!(
            ok_json(&b, &["queue", "stats", "work"])["counts"]["ready"],
            1
        );
        let (ok, out, _) = run(&b, &["queue", "list"], None);
        assert!(
            ok && out.contains("work-dlq") && out.contains("messages"),
            "{out}"
        );
        ok_json(&b, &["queue", "create", "work", "--no-dead-letter-queue"]);
        assert!(ok_json(&b, &["queue", "stats", "work"])["config"]["dead_letter_queue"].is_null());

        // Numbers out of range name the flag and the limit.
        let err = fails(&b, &["send", "work", "x", "--delay=-1"]);
        assert!(
            err.contains("--delay") && err.contains("is -1; must be ≥ 0"),
            "{err}"
        );
        let err = fails(&b, &["queue", "create", "q", "--visibility-timeout=-5"]);
        assert!(err.contains("is -5; must be ≥ 0"), "{err}");
        let err = fails(
            &b,
            &["queue", "create", "q", "--visibility-timeout", "99999999"],
        );
        assert!(
            err.contains("visibility_timeout_seconds") && err.contains("43200"),
            "{err}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn subscriptions_from_the_cli_and_push_dead_letters_in_the_counts() {
    let s = Server::start_with(&["--allow-private-targets"]).await;
    let rx = Receiver::with(|_, path| (if path == "/bad" { 503 } else { 200 }, None, 0)).await;
    let (ok_url, bad_url) = (rx.url("/ok"), rx.url("/bad"));
    let b = s.base.clone();
    tokio::task::spawn_blocking(move || {
        let v = ok_json(
            &b,
            &[
                "sub",
                "create",
                "hooks",
                "billing",
                "--url",
                &bad_url,
                "--max-attempts",
                "2",
                "--timeout",
                "5",
                "--header",
                "x-team=ops",
                "--backoff-initial",
                "0.05",
                "--backoff-max",
                "0.1",
                "--backoff-multiplier",
                "2",
                "--no-jitter",
                "--rate-limit",
                "50",
                "--concurrency",
                "2",
                "--signing-secret",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ],
        );
        assert_eq!(
            (v["max_attempts"].as_u64(), v["timeout_seconds"].as_f64()),
            (Some(2), Some(5.0)),
            "{v}"
        );
        assert_eq!(
            (
                v["headers"]["x-team"].as_str(),
                v["backoff"]["jitter"].as_bool()
            ),
            (Some("ops"), Some(false))
        );
        assert_eq!(
            (
                v["rate_limit_per_second"].as_f64(),
                v["concurrency"].as_u64()
            ),
            (Some(50.0), Some(2))
        );
        assert_eq!(v["signing_secret"], "whsec_MfKQ…", "{v}");
        ok_json(
            &b,
            &[
                "sub",
                "create",
                "hooks",
                "audit",
                "--url",
                &ok_url,
                "--batch-max",
                "5",
                "--batch-wait-ms",
                "10",
            ],
        );
        let id = ok_json(&b, &["send", "hooks", "{\"invoice\":7}"])["id"]
            .as_str()
            .unwrap()
            .to_string();

        // The failing subscription gives up after 2 attempts: a dead letter of hooks.
        eventually("the dead-lettered delivery", || {
            ok_json(&b, &["queue", "stats", "hooks"])["counts"]["dead_lettered"] == 1
        });
        let hooks = ok_json(&b, &["queue", "stats", "hooks"]);
        assert_eq!(hooks["counts"]["subscriptions"]["count"], 2, "{hooks}");
        let dlq = ok_json(&b, &["queue", "stats", "hooks-dlq"]);
        assert_eq!(
            dlq["counts"]["dead_letters_held"]["sources"][0], "hooks",
            "{dlq}"
        );
        assert_eq!(dlq["counts"]["dead_letters_held"]["messages"], 1, "{dlq}");

        let a = ok_json(&b, &["sub", "attempts", "hooks", "billing", "--failing"]);
        let attempts = a["messages"][0]["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{a}");
        assert_eq!(attempts[1]["outcome"], "failed", "{a}");
        let one = ok_json(&b, &["sub", "attempts", "hooks", "--message", &id]);
        assert!(one["attempts"].as_array().unwrap().len() >= 2, "{one}");
        let (ok, out, _) = run(&b, &["sub", "attempts", "hooks", "billing"], None);
        assert!(ok && out.contains("failed") && out.contains("503"), "{out}");
        let (ok, out, _) = run(&b, &["sub", "list", "hooks"], None);
        assert!(
            ok && out.contains("billing") && out.contains("audit"),
            "{out}"
        );
        let g = ok_json(&b, &["sub", "get", "hooks", "audit"]);
        assert_eq!(g["batch"]["max_messages"], 5, "{g}");
        eventually("the audit delivery", || {
            ok_json(&b, &["sub", "get", "hooks", "audit"])["stats"]["delivered"] == 1
        });
        ok_json(&b, &["sub", "delete", "hooks", "audit"]);
        let err = fails(&b, &["sub", "get", "hooks", "audit"]);
        assert!(err.contains("404"), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn timers_and_schedules_from_the_cli() {
    let s = Server::start().await;
    let b = s.base.clone();
    tokio::task::spawn_blocking(move || {
        let t = ok_json(
            &b,
            &[
                "timer",
                "create",
                "--url",
                "http://127.0.0.1:9/later",
                "--delay",
                "3600",
                "--method",
                "PUT",
                "--header",
                "x-a=b",
                "--body",
                "hi",
                "--max-attempts",
                "3",
            ],
        );
        let id = t["id"].as_str().unwrap().to_string();
        assert_eq!(t["status"], "scheduled", "{t}");
        assert_eq!(ok_json(&b, &["timer", "get", &id])["id"], id.as_str());
        let l = ok_json(&b, &["timer", "list"]);
        assert_eq!(l["pending"], 1, "{l}");
        let (ok, out, _) = run(&b, &["timer", "list"], None);
        assert!(
            ok && out.contains(&id) && out.contains("scheduled"),
            "{out}"
        );
        assert_eq!(
            ok_json(&b, &["timer", "cancel", &id])["status"],
            "cancelled"
        );
        let l = ok_json(&b, &["timer", "list", "--status", "cancelled"]);
        assert_eq!(l["timers"][0]["id"], id.as_str(), "{l}");
        // A queue target: the body becomes a message.
        ok_json(
            &b,
            &[
                "timer",
                "create",
                "--queue",
                "later",
                "--body",
                "from a timer",
                "--attribute",
                "k=v",
            ],
        );
        eventually("the timer's message", || {
            run(&b, &["peek", "later", "--json"], None)
                .1
                .contains("from a timer")
        });

        let sch = ok_json(
            &b,
            &[
                "schedule",
                "put",
                "nightly",
                "--cron",
                "0 2 * * *",
                "--timezone",
                "Europe/Berlin",
                "--queue",
                "reports",
                "--body",
                "build it",
            ],
        );
        assert!(sch["next_fire_at"].is_string(), "{sch}");
        assert_eq!(
            ok_json(&b, &["schedule", "get", "nightly"])["timezone"],
            "Europe/Berlin"
        );
        let (ok, out, _) = run(&b, &["schedule", "list"], None);
        assert!(
            ok && out.contains("nightly") && out.contains("publish to reports"),
            "{out}"
        );
        assert_eq!(
            ok_json(&b, &["schedule", "list"])["schedules"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        ok_json(&b, &["schedule", "delete", "nightly"]);
        assert!(fails(&b, &["schedule", "get", "nightly"]).contains("404"));
        let err = fails(&b, &["timer", "create", "--delay", "5"]);
        assert!(err.contains("--url"), "a timer needs a target: {err}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_refused_connection_asks_whether_the_server_runs() {
    let port = free_port();
    let b = format!("localhost:{port}");
    let err = tokio::task::spawn_blocking(move || fails(&b, &["queue", "list"]))
        .await
        .unwrap();
    assert!(
        err.contains(&format!("is `sluice serve` running on localhost:{port}?")),
        "{err}"
    );
    assert!(!err.contains("URL scheme"), "{err}");
}
