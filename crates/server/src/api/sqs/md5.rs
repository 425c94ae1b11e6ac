//! The MD5 digests SQS clients verify: of the body, and of the message attributes in SQS's
//! binary encoding (names sorted; each field length-prefixed, big-endian u32; a transport byte
//! 1 for String/Number values and 2 for Binary).

use md5::{Digest, Md5};

use super::attrs::SqsAttribute;

pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

pub fn of_body(body: &[u8]) -> String {
    hex(&Md5::digest(body))
}

/// `attrs` in any order; None when empty (SQS then omits the digest).
pub fn of_attributes(attrs: &[(String, SqsAttribute)]) -> Option<String> {
    if attrs.is_empty() {
        return None;
    }
    let mut sorted: Vec<&(String, SqsAttribute)> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = Md5::new();
    let put = |h: &mut Md5, b: &[u8]| {
        h.update((b.len() as u32).to_be_bytes());
        h.update(b);
    };
    for (name, a) in sorted {
        put(&mut h, name.as_bytes());
        put(&mut h, a.data_type.as_bytes());
        match &a.binary {
            Some(bin) => {
                h.update([2u8]);
                put(&mut h, bin);
            }
            None => {
                h.update([1u8]);
                put(&mut h, a.string.as_deref().unwrap_or_default().as_bytes());
            }
        }
    }
    Some(hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_digest_matches_known_value() {
        // md5("hello") from any reference implementation.
        assert_eq!(of_body(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn attribute_digest_is_order_independent_and_typed() {
        let a = (
            "b".to_string(),
            SqsAttribute {
                data_type: "String".into(),
                string: Some("x".into()),
                binary: None,
            },
        );
        let b = (
            "a".to_string(),
            SqsAttribute {
                data_type: "Binary".into(),
                string: None,
                binary: Some(vec![1, 2, 3]),
            },
        );
        let one = of_attributes(&[a.clone(), b.clone()]).unwrap();
        let two = of_attributes(&[b, a]).unwrap();
        assert_eq!(one, two);
        assert_eq!(one.len(), 32);
        assert_eq!(of_attributes(&[]), None);
    }
}
