//! The line syntax `Framing` follows: each check is one pass over a line (its CR stripped), and
//! each refuses a CR, so that a line holding a bare CR is never followed.

/// `TOKEN[b]`: whether `b` may appear in a token (RFC 9110 `tchar`).
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// The length of `s`'s longest prefix of token characters.
fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| TOKEN[b as usize]).count()
}

/// A request line `METHOD SP target SP HTTP/1.1` (not `CONNECT`), the target visible ASCII.
pub(super) fn request_line(line: &[u8]) -> bool {
    let m = token_len(line);
    let (method, rest) = line.split_at(m);
    let Some(rest) = rest.strip_prefix(b" ") else {
        return false;
    };
    let t = rest
        .iter()
        .take_while(|&&b| (0x21..=0x7e).contains(&b))
        .count();
    m > 0 && method != b"CONNECT" && t > 0 && &rest[t..] == b" HTTP/1.1"
}

/// A header or trailer line's name (a token, right before the colon) and untrimmed value (with
/// no CR); not a continuation line.
pub(super) fn field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = token_len(line);
    let value = line[n..].strip_prefix(b":")?;
    (n > 0 && memchr::memchr(b'\r', value).is_none()).then(|| (&line[..n], value))
}

/// A chunk-size line: hex digits (not overflowing), then optional whitespace and
/// `;extensions` (visible ASCII, space and tab).
pub(super) fn chunk_size(line: &[u8]) -> Option<u64> {
    let mut size = 0u64;
    let mut digits = 0;
    for &b in line {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => break,
        };
        size = size.checked_mul(16)?.checked_add(u64::from(d))?;
        digits += 1;
    }
    let extensions_ok = match trim_start(&line[digits..]).split_first() {
        None => true,
        Some((b';', ext)) => ext
            .iter()
            .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b)),
        Some(_) => false,
    };
    (digits > 0 && extensions_ok).then_some(size)
}

/// A `Content-Length` value: decimal digits only, not overflowing.
pub(super) fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?
    })
}

pub(super) fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

pub(super) fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let n = s
        .iter()
        .rev()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    &s[..s.len() - n]
}
