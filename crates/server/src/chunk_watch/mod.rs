//! The chunk watch: a chunked request body that announces more than the limit is refused at
//! once, not after the body timeout.
//!
//! Why it exists: a request that declares `Content-Length` over the limit is answered `413`
//! from its head (`api/body.rs`), but a chunked one declares nothing up front, and hyper 1.x's
//! HTTP/1 decoder accepts any `u64` chunk size and hands the application only the data it
//! reads, never the size the chunk announced. A client sending `FFFFFFFFFFFFFFFF\r\n` and then
//! nothing would hold a request open until `--body-timeout-seconds`.
//!
//! How: `server.rs` wraps each stream hyper serves (TCP from where `direct_h1` hands it over,
//! at a request's first byte, or TLS after the handshake) in [`Watched`], which passes every byte through untouched and shows the bytes read to a
//! [`Framing`] follower. The follower's count of request heads read in full is published in
//! the connection's [`Announcements`] as an atomic; when a chunk-size line completes, the sum
//! of the chunk sizes that body announced, with its request's index on the connection, is
//! published under a lock, and waiters are woken only if it passes the smallest limit one has
//! waited on. `server.rs` also tags each HTTP/1 request with a chunked body with an
//! [`AnnouncedBody`] extension: the connection's announcements and the request's own index,
//! counted in the order hyper hands requests over (one at a time, in order, on an HTTP/1
//! connection, so the two counts agree). Once the watch has stopped, requests are not tagged,
//! and a request without a chunked body never is; so, for most requests, the watch costs a few
//! atomic operations and a header lookup. Body readers that enforce a limit wrap the body with
//! `api::body::refusing_overannounced` (or race an `api::body::Alarm`), which ends it with
//! [`Overannounced`] as soon as [`AnnouncedBody::beyond`] resolves.
//!
//! It fails open: anything the follower does not understand (HTTP/2, upgrades, odd framing,
//! long lines, ...) makes it stop watching that connection for good, and the requests on it
//! are read as before. The only harm it could do is a false alarm, so it raises one only at a
//! chunk-size line of a chunked request body it has followed from the first byte hyper
//! reads, only while its last head read is that request's, and gives up if the request counts
//! ever disagree (a stop from either side also stops the follower).

mod framing;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{header::TRANSFER_ENCODING, Request, Version};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

pub use framing::{Announced, Framing};

/// What the watcher has learnt about one connection, shared with its requests' body readers.
pub struct Announcements {
    /// Request heads the follower has read in full (read lock-free for every request).
    heads: AtomicU64,
    /// Not (or no longer) watched: nothing here is to be trusted. Set for good, by the
    /// follower or by [`tag_requests`].
    stopped: AtomicBool,
    /// The latest chunked body's announced total; `changed` is notified when it passes
    /// `waited`.
    announced: Mutex<Option<Announced>>,
    changed: Notify,
    /// No more than the smallest limit any [`AnnouncedBody::beyond`] on this connection has
    /// waited on (`u64::MAX` before any did): a total within it can wake no one.
    waited: AtomicU64,
    /// HTTP/1 requests handed to the application so far.
    served: AtomicU64,
}

impl Default for Announcements {
    fn default() -> Self {
        Announcements {
            heads: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            announced: Mutex::new(None),
            changed: Notify::new(),
            waited: AtomicU64::new(u64::MAX),
            served: AtomicU64::new(0),
        }
    }
}

impl Announcements {
    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// A chunk-size line changed the announced total (or started a new body's).
    fn announce(&self, announced: Announced) {
        *self.announced.lock() = Some(announced);
        // A waiter records its limit before it looks (under the lock), so either it sees this
        // total or this sees its limit.
        if announced.total > self.waited.load(Ordering::Relaxed) {
            self.changed.notify_waiters();
        }
    }

    /// Stop for good (from either side).
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }
}

