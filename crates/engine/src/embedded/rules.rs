//! The queue rules that need the embedded index, side by side with the same rules in Lua
//! (`redis_store/prelude.lua`), under the same names: `maintain` (due delays become ready,
//! expired leases return or are dead-lettered), `dead_letter_if_over_limit`,
//! `enforce_retention`, `expire` (time to live), `lookup_lease`/`take_lease` (receipt checks)
//! and `next_ready` (the next message a receive may take: priority, group turns and limits,
//! FIFO group locks).

use crate::clock::Millis;
use crate::error::EngineError;
use crate::model::{OnExpire, Receipt};

use super::log::Append;
use super::record::Record;
use super::state::{Entry, Leased, QState, State};

/// Housekeeping of one queue at `now`: due delays become ready, expired leases return (or go to
/// the dead-letter queue once over `max_receives`), messages whose time to live ended leave
/// (`expire`). Returns whether anything became ready.
pub(super) fn maintain(st: &mut State, qid: u32, now: Millis, ap: &mut Append<'_>) -> bool {
    let Some(q) = st.queues.get_mut(&qid) else {
        return false;
    };
    let mut became_ready = false;
    while let Some((_, e)) = q.delayed.pop_due(now) {
        if q.front_when_due.remove(&e.id()) {
            q.ready.push_front(e);
        } else {
            q.put_back(e);
        }
        became_ready = true;
    }
    let mut returned: Vec<Entry> = Vec::new();
    while let Some(&(at, id)) = q.leases.first() {
        if at > now {
            break;
        }
        q.leases.pop_first();
        if let Some(l) = q.inflight.remove(&id) {
            q.unlock_group(l.entry.group);
            returned.push(l.entry);
        }
    }
    q.stats.visibility_timeouts += returned.len() as u64;
    for e in returned {
        if !dead_letter_if_over_limit(st, qid, e, ap) {
            st.queues.get_mut(&qid).expect("queue").put_back(e);
            became_ready = true;
        }
    }
    let q = st.queues.get_mut(&qid).expect("queue");
    while let Some(&(at, g)) = q.rate_waits.first() {
        if at > now {
            break;
        }
        q.rate_waits.pop_first();
        q.ready.unpark(g);
        became_ready = true;
    }
    let ended = q.ready.take_expired(now);
    expire(st, qid, ended, ap);
    became_ready
}

/// The time-to-live rule: messages whose `expires_at` passed are never delivered; each is
/// dropped or moved to the dead-letter queue (`QueueConfig::on_expire`), counted in
/// `expired`, and logged (a Settle of kind 7, or kind 8 beside the Move) so a restart agrees.
pub(super) fn expire(st: &mut State, qid: u32, ended: Vec<Entry>, ap: &mut Append<'_>) {
    if ended.is_empty() {
        return;
    }
    let q = st.queues.get_mut(&qid).expect("queue");
    q.stats.expired += ended.len() as u64;
    let dlq = match q.info.config.on_expire {
        OnExpire::DeadLetter => q
            .info
            .config
            .dead_letter_queue
            .as_ref()
            .and_then(|n| st.names.get(n))
            .copied(),
        OnExpire::Drop => None,
    };
    for e in ended {
        let how = if dlq.is_some() { 8 } else { 7 };
        ap.push(40, |buf| {
            Record::Settle {
                queue: qid,
                id: e.id(),
                how,
                visible_at: 0,
                tally: "",
            }
            .encode_frame(buf)
        });
        match dlq {
            Some(dlq) => move_to_dead_letters(st, qid, dlq, e, ap),
            None => st.removed(&e),
        }
    }
}

/// The dead-letter rule: a message returning to its queue after `max_receives` receives moves to
/// the queue's dead-letter queue instead. Returns true if it moved.
pub(super) fn dead_letter_if_over_limit(
    st: &mut State,
    qid: u32,
    e: Entry,
    ap: &mut Append<'_>,
) -> bool {
    let q = &st.queues[&qid];
    let (Some(max), Some(dlq_name)) =
        (q.info.config.max_receives, &q.info.config.dead_letter_queue)
    else {
        return false;
    };
    if e.receive_count < max {
        return false;
    }
    let Some(&dlq) = st.names.get(dlq_name) else {
        return false;
    };
    move_to_dead_letters(st, qid, dlq, e, ap);
    true
}

