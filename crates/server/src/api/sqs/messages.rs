//! The message actions: SendMessage(Batch), ReceiveMessage, DeleteMessage(Batch) and
//! ChangeMessageVisibility(Batch). Each validates as SQS does (its limits: 900 s of delay,
//! 10 attributes, 1 MiB per message and per batch, FIFO's group and deduplication ids, per
//! entry in batches), then makes one engine call; the typed attributes are `attrs.rs`'s. A
//! `MessageGroupId` on a standard queue is AWS's fair queues: the engine's group, whose
//! receives take turns; `MessageDeduplicationId` stays FIFO-only, as in SQS.

use serde_json::{json, Map, Value};
use sluice_engine::{EngineError, IfMissing, Publish};

use super::attrs::{self, SqsAttribute};
use super::input::{
    batch_entries, entry_id, failed, in_range, opt_int, opt_str, req_str, valid_body_chars,
};
use super::md5;
use super::queue_attrs::{MAX_DELAY_S, MAX_MESSAGE_BYTES};
use super::queues::info;
use super::{Ctx, SqsError};

type R = Result<Value, SqsError>;

/// A validated message of SendMessage or a batch entry.
pub struct Outgoing {
    pub group: Option<String>,
    pub dedup_id: Option<String>,
    pub body: String,
    pub attributes: Vec<(String, SqsAttribute)>,
    pub system: Vec<(String, String)>,
    pub delay: Option<u32>,
}

pub fn parse_message(
    entry: &Value,
    limit: usize,
    fifo: bool,
    content_dedup: bool,
) -> Result<Outgoing, SqsError> {
    let body = match entry.get("MessageBody").and_then(|b| b.as_str()) {
        Some(b) if !b.is_empty() => b.to_string(),
        _ => return Err(SqsError::missing("MessageBody")),
    };
    if !valid_body_chars(&body) {
        return Err(SqsError::new(
            "InvalidMessageContents",
            "InvalidMessageContents",
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        ));
    }
    let delay = match opt_int(entry, "DelaySeconds")? {
        Some(d) => Some(in_range(
            "DelaySeconds",
            d,
            0,
            MAX_DELAY_S,
            &format!("DelaySeconds must be >= 0 and <= {MAX_DELAY_S}."),
        )?),
        None => None,
    };
    let group = opt_str(entry, "MessageGroupId").map(|s| s.to_string());
    let dedup_id = opt_str(entry, "MessageDeduplicationId").map(|s| s.to_string());
    if fifo {
        if group.is_none() {
            return Err(SqsError::missing("MessageGroupId"));
        }
        if dedup_id.is_none() && !content_dedup {
            return Err(SqsError::invalid(
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
            ));
        }
        if let Some(d) = delay.filter(|d| *d > 0) {
            return Err(SqsError::invalid(format!(
                "Value {d} for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type."
            )));
        }
    } else if dedup_id.is_some() {
        return Err(SqsError::invalid(
            "The request includes a parameter that is not valid for this queue type: MessageDeduplicationId.",
        ));
    }
    for (name, v) in [
        ("MessageGroupId", &group),
        ("MessageDeduplicationId", &dedup_id),
    ] {
        if let Some(v) = v {
            if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(SqsError::invalid(format!(
                    "Value {v} for parameter {name} is invalid. Reason: must be 1-128 alphanumeric or punctuation characters."
                )));
            }
        }
    }
    let attributes = attrs::parse(entry.get("MessageAttributes"))?;
    let mut system = Vec::new();
    if let Some(sys) = entry
        .get("MessageSystemAttributes")
        .and_then(|s| s.as_object())
    {
        for (k, v) in sys {
            if k != "AWSTraceHeader" {
                return Err(SqsError::invalid(format!(
                    "Message system attribute name '{k}' is invalid."
                )));
            }
            let s = v
                .get("StringValue")
                .and_then(|s| s.as_str())
                .unwrap_or_default();
            system.push((k.clone(), s.to_string()));
        }
    }
    let size = body.len() + attributes.iter().map(|(n, a)| a.size(n)).sum::<usize>();
    if size > limit {
        return Err(SqsError::invalid(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
        )));
    }
    Ok(Outgoing {
        group,
        dedup_id,
        body,
        attributes,
        system,
        delay,
    })
}

pub fn sent_json(id: &str, m: &Outgoing) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("MessageId".into(), json!(id));
    out.insert(
        "MD5OfMessageBody".into(),
        json!(md5::of_body(m.body.as_bytes())),
    );
    if let Some(d) = md5::of_attributes(&m.attributes) {
        out.insert("MD5OfMessageAttributes".into(), json!(d));
    }
    if let Some((_, trace)) = m.system.first() {
        let sys = [(
            "AWSTraceHeader".to_string(),
            SqsAttribute {
                data_type: "String".into(),
                string: Some(trace.clone()),
                binary: None,
            },
        )];
        if let Some(d) = md5::of_attributes(&sys) {
            out.insert("MD5OfMessageSystemAttributes".into(), json!(d));
        }
    }
    out
}

pub fn to_publish(m: &Outgoing) -> Publish {
    Publish {
        body: m.body.as_bytes().to_vec(),
        attributes: attrs::to_engine(&m.attributes, &m.system),
        delay_seconds: m.delay,
        group: m.group.clone(),
        dedup_id: m.dedup_id.clone(),
        ..Default::default()
    }
}

