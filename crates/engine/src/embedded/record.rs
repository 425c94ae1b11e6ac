//! The on-disk record format of the embedded log.
//!
//! A segment file is a sequence of frames:
//!
//! ```text
//! frame   := len: u32 LE | crc32c(payload): u32 LE | payload[len]
//! payload := kind: u8 | fields (little-endian integers; strings and bytes as u32 length + data)
//! ```
//!
//! A frame whose length is zero marks the clean end of a segment; a frame that is short or whose
//! checksum does not match marks a torn or corrupt tail, and recovery stops reading that segment
//! there (see `state.rs`, `replay`).
//!
//! | kind | record   | fields |
//! |------|----------|--------|
//! | 1    | Publish  | queue u32, id u128, enqueued_at i64, visible_at i64, receive_count u32, nonce u32, first_received_at i64, source u32, group, dedup, attrs: u16 count × (name, value), body, then only when either differs from its default: priority u8, expires_at i64 (0: none) |
//! | 2    | Receive  | queue u32, id u128, receive_count u32, nonce u32, first_received_at i64 |
//! | 3    | Ack      | queue u32, id u128 |
//! | 4    | Release  | queue u32, id u128, visible_at i64, front u8 |
//! | 5    | Move     | queue u32 (from), id u128, to u32, source u32, reset u8 |
//! | 6    | Purge    | queue u32 |
//! | 7    | Relocate | as Publish: a live message copied forward by compaction, with its state |
//! | 8    | Settle   | queue u32, id u128, how u8, visible_at i64, tally: a push attempt's outcome (1 delivered, 2 failed: removed; 3 retried, 4 throttled: released until visible_at; 5, 6 the same held in their lease; 7 expired (time to live): removed; 8 expired, counted only: a Move to the dead-letter queue follows), and the copy's tally key ("" for none) |
//! | 9    | Counters | queue u32, 12 or [`COUNTERS`] × u64: a snapshot of the queue's counters (older logs have 12, without `filtered`) |
//! | 10   | Tally    | queue u32, key, delivered u64, failed u64: a snapshot of a tally key (both `u64::MAX`: forgotten) |
//! | 11   | Filtered | queue u32, n u64: push fan-out kept `n` messages out of this copy queue (its filter) |
//! | 12   | Dedup    | queue u32, key, until i64, id u128: a deduplication key still in its window, carried forward before the segment holding its Publish is deleted |
//!
//! Publish carries the full state of a message (receive count, nonce, dead-letter source), so a
//! later compaction can copy a live message forward with the same record.

pub const FRAME_HEADER: usize = 8;
/// Frames larger than this are treated as corruption (a message is at most 16 MiB).
pub const MAX_FRAME: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    Publish(PublishRec<'a>),
    Receive {
        queue: u32,
        id: u128,
        receive_count: u32,
        nonce: u32,
        first_received_at: i64,
    },
    Ack {
        queue: u32,
        id: u128,
    },
    Release {
        queue: u32,
        id: u128,
        visible_at: i64,
        front: bool,
    },
    Move {
        queue: u32,
        id: u128,
        to: u32,
        source: u32,
        reset: bool,
    },
    Purge {
        queue: u32,
    },
    Settle {
        queue: u32,
        id: u128,
        how: u8,
        visible_at: i64,
        /// The copy's tally key ("" for none).
        tally: &'a str,
    },
    Tally {
        queue: u32,
        key: &'a str,
        delivered: u64,
        failed: u64,
    },
    Counters {
        queue: u32,
        values: [u64; COUNTERS],
    },
    Filtered {
        queue: u32,
        n: u64,
    },
    Dedup {
        queue: u32,
        key: &'a str,
        until: i64,
        id: u128,
    },
}

