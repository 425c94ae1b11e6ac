//! Storage-choice micro-benchmark for sluice: how many durable 100-byte publishes per second can
//! one process get out of (a) a plain append-only log with group commit (sluice's design),
//! (b) redb, (c) SQLite in WAL mode, (d) fjall — each used the best way it allows, with every
//! acknowledged record fsynced before its producer continues. See README.md.
//!
//! Knobs (environment): BENCH_SECS (default 5 per case and round), BENCH_ROUNDS (default 5),
//! BENCH_DIR (default /tmp; must be on the real disk, not tmpfs), BENCH_ONLY (run only cases whose
//! name contains this string), BENCH_FOOTPRINT_N (default 100000; 0 skips the footprint table).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const BODY: usize = 100;

// ---------------------------------------------------------------------------------------------
// The record: byte for byte sluice's Publish frame (crates/engine/src/embedded/record.rs) for a
// 100-byte body and no attributes: len u32 | crc32c u32 | kind u8 | queue u32 | id u128 |
// enqueued_at i64 | visible_at i64 | receive_count u32 | nonce u32 | first_received_at i64 |
// source u32 | attr count u16 | body len u32 | body. 171 bytes.
const PAYLOAD: usize = 1 + 4 + 16 + 8 + 8 + 4 + 4 + 8 + 4 + 2 + 4 + BODY;
const FRAME: usize = 8 + PAYLOAD;

/// Append the frame of message `seq` to `out`. The body is pseudo-random so that stores that
/// compress (fjall: LZ4) get no unfair advantage.
fn encode_frame(seq: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.push(1);
    out.extend_from_slice(&7u32.to_le_bytes());
    out.extend_from_slice(&(seq as u128).to_le_bytes());
    out.extend_from_slice(&(seq as i64).to_le_bytes());
    out.extend_from_slice(&(seq as i64).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0i64.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(BODY as u32).to_le_bytes());
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..BODY / 4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&(x as u32).to_le_bytes());
    }
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&(PAYLOAD as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - start, FRAME);
}

// ---------------------------------------------------------------------------------------------
// A store: the writer thread hands it every frame appended since its last commit; `commit` must
// not return before they are durable.
trait Store: Send {
    /// Make frames `first_seq ..` (concatenated in `frames`, FRAME bytes each) durable.
    fn commit(&mut self, first_seq: u64, frames: &[u8]);
}

/// How an append-only file is prepared before the timed appends.
#[derive(Clone, Copy)]
enum Prep {
    /// Empty file: every append grows it, so every fdatasync must also commit the new size
    /// (a filesystem-journal commit). This is what sluice's log does today.
    Grow,
    /// `set_len` to the segment size (a sparse file; fjall does this for its journal): the size
    /// no longer changes, but each new 4 KiB block still needs allocating.
    SetLen,
    /// Segment written full of zeros and synced beforehand: appends overwrite allocated blocks,
    /// so fdatasync has only data to flush.
    Zeros,
}

const SEGMENT_BYTES: u64 = 64 << 20; // as sluice's log

fn prepare(path: &Path, prep: Prep) -> File {
    let f = OpenOptions::new().create(true).truncate(true).write(true).open(path).unwrap();
    match prep {
        Prep::Grow => {}
        Prep::SetLen => f.set_len(SEGMENT_BYTES).unwrap(),
        Prep::Zeros => {
            let zeros = vec![0u8; 1 << 20];
            for i in 0..SEGMENT_BYTES >> 20 {
                f.write_all_at(&zeros, i << 20).unwrap();
            }
        }
    }
    f.sync_all().unwrap();
    File::open(path.parent().unwrap()).unwrap().sync_all().unwrap();
    f
}

/// sluice's log: pwrite everything pending at the end of the segment, then one fdatasync.
struct LogStore {
    file: File,
    len: u64,
}
impl LogStore {
    fn open(dir: &Path, prep: Prep) -> Self {
        LogStore { file: prepare(&dir.join("0000000000000000.seg"), prep), len: 0 }
    }
}
impl Store for LogStore {
    fn commit(&mut self, _first_seq: u64, frames: &[u8]) {
        self.file.write_all_at(frames, self.len).unwrap();
        self.len += frames.len() as u64;
        self.file.sync_data().unwrap();
    }
}

const REDB_TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("messages");

