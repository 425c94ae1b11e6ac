//! The pace of one endpoint: its configured rate limit (a token bucket, one second's worth of
//! burst) and an adaptive rate that follows its 429 answers, designed like congestion control
//! so that it converges instead of collapsing. Pure logic: the caller passes the time in (ms,
//! as an `f64` from any monotonic clock), so the rule is tested by simulation, without sleeping.
//!
//! The rule (docs/webhooks.md, "Pacing"):
//! - A 429 delays *that* message by at least its `Retry-After` (1 s without one); other
//!   messages go on.
//! - A 429 lowers the rate once per *congestion event*: only for a request sent after the
//!   previous cut, and at most once a second unless most answers since the cut were refusals.
//!   The cut starts from the rate actually achieved, never from the floor: what the endpoint
//!   accepted over the last second, plus the share of occasional refusals tolerated
//!   ([`TOLERATED`]), at most the rate in force. The new rate is [`BETA`] times that (the
//!   configured rate while too little was sent to measure). The floor is [`FLOOR`] requests/s.
//! - Refusals that do not follow the rate are noise, not congestion: when the share of 429s
//!   among the requests sent in the [`CHECK_MS`] after a cut (at the lowered rate) is still at
//!   least 3/4 of the share over the second that drew it, and at most [`NOISE_MAX`], the cut
//!   is undone and that share is tolerated from then on (a cut made before a share could be
//!   told, at the first 429s, is undone when the share after it is at most [`NOISE_MAX`]) (a cut then needs a share over the
//!   last second above it plus [`NOISE_MARGIN`]).
//! - The whole endpoint pauses only while it refuses everything: [`PAUSE_AFTER`] refusals in a
//!   row (no success or other answer between) over at least [`PAUSE_AFTER_MS`] pause it until
//!   the latest `Retry-After`; then one probe goes, and the others wait for its answer.
//! - Recovery: below the rate that was last accepted, the rate closes the gap quickly (time
//!   constant [`RECOVER_MS`]); above it, it probes upwards by [`PROBE_GROWTH`] a second; after
//!   [`RAMP_AFTER_MS`] without a 429 it grows [`RAMP`]-fold a second (an endpoint that stopped
//!   refusing gets its rate back within seconds, even from the floor). It is
//!   lifted when it reaches the configured rate (or, with none, four times the accepted rate
//!   after [`LIFT_QUIET_MS`] without a 429).

use std::collections::VecDeque;

/// The new rate after a cut, as a share of the accepted rate.
pub const BETA: f64 = 0.85;
/// The adaptive rate never goes below this (requests/s).
pub const FLOOR: f64 = 0.5;
/// Refusals in a row (no success between) that pause the whole endpoint, once they have gone
/// on for [`PAUSE_AFTER_MS`]: an endpoint that refuses a run of requests but accepts others
/// is paced, not paused.
pub const PAUSE_AFTER: u32 = 4;
pub const PAUSE_AFTER_MS: f64 = 150.0;
/// Time constant of the return to the last accepted rate after a cut.
pub const RECOVER_MS: f64 = 250.0;
/// Growth a second above the last accepted rate.
pub const PROBE_GROWTH: f64 = 0.05;
/// After this long without a 429, the rate grows [`RAMP`]-fold a second.
pub const RAMP_AFTER_MS: f64 = 3000.0;
pub const RAMP: f64 = 3.0;
/// Refusals that do not follow the rate (their share did not fall after a cut) are tolerated
/// up to this share of the answers: the cut is undone, and later cuts need more than that
/// share plus [`NOISE_MARGIN`].
pub const NOISE_MAX: f64 = 0.15;
pub const NOISE_MARGIN: f64 = 0.05;
/// Requests sent this long after a cut tell whether it helped (their share of 429s).
const CHECK_MS: f64 = 250.0;
/// Answers to those requests needed to compare their share (so rates under 80/s never take
/// refusals for noise).
const CHECK_MIN_ANSWERS: u32 = 20;
/// Answers needed to tell a share of refusals.
const SHARE_MIN_ANSWERS: u32 = 10;
/// Without a configured rate, the adaptive one is lifted only after this long without a 429.
pub const LIFT_QUIET_MS: f64 = 10_000.0;
/// The share of refusals a cut tolerates: the rate after a cut is [`BETA`] times the accepted
/// rate divided by `1 - TOLERATED`.
pub const TOLERATED: f64 = 0.05;
/// Cuts closer together than this need most answers since the cut to be refusals.
const CUT_GAP_MS: f64 = 1000.0;
/// Turns of the adaptive rate a sender may take late, to catch up after being busy (a lane
/// leases its messages between turns): up to this much of the rate's past time is usable, so
/// a sender whose store calls take a few ms still sends at the rate, and an idle endpoint gets
/// a burst of at most this long's worth.
const SLACK_MS: f64 = 100.0;
/// A pause without `Retry-After` lasts this long.
const DEFAULT_WAIT_MS: f64 = 1000.0;
/// A probe that has not been answered in this long is taken as lost: another may go.
const PROBE_LOST_MS: f64 = 60_000.0;
/// Goodput is measured over this window, in buckets of `BUCKET_MS`.
const WINDOW_MS: f64 = 1000.0;
const BUCKET_MS: f64 = 100.0;

