//! Messages: receive with a lease, peek, and how a message is shown (publish is `publish.rs`).

use std::collections::BTreeMap;
use std::io::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sluice_engine::{rfc3339, Delivery, Engine, Message, MessageState, ReceiveOptions};
use utoipa::{IntoParams, ToSchema};

use super::json_answer;
use crate::api::body::{parse_json_or_default, QueryParams, RawBody};
use crate::api::error::{ApiResult, ErrorBody};
use crate::api::AppState;

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReceiveBody {
    /// 1-100, default 1.
    pub max_messages: Option<usize>,
    /// Long poll: 0-20 s; default: the queue's `receive_wait_seconds` (0 unless set).
    /// Answers as soon as a message is available.
    pub wait_seconds: Option<u32>,
    /// Lease length, 0-43200 s; default: the queue's visibility timeout.
    pub visibility_timeout_seconds: Option<u32>,
}

/// A message as delivered or peeked. `body` holds UTF-8 text; other bodies come as `body_base64`.
#[derive(Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Present on received messages: ack, nack and visibility calls take it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    pub receive_count: u32,
    pub attributes: BTreeMap<String, String>,
    pub enqueued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_received_at: Option<String>,
    /// For received messages, when the lease ends; for peeked ones, when the message is visible.
    pub visible_at: String,
    /// ready, delayed or in_flight.
    pub state: String,
    /// Set on dead letters: the queue the message came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_source: Option<String>,
    /// The message group: FIFO order and locking on a FIFO queue, turns on a standard one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_group_id: Option<String>,
    /// The deduplication id it was published with (FIFO queues: given, or the body's SHA-256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deduplication_id: Option<String>,
    /// 0-9, higher first (4 unless published with another).
    pub priority: u8,
    /// When its time to live ends: it is never delivered after this moment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

fn message_view(m: Message, receipt: Option<String>) -> MessageView {
    let (body, body_base64) = match String::from_utf8(m.body) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(B64.encode(e.as_bytes()))),
    };
    MessageView {
        id: m.id.to_string(),
        body,
        body_base64,
        receipt,
        receive_count: m.receive_count,
        attributes: m.attributes,
        enqueued_at: rfc3339(m.enqueued_at),
        first_received_at: m.first_received_at.map(rfc3339),
        visible_at: rfc3339(m.visible_at),
        state: state_name(m.state).into(),
        dead_letter_source: m.dead_letter_source,
        message_group_id: m.group,
        deduplication_id: m.dedup_id,
        priority: m.priority,
        expires_at: m.expires_at.map(rfc3339),
    }
}

/// A received message with the receipt its consumer settles it with (sealed for `queue`).
pub fn delivery_view(engine: &Engine, queue: &str, d: Delivery) -> MessageView {
    let receipt = engine.receipt(queue, &d.receipt);
    message_view(d.message, Some(receipt))
}

#[derive(Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<MessageView>,
}

/// Receive up to `max_messages` with a lease; long-polls up to `wait_seconds`.
#[utoipa::path(post, path = "/v1/queues/{queue}/receive", tag = "messages",
    params(("queue" = String, Path)),
    request_body(content = ReceiveBody, content_type = "application/json"),
    responses((status = 200, body = MessageList), (status = 404, body = ErrorBody)))]
pub async fn receive(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    body: RawBody,
) -> ApiResult<Response> {
    let r: ReceiveBody = parse_json_or_default(&body.bytes)?;
    let got = s
        .engine
        .receive(
            &queue,
            ReceiveOptions {
                max_messages: r.max_messages.unwrap_or(1),
                wait_seconds: r.wait_seconds,
                visibility_timeout_seconds: r.visibility_timeout_seconds,
            },
        )
        .await?;
    let received = got.into_iter().map(|d| {
        let receipt = s.engine.receipt(&queue, &d.receipt);
        (d.message, Some(receipt))
    });
    Ok(json_answer(StatusCode::OK, message_list_json(received)))
}

