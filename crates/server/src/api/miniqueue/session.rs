//! One miniqueue subscription (`POST /subscribe/{topic}`): the loop that turns the client's
//! commands into engine calls and writes one message at a time back.
//!
//! Commands are taken in order, as the seed does: a command that asks for the next message
//! (INIT, ACK, NACK, BACK, DACK) is answered, the message written as one JSON line, before the
//! next command is read, and the end of the request body ends the session only once the
//! commands before it are done.
//!
//! Why a round trip is cheap (issue 25: it was ~0.6 ms, two fsyncs in a row):
//! - **An ACK is not waited for.** The protocol gives an ACK no reply, so the next message does
//!   not wait for the ACK's fsync: the ACK is appended at once and group-committed with whatever
//!   the store syncs next. A fast subscriber's ACKs go to the store together, with its next
//!   prefetch (at most [`PREFETCH`] at a time); anyone else's at once. A crash before they are
//!   synced (a few ms at most) can deliver those messages again: at least once, as after any
//!   lost ACK.
//! - **A fast subscriber gets its next message from a prefetch.** Once the client answers a
//!   message within [`FAST`], the session keeps up to [`PREFETCH`] more leased ahead (durably,
//!   like any receive) while the client works, and hands the next one over as soon as it asks.
//!   A client that holds a message longer than [`FAST`] is slow: what is leased ahead goes back
//!   to the front of the topic at once, in order, for other subscribers, and the session stops
//!   prefetching until the client is fast again. NACK, BACK and DACK hand back what is leased
//!   ahead first, so the NACKed message is still the next one out. A message leased ahead and
//!   handed back counts one receive (`receive_count`).
//!
//! - **No hand-off per message.** The session is the response body: the connection's own task
//!   polls it, it reads the client's commands from the request body itself, and a message is
//!   written the moment the session returns it.
//!
//! Waiting for a message is a receive run as its own task and never abandoned midway, so a
//! delivery is never lost between the store and the client. When the client goes away (the
//! body is dropped) or the session ends, a task of its own hands the held message and
//! everything leased ahead back to the front, in order, and passes on the last ACKs.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures::Stream;
use serde_json::json;
use sluice_engine::{Delivery, Engine, MessageId, Placement, ReceiveOptions};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Command, Commands, MiniqueueState};
use crate::api::state::Slot;

/// How long an outstanding message stays leased to a connected subscriber (the engine's
/// maximum); a subscriber that disconnects releases it at once.
const LEASE_S: u32 = 43_200;

/// The most messages a fast subscriber has leased ahead of the one it holds.
pub const PREFETCH: usize = 16;

/// A client that answers a message within this is fast: the session prefetches for it. One that
/// holds a message longer gets what was leased ahead handed back.
pub const FAST: Duration = Duration::from_millis(5);

type Fetched = Result<sluice_engine::Result<Vec<Delivery>>, tokio::task::JoinError>;
type Fetch = JoinHandle<sluice_engine::Result<Vec<Delivery>>>;

struct Outstanding {
    id: MessageId,
    receipt: String,
    sent_at: Instant,
}

struct Session {
    state: Arc<MiniqueueState>,
    engine: Arc<Engine>,
    topic: String,
    commands: Commands,
    /// A command asked for the next message.
    wanted: bool,
    /// The message the client holds.
    outstanding: Option<Outstanding>,
    /// Leased, not yet sent, oldest first.
    ahead: VecDeque<Delivery>,
    /// A receive in flight: the long poll, or a prefetch.
    fetch: Option<Fetch>,
    /// The client answered its last message within [`FAST`].
    fast: bool,
    /// Receipts ACKed by the client, not yet passed to the store.
    acks: Vec<String>,
    /// Fires when the client may have turned slow (see `slow_at`).
    check: Pin<Box<tokio::time::Sleep>>,
    /// An error was written: the session ends.
    ending: bool,
    /// The server-wide streaming slot this subscription holds.
    _slot: Slot,
}

/// What a wait for a command ended with (`Input(None)`: the client is gone).
enum Event {
    Input(Option<Command>),
    Fetched(Fetched),
    Slow,
}