/// The right to send one request, to be handed back with its answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ticket {
    seq: u64,
    probe: bool,
    /// Sent within [`CHECK_MS`] after the last cut, at the lowered rate.
    fresh: bool,
}

/// What [`Pace::acquire`] says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Grant {
    /// Send now.
    Go(Ticket),
    /// Ask again at this moment (ms).
    WaitUntil(f64),
    /// A probe is out: ask again when an answer comes.
    WaitForAnswer,
}

/// The pace of one endpoint. See the module doc for the rule.
#[derive(Debug, Clone)]
pub struct Pace {
    configured: Option<f64>,
    /// Token bucket of the configured rate.
    tokens: f64,
    refilled_at: f64,
    /// The adaptive rate in force (requests/s), or None.
    rate: Option<f64>,
    /// The rate the endpoint accepted at the last cut.
    accepted: f64,
    next_slot: f64,
    grown_at: f64,
    seq: u64,
    /// Tickets up to this one were out when the rate was last cut.
    cut_seq: u64,
    cut_at: Option<f64>,
    answers_since_cut: u32,
    refusals_since_cut: u32,
    last_refusal_at: Option<f64>,
    refusals_in_a_row: u32,
    /// When the current run of refusals began.
    refusing_since: Option<f64>,
    paused_until: Option<f64>,
    /// After a pause: the probe's ticket and when it went.
    probe: Option<(u64, f64)>,
    probe_needed: bool,
    /// What happened per bucket over the last window.
    window: VecDeque<Bucket>,
    /// When sending started (goodput is measured over at most the time since).
    started_at: Option<f64>,
    /// The share of refusals that did not follow the rate (tolerated).
    noise: f64,
    /// The last cut, to undo if it did not help.
    last_cut: Option<LastCut>,
    /// Answers (and 429s among them) to the requests sent within [`CHECK_MS`] after it.
    check_answers: u32,
    check_refused: u32,
}

/// What a cut changed, and the share of refusals that drew it.
#[derive(Debug, Clone, Copy)]
struct LastCut {
    rate: Option<f64>,
    accepted: f64,
    /// None: too few answers to tell (such a cut is never undone).
    share: Option<f64>,
}

impl Pace {
    pub fn new(configured: Option<f64>) -> Pace {
        Pace {
            configured,
            tokens: configured.map_or(0.0, burst),
            refilled_at: 0.0,
            rate: None,
            accepted: 0.0,
            next_slot: 0.0,
            grown_at: 0.0,
            seq: 0,
            cut_seq: 0,
            cut_at: None,
            answers_since_cut: 0,
            refusals_since_cut: 0,
            last_refusal_at: None,
            refusals_in_a_row: 0,
            refusing_since: None,
            paused_until: None,
            probe: None,
            probe_needed: false,
            window: VecDeque::new(),
            started_at: None,
            noise: 0.0,
            last_cut: None,
            check_answers: 0,
            check_refused: 0,
        }
    }