/// Move `e` from queue `qid` to its dead-letter queue `dlq` (logged as a Move). A dead letter
/// has no time to live: it waits there to be looked at or redriven.
fn move_to_dead_letters(st: &mut State, qid: u32, dlq: u32, mut e: Entry, ap: &mut Append<'_>) {
    ap.push(64, |buf| {
        Record::Move {
            queue: qid,
            id: e.id(),
            to: dlq,
            source: qid,
            reset: false,
        }
        .encode_frame(buf)
    });
    if e.source != 0 {
        if let Some(old) = st.queues.get_mut(&e.source) {
            old.stats.dead_lettered = old.stats.dead_lettered.saturating_sub(1);
        }
    }
    e.source = qid;
    e.expires_at = 0;
    let src = st.queues.get_mut(&qid).expect("queue");
    src.stats.dead_lettered += 1;
    src.stats.dead_lettered_total += 1;
    st.queues.get_mut(&dlq).expect("dlq").put_back(e);
}

/// Drop ready messages that outlived the retention period (those at the head of their lists;
/// a receive checks every message it takes, `next_ready`).
pub(super) fn enforce_retention(st: &mut State, qid: u32, now: Millis) {
    let Some(q) = st.queues.get_mut(&qid) else {
        return;
    };
    let keep_ms = q.info.config.retention_seconds as i64 * 1000;
    let dropped = q.ready.take_older(now - keep_ms);
    q.stats.expired += dropped.len() as u64;
    for e in &dropped {
        st.removed(e);
    }
}

pub(super) enum Lookup {
    Ok(Leased),
    Err(EngineError),
}

pub(super) fn lookup_lease(q: &QState, r: &Receipt, now: Millis) -> Lookup {
    match q.inflight.get(&r.id.0) {
        None => Lookup::Err(EngineError::MessageGone),
        Some(l) if l.entry.nonce != r.nonce => Lookup::Err(EngineError::StaleReceipt),
        Some(l) if l.lease_until <= now => Lookup::Err(EngineError::StaleReceipt),
        Some(l) => Lookup::Ok(*l),
    }
}

pub(super) fn take_lease(q: &mut QState, l: &Leased) {
    q.inflight.remove(&l.entry.id());
    q.leases.remove(&(l.lease_until, l.entry.id()));
    q.unlock_group(l.entry.group);
}

/// A standard queue's next message by priority and group turn, skipping (parking) groups at
/// `max_in_flight_per_group` or out of tokens under `group_rate_per_second` (those wait in
/// `rate_waits` for their next token; `maintain` lets them take turns again).
fn next_fair(q: &mut QState, now: Millis) -> Option<Entry> {
    let cap = q.info.config.max_in_flight_per_group;
    let rate = q.info.config.group_rate_per_second.map(f64::from);
    let mut starved = Vec::new();
    let e = {
        let (locked, buckets) = (&q.locked, &q.buckets);
        let mut full = |g: u32| {
            if cap.is_some_and(|c| locked.get(&g).is_some_and(|&n| n >= c)) {
                return true;
            }
            let Some(r) = rate else { return false };
            let tokens = bucket(buckets.get(&g), r, now);
            if tokens < 1.0 {
                starved.push((now + ((1.0 - tokens) * 1000.0 / r).ceil() as i64, g));
            }
            tokens < 1.0
        };
        q.ready.pop(&mut full)
    };
    q.rate_waits.extend(starved);
    let e = e?;
    if let (Some(r), true) = (rate, e.group != 0) {
        let tokens = bucket(q.buckets.get(&e.group), r, now);
        q.buckets.insert(e.group, (tokens - 1.0, now));
    }
    Some(e)
}

/// A group's tokens at `now` under `rate` a second (burst `rate`; a new group's bucket is full).
fn bucket(b: Option<&(f64, i64)>, rate: f64, now: Millis) -> f64 {
    match b {
        Some(&(tokens, at)) => (tokens + (now - at).max(0) as f64 * rate / 1000.0).min(rate),
        None => rate,
    }
}

/// Take the next message a receive may have (see `ready.rs`): on a standard queue by priority
/// and group turn, skipping groups at `max_in_flight_per_group`; on a FIFO queue the first
/// message whose group is not held by another consumer (`mine`: groups this receive already
/// holds, which it may keep taking from, in order; the scan is bounded). Messages past the
/// retention period are dropped on the way (into `old`).
pub(super) fn next_ready(
    q: &mut QState,
    mine: &mut Vec<u32>,
    now: Millis,
    old: &mut Vec<Entry>,
) -> Option<Entry> {
    let keep_ms = q.info.config.retention_seconds as i64 * 1000;
    loop {
        let e = if !q.fifo {
            next_fair(q, now)?
        } else {
            const SCAN_MAX: usize = 10_000;
            let e = q.ready.take_first(SCAN_MAX, |e| {
                e.group == 0 || !q.locked.contains_key(&e.group) || mine.contains(&e.group)
            })?;
            if !mine.contains(&e.group) {
                mine.push(e.group);
            }
            e
        };
        if e.enqueued_at + keep_ms <= now {
            q.stats.expired += 1;
            old.push(e);
            continue;
        }
        return Some(e);
    }
}
