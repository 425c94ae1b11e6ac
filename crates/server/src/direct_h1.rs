//! Plain HTTP/1.1 connections, served without hyper while their requests are the front door's
//! direct ones (`POST /v1/queues/{queue}/messages`, `.../receive`, `.../ack`; see
//! `api::front_door`). Why: for a single publish, hyper's connection machinery (its dispatcher,
//! buffered reads, header map, response encoding) and the chunk watch over its reads were
//! about 15k of the 37k instructions the server spent (BENCHMARKS.md, "The direct HTTP/1.1
//! way"). Here a request is read into one buffer, its head parsed by `httparse` (the parser
//! hyper uses), handed to the same [`FrontDoor`], and its answer written with one write.
//!
//! Only the plain case is served here: `POST` to a direct path over HTTP/1.1 with a plain
//! target (no fragment), one `Content-Length` of at most [`MAX_BODY_BYTES`] (and the server's
//! `--max-request-bytes`), no `Transfer-Encoding`, `Expect` or `Upgrade`, no `Connection` but
//! `keep-alive`, at most [`MAX_HEADERS`] headers, a head within `--max-header-bytes`. At the
//! first request that is anything else (another route, a malformed or oversized head, a larger
//! body, HTTP/2's preface), the connection is handed to hyper with the bytes read so far
//! ([`Prefixed`]) for the rest of its life, and hyper answers as it always did, refusals
//! included. TLS connections go to hyper from the start.
//!
//! As with hyper: a connection whose next request head has not arrived within
//! `--header-timeout-seconds` is closed (an idle keep-alive one too); a body not all arrived
//! within `--body-timeout-seconds` is answered 408 by the same body reader, then the connection
//! closes; a client that goes away while its request is served has the request dropped (a
//! long-polling receive then leases nothing); answers carry `content-length` and `date`; at
//! shutdown a connection closes once its request in flight is answered (`connection: close`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, response, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;

use crate::api::body::ReadAhead;
use crate::api::{FrontDoor, Hot};

/// What every connection is held to. hyper is configured with the header timeout and size
/// (`server.rs`); its body readers hold bodies to `--max-request-bytes` and
/// `--body-timeout-seconds` themselves.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A request's head must arrive within this long (counted from when the previous answer
    /// was written, as hyper counts).
    pub header_timeout: Duration,
    /// Request headers larger than this are answered 431 (HTTP/1.1) or refused (HTTP/2); here
    /// a longer head goes to hyper, which answers.
    pub max_header_bytes: usize,
    /// A longer body goes to hyper: the smaller of [`MAX_BODY_BYTES`] and
    /// `--max-request-bytes`.
    pub max_body_bytes: usize,
    /// A body slower than this is answered 408.
    pub body_timeout: Duration,
}

/// Largest body read here. A body is read whole before the API key and the keyless guard are
/// checked, so this bounds what a refused client can make a connection hold; larger bodies go
/// to hyper, whose body readers read them only once the request is admitted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Most headers a request served here may have; one with more goes to hyper (which takes 100).
pub const MAX_HEADERS: usize = 32;

/// Room kept free in the read buffer before each read.
const READ_ROOM: usize = 4096;

/// How a connection leaves [`serve`].
pub enum End {
    /// Closed: by the client, a timeout, an I/O error, or shutdown.
    Closed,
    /// For hyper, with the bytes read and not yet served in front.
    HandOver(Prefixed<TcpStream>),
}