    /// Is a rate in force (configured, adaptive, or a pause)? Unpaced endpoints may take as
    /// many messages at once as they have free slots.
    pub fn is_pacing(&self) -> bool {
        self.configured.is_some()
            || self.rate.is_some()
            || self.paused_until.is_some()
            || self.probe_needed
            || self.probe.is_some()
    }

    /// The adaptive rate in force, if the endpoint is being slowed down.
    pub fn current_rate(&self) -> Option<f64> {
        self.rate
    }

    /// The rate requests may go at now: the adaptive one, else the configured one.
    pub fn rate(&self) -> Option<f64> {
        self.rate.or(self.configured)
    }

    /// Until when the whole endpoint is paused (refusing everything), if it is.
    pub fn paused_until(&self) -> Option<f64> {
        self.paused_until
    }

    /// May a request go at `now`?
    pub fn acquire(&mut self, now: f64) -> Grant {
        self.started_at.get_or_insert(now);
        self.grow(now);
        if let Some(p) = self.paused_until {
            if now < p {
                return Grant::WaitUntil(p);
            }
            self.paused_until = None;
            self.probe_needed = true;
        }
        if let Some((_, sent)) = self.probe {
            if now - sent < PROBE_LOST_MS {
                return Grant::WaitForAnswer;
            }
            self.probe = None;
            self.probe_needed = true;
        }
        let mut at = now;
        if let Some(rate) = self.configured {
            self.tokens = (self.tokens + (now - self.refilled_at) * rate / 1000.0).min(burst(rate));
            self.refilled_at = now;
            if self.tokens < 1.0 {
                at = at.max(now + (1.0 - self.tokens) * 1000.0 / rate);
            }
        }
        if self.rate.is_some() {
            at = at.max(self.next_slot);
        }
        if at > now {
            return Grant::WaitUntil(at);
        }
        if self.configured.is_some() {
            self.tokens -= 1.0;
        }
        if let Some(rate) = self.rate {
            self.next_slot = self.next_slot.max(now - SLACK_MS) + 1000.0 / rate;
        }
        self.seq += 1;
        self.bucket(now).sent += 1;
        let probe = std::mem::take(&mut self.probe_needed);
        if probe {
            self.probe = Some((self.seq, now));
        }
        Grant::Go(Ticket {
            seq: self.seq,
            probe,
            fresh: self.is_fresh(now),
        })
    }

    /// A ticket for a request that did not wait for its turn (leased in bulk while no rate was
    /// in force).
    pub fn ticket(&mut self, now: f64) -> Ticket {
        self.started_at.get_or_insert(now);
        self.seq += 1;
        self.bucket(now).sent += 1;
        Ticket {
            seq: self.seq,
            probe: false,
            fresh: self.is_fresh(now),
        }
    }

    /// Is a request sent now one of those that tell whether the last cut helped?
    fn is_fresh(&self, now: f64) -> bool {
        self.last_cut.is_some() && self.cut_at.is_some_and(|c| now - c < CHECK_MS)
    }

    /// Count the answer to a request sent right after the last cut.
    fn check(&mut self, t: Ticket, refused: bool) {
        if t.fresh && t.seq > self.cut_seq {
            self.check_answers += 1;
            self.check_refused += u32::from(refused);
        }
    }

    /// The request of `t` was accepted.
    pub fn on_success(&mut self, t: Ticket, now: f64) {
        self.grow(now);
        self.check(t, false);
        self.refusals_in_a_row = 0;
        self.refusing_since = None;
        self.answers_since_cut += 1;
        if t.probe || self.probe.is_some_and(|(s, _)| s == t.seq) {
            self.probe = None;
        }
        self.bucket(now).accepted += 1;
    }

