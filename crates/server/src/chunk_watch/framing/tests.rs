//! The framing follower against generated request streams: legitimate streams cut at every
//! offset (and into random pieces) are followed to the end and never announce more than a
//! body carries; a huge chunk is seen at every cut; everything it should not follow makes it
//! give up for good.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Announced, Framing, MAX_LINE};

/// One generated request: its bytes and, for a chunked one, the size of its body.
struct Sample {
    bytes: Vec<u8>,
    chunked_len: Option<u64>,
}

/// Body bytes that look like framing, to catch a follower that reads into data.
const TRICKY: &[u8] = b"\r\n0;:FfPOST / HTTP/1.1 Transfer-Encoding: chunked\r\n\r\n";

fn data(rng: &mut StdRng, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| TRICKY[rng.gen_range(0..TRICKY.len())])
        .collect()
}

fn mixed_case(rng: &mut StdRng, s: &str) -> String {
    s.chars()
        .map(|c| {
            if rng.gen_bool(0.5) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn request(rng: &mut StdRng) -> Sample {
    let mut head = String::new();
    let kind = rng.gen_range(0..3);
    let method = ["GET", "POST", "PUT", "DELETE"][rng.gen_range(0..4)];
    head.push_str(&format!("{method} /v1/queues/q/messages?x=1 HTTP/1.1\r\n"));
    head.push_str("Host: 127.0.0.1\r\n");
    if rng.gen_bool(0.5) {
        head.push_str("Connection: keep-alive\r\n");
    }
    if rng.gen_bool(0.3) {
        head.push_str("X-Colon: a:b:c\r\nEmpty:\r\n");
    }
    let mut out = Vec::new();
    match kind {
        0 => {
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(b"\r\n");
            Sample {
                bytes: out,
                chunked_len: None,
            }
        }
        1 => {
            let n = rng.gen_range(0..60);
            let name = mixed_case(rng, "content-length");
            head.push_str(&format!("{name}: {n:0w$}\r\n\r\n", w = rng.gen_range(1..4)));
            out.extend_from_slice(head.as_bytes());
            out.extend(data(rng, n));
            Sample {
                bytes: out,
                chunked_len: None,
            }
        }
        _ => {
            let name = mixed_case(rng, "transfer-encoding");
            let value = mixed_case(rng, "chunked");
            head.push_str(&format!(
                "{name}:{}{value} \r\n\r\n",
                " ".repeat(rng.gen_range(0..2))
            ));
            out.extend_from_slice(head.as_bytes());
            let mut len = 0u64;
            for _ in 0..rng.gen_range(0..4) {
                let n = rng.gen_range(1..40usize);
                len += n as u64;
                let size = format!("{:0w$x}", n, w = rng.gen_range(1..5));
                let size = if rng.gen_bool(0.5) {
                    size.to_uppercase()
                } else {
                    size
                };
                let ext = ["", ";name=value", " ;a;b=\"c d\"", "\t; x"][rng.gen_range(0..4)];
                out.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
                out.extend(data(rng, n));
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(if rng.gen_bool(0.5) {
                b"0\r\n"
            } else {
                b"000;last\r\n"
            });
            if rng.gen_bool(0.5) {
                out.extend_from_slice(b"X-Checksum: abc\r\nX-Other:1\r\n");
            }
            out.extend_from_slice(b"\r\n");
            Sample {
                bytes: out,
                chunked_len: Some(len),
            }
        }
    }
}

fn stream(seed: u64, n: usize) -> (Vec<u8>, Vec<Option<u64>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bytes = Vec::new();
    let mut lens = Vec::new();
    for _ in 0..n {
        let s = request(&mut rng);
        bytes.extend(s.bytes);
        lens.push(s.chunked_len);
    }
    (bytes, lens)
}

/// Feeds `pieces` and checks, after each, that nothing is announced beyond what the
/// request's body really carries; returns the follower.
fn follow<'a>(pieces: impl IntoIterator<Item = &'a [u8]>, lens: &[Option<u64>]) -> Framing {
    let mut f = Framing::default();
    for p in pieces {
        f.feed(p);
        assert!(!f.is_lost(), "gave up on a legitimate stream");
        if let Some(a) = f.announced() {
            let real = lens[a.request as usize].expect("announced on a chunked request");
            assert!(a.total <= real, "announced {a:?}, the body has {real}");
        }
    }
    assert_eq!(f.heads(), lens.len() as u64, "every request head seen");
    assert!(f.line.is_empty(), "nothing pending");
    f
}

#[test]
fn legitimate_streams_cut_at_every_offset_are_followed() {
    for seed in 0..8 {
        let (bytes, lens) = stream(seed, 12);
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            follow([a, b], &lens);
        }
        follow(bytes.chunks(1), &lens);
    }
}

#[test]
fn legitimate_streams_in_random_pieces_are_followed() {
    let mut rng = StdRng::seed_from_u64(7);
    for seed in 100..400 {
        let (bytes, lens) = stream(seed, rng.gen_range(1..20));
        let mut pieces = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = rng.gen_range(1..=rest.len().min(64));
            pieces.push(&rest[..n]);
            rest = &rest[n..];
        }
        let f = follow(pieces, &lens);
        let last_chunked = lens.iter().enumerate().rev().find_map(|(i, l)| {
            l.filter(|&l| l > 0).map(|l| Announced {
                request: i as u64,
                total: l,
            })
        });
        assert_eq!(f.announced(), last_chunked, "the whole of the last body");
    }
}

const HUGE: &[u8] = b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n";

#[test]
fn a_huge_chunk_is_seen_at_every_cut() {
    for (k, ext) in [(0, &b""[..]), (5, &b"; name=v\t"[..])] {
        let (mut bytes, _) = stream(42, k);
        bytes.extend_from_slice(&HUGE[..HUGE.len() - 2]);
        bytes.extend_from_slice(ext);
        bytes.extend_from_slice(b"\r\n");
        for cut in 0..=bytes.len() {
            let mut f = Framing::default();
            let (a, b) = bytes.split_at(cut);
            f.feed(a);
            f.feed(b);
            let want = Announced {
                request: k as u64,
                total: u64::MAX,
            };
            assert_eq!(f.announced(), Some(want), "cut at {cut}");
        }
    }
}

#[test]
fn chunk_sizes_add_up_and_saturate() {
    let mut f = Framing::default();
    f.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n14;e\r\n");
    let total = |f: &Framing| f.announced().map(|a| a.total);
    assert_eq!(total(&f), Some(30));
    f.feed(&[b'x'; 20]);
    f.feed(b"\r\nffffffffffffffff\r\n");
    assert_eq!(total(&f), Some(u64::MAX));
}

#[test]
fn only_a_split_line_is_buffered_and_only_until_its_head_ends() {
    let mut f = Framing::default();
    f.feed(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n");
    assert_eq!(f.line.capacity(), 0, "whole lines are read in place");
    f.feed(b"Ho");
    f.feed(b"st: x\r\nX-");
    assert!(f.line.capacity() > 0, "kept while the head goes on");
    f.feed(b"A: b\r\n\r\n");
    assert_eq!(
        (f.heads(), f.line.capacity()),
        (2, 0),
        "let go with the head"
    );
}

#[test]
fn it_gives_up_on_what_it_does_not_follow() {
    let long_header = format!("X-Long: {}\r\n", "a".repeat(MAX_LINE));
    let cases: Vec<(&str, Vec<u8>)> =
        vec![
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        ("HTTP/1.0", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        ("CONNECT", b"CONNECT a:443 HTTP/1.1\r\n\r\n".to_vec()),
        (
            "upgrade",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n".to_vec(),
        ),
        (
            "connection upgrade",
            b"GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n".to_vec(),
        ),
        (
            "both framings",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        ),
        (
            "two lengths",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
        ),
        (
            "bad length",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc".to_vec(),
        ),
        (
            "gzip",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(),
        ),
        (
            "two codings",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
        ),
        ("bare LF", b"GET / HTTP/1.1\nHost: x\n\n".to_vec()),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n".to_vec()),
        ("bare CR in a target", b"GET /\r HTTP/1.1\r\n\r\n".to_vec()),
        ("space before colon", b"GET / HTTP/1.1\r\nX-A : b\r\n\r\n".to_vec()),
        ("not a token", b"GET / HTTP/1.1\r\nX(a): b\r\n\r\n".to_vec()),
        (
            "continuation",
            b"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n".to_vec(),
        ),
        ("no colon", b"GET / HTTP/1.1\r\nnonsense\r\n\r\n".to_vec()),
        ("empty line first", b"\r\nGET / HTTP/1.1\r\n\r\n".to_vec()),
        ("double space", b"GET  / HTTP/1.1\r\n\r\n".to_vec()),
        (
            "long line",
            format!("GET / HTTP/1.1\r\n{long_header}\r\n").into_bytes(),
        ),
        (
            "bad hex",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1g\r\n".to_vec(),
        ),
        (
            "no digits",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n".to_vec(),
        ),
        (
            "overflow",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n".to_vec(),
        ),
        (
            "digits after space",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1 2\r\n".to_vec(),
        ),
        (
            "no CRLF after data",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n".to_vec(),
        ),
        (
            "control in extension",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;\x01\r\n".to_vec(),
        ),
        (
            "bad trailer",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnot a field\r\n\r\n"
                .to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let mut f = Framing::default();
        f.feed(&bytes);
        f.feed(HUGE);
        assert!(f.is_lost(), "{what}: still following");
        assert_eq!(f.announced(), None, "{what}: announced after giving up");
    }
}