/// A `MessageList` written by hand, for the receive answer: the bytes serde would write for
/// the `message_view`s (a unit test compares them), without a view of strings per message, and
/// escaping only what can need it (the body, attributes, group, deduplication id and
/// dead-letter source; ids, receipts, base64 and moments cannot).
fn message_list_json(messages: impl Iterator<Item = (Message, Option<String>)>) -> Vec<u8> {
    use sluice_engine::json_out::{moment, plain, text};
    let mut out = Vec::with_capacity(512);
    let mut id = [0u8; 36];
    out.extend_from_slice(b"{\"messages\":[");
    for (i, (m, receipt)) in messages.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        plain(&mut out, m.id.encode(&mut id));
        match std::str::from_utf8(&m.body) {
            Ok(body) => {
                out.extend_from_slice(b",\"body\":");
                text(&mut out, body);
            }
            Err(_) => {
                out.extend_from_slice(b",\"body_base64\":");
                plain(&mut out, &B64.encode(&m.body));
            }
        }
        if let Some(r) = &receipt {
            out.extend_from_slice(b",\"receipt\":");
            plain(&mut out, r);
        }
        let _ = write!(
            out,
            ",\"receive_count\":{},\"attributes\":{{",
            m.receive_count
        );
        for (j, (k, v)) in m.attributes.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            text(&mut out, k);
            out.push(b':');
            text(&mut out, v);
        }
        out.extend_from_slice(b"},\"enqueued_at\":");
        moment(&mut out, m.enqueued_at);
        if let Some(t) = m.first_received_at {
            out.extend_from_slice(b",\"first_received_at\":");
            moment(&mut out, t);
        }
        out.extend_from_slice(b",\"visible_at\":");
        moment(&mut out, m.visible_at);
        out.extend_from_slice(b",\"state\":");
        plain(&mut out, state_name(m.state));
        for (key, value) in [
            (&b",\"dead_letter_source\":"[..], &m.dead_letter_source),
            (b",\"message_group_id\":", &m.group),
            (b",\"deduplication_id\":", &m.dedup_id),
        ] {
            if let Some(v) = value {
                out.extend_from_slice(key);
                text(&mut out, v);
            }
        }
        let _ = write!(out, ",\"priority\":{}", m.priority);
        if let Some(t) = m.expires_at {
            out.extend_from_slice(b",\"expires_at\":");
            moment(&mut out, t);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

fn state_name(state: MessageState) -> &'static str {
    match state {
        MessageState::Ready => "ready",
        MessageState::Delayed => "delayed",
        MessageState::InFlight => "in_flight",
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeekQuery {
    /// 1-1000, default 50.
    pub limit: Option<usize>,
}

/// Look at messages without receiving them: ready first, then delayed, then in flight.
#[utoipa::path(get, path = "/v1/queues/{queue}/messages", tag = "messages",
    params(("queue" = String, Path), PeekQuery),
    responses((status = 200, body = MessageList), (status = 404, body = ErrorBody)))]
pub async fn peek(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    QueryParams(q): QueryParams<PeekQuery>,
) -> ApiResult<Json<MessageList>> {
    let got = s.engine.peek(&queue, q.limit.unwrap_or(50)).await?;
    Ok(Json(MessageList {
        messages: got.into_iter().map(|m| message_view(m, None)).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::MessageId;

    fn message(n: u8) -> Message {
        Message {
            id: MessageId(0x0192_3456_789a_7bcd_8ef0_1234_5678_9abc + u128::from(n)),
            body: b"hello".to_vec(),
            attributes: BTreeMap::new(),
            enqueued_at: 1_796_599_788_896,
            visible_at: 1_796_599_818_896,
            receive_count: 1,
            first_received_at: Some(1_796_599_788_990),
            dead_letter_source: None,
            state: MessageState::InFlight,
            group: None,
            dedup_id: None,
            priority: 4,
            expires_at: None,
        }
    }

    #[test]
    fn the_receive_answer_is_what_serde_writes() {
        let mut every = message(1);
        every.body = "quote \" backslash \\ newline \n tab \t nul \u{0} é 😀 </script>"
            .as_bytes()
            .to_vec();
        every.attributes = [("k\"1", "v\n1"), ("plain", "value"), ("ünï", "\u{1f}")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        every.dead_letter_source = Some("orders\"dlq".into());
        every.group = Some("g-1".into());
        every.dedup_id = Some("d\\1".into());
        every.expires_at = Some(1_796_699_788_896);
        every.priority = 9;
        every.receive_count = 12;
        let mut binary = message(2);
        binary.body = vec![0xff, 0x00, 0x80, b'a'];
        binary.first_received_at = None;
        binary.state = MessageState::Ready;
        let mut empty = message(3);
        empty.body = Vec::new();
        empty.state = MessageState::Delayed;
        let cases: Vec<Vec<(Message, Option<String>)>> = vec![
            vec![],
            vec![(
                message(0),
                Some("AaJNsTVgcyWViG6sCq5q7gAAAAFAa8uBiELLggLkFEw".into()),
            )],
            vec![
                (every, Some("r1".into())),
                (binary, Some("r-2_".into())),
                (empty, None),
            ],
        ];
        for case in cases {
            let serde = serde_json::to_vec(&MessageList {
                messages: case
                    .iter()
                    .cloned()
                    .map(|(m, r)| message_view(m, r))
                    .collect(),
            })
            .unwrap();
            let ours = message_list_json(case.into_iter());
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }
}
