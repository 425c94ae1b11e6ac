//! The `sluice` binary: `serve` runs the server; the other commands are clients of a server.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use sluice::{cli, config, server};

// mimalloc: the request path allocates many small short-lived buffers; glibc malloc showed up at
// ~10% of a publish profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Durable queues, webhooks and schedules over HTTP, in one binary.",
    after_help = "Start a server with `sluice serve`; the other commands are its clients \
                  (--server HOST:PORT, default 127.0.0.1:8080; --json for scripts)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server. A flag given twice takes its last value.
    #[command(args_override_self = true)]
    Serve(Box<config::ServeArgs>),
    #[command(flatten)]
    Client(cli::Command),
    /// A webhook receiver for demos and tests: records each request as a JSON line.
    Sink(cli::sink::SinkArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(cli::shell::CompletionsArgs),
    /// Print the man page (or write one per command with --dir).
    Man(cli::shell::ManArgs),
}

/// The forwarder seed's Go-style single-dash flags (`-post-endpoint URL`, `-batch-size 10`,
/// `-batch-interval 10s`, `-http :8080`) are accepted as their two-dash forms.
fn seed_flags(args: impl Iterator<Item = String>) -> Vec<String> {
    const SEED: [&str; 4] = ["-post-endpoint", "-batch-size", "-batch-interval", "-http"];
    args.map(|a| {
        let name = a.split('=').next().unwrap_or_default();
        if SEED.contains(&name) {
            format!("-{a}")
        } else {
            a
        }
    })
    .collect()
}

/// The client flags given before the command (`sluice --server URL queue list`) are taken
/// as given after its name, where they belong (`serve` has none, so it refuses them).
fn client_flags_after_command(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut moved = Vec::new();
    let mut it = args.into_iter();
    out.extend(it.next());
    while let Some(a) = it.next() {
        match a.as_str() {
            "--server" => {
                moved.push(a);
                moved.extend(it.next());
            }
            "--json" => moved.push(a),
            s if s.starts_with("--server=") => moved.push(a),
            s if s.starts_with('-') => out.push(a),
            _ => {
                out.push(a);
                out.append(&mut moved);
                break;
            }
        }
    }
    out.extend(moved);
    out.extend(it);
    out
}

/// Transparent huge pages off for this process, as Redis does (`disable-thp`). mimalloc asks
/// the kernel for them, and the first touch of a new 2 MB page zeroes all of it on the spot,
/// under whatever lock the touching thread holds: on this project's 2-core VM that stopped
/// every publish for ~30 ms several times a second (batches of 10: 262-285k msgs/s and a
/// 33 ms p99 with them, 365-401k and 3-4 ms without; BENCHMARKS.md, "Transparent huge
/// pages"). `MIMALLOC_ALLOW_THP` in the environment (1: allow) leaves the choice to mimalloc.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets this process's flag.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

/// The server's threads under `SCHED_BATCH`, the kernel's policy for throughput-bound work:
/// the same share of the CPU, but a thread that wakes up does not preempt the one running; it
/// waits for that one to block or for the next tick. A server thread wakes several times per
/// request batch (the log writer at each sync's end, a worker at each answer), and on a busy
/// machine every such preemption was two context switches in the middle of another request.
/// On this project's 2-core VM, medians of 3 alternating runs: 0.56 → 0.20 context switches
/// and 17.4 → 15.3 µs of server CPU per durable publish, publishes +11%, batches +12%, the p99
/// at 30,000 publishes/s 1.63 → 1.29 ms (BENCHMARKS.md, "The server's threads under
/// SCHED_BATCH"). Threads inherit the policy, so it is set on the main thread before the
/// runtime starts. Only `serve`: the clients, `bench`'s load generator among them, keep the
/// default policy. `SLUICE_SCHED_NORMAL=1` in the environment keeps it for the server too; if
/// the kernel refuses (a restrictive seccomp profile), it stays.
fn batch_scheduling(cmd: &Cmd) {
    #[cfg(target_os = "linux")]
    if matches!(cmd, Cmd::Serve(_)) && !env_flag("SLUICE_SCHED_NORMAL") {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` outlives the call. Moving between the
        // two non-real-time policies needs no privilege and keeps the nice value.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
        }
    }
}

/// An environment switch: set to anything but empty or `0`.
#[cfg(target_os = "linux")]
fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

fn main() {
    no_transparent_huge_pages();
    let args = client_flags_after_command(seed_flags(std::env::args()));
    let matches = Cli::command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    batch_scheduling(&cli.cmd);
    // The load generator runs on as many threads as it is told (one by default, see
    // `bench --threads`); everything else on one worker per core.
    let mut rt = match &cli.cmd {
        Cmd::Client(cli::Command::Bench(b)) if b.args.threads == 1 => {
            tokio::runtime::Builder::new_current_thread()
        }
        Cmd::Client(cli::Command::Bench(b)) => {
            let mut rt = tokio::runtime::Builder::new_multi_thread();
            rt.worker_threads(b.args.threads as usize);
            rt
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = rt.enable_all().build().expect("tokio runtime");
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Serve(args) => {
                let origins = config::Origins::from_matches(
                    matches.subcommand_matches("serve").expect("serve matched"),
                );
                let print = args.print_config;
                let cfg = config::ServeConfig::resolve(*args, &origins)?;
                if print {
                    use std::io::Write;
                    return Ok(std::io::stdout().write_all(cfg.describe(&origins).as_bytes())?);
                }
                server::run(cfg).await
            }
            Cmd::Client(c) => cli::run(c).await,
            Cmd::Sink(a) => cli::sink::run(a).await,
            Cmd::Completions(a) => cli::shell::completions(Cli::command(), a),
            Cmd::Man(a) => cli::shell::man(Cli::command(), a),
        }
    });
    if let Err(e) = result {
        // `sluice tail | head`: the reader has all it wanted; that is not a failure.
        if cli::is_broken_pipe(&e) {
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn client_flags_before_the_command_move_after_it() {
        let got = super::client_flags_after_command(strings(&[
            "sluice", "--server", "h:1", "--json", "queue", "list",
        ]));
        assert_eq!(
            got,
            strings(&["sluice", "queue", "--server", "h:1", "--json", "list"])
        );
        let got = super::client_flags_after_command(strings(&["sluice", "--server=h:1", "serve"]));
        assert_eq!(got, strings(&["sluice", "serve", "--server=h:1"]));
        let same = strings(&["sluice", "send", "q", "body", "--json"]);
        assert_eq!(super::client_flags_after_command(same.clone()), same);
    }

    #[test]
    fn seed_single_dash_flags() {
        let got = super::seed_flags(
            [
                "sluice",
                "serve",
                "-post-endpoint",
                "http://x",
                "-batch-size=5",
                "-h",
                "--listen",
            ]
            .into_iter()
            .map(String::from),
        );
        assert_eq!(
            got,
            vec![
                "sluice",
                "serve",
                "--post-endpoint",
                "http://x",
                "--batch-size=5",
                "-h",
                "--listen"
            ]
        );
    }
}
