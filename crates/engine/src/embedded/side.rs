//! The embedded store's side files, outside the message log:
//!
//! - `meta.json`: small settings (push subscriptions, schedules and their last firing),
//!   rewritten atomically (temp file, fsync, rename, fsync the directory) on each change. Changes
//!   are rare (a subscription edit, one cron firing), so a whole-file rewrite is simplest.
//! - `archive.bin`: outcomes of finished timers, 17 bytes each (16-byte id, 1-byte status),
//!   appended and group-committed: concurrent writers share one `fdatasync`. A torn last record
//!   (a crash mid-write) is ignored on load.
//! - `receipt.key`: the 32 random bytes that seal receipts (`receipts.rs`), made at the first
//!   open and kept, so a receipt answers the same after a restart (410: its lease ended).
//!
//! Files written here are readable by their owner only (mode 0600): settings hold webhook
//! headers and signing secrets.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{EngineError, Result};
use crate::model::MessageId;

const META: &str = "meta.json";
const ARCHIVE: &str = "archive.bin";
const REC: usize = 17;
const RECEIPT_KEY: &str = "receipt.key";

/// The data directory's receipt key, made (and synced) at the first open.
pub fn receipt_key(dir: &Path) -> Result<[u8; 32]> {
    match fs::read(dir.join(RECEIPT_KEY)) {
        Ok(b) => match <[u8; 32]>::try_from(b.as_slice()) {
            Ok(key) => return Ok(key),
            Err(_) => tracing::warn!(
                "{} is not 32 bytes; a new receipt key is made (receipts issued before no longer settle anything)",
                dir.join(RECEIPT_KEY).display()
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let key = crate::receipts::random_key()?;
    write_atomic(dir, RECEIPT_KEY, &key)?;
    Ok(key)
}

pub struct Meta {
    dir: PathBuf,
    map: Mutex<BTreeMap<String, String>>,
}

impl Meta {
    pub fn open(dir: &Path) -> Result<Meta> {
        let map = match fs::read(dir.join(META)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                EngineError::Storage(format!(
                    "{} is not valid JSON: {e}",
                    dir.join(META).display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Meta {
            dir: dir.to_path_buf(),
            map: Mutex::new(map),
        })
    }

    pub fn put(&self, key: &str, value: Option<String>) -> Result<()> {
        let mut map = self.map.lock();
        let before = match &value {
            Some(v) => map.insert(key.to_string(), v.clone()),
            None => map.remove(key),
        };
        let bytes = serde_json::to_vec_pretty(&*map).expect("meta serializes");
        if let Err(e) = write_atomic(&self.dir, META, &bytes) {
            // Keep memory equal to disk.
            match before {
                Some(b) => map.insert(key.to_string(), b),
                None => map.remove(key),
            };
            return Err(e);
        }
        Ok(())
    }

    pub fn list(&self, prefix: &str) -> Vec<(String, String)> {
        self.map
            .lock()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Replace `dir/name` with `bytes` atomically: a temp file, fsync, rename, fsync the directory.
pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    super::disk::sync_dir(dir)?;
    Ok(())
}

pub struct Archive {
    file: Mutex<File>,
    sync_fd: Arc<File>,
    written: AtomicU64,
    synced: Arc<Mutex<u64>>,
}

impl Archive {
    pub fn open(dir: &Path) -> Result<Archive> {
        let path = dir.join(ARCHIVE);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        // Cut a torn tail so later appends stay aligned.
        let len = file.metadata()?.len();
        let whole = len - len % REC as u64;
        if whole != len {
            tracing::warn!(
                bytes = len - whole,
                "archive.bin ends with a torn record; dropping it"
            );
            file.set_len(whole)?;
            file.sync_all()?;
        }
        let sync_fd = Arc::new(file.try_clone()?);
        Ok(Archive {
            file: Mutex::new(file),
            sync_fd,
            written: AtomicU64::new(0),
            synced: Arc::new(Mutex::new(0)),
        })
    }

    pub async fn put(&self, entries: &[(MessageId, u8)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(entries.len() * REC);
        for (id, status) in entries {
            buf.extend_from_slice(&id.0.to_be_bytes());
            buf.push(*status);
        }
        let seq = {
            let mut f = self.file.lock();
            f.write_all(&buf)?;
            self.written.fetch_add(1, Ordering::SeqCst) + 1
        };
        // Group commit: whoever holds `synced` syncs everything written so far; the others
        // find their write covered when they get the lock.
        let fd = self.sync_fd.clone();
        let synced = self.synced.clone();
        let written = self.written.load(Ordering::SeqCst);
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut s = synced.lock();
            if *s >= seq {
                return Ok(());
            }
            fd.sync_data()?;
            *s = written.max(seq);
            Ok(())
        })
        .await
        .map_err(|e| EngineError::Storage(format!("archive sync task failed: {e}")))?
    }

    pub fn list(&self) -> Result<Vec<(MessageId, u8)>> {
        let f = self.file.lock();
        let mut r = f.try_clone()?;
        use std::io::Seek;
        r.seek(std::io::SeekFrom::Start(0))?;
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)?;
        drop(f);
        Ok(bytes
            .chunks_exact(REC)
            .map(|c| {
                (
                    MessageId(u128::from_be_bytes(c[..16].try_into().expect("16 bytes"))),
                    c[16],
                )
            })
            .collect())
    }
}
