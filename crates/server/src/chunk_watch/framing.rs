//! `Framing`: an incremental follower of HTTP/1.1 *request* framing, fed the bytes a connection
//! reads, in any pieces. It reads request lines and headers (only `Content-Length`,
//! `Transfer-Encoding`, `Upgrade` and `Connection` matter), skips `Content-Length` bodies,
//! follows chunked bodies (chunk-size line with optional `;extensions`, data, CRLF, the last
//! chunk `0`, trailers, the final CRLF), then the next pipelined request. What it reports is
//! the sum of the chunk sizes announced so far by the latest chunked body, with the index of
//! its request on the connection (0, 1, 2... as request heads complete).
//!
//! It accepts a strict subset of what hyper accepts, and gives up for good (`is_lost`) on
//! anything else: the HTTP/2 preface, HTTP/1.0, `CONNECT`, upgrades, both or several framing
//! headers, a transfer coding other than `chunked`, header continuation lines, bare CR or LF,
//! lines over [`MAX_LINE`], invalid or overflowing sizes, a missing CRLF after chunk data. So
//! while it follows a connection, it agrees with hyper on where every request and chunk
//! begins; input hyper refuses makes hyper close the connection, and input hyper takes
//! differently makes this give up. It never buffers more than one line.

/// The longest line (request line, header, chunk-size line, trailer) it follows; a longer one
/// makes it give up (hyper's limits on a head are configurable, so this cannot mirror them).
pub const MAX_LINE: usize = 8 * 1024;

/// The chunk sizes a request's chunked body has announced so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    /// The request's index on its connection (0 for the first request).
    pub request: u64,
    /// The sum of the chunk sizes announced so far (saturating).
    pub total: u64,
}

/// Where in a request the next byte falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum At {
    #[default]
    RequestLine,
    Header,
    /// A `Content-Length` body, with this many bytes to go.
    Body(u64),
    ChunkSize,
    /// A chunk's data, with this many bytes to go.
    ChunkData(u64),
    /// The CR, then the LF, that end a chunk's data.
    ChunkCr,
    ChunkLf,
    Trailer,
    /// Given up: the connection is no longer followed.
    Lost,
}

/// What the head being read says about its body.
#[derive(Debug, Default)]
struct Head {
    length: Option<u64>,
    chunked: bool,
}

#[derive(Debug, Default)]
pub struct Framing {
    at: At,
    /// The line being read, without its LF.
    line: Vec<u8>,
    head: Head,
    /// Request heads read in full.
    heads: u64,
    /// Announced so far by the current chunked body.
    total: u64,
    announced: Option<Announced>,
}

