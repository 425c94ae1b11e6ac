//! Reading a file's rows on a blocking thread, for `job.rs`: open and hash the file (refusing
//! empty, unreadable and binary ones), then parse its rows into batches of messages under
//! deterministic ids, writing the rows that fail and the duplicates to their report files on
//! the way. Rows are published from the checkpointed offset; with dedup `user` or `content`
//! the file is read from the start to rebuild the keys already sent (`job.rs`).

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sluice_engine::push::ATTR_TALLY;
use sluice_engine::{KeyedPublish, MessageId};
use tokio::sync::mpsc;

use super::parse::{DedupKey, Format, Row, RowKind, RowReader};
use super::{tally_key, ATTR_FILE, ATTR_ID, ATTR_LINE};

/// Rows per publish (one store append and one sync).
const BATCH_ROWS: usize = 1000;
const BATCH_BYTES: usize = 1 << 20;
/// Bytes read at the start of a file to tell text from binary.
const SNIFF: usize = 8192;

pub(super) enum Opened {
    Ok { size: u64, hash: [u8; 32] },
    Gone,
    Unreadable(String),
    Empty,
    Binary(u64),
}

impl Opened {
    /// Why a file that opened like this is refused. `Ok` and `Gone` are not refused (`process`
    /// names the refused variants), so they have no reason.
    pub(super) fn refusal(&self, format: Format) -> String {
        match self {
            Opened::Empty => "file is empty: no rows".into(),
            Opened::Unreadable(why) => why.clone(),
            Opened::Binary(at) => format!(
                "binary file: NUL byte at byte {at}; expected {} text",
                format.as_str()
            ),
            Opened::Ok { .. } | Opened::Gone => String::new(),
        }
    }
}

pub(super) fn open_and_hash(path: &Path) -> Opened {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Opened::Gone,
        Err(e) => return Opened::Unreadable(format!("cannot open the file: {e}")),
    };
    let size = match f.metadata() {
        Ok(m) => m.len(),
        Err(e) => return Opened::Unreadable(format!("cannot stat the file: {e}")),
    };
    if size == 0 {
        return Opened::Empty;
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Opened::Unreadable(format!("read error at byte {pos}: {e}")),
        };
        if pos < SNIFF as u64 {
            let upto = n.min(SNIFF - pos as usize);
            if let Some(i) = buf[..upto].iter().position(|&b| b == 0) {
                return Opened::Binary(pos + i as u64);
            }
        }
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    if pos == 0 {
        return Opened::Empty;
    }
    Opened::Ok {
        size: pos,
        hash: *hasher.finalize().as_bytes(),
    }
}

/// A row's id: UUIDv8 bits over blake3(file hash, kind, key).
pub fn row_id(file_hash: &[u8; 32], kind: &[u8], key: &[u8]) -> MessageId {
    let mut h = blake3::Hasher::new();
    h.update(file_hash);
    h.update(kind);
    h.update(&[0]);
    h.update(key);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    MessageId(u128::from_be_bytes(b))
}

/// What the reader thread hands over: rows up to `end`, ready to publish.
pub(super) struct Batch {
    pub(super) msgs: Vec<KeyedPublish>,
    pub(super) end: u64,
    pub(super) line: u64,
    pub(super) header: bool,
    pub(super) read: u64,
    pub(super) failed: u64,
    pub(super) dups: u64,
    pub(super) errors_len: u64,
    pub(super) dups_len: u64,
}

impl Batch {
    fn empty() -> Batch {
        Batch {
            msgs: Vec::with_capacity(BATCH_ROWS),
            end: 0,
            line: 0,
            header: false,
            read: 0,
            failed: 0,
            dups: 0,
            errors_len: 0,
            dups_len: 0,
        }
    }
}

/// Where the reader starts and what it must know to continue a file.
pub(super) struct ReadPlan {
    pub(super) path: PathBuf,
    pub(super) name: String,
    pub(super) id: String,
    pub(super) hash: [u8; 32],
    pub(super) format: Format,
    pub(super) dedup: DedupKey,
    pub(super) offset: u64,
    pub(super) line: u64,
    pub(super) errors: PathBuf,
    pub(super) errors_len: u64,
    pub(super) dups: PathBuf,
    pub(super) dups_len: u64,
    pub(super) max_row: usize,
}

