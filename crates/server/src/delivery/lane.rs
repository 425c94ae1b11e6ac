//! One subscription's lane: wait for a concurrency slot and the endpoint's pace, lease the next
//! message(s) from the subscription's copy queue with a long poll, and start a delivery task
//! for each request (one message, or a batch). While no rate is in force, a lane leases as
//! many single messages as it has free slots in one store call; a paced lane takes its turn
//! first and leases one message per turn, plus the turns that come while it leases (0.1 s of
//! the rate in force), which wait for them in their own tasks. A FIFO subscription leases one message per receive:
//! the store then keeps the group locked until it is settled, so a group's messages never go
//! in parallel. An open circuit (`health.rs`) holds the lane before it leases, except for
//! its probe: one request, whose answer closes the circuit or sets the next probe's time.
//!
//! Slots count leased messages, not requests: a lane that sends single messages in parallel
//! (concurrency 2 or more, not FIFO) has up to [`LEASED_AHEAD_MAX`] more slots than requests,
//! so a request that ends finds the next message leased and durable, and the lease's sync is
//! off the request's path. The subscription's `concurrency` caps the requests themselves
//! (`sending`). A message leased ahead that waited for its request waits on, still leased,
//! while its subscription is held; anything but a probe waits while the circuit is open
//! (`lane/waiting.rs`).
//!
//! A request's slot is free as soon as its answer is in: the lane's *settler*
//! (`lane/settler.rs`) records the outcomes (attempts, removals, retries, dead letters) in
//! batches, so durable writes are shared by many requests and never hold a slot. At most
//! [`UNSETTLED_MAX`] answered requests wait for it; past that, requests keep their slots until
//! there is room (the lane slows down instead of piling up).

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_engine::push::pace::Ticket;
use sluice_engine::push::SubscriptionRef;
use sluice_engine::Delivery;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::health::Health;
use super::http::Target;
use super::throttle::Throttle;
use super::webhook::{Answered, Meters};
use super::{Counters, PushManager, LEASE_POLL_MS};

mod settler;
mod waiting;

/// How far ahead of its turns a paced lane leases (seconds of the rate in force).
const LEASE_AHEAD_S: f64 = 0.1;
/// Answered requests of one lane waiting for its settler, at most.
const UNSETTLED_MAX: usize = 1000;
/// Messages a lane of single messages sent in parallel (a concurrency of 2 or more, not FIFO)
/// keeps leased beyond its concurrency (at most its concurrency), so a request that ends finds
/// the next message leased and durable.
const LEASED_AHEAD_MAX: usize = 50;

/// A delivery's turn of the endpoint's pace.
enum Turn {
    /// Taken before the message was leased.
    Taken(Ticket),
    /// To take before sending (leased in bulk before a 429 slowed the endpoint down).
    Take,
    /// Nothing is paced: send at once.
    Free,
}

pub(super) struct Lane {
    manager: Arc<PushManager>,
    sub: SubscriptionRef,
    counters: Arc<Counters>,
    throttle: Arc<Throttle>,
    health: Arc<Health>,
    /// The subscription's URL, parsed once.
    target: Target,
    meters: Meters,
    /// Answered requests, to the settler (each holding its place in `unsettled`).
    settle: mpsc::UnboundedSender<(Answered, OwnedSemaphorePermit)>,
    unsettled: Arc<Semaphore>,
    /// Requests being made: the subscription's concurrency.
    sending: Arc<Semaphore>,
    /// Set once the lane stops: messages leased but not yet sent are given back.
    stop: watch::Receiver<bool>,
}

