//! The chunk watch: a chunked request body that announces more than the limit is refused at
//! once, not after the body timeout.
//!
//! Why it exists: a request that declares `Content-Length` over the limit is answered `413`
//! from its head (`api/body.rs`), but a chunked one declares nothing up front, and hyper 1.x's
//! HTTP/1 decoder accepts any `u64` chunk size and hands the application only the data it
//! reads, never the size the chunk announced. A client sending `FFFFFFFFFFFFFFFF\r\n` and then
//! nothing would hold a request open until `--body-timeout-seconds`.
//!
//! How: `server.rs` wraps each connection's stream (TCP, or TLS after the handshake) in
//! [`Watched`], which passes every byte through untouched and shows the bytes read to a
//! [`Framing`] follower. When a chunk-size line completes, the follower's sum of the chunk
//! sizes that body announced, with its request's index on the connection, is published in the
//! connection's [`Announcements`], and waiters are woken. `server.rs` also tags each HTTP/1
//! request with an [`AnnouncedBody`] extension: the connection's announcements and the
//! request's own index, counted in the order hyper hands requests over (one at a time, in
//! order, on an HTTP/1 connection, so the two counts agree). Body readers that enforce a limit
//! wrap the body with `api::body::refusing_overannounced`, which ends it with
//! [`Overannounced`] as soon as [`AnnouncedBody::beyond`] resolves.
//!
//! It fails open: anything the follower does not understand (HTTP/2, upgrades, odd framing,
//! long lines, ...) makes it stop watching that connection for good, and the requests on it
//! are read as before. The only harm it could do is a false alarm, so it raises one only at a
//! chunk-size line of a chunked request body it has followed from the connection's first
//! byte, and gives up if the request counts ever disagree.

mod framing;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{Request, Version};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

pub use framing::{Announced, Framing};

/// What the watcher has learnt about one connection, shared with its requests' body readers.
#[derive(Default)]
pub struct Announcements {
    seen: Mutex<Seen>,
    changed: Notify,
    /// HTTP/1 requests handed to the application so far.
    served: AtomicU64,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Seen {
    heads: u64,
    announced: Option<Announced>,
    /// Not (or no longer) watched: nothing here is to be trusted.
    stopped: bool,
}

impl Announcements {
    /// What the follower has seen so far (a stop, from either side, is for good).
    fn publish(&self, heads: u64, announced: Option<Announced>) {
        let mut seen = self.seen.lock();
        seen.heads = heads;
        seen.announced = announced;
        drop(seen);
        self.changed.notify_waiters();
    }

    fn stop(&self) {
        self.seen.lock().stopped = true;
        self.changed.notify_waiters();
    }
}

/// A connection's stream, watched on its read side. Every byte is passed through untouched.
pub struct Watched<IO> {
    io: IO,
    framing: Framing,
    /// What was last published, so that only changes take the lock.
    published: Seen,
    shared: Arc<Announcements>,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, shared: Arc<Announcements>) -> Self {
        Watched {
            io,
            framing: Framing::default(),
            published: Seen::default(),
            shared,
        }
    }

    fn follow(&mut self, bytes: &[u8]) {
        if self.published.stopped {
            return;
        }
        self.framing.feed(bytes);
        let seen = Seen {
            heads: self.framing.heads(),
            announced: self.framing.announced(),
            stopped: self.framing.is_lost(),
        };
        if seen != self.published {
            self.published = seen;
            if seen.stopped {
                self.framing = Framing::default(); // frees its line buffer
                self.shared.stop();
            } else {
                self.shared.publish(seen.heads, seen.announced);
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
        loop {
            let changed = self.connection.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so that no change is missed in between.
            changed.as_mut().enable();
            let seen = *self.connection.seen.lock();
            match seen.announced {
                _ if seen.stopped => break,
                Some(a) if a.request == self.request && a.total > limit => return,
                Some(a) if a.request > self.request => break,
                _ => {}
            }
            changed.await;
        }
        std::future::pending::<()>().await
    }
}

/// `service`, with every HTTP/1 request tagged with its [`AnnouncedBody`].
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
        if matches!(req.version(), Version::HTTP_10 | Version::HTTP_11) {
            let request = connection.served.fetch_add(1, Ordering::Relaxed);
            // The watcher sees each head before hyper does; if it has not seen this one, the
            // counts disagree and nothing it says can be trusted.
            if connection.seen.lock().heads <= request {
                connection.stop();
            }
            req.extensions_mut().insert(AnnouncedBody {
                connection: connection.clone(),
                request,
            });
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