/// A report file opened for appending at the checkpointed length (anything after it was
/// written past the last checkpoint and will be written again).
pub(super) fn report_at(path: &Path, len: u64) -> io::Result<BufWriter<File>> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    f.set_len(len)?;
    f.seek(SeekFrom::Start(len))?;
    Ok(BufWriter::new(f))
}

/// Flush a report and return its length (synced when it grew).
pub(super) fn report_len(w: &mut BufWriter<File>, grew: bool) -> io::Result<u64> {
    w.flush()?;
    if grew {
        w.get_ref().sync_data()?;
    }
    w.get_ref().stream_position()
}

/// One line of the errors report: the row's line, its raw bytes (as text) and why it failed.
pub(super) fn report_line(line: u64, raw: &[u8], reason: &str) -> Vec<u8> {
    json_line(serde_json::json!({
        "line": line,
        "raw": String::from_utf8_lossy(raw),
        "reason": reason,
    }))
}

/// A report's line: one JSON object and a newline.
fn json_line(v: serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(&v).expect("json");
    out.push(b'\n');
    out
}

/// Read the plan's file from its start (dedup `user` or `content`: the keys already sent are
/// rebuilt) or from its checkpoint, and hand its rows over in batches of at most
/// [`BATCH_ROWS`] rows and [`BATCH_BYTES`] bytes. Rows before the checkpoint are not sent
/// again, nor reported again.
pub(super) fn read_rows(plan: ReadPlan, tx: mpsc::Sender<Batch>) -> io::Result<()> {
    let mut file = File::open(&plan.path)?;
    let keyed = plan.dedup != DedupKey::Row;
    // Without a key set to rebuild, jump straight to the checkpoint.
    let (start, line) = if keyed {
        (0, 1)
    } else {
        (plan.offset, plan.line)
    };
    file.seek(SeekFrom::Start(start))?;
    let mut rows = RowReader::new(
        BufReader::with_capacity(256 * 1024, file),
        plan.format,
        start,
        line,
        plan.max_row,
    );
    let mut sorter = Sorter::new(&plan)?;
    loop {
        let row = rows.next_row()?;
        let eof = row.is_none();
        if let Some(row) = row {
            let end = row.end;
            if !sorter.take(row)? {
                continue;
            }
            sorter.batch.end = end.max(plan.offset);
            sorter.batch.line = rows.line();
            if !sorter.is_full() {
                continue;
            }
        } else {
            sorter.batch.end = rows.offset().max(plan.offset);
            sorter.batch.line = rows.line().max(plan.line);
        }
        if sorter.batch.end > plan.offset || eof {
            let full = sorter.seal()?;
            if tx.blocking_send(full).is_err() {
                return Ok(()); // the publisher stopped (an error it reports itself)
            }
        }
        if eof {
            return Ok(());
        }
    }
}

/// Where each row of a file goes: into the batch being filled, the errors report, or the
/// duplicates report. A row before the checkpoint (`replay`) only adds its key to `seen`.
struct Sorter<'p> {
    plan: &'p ReadPlan,
    errors: BufWriter<File>,
    dups: BufWriter<File>,
    errors_grew: bool,
    dups_grew: bool,
    /// The ids of the file's keys so far (dedup `user` or `content`).
    seen: HashSet<MessageId>,
    /// The file's name for each message's attribute, when it fits in a header.
    header_name: Option<String>,
    batch: Batch,
    bytes: usize,
}