/// Serve a plain connection's direct requests until it ends or holds one that is not.
pub async fn serve(mut tcp: TcpStream, app: FrontDoor, limits: Limits, stop: Arc<Stop>) -> End {
    let mut buf = BytesMut::with_capacity(2 * READ_ROOM);
    let mut out = Vec::with_capacity(512);
    let deadline = tokio::time::sleep(limits.header_timeout);
    tokio::pin!(deadline);
    let stopping = stop.notify.notified();
    tokio::pin!(stopping);
    if stop.is_stopped() {
        return End::Closed;
    }
    loop {
        // The head, within the header timeout. It is parsed only once the bytes read may end
        // it (as hyper does): a head sent a byte at a time is not parsed again at every byte.
        deadline
            .as_mut()
            .reset(Instant::now() + limits.header_timeout);
        let mut scanned = 0;
        let head = loop {
            if may_end_a_head(&buf, scanned) {
                match parse(&buf, &limits) {
                    Parsed::Direct(head) => break head,
                    Parsed::Partial if buf.len() < limits.max_header_bytes => {}
                    _ => return hand_over(tcp, buf),
                }
            } else if buf.len() >= limits.max_header_bytes {
                return hand_over(tcp, buf);
            }
            scanned = buf.len();
            let idle = buf.is_empty().then_some(stopping.as_mut());
            if read(&mut tcp, &mut buf, deadline.as_mut(), idle).await != Read::Data {
                return End::Closed;
            }
        };
        // The body, within the body timeout; one that does not come in time is answered 408
        // by the body reader, as if it had waited itself, and the connection is closed.
        let whole = head.len + head.content_length;
        let mut timed_out = false;
        if buf.len() < whole {
            deadline
                .as_mut()
                .reset(Instant::now() + limits.body_timeout);
            while buf.len() < whole && !timed_out {
                match read(&mut tcp, &mut buf, deadline.as_mut(), None).await {
                    Read::Data => {}
                    Read::TimedOut => timed_out = true,
                    _ => return End::Closed,
                }
            }
        }
        let head_bytes = buf.split_to(head.len).freeze();
        let (body, read_ahead) = if timed_out {
            buf.clear();
            (Bytes::new(), ReadAhead::TimedOut)
        } else {
            let body = buf.split_to(head.content_length).freeze();
            (body.clone(), ReadAhead::Whole(body))
        };
        let Some((queue, req)) = head.request(&head_bytes) else {
            // Not expected (`parse` keeps to what `http` takes); hyper decides.
            let mut again = BytesMut::from(&head_bytes[..]);
            again.extend_from_slice(&body);
            again.extend_from_slice(&buf);
            return hand_over(tcp, again);
        };

        // The answer, while watching for the client going away (as hyper does): then the
        // request is dropped. Bytes that come meanwhile are kept for the next turn.
        let answer = app.serve_hot(head.hot, queue, req, Some(read_ahead));
        tokio::pin!(answer);
        let mut watching = !timed_out;
        let answered = std::future::poll_fn(|cx| {
            if let Poll::Ready(resp) = answer.as_mut().poll(cx) {
                return Poll::Ready(Some(resp));
            }
            if watching {
                buf.reserve(READ_ROOM);
                match poll_read_buf(Pin::new(&mut tcp), cx, &mut buf) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                    Poll::Ready(Ok(_)) => watching = false,
                }
            }
            Poll::Pending
        })
        .await;
        let Some(resp) = answered else {
            return End::Closed;
        };
        let (parts, body) = resp.into_parts();
        let Ok(body) = http_body_util::BodyExt::collect(body).await else {
            return End::Closed;
        };
        let closing = timed_out
            || stop.is_stopped()
            || parts
                .headers
                .get(header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        out.clear();
        encode(&parts, &body.to_bytes(), closing, &mut out);
        if tcp.write_all(&out).await.is_err() {
            return End::Closed;
        }
        if closing {
            if timed_out {
                linger(&mut tcp).await;
            }
            return End::Closed;
        }
    }
}

fn hand_over(tcp: TcpStream, buf: BytesMut) -> End {
    End::HandOver(Prefixed {
        prefix: buf.freeze(),
        io: tcp,
    })
}

/// Whether `buf` past `scanned` (less the 3 bytes before it) has a line that ends a head.
fn may_end_a_head(buf: &[u8], scanned: usize) -> bool {
    let from = scanned.saturating_sub(3);
    memchr::memchr_iter(b'\n', &buf[from..]).any(|i| {
        let rest = &buf[from + i + 1..];
        rest.starts_with(b"\n") || rest.starts_with(b"\r\n")
    })
}

