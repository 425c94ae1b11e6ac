//! Installing and starting the server as a newcomer does: `serve --help`, `--print-config`, the
//! startup banner, settings refused with what would be accepted, shell completions, man pages
//! and `scripts/install`.

use std::process::{Command, Stdio};

use crate::common::Server;

/// Run the binary with `args` (and `env`); (success, stdout, stderr).
fn sluice(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(crate::common::BIN)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("SLUICE_SERVER")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_help_shows_its_defaults_and_no_client_flags() {
    let (ok, help, _) = sluice(&["serve", "--help"], &[]);
    assert!(ok);
    assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
    assert!(help.contains("[default: ./sluice-data]"), "{help}");
    assert!(help.contains("--print-config"), "{help}");
    assert!(
        !help.contains("--server") && !help.contains("--json"),
        "{help}"
    );
    let (ok, help, _) = sluice(&["queue", "list", "--help"], &[]);
    assert!(
        ok && help.contains("--server") && help.contains("--json"),
        "{help}"
    );
}

#[test]
fn print_config_says_where_each_setting_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, "max_queues = 7\nmax_message_bytes = 2097152\n").unwrap();
    let (ok, out, err) = sluice(
        &[
            "serve",
            "--print-config",
            "--listen",
            "127.0.0.1:1",
            "--config",
            file.to_str().unwrap(),
        ],
        &[("SLUICE_LOG_FORMAT", "json")],
    );
    assert!(ok, "{err}");
    for line in [
        "listen = \"127.0.0.1:1\"  # flag",
        "log_format = \"json\"  # env SLUICE_LOG_FORMAT",
        &format!("max_queues = 7  # file {}", file.display()),
        &format!(
            "max_message_bytes = 2097152  # file {}; 2 MiB",
            file.display()
        ),
        "data_dir = \"sluice-data\"  # default",
        "header_timeout_seconds = 30  # default; 30 s",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "no line {line:?} in:\n{out}"
        );
    }
    out.parse::<toml::Table>()
        .expect("the printout is a TOML file");
    assert!(!dir.path().join("sluice-data").exists());
}

#[test]
fn bad_settings_are_refused_with_what_would_do() {
    let (ok, _, err) = sluice(&["serve", "--log-level", "loud", "--print-config"], &[]);
    assert!(!ok);
    assert!(
        err.contains("\"loud\"") && err.contains("off, error, warn, info, debug, trace"),
        "{err}"
    );
    let (ok, _, err) = sluice(
        &["serve", "--listen", "127.0.0.1:99999", "--print-config"],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("not a number from 0 to 65535"), "{err}");
    assert!(
        !err.contains("API keys"),
        "the address is checked first: {err}"
    );
    let (ok, _, err) = sluice(&["serve", "--max-queues=-1", "--print-config"], &[]);
    assert!(!ok);
    assert!(
        err.contains("--max-queues") && err.contains("is -1; must be ≥ 0"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "max_queues = -1\n").unwrap();
    let (ok, _, err) = sluice(&["serve", "--config", file.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(
        err.contains("is -1; must be ≥ 0") && err.contains("max_queues"),
        "{err}"
    );
}

#[tokio::test]
async fn the_startup_banner_says_where_what_and_who() {
    let s = Server::start().await;
    let log = s.log();
    assert!(
        log.contains(&format!("is serving http://127.0.0.1:{}", s.port)),
        "{log}"
    );
    assert!(
        log.contains(&format!("dashboard  http://127.0.0.1:{}/", s.port)),
        "{log}"
    );
    assert!(log.contains("(embedded store)"), "{log}");
    assert!(log.contains("no API keys: loopback only"), "{log}");
}

/// Start `sluice serve` with `env` set and `unset` removed, wait until it answers, return what
/// `read` finds in its process (given its pid), and stop it.
async fn probe_server<T>(env: &[(&str, &str)], unset: &[&str], read: impl FnOnce(u32) -> T) -> T {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::free_port();
    let mut cmd = Command::new(crate::common::BIN);
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir.path())
    .envs(env.iter().copied())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for name in unset {
        cmd.env_remove(name);
    }
    let mut child = cmd.spawn().unwrap();
    let up = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        crate::common::wait_healthy(&format!("http://127.0.0.1:{port}")),
    )
    .await;
    let got = read(child.id());
    child.kill().unwrap();
    let _ = child.wait();
    assert!(up.is_ok(), "the server did not start");
    got
}

/// The server turns transparent huge pages off for itself (a fault on a new 2 MB page stopped
/// every publish for ~30 ms), unless `MIMALLOC_ALLOW_THP` leaves the choice to the allocator.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_server_runs_without_transparent_huge_pages() {
    let thp = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("THP_enabled:"));
        line.map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string())
    };
    let unset = ["MIMALLOC_ALLOW_THP"];
    let Some(off) = probe_server(&[], &unset, thp).await else {
        return; // a kernel without the field (before 5.0)
    };
    assert_eq!(off, "0", "THP_enabled of the server");
    // Left to mimalloc (which allows them by default), unless this test runs without them
    // already (the flag is inherited).
    if thp(std::process::id()).as_deref() == Some("1") {
        let allowed = probe_server(&[("MIMALLOC_ALLOW_THP", "1")], &[], thp).await;
        assert_eq!(allowed.as_deref(), Some("1"), "with MIMALLOC_ALLOW_THP=1");
    }
}

