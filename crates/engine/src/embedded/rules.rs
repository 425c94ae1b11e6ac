//! The queue rules that need the embedded index, side by side with the same rules in Lua
//! (`redis_store/prelude.lua`), under the same names: `maintain` (due delays become ready,
//! expired leases return or are dead-lettered), `dead_letter_if_over_limit`,
//! `enforce_retention`, `lookup_lease`/`take_lease` (receipt checks) and `next_ready` (the next
//! message a receive may take; FIFO group locks).

use crate::clock::Millis;
use crate::error::EngineError;
use crate::model::Receipt;

use super::log::Append;
use super::record::Record;
use super::state::{Entry, Leased, QState, State};

/// Housekeeping of one queue at `now`: due delays become ready, expired leases return (or go to
/// the dead-letter queue once over `max_receives`). Returns whether anything became ready.
pub(super) fn maintain(st: &mut State, qid: u32, now: Millis, ap: &mut Append<'_>) -> bool {
    let Some(q) = st.queues.get_mut(&qid) else {
        return false;
    };
    let mut became_ready = false;
    while let Some((&(at, id), _)) = q.delayed.first_key_value() {
        if at > now {
            break;
        }
        let e = q.delayed.remove(&(at, id)).expect("present");
        if q.front_when_due.remove(&id) && !q.fifo {
            q.ready.push_front(e);
        } else {
            q.put_back(e);
        }
        became_ready = true;
    }
    let mut expired: Vec<Entry> = Vec::new();
    while let Some(&(at, id)) = q.leases.first() {
        if at > now {
            break;
        }
        q.leases.pop_first();
        if let Some(l) = q.inflight.remove(&id) {
            q.unlock_group(l.entry.group);
            expired.push(l.entry);
        }
    }
    if expired.is_empty() {
        return became_ready;
    }
    q.stats.visibility_timeouts += expired.len() as u64;
    for e in expired {
        if !dead_letter_if_over_limit(st, qid, e, ap) {
            st.queues.get_mut(&qid).expect("queue").put_back(e);
            became_ready = true;
        }
    }
    became_ready
}

/// The dead-letter rule: a message returning to its queue after `max_receives` receives moves to
/// the queue's dead-letter queue instead. Returns true if it moved.
pub(super) fn dead_letter_if_over_limit(
    st: &mut State,
    qid: u32,
    mut e: Entry,
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
    let src = st.queues.get_mut(&qid).expect("queue");
    src.stats.dead_lettered += 1;
    src.stats.dead_lettered_total += 1;
    st.queues.get_mut(&dlq).expect("dlq").put_back(e);
    true
}

/// Drop ready messages at the head of the queue that outlived the retention period.
pub(super) fn enforce_retention(st: &mut State, qid: u32, now: Millis) {
    let Some(q) = st.queues.get_mut(&qid) else {
        return;
    };
    let keep_ms = q.info.config.retention_seconds as i64 * 1000;
    let mut dropped = Vec::new();
    while let Some(e) = q.ready.front() {
        if e.enqueued_at + keep_ms > now {
            break;
        }
        dropped.push(q.ready.pop_front().expect("front"));
    }
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

/// Take the next message a receive may have: the head of the ready list, or on a FIFO queue
/// the first message whose group is not held by another consumer (`mine`: groups this receive
/// already holds, which it may keep taking from, in order). The scan is bounded.
pub(super) fn next_ready(q: &mut QState, mine: &mut Vec<u32>) -> Option<Entry> {
    if !q.fifo {
        return q.ready.pop_front();
    }
    const SCAN_MAX: usize = 10_000;
    let at = q.ready.iter().take(SCAN_MAX).position(|e| {
        e.group == 0 || !q.locked.contains_key(&e.group) || mine.contains(&e.group)
    })?;
    let e = q.ready.remove(at)?;
    if !mine.contains(&e.group) {
        mine.push(e.group);
    }
    Some(e)
}
