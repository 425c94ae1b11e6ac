//! Reading the log's segments for recovery: a whole segment into a reused buffer, the pre-read
//! that finds which messages later records name (`named_keys`), and the search for the next
//! good frame after damage (`resync`). `replay.rs` does the two passes over what these read.

use std::path::Path;

use rustc_hash::FxHashSet;

use crate::embedded::log::Log;
use crate::embedded::record::{self, Frame, Record};

/// (queue, id's high half, id's low half): 24 bytes, where `(u32, u128)` takes 32 (one entry
/// per published message is kept while recovering).
pub(super) type Key = (u32, u64, u64);

pub(super) fn key(queue: u32, id: u128) -> Key {
    (queue, (id >> 64) as u64, id as u64)
}

/// After a bad frame at `from - 1`: the offset of the next frame that has a good checksum and
/// decodes, if any. Candidates are filtered on a plausible length and record kind before their
/// checksum is computed, and at most 256 MiB are checksummed, so garbage cannot stall recovery.
pub(super) fn resync(buf: &[u8], from: usize) -> Option<usize> {
    let mut budget: usize = 256 << 20;
    let mut at = from;
    while at + record::FRAME_HEADER < buf.len() {
        let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
        if len > 0
            && len <= record::MAX_FRAME
            && at + record::FRAME_HEADER + len <= buf.len()
            && record::plausible_kind(buf[at + record::FRAME_HEADER])
        {
            budget = budget.checked_sub(len)?;
            if let Frame::Good(payload, _) = record::read_frame(&buf[at..]) {
                if record::decode(payload).is_ok() {
                    return Some(at);
                }
            }
        }
        at += 1;
    }
    None
}

/// Segment `seg` into `buf`, reusing its memory.
pub(super) fn read_segment(log_dir: &Path, seg: u32, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(Log::segment_path(log_dir, seg))?.read_to_end(buf)?;
    Ok(())
}

/// Every message key a record other than a plain Publish names (receives, acks, releases,
/// moves, settles, compaction copies), read before pass 1. Pass 1 then tracks the newest
/// incarnation (`Index::current`) only of these: a message no later record names needs no
/// entry, and a backlog of millions is mostly such messages (the map was a third of
/// recovery's time, and its growth much of the memory). `None` when a segment holds a frame
/// that is not good (torn, damaged, or a record that does not decode): then pass 1 tracks
/// every message, as it must to resynchronise exactly as before.
pub(super) fn named_keys(
    log_dir: &Path,
    segs: &[u32],
    buf: &mut Vec<u8>,
) -> crate::Result<Option<FxHashSet<Key>>> {
    const PUBLISH: u8 = 1; // a plain Publish (kind 1 in `record.rs`'s table; 7 is a copy)
    let mut named = FxHashSet::default();
    for &seg in segs {
        read_segment(log_dir, seg, buf)?;
        let mut off = 0usize;
        loop {
            let (payload, len) = match record::read_frame(&buf[off..]) {
                Frame::End => break,
                Frame::Good(payload, len) => (payload, len),
                Frame::Short | Frame::Corrupt(_) => return Ok(None),
            };
            off += len;
            if payload[0] == PUBLISH {
                continue;
            }
            let Ok(rec) = record::decode(payload) else {
                return Ok(None);
            };
            let (queue, id) = match rec {
                Record::Publish(p) => (p.queue, p.id),
                Record::Receive { queue, id, .. }
                | Record::Ack { queue, id }
                | Record::Release { queue, id, .. }
                | Record::Move { queue, id, .. }
                | Record::Settle { queue, id, .. } => (queue, id),
                Record::Purge { .. }
                | Record::Counters { .. }
                | Record::Tally { .. }
                | Record::Filtered { .. }
                | Record::Dedup { .. } => continue,
            };
            named.insert(key(queue, id));
        }
    }
    Ok(Some(named))
}