/// Every thread of the server (the runtime's workers, the log writer, the spare-segment
/// thread) runs under SCHED_BATCH, so its wake-ups do not preempt a running request;
/// `SLUICE_SCHED_NORMAL=1` keeps the policy it was started with.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_server_threads_run_under_sched_batch() {
    // Each thread's name and scheduling policy (0 SCHED_OTHER, 3 SCHED_BATCH): the 41st field
    // of /proc/PID/task/TID/stat, counted after the name's closing parenthesis (field 2). A
    // thread that ends while it is read (an idle blocking-pool thread) is left out.
    let policies = |pid: u32| -> Vec<(String, String)> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        tasks
            .filter_map(|t| {
                let t = t.ok()?.path();
                let name = std::fs::read_to_string(t.join("comm")).ok()?;
                let stat = std::fs::read_to_string(t.join("stat")).ok()?;
                let (_, after_name) = stat.rsplit_once(')')?;
                let policy = after_name.split_whitespace().nth(41 - 3)?;
                Some((name.trim().to_string(), policy.to_string()))
            })
            .collect()
    };
    let unset = ["SLUICE_SCHED_NORMAL"];
    let batch = probe_server(&[], &unset, policies).await;
    assert!(
        batch.iter().any(|(n, _)| n == "sluice-log-writ"),
        "{batch:?}"
    );
    assert!(
        batch.iter().any(|(n, _)| n.starts_with("tokio-rt")),
        "{batch:?}"
    );
    assert!(batch.iter().all(|(_, p)| p == "3"), "{batch:?}");
    // With the switch, the policy the server was started with: this test's own.
    let own = policies(std::process::id())[0].1.clone();
    let normal = probe_server(&[("SLUICE_SCHED_NORMAL", "1")], &[], policies).await;
    assert!(normal.iter().all(|(_, p)| *p == own), "{own} {normal:?}");
}

#[test]
fn completions_man_pages_and_the_install_script() {
    let (ok, bash, _) = sluice(&["completions", "bash"], &[]);
    assert!(ok && bash.contains("_sluice") && bash.contains("schedule"));
    let (ok, zsh, _) = sluice(&["completions", "zsh"], &[]);
    assert!(ok && zsh.starts_with("#compdef sluice"), "{zsh}");
    let (ok, fish, _) = sluice(&["completions", "fish"], &[]);
    assert!(ok && fish.contains("complete -c sluice"), "{fish}");
    let (ok, man, _) = sluice(&["man"], &[]);
    assert!(ok && man.contains(".TH sluice"), "{man}");

    let prefix = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/install");
    let out = Command::new(script)
        .args(["--bin", crate::common::BIN, "--prefix"])
        .arg(prefix.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = prefix.path();
    for f in [
        "bin/sluice",
        "share/bash-completion/completions/sluice",
        "share/zsh/site-functions/_sluice",
        "share/fish/vendor_completions.d/sluice.fish",
        "share/man/man1/sluice.1",
        "share/man/man1/sluice-serve.1",
        "share/man/man1/sluice-queue-create.1",
    ] {
        assert!(p.join(f).is_file(), "scripts/install did not write {f}");
    }
    let check = Command::new("bash")
        .arg("-n")
        .arg(p.join("share/bash-completion/completions/sluice"))
        .status()
        .unwrap();
    assert!(check.success(), "the bash completion script does not parse");
}
