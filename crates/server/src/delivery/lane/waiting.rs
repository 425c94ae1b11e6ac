//! What a leased message waits for before its request: one of the requests its subscription's
//! `concurrency` allows, the end of a hold (a pause, a disable, its queue's pause) and the end
//! of an open circuit, its lease kept alive meanwhile. A message that waits is never given
//! back: a copy released and leased again would count a receive that was no attempt (the
//! attempt number of a message without history is its receive count). Only a lane that stops
//! gives its unsent messages back (`lane.rs`).

use std::time::Duration;

use sluice_engine::Delivery;
use tokio::sync::OwnedSemaphorePermit;

use super::Lane;

/// How often a message held back by a hold or an open circuit looks again.
const HELD_POLL: Duration = Duration::from_millis(250);
/// A lease is renewed before a request when less than the request's timeout plus this is
/// left, so it cannot run out while the endpoint answers.
const LEASE_MARGIN_MS: i64 = 30_000;

impl Lane {
    /// One of the requests the subscription's concurrency allows, once `got` may go. A message
    /// that had to wait (for a request, or for an open circuit) then waits while its
    /// subscription is held, keeping its request meanwhile (nothing else may go). While the
    /// circuit is open, anything but its probe waits without its request and its slots
    /// (`slots` is emptied), so the lane can lease the probe. Every wait keeps the lease alive.
    /// None: the lane stopped.
    pub(super) async fn request(
        &self,
        got: &mut Vec<Delivery>,
        slots: &mut Vec<OwnedSemaphorePermit>,
        probe: bool,
    ) -> Option<OwnedSemaphorePermit> {
        let mut waited = false;
        loop {
            if *self.stop.borrow() {
                return None;
            }
            let sending = match self.sending.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    waited = true;
                    self.next_request(got).await
                }
            };
            if *self.stop.borrow() {
                return None;
            }
            if waited && self.held().await {
                self.wait(got, |l| async move { l.held().await }).await;
                continue;
            }
            if probe || !self.health.is_open() {
                return Some(sending);
            }
            drop(sending);
            slots.clear();
            waited = true;
            self.wait(got, |l| async move { l.health.is_open() }).await;
        }
    }

    /// Wait for one of the requests in turn (the semaphore is fair), keeping the lease of `got`
    /// alive meanwhile.
    async fn next_request(&self, got: &mut Vec<Delivery>) -> OwnedSemaphorePermit {
        let next = self.sending.clone().acquire_owned();
        tokio::pin!(next);
        loop {
            tokio::select! {
                p = &mut next => return p.expect("never closed"),
                _ = tokio::time::sleep(HELD_POLL) => self.keep_leased(got).await,
            }
        }
    }

    /// Renew the leases of `got` if less is left than its request may take (it waited for
    /// its request, a hold or the endpoint's pace). A lease that ran out is gone: that
    /// message is back in line, and dropped from `got`.
    pub(super) async fn keep_leased(&self, got: &mut Vec<Delivery>) {
        let need = (self.sub.config.timeout_seconds * 1000.0) as i64 + LEASE_MARGIN_MS;
        let now = self.manager.engine.now();
        if got.iter().all(|d| d.lease_until - now >= need) {
            return;
        }
        let push = self.manager.engine.push();
        let lease_ms = self.sub.config.lease_ms();
        *got = push
            .renew(&self.sub.child, std::mem::take(got), lease_ms)
            .await
            .unwrap_or_default();
    }

    /// Something holds the subscription (its store's mark, so every node agrees): its copies
    /// must not go.
    async fn held(&self) -> bool {
        let push = self.manager.engine.push();
        push.held(&self.sub.child).await.unwrap_or(false)
    }

    /// Wait while `blocked` says so, looking again every [`HELD_POLL`], the lease of `got`
    /// kept alive, or until the lane stops.
    async fn wait<'a, F, Fut>(&'a self, got: &mut Vec<Delivery>, blocked: F)
    where
        F: Fn(&'a Lane) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut stop = self.stop.clone();
        while !*stop.borrow() && blocked(self).await {
            tokio::select! {
                r = stop.changed() => {
                    if r.is_err() {
                        tokio::time::sleep(HELD_POLL).await;
                    }
                }
                _ = tokio::time::sleep(HELD_POLL) => {}
            }
            self.keep_leased(got).await;
        }
    }
}
