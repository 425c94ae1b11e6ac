//! Fault injection: a full disk (a small tmpfs mounted by the test) and a flipped byte in the
//! middle of a data file. Nothing acknowledged is lost; the server says plainly what is wrong
//! and recovers when it can.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{Http, Server};
use crate::receiver::wait_until;

/// A tmpfs of `mib` MiB, unmounted on drop. None where mounting is not allowed (the test then
/// says so and stops): CI machines of this kind run as root, where it is.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here (needs root); the disk-full test did not run"
            );
            return None;
        }
        Some(Tmpfs { dir })
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn free(&self) -> u64 {
        use std::os::unix::ffi::OsStrExt;
        let p = std::ffi::CString::new(self.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: statvfs into a zeroed struct, valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(p.as_ptr(), &mut st) }, 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }
    /// Write a filler file until at most `leave` bytes are free (0: until the disk is full).
    fn fill(&self, leave: u64) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        while self.free() > leave {
            let room = (self.free() - leave).min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..room]).is_err() {
                break;
            }
            let _ = f.flush();
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn publish(h: &Http, q: &str, body: &str) -> (u16, Value) {
    h.post(&format!("/v1/queues/{q}/messages"), json!({"body": body}))
        .await
}

/// Below the free-space reserve, publishes get 503 storage_full before anything changes;
/// receives and acks go on; publishing resumes when space returns.
#[tokio::test]
async fn a_nearly_full_disk_refuses_new_messages_and_recovers() {
    let Some(fs) = Tmpfs::mount(48) else { return };
    let data = fs.path().join("data");
    let data = data.to_str().unwrap();
    let mut s = Server::start_with(&["--data-dir", data, "--min-free-bytes", "8388608"]).await;
    let h = Http::new(&s.base);
    let mut kept = Vec::new();
    for i in 0..50 {
        let body = format!("kept-{i}-{}", "x".repeat(1000));
        assert_eq!(publish(&h, "full", &body).await.0, 201);
        kept.push(body);
    }
    let filler = fs.fill(4 * 1024 * 1024);
    // The free space is read at most every 50 ms: the first publishes may still pass.
    let mut refused = None;
    let mut slipped = 0;
    for _ in 0..200 {
        let (st, v) = publish(&h, "full", "one too many").await;
        if st == 503 {
            refused = Some(v);
            break;
        }
        slipped += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = refused.expect("publishes are refused below the reserve");
    assert_eq!(v["error"]["code"], "storage_full", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("--min-free-bytes") && msg.contains("8388608"),
        "{msg}"
    );
    // A new queue is refused too; the SQS API answers ServiceUnavailable.
    let (st, v) = h.put("/v1/queues/another", json!({})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (503, Some("storage_full"))
    );
    // What is stored is intact, and consumers go on: receive and ack one.
    let have = h.peek_bodies("full").await;
    assert!(
        kept.iter().all(|b| have.contains(b)),
        "nothing stored is lost"
    );
    let (st, v) = h
        .post("/v1/queues/full/receive", json!({"max_messages": 1}))
        .await;
    assert_eq!(st, 200, "{v}");
    let receipt = v["messages"][0]["receipt"].as_str().unwrap().to_string();
    let (st, v) = h
        .post("/v1/queues/full/ack", json!({"receipts": [receipt]}))
        .await;
    assert_eq!(st, 200, "acks still work: {v}");
    let acked = v.to_string();
    // Not ready for new messages (a load balancer sends them elsewhere), and it says why.
    assert_eq!(h.get("/readyz").await.0, 503);
    let (_, info) = h.get("/v1/server").await;
    assert!(
        info["storage_problems"].to_string().contains("below the"),
        "{info}"
    );
    // Right after a restart, before anything is written, it is the same.
    s.kill();
    s.spawn().await;
    assert_eq!(h.get("/readyz").await.0, 503, "after a restart too");
    assert_eq!(publish(&h, "full", "refused").await.0, 503);
    // Space returns: publishing resumes without a restart.
    std::fs::remove_file(filler).unwrap();
    wait_until("publishes are accepted again", 10, || {
        let h = h.clone();
        async move { publish(&h, "full", "after").await.0 == 201 }
    })
    .await;
    // And everything survives a crash.
    s.kill();
    s.spawn().await;
    let have = h.peek_bodies("full").await;
    assert_eq!(
        have.len(),
        50 + slipped,
        "49 kept + after (one acked) + {slipped} accepted before the check: {acked}"
    );
    assert!(have.contains(&"after".to_string()));
}

/// With the reserve off, the disk really fills under the log writer: writes fail with 503,
/// /readyz says unavailable, and when space returns the writer's retry makes the server
/// healthy again with no restart. Every acknowledged message survives a crash afterwards.
#[tokio::test]
async fn a_full_disk_under_the_writer_recovers_when_space_returns() {
    let Some(fs) = Tmpfs::mount(32) else { return };
    let data = fs.path().join("data");
    let data = data.to_str().unwrap();
    let mut s = Server::start_with(&["--data-dir", data, "--min-free-bytes", "0"]).await;
    let h = Http::new(&s.base);
    let big = "y".repeat(60_000);
    let mut acked = Vec::new();
    for i in 0..10 {
        let body = format!("acked-{i}-{big}");
        assert_eq!(publish(&h, "disk", &body).await.0, 201);
        acked.push(body);
    }
    let filler = fs.fill(0);
    let mut failed = None;
    for i in 0..40 {
        let body = format!("late-{i}-{big}");
        let (st, v) = publish(&h, "disk", &body).await;
        if st == 201 {
            acked.push(body);
            continue;
        }
        failed = Some((st, v));
        break;
    }
    let (st, v) = failed.expect("a publish fails once the disk is full");
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["error"]["code"], "storage_unavailable", "{v}");
    assert_eq!(h.get("/readyz").await.0, 503);
    let info = h.get("/v1/server").await.1;
    assert!(
        info["storage_problems"]
            .to_string()
            .contains("log writes are failing"),
        "{info}"
    );
    // Meanwhile every write is refused plainly (the log cannot grow).
    let (st, v) = h.put("/v1/queues/other", json!({})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (503, Some("storage_unavailable"))
    );
    std::fs::remove_file(filler).unwrap();
    wait_until("storage is healthy again", 15, || {
        let h = h.clone();
        async move { h.get("/readyz").await.0 == 200 }
    })
    .await;
    assert_eq!(publish(&h, "disk", "after").await.0, 201);
    acked.push("after".into());
    s.kill();
    s.spawn().await;
    let have = h.peek_bodies("disk").await;
    for b in &acked {
        assert!(
            have.contains(b),
            "acknowledged message lost: {}",
            &b[..12.min(b.len())]
        );
    }
}

