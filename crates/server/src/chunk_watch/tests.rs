//! The shared side of the watch: what is published, who is woken, which requests are tagged,
//! and when an alarm may fire.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::{Request, Version};
use futures::FutureExt;
use tokio::io::AsyncReadExt;
use tower::ServiceExt;

use super::{tag_requests, Announced, AnnouncedBody, Announcements, Watched};

const HEAD: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";

fn announced(request: u64, total: u64) -> Announced {
    Announced { request, total }
}

fn body(c: &Arc<Announcements>, request: u64) -> AnnouncedBody {
    AnnouncedBody {
        connection: c.clone(),
        request,
    }
}

/// Whether `beyond(limit)` resolves for `request`, as things stand.
fn fires(c: &Arc<Announcements>, request: u64, limit: u64) -> bool {
    body(c, request).beyond(limit).now_or_never().is_some()
}

#[test]
fn an_alarm_fires_only_while_the_follower_is_in_that_request() {
    let c = Arc::new(Announcements::default());
    c.heads.store(1, Ordering::Release);
    c.announce(announced(0, 100));
    assert!(fires(&c, 0, 10));
    assert!(!fires(&c, 0, 100), "within the limit");
    assert!(!fires(&c, 1, 10), "another request's body");
    // A head the follower saw that hyper did not would shift the numbering: the follower is
    // past request 0's head, so what it announced for "request 0" is not request 0's.
    c.heads.store(2, Ordering::Release);
    assert!(!fires(&c, 0, 10));
    c.heads.store(1, Ordering::Release);
    c.stop();
    assert!(!fires(&c, 0, 10), "stopped");
}

#[test]
fn waiters_are_woken_only_past_the_smallest_limit_waited_on() {
    let c = Arc::new(Announcements::default());
    c.heads.store(1, Ordering::Release);
    let woken = |c: &Announcements, total| {
        let changed = c.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        c.announce(announced(0, total));
        changed.now_or_never().is_some()
    };
    assert!(!woken(&c, 5), "no one waits");
    let mut alarm = Box::pin(body(&c, 0).beyond(10));
    assert!((&mut alarm).now_or_never().is_none());
    assert_eq!(c.waited.load(Ordering::Relaxed), 10);
    assert!(!woken(&c, 10), "within the limit");
    assert!(woken(&c, 11));
    assert!(alarm.now_or_never().is_some());
    // A larger limit waited on later does not raise the bar.
    assert!(!fires(&c, 0, 1000));
    assert_eq!(c.waited.load(Ordering::Relaxed), 10);
}

#[tokio::test]
async fn heads_are_published_without_waking_anyone() {
    let c = Arc::new(Announcements::default());
    let wire = [HEAD, b"3\r\nabc\r\n0\r\n\r\n", HEAD, b"5\r\n"].concat();
    let changed = c.changed.notified();
    tokio::pin!(changed);
    changed.as_mut().enable();
    let mut watched = Watched::new(&wire[..], c.clone());
    watched.read_to_end(&mut Vec::new()).await.unwrap();
    assert_eq!(c.heads.load(Ordering::Acquire), 2);
    assert_eq!(*c.announced.lock(), Some(announced(1, 5)));
    assert!(changed.now_or_never().is_none(), "no one was woken");
}

#[tokio::test]
async fn a_stop_from_the_requests_side_stops_the_follower() {
    let c = Arc::new(Announcements::default());
    let mut watched = Watched::new(HEAD, c.clone());
    c.stop();
    watched.read_to_end(&mut Vec::new()).await.unwrap();
    assert!(watched.stopped);
    assert_eq!(watched.framing.heads(), 0, "not followed");
    assert_eq!(c.heads.load(Ordering::Acquire), 0);
}

#[test]
fn only_chunked_requests_are_tagged_while_the_watch_follows() {
    let c = Arc::new(Announcements::default());
    let echo = tower::service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(req) });
    let service = tag_requests(echo, c.clone());
    let tag = |chunked: bool, version: Version| {
        let mut req = Request::builder().version(version);
        if chunked {
            req = req.header("transfer-encoding", "chunked");
        }
        let req = service.clone().oneshot(req.body(()).unwrap());
        let req = req.now_or_never().unwrap().unwrap();
        req.extensions().get::<AnnouncedBody>().map(|a| a.request)
    };
    c.heads.store(3, Ordering::Release);
    assert_eq!(tag(true, Version::HTTP_11), Some(0));
    assert_eq!(tag(false, Version::HTTP_11), None);
    assert_eq!(tag(true, Version::HTTP_2), None);
    assert_eq!(tag(true, Version::HTTP_11), Some(2));
    assert!(!c.is_stopped());
    // A request whose head the follower has not seen: the counts disagree.
    assert_eq!(tag(true, Version::HTTP_11), None);
    assert!(c.is_stopped());
    c.heads.store(10, Ordering::Release);
    assert_eq!(tag(true, Version::HTTP_11), None, "stopped for good");
    assert_eq!(c.served.load(Ordering::Relaxed), 4, "no longer counted");
}
