//! The embedded store's delivery history: every push or timer attempt, appended to its own
//! group-committed log, `DATA_DIR/history/NNNN….seg` (the same `Log` and frame checksum as the
//! message log), with an index in memory rebuilt at open.
//!
//! ```text
//! payload := 0xA1 | at i64 | expires_at i64 | key (u16 len + bytes) | n u32 | n × id u128
//!            | attempt (the rest: JSON)
//! ```
//!
//! One record holds one attempt of one request: a batch's messages share it. The index keeps,
//! per message, where its attempts are (the first and the latest, at most
//! `ATTEMPTS_PER_MESSAGE`), and per key (`QUEUE/SUBSCRIPTION`, `timer`) the messages in the
//! order they were attempted (at most `RECENT_PER_KEY`). Records expire (`expires_at`: the
//! queue's retention from the attempt), and whole segments are deleted once every record in
//! them expired or when the history is over its byte budget (oldest first): the history is
//! bounded by time, per message and in bytes, never by the message log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::clock::Millis;
use crate::error::Result;
use crate::history::limits::{ATTEMPTS_PER_MESSAGE, RECENT_PER_KEY};
use crate::model::MessageId;
use crate::store::HistoryRecord;

use super::log::{Loc, Log};
use super::record::{self, Frame};

const KIND: u8 = 0xA1;
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Clone, Copy)]
struct Entry {
    loc: Loc,
    key: u32,
    expires_at: Millis,
}

#[derive(Default)]
struct Index {
    by_id: FxHashMap<u128, Vec<Entry>>,
    keys: Vec<String>,
    key_ids: HashMap<String, u32>,
    recent: FxHashMap<u32, VecDeque<u128>>,
    /// Per segment: bytes and the latest expiry of its records.
    segments: BTreeMap<u32, (u64, Millis)>,
}

impl Index {
    fn key(&mut self, key: &str) -> u32 {
        if let Some(&k) = self.key_ids.get(key) {
            return k;
        }
        let k = self.keys.len() as u32;
        self.keys.push(key.to_string());
        self.key_ids.insert(key.to_string(), k);
        k
    }

    fn add(&mut self, key: &str, ids: &[u128], loc: Loc, expires_at: Millis) {
        let key = self.key(key);
        let e = Entry {
            loc,
            key,
            expires_at,
        };
        for &id in ids {
            let v = self.by_id.entry(id).or_default();
            if v.len() >= ATTEMPTS_PER_MESSAGE {
                // Keep the first attempt; drop the oldest of the others.
                v.remove(1);
            }
            v.push(e);
            let r = self.recent.entry(key).or_default();
            if r.back() != Some(&id) {
                r.push_back(id);
                if r.len() > RECENT_PER_KEY {
                    r.pop_front();
                }
            }
        }
        let s = self.segments.entry(loc.seg).or_default();
        s.0 += loc.len as u64;
        s.1 = s.1.max(expires_at);
    }

    /// Forget everything stored in `gone` segments.
    fn drop_segments(&mut self, gone: &[u32]) {
        for s in gone {
            self.segments.remove(s);
        }
        self.by_id.retain(|_, v| {
            v.retain(|e| !gone.contains(&e.loc.seg));
            !v.is_empty()
        });
        let by_id = &self.by_id;
        for r in self.recent.values_mut() {
            r.retain(|id| by_id.contains_key(id));
        }
    }
}

pub struct History {
    log: Log,
    index: Mutex<Index>,
    max_bytes: u64,
}

impl History {
    /// Open (or create) the history in `DATA_DIR/history`, rebuilding the index. A torn tail
    /// (a crash mid-write) ends a segment's reading; its record was never acknowledged.
    pub fn open(data_dir: &Path, max_bytes: u64) -> Result<History> {
        let dir = data_dir.join("history");
        std::fs::create_dir_all(&dir)?;
        let segs = Log::segment_numbers(&dir)?;
        let mut index = Index::default();
        for &seg in &segs {
            let buf = std::fs::read(Log::segment_path(&dir, seg))?;
            let mut off = 0usize;
            while let Frame::Good(payload, len) = record::read_frame(&buf[off..]) {
                if let Some(r) = decode(payload) {
                    let loc = Loc {
                        seg,
                        off: off as u32,
                        len: len as u32,
                    };
                    index.add(r.key, &r.ids, loc, r.expires_at);
                }
                off += len;
            }
        }
        let next = segs.last().map_or(1, |s| s + 1);
        Ok(History {
            log: Log::start(&dir, next, SEGMENT_BYTES, None)?,
            index: Mutex::new(index),
            max_bytes,
        })
    }