/// A connection's stream, watched on its read side. Every byte is passed through untouched.
pub struct Watched<IO> {
    io: IO,
    framing: Framing,
    /// What was last published, so that only changes are.
    heads: u64,
    announced: Option<Announced>,
    stopped: bool,
    shared: Arc<Announcements>,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, shared: Arc<Announcements>) -> Self {
        Watched {
            io,
            framing: Framing::default(),
            heads: 0,
            announced: None,
            stopped: false,
            shared,
        }
    }

    fn follow(&mut self, bytes: &[u8]) {
        if self.stopped {
            return;
        }
        if !self.shared.is_stopped() {
            self.framing.feed(bytes);
        }
        if self.framing.is_lost() || self.shared.is_stopped() {
            self.stopped = true;
            self.framing = Framing::default(); // frees its line buffer
            self.shared.stop();
            return;
        }
        // Heads first: an announcement names a request whose head is already published.
        let heads = self.framing.heads();
        if heads != self.heads {
            self.heads = heads;
            self.shared.heads.store(heads, Ordering::Release);
        }
        let announced = self.framing.announced();
        if announced != self.announced {
            self.announced = announced;
            if let Some(a) = announced {
                self.shared.announce(a);
            }
        }
    }
}
impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            this.follow(&buf.filled()[before..]);
        }
        read
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A request extension: what the chunk watch knows of this request's body.
#[derive(Clone)]
pub struct AnnouncedBody {
    connection: Arc<Announcements>,
    request: u64,
}

impl AnnouncedBody {
    /// Resolves once this request's chunked body has announced more than `limit` bytes in
    /// all; never resolves otherwise (the watch stopped, the body ended within the limit, or
    /// the connection moved on to later requests).
    pub async fn beyond(self, limit: u64) {
        let c = &*self.connection;
        c.waited.fetch_min(limit, Ordering::Relaxed);
        loop {
            let changed = c.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so that no change is missed in between.
            changed.as_mut().enable();
            if c.is_stopped() {
                break;
            }
            let announced = *c.announced.lock();
            match announced {
                // While this request's body is being read, the follower is inside it: its
                // last head is this request's. Anything else (a head it saw that hyper did
                // not, or the body already read in full) is no alarm.
                Some(a) if a.request == self.request && a.total > limit => {
                    if c.heads.load(Ordering::Acquire) == self.request + 1 {
                        return;
                    }
                    break;
                }
                Some(a) if a.request > self.request => break,
                _ => {}
            }
            changed.await;
        }
        std::future::pending::<()>().await
    }
}

/// `service`, with every HTTP/1 request whose body is chunked tagged with its
/// [`AnnouncedBody`] while the watch follows the connection.
pub fn tag_requests<S, B>(
    service: S,
    connection: Arc<Announcements>,
) -> tower::util::MapRequest<S, impl FnMut(Request<B>) -> Request<B> + Clone>
where
    S: tower::Service<Request<B>>,
{
    use tower::ServiceExt;
    service.map_request(move |mut req: Request<B>| {
        // HTTP/2 has no chunked encoding (and serves requests concurrently).
        if matches!(req.version(), Version::HTTP_10 | Version::HTTP_11) && !connection.is_stopped()
        {
            let request = connection.served.fetch_add(1, Ordering::Relaxed);
            // The watcher sees each head before hyper does; if it has not seen this one, the
            // counts disagree and nothing it says can be trusted.
            if connection.heads.load(Ordering::Acquire) <= request {
                connection.stop();
            } else if req.headers().contains_key(TRANSFER_ENCODING) {
                // (Without it, hyper reads the body by its length, or as empty.)
                req.extensions_mut().insert(AnnouncedBody {
                    connection: connection.clone(),
                    request,
                });
            }
        }
        req
    })
}

/// The error a watched body ends with when its request announced more than the limit.
#[derive(Debug, thiserror::Error)]
#[error("the chunked request body announces more than the limit of {limit} bytes")]
pub struct Overannounced {
    pub limit: u64,
}

/// The limit named by an [`Overannounced`] anywhere in `e`'s chain of sources.
pub fn overannounced(e: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut at = Some(e);
    while let Some(e) = at {
        if let Some(o) = e.downcast_ref::<Overannounced>() {
            return Some(o.limit);
        }
        at = e.source();
    }
    None
}

#[cfg(test)]
mod tests;