/// Counters in a `Counters` snapshot (see `state.rs`, `counters_of`).
pub const COUNTERS: usize = 13;
/// Counters in the snapshots of logs written before `filtered` was counted.
const COUNTERS_V1: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRec<'a> {
    pub queue: u32,
    pub id: u128,
    pub enqueued_at: i64,
    pub visible_at: i64,
    pub receive_count: u32,
    pub nonce: u32,
    pub first_received_at: i64,
    pub source: u32,
    /// FIFO message group ("" for none).
    pub group: &'a str,
    /// FIFO deduplication id ("" for none).
    pub dedup: &'a str,
    pub attributes: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
    /// A copy written by compaction (kind 7): supersedes earlier records of this id.
    pub relocated: bool,
    /// 0-9 (`limits::PRIORITY_DEFAULT` in records that do not say).
    pub priority: u8,
    /// Time to live's end; 0 for none.
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt record: {0}")]
pub struct DecodeError(pub &'static str);

impl Record<'_> {
    /// Append one whole frame (header and payload) to `out`. Returns the frame length.
    pub fn encode_frame(&self, out: &mut Vec<u8>) -> usize {
        frame(out, |o| self.encode_payload(o))
    }

    fn encode_payload(&self, o: &mut Vec<u8>) {
        match self {
            Record::Publish(p) => {
                o.push(if p.relocated { 7 } else { 1 });
                o.extend_from_slice(&p.queue.to_le_bytes());
                o.extend_from_slice(&p.id.to_le_bytes());
                o.extend_from_slice(&p.enqueued_at.to_le_bytes());
                o.extend_from_slice(&p.visible_at.to_le_bytes());
                o.extend_from_slice(&p.receive_count.to_le_bytes());
                o.extend_from_slice(&p.nonce.to_le_bytes());
                o.extend_from_slice(&p.first_received_at.to_le_bytes());
                o.extend_from_slice(&p.source.to_le_bytes());
                put_bytes(o, p.group.as_bytes());
                put_bytes(o, p.dedup.as_bytes());
                o.extend_from_slice(&(p.attributes.len() as u16).to_le_bytes());
                for (k, v) in &p.attributes {
                    put_bytes(o, k.as_bytes());
                    put_bytes(o, v.as_bytes());
                }
                put_bytes(o, p.body);
                if p.priority != crate::limits::PRIORITY_DEFAULT || p.expires_at != 0 {
                    o.push(p.priority);
                    o.extend_from_slice(&p.expires_at.to_le_bytes());
                }
            }
            Record::Receive {
                queue,
                id,
                receive_count,
                nonce,
                first_received_at,
            } => {
                o.push(2);
                o.extend_from_slice(&queue.to_le_bytes());
                o.extend_from_slice(&id.to_le_bytes());
                o.extend_from_slice(&receive_count.to_le_bytes());
                o.extend_from_slice(&nonce.to_le_bytes());
                o.extend_from_slice(&first_received_at.to_le_bytes());
            }
            Record::Ack { queue, id } => {
                o.push(3);
                o.extend_from_slice(&queue.to_le_bytes());
                o.extend_from_slice(&id.to_le_bytes());
            }
            Record::Release {
                queue,
                id,
                visible_at,
                front,
            } => {
                o.push(4);
                o.extend_from_slice(&queue.to_le_bytes());
                o.extend_from_slice(&id.to_le_bytes());
                o.extend_from_slice(&visible_at.to_le_bytes());
                o.push(*front as u8);
            }
            Record::Move {
                queue,
                id,
                to,
                source,
                reset,
            } => {
                o.push(5);
                o.extend_from_slice(&queue.to_le_bytes());
                o.extend_from_slice(&id.to_le_bytes());
                o.extend_from_slice(&to.to_le_bytes());
                o.extend_from_slice(&source.to_le_bytes());
                o.push(*reset as u8);
            }
            Record::Purge { queue } => {
                o.push(6);
                o.extend_from_slice(&queue.to_le_bytes());
            }
            Record::Settle {
                queue,
                id,
                how,
                visible_at,
                tally,
            } => {
                o.push(8);
                o.extend_from_slice(&queue.to_le_bytes());
                o.extend_from_slice(&id.to_le_bytes());
                o.push(*how);
                o.extend_from_slice(&visible_at.to_le_bytes());
                put_bytes(o, tally.as_bytes());
            }
            Record::Tally {
                queue,
                key,
                delivered,
                failed,
            } => {
                o.push(10);
                o.extend_from_slice(&queue.to_le_bytes());
                put_bytes(o, key.as_bytes());
                o.extend_from_slice(&delivered.to_le_bytes());
                o.extend_from_slice(&failed.to_le_bytes());
            }
            Record::Counters { queue, values } => {
                o.push(9);
                o.extend_from_slice(&queue.to_le_bytes());
                for v in values {
                    o.extend_from_slice(&v.to_le_bytes());
                }
            }
            Record::Filtered { queue, n } => {
                o.push(11);
                o.extend_from_slice(&queue.to_le_bytes());
                o.extend_from_slice(&n.to_le_bytes());
            }
            Record::Dedup {
                queue,
                key,
                until,
                id,
            } => {
                o.push(12);
                o.extend_from_slice(&queue.to_le_bytes());
                put_bytes(o, key.as_bytes());
                o.extend_from_slice(&until.to_le_bytes());
                o.extend_from_slice(&id.to_le_bytes());
            }
        }
    }
}

