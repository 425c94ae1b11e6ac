//! The engine's ground floor: the store, the clock, long-poll wake-ups and shutdown. Every
//! service above it (the queue API in `engine/`, push in `push/`, timers in `timers/`) holds
//! an `Arc<Core>`; the core knows none of them, so the services depend downward only.
//!
//! Long polling: each queue has a [`Notify`]. A waiting receive registers interest *before* it
//! looks at the store, so a publish between the look and the wait still wakes it; publishes wake
//! one waiter per message (not all of them), and a waiter also sleeps no longer than the queue's
//! next due time (a delay ending or a lease expiring), so nothing spins.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::clock::{Clock, Millis};
use crate::error::Result;
use crate::limits;
use crate::model::Delivery;
use crate::store::Store;

pub(crate) struct Core {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    pub shutdown: watch::Sender<bool>,
    /// Other nodes share the store (Redis): settings may change under us.
    pub shared: bool,
}

impl Core {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Core {
        Core {
            shared: store.remote_wakeups().is_some(),
            store,
            clock,
            wakers: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
        }
    }

    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        let mut w = self.wakers.lock();
        if let Some(n) = w.get(queue) {
            return n.clone();
        }
        let n = Arc::new(Notify::new());
        w.insert(queue.to_string(), n.clone());
        n
    }

    /// Wake up to `n` receives waiting on `queue` (one per message).
    pub fn wake(&self, queue: &str, n: usize) {
        let w = self.waker(queue);
        for _ in 0..n.min(limits::RECEIVE_BATCH_MAX) {
            w.notify_one();
        }
    }

    /// Wake every waiting receive of every queue (wake-ups may have been missed).
    pub fn wake_all(&self) {
        for w in self.wakers.lock().values() {
            w.notify_waiters();
        }
    }

    /// A deleted queue: its waiting receives find it gone and answer so.
    pub fn forget_queue(&self, queue: &str) {
        if let Some(w) = self.wakers.lock().remove(queue) {
            w.notify_waiters();
        }
    }

    /// The long poll: receive, or wait for a publish, a due delay or the deadline. Used by
    /// the queue API's receive and the push workers (which skip its validation and waiter
    /// limit).
    pub async fn wait_receive(
        &self,
        queue: &str,
        max: usize,
        visibility_ms: u64,
        wait_ms: u64,
    ) -> Result<Vec<Delivery>> {
        let deadline = self.now() + wait_ms as i64;
        let waker = self.waker(queue);
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let notified = waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.now();
            let got = self.store.receive(queue, max, visibility_ms, now).await?;
            if !got.is_empty() {
                if got.len() == max {
                    // There may be more: pass the turn on to another waiter.
                    waker.notify_one();
                }
                return Ok(got);
            }
            if now >= deadline || *shutdown.borrow() {
                return Ok(got);
            }
            let until = match self.store.next_due(queue, now).await? {
                Some(t) => t.min(deadline),
                None => deadline,
            };
            tokio::select! {
                _ = &mut notified => {}
                _ = self.clock.sleep_until(until) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
