//! Who waits for which log sequence number (LSN) to be durable, and waking exactly those.
//!
//! Every request that changes state waits until the log writer has synced its records. A
//! broadcast (tokio's `watch`, used before) woke every waiting request at every sync, also the
//! ones whose records were appended while that sync ran and so wait for the next one: each of
//! those woke, found nothing to do, and went back to sleep, at thousands of syncs a second. On two
//! cores every needless wake-up is a task poll, and often a thread wake-up another thread waits
//! behind. Here each waiter registers its LSN, and a sync wakes only the waiters it covered.

use std::future::poll_fn;
use std::task::{Poll, Waker};

use parking_lot::Mutex;

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything up to the LSN is on disk.
    Durable,
    /// The writer cannot write or sync (it keeps retrying; see `log/writer.rs`).
    Failed,
    /// The writer has stopped: nothing more will become durable.
    Stopped,
}

#[derive(Default)]
struct State {
    durable: u64,
    failed: bool,
    stopped: bool,
    next_id: u64,
    /// (LSN, waiter id, waker), in no particular order: a few dozen at a time. A wait that is
    /// dropped (its request cancelled) leaves its entry until the sync that covers its LSN, or
    /// a failure, takes it out: at most one per request that was waiting.
    waiting: Vec<(u64, u64, Waker)>,
}

impl State {
    fn outcome(&self, lsn: u64) -> Option<Outcome> {
        if self.durable >= lsn {
            Some(Outcome::Durable)
        } else if self.stopped {
            Some(Outcome::Stopped)
        } else if self.failed {
            Some(Outcome::Failed)
        } else {
            None
        }
    }
}

#[derive(Default)]
pub struct Durable {
    state: Mutex<State>,
}

impl Durable {
    /// Everything up to `lsn` is on disk and the log is healthy: wake the waiters it covers.
    pub fn advance(&self, lsn: u64) {
        let mut woken = Vec::new();
        {
            let mut s = self.state.lock();
            s.durable = s.durable.max(lsn);
            s.failed = false;
            let mut i = 0;
            while i < s.waiting.len() {
                if s.waiting[i].0 <= lsn {
                    woken.push(s.waiting.swap_remove(i).2);
                } else {
                    i += 1;
                }
            }
        }
        woken.into_iter().for_each(Waker::wake);
    }

    /// Writes are failing: every waiter (and every new one until the next `advance`) gets
    /// [`Outcome::Failed`].
    pub fn fail(&self) {
        self.wake_all(|s| s.failed = true);
    }

    /// The writer has stopped: every waiter whose LSN is not durable gets [`Outcome::Stopped`].
    pub fn stop(&self) {
        self.wake_all(|s| s.stopped = true);
    }

    fn wake_all(&self, set: impl FnOnce(&mut State)) {
        let woken = {
            let mut s = self.state.lock();
            set(&mut s);
            std::mem::take(&mut s.waiting)
        };
        woken.into_iter().for_each(|(_, _, w)| w.wake());
    }

    /// Wait until `lsn` is durable, or the writer fails or stops.
    pub async fn wait(&self, lsn: u64) -> Outcome {
        let mut id = None;
        poll_fn(|cx| {
            let mut s = self.state.lock();
            if let Some(done) = s.outcome(lsn) {
                return Poll::Ready(done);
            }
            // Polled again before its wake-up (inside a `select!`, say): refresh its waker
            // rather than registering twice.
            if let Some(me) = id {
                if let Some(entry) = s.waiting.iter_mut().find(|e| e.1 == me) {
                    entry.2.clone_from(cx.waker());
                    return Poll::Pending;
                }
            }
            let me = s.next_id;
            s.next_id += 1;
            id = Some(me);
            s.waiting.push((lsn, me, cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.state.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Context;

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);
    impl futures::task::ArcWake for Count {
        fn wake_by_ref(me: &Arc<Self>) {
            me.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), futures::task::waker(c))
    }
    fn woken(c: &Count) -> usize {
        c.0.load(Ordering::SeqCst)
    }

    /// A sync wakes the waiters it covers and no others; each then finds its LSN durable.
    #[test]
    fn a_sync_wakes_only_the_waiters_it_covers() {
        let d = Durable::default();
        let (c2, w2) = counter();
        let (c3, w3) = counter();
        let mut f2 = pin!(d.wait(2));
        let mut f3 = pin!(d.wait(3));
        assert!(f2.as_mut().poll(&mut Context::from_waker(&w2)).is_pending());
        assert!(f3.as_mut().poll(&mut Context::from_waker(&w3)).is_pending());
        d.advance(1);
        assert_eq!((woken(&c2), woken(&c3)), (0, 0));
        d.advance(2);
        assert_eq!((woken(&c2), woken(&c3)), (1, 0));
        let ready = f2.as_mut().poll(&mut Context::from_waker(&w2));
        assert_eq!(ready, Poll::Ready(Outcome::Durable));
        d.advance(5);
        assert_eq!(woken(&c3), 1);
        let ready = f3.as_mut().poll(&mut Context::from_waker(&w3));
        assert_eq!(ready, Poll::Ready(Outcome::Durable));
        assert_eq!(d.waiting(), 0);
        // An LSN already durable is answered without waiting.
        let mut f = pin!(d.wait(4));
        let ready = f.as_mut().poll(&mut Context::from_waker(&w2));
        assert_eq!(ready, Poll::Ready(Outcome::Durable));
    }

    /// A waiter polled again before its wake-up stays one entry, and the newest waker is woken.
    #[test]
    fn polling_again_replaces_the_waker() {
        let d = Durable::default();
        let (old, w_old) = counter();
        let (new, w_new) = counter();
        let mut f = pin!(d.wait(1));
        assert!(f
            .as_mut()
            .poll(&mut Context::from_waker(&w_old))
            .is_pending());
        assert!(f
            .as_mut()
            .poll(&mut Context::from_waker(&w_new))
            .is_pending());
        assert_eq!(d.waiting(), 1);
        d.advance(1);
        assert_eq!((woken(&old), woken(&new)), (0, 1));
    }

    /// A failure wakes everyone with `Failed`, and new waits fail at once until a sync
    /// succeeds again; a stop ends every wait that is not durable.
    #[test]
    fn failure_and_stop_end_every_wait() {
        let d = Durable::default();
        let (c, w) = counter();
        let mut f = pin!(d.wait(1));
        assert!(f.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
        d.fail();
        assert_eq!(woken(&c), 1);
        let got = f.as_mut().poll(&mut Context::from_waker(&w));
        assert_eq!(got, Poll::Ready(Outcome::Failed));
        let mut g = pin!(d.wait(2));
        let got = g.as_mut().poll(&mut Context::from_waker(&w));
        assert_eq!(got, Poll::Ready(Outcome::Failed));
        d.advance(2);
        let mut h = pin!(d.wait(3));
        assert!(h.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
        d.stop();
        let got = h.as_mut().poll(&mut Context::from_waker(&w));
        assert_eq!(got, Poll::Ready(Outcome::Stopped));
        let mut done = pin!(d.wait(2));
        let got = done.as_mut().poll(&mut Context::from_waker(&w));
        assert_eq!(got, Poll::Ready(Outcome::Durable));
    }
}