/// After answering a request whose body did not all come: stop writing, then read and drop
/// what the client still sends (at most 1 MiB, 2 s), so that it reads the answer instead of a
/// connection reset (as `api::body::linger` does on hyper's connections).
async fn linger(tcp: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 8192];
    let mut drained = 0usize;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while drained < 1 << 20 {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// What one read came to.
#[derive(Debug, PartialEq)]
enum Read {
    Data,
    Eof,
    Failed,
    TimedOut,
    /// The server is shutting down (watched only between requests).
    Stopped,
}

/// Wait for the socket, then read what it has into `buf`. Through tokio's `poll_read`: after
/// a read shorter than the room given, it marks the socket drained, so the next wait costs no
/// `recvfrom` that finds nothing (`try_read_buf` would make one per request).
async fn read(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    mut deadline: Pin<&mut Sleep>,
    mut stopping: Option<Pin<&mut Notified<'_>>>,
) -> Read {
    if buf.capacity() - buf.len() < READ_ROOM / 2 {
        buf.reserve(READ_ROOM);
    }
    std::future::poll_fn(|cx| {
        match poll_read_buf(Pin::new(&mut *tcp), cx, buf) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Read::Eof),
            Poll::Ready(Ok(_)) => return Poll::Ready(Read::Data),
            Poll::Ready(Err(_)) => return Poll::Ready(Read::Failed),
            Poll::Pending => {}
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Read::TimedOut);
        }
        if let Some(stopping) = stopping.as_mut() {
            if stopping.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Read::Stopped);
            }
        }
        Poll::Pending
    })
    .await
}

/// Tells the connections served here to close between requests: at shutdown, so that an idle
/// keep-alive connection does not hold up the drain.
#[derive(Default)]
pub struct Stop {
    stopped: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// A request's head as [`parse`] found it: offsets into the buffer.
#[derive(Debug)]
struct Head {
    hot: Hot,
    /// The queue named in the path.
    queue: (usize, usize),
    /// Bytes of the head, its blank line included.
    len: usize,
    content_length: usize,
    /// The request target (path and query).
    target: (usize, usize),
    /// Name and value of each header, as (start, end) pairs.
    headers: [[(usize, usize); 2]; MAX_HEADERS],
    count: usize,
}

// The head's offsets stay on the stack: boxing them would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Parsed {
    Direct(Head),
    /// The head has not all arrived.
    Partial,
    /// For hyper.
    Other,
}

/// Whether `buf` starts with a head this module serves.
fn parse(buf: &[u8], limits: &Limits) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some("POST"), Some(1), Some(target)) = (req.method, req.version, req.path) else {
        return Parsed::Other;
    };
    // Only what `http::Uri` surely takes (no fragment, no quotes or brackets); the rest is
    // hyper's to refuse or take.
    if target.len() > MAX_TARGET || !target.bytes().all(plain_target_byte) {
        return Parsed::Other;
    }
    let query = target.bytes().position(|b| b == b'?');
    let path = &target[..query.unwrap_or(target.len())];
    let Some((hot, queue)) = FrontDoor::hot(path).filter(|_| len <= limits.max_header_bytes) else {
        return Parsed::Other;
    };
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        (start, start + s.len())
    };
    let mut head = Head {
        hot,
        queue: at(queue.as_bytes()),
        len,
        content_length: 0,
        target: at(target.as_bytes()),
        headers: [[(0, 0); 2]; MAX_HEADERS],
        count: req.headers.len(),
    };
    let mut content_length = None;
    for (i, h) in req.headers.iter().enumerate() {
        let name = h.name.as_bytes();
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("content-length") {
            if content_length.is_some() {
                return Parsed::Other;
            }
            content_length = decimal(h.value);
        } else if is("transfer-encoding")
            || is("expect")
            || is("upgrade")
            || (is("connection") && !h.value.eq_ignore_ascii_case(b"keep-alive"))
        {
            return Parsed::Other;
        }
        head.headers[i] = [at(name), at(h.value)];
    }
    match content_length {
        Some(n) if n <= limits.max_body_bytes => head.content_length = n,
        _ => return Parsed::Other,
    }
    Parsed::Direct(head)
}