    /// The current bucket of the window (older ones dropped).
    fn bucket(&mut self, now: f64) -> &mut Bucket {
        let start = (now / BUCKET_MS).floor() * BUCKET_MS;
        while self
            .window
            .front()
            .is_some_and(|b| b.start < now - WINDOW_MS)
        {
            self.window.pop_front();
        }
        if self.window.back().is_none_or(|b| b.start != start) {
            self.window.push_back(Bucket {
                start,
                ..Bucket::default()
            });
        }
        self.window.back_mut().expect("just pushed")
    }

    /// The request of `t` was not made (its message was given back unsent, or its lease had
    /// lapsed): a probe it was is needed again, at the next turn.
    pub fn on_unused(&mut self, t: Ticket) {
        if t.probe || self.probe.is_some_and(|(s, _)| s == t.seq) {
            self.probe = None;
            self.probe_needed = true;
        }
    }

    /// The request of `t` got an answer that is neither a success nor a 429 (a 5xx, a
    /// timeout): the endpoint is not refusing with 429s, so a probe is over.
    pub fn on_other(&mut self, t: Ticket, _now: f64) {
        self.refusals_in_a_row = 0;
        self.refusing_since = None;
        if t.probe || self.probe.is_some_and(|(s, _)| s == t.seq) {
            self.probe = None;
        }
    }

    /// The request of `t` was refused with 429 (and `retry_after_ms`, if given). Returns how
    /// long that message waits before its next try.
    pub fn on_throttled(&mut self, t: Ticket, retry_after_ms: Option<u64>, now: f64) -> u64 {
        self.grow(now);
        let wait = retry_after_ms
            .map_or(DEFAULT_WAIT_MS, |ms| ms as f64)
            .max(1.0);
        self.refusals_in_a_row += 1;
        let since = *self.refusing_since.get_or_insert(now);
        self.answers_since_cut += 1;
        self.refusals_since_cut += 1;
        self.last_refusal_at = Some(now);
        self.bucket(now).refused += 1;
        self.check(t, true);
        let was_probe = t.probe || self.probe.is_some_and(|(s, _)| s == t.seq);
        let paused = self.paused_until.is_some();
        if was_probe || (self.refusals_in_a_row >= PAUSE_AFTER && now - since >= PAUSE_AFTER_MS) {
            // Refusing everything: pause the whole endpoint, then probe with one request.
            self.probe = None;
            let until = now + wait;
            self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
        }
        // A refused probe, or an answer that comes during a pause, only extends the pause:
        // what the endpoint accepted before it refused everything is still the best guess.
        if !was_probe && !paused && self.is_new_event(t, now) {
            self.congestion(now);
        }
        wait.round() as u64
    }

    fn is_new_event(&self, t: Ticket, now: f64) -> bool {
        if t.seq <= self.cut_seq {
            return false; // in flight at the last cut: the same event
        }
        match self.cut_at {
            None => true,
            Some(at) => {
                now - at >= CUT_GAP_MS
                    || (self.answers_since_cut >= 20
                        && self.refusals_since_cut * 2 >= self.answers_since_cut)
            }
        }
    }

    /// A new congestion event: cut the rate, unless the refusals are noise.
    fn congestion(&mut self, now: f64) {
        let share = self.share(now);
        if let Some(last) = self
            .last_cut
            .filter(|_| self.check_answers >= CHECK_MIN_ANSWERS)
        {
            let after = self.check_refused as f64 / self.check_answers as f64;
            // A cut made before there were answers enough to tell a share (the endpoint's
            // first 429s) is judged by the share after it alone.
            let before = last.share.unwrap_or(after);
            if after <= NOISE_MAX && after >= 0.75 * before {
                // Slowing down did not help: these refusals do not follow the rate.
                self.noise = self.noise.max(after);
                self.rate = last.rate;
                self.accepted = last.accepted;
                self.last_cut = None;
                self.mark_event(now);
                return;
            }
        }
        if share.is_some_and(|s| s <= self.noise + NOISE_MARGIN) {
            return;
        }
        let (rate, accepted) = (self.rate, self.accepted);
        if self.cut(now) {
            self.last_cut = Some(LastCut {
                rate,
                accepted,
                share,
            });
        }
    }