/// redb: one write transaction per commit, Durability::Immediate. Key = sequence, value = the
/// record payload (the store has its own checksums, so no frame header).
struct RedbStore {
    db: redb::Database,
}
impl RedbStore {
    fn open(dir: &Path) -> Self {
        let db = redb::Database::create(dir.join("messages.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(REDB_TABLE).unwrap();
        tx.commit().unwrap();
        RedbStore { db }
    }
}
impl Store for RedbStore {
    fn commit(&mut self, first_seq: u64, frames: &[u8]) {
        let mut tx = self.db.begin_write().unwrap();
        tx.set_durability(redb::Durability::Immediate).unwrap();
        {
            let mut t = tx.open_table(REDB_TABLE).unwrap();
            for (i, f) in frames.chunks_exact(FRAME).enumerate() {
                t.insert(first_seq + i as u64, &f[8..]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

/// SQLite, WAL mode, synchronous=FULL: one transaction per commit.
struct SqliteStore {
    conn: rusqlite::Connection,
}
impl SqliteStore {
    fn open(dir: &Path) -> Self {
        let conn = rusqlite::Connection::open(dir.join("messages.sqlite")).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute_batch("CREATE TABLE messages (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
            .unwrap();
        SqliteStore { conn }
    }
}
impl Store for SqliteStore {
    fn commit(&mut self, first_seq: u64, frames: &[u8]) {
        let tx = self.conn.transaction().unwrap();
        {
            let mut st = tx.prepare_cached("INSERT INTO messages (seq, payload) VALUES (?1, ?2)").unwrap();
            for (i, f) in frames.chunks_exact(FRAME).enumerate() {
                st.execute(rusqlite::params![(first_seq + i as u64) as i64, &f[8..]]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

/// fjall: one write batch per commit, persisted with fdatasync before commit() returns.
struct FjallStore {
    db: fjall::Database,
    ks: fjall::Keyspace,
}
impl FjallStore {
    fn open(dir: &Path) -> Self {
        let db = fjall::Database::builder(dir.join("fjall")).open().unwrap();
        let ks = db.keyspace("messages", fjall::KeyspaceCreateOptions::default).unwrap();
        FjallStore { db, ks }
    }
}
impl Store for FjallStore {
    fn commit(&mut self, first_seq: u64, frames: &[u8]) {
        let mut b = self.db.batch().durability(Some(fjall::PersistMode::SyncData));
        for (i, f) in frames.chunks_exact(FRAME).enumerate() {
            b.insert(&self.ks, (first_seq + i as u64).to_be_bytes(), &f[8..]);
        }
        b.commit().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Group commit harness: producers append a frame to a shared buffer under a mutex and wait on a
// condvar until the writer thread has committed it. The writer takes everything pending, commits
// it to the store in one go, and publishes the new durable sequence number.

struct State {
    pending: Vec<u8>,
    appended: u64, // sequence number of the last appended record
    taken: u64,    // last sequence number handed to the store
    durable: u64,  // last sequence number known durable
    stop: bool,
}
struct Shared {
    st: Mutex<State>,
    wake_writer: Condvar,
    durable_cv: Condvar,
}

struct Outcome {
    records: u64,
    commits: u64,
    elapsed: Duration,
    lat: Vec<Duration>,
}

fn group_commit(mut store: Box<dyn Store>, producers: usize, secs: f64) -> (Outcome, Box<dyn Store>) {
    let sh = Arc::new(Shared {
        st: Mutex::new(State { pending: Vec::new(), appended: 0, taken: 0, durable: 0, stop: false }),
        wake_writer: Condvar::new(),
        durable_cv: Condvar::new(),
    });
    let writer = {
        let sh = sh.clone();
        std::thread::spawn(move || {
            let mut commits = 0u64;
            let mut buf = Vec::new();
            loop {
                let (first, last) = {
                    let mut st = sh.st.lock().unwrap();
                    while st.pending.is_empty() && !st.stop {
                        st = sh.wake_writer.wait(st).unwrap();
                    }
                    if st.pending.is_empty() {
                        break;
                    }
                    buf.clear();
                    std::mem::swap(&mut buf, &mut st.pending);
                    let first = st.taken + 1;
                    st.taken = st.appended;
                    (first, st.appended)
                };
                store.commit(first, &buf);
                commits += 1;
                sh.st.lock().unwrap().durable = last;
                sh.durable_cv.notify_all();
            }
            (commits, store)
        })
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..producers)
        .map(|_| {
            let sh = sh.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(1 << 16);
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let mut st = sh.st.lock().unwrap();
                    st.appended += 1;
                    let seq = st.appended;
                    encode_frame(seq, &mut st.pending);
                    sh.wake_writer.notify_one();
                    while st.durable < seq {
                        st = sh.durable_cv.wait(st).unwrap();
                    }
                    drop(st);
                    lat.push(t0.elapsed()); // acknowledged: durable
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.join().unwrap());
    }
    let elapsed = start.elapsed();
    sh.st.lock().unwrap().stop = true;
    sh.wake_writer.notify_one();
    let (commits, store) = writer.join().unwrap();
    (Outcome { records: lat.len() as u64, commits, elapsed, lat }, store)
}

/// redb without a writer thread: each insert is its own Immediate transaction (C = 1).
fn redb_per_insert(dir: &Path, secs: f64) -> Outcome {
    let mut s = RedbStore::open(dir);
    let mut buf = Vec::with_capacity(FRAME);
    let mut lat = Vec::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut seq = 0;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        seq += 1;
        buf.clear();
        encode_frame(seq, &mut buf);
        s.commit(seq, &buf);
        lat.push(t0.elapsed());
    }
    Outcome { records: seq, commits: seq, elapsed: start.elapsed(), lat }
}

/// Raw ceiling: one thread appends 128 bytes and fdatasyncs, over and over.
fn raw_fdatasync(dir: &Path, secs: f64, prep: Prep) -> Outcome {
    let f = prepare(&dir.join("raw.dat"), prep);
    let data = [0xABu8; 128];
    let mut lat = Vec::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut off = 0u64;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        f.write_all_at(&data, off).unwrap();
        f.sync_data().unwrap();
        off += 128;
        lat.push(t0.elapsed());
    }
    let n = lat.len() as u64;
    Outcome { records: n, commits: n, elapsed: start.elapsed(), lat }
}

// ---------------------------------------------------------------------------------------------
// Accounting.

/// Bytes this process caused to be written to the storage layer (pages dirtied), /proc/self/io.
fn write_bytes() -> u64 {
    let s = fs::read_to_string("/proc/self/io").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap()
}

/// User + system CPU seconds of this process.
fn cpu_secs() -> f64 {
    let s = fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // fields 14 and 15 of stat (utime, stime); `rest` starts at field 3
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// (apparent size, allocated bytes) of all files under `p`.
fn dir_bytes(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut n = (0, 0);
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        let (a, b) = if m.is_dir() { dir_bytes(&e.path()) } else { (m.len(), m.blocks() * 512) };
        n = (n.0 + a, n.1 + b);
    }
    n
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

type Opener = fn(&Path) -> Box<dyn Store>;
const STORES: [(&str, Opener); 6] = [
    ("sluice-log", |d| Box::new(LogStore::open(d, Prep::Grow))),
    ("sluice-log+setlen", |d| Box::new(LogStore::open(d, Prep::SetLen))),
    ("sluice-log+zeros", |d| Box::new(LogStore::open(d, Prep::Zeros))),
    ("redb", |d| Box::new(RedbStore::open(d))),
    ("sqlite-wal", |d| Box::new(SqliteStore::open(d))),
    ("fjall", |d| Box::new(FjallStore::open(d))),
];

struct Row {
    rate: f64,
    commits: f64,
    per_commit: f64,
    p50: f64,
    p99: f64,
    cpu_us: f64,
    dirtied: f64,
}

fn main() {
    let env = |k: &str| std::env::var(k).ok();
    let secs: f64 = env("BENCH_SECS").map(|s| s.parse().unwrap()).unwrap_or(5.0);
    let rounds: usize = env("BENCH_ROUNDS").map(|s| s.parse().unwrap()).unwrap_or(5);
    let footprint_n: u64 = env("BENCH_FOOTPRINT_N").map(|s| s.parse().unwrap()).unwrap_or(100_000);
    let only = env("BENCH_ONLY").unwrap_or_default();
    let base = PathBuf::from(env("BENCH_DIR").unwrap_or_else(|| "/tmp".into()))
        .join(format!("storage-choice-{}", std::process::id()));
    fs::create_dir_all(&base).unwrap();
    eprintln!(
        "data dir {}; {secs} s per case, {rounds} rounds (interleaved); record = {FRAME} B frame ({BODY} B body)",
        base.display()
    );

    let mut cases: Vec<(String, Box<dyn Fn(&Path) -> Outcome>)> = Vec::new();
    for (name, prep) in [("raw-fdatasync", Prep::Grow), ("raw-fdatasync+setlen", Prep::SetLen), ("raw-fdatasync+zeros", Prep::Zeros)] {
        cases.push((format!("{name} C=1"), Box::new(move |d: &Path| raw_fdatasync(d, secs, prep))));
    }
    for (name, open) in STORES {
        for c in [1usize, 8, 50] {
            cases.push((format!("{name} group C={c}"), Box::new(move |d: &Path| group_commit(open(d), c, secs).0)));
        }
        if name == "redb" {
            cases.push(("redb txn-per-insert C=1".into(), Box::new(move |d: &Path| redb_per_insert(d, secs))));
        }
    }
    cases.retain(|(n, _)| n.contains(&only));

    // Rounds are interleaved (every case once, then again) so that drift in the machine's load
    // hits all cases alike; the table shows the round with the median records/s.
    let mut rows: Vec<Vec<Row>> = cases.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, (name, run)) in cases.iter().enumerate() {
            let dir = base.join(name.replace([' ', '=', '+'], "_"));
            fs::create_dir_all(&dir).unwrap();
            let (wb0, cpu0) = (write_bytes(), cpu_secs());
            let mut o = run(&dir);
            let (wb, cpu) = (write_bytes() - wb0, cpu_secs() - cpu0);
            fs::remove_dir_all(&dir).unwrap();
            let n = o.records as f64;
            let t = o.elapsed.as_secs_f64();
            o.lat.sort_unstable();
            let row = Row {
                rate: n / t,
                commits: o.commits as f64 / t,
                per_commit: n / o.commits as f64,
                p50: pct(&o.lat, 0.5),
                p99: pct(&o.lat, 0.99),
                cpu_us: cpu * 1e6 / n,
                dirtied: wb as f64 / n,
            };
            eprintln!("round {} {name}: {:.0} records/s", round + 1, row.rate);
            rows[i].push(row);
        }
    }

    println!("| case | records/s (median) | range over rounds | syncs/s | records per sync | p50 ms | p99 ms | CPU µs/record | dirtied B/record |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ((name, _), mut rs) in cases.iter().zip(rows) {
        rs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let (lo, hi) = (rs[0].rate, rs[rs.len() - 1].rate);
        let r = &rs[rs.len() / 2];
        let dirtied = if name.contains("+zeros") || name.starts_with("raw") { "-".into() } else { format!("{:.0}", r.dirtied) };
        println!(
            "| {name} | {:.0} | {lo:.0}–{hi:.0} | {:.0} | {:.1} | {:.2} | {:.2} | {:.0} | {dirtied} |",
            r.rate, r.commits, r.per_commit, r.p50, r.p99, r.cpu_us
        );
    }

    // Footprint: N records committed in batches of 50 (what C=50 produces), store closed, then
    // the files measured.
    if footprint_n > 0 {
        println!();
        println!("Footprint after {footprint_n} records committed 50 per transaction, store closed:");
        println!();
        println!("| store | allocated B/record | apparent size B/record | files (largest) |");
        println!("|---|---:|---:|---|");
        let mut frames = Vec::new();
        for (name, open) in STORES {
            if name.contains('+') || !name.contains(&only) && !only.is_empty() {
                continue;
            }
            let dir = base.join(format!("footprint-{name}"));
            fs::create_dir_all(&dir).unwrap();
            let mut store = open(&dir);
            let mut seq = 1;
            while seq <= footprint_n {
                frames.clear();
                let k = 50.min(footprint_n - seq + 1);
                for s in seq..seq + k {
                    encode_frame(s, &mut frames);
                }
                store.commit(seq, &frames);
                seq += k;
            }
            drop(store);
            let (apparent, allocated) = dir_bytes(&dir);
            let mut files = Vec::new();
            list_files(&dir, &dir, &mut files);
            files.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
            let largest = files.iter().take(2).map(|(n, l)| format!("{n} {:.1} MB", *l as f64 / 1e6));
            let files = format!("{}: {}", files.len(), largest.collect::<Vec<_>>().join(", "));
            println!(
                "| {name} | {:.0} | {:.0} | {} |",
                allocated as f64 / footprint_n as f64,
                apparent as f64 / footprint_n as f64,
                files
            );
            fs::remove_dir_all(&dir).unwrap();
        }
    }
    fs::remove_dir_all(&base).unwrap();
}

fn list_files(root: &Path, p: &Path, out: &mut Vec<(String, u64)>) {
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.metadata().unwrap().is_dir() {
            list_files(root, &e.path(), out);
        } else {
            out.push((e.path().strip_prefix(root).unwrap().display().to_string(), e.metadata().unwrap().len()));
        }
    }
}
