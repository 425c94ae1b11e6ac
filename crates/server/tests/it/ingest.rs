//! Folder ingestion end to end: files dropped into a watched folder (or uploaded) become
//! webhooks at `sluice sink`, each user alerted once, through 429s, 500s and kill -9s.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{free_port, wait_healthy, Http, Server, BIN};
use crate::receiver::wait_until;

struct Sink {
    child: std::process::Child,
    out: PathBuf,
    url: String,
    _dir: tempfile::TempDir,
}

impl Sink {
    async fn start(args: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sink.jsonl");
        let port = free_port();
        let child = std::process::Command::new(BIN)
            .args(["sink", "--listen", &format!("127.0.0.1:{port}"), "--out"])
            .arg(&out)
            .args(args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        wait_healthy(&base).await;
        Sink {
            child,
            out,
            url: format!("{base}/webhook"),
            _dir: dir,
        }
    }
    /// Wait until the sink accepted at least `n` deliveries (a cheap count of lines; polled
    /// once a second so the test does not compete with the server for the CPU). Only
    /// `/webhook` lines count: the sink also records the `/healthz` readiness probe, answered
    /// `500` by `--fail-rate` now and then (which once made a whole-file count stop at n - 1).
    /// On a timeout, say where the missing ones are: the queue's and the subscription's
    /// counts, and every request the sink saw for the users never accepted.
    async fn wait_accepted(&self, n: usize, secs: u64, h: &Http, queue: &str, sub: &str) {
        let end = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let ok = text
                .lines()
                .filter(|l| {
                    l.contains("\"path\":\"/webhook\"")
                        && !l.contains("\"status\":429")
                        && !l.contains("\"status\":500")
                })
                .count();
            if ok >= n {
                return;
            }
            if std::time::Instant::now() >= end {
                let (_, q) = h.get(&format!("/v1/queues/{queue}")).await;
                let (_, s) = h
                    .get(&format!("/v1/queues/{queue}/subscriptions/{sub}"))
                    .await;
                let lines = self.lines();
                let (users, _) = accepted(&lines);
                let missing: Vec<String> = (0..n)
                    .map(|i| format!("user{i}"))
                    .filter(|u| !users.contains_key(u))
                    .take(5)
                    .collect();
                let seen: Vec<&Value> = lines
                    .iter()
                    .filter(|l| {
                        let body = l["body"].as_str().unwrap_or_default();
                        missing.iter().any(|u| body.contains(&format!("\"{u}\"")))
                    })
                    .collect();
                panic!(
                    "timed out: the sink accepted {ok} of {n}; missing {missing:?}; \
                     their requests at the sink: {seen:?}; queue: {}; subscription: {}",
                    q["stats"], s["stats"]
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Write `name` into `dir` the safe way: a `.part` file renamed into place.
fn drop_file(dir: &Path, name: &str, content: &[u8]) {
    let tmp = dir.join(format!("{name}.part"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// The seed's input: `userN,"alert N, placed"` rows, no header.
fn alerts(users: std::ops::Range<usize>) -> String {
    let mut s = String::new();
    for i in users {
        s.push_str(&format!("user{i},\"alert {i}, placed\"\n"));
    }
    s
}

async fn ingest_view(h: &Http) -> Value {
    h.get("/v1/ingest").await.1
}

fn file<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["files"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name && f["state"] != "duplicate")
}

async fn wait_file_state(h: &Http, name: &str, states: &[&str], secs: u64) -> Value {
    let mut last = Value::Null;
    wait_until(&format!("{name} in state {states:?}"), secs, || {
        let h = h.clone();
        async move {
            let v = ingest_view(&h).await;
            file(&v, name)
                .is_some_and(|f| states.contains(&f["state"].as_str().unwrap_or_default()))
        }
    })
    .await;
    let v = ingest_view(h).await;
    if let Some(f) = file(&v, name) {
        last = f.clone();
    }
    last
}

/// Wait (bounded) until nothing is left to deliver from `queue` to its subscription `sub`: no
/// message waits to be fanned out, and no copy is ready, waiting for a retry or being sent.
/// From then on no delivery can start, and each one made has been answered (the sink writes
/// its line before it answers).
async fn wait_delivered(h: &Http, queue: &str, sub: &str, secs: u64) {
    wait_until(&format!("{queue} delivered to {sub}"), secs, || {
        let h = h.clone();
        async move {
            let (_, q) = h.get(&format!("/v1/queues/{queue}")).await;
            let (_, s) = h
                .get(&format!("/v1/queues/{queue}/subscriptions/{sub}"))
                .await;
            ["ready", "delayed", "in_flight"]
                .iter()
                .all(|k| q["stats"][k] == 0 && s["stats"][k] == 0)
        }
    })
    .await;
}

/// Accepted deliveries at the sink: user -> webhook-ids, and how many 200s each id got.
fn accepted(lines: &[Value]) -> (HashMap<String, HashSet<String>>, HashMap<String, usize>) {
    let mut users: HashMap<String, HashSet<String>> = HashMap::new();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for l in lines
        .iter()
        .filter(|l| l["status"] == 200 && l["path"] == "/webhook")
    {
        let id = l["headers"]["webhook-id"].as_str().unwrap().to_string();
        let body: Value = serde_json::from_str(l["body"].as_str().unwrap()).unwrap();
        users
            .entry(body["userId"].as_str().unwrap().to_string())
            .or_default()
            .insert(id.clone());
        *per_id.entry(id).or_default() += 1;
    }
    (users, per_id)
}

fn subscribe_body(url: &str) -> Value {
    json!({"url": url, "rate_limit_per_second": 2500, "concurrency": 16,
           "max_attempts": 50, "backoff": {"initial_seconds": 0.2, "max_seconds": 2}})
}

/// The first test: 100,000 rows (plus repeated users and a header) dropped into the
/// folder, delivered through a sink that answers 429 past its rate and 500 to a fraction:
/// every user received exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_file_alerts_every_user_exactly_once_through_429s_and_500s() {
    let sink = Sink::start(&[
        "--rate-limit",
        "1500",
        "--fail-rate",
        "0.02",
        "--status",
        "500",
    ])
    .await;
    let inbox = tempfile::tempdir().unwrap();
    let watch = format!("{}=alerts", inbox.path().display());
    let s = Server::start_with(&["--allow-private-targets", "--watch", &watch]).await;
    let h = Http::new(&s.base);
    let (st, v) = h
        .put(
            "/v1/queues/alerts/subscriptions/notify",
            subscribe_body(&sink.url),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let n = 100_000;
    let mut content = String::from("userId,alertMessage\n");
    content.push_str(&alerts(0..n));
    content.push_str(&alerts(10..15)); // repeated users: not alerted twice
    drop_file(inbox.path(), "alerts.csv", content.as_bytes());
    let f = wait_file_state(&h, "alerts.csv", &["processed"], 120).await;
    assert_eq!(f["rows_published"], n as u64, "{f}");
    assert_eq!(f["duplicates"], 5);
    assert_eq!(f["header"], true);
    assert_eq!(f["rows_failed"], 0);
    assert!(inbox.path().join("processed/alerts.csv").exists());
    let dups = std::fs::read_to_string(inbox.path().join("processed/alerts.csv.duplicates.jsonl"))
        .unwrap();
    assert_eq!(dups.lines().count(), 5);
    assert!(dups.contains("\"key\":\"user10\""), "{dups}");
    sink.wait_accepted(n, 300, &h, "alerts", "notify").await;
    wait_delivered(&h, "alerts", "notify", 120).await;
    let lines = sink.lines();
    let (users, per_id) = accepted(&lines);
    assert_eq!(users.len(), n, "every user");
    assert!(
        users.values().all(|ids| ids.len() == 1),
        "one webhook-id per user"
    );
    let twice = per_id.values().filter(|&&c| c > 1).count();
    assert_eq!(twice, 0, "no crash, so no delivery accepted twice");
    let throttled = lines.iter().filter(|l| l["status"] == 429).count();
    let failed = lines.iter().filter(|l| l["status"] == 500).count();
    // 500s come from --fail-rate, so they always happen; 429s depend on how fast this machine
    // delivers against the sink's 1,500/s (push::sink_429s_slow_one_endpoint_down_adaptively
    // pins the 429 behaviour with a limit no machine misses), so they are reported, not required.
    assert!(
        failed > 0,
        "the sink pushed back ({throttled} 429s, {failed} 500s)"
    );
    let sample = lines
        .iter()
        .find(|l| l["status"] == 200 && l["path"] == "/webhook")
        .unwrap();
    assert_eq!(sample["headers"]["sluice-ingest-file"], "alerts.csv");
    assert!(sample["headers"]["sluice-ingest-line"].as_str().is_some());
    wait_until("rows_delivered reaches every row", 30, || {
        let h = h.clone();
        async move {
            file(&ingest_view(&h).await, "alerts.csv")
                .is_some_and(|f| f["rows_delivered"] == n as u64)
        }
    })
    .await;
    let metrics = reqwest::get(format!("{}/metrics", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sluice_ingest_rows_total{queue=\"alerts\",outcome=\"published\"} 100000"),
        "metrics"
    );
    println!(
        "sink saw {} requests: {throttled} 429s, {failed} 500s",
        lines.len()
    );
}

/// The second test: the server is killed (SIGKILL) mid-file and mid-delivery several
/// times; after dedup by webhook-id at the sink, every user is alerted exactly once. Deliveries
/// accepted twice (a 2xx lost to a kill) are reported apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_file_and_mid_delivery_still_alerts_every_user_once() {
    let sink = Sink::start(&[
        "--rate-limit",
        "1500",
        "--fail-rate",
        "0.02",
        "--status",
        "500",
    ])
    .await;
    let inbox = tempfile::tempdir().unwrap();
    let watch = format!("{}=alerts", inbox.path().display());
    let mut s = Server::start_with(&["--allow-private-targets", "--watch", &watch]).await;
    let h = Http::new(&s.base);
    h.put(
        "/v1/queues/alerts/subscriptions/notify",
        subscribe_body(&sink.url),
    )
    .await;
    let n = 100_000;
    drop_file(inbox.path(), "big.csv", alerts(0..n).as_bytes());
    // Kill while the file is being read, then a few times during delivery.
    let mut mid_file = false;
    for delay_ms in [150u64, 1500, 2500, 2500] {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        if delay_ms == 150 {
            let v = ingest_view(&h).await;
            mid_file = file(&v, "big.csv").is_some_and(|f| f["state"] == "reading");
        }
        s.kill();
        s.spawn().await;
    }
    let f = wait_file_state(&h, "big.csv", &["processed"], 120).await;
    assert_eq!(f["rows_published"], n as u64, "{f}");
    sink.wait_accepted(n, 400, &h, "alerts", "notify").await;
    wait_delivered(&h, "alerts", "notify", 120).await;
    let (users, per_id) = accepted(&sink.lines());
    assert_eq!(users.len(), n, "no user missed");
    let two_ids: Vec<_> = users.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        two_ids.is_empty(),
        "a user got two different webhook-ids: {:?}",
        two_ids.first()
    );
    let duplicate_deliveries: usize = per_id.values().map(|&c| c - 1).sum();
    println!(
        "crash test: {n} users alerted once after dedup by webhook-id; duplicate deliveries (2xx lost to a kill): {duplicate_deliveries}; first kill mid-file: {mid_file}"
    );
    // The store counted each delivery once, across every kill: exactly every row.
    let f = file(&ingest_view(&h).await, "big.csv").cloned().unwrap();
    assert_eq!(f["rows_delivered"], n as u64, "{f}");
    assert_eq!(f["delivered"]["notify"], n as u64, "{f}");
}

/// Header detection, quoting, bad rows with a report, whole-file failures, duplicates of
/// whole files, ignored names, a file written slowly in place: each handled, and the watcher
/// keeps going. No subscription: rows wait in the queue and are checked by peeking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_and_bad_files_are_reported_and_the_watcher_keeps_going() {
    let inbox = tempfile::tempdir().unwrap();
    let lines_dir = tempfile::tempdir().unwrap();
    let d = inbox.path();
    let s = Server::start_with(&[
        "--watch",
        &format!("{}=rows", d.display()),
        "--watch",
        &format!("{}=raw:lines:row", lines_dir.path().display()),
        "--watch-settle-ms",
        "4000",
    ])
    .await;
    let h = Http::new(&s.base);
    // Quoted commas, quotes and newlines; a header; bad rows.
    let mixed = "user_id,message\n\
        u1,\"hello, world\"\n\
        u2,\"she said \"\"hi\"\"\nsecond line\"\n\
        u3,unquoted, comma\n\
        ,no user\n\
        u4,\n\
        u5,fine\n";
    drop_file(d, "mixed.csv", mixed.as_bytes());
    let f = wait_file_state(&h, "mixed.csv", &["failed"], 30).await;
    assert_eq!(
        (f["rows_published"].as_u64(), f["rows_failed"].as_u64()),
        (Some(3), Some(3)),
        "{f}"
    );
    assert_eq!(f["header"], true);
    let report = std::fs::read_to_string(d.join("failed/mixed.csv.errors.jsonl")).unwrap();
    let report: Vec<Value> = report
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(report.len(), 3);
    assert_eq!(report[0]["line"], 5);
    assert_eq!(report[0]["raw"], "u3,unquoted, comma");
    assert!(report[0]["reason"].as_str().unwrap().contains("3 fields"));
    assert_eq!(
        (report[1]["line"].as_u64(), report[2]["line"].as_u64()),
        (Some(6), Some(7))
    );
    let (_, peek) = h.get("/v1/queues/rows/messages?limit=10").await;
    let bodies: Vec<Value> = peek["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| serde_json::from_str(m["body"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        bodies[0],
        json!({"userId": "u1", "alertMessage": "hello, world"})
    );
    assert_eq!(
        bodies[1],
        json!({"userId": "u2", "alertMessage": "she said \"hi\"\nsecond line"})
    );
    assert_eq!(bodies[2], json!({"userId": "u5", "alertMessage": "fine"}));

    // Whole-file failures, each with a one-line report.
    drop_file(d, "empty.csv", b"");
    let mut garbage = vec![0u8, 159, 146, 150, 0, 1, 2];
    garbage.extend(std::iter::repeat_n(7u8, 5000));
    drop_file(d, "garbage.csv", &garbage);
    for (name, reason) in [("empty.csv", "empty"), ("garbage.csv", "binary")] {
        let f = wait_file_state(&h, name, &["failed"], 30).await;
        assert!(f["error"].as_str().unwrap().contains(reason), "{f}");
        let r = std::fs::read_to_string(d.join(format!("failed/{name}.errors.jsonl"))).unwrap();
        assert!(r.contains(reason), "{r}");
    }
    // The same content again: not sent twice.
    drop_file(d, "mixed-again.csv", mixed.as_bytes());
    wait_until("the copy refused as a duplicate", 30, || {
        let h = h.clone();
        async move {
            ingest_view(&h).await["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["name"] == "mixed-again.csv" && f["state"] == "duplicate")
        }
    })
    .await;
    assert!(d.join("failed/mixed-again.csv").exists());
    let (_, q) = h.get("/v1/queues/rows").await;
    assert_eq!(q["stats"]["ready"], 3, "{q}");

    // Ignored names are never taken; a file written slowly in place is taken only when done.
    std::fs::write(d.join(".hidden.csv"), "h1,x\n").unwrap();
    std::fs::write(d.join("upload.csv.tmp"), "t1,x\n").unwrap();
    let slow = d.join("slow.csv");
    let mut w = std::fs::File::create(&slow).unwrap();
    let mut written = 0;
    for i in 0..6 {
        let line = format!("slow{i},part {i}\n");
        w.write_all(line.as_bytes()).unwrap();
        w.flush().unwrap();
        written += line.len() as u64;
        // The watcher has looked at the file as it is now: it lists it as waiting to settle
        // with this size (or it took it, which the assertion below reports).
        wait_until(&format!("slow.csv seen at {written} bytes"), 30, || {
            let h = h.clone();
            async move {
                let v = ingest_view(&h).await;
                file(&v, "slow.csv").is_some()
                    || v["waiting"].as_array().is_some_and(|ws| {
                        ws.iter().any(|f| {
                            f["path"].as_str().is_some_and(|p| p.ends_with("slow.csv"))
                                && f["size"] == written
                        })
                    })
            }
        })
        .await;
        let v = ingest_view(&h).await;
        assert!(
            file(&v, "slow.csv").is_none(),
            "taken while still being written"
        );
    }
    let v = ingest_view(&h).await;
    assert!(
        v["waiting"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"].as_str().unwrap().ends_with("slow.csv")),
        "{v}"
    );
    drop(w);
    let f = wait_file_state(&h, "slow.csv", &["processed"], 30).await;
    assert_eq!(f["rows_published"], 6, "every row of the finished file");
    assert!(d.join(".hidden.csv").exists() && d.join("upload.csv.tmp").exists());
    assert!(file(&ingest_view(&h).await, ".hidden.csv").is_none());

    // lines format, dedup by row: every line is a message, blank lines skipped.
    drop_file(lines_dir.path(), "log.txt", b"first\n\nsecond\nfirst\n");
    let f = wait_file_state(&h, "log.txt", &["processed"], 30).await;
    assert_eq!(f["rows_published"], 3, "{f}");
    let (_, peek) = h.get("/v1/queues/raw/messages?limit=10").await;
    let bodies: Vec<&str> = peek["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["first", "second", "first"]);
}

/// A file of millions of rows is read in bounded memory: 3,000,000 rows for 1,000 users
/// (so the queue itself stays small) and one 20 MB line: the server's peak RSS stays far
/// below the file's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_file_is_read_in_constant_memory() {
    let inbox = tempfile::tempdir().unwrap();
    let s = Server::start_with(&["--watch", &format!("{}=huge", inbox.path().display())]).await;
    let h = Http::new(&s.base);
    let rows = 3_000_000usize;
    let tmp = inbox.path().join("huge.csv.part");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
        for i in 0..rows {
            writeln!(w, "user{},\"message number {i} for this user\"", i % 1000).unwrap();
        }
        w.write_all(b"long,").unwrap();
        w.write_all(&vec![b'x'; 20 << 20]).unwrap();
        w.write_all(b"\n").unwrap();
    }
    let size = std::fs::metadata(&tmp).unwrap().len();
    let pid = s.child.as_ref().unwrap().id();
    let hwm = || -> u64 {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        st.lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    let before = hwm();
    std::fs::rename(&tmp, inbox.path().join("huge.csv")).unwrap();
    let f = wait_file_state(&h, "huge.csv", &["failed"], 240).await;
    assert_eq!(f["rows_published"], 1000, "{f}");
    assert_eq!(f["duplicates"], (rows - 1000) as u64);
    assert_eq!(
        f["rows_failed"], 1,
        "the 20 MB line is reported, not buffered"
    );
    let grew = hwm().saturating_sub(before);
    println!(
        "huge file: {size} bytes, {rows} rows; peak RSS grew by {} MB",
        grew >> 20
    );
    assert!(
        grew < size / 3,
        "peak RSS grew by {grew} bytes for a {size}-byte file"
    );
}

/// wds `POST /upload` (multipart field `file`), `GET /retry`, `POST /v1/ingest` and
/// `sluice ingest` with its summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_retry_and_the_cli() {
    let inbox = tempfile::tempdir().unwrap();
    let s = Server::start_with(&[
        "--allow-private-targets",
        "--watch",
        &format!("{}=alerts", inbox.path().display()),
    ])
    .await;
    let h = Http::new(&s.base);
    // A receiver that refuses everything (400: fails at once) until told otherwise.
    let rx = crate::receiver::Receiver::with(|_, _| (400, None, 0)).await;
    h.put(
        "/v1/queues/alerts/subscriptions/notify",
        json!({"url": rx.url("/webhook"), "max_attempts": 1}),
    )
    .await;
    let boundary = "XyZ0123";
    let mut body = Vec::new();
    write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../up.csv\"\r\nContent-Type: text/csv\r\n\r\n").unwrap();
    body.extend_from_slice(alerts(0..20).as_bytes());
    write!(body, "\r\n--{boundary}--\r\n").unwrap();
    let (st, v) = h
        .raw(
            "POST",
            "/upload",
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["name"].as_str()),
        (Some("accepted"), Some("up.csv")),
        "{v}"
    );
    // The seed's fields beside sluice's: its Postman collection reads `data` as the file path.
    assert!(
        v["data"].as_str().is_some_and(|d| d.ends_with("up.csv")) && v["data"] == v["path"],
        "{v}"
    );
    assert_eq!(v["error"], "", "{v}");
    let f = wait_file_state(&h, "up.csv", &["processed"], 30).await;
    assert_eq!(f["rows_published"], 20);
    wait_until("all 20 dead-lettered", 30, || {
        let h = h.clone();
        async move {
            file(&ingest_view(&h).await, "up.csv").is_some_and(|f| f["rows_dead_lettered"] == 20)
        }
    })
    .await;
    rx.set(|_, _| (200, None, 0));
    let (st, v) = h.get("/retry").await;
    assert_eq!((st, v["redriven"].as_u64()), (200, Some(20)), "{v}");
    assert_eq!(
        (v["data"]["alerts"].as_u64(), &v["error"]),
        (Some(20), &json!("")),
        "{v}"
    );
    rx.wait_for("20 delivered after /retry", 30, |r| {
        r.iter().filter(|q| q.path == "/webhook").count() >= 40
    })
    .await;
    wait_until("rows_delivered 20", 30, || {
        let h = h.clone();
        async move { file(&ingest_view(&h).await, "up.csv").is_some_and(|f| f["rows_delivered"] == 20) }
    })
    .await;
    // A multipart form without the file field; a bad format.
    let (st, v) = h
        .raw(
            "POST",
            "/upload",
            &format!("multipart/form-data; boundary={boundary}"),
            format!("--{boundary}--\r\n").into_bytes(),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("file"),
        "{v}"
    );
    let (st, v) = h
        .raw(
            "POST",
            "/v1/ingest?queue=x&format=xml",
            "text/csv",
            b"a,b\n".to_vec(),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("format"),
        "{v}"
    );

    // The CLI, into a queue with no watched folder (a spool folder), jsonl.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    std::fs::write(
        &path,
        "{\"userId\":\"a\",\"n\":1}\n{\"userId\":\"b\",\"n\":2}\nnot json\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "--server", &s.base, "ingest", "--queue", "events", "--format", "jsonl", "--json",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a file with a bad row exits 1");
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            rec["state"].as_str(),
            rec["rows_published"].as_u64(),
            rec["rows_failed"].as_u64()
        ),
        (Some("failed"), Some(2), Some(1)),
        "{rec}"
    );
    std::fs::write(&path, "{\"userId\":\"c\"}\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "--server", &s.base, "ingest", "--queue", "events", "--format", "jsonl",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("processed: 1 rows read, 1 published"),
        "{text}"
    );
    let (_, q) = h.get("/v1/queues/events").await;
    assert_eq!(q["stats"]["ready"], 3, "{q}");
}