pub async fn send_message(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let qi = info(c, &q).await?;
    let fifo = q.ends_with(".fifo");
    let m = parse_message(
        input,
        qi.config.max_message_bytes as usize,
        fifo,
        qi.config.content_based_deduplication,
    )?;
    // SQS never creates a queue on send (and a queue deleted since `info` stays deleted).
    let ids = c
        .engine
        .publish_if(&q, vec![to_publish(&m)], IfMissing::Refuse)
        .await?;
    let mut out = sent_json(&ids[0].to_string(), &m);
    if fifo {
        out.insert("SequenceNumber".into(), json!(ids[0].0.to_string()));
    }
    Ok(Value::Object(out))
}

pub async fn send_message_batch(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let qi = info(c, &q).await?;
    let entries = batch_entries(input, "SendMessageBatchRequestEntry")?;
    let limit = qi.config.max_message_bytes as usize;
    let total: usize = entries
        .iter()
        .map(|e| {
            e.get("MessageBody")
                .and_then(|b| b.as_str())
                .map(|b| b.len())
                .unwrap_or(0)
                + attrs::parse(e.get("MessageAttributes"))
                    .map(|a| a.iter().map(|(n, x)| x.size(n)).sum::<usize>())
                    .unwrap_or(0)
        })
        .sum();
    if total > MAX_MESSAGE_BYTES as usize {
        return Err(SqsError::new(
            "BatchRequestTooLong",
            "AWS.SimpleQueueService.BatchRequestTooLong",
            format!(
                "Batch requests cannot be longer than {MAX_MESSAGE_BYTES} bytes. You have sent {total} bytes."
            ),
        ));
    }
    let mut ok: Vec<(String, Outgoing)> = Vec::new();
    let mut failures = Vec::new();
    for e in &entries {
        let id = entry_id(e);
        match parse_message(
            e,
            limit,
            q.ends_with(".fifo"),
            qi.config.content_based_deduplication,
        ) {
            Ok(m) => ok.push((id, m)),
            Err(err) => failures.push(failed(&id, &err)),
        }
    }
    let mut successful = Vec::new();
    if !ok.is_empty() {
        let ids = c
            .engine
            .publish_if(
                &q,
                ok.iter().map(|(_, m)| to_publish(m)).collect(),
                IfMissing::Refuse,
            )
            .await?;
        for ((id, m), mid) in ok.iter().zip(ids) {
            let mut s = sent_json(&mid.to_string(), m);
            s.insert("Id".into(), json!(id));
            if q.ends_with(".fifo") {
                s.insert("SequenceNumber".into(), json!(mid.0.to_string()));
            }
            successful.push(Value::Object(s));
        }
    }
    Ok(json!({"Successful": successful, "Failed": failures}))
}

/// As the API reference says: a receipt handle from an earlier receive (superseded by a later
/// one, or whose visibility timeout is over) "succeeds, but the message might not be deleted"
/// (sluice: is not deleted), and a message already deleted is not an error either.
fn delete_outcome(r: Result<(), EngineError>) -> Result<(), SqsError> {
    match r {
        Ok(()) | Err(EngineError::StaleReceipt) | Err(EngineError::MessageGone) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_message(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let handle = req_str(input, "ReceiptHandle")?;
    info(c, &q).await?;
    let r = c.engine.ack(&q, &[handle.to_string()]).await?;
    for r in r {
        delete_outcome(r)?;
    }
    Ok(json!({}))
}

pub async fn delete_message_batch(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    info(c, &q).await?;
    let entries = batch_entries(input, "DeleteMessageBatchRequestEntry")?;
    let mut successful = Vec::new();
    let mut failures = Vec::new();
    let mut handles = Vec::new();
    let mut ids = Vec::new();
    for e in &entries {
        let id = entry_id(e);
        match e.get("ReceiptHandle").and_then(|h| h.as_str()) {
            Some(h) if !h.is_empty() => {
                handles.push(h.to_string());
                ids.push(id);
            }
            _ => failures.push(failed(&id, &SqsError::missing("ReceiptHandle"))),
        }
    }
    if !handles.is_empty() {
        let results = c.engine.ack(&q, &handles).await?;
        for (id, r) in ids.iter().zip(results) {
            match delete_outcome(r) {
                Ok(()) => successful.push(json!({"Id": id})),
                Err(e) => failures.push(failed(id, &e)),
            }
        }
    }
    Ok(json!({"Successful": successful, "Failed": failures}))
}

pub fn visibility_of(entry: &Value) -> Result<u32, SqsError> {
    let v = opt_int(entry, "VisibilityTimeout")?
        .ok_or_else(|| SqsError::missing("VisibilityTimeout"))?;
    in_range(
        "VisibilityTimeout",
        v,
        0,
        43_200,
        "Must be >= 0 and <= 43200.",
    )
}

pub async fn change_visibility(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let handle = req_str(input, "ReceiptHandle")?;
    let timeout = visibility_of(input)?;
    info(c, &q).await?;
    c.engine.change_visibility(&q, handle, timeout).await?;
    Ok(json!({}))
}

pub async fn change_visibility_batch(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    info(c, &q).await?;
    let entries = batch_entries(input, "ChangeMessageVisibilityBatchRequestEntry")?;
    let mut successful = Vec::new();
    let mut failures = Vec::new();
    for e in &entries {
        let id = entry_id(e);
        let outcome = async {
            let handle = req_str(e, "ReceiptHandle")?;
            let timeout = visibility_of(e)?;
            Ok::<_, SqsError>(c.engine.change_visibility(&q, handle, timeout).await?)
        }
        .await;
        match outcome {
            Ok(_) => successful.push(json!({"Id": id})),
            Err(err) => failures.push(failed(&id, &err)),
        }
    }
    Ok(json!({"Successful": successful, "Failed": failures}))
}