/// The response body of one subscription: each item is one JSON line.
pub fn stream(
    state: Arc<MiniqueueState>,
    topic: String,
    commands: Commands,
    slot: Slot,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let session = Session {
        engine: state.engine.clone(),
        state,
        topic,
        commands,
        wanted: false,
        outstanding: None,
        ahead: VecDeque::new(),
        fetch: None,
        fast: false,
        acks: Vec::new(),
        ending: false,
        check: Box::pin(tokio::time::sleep_until(Instant::now())),
        _slot: slot,
    };
    futures::stream::unfold(session, |mut s| async move {
        let line = s.next_line().await;
        if line.is_none() {
            s.finish();
        }
        Some((Ok(line?), s))
    })
}

impl Session {
    /// Takes commands until there is a line to write; `None` ends the session.
    async fn next_line(&mut self) -> Option<Bytes> {
        if self.ending {
            return None;
        }
        loop {
            if self.wanted && self.outstanding.is_none() {
                if let Some(d) = self.ahead.pop_front() {
                    self.wanted = false;
                    let line = self.message_line(d);
                    self.prefetch();
                    return Some(line);
                }
                // Nothing leased ahead: wait for the receive in flight, or start a long poll.
                if self.fetch.is_none() {
                    self.fetch = Some(self.engine_receive(1, Some(2)));
                }
                let done = self.fetch.as_mut().expect("set").await;
                self.fetch = None;
                if let Err(last) = self.fetched(done) {
                    return last;
                }
                continue;
            }
            let event = {
                let slow_at = self.slow_at();
                // One timer per FAST period at most, not one per message: it is re-armed only
                // once the deadline it was set for has passed.
                if let Some(at) = slow_at {
                    let set = self.check.deadline();
                    if set <= Instant::now() || set > at + FAST {
                        self.check.as_mut().reset(at);
                    }
                }
                let (fetch, commands, check) =
                    (&mut self.fetch, &mut self.commands, self.check.as_mut());
                tokio::select! {
                    c = commands.next() => Event::Input(c),
                    done = async { fetch.as_mut().expect("checked").await }, if fetch.is_some() => {
                        Event::Fetched(done)
                    }
                    _ = check, if slow_at.is_some() => Event::Slow,
                }
            };
            let cmd = match event {
                Event::Fetched(done) => {
                    self.fetch = None;
                    if let Err(last) = self.fetched(done) {
                        return last;
                    }
                    continue;
                }
                Event::Slow if self.slow_at().is_some_and(|at| at > Instant::now()) => continue,
                Event::Slow => {
                    self.fast = false;
                    self.flush_acks();
                    self.hand_back_ahead().await;
                    continue;
                }
                Event::Input(None) => return None,
                Event::Input(Some(c)) => c,
            };
            match cmd {
                Command::Init => self.wanted = true,
                Command::Ack => {
                    if let Some(o) = self.outstanding.take() {
                        self.fast = o.sent_at.elapsed() < FAST;
                        self.state.dacks.lock().remove(&o.id);
                        // Not waited for: the protocol has no reply to an ACK (see above).
                        self.acks.push(o.receipt);
                        if !self.fast || self.acks.len() >= PREFETCH {
                            self.flush_acks();
                        }
                    }
                    self.wanted = true;
                }
                Command::Nack => {
                    self.release(0, Placement::Front).await;
                    self.wanted = true;
                }
                Command::Back => {
                    self.release(0, Placement::Back).await;
                    self.wanted = true;
                }
                Command::Dack(n) => {
                    if let Some(id) = self.release(n, Placement::Front).await {
                        *self.state.dacks.lock().entry(id).or_default() += 1;
                    }
                    self.wanted = true;
                }
                Command::Bad(why) => return Some(line(json!({"error": why}))),
            }
        }
    }

    /// A receive run as its own task, with the ACKs not yet passed on (one sync for both).
    fn engine_receive(&mut self, max: usize, wait_seconds: Option<u32>) -> Fetch {
        let (engine, topic) = (self.engine.clone(), self.topic.clone());
        let acks = std::mem::take(&mut self.acks);
        tokio::spawn(async move {
            let receive = engine.receive(
                &topic,
                ReceiveOptions {
                    max_messages: max,
                    wait_seconds,
                    visibility_timeout_seconds: Some(LEASE_S),
                },
            );
            if acks.is_empty() {
                return receive.await;
            }
            let (_, got) = tokio::join!(engine.ack(&topic, &acks), receive);
            got
        })
    }

