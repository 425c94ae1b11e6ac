//! Start and stop real `sluice serve` processes on free loopback ports.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

pub struct Server {
    pub child: Option<Child>,
    pub base: String,
    pub port: u16,
    pub dir: PathBuf,
    pub extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// A server on a fresh data directory.
    pub async fn start() -> Server {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Server {
            child: None,
            base: String::new(),
            port: free_port(),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: Some(tmp),
        };
        s.spawn().await;
        s
    }

    /// A server with TLS flags: health is checked with a TLS handshake instead of plain HTTP.
    pub async fn start_tls(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server {
            child: None,
            base: String::new(),
            port: free_port(),
            dir: tmp.path().to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: Some(tmp),
        };
        s.spawn_with(false).await;
        for _ in 0..600 {
            if tokio::net::TcpStream::connect(("127.0.0.1", s.port))
                .await
                .is_ok()
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("TLS server did not start");
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }

    pub async fn spawn(&mut self) {
        self.spawn_with(true).await
    }

    async fn spawn_with(&mut self, wait: bool) {
        self.base = format!("http://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--log-level")
            .arg("warn")
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        if wait {
            wait_healthy(&self.base).await;
        }
    }

    /// SIGKILL: no chance to sync or clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        c.wait().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn wait_healthy(base: &str) {
    let c = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = c.get(format!("{base}/healthz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} did not become healthy");
}

/// A tiny JSON client that returns (status, body) and never panics on HTTP errors.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    pub c: reqwest::Client,
}

impl Http {
    pub fn new(base: &str) -> Http {
        Http {
            base: base.to_string(),
            c: reqwest::Client::new(),
        }
    }
    async fn parse(r: reqwest::Response) -> (u16, Value) {
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        Self::parse(
            self.c
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }
    /// The bodies of a queue's messages, peeked (at most 1,000), in the queue's order.
    pub async fn peek_bodies(&self, queue: &str) -> Vec<String> {
        let (st, v) = self
            .get(&format!("/v1/queues/{queue}/messages?limit=1000"))
            .await;
        assert_eq!(st, 200, "{v}");
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_string())
            .collect()
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        Self::parse(
            self.c
                .delete(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        Self::parse(
            self.c
                .post(format!("{}{path}", self.base))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        Self::parse(
            self.c
                .put(format!("{}{path}", self.base))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
    /// Wait (bounded) until `n` receives are long-polling, per the server's metrics gauge.
    pub async fn wait_for_waiters(&self, n: usize) {
        let needle = format!("sluice_long_poll_waiters {n}");
        for _ in 0..400 {
            let (_, m) = self.get("/metrics").await;
            if m.as_str().unwrap_or_default().contains(&needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no receive started waiting");
    }

    /// One series of `/metrics`, named as it is rendered (`sluice_storage_messages`,
    /// `sluice_timers{state="pending"}`); 0 when the server has not rendered it (yet).
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, m) = self.get("/metrics").await;
        let value = metric_lines(m.as_str().unwrap_or_default())
            .find(|(s, _)| *s == series)
            .map_or(0.0, |(_, v)| v);
        value
    }

    /// The sum of every series of the metric `name`, whatever its labels.
    pub async fn metric_sum(&self, name: &str) -> f64 {
        let (_, m) = self.get("/metrics").await;
        metric_lines(m.as_str().unwrap_or_default())
            .filter(|(s, _)| {
                s.strip_prefix(name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// A request with a raw body and content type.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        Self::parse(
            self.c
                .request(m, format!("{}{path}", self.base))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

/// (series, value) of each sample line of a Prometheus text rendering.
fn metric_lines(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(s, v)| Some((s, v.parse::<f64>().ok()?)))
}

/// Milliseconds since the epoch by this machine's clock, which the servers under test share.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An RFC 3339 time from an answer (`due_at`, `last_fired_at`, ...) in milliseconds since the
/// epoch.
pub fn millis_of(t: &Value) -> i64 {
    let s = t.as_str().unwrap_or_else(|| panic!("not a time: {t}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp_millis()
}

/// A client that sends `Authorization: Bearer KEY` on every request.
pub fn with_key(base: &str, key: &str) -> Http {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    Http {
        base: base.to_string(),
        c: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap(),
    }
}

/// An `--auth-keys` file with `toml` in a temporary directory: (the directory, the path).
pub fn key_file_with(toml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, toml).unwrap();
    let p = path.to_str().unwrap().to_string();
    (dir, p)
}

/// Assert an error response of the documented shape and return its code.
pub fn err_code(v: &Value) -> String {
    let code = v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {v}"));
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without message: {v}"
    );
    code.to_string()
}

/// A raw client's patience for an answer.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A raw HTTP/1.1 client connection that reads answers one at a time.
pub struct RawConn {
    pub tcp: TcpStream,
    /// Read and not yet taken as an answer.
    pub buf: Vec<u8>,
}

impl RawConn {
    pub async fn open(port: u16) -> RawConn {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        RawConn {
            tcp,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    /// The next answer (status and body), which must come within [`PATIENCE`].
    pub async fn answer(&mut self) -> (u16, String) {
        let (head, body) = self.answer_with_head().await;
        (head[9..12].parse().unwrap(), body)
    }

    /// The next answer's head (status line and headers) and body, within [`PATIENCE`].
    pub async fn answer_with_head(&mut self) -> (String, String) {
        tokio::time::timeout(PATIENCE, self.read_answer())
            .await
            .expect("answered in time")
    }

    async fn read_answer(&mut self) -> (String, String) {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no Content-Length: {head}"));
        while self.buf.len() < head_end + len {
            self.fill().await;
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + len]).to_string();
        self.buf.drain(..head_end + len);
        (head, body)
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = self.tcp.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed; read so far: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }
}