/// Append one frame whose payload `payload` writes (the header's length and checksum are filled
/// in after). Returns the frame length. Other logs (the delivery history) frame their own
/// payloads the same way.
pub fn frame(out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    payload(out);
    let body = &out[start + FRAME_HEADER..];
    let len = body.len() as u32;
    let crc = crc32c::crc32c(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

fn put_bytes(o: &mut Vec<u8>, b: &[u8]) {
    o.extend_from_slice(&(b.len() as u32).to_le_bytes());
    o.extend_from_slice(b);
}

/// Outcome of reading one frame at the start of `buf`.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A good frame: its payload and total length.
    Good(&'a [u8], usize),
    /// Zero length: the clean end of the written part of a segment.
    End,
    /// Not enough bytes for the frame the header announces (a torn write).
    Short,
    /// Length out of range or checksum mismatch.
    Corrupt(&'static str),
}

pub fn read_frame(buf: &[u8]) -> Frame<'_> {
    if buf.len() < FRAME_HEADER {
        return if buf.iter().all(|&b| b == 0) {
            Frame::End
        } else {
            Frame::Short
        };
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4")) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4"));
    if len == 0 && crc == 0 {
        return Frame::End;
    }
    if len == 0 || len > MAX_FRAME {
        return Frame::Corrupt("frame length out of range");
    }
    if buf.len() < FRAME_HEADER + len {
        return Frame::Short;
    }
    let payload = &buf[FRAME_HEADER..FRAME_HEADER + len];
    if crc32c::crc32c(payload) != crc {
        return Frame::Corrupt("checksum mismatch");
    }
    Frame::Good(payload, FRAME_HEADER + len)
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError("truncated field"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.take(16)?.try_into().expect("16")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError("attribute is not UTF-8"))
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad boolean")),
        }
    }
}

/// Decode a payload (as returned by [`read_frame`]). Bodies and attributes borrow from it.
/// Could `b` be the first byte (the kind) of a payload? (For resynchronising after damage.)
pub fn plausible_kind(b: u8) -> bool {
    (1..=12).contains(&b)
}