    /// The share of 429s among the answers of the last second, if there were enough.
    fn share(&self, now: f64) -> Option<f64> {
        let (accepted, refused) = self
            .window
            .iter()
            .filter(|b| b.start >= now - WINDOW_MS)
            .fold((0, 0), |(a, r), b| (a + b.accepted, r + b.refused));
        (accepted + refused >= SHARE_MIN_ANSWERS)
            .then(|| refused as f64 / (accepted + refused) as f64)
    }

    /// Later answers to requests out now belong to this event.
    fn mark_event(&mut self, now: f64) {
        self.cut_seq = self.seq;
        self.cut_at = Some(now);
        self.answers_since_cut = 0;
        self.refusals_since_cut = 0;
        self.check_answers = 0;
        self.check_refused = 0;
    }

    /// Cut the rate (see the module doc); false if there was nothing to cut from.
    fn cut(&mut self, now: f64) -> bool {
        let base = match (self.measure(now), self.rate.or(self.configured)) {
            // Nothing accepted at all: the pause handles an endpoint that refuses everything.
            (Some(0.0), _) => return false,
            // What the endpoint accepted, plus the share of refusals tolerated (occasional
            // 429s are no sign of capacity: cutting to the accepted share alone would ratchet
            // the rate down a little more at every cut), never above the rate in force.
            (Some(accepted), r) => {
                let capacity = accepted / (1.0 - TOLERATED);
                r.map_or(capacity, |r| r.min(capacity))
            }
            // Too little sent to measure: from the configured rate, or no cut at all (the
            // message itself waits its Retry-After).
            (None, Some(r)) => r,
            (None, None) => return false,
        };
        self.accepted = base.max(FLOOR);
        let rate = (BETA * base).max(FLOOR);
        self.rate = Some(rate);
        self.next_slot = self.next_slot.max(now);
        self.mark_event(now);
        true
    }

    /// Requests the endpoint accepted a second over the last second, if enough time has passed
    /// to tell.
    fn measure(&self, now: f64) -> Option<f64> {
        let span = (now - self.started_at?).min(WINDOW_MS);
        if span < 2.0 * BUCKET_MS {
            return None;
        }
        let accepted: u32 = self
            .window
            .iter()
            .filter(|b| b.start >= now - WINDOW_MS)
            .map(|b| b.accepted)
            .sum();
        Some(accepted as f64 * 1000.0 / span)
    }

    fn grow(&mut self, now: f64) {
        let dt = (now - self.grown_at).max(0.0);
        self.grown_at = now;
        let Some(r) = self.rate else {
            return;
        };
        if dt == 0.0 || self.paused_until.is_some() {
            return;
        }
        let quiet_ms = self.last_refusal_at.map_or(f64::INFINITY, |at| now - at);
        let r = if quiet_ms >= RAMP_AFTER_MS {
            // The endpoint stopped refusing a while ago: get the rate back within seconds.
            r * RAMP.powf(dt / 1000.0)
        } else if r < self.accepted {
            self.accepted - (self.accepted - r) * (-dt / RECOVER_MS).exp()
        } else {
            r * (1.0 + PROBE_GROWTH).powf(dt / 1000.0) + 0.5 * dt / 1000.0
        };
        let quiet = quiet_ms >= LIFT_QUIET_MS;
        let lift = match self.configured {
            Some(c) => r >= c,
            None => quiet && r >= 4.0 * self.accepted,
        };
        self.rate = if lift { None } else { Some(r) };
    }
}

/// Requests sent, accepted and refused in one bucket of the window.
#[derive(Debug, Clone, Default)]
struct Bucket {
    start: f64,
    sent: u32,
    accepted: u32,
    refused: u32,
}

/// One second's worth of a configured rate (at least one request).
fn burst(rate: f64) -> f64 {
    rate.ceil().clamp(1.0, 10_000.0)
}

#[cfg(test)]
mod tests;
