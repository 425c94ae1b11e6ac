//! Receipts as clients see them: sealed so that only this data set's server can make one.
//!
//! A [`Receipt`] (message id + receive nonce) names one lease inside the store. Given to a
//! client as it is, it could be rebuilt by anyone who knows the message id (a peek shows it)
//! and can guess the nonce (it counts receives), and that client could then settle another
//! consumer's lease. So the string a client gets is
//!
//! ```text
//! base64url( id: 16 bytes | nonce: u32 BE | tag: 12 bytes )      43 characters
//! tag = HMAC-SHA256(key, queue name | 0x00 | id | nonce)[..12]
//! ```
//!
//! The key is 32 random bytes per data set, kept by the store ([`crate::Store::receipt_key`]:
//! a file in the embedded data directory, a Redis key shared by every node). A receipt is
//! bound to its queue, so it settles nothing in another queue that holds a message with the
//! same id. A string that does not carry a good tag is `InvalidReceipt`, the same answer as a
//! malformed one: receipts issued before this format (20 bytes, no tag) are refused, and
//! their messages come back when their leases end.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{EngineError, Result};
use crate::model::{MessageId, Receipt};

/// Bytes of the tag: 96 bits, far beyond online guessing, and the receipt stays 43 characters.
const TAG: usize = 12;
const SEALED: usize = 16 + 4 + TAG;

/// The secret that seals receipts.
///
/// The HMAC with the key already absorbed: each tag clones it, instead of hashing the key's
/// two padded blocks again (half of a tag's SHA-256 compressions).
#[derive(Clone)]
pub struct ReceiptKey(Hmac<Sha256>);

impl std::fmt::Debug for ReceiptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiptKey(…)")
    }
}

impl ReceiptKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        ReceiptKey(Hmac::<Sha256>::new_from_slice(&bytes).expect("any key length"))
    }

    fn tag(&self, queue: &str, id: &[u8], nonce: &[u8]) -> [u8; TAG] {
        let mut m = self.0.clone();
        m.update(queue.as_bytes());
        m.update(&[0]);
        m.update(id);
        m.update(nonce);
        let full = m.finalize().into_bytes();
        full[..TAG].try_into().expect("TAG bytes")
    }

    /// The string a client gets for a lease of a message of `queue`.
    pub fn seal(&self, queue: &str, r: &Receipt) -> String {
        let mut b = [0u8; SEALED];
        b[..16].copy_from_slice(&r.id.0.to_be_bytes());
        b[16..20].copy_from_slice(&r.nonce.to_be_bytes());
        let tag = self.tag(queue, &b[..16], &b[16..20]);
        b[20..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(b)
    }

    /// The lease a client's string names, if this server sealed it for `queue`.
    pub fn open(&self, queue: &str, s: &str) -> Result<Receipt> {
        let b = URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .map_err(|_| EngineError::InvalidReceipt)?;
        if b.len() != SEALED {
            return Err(EngineError::InvalidReceipt);
        }
        let want = self.tag(queue, &b[..16], &b[16..20]);
        // Constant time: the comparison must not tell how much of a guessed tag was right.
        let diff = want
            .iter()
            .zip(&b[20..])
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        if diff != 0 {
            return Err(EngineError::InvalidReceipt);
        }
        Ok(Receipt {
            id: MessageId(u128::from_be_bytes(b[..16].try_into().expect("16 bytes"))),
            nonce: u32::from_be_bytes(b[16..20].try_into().expect("4 bytes")),
        })
    }
}

/// 32 bytes from the operating system's random source, for a new data set's key.
pub fn random_key() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ReceiptKey {
        ReceiptKey::new([b; 32])
    }

    #[test]
    fn sealed_receipts_open_only_with_their_key_and_queue() {
        let r = Receipt {
            id: MessageId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            nonce: 7,
        };
        let s = key(1).seal("orders", &r);
        assert_eq!(s.len(), 43);
        assert_eq!(key(1).open("orders", &s), Ok(r));
        assert_eq!(
            key(2).open("orders", &s),
            Err(EngineError::InvalidReceipt),
            "another data set's key"
        );
        assert_eq!(
            key(1).open("payments", &s),
            Err(EngineError::InvalidReceipt),
            "another queue"
        );
        // The old format: id and nonce only.
        let mut old = [0u8; 20];
        old[..16].copy_from_slice(&r.id.0.to_be_bytes());
        old[16..].copy_from_slice(&r.nonce.to_be_bytes());
        let old = URL_SAFE_NO_PAD.encode(old);
        assert_eq!(
            key(1).open("orders", &old),
            Err(EngineError::InvalidReceipt)
        );
        // Every changed byte is caught.
        let raw = URL_SAFE_NO_PAD.decode(&s).unwrap();
        for i in 0..raw.len() {
            let mut b = raw.clone();
            b[i] ^= 0x40;
            let forged = URL_SAFE_NO_PAD.encode(&b);
            assert!(key(1).open("orders", &forged).is_err(), "byte {i}");
        }
        assert!(key(1).open("orders", "not base64!").is_err());
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(random_key().unwrap(), random_key().unwrap());
    }
}