pub fn decode(payload: &[u8]) -> Result<Record<'_>, DecodeError> {
    let mut r = Reader { b: payload };
    let kind = r.u8()?;
    let rec = match kind {
        1 | 7 => {
            let queue = r.u32()?;
            let id = r.u128()?;
            let enqueued_at = r.i64()?;
            let visible_at = r.i64()?;
            let receive_count = r.u32()?;
            let nonce = r.u32()?;
            let first_received_at = r.i64()?;
            let source = r.u32()?;
            let group = r.str()?;
            let dedup = r.str()?;
            let n = r.u16()? as usize;
            let mut attributes = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                let k = r.str()?;
                let v = r.str()?;
                attributes.push((k, v));
            }
            let body = r.bytes()?;
            let (priority, expires_at) = if r.b.is_empty() {
                (crate::limits::PRIORITY_DEFAULT, 0)
            } else {
                (r.u8()?, r.i64()?)
            };
            Record::Publish(PublishRec {
                queue,
                id,
                enqueued_at,
                visible_at,
                receive_count,
                nonce,
                first_received_at,
                source,
                group,
                dedup,
                attributes,
                body,
                relocated: kind == 7,
                priority,
                expires_at,
            })
        }
        2 => Record::Receive {
            queue: r.u32()?,
            id: r.u128()?,
            receive_count: r.u32()?,
            nonce: r.u32()?,
            first_received_at: r.i64()?,
        },
        3 => Record::Ack {
            queue: r.u32()?,
            id: r.u128()?,
        },
        4 => Record::Release {
            queue: r.u32()?,
            id: r.u128()?,
            visible_at: r.i64()?,
            front: r.bool()?,
        },
        5 => Record::Move {
            queue: r.u32()?,
            id: r.u128()?,
            to: r.u32()?,
            source: r.u32()?,
            reset: r.bool()?,
        },
        6 => Record::Purge { queue: r.u32()? },
        8 => Record::Settle {
            queue: r.u32()?,
            id: r.u128()?,
            how: r.u8()?,
            visible_at: r.i64()?,
            tally: r.str()?,
        },
        10 => Record::Tally {
            queue: r.u32()?,
            key: r.str()?,
            delivered: r.u64()?,
            failed: r.u64()?,
        },
        9 => {
            let queue = r.u32()?;
            let n = r.b.len() / 8;
            if !r.b.len().is_multiple_of(8) || !(COUNTERS_V1..=COUNTERS).contains(&n) {
                return Err(DecodeError("bad counters snapshot"));
            }
            let mut values = [0u64; COUNTERS];
            for v in &mut values[..n] {
                *v = r.u64()?;
            }
            Record::Counters { queue, values }
        }
        11 => Record::Filtered {
            queue: r.u32()?,
            n: r.u64()?,
        },
        12 => Record::Dedup {
            queue: r.u32()?,
            key: r.str()?,
            until: r.i64()?,
            id: r.u128()?,
        },
        _ => return Err(DecodeError("unknown record kind")),
    };
    if !r.b.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record<'static>> {
        vec![
            Record::Publish(PublishRec {
                queue: 7,
                id: u128::MAX - 3,
                enqueued_at: 1_700_000_000_000,
                visible_at: 1_700_000_005_000,
                receive_count: 2,
                nonce: 9,
                first_received_at: 0,
                source: 0,
                group: "g1",
                dedup: "",
                attributes: vec![("k", "v"), ("trace", "abc")],
                body: b"hello \x00\xff",
                relocated: false,
                priority: 7,
                expires_at: 1_700_000_100_000,
            }),
            Record::Receive {
                queue: 1,
                id: 5,
                receive_count: 1,
                nonce: 1,
                first_received_at: 3,
            },
            Record::Ack { queue: 1, id: 5 },
            Record::Release {
                queue: 1,
                id: 5,
                visible_at: -1,
                front: true,
            },
            Record::Move {
                queue: 1,
                id: 5,
                to: 2,
                source: 1,
                reset: false,
            },
            Record::Purge { queue: 3 },
            Record::Settle {
                queue: 4,
                id: 9,
                how: 3,
                visible_at: 1_700_000_001_000,
                tally: "ingest/abc",
            },
            Record::Tally {
                queue: 4,
                key: "ingest/abc",
                delivered: 7,
                failed: u64::MAX,
            },
            Record::Counters {
                queue: 4,
                values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, u64::MAX],
            },
            Record::Filtered { queue: 4, n: 7 },
            Record::Dedup {
                queue: 4,
                key: "order-7",
                until: 1_700_000_300_000,
                id: 99,
            },
            Record::Publish(PublishRec {
                queue: 2,
                id: 77,
                enqueued_at: 5,
                visible_at: 0,
                receive_count: 3,
                nonce: 4,
                first_received_at: 6,
                source: 1,
                group: "",
                dedup: "d",
                attributes: vec![],
                body: b"copied forward",
                relocated: true,
                // The defaults are not written (the record is as long as before priorities).
                priority: crate::limits::PRIORITY_DEFAULT,
                expires_at: 0,
            }),
        ]
    }

    #[test]
    fn round_trip() {
        for rec in samples() {
            let mut buf = Vec::new();
            let n = rec.encode_frame(&mut buf);
            assert_eq!(n, buf.len());
            match read_frame(&buf) {
                Frame::Good(p, len) => {
                    assert_eq!(len, n);
                    assert_eq!(decode(p).unwrap(), rec);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn every_cut_of_a_frame_is_short_or_end_never_good() {
        let mut buf = Vec::new();
        samples()[0].encode_frame(&mut buf);
        for cut in 0..buf.len() {
            let f = read_frame(&buf[..cut]);
            assert!(matches!(f, Frame::Short | Frame::End), "cut {cut}: {f:?}");
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut buf = Vec::new();
        samples()[0].encode_frame(&mut buf);
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x40;
            assert!(
                !matches!(read_frame(&b), Frame::Good(..)),
                "flip at {i} went unnoticed"
            );
        }
    }

    #[test]
    fn counters_of_older_logs_decode_without_filtered() {
        let mut p = vec![9u8];
        p.extend_from_slice(&4u32.to_le_bytes());
        for v in 1..=12u64 {
            p.extend_from_slice(&v.to_le_bytes());
        }
        let Ok(Record::Counters { queue: 4, values }) = decode(&p) else {
            panic!("a 12-counter snapshot must decode");
        };
        assert_eq!(values[11], 12);
        assert_eq!(values[12], 0);
        p.extend_from_slice(&[0; 4]);
        assert!(decode(&p).is_err());
    }

    #[test]
    fn zeros_are_a_clean_end() {
        assert_eq!(read_frame(&[0u8; 64]), Frame::End);
        assert_eq!(read_frame(&[0u8; 3]), Frame::End);
    }

    #[test]
    fn garbage_payload_is_an_error_not_a_panic() {
        for kind in 0u8..11 {
            for len in 0..40 {
                let mut p = vec![kind];
                p.extend(std::iter::repeat_n(0xAB, len));
                let _ = decode(&p);
            }
        }
    }
}
