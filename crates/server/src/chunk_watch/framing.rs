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
//! differently makes this give up.
//!
//! A line wholly within one read is checked in place, in one pass (`syntax`); only a line split
//! across reads is copied, and that buffer is let go when the head (or trailers) end, so an
//! idle keep-alive connection holds none.

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
    /// The start of a line split across reads, without its LF (empty while none is).
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
                    let end = memchr::memchr(b'\n', bytes);
                    let piece = &bytes[..end.unwrap_or(bytes.len())];
                    if self.line.len() + piece.len() > MAX_LINE {
                        return self.lose();
                    }
                    let Some(end) = end else {
                        // Only a line split across reads is copied.
                        self.line.extend_from_slice(piece);
                        return;
                    };
                    bytes = &bytes[end + 1..];
                    if self.line.is_empty() {
                        self.on_line(piece); // the common case: read in place
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(piece);
                        self.on_line(&line);
                        line.clear();
                        self.line = line;
                    }
                    // Keep a small buffer while more lines of a head or trailers follow; let
                    // it go when they end, so that an idle connection holds none.
                    let kept = self.line.capacity();
                    if kept > 0 && (kept > 1024 || !matches!(self.at, At::Header | At::Trailer)) {
                        self.line = Vec::new();
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
        // Every line ends with CRLF, and holds no other CR (each of `syntax`'s checks refuses
        // one).
        let Some(line) = line.strip_suffix(b"\r") else {
            return self.lose();
        };
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
        if !syntax::request_line(line) {
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
        let Some((name, value)) = syntax::field(line) else {
            return false;
        };
        // Told apart by length first: most headers are none of these.
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                if self.head.length.is_some() {
                    return false;
                }
                self.head.length = syntax::decimal(syntax::trim(value));
                self.head.length.is_some()
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                if self.head.chunked || !syntax::trim(value).eq_ignore_ascii_case(b"chunked") {
                    return false;
                }
                self.head.chunked = true;
                true
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => false,
            10 if name.eq_ignore_ascii_case(b"connection") => !value
                .split(|&b| b == b',')
                .any(|t| syntax::trim(t).eq_ignore_ascii_case(b"upgrade")),
            _ => true,
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
        let Some(size) = syntax::chunk_size(line) else {
            return false;
        };
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
        syntax::field(line).is_some()
    }
}

mod syntax;
#[cfg(test)]
mod tests;
