//! JSON written by hand, for what the hot paths write on every request or delivery (the
//! publish and receive answers, the history's attempts): the bytes serde_json would write,
//! without escaping keys and text that cannot need it, and without intermediate Strings. Each
//! user's tests compare its output with serde's.

use crate::clock::{rfc3339, Millis};

/// A JSON string of any text, escaped as serde_json escapes it.
pub fn text(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("a string serializes");
}

/// A JSON string of text that never needs escaping: ids, receipts, base64, moments, labels.
pub fn plain(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// A moment as RFC 3339 (digits, '+', '-', ':', '.', 'T' and 'Z': nothing JSON escapes).
pub fn moment(out: &mut Vec<u8>, ms: Millis) {
    plain(out, &rfc3339(ms));
}

/// A whole number.
pub fn number(out: &mut Vec<u8>, n: u64) {
    serde_json::to_writer(&mut *out, &n).expect("a number serializes");
}

/// `value` written by `write`, or `null`.
pub fn or_null<T>(out: &mut Vec<u8>, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        Some(v) => write(out, v),
        None => out.extend_from_slice(b"null"),
    }
}