/// A byte flipped in the middle of a segment (inside one message's record), and another in the
/// length field of a second record: recovery skips exactly those two records, says so (log,
/// /v1/server, metrics) and keeps every other message of every queue.
#[tokio::test]
async fn flipped_bytes_in_a_segment_lose_only_those_records() {
    let mut s = Server::start().await;
    let h = Http::new(&s.base);
    for i in 0..30 {
        for q in ["left", "right"] {
            let (st, _) = publish(&h, q, &format!("{q}-{i:02}-payload")).await;
            assert_eq!(st, 201);
        }
    }
    assert_eq!(s.terminate().code(), Some(0));
    let seg = std::fs::read_dir(s.dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let find = |b: &[u8], needle: &str| {
        b.windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap()
    };
    // A flipped bit in a body: the record's checksum no longer matches.
    let at = find(&bytes, "left-12-payload") + 5;
    bytes[at] ^= 0x20;
    // A flipped byte in a record's length field (the frame starts 8 bytes before its payload;
    // the body is the payload's tail): the reader must find the next record by itself.
    let body_at = find(&bytes, "right-20-payload");
    let frame_start = (0..body_at)
        .rev()
        .find(|&o| {
            let len = u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
            o + 8 + len == body_at + "right-20-payload".len() && bytes[o + 8] == 1
        })
        .expect("the frame of right-20");
    bytes[frame_start + 3] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    s.spawn().await;
    let left = h.peek_bodies("left").await;
    let right = h.peek_bodies("right").await;
    assert_eq!(left.len(), 29, "{left:?}");
    assert!(!left.contains(&"left-12-payload".to_string()));
    assert_eq!(right.len(), 29, "{right:?}");
    assert!(!right.contains(&"right-20-payload".to_string()));
    assert!(
        left.contains(&"left-13-payload".to_string())
            && right.contains(&"right-21-payload".to_string())
    );
    let info = h.get("/v1/server").await.1;
    let problems = info["storage_problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{info}");
    assert!(
        problems[0].as_str().unwrap().contains("checksum mismatch"),
        "{info}"
    );
    assert!(s.log().contains("storage corruption"), "{}", s.log());
    let metrics = reqwest::get(format!("{}/metrics", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sluice_storage_corrupt_regions_total 2"),
        "metrics"
    );
    // The queues work as usual.
    assert_eq!(publish(&h, "left", "new").await.0, 201);
    let (st, v) = h
        .post("/v1/queues/right/receive", json!({"max_messages": 10}))
        .await;
    assert_eq!(
        (st, v["messages"].as_array().map(|m| m.len())),
        (200, Some(10))
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Damage that appears while the server runs (a byte flipped in a segment under it) is found
/// when the message is read: the receive delivers the others, the damaged message is taken out
/// of its queue and reported, and no queue stalls.
#[tokio::test]
async fn damage_found_while_running_takes_out_only_that_message() {
    let s = Server::start().await;
    let h = Http::new(&s.base);
    for i in 0..5 {
        for q in ["hot", "cold"] {
            let (st, _) = publish(&h, q, &format!("{q}-{i}-payload")).await;
            assert_eq!(st, 201);
        }
    }
    let seg = std::fs::read_dir(s.dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows("hot-2-payload".len())
        .position(|w| w == b"hot-2-payload")
        .unwrap()
        + 4;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[bytes[at] ^ 0x01], at as u64).unwrap();
    }
    let (st, v) = h
        .post("/v1/queues/hot/receive", json!({"max_messages": 10}))
        .await;
    assert_eq!(st, 200, "{v}");
    let got: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(!got.contains(&"hot-2-payload"));
    let q = h.get("/v1/queues/hot").await.1;
    assert_eq!(
        (
            q["stats"]["ready"].as_u64(),
            q["stats"]["in_flight"].as_u64()
        ),
        (Some(0), Some(4)),
        "the damaged message left the queue: {q}"
    );
    let info = h.get("/v1/server").await.1;
    let problems = info["storage_problems"].to_string();
    assert!(
        problems.contains("hot") && problems.contains("corrupt on disk"),
        "{info}"
    );
    assert!(s.log().contains("storage corruption"), "{}", s.log());
    assert_eq!(
        h.peek_bodies("cold").await.len(),
        5,
        "other queues untouched"
    );
    assert_eq!(publish(&h, "hot", "later").await.0, 201);
}