impl Lane {
    /// Start the lane of `sub` and its settler, until `stop` (the settler ends once the
    /// lane's last request is settled).
    pub fn start(
        manager: Arc<PushManager>,
        sub: SubscriptionRef,
        counters: Arc<Counters>,
        throttle: Arc<Throttle>,
        health: Arc<Health>,
        stop: watch::Receiver<bool>,
    ) {
        let (settle, answered) = mpsc::unbounded_channel();
        tokio::spawn(settler::run(manager.clone(), sub.clone(), answered));
        let lane = Lane {
            sending: Arc::new(Semaphore::new(sub.config.concurrency as usize)),
            stop,
            manager,
            target: Target::parse(&sub.config.url),
            meters: Meters::new(&sub),
            sub,
            counters,
            throttle,
            health,
            settle,
            unsettled: Arc::new(Semaphore::new(UNSETTLED_MAX)),
        };
        tokio::spawn(lane.run());
    }

    async fn run(self) {
        let mut stop = self.stop.clone();
        let lane = Arc::new(self);
        let config = &lane.sub.config;
        let batch_max = config.batch.max_messages as usize;
        let fifo = sluice_engine::is_fifo(&lane.sub.child);
        // A slot is a leased message (or batch) not yet settled: the requests being made
        // (`sending`) plus, for single messages sent in parallel, some leased ahead. Their
        // lease's sync is then off the request's path (measured: BENCHMARKS.md, "Push: leased
        // ahead"). Batches, FIFO groups and `concurrency: 1` (which keeps the queue's order)
        // lease only what they send.
        let concurrency = config.concurrency as usize;
        let ahead = match sends_singles_in_parallel(&lane.sub) {
            true => concurrency.min(LEASED_AHEAD_MAX),
            false => 0,
        };
        let slots = Arc::new(Semaphore::new(concurrency + ahead));
        lane.health.restore().await;
        loop {
            if *stop.borrow() {
                return;
            }
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("semaphore is never closed"),
                _ = stop.changed() => return,
            };
            // An open circuit: nothing is leased until its probe is due (`health.rs`).
            let probe = tokio::select! {
                p = lane.health.gate() => p,
                _ = stop.changed() => return,
            };
            if probe {
                lane.probe(first, batch_max, &mut stop).await;
                continue;
            }
            if batch_max > 1 {
                // A batch is one request: one slot, one turn of the pace.
                let ticket = tokio::select! {
                    t = lane.throttle.acquire() => t,
                    _ = stop.changed() => return,
                };
                if let Some(got) = lane.lease_batch(batch_max, &mut stop).await {
                    lane.spawn_delivery(got, vec![first], Turn::Taken(ticket), false);
                }
                continue;
            }
            if lane
                .send_singles(first, &slots, fifo, &mut stop)
                .await
                .is_break()
            {
                return;
            }
        }
    }

    /// One message per request: lease as many as there are free slots (at most 100, one for
    /// FIFO), in one store call; each delivery then waits for its own turn of the pace.
    /// `Break` when the lane stopped meanwhile.
    async fn send_singles(
        self: &Arc<Self>,
        first: OwnedSemaphorePermit,
        slots: &Arc<Semaphore>,
        fifo: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> ControlFlow<()> {
        let Some((mut permits, tickets)) = self.free_slots(first, slots, fifo, stop).await else {
            return ControlFlow::Break(());
        };
        // Not raced against `stop`: a receive cancelled after its lease was taken would
        // strand the messages until the lease ends. A short wait keeps stops prompt.
        let push = self.manager.engine.push();
        let lease_ms = self.sub.config.lease_ms();
        let got = push
            .lease(&self.sub.child, permits.len(), lease_ms, LEASE_POLL_MS)
            .await;
        let got = match got {
            Ok(g) if *stop.borrow() => {
                // Stopped meanwhile (subscription changed or deleted): give them back.
                let _ = push.give_back(&self.sub.child, &g).await;
                return ControlFlow::Break(());
            }
            Ok(g) => g,
            Err(e) => {
                lease_failed(&self.sub, &e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                return ControlFlow::Continue(());
            }
        };
        permits.truncate(got.len());
        let mut tickets = tickets.into_iter();
        for (d, p) in got.into_iter().zip(permits) {
            let turn = match tickets.next() {
                Some(t) => Turn::Taken(t),
                // Leased in bulk: a 429 may have slowed the endpoint down meanwhile.
                None => Turn::Take,
            };
            self.spawn_delivery(vec![d], vec![p], turn, false);
        }
        ControlFlow::Continue(())
    }

    /// The slots to lease single messages for: `first` and those free right now (at most 100;
    /// one for FIFO). A paced lane takes a turn first, then one more turn per slot while turns are
    /// free (a configured rate's burst), plus slots for the turns that come while the lease is
    /// taken. `None` when the lane stopped while waiting for its turn.
    async fn free_slots(
        &self,
        first: OwnedSemaphorePermit,
        slots: &Arc<Semaphore>,
        fifo: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(Vec<OwnedSemaphorePermit>, Vec<Ticket>)> {
        let mut permits = vec![first];
        let paced = self.throttle.is_pacing();
        let mut tickets = Vec::new();
        if paced {
            let t = tokio::select! {
                t = self.throttle.acquire() => t,
                _ = stop.changed() => return None,
            };
            tickets.push(t);
        }
        let cap = if fifo { 1 } else { 100 };
        while permits.len() < cap {
            if paced {
                match self.throttle.try_acquire() {
                    Some(t) => tickets.push(t),
                    None => break,
                }
            }
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        // A turn taken without a slot to use it is simply not used.
        tickets.truncate(permits.len());
        if paced {
            // Lease ahead the turns that come while this lease is taken (its sync), so a
            // busy store does not hold the endpoint below its rate: the extra messages wait
            // for their turn in their own task, holding their slot.
            let ahead = (self.throttle.rate().unwrap_or(0.0) * LEASE_AHEAD_S).ceil() as usize;
            while permits.len() < ahead.min(cap) {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
        }
        Some((permits, tickets))
    }

    /// The probe of an open circuit: one request, of the oldest ready message (or a batch of
    /// what is ready, without waiting for more). Nothing ready: the probe is due again.
    async fn probe(
        self: &Arc<Self>,
        slot: OwnedSemaphorePermit,
        batch_max: usize,
        stop: &mut watch::Receiver<bool>,
    ) {
        let ticket = tokio::select! {
            t = self.throttle.acquire() => t,
            _ = stop.changed() => return,
        };
        let push = self.manager.engine.push();
        let (child, lease_ms) = (&self.sub.child, self.sub.config.lease_ms());
        match push.lease(child, batch_max, lease_ms, LEASE_POLL_MS).await {
            Ok(g) if *stop.borrow() => {
                let _ = push.give_back(child, &g).await;
                self.health.probe_unused();
            }
            Ok(g) if g.is_empty() => self.health.probe_unused(),
            Ok(g) => self.spawn_delivery(g, vec![slot], Turn::Taken(ticket), true),
            Err(e) => {
                self.health.probe_unused();
                lease_failed(&self.sub, &e);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Lease a batch: up to `max`, waiting up to the batch's `max_wait_ms` after the first.
    async fn lease_batch(
        &self,
        max: usize,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Vec<Delivery>> {
        let push = self.manager.engine.push();
        let (child, lease_ms) = (&self.sub.child, self.sub.config.lease_ms());
        let mut got = match push.lease(child, max, lease_ms, LEASE_POLL_MS).await {
            Ok(g) if g.is_empty() => return None,
            Ok(g) => g,
            Err(e) => {
                lease_failed(&self.sub, &e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                return None;
            }
        };
        // A retry goes out at once with what is ready: its wait was already served.
        let wait_ms = if got.iter().any(|d| d.message.receive_count > 1) {
            0
        } else {
            self.sub.config.batch.max_wait_ms
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        while got.len() < max {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let more = push
                .lease(
                    child,
                    max - got.len(),
                    lease_ms,
                    (left.as_millis() as u64).min(LEASE_POLL_MS),
                )
                .await;
            match more {
                Ok(m) if m.is_empty() => {
                    if left.is_zero() || *stop.borrow() {
                        break;
                    }
                }
                Ok(m) => got.extend(m),
                Err(_) => break,
            }
        }
        if *stop.borrow() {
            // Stopped meanwhile (subscription changed or deleted): give them back.
            let _ = push.give_back(child, &got).await;
            return None;
        }
        let mut seen = std::collections::HashSet::new();
        got.retain(|d| seen.insert(d.message.id));
        Some(got)
    }

    /// Deliver `got` in a task of its own; the permits free their slots when it is done. The
    /// task first waits for one of the requests the concurrency allows and, if need be, for a
    /// hold or an open circuit to end (`waiting.rs`); it gives `got` back unsent if the lane
    /// stops. A delivery leased in bulk then waits for its turn if the endpoint is paced by
    /// then. A lease with too little time left for the request is renewed.
    fn spawn_delivery(
        self: &Arc<Self>,
        got: Vec<Delivery>,
        permits: Vec<OwnedSemaphorePermit>,
        turn: Turn,
        probe: bool,
    ) {
        let lane = self.clone();
        let n = got.len() as u64;
        tokio::spawn(async move {
            let (mut got, mut permits) = (got, permits);
            let Some(sending) = lane.request(&mut got, &mut permits, probe).await else {
                // Stopped (settings changed, deleted): unsent, back to the front.
                if let Turn::Taken(t) = turn {
                    lane.throttle.unused(t);
                }
                let push = lane.manager.engine.push();
                let _ = push.give_back(&lane.sub.child, &got).await;
                if probe {
                    lane.health.probe_unused();
                }
                return;
            };
            lane.counters.in_flight.fetch_add(n, Ordering::Relaxed);
            let turn = match turn {
                Turn::Take if lane.throttle.is_pacing() => Turn::Take,
                Turn::Take | Turn::Free => Turn::Free,
                taken => taken,
            };
            let ticket = match turn {
                Turn::Taken(t) => t,
                Turn::Free => lane.throttle.ticket(),
                Turn::Take => lane.throttle.acquire().await,
            };
            lane.keep_leased(&mut got).await;
            let answered = match got.is_empty() {
                true => {
                    lane.throttle.unused(ticket);
                    None
                }
                false => {
                    lane.manager
                        .call(
                            &lane.sub,
                            &lane.target,
                            got,
                            &lane.throttle,
                            ticket,
                            &lane.meters,
                        )
                        .await
                }
            };
            // The circuit hears the answer before the request is free, so a message waiting
            // for it sees the circuit this answer may have opened.
            match &answered {
                Some((v, _)) => lane.health.report(*v, probe).await,
                None if probe => lane.health.probe_unused(),
                None => {}
            }
            drop(sending);
            lane.counters.in_flight.fetch_sub(n, Ordering::Relaxed);
            if let Some((_, a)) = answered {
                // The slot is kept until the settler has room.
                let place = lane
                    .unsettled
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("never closed");
                // The settler ends only when every sender (this lane) is gone.
                let _ = lane.settle.send((a, place));
            }
            drop(permits);
        });
    }
}

/// Single messages sent in parallel: not batches, not FIFO, a concurrency of 2 or more. Such a
/// lane leases ahead of its requests and its settler gathers (`lane/settler.rs`).
fn sends_singles_in_parallel(sub: &SubscriptionRef) -> bool {
    let c = &sub.config;
    !c.batching() && c.concurrency >= 2 && !sluice_engine::is_fifo(&sub.child)
}

/// A lease failed. A deleted queue takes its subscriptions, and this lane, with it: not worth a
/// warning. Others are logged by the names users know (never the internal copy queue's).
fn lease_failed(sub: &sluice_engine::push::SubscriptionRef, e: &sluice_engine::EngineError) {
    if matches!(e, sluice_engine::EngineError::QueueNotFound(_)) {
        tracing::debug!(queue = %sub.queue, subscription = %sub.name, "queue deleted; the lane stops");
    } else {
        tracing::warn!(queue = %sub.queue, subscription = %sub.name, error = %e, "push receive failed");
    }
}
