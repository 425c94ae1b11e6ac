//! Real redis-server processes for tests (the Debian `redis-server` package, installed by
//! `scripts/test`): one server, or a 3-master cluster, on free loopback ports, with AOF
//! `appendfsync always`. They are killed when the test process ends, and can be killed and
//! restarted on the same data to test crashes.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("an address")
        .port()
}

fn scratch_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "sluice-redis-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a scratch directory");
    d
}

/// One redis-server process.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    pid: parking_lot::Mutex<Option<u32>>,
}

impl RedisServer {
    /// Start a server on a fresh directory; `extra` are more redis-server flags.
    pub fn start(extra: &[&str]) -> RedisServer {
        let s = RedisServer {
            port: free_port(),
            dir: scratch_dir(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            pid: parking_lot::Mutex::new(None),
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SIGKILL: whatever Redis had not written to its AOF is lost.
    pub fn kill(&self) {
        if let Some(pid) = self.pid.lock().take() {
            // SAFETY: signalling a child process this module started.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.ping() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Start (again) on the same port and data, and wait until it answers.
    pub fn restart(&self) {
        let pid = spawn(self.port, &self.dir, &self.extra);
        *self.pid.lock() = Some(pid);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it answers PING (and has loaded its data).
    pub fn ping(&self) -> bool {
        self.cli(&["ping"]).contains("PONG")
    }

    /// Run redis-cli against this server; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PR_SET_PDEATHSIG fires when the spawning *thread* ends, so a thread that lives as long as
/// the process spawns the server and keeps it.
fn spawn(port: u16, dir: &Path, extra: &[String]) -> u32 {
    let dir = dir.to_path_buf();
    let extra = extra.to_vec();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let child = spawn_here(port, &dir, &extra);
        let _ = tx.send(child.id());
        let _keep: Child = child;
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("redis-server spawned")
}

fn spawn_here(port: u16, dir: &Path, extra: &[String]) -> Child {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ])
    .args(["--appendonly", "yes", "--appendfsync", "always"])
    .arg("--dir")
    .arg(dir)
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    // SAFETY: prctl in the child before exec only sets its parent-death signal.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .expect("redis-server must be installed (scripts/test installs Debian's redis-server)")
}

/// A Redis Cluster of three masters (no replicas), all slots assigned.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "redis-cli --cluster create: {out:?}");
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in &nodes {
            while !n.cli(&["cluster", "info"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the cluster did not become ok");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        RedisCluster { nodes }
    }

    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", addrs.join(","))
    }
}