/// Longest request target taken here (`http::Uri` takes less than 64 KiB).
const MAX_TARGET: usize = 8192;

/// A byte of a path or query as `parse` takes it: unreserved, sub-delimiters, `:@/?%` (a
/// table: a search per byte was a thousand instructions a request).
fn plain_target_byte(b: u8) -> bool {
    const PLAIN: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            table[b] = (b as u8).is_ascii_alphanumeric();
            b += 1;
        }
        let others = b"-._~!$&'()*+,;=:@/?%";
        let mut i = 0;
        while i < others.len() {
            table[others[i] as usize] = true;
            i += 1;
        }
        table
    };
    PLAIN[usize::from(b)]
}

/// A `Content-Length` value: digits only.
fn decimal(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    usize::try_from(n).ok()
}

impl Head {
    /// The queue and the request for the front door; header values and the target share
    /// `head`'s bytes. The body goes beside it, as read ahead ([`ReadAhead`]).
    fn request(&self, head: &Bytes) -> Option<(String, Request<Body>)> {
        let queue = std::str::from_utf8(&head[self.queue.0..self.queue.1]).ok()?;
        let slice = |(start, end): (usize, usize)| head.slice(start..end);
        let uri = Uri::from_maybe_shared(slice(self.target)).ok()?;
        let mut headers = HeaderMap::with_capacity(self.count);
        for [name, value] in &self.headers[..self.count] {
            let name = HeaderName::from_bytes(&head[name.0..name.1]).ok()?;
            let value = HeaderValue::from_maybe_shared(slice(*value)).ok()?;
            headers.append(name, value);
        }
        let mut req = Request::new(Body::empty());
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        Some((queue.to_owned(), req))
    }
}

/// The answer as hyper writes it: status line, the answer's headers, `content-length` and
/// `date` unless it has them (and `connection: close` when the connection is `closing`), the
/// body.
fn encode(parts: &response::Parts, body: &[u8], closing: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    let reason = parts.status.canonical_reason().unwrap_or("<none>");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    if closing && !parts.headers.contains_key(header::CONNECTION) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Now as an HTTP date, formatted once a second per thread.
fn date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, text)| {
        if *at != second {
            *text = httpdate::fmt_http_date(now);
            *at = second;
        }
        out.extend_from_slice(text.as_bytes());
    });
}

/// The fuzz target `direct_heads`: what `parse` takes from any bytes (with small limits). A
/// head it takes must build a request for the front door (or the request would go to hyper
/// after its body was waited for), must have its end seen by [`may_end_a_head`] however the
/// bytes came in (or the connection would wait for ever), and must be partial when cut short.
/// Must never panic.
#[doc(hidden)]
pub fn fuzz_head(data: &[u8]) {
    let limits = Limits {
        header_timeout: Duration::from_secs(1),
        max_header_bytes: 2048,
        max_body_bytes: 100,
        body_timeout: Duration::from_secs(1),
    };
    let Parsed::Direct(head) = parse(data, &limits) else {
        return;
    };
    assert!(head.len <= data.len() && head.len <= limits.max_header_bytes);
    assert!(head.content_length <= limits.max_body_bytes);
    assert!(
        may_end_a_head(&data[..head.len], head.len - 1),
        "the head's end is seen when its last byte comes alone"
    );
    assert!(
        matches!(parse(&data[..head.len - 1], &limits), Parsed::Partial),
        "a head cut short is partial"
    );
    let bytes = Bytes::copy_from_slice(&data[..head.len]);
    let (queue, req) = head.request(&bytes).expect("a head taken builds a request");
    assert!(!queue.is_empty() && req.uri().path().starts_with("/v1/queues/"));
}

/// A stream with bytes already read from it put back in front, for hyper after a hand-over.
pub struct Prefixed<IO> {
    prefix: Bytes,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Let go of the read buffer it shares.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