impl<'p> Sorter<'p> {
    fn new(plan: &'p ReadPlan) -> io::Result<Self> {
        Ok(Sorter {
            plan,
            errors: report_at(&plan.errors, plan.errors_len)?,
            dups: report_at(&plan.dups, plan.dups_len)?,
            errors_grew: false,
            dups_grew: false,
            seen: HashSet::new(),
            header_name: plan
                .name
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b))
                .then(|| plan.name.clone()),
            batch: Batch::empty(),
            bytes: 0,
        })
    }

    /// Sort one row. `false` for a row that moves nothing on: one before the checkpoint, a
    /// duplicate, or a message without the user its dedup needs.
    fn take(&mut self, row: Row) -> io::Result<bool> {
        let replay = row.end <= self.plan.offset;
        let (body, user) = match row.kind {
            RowKind::Header => {
                self.batch.header = true;
                return Ok(true);
            }
            RowKind::Bad { raw, reason } => {
                if !replay {
                    self.refuse(row.line, &raw, &reason)?;
                }
                return Ok(true);
            }
            RowKind::Message { body, user } => (body, user),
        };
        let hash = &self.plan.hash;
        let id = match (self.plan.dedup, &user) {
            (DedupKey::Row, _) => row_id(hash, b"row", row.line.to_string().as_bytes()),
            (DedupKey::Content, _) => row_id(hash, b"content", &body),
            (DedupKey::User, Some(u)) => row_id(hash, b"user", u.as_bytes()),
            (DedupKey::User, None) => {
                if !replay {
                    let why = "has no userId field (dedup `user` needs one)";
                    self.refuse(row.line, &body, why)?;
                }
                return Ok(false);
            }
        };
        if self.plan.dedup != DedupKey::Row && !self.seen.insert(id) {
            if !replay {
                self.repeated(row.line, &body, user)?;
            }
            return Ok(false);
        }
        if replay {
            return Ok(false);
        }
        self.add(id, row.line, body);
        Ok(true)
    }

    /// A row that cannot be sent, to the errors report.
    fn refuse(&mut self, line: u64, raw: &[u8], reason: &str) -> io::Result<()> {
        self.batch.read += 1;
        self.batch.failed += 1;
        self.errors.write_all(&report_line(line, raw, reason))?;
        self.errors_grew = true;
        Ok(())
    }

    /// A row whose key an earlier row already sent, to the duplicates report.
    fn repeated(&mut self, line: u64, body: &[u8], user: Option<String>) -> io::Result<()> {
        self.batch.read += 1;
        self.batch.dups += 1;
        let (key, reason) = match self.plan.dedup {
            DedupKey::User => (
                user.unwrap_or_default(),
                "repeated user: an earlier row of this file already alerts this user",
            ),
            _ => (
                String::from_utf8_lossy(&body[..body.len().min(200)]).to_string(),
                "repeated content: an earlier row of this file is identical",
            ),
        };
        let entry = json_line(serde_json::json!({"line": line, "key": key, "reason": reason}));
        self.dups.write_all(&entry)?;
        self.dups_grew = true;
        Ok(())
    }

    /// A message to publish, with the attributes that say where it came from.
    fn add(&mut self, id: MessageId, line: u64, body: Vec<u8>) {
        self.batch.read += 1;
        let mut attributes = BTreeMap::new();
        if let Some(n) = &self.header_name {
            attributes.insert(ATTR_FILE.to_string(), n.clone());
        }
        attributes.insert(ATTR_LINE.to_string(), line.to_string());
        attributes.insert(ATTR_ID.to_string(), self.plan.id.clone());
        attributes.insert(ATTR_TALLY.to_string(), tally_key(&self.plan.id));
        self.bytes += body.len();
        self.batch.msgs.push(KeyedPublish {
            id,
            body,
            attributes,
        });
    }

    fn is_full(&self) -> bool {
        self.batch.msgs.len() >= BATCH_ROWS || self.bytes >= BATCH_BYTES
    }

    /// The batch so far, with both reports flushed (and synced when they grew), and a new one
    /// begun.
    fn seal(&mut self) -> io::Result<Batch> {
        self.batch.errors_len =
            report_len(&mut self.errors, std::mem::take(&mut self.errors_grew))?;
        self.batch.dups_len = report_len(&mut self.dups, std::mem::take(&mut self.dups_grew))?;
        self.bytes = 0;
        Ok(std::mem::replace(&mut self.batch, Batch::empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ids_are_deterministic_uuids() {
        let h = [7u8; 32];
        let a = row_id(&h, b"user", b"u1");
        assert_eq!(a, row_id(&h, b"user", b"u1"));
        assert_ne!(a, row_id(&h, b"user", b"u2"));
        assert_ne!(a, row_id(&[8u8; 32], b"user", b"u1"));
        assert_ne!(a, row_id(&h, b"row", b"u1"));
        let b = a.0.to_be_bytes();
        assert_eq!(b[6] >> 4, 8, "UUID version 8");
        assert_eq!(b[8] >> 6, 2, "RFC 4122 variant");
    }
}
