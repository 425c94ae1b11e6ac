//! ReceiveMessage: a long poll through the engine, with the system attributes and message
//! attributes asked for (`All`, names, `prefix.*`), their digests, and FIFO's
//! `ReceiveRequestAttemptId` (a retried receive within 5 minutes gets the same answer).

use serde_json::{json, Map, Value};
use sluice_engine::{Delivery, ReceiveOptions};

use super::attrs::{self, SqsAttribute};
use super::input::{in_range, opt_int, opt_str, str_list};
use super::md5;
use super::queue_attrs::unknown_attribute;
use super::{Ctx, SqsError};

type R = Result<Value, SqsError>;

const MESSAGE_SYSTEM_ATTRIBUTES: &[&str] = &[
    "All",
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
];

pub async fn receive_message(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let max = match opt_int(input, "MaxNumberOfMessages")? {
        Some(n) => in_range(
            "MaxNumberOfMessages",
            n,
            1,
            10,
            "Must be between 1 and 10, if provided.",
        )? as usize,
        None => 1,
    };
    let wait = match opt_int(input, "WaitTimeSeconds")? {
        Some(w) => Some(in_range(
            "WaitTimeSeconds",
            w,
            0,
            20,
            "Must be >= 0 and <= 20, if provided.",
        )?),
        None => None,
    };
    let visibility = match opt_int(input, "VisibilityTimeout")? {
        Some(v) => Some(in_range(
            "VisibilityTimeout",
            v,
            0,
            43_200,
            "Must be >= 0 and <= 43200, if provided.",
        )?),
        None => None,
    };
    // A retried receive (same ReceiveRequestAttemptId within 5 minutes) gets the same answer.
    let attempt = opt_str(input, "ReceiveRequestAttemptId")
        .filter(|_| q.ends_with(".fifo"))
        .map(|a| format!("{q}\u{0}{a}"));
    if let Some(key) = &attempt {
        let now = c.engine.now();
        let mut cache = c.sqs.attempts.lock();
        cache.retain(|_, (until, _)| *until > now);
        if let Some((_, answer)) = cache.get(key) {
            return Ok(answer.clone());
        }
    }
    let mut system_wanted = str_list(input, "AttributeNames");
    system_wanted.extend(str_list(input, "MessageSystemAttributeNames"));
    for n in &system_wanted {
        if !MESSAGE_SYSTEM_ATTRIBUTES.contains(&n.as_str()) && n != "All" {
            return Err(unknown_attribute(n));
        }
    }
    let wanted = Wanted {
        all_system: system_wanted.iter().any(|n| n == "All"),
        system: system_wanted,
        user: str_list(input, "MessageAttributeNames"),
    };
    let got = c
        .engine
        .receive(
            &q,
            ReceiveOptions {
                max_messages: max,
                wait_seconds: wait,
                visibility_timeout_seconds: visibility,
            },
        )
        .await?;
    let messages: Vec<Value> = got
        .iter()
        .map(|d| message_json(c, &q, d, &wanted))
        .collect();
    let answer = if messages.is_empty() {
        json!({})
    } else {
        json!({"Messages": messages})
    };
    if let Some(key) = attempt {
        if !messages_empty(&answer) {
            // SQS keeps a ReceiveRequestAttemptId for a fixed 5 minutes, whatever the queue's
            // deduplication window.
            let until =
                c.engine.now() + sluice_engine::limits::DEDUP_WINDOW_DEFAULT_S as i64 * 1000;
            c.sqs.attempts.lock().insert(key, (until, answer.clone()));
        }
    }
    Ok(answer)
}

fn messages_empty(answer: &Value) -> bool {
    answer
        .get("Messages")
        .and_then(|m| m.as_array())
        .is_none_or(|m| m.is_empty())
}

/// The attributes a receive asked for.
struct Wanted {
    /// System attributes by name (`AttributeNames`, `MessageSystemAttributeNames`).
    system: Vec<String>,
    all_system: bool,
    /// Message attributes: names, `prefix.*` or `All` (`MessageAttributeNames`).
    user: Vec<String>,
}

/// One received message in SQS's shape, with the attributes asked for and their digests.
fn message_json(c: &Ctx<'_>, q: &str, d: &Delivery, wanted: &Wanted) -> Value {
    let m = &d.message;
    let body = String::from_utf8_lossy(&m.body).into_owned();
    let (user, system) = attrs::from_engine(&m.attributes);
    let mut out = Map::new();
    out.insert("MessageId".into(), json!(m.id.to_string()));
    out.insert(
        "ReceiptHandle".into(),
        json!(c.engine.receipt(q, &d.receipt)),
    );
    out.insert("MD5OfBody".into(), json!(md5::of_body(body.as_bytes())));
    out.insert("Body".into(), json!(body));
    let mut sys = Map::new();
    let want = |n: &str| wanted.all_system || wanted.system.iter().any(|w| w == n);
    if want("SenderId") {
        sys.insert("SenderId".into(), json!(super::ACCOUNT));
    }
    if want("SentTimestamp") {
        sys.insert("SentTimestamp".into(), json!(m.enqueued_at.to_string()));
    }
    if want("ApproximateReceiveCount") {
        sys.insert(
            "ApproximateReceiveCount".into(),
            json!(m.receive_count.to_string()),
        );
    }
    if want("ApproximateFirstReceiveTimestamp") {
        sys.insert(
            "ApproximateFirstReceiveTimestamp".into(),
            json!(m.first_received_at.unwrap_or(m.enqueued_at).to_string()),
        );
    }
    if want("DeadLetterQueueSourceArn") {
        if let Some(src) = &m.dead_letter_source {
            sys.insert("DeadLetterQueueSourceArn".into(), json!(c.arn(src)));
        }
    }
    for (k, v) in &system {
        if want(k) {
            sys.insert(k.clone(), json!(v));
        }
    }
    // Standard queues too: there a group means fair queues (turns between groups).
    if want("MessageGroupId") {
        if let Some(g) = &m.group {
            sys.insert("MessageGroupId".into(), json!(g));
        }
    }
    if q.ends_with(".fifo") {
        if want("MessageDeduplicationId") {
            if let Some(d) = &m.dedup_id {
                sys.insert("MessageDeduplicationId".into(), json!(d));
            }
        }
        if want("SequenceNumber") {
            sys.insert("SequenceNumber".into(), json!(m.sequence_number()));
        }
    }
    if !sys.is_empty() {
        out.insert("Attributes".into(), Value::Object(sys));
    }
    let chosen: Vec<(String, SqsAttribute)> = user
        .into_iter()
        .filter(|(n, _)| attrs::wanted(&wanted.user, n))
        .collect();
    if let Some(d) = md5::of_attributes(&chosen) {
        out.insert("MD5OfMessageAttributes".into(), json!(d));
        out.insert(
            "MessageAttributes".into(),
            Value::Object(
                chosen
                    .iter()
                    .map(|(n, a)| (n.clone(), a.to_json()))
                    .collect(),
            ),
        );
    }
    Value::Object(out)
}