impl Framing {
    /// Follow `bytes`, the next bytes read from the connection.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.at {
                At::Lost => return,
                At::Body(left) | At::ChunkData(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.at = match (self.at, left - n) {
                        (At::Body(_), 0) => At::RequestLine,
                        (At::Body(_), rest) => At::Body(rest),
                        (_, 0) => At::ChunkCr,
                        (_, rest) => At::ChunkData(rest),
                    };
                }
                At::ChunkCr | At::ChunkLf => {
                    match (self.at, bytes[0]) {
                        (At::ChunkCr, b'\r') => self.at = At::ChunkLf,
                        (At::ChunkLf, b'\n') => self.at = At::ChunkSize,
                        _ => return self.lose(),
                    }
                    bytes = &bytes[1..];
                }
                At::RequestLine | At::Header | At::ChunkSize | At::Trailer => {
                    let end = bytes.iter().position(|&b| b == b'\n');
                    let piece = &bytes[..end.unwrap_or(bytes.len())];
                    if self.line.len() + piece.len() > MAX_LINE {
                        self.lose();
                        return;
                    }
                    self.line.extend_from_slice(piece);
                    let Some(end) = end else { return };
                    bytes = &bytes[end + 1..];
                    let mut line = std::mem::take(&mut self.line);
                    self.on_line(&line);
                    // Keep a small buffer for the next line; let a long one go.
                    if line.capacity() <= 1024 && !self.is_lost() {
                        line.clear();
                        self.line = line;
                    }
                }
            }
        }
    }

    /// Whether it has given up on this connection.
    pub fn is_lost(&self) -> bool {
        self.at == At::Lost
    }

    /// Request heads read in full so far.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    /// The latest chunked body's announced total, if a body announced a chunk (and it has not
    /// given up).
    pub fn announced(&self) -> Option<Announced> {
        self.announced
    }

    /// Give up for good: nothing it saw counts any more.
    fn lose(&mut self) {
        self.at = At::Lost;
        self.line = Vec::new();
        self.announced = None;
    }

    /// A complete line, without its LF.
    fn on_line(&mut self, line: &[u8]) {
        // Every line ends with CRLF, and holds no other CR.
        let Some(line) = line.strip_suffix(b"\r") else {
            return self.lose();
        };
        if line.contains(&b'\r') {
            return self.lose();
        }
        let followed = match self.at {
            At::RequestLine => self.request_line(line),
            At::Header => self.header(line),
            At::ChunkSize => self.chunk_size(line),
            At::Trailer => self.trailer(line),
            _ => false,
        };
        if !followed {
            self.lose();
        }
    }

    fn request_line(&mut self, line: &[u8]) -> bool {
        let mut parts = line.split(|&b| b == b' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let target_ok = !target.is_empty() && target.iter().all(|&b| (0x21..=0x7e).contains(&b));
        if !is_token(method) || method == b"CONNECT" || !target_ok || version != b"HTTP/1.1" {
            return false;
        }
        self.head = Head::default();
        self.at = At::Header;
        true
    }

    fn header(&mut self, line: &[u8]) -> bool {
        if line.is_empty() {
            return self.end_of_head();
        }
        let Some((name, value)) = field(line) else {
            return false;
        };
        if name.eq_ignore_ascii_case(b"content-length") {
            if self.head.length.is_some() {
                return false;
            }
            self.head.length = decimal(value);
            self.head.length.is_some()
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if self.head.chunked || !value.eq_ignore_ascii_case(b"chunked") {
                return false;
            }
            self.head.chunked = true;
            true
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            false
        } else if name.eq_ignore_ascii_case(b"connection") {
            !value
                .split(|&b| b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"upgrade"))
        } else {
            true
        }
    }

    fn end_of_head(&mut self) -> bool {
        let head = std::mem::take(&mut self.head);
        self.heads += 1;
        self.at = match (head.chunked, head.length) {
            (true, Some(_)) => return false,
            (true, None) => {
                self.total = 0;
                At::ChunkSize
            }
            (false, Some(n)) if n > 0 => At::Body(n),
            (false, _) => At::RequestLine,
        };
        true
    }

    fn chunk_size(&mut self, line: &[u8]) -> bool {
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let (hex, rest) = line.split_at(digits);
        let mut size = 0u64;
        for &b in hex {
            let Some(d) = (b as char).to_digit(16) else {
                return false;
            };
            match size.checked_mul(16).and_then(|s| s.checked_add(d as u64)) {
                Some(s) => size = s,
                None => return false,
            }
        }
        let rest = trim_start(rest);
        let extensions_ok = match rest.split_first() {
            None => true,
            Some((b';', ext)) => ext
                .iter()
                .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b)),
            Some(_) => false,
        };
        if hex.is_empty() || !extensions_ok {
            return false;
        }
        if size == 0 {
            self.at = At::Trailer;
        } else {
            self.total = self.total.saturating_add(size);
            self.announced = Some(Announced {
                request: self.heads.saturating_sub(1),
                total: self.total,
            });
            self.at = At::ChunkData(size);
        }
        true
    }

    fn trailer(&mut self, line: &[u8]) -> bool {
        if line.is_empty() {
            self.at = At::RequestLine;
            return true;
        }
        field(line).is_some()
    }
}

/// A header or trailer line's name (a token) and trimmed value; not a continuation line.
fn field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    is_token(name).then(|| (name, trim(value)))
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let n = s
        .iter()
        .rev()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    &s[..s.len() - n]
}

#[cfg(test)]
mod tests;
