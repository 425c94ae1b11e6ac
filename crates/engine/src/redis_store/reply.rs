//! Reading script replies: message ids in hex, a message's changing state
//! (`"receive_count,nonce,first_received_at,group_tag,enqueued_at,source"`), Redis values, and
//! the answer every per-queue script gives (`Reply`: status, woke, outbox, decrements, rest).

use redis::Value;

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::model::{Message, MessageId, MessageState};

use super::codec;

pub(super) fn hex(id: MessageId) -> String {
    format!("{:032x}", id.0)
}

pub(super) fn unhex(s: &[u8]) -> Result<MessageId> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| u128::from_str_radix(s, 16).ok())
        .map(MessageId)
        .ok_or_else(|| bad_reply("a message id"))
}

pub(super) fn bad_reply(what: &str) -> EngineError {
    EngineError::Storage(format!("redis: unexpected reply ({what})"))
}

pub(super) fn unavailable(e: redis::RedisError) -> EngineError {
    EngineError::StorageUnavailable(format!("redis: {e}"))
}

/// A message's changing part, as the scripts keep it.
pub(super) struct State {
    pub(super) receive_count: u32,
    pub(super) nonce: u32,
    pub(super) first_received_at: Millis,
    pub(super) enqueued_at: Millis,
    pub(super) source: String,
    pub(super) priority: u8,
    /// 0: no time to live.
    pub(super) expires_at: Millis,
}

/// `rc,nonce,first_received_at,group_tag,enqueued_at,source[;priority,expires_at]` (the
/// suffix only when either differs from its default; see `prelude.lua`).
pub(super) fn parse_state(b: &[u8]) -> Result<State> {
    let s = std::str::from_utf8(b).map_err(|_| bad_reply("state"))?;
    let (s, rules) = s.split_once(';').unwrap_or((s, ""));
    let (priority, expires_at) = match rules.split_once(',') {
        Some((p, x)) => (
            p.parse().map_err(|_| bad_reply("state"))?,
            x.parse().map_err(|_| bad_reply("state"))?,
        ),
        None => (crate::limits::PRIORITY_DEFAULT, 0),
    };
    let mut it = s.splitn(6, ',');
    let mut num = || -> Result<i64> {
        it.next()
            .and_then(|x| x.parse::<i64>().ok())
            .ok_or_else(|| bad_reply("state"))
    };
    let receive_count = num()? as u32;
    let nonce = num()? as u32;
    let first_received_at = num()?;
    let _group = num()?;
    let enqueued_at = num()?;
    Ok(State {
        receive_count,
        nonce,
        first_received_at,
        enqueued_at,
        source: it.next().unwrap_or_default().to_string(),
        priority,
        expires_at,
    })
}

// ---- reading script replies ----

pub(super) fn bytes(v: &Value) -> Result<&[u8]> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        _ => Err(bad_reply("a string")),
    }
}

pub(super) fn text(v: &Value) -> Result<&str> {
    std::str::from_utf8(bytes(v)?).map_err(|_| bad_reply("text"))
}

pub(super) fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Nil => Ok(0),
        _ => text(v)?
            .parse::<f64>()
            .map(|f| f as i64)
            .map_err(|_| bad_reply("a number")),
    }
}

pub(super) fn list(v: &Value) -> Result<&[Value]> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Nil => Ok(&[]),
        _ => Err(bad_reply("a list")),
    }
}

/// A script's answer: `{status, woke, outbox, decrements, rest...}`.
pub(super) struct Reply {
    pub(super) status: String,
    pub(super) woke: bool,
    pub(super) outbox: bool,
    pub(super) decrements: Vec<String>,
    pub(super) rest: Vec<Value>,
}

impl Reply {
    pub(super) fn parse(v: Value) -> Result<Reply> {
        let Value::Array(mut a) = v else {
            return Err(bad_reply("a script answer"));
        };
        if a.len() < 4 {
            return Err(bad_reply("a script answer"));
        }
        let rest = a.split_off(4);
        Ok(Reply {
            status: text(&a[0])?.to_string(),
            woke: int(&a[1])? == 1,
            outbox: int(&a[2])? == 1,
            decrements: list(&a[3])?
                .iter()
                .map(|v| text(v).map(str::to_string))
                .collect::<Result<_>>()?,
            rest,
        })
    }
    pub(super) fn get(&self, i: usize) -> Result<&Value> {
        self.rest.get(i).ok_or_else(|| bad_reply("a short answer"))
    }
}

/// A message as a script returned it (id, payload, state), with its receive nonce.
pub(super) fn message(
    id: &Value,
    payload: &Value,
    state: &Value,
    kind: MessageState,
    visible_at: Millis,
) -> Result<(Message, u32)> {
    let id = unhex(bytes(id)?)?;
    let p = codec::decode(bytes(payload)?).ok_or_else(|| bad_reply("a message payload"))?;
    let st = parse_state(bytes(state)?)?;
    Ok((
        Message {
            id,
            body: p.body,
            attributes: p.attributes,
            enqueued_at: st.enqueued_at,
            visible_at,
            receive_count: st.receive_count,
            first_received_at: (st.first_received_at != 0).then_some(st.first_received_at),
            dead_letter_source: (!st.source.is_empty()).then_some(st.source),
            state: kind,
            group: p.group,
            dedup_id: p.dedup_id,
            priority: st.priority,
            expires_at: (st.expires_at != 0).then_some(st.expires_at),
        },
        st.nonce,
    ))
}

/// Per-receipt answers of a script (`ok`, `gone`, `stale`) as engine results.
pub(super) fn receipt_results(v: &Value) -> Result<Vec<crate::model::ReceiptResult>> {
    list(v)?
        .iter()
        .map(|v| {
            Ok(match text(v)? {
                "ok" => Ok(()),
                "gone" => Err(EngineError::MessageGone),
                _ => Err(EngineError::StaleReceipt),
            })
        })
        .collect()
}
