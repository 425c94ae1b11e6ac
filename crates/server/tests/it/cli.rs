//! The CLI's client commands against a real server.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{Server, BIN};

fn run(server: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
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
        let (ok, out, _) = run(&b, &["--json", "send", "cli"], Some(&lines));
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