    /// Append one attempt of `ids` under `key`; durable on return. Like the message index, the
    /// history's index shows it from the moment it is appended (a reader may see it a moment
    /// before it is synced; a crash in between loses an attempt whose effect was not
    /// acknowledged either).
    pub async fn put(
        &self,
        key: &str,
        ids: &[MessageId],
        attempt: &str,
        at: Millis,
        expires_at: Millis,
    ) -> Result<()> {
        self.put_each([(key, ids, attempt, at, expires_at)]).await
    }

    /// Append several attempts in one go (one lock, one wait for their sync); durable on return.
    pub async fn put_many(&self, records: &[HistoryRecord]) -> Result<()> {
        self.put_each(records.iter().map(|r| {
            (
                r.key.as_str(),
                r.ids.as_slice(),
                r.attempt.as_str(),
                r.at,
                r.expires_at,
            )
        }))
        .await
    }

    async fn put_each<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a str, &'a [MessageId], &'a str, Millis, Millis)>,
    ) -> Result<()> {
        let lsn = {
            let mut ap = self.log.begin();
            let mut added = Vec::new();
            for (key, ids, attempt, at, expires_at) in records {
                let est = 64 + key.len() + ids.len() * 16 + attempt.len();
                let loc = ap.push(est, |buf| {
                    record::frame(buf, |o| encode(o, key, ids, attempt, at, expires_at))
                });
                added.push((key, ids, loc, expires_at));
            }
            let lsn = ap.finish();
            let mut index = self.index.lock();
            for (key, ids, loc, expires_at) in added {
                let ids: Vec<u128> = ids.iter().map(|i| i.0).collect();
                index.add(key, &ids, loc, expires_at);
            }
            lsn
        };
        self.log.wait_durable(lsn).await
    }

    /// The attempts (JSON, oldest first) of each of `ids` that have not expired.
    ///
    /// An attempt is in the index from its append, before the writer has written it: the
    /// state it explains (a delivered count, a settled message) can be seen that early too.
    /// A frame that does not read back yet is read again once everything appended before the
    /// lookup is durable, so an attempt that was appended is always found.
    pub async fn get(&self, ids: &[MessageId], now: Millis) -> Result<Vec<Vec<String>>> {
        let locs: Vec<Vec<Loc>> = {
            let index = self.index.lock();
            ids.iter()
                .map(|id| {
                    index
                        .by_id
                        .get(&id.0)
                        .map(|v| {
                            v.iter()
                                .filter(|e| e.expires_at > now)
                                .map(|e| e.loc)
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        };
        // Read after the lookup: covers every frame it found.
        let appended = self.log.appended();
        let mut waited = false;
        let mut out = Vec::with_capacity(locs.len());
        for ls in locs {
            let mut attempts = Vec::with_capacity(ls.len());
            for loc in ls {
                let mut read = self.read_attempt(loc);
                if read.is_none() && !waited {
                    self.log.wait_durable(appended).await?;
                    waited = true;
                    read = self.read_attempt(loc);
                }
                // Still nothing: its segment was deleted since the lookup (it expired).
                attempts.extend(read);
            }
            out.push(attempts);
        }
        Ok(out)
    }

    fn read_attempt(&self, loc: Loc) -> Option<String> {
        let frame = self.log.read(loc).ok()?;
        match record::read_frame(&frame) {
            Frame::Good(payload, _) => decode(payload).map(|r| r.attempt.to_string()),
            _ => None,
        }
    }

    /// Messages attempted under `key`, the most recent first (at most `limit`), that still
    /// have unexpired attempts under it.
    pub fn recent(&self, key: &str, limit: usize, now: Millis) -> Vec<MessageId> {
        let index = self.index.lock();
        let Some(&k) = index.key_ids.get(key) else {
            return Vec::new();
        };
        let Some(r) = index.recent.get(&k) else {
            return Vec::new();
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for id in r.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let live = index
                .by_id
                .get(id)
                .is_some_and(|v| v.iter().any(|e| e.key == k && e.expires_at > now));
            if live && seen.insert(*id) {
                out.push(MessageId(*id));
            }
        }
        out
    }

    /// Delete segments whose records all expired, and the oldest ones while the history is
    /// over its byte budget (never the one being written).
    pub fn reclaim(&self, now: Millis) -> Result<()> {
        let active = self.log.active_segment();
        let gone: Vec<u32> = {
            let index = self.index.lock();
            let mut total: u64 = index.segments.values().map(|s| s.0).sum();
            let mut gone = Vec::new();
            for (&seg, &(bytes, newest)) in &index.segments {
                if seg >= active {
                    break;
                }
                if newest <= now || total > self.max_bytes {
                    gone.push(seg);
                    total -= bytes;
                }
            }
            gone
        };
        if gone.is_empty() {
            return Ok(());
        }
        self.index.lock().drop_segments(&gone);
        for seg in gone {
            self.log.remove_segment(seg)?;
        }
        Ok(())
    }

    /// Bytes of history on disk (index's view).
    pub fn bytes(&self) -> u64 {
        self.index.lock().segments.values().map(|s| s.0).sum()
    }

    pub fn failure(&self) -> Option<String> {
        self.log.failure()
    }

    pub fn shutdown(&self) {
        self.log.shutdown();
    }
}

fn encode(o: &mut Vec<u8>, key: &str, ids: &[MessageId], attempt: &str, at: Millis, exp: Millis) {
    o.push(KIND);
    o.extend_from_slice(&at.to_le_bytes());
    o.extend_from_slice(&exp.to_le_bytes());
    o.extend_from_slice(&(key.len() as u16).to_le_bytes());
    o.extend_from_slice(key.as_bytes());
    o.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        o.extend_from_slice(&id.0.to_le_bytes());
    }
    o.extend_from_slice(attempt.as_bytes());
}

struct Decoded<'a> {
    key: &'a str,
    ids: Vec<u128>,
    expires_at: Millis,
    attempt: &'a str,
}

fn decode(p: &[u8]) -> Option<Decoded<'_>> {
    let (&kind, p) = p.split_first()?;
    if kind != KIND || p.len() < 18 {
        return None;
    }
    let expires_at = i64::from_le_bytes(p[8..16].try_into().ok()?);
    let klen = u16::from_le_bytes(p[16..18].try_into().ok()?) as usize;
    let p = &p[18..];
    let key = std::str::from_utf8(p.get(..klen)?).ok()?;
    let p = &p[klen..];
    let n = u32::from_le_bytes(p.get(..4)?.try_into().ok()?) as usize;
    let p = &p[4..];
    let ids_end = n.checked_mul(16)?;
    let ids = p
        .get(..ids_end)?
        .chunks_exact(16)
        .map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes")))
        .collect();
    let attempt = std::str::from_utf8(&p[ids_end..]).ok()?;
    Some(Decoded {
        key,
        ids,
        expires_at,
        attempt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_cut_frames_do_not_decode() {
        let ids = [MessageId(1), MessageId(u128::MAX)];
        let mut buf = Vec::new();
        let len = record::frame(&mut buf, |o| encode(o, "q/s", &ids, "{\"a\":1}", 5, 9));
        let Frame::Good(payload, l) = record::read_frame(&buf) else {
            panic!("a good frame")
        };
        assert_eq!(l, len);
        let d = decode(payload).unwrap();
        assert_eq!((d.key, d.expires_at, d.attempt), ("q/s", 9, "{\"a\":1}"));
        assert_eq!(d.ids, vec![1, u128::MAX]);
        for cut in 0..buf.len() {
            assert!(
                !matches!(record::read_frame(&buf[..cut]), Frame::Good(..)),
                "cut at {cut}"
            );
        }
    }
}
