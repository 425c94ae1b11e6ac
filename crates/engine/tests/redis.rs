//! The conformance suite against the Redis backend: once against a single redis-server and
//! once against a 3-master Redis Cluster, both started here on free loopback ports from the
//! Debian `redis-server` package (installed by `scripts/test`). They die with this process.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sluice_engine::conformance::Harness;
use sluice_engine::redis_store::{RedisOptions, RedisStore};
use sluice_engine::Store;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start a redis-server that is killed when this test process ends. PR_SET_PDEATHSIG fires
/// when the spawning *thread* ends, so a thread that lives as long as the process spawns it.
fn spawn_redis(port: u16, dir: &std::path::Path, extra: &[&str]) -> u32 {
    let dir = dir.to_path_buf();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let child = spawn_redis_here(port, &dir, &extra);
        tx.send(child.id()).unwrap();
        let _keep: Child = child;
        loop {
            std::thread::park();
        }
    });
    rx.recv().unwrap()
}

fn spawn_redis_here(port: u16, dir: &std::path::Path, extra: &[String]) -> Child {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        dir.to_str().unwrap(),
    ])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .expect("redis-server must be installed (scripts/test installs the Debian package)")
}

fn wait_ping(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "ping"])
            .output();
        if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG")) {
            return;
        }
        assert!(Instant::now() < deadline, "redis on {port} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Servers {
    url: String,
    _children: Vec<u32>,
    _dir: tempfile::TempDir,
}

fn single() -> &'static Servers {
    static S: OnceLock<Servers> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = spawn_redis(port, dir.path(), &[]);
        wait_ping(port);
        Servers {
            url: format!("redis://127.0.0.1:{port}"),
            _children: vec![child],
            _dir: dir,
        }
    })
}

fn cluster() -> &'static Servers {
    static S: OnceLock<Servers> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut children = Vec::new();
        for p in &ports {
            let d = dir.path().join(p.to_string());
            std::fs::create_dir_all(&d).unwrap();
            children.push(spawn_redis(
                *p,
                &d,
                &["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
            ));
        }
        for p in &ports {
            wait_ping(*p);
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(out.status.success(), "cluster create failed: {out:?}");
        let deadline = Instant::now() + Duration::from_secs(30);
        for p in &ports {
            loop {
                let out = Command::new("redis-cli")
                    .args(["-p", &p.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster did not become ok");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Servers {
            url: format!("redis+cluster://{}", addrs.join(",")),
            _children: children,
            _dir: dir,
        }
    })
}

/// One test's data: a fresh key prefix on the shared servers. `open` again = a node restart.
struct Redis {
    url: &'static str,
    prefix: String,
}

#[async_trait]
impl Harness for Redis {
    async fn open(&mut self) -> Arc<dyn Store> {
        let store = RedisStore::open(RedisOptions {
            url: self.url.to_string(),
            prefix: self.prefix.clone(),
            ..RedisOptions::default()
        })
        .await
        .unwrap();
        Arc::new(store)
    }
}

fn prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn on_single() -> Redis {
    Redis {
        url: &single().url,
        prefix: prefix(),
    }
}

fn on_cluster() -> Redis {
    Redis {
        url: &cluster().url,
        prefix: prefix(),
    }
}

mod conformance_single {
    use super::*;
    sluice_engine::conformance_suite!(on_single());
}

mod conformance_cluster {
    use super::*;
    sluice_engine::conformance_suite!(on_cluster());
}