    /// Passes the ACKs taken so far to the store, without waiting for them.
    fn flush_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let (engine, topic) = (self.engine.clone(), self.topic.clone());
        let acks = std::mem::take(&mut self.acks);
        tokio::spawn(async move {
            let _ = engine.ack(&topic, &acks).await;
        });
    }

    /// A fast client with few messages leased ahead gets more, from what is ready now.
    fn prefetch(&mut self) {
        if self.fast && self.fetch.is_none() && self.ahead.len() < PREFETCH / 2 {
            self.fetch = Some(self.engine_receive(PREFETCH - self.ahead.len(), Some(0)));
        }
    }

    /// When the client, holding a message with more leased ahead, turns slow.
    fn slow_at(&self) -> Option<Instant> {
        match &self.outstanding {
            Some(o) if !self.ahead.is_empty() => Some(o.sent_at + FAST),
            _ => None,
        }
    }

    /// Files a finished receive. A failure ends the session; `Err` holds its last line, the
    /// error, if there is one to write.
    fn fetched(&mut self, done: Fetched) -> Result<(), Option<Bytes>> {
        match done {
            Ok(Ok(got)) => {
                self.ahead.extend(got);
                Ok(())
            }
            Ok(Err(e)) => {
                self.ending = true;
                Err(Some(line(json!({"error": e.to_string()}))))
            }
            Err(_) => Err(None),
        }
    }

    /// The line for `d`, now the message the client holds.
    fn message_line(&mut self, d: Delivery) -> Bytes {
        let dacks = self
            .state
            .dacks
            .lock()
            .get(&d.message.id)
            .copied()
            .unwrap_or(0);
        let mut v = json!({"msg": B64.encode(&d.message.body)});
        if dacks > 0 {
            v["dackCount"] = json!(dacks);
        }
        self.outstanding = Some(Outstanding {
            id: d.message.id,
            receipt: self.engine.receipt(&self.topic, &d.receipt),
            sent_at: Instant::now(),
        });
        line(v)
    }

    /// Waits for a receive in flight (it may hold messages) and hands everything leased ahead
    /// back to the front, in order.
    async fn hand_back_ahead(&mut self) {
        if let Some(f) = self.fetch.take() {
            if let Ok(Ok(got)) = f.await {
                self.ahead.extend(got);
            }
        }
        let newest_first: Vec<String> = self
            .ahead
            .drain(..)
            .rev()
            .map(|d| self.engine.receipt(&self.topic, &d.receipt))
            .collect();
        if !newest_first.is_empty() {
            let _ = self
                .engine
                .nack(&self.topic, &newest_first, 0, Placement::Front)
                .await;
        }
    }

    /// NACK, BACK or DACK: what is leased ahead goes back first, then the held message goes
    /// where the command says (waited for: the next receive must see it). Returns its id.
    async fn release(&mut self, delay_s: u32, placement: Placement) -> Option<MessageId> {
        self.hand_back_ahead().await;
        let o = self.outstanding.take()?;
        let _ = self
            .engine
            .nack(&self.topic, &[o.receipt], delay_s, placement)
            .await;
        Some(o.id)
    }

    /// The session is over (or its body dropped): a task of its own passes on the last ACKs,
    /// waits for a receive still running (it may hold messages), and hands the held message
    /// and everything leased ahead back to the front, in order. Idempotent.
    fn finish(&mut self) {
        let acks = std::mem::take(&mut self.acks);
        let fetch = self.fetch.take();
        let mut held: Vec<Delivery> = self.ahead.drain(..).collect();
        let outstanding = self.outstanding.take();
        if acks.is_empty() && fetch.is_none() && held.is_empty() && outstanding.is_none() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // the server is stopping: the leases stay in the log and expire
        };
        let (engine, topic) = (self.engine.clone(), self.topic.clone());
        rt.spawn(async move {
            if !acks.is_empty() {
                let _ = engine.ack(&topic, &acks).await;
            }
            if let Some(f) = fetch {
                if let Ok(Ok(got)) = f.await {
                    held.extend(got);
                }
            }
            // Each goes in front of the ones before it: newest first, the held message last.
            let mut receipts: Vec<String> = held
                .iter()
                .rev()
                .map(|d| engine.receipt(&topic, &d.receipt))
                .collect();
            receipts.extend(outstanding.map(|o| o.receipt));
            if !receipts.is_empty() {
                let _ = engine.nack(&topic, &receipts, 0, Placement::Front).await;
            }
        });
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.finish();
    }
}

fn line(v: serde_json::Value) -> Bytes {
    let mut b = serde_json::to_vec(&v).expect("json");
    b.push(b'\n');
    Bytes::from(b)
}
