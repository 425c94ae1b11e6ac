//! One function per SQS action, over the JSON protocol's input and output shapes. Each one
//! validates as SQS does (same parameter names, limits and error codes), then calls the engine.

use std::collections::{BTreeMap, HashSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sluice_engine::{EngineError, Publish, QueueConfig, QueueConfigPatch, ReceiveOptions};

use super::attrs::{self, SqsAttribute};
use super::md5;
use super::{name_of_arn, Ctx, SqsError};

type R = Result<Value, SqsError>;

pub async fn dispatch(c: &Ctx<'_>, action: &str, input: &Value) -> R {
    match action {
        "CreateQueue" => create_queue(c, input).await,
        "GetQueueUrl" => get_queue_url(c, input).await,
        "ListQueues" => list_queues(c, input).await,
        "DeleteQueue" => delete_queue(c, input).await,
        "PurgeQueue" => purge_queue(c, input).await,
        "GetQueueAttributes" => get_queue_attributes(c, input).await,
        "SetQueueAttributes" => set_queue_attributes(c, input).await,
        "SendMessage" => send_message(c, input).await,
        "SendMessageBatch" => send_message_batch(c, input).await,
        "ReceiveMessage" => receive_message(c, input).await,
        "DeleteMessage" => delete_message(c, input).await,
        "DeleteMessageBatch" => delete_message_batch(c, input).await,
        "ChangeMessageVisibility" => change_visibility(c, input).await,
        "ChangeMessageVisibilityBatch" => change_visibility_batch(c, input).await,
        "TagQueue" => tag_queue(c, input).await,
        "UntagQueue" => untag_queue(c, input).await,
        "ListQueueTags" => list_queue_tags(c, input).await,
        "ListDeadLetterSourceQueues" => list_dead_letter_source_queues(c, input).await,
        "StartMessageMoveTask" => start_message_move_task(c, input).await,
        "ListMessageMoveTasks" => list_message_move_tasks(c, input).await,
        "CancelMessageMoveTask" => cancel_message_move_task(c, input).await,
        other => Err(SqsError::new(
            "InvalidAction",
            "InvalidAction",
            format!("The action {other} is not valid for this endpoint."),
        )),
    }
}

// ---------- parameter helpers ----------

fn opt_str<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(|x| x.as_str())
}

fn req_str<'a>(v: &'a Value, k: &str) -> Result<&'a str, SqsError> {
    match opt_str(v, k) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(SqsError::missing(k)),
    }
}

/// An integer parameter, given as a JSON number or (query protocol) a string.
fn opt_int(v: &Value, k: &str) -> Result<Option<i64>, SqsError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            SqsError::invalid(format!(
                "Value {n} for parameter {k} is invalid. Reason: must be an integer."
            ))
        }),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| {
            SqsError::invalid(format!(
                "Value {s} for parameter {k} is invalid. Reason: must be an integer."
            ))
        }),
        Some(other) => Err(SqsError::invalid(format!(
            "Value {other} for parameter {k} is invalid. Reason: must be an integer."
        ))),
    }
}

fn in_range(k: &str, v: i64, min: i64, max: i64, reason: &str) -> Result<u32, SqsError> {
    if v < min || v > max {
        return Err(SqsError::invalid(format!(
            "Value {v} for parameter {k} is invalid. Reason: {reason}"
        )));
    }
    Ok(v as u32)
}

fn str_list(v: &Value, k: &str) -> Vec<String> {
    match v.get(k) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(|s| s.to_string()))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn str_map(v: &Value, k: &str) -> BTreeMap<String, String> {
    v.get(k)
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn info(c: &Ctx<'_>, name: &str) -> Result<sluice_engine::QueueInfo, SqsError> {
    c.engine.queue_info(name).await.map_err(SqsError::from)
}

// ---------- queue attributes ----------

const QUEUE_ATTRIBUTES: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
    "VisibilityTimeout",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "SqsManagedSseEnabled",
];

/// Attributes accepted on create/set but not acted upon (encryption, access policy, FIFO
/// throughput tuning): sluice has no IAM or KMS.
const IGNORED_ATTRIBUTES: &[&str] = &[
    "Policy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

fn parse_bool_attr(name: &str, v: &str) -> Result<bool, SqsError> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid_attr(name)),
    }
}

fn invalid_attr(name: &str) -> SqsError {
    SqsError::new(
        "InvalidAttributeValue",
        "InvalidAttributeValue",
        format!("Invalid value for the parameter {name}."),
    )
}

fn attr_int(name: &str, v: &str, min: i64, max: i64) -> Result<u32, SqsError> {
    let n: i64 = v.trim().parse().map_err(|_| invalid_attr(name))?;
    if n < min || n > max {
        return Err(SqsError::new(
            "InvalidAttributeValue",
            "InvalidAttributeValue",
            format!(
                "Invalid value for the parameter {name}. Reason: must be between {min} and {max}."
            ),
        ));
    }
    Ok(n as u32)
}

/// Queue attributes to a config patch. Returns the patch and whether FifoQueue=true was asked.
async fn queue_patch(
    c: &Ctx<'_>,
    queue: &str,
    attrs: &BTreeMap<String, String>,
) -> Result<(QueueConfigPatch, bool), SqsError> {
    let mut p = QueueConfigPatch::default();
    let mut fifo = false;
    let ceiling = c.engine.options().max_message_bytes as i64;
    for (k, v) in attrs {
        match k.as_str() {
            "VisibilityTimeout" => p.visibility_timeout_seconds = Some(attr_int(k, v, 0, 43_200)?),
            "DelaySeconds" => {
                p.delay_seconds = Some(attr_int(
                    k,
                    v,
                    0,
                    sluice_engine::limits::DELAY_MAX_S as i64,
                )?)
            }
            "MessageRetentionPeriod" => p.retention_seconds = Some(attr_int(k, v, 60, 1_209_600)?),
            "MaximumMessageSize" => p.max_message_bytes = Some(attr_int(k, v, 1024, ceiling)?),
            "ReceiveMessageWaitTimeSeconds" => {
                p.receive_wait_seconds = Some(attr_int(k, v, 0, 20)?)
            }
            "RedrivePolicy" => {
                if v.trim().is_empty() {
                    p.max_receives = Some(None);
                    p.dead_letter_queue = Some(None);
                    continue;
                }
                let bad = |why: &str| {
                    SqsError::invalid(format!(
                        "Value {v} for parameter RedrivePolicy is invalid. Reason: {why}"
                    ))
                };
                let policy: Value = serde_json::from_str(v)
                    .map_err(|_| bad("Redrive policy is not a valid JSON map."))?;
                let arn = policy
                    .get("deadLetterTargetArn")
                    .and_then(|a| a.as_str())
                    .ok_or_else(|| bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn."))?;
                let max = match policy.get("maxReceiveCount") {
                    Some(Value::Number(n)) => n.as_i64(),
                    Some(Value::String(s)) => s.parse().ok(),
                    _ => None,
                }
                .ok_or_else(|| {
                    bad("Redrive policy does not contain mandatory attribute: maxReceiveCount.")
                })?;
                if !(1..=1000).contains(&max) {
                    return Err(bad(
                        "Invalid value for maxReceiveCount: must be between 1 and 1000.",
                    ));
                }
                let dlq = name_of_arn(arn)
                    .ok_or_else(|| bad("Invalid value for deadLetterTargetArn."))?;
                if dlq == queue {
                    return Err(bad("Dead letter target cannot be the queue itself."));
                }
                if c.engine.queue_info(dlq).await.is_err() {
                    return Err(bad("Dead letter target does not exist."));
                }
                if dlq.ends_with(".fifo") != queue.ends_with(".fifo") {
                    return Err(bad("Dead-letter target must be of the same type (standard or FIFO) as the source."));
                }
                p.max_receives = Some(Some(max as u32));
                p.dead_letter_queue = Some(Some(dlq.to_string()));
            }
            "RedriveAllowPolicy" => {
                let ok = v.trim().is_empty()
                    || serde_json::from_str::<Value>(v)
                        .ok()
                        .and_then(|p| {
                            p.get("redrivePermission")
                                .and_then(|r| r.as_str())
                                .map(|r| ["allowAll", "denyAll", "byQueue"].contains(&r))
                        })
                        .unwrap_or(false);
                if !ok {
                    return Err(SqsError::invalid(format!(
                        "Value {v} for parameter RedriveAllowPolicy is invalid. Reason: redrivePermission must be allowAll, denyAll or byQueue."
                    )));
                }
                p.redrive_allow_policy = Some((!v.trim().is_empty()).then(|| v.clone()));
            }
            "FifoQueue" => fifo = parse_bool_attr(k, v)?,
            "ContentBasedDeduplication" => {
                p.content_based_deduplication = Some(parse_bool_attr(k, v)?)
            }
            k if IGNORED_ATTRIBUTES.contains(&k) => {}
            other => {
                return Err(SqsError::new(
                    "InvalidAttributeName",
                    "InvalidAttributeName",
                    format!("Unknown Attribute {other}."),
                ))
            }
        }
    }
    Ok((p, fifo))
}

fn redrive_policy_json(c: &Ctx<'_>, cfg: &QueueConfig) -> Option<String> {
    match (&cfg.dead_letter_queue, cfg.max_receives) {
        (Some(dlq), Some(max)) => {
            Some(json!({"deadLetterTargetArn": c.arn(dlq), "maxReceiveCount": max}).to_string())
        }
        _ => None,
    }
}

// ---------- queues ----------

async fn create_queue(c: &Ctx<'_>, input: &Value) -> R {
    let name = req_str(input, "QueueName")?;
    if sluice_engine::validate_queue_name(name).is_err() {
        return Err(SqsError::invalid(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ));
    }
    let attributes = str_map(input, "Attributes");
    let tags = str_map(input, "tags");
    let (mut patch, fifo) = queue_patch(c, name, &attributes).await?;
    let is_fifo_name = name.ends_with(".fifo");
    if fifo != is_fifo_name {
        return Err(SqsError::invalid(if is_fifo_name {
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length. Set FifoQueue=true for a .fifo name."
        } else {
            "The name of a FIFO queue must end with the .fifo suffix."
        }));
    }
    if !fifo && patch.content_based_deduplication.is_some() {
        return Err(SqsError::new(
            "InvalidAttributeName",
            "InvalidAttributeName",
            "Unknown Attribute ContentBasedDeduplication.",
        ));
    }
    if let Ok(existing) = c.engine.queue_info(name).await {
        // Idempotent only with equal attributes: every attribute given must match.
        let wanted = patch.apply(&existing.config);
        if wanted != existing.config || (!tags.is_empty() && tags != existing.config.tags) {
            return Err(SqsError::new(
                "QueueNameExists",
                "QueueAlreadyExists",
                "A queue already exists with the same name and a different value for attribute(s).",
            ));
        }
        return Ok(json!({"QueueUrl": c.url(name)}));
    }
    if !tags.is_empty() {
        patch.tags = Some(tags);
    }
    c.engine.put_queue(name, patch).await?;
    Ok(json!({"QueueUrl": c.url(name)}))
}

async fn get_queue_url(c: &Ctx<'_>, input: &Value) -> R {
    let name = req_str(input, "QueueName")?;
    if sluice_engine::validate_queue_name(name).is_err() {
        return Err(SqsError::no_queue());
    }
    info(c, name).await?;
    Ok(json!({"QueueUrl": c.url(name)}))
}

/// Pagination tokens are the base64 of the last name returned.
async fn list_queues(c: &Ctx<'_>, input: &Value) -> R {
    let prefix = opt_str(input, "QueueNamePrefix").unwrap_or_default();
    let max = match opt_int(input, "MaxResults")? {
        Some(m) => Some(in_range("MaxResults", m, 1, 1000, "must be between 1 and 1000")? as usize),
        None => None,
    };
    let after = match opt_str(input, "NextToken") {
        Some(t) => Some(
            B64.decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| SqsError::invalid("Invalid NextToken value."))?,
        ),
        None => None,
    };
    let names: Vec<String> = c
        .engine
        .queue_infos()
        .await?
        .into_iter()
        .map(|q| q.name)
        .filter(|n| n.starts_with(prefix) && after.as_ref().is_none_or(|a| n > a))
        .filter(|n| c.principal.as_ref().is_none_or(|p| p.covers(n)))
        .collect();
    let limit = max.unwrap_or(1000);
    let page: Vec<&String> = names.iter().take(limit).collect();
    let mut out = Map::new();
    out.insert(
        "QueueUrls".into(),
        Value::Array(page.iter().map(|n| json!(c.url(n))).collect()),
    );
    if max.is_some() && names.len() > limit {
        out.insert(
            "NextToken".into(),
            json!(B64.encode(page.last().expect("non-empty page").as_bytes())),
        );
    }
    Ok(Value::Object(out))
}

async fn delete_queue(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    c.engine.delete_queue(&q).await?;
    Ok(json!({}))
}

async fn purge_queue(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    c.engine.purge(&q).await?;
    Ok(json!({}))
}

async fn get_queue_attributes(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    info(c, &q).await?;
    let mut names = str_list(input, "AttributeNames");
    if names.is_empty() {
        return Ok(json!({}));
    }
    for n in &names {
        if n != "All" && !QUEUE_ATTRIBUTES.contains(&n.as_str()) {
            return Err(SqsError::new(
                "InvalidAttributeName",
                "InvalidAttributeName",
                format!("Unknown Attribute {n}."),
            ));
        }
    }
    if names.iter().any(|n| n == "All") {
        names = QUEUE_ATTRIBUTES.iter().map(|s| s.to_string()).collect();
    }
    let (info, stats) = c.engine.get_queue(&q).await?;
    let cfg = &info.config;
    let fifo = q.ends_with(".fifo");
    let mut out = Map::new();
    for n in names {
        let v = match n.as_str() {
            "ApproximateNumberOfMessages" => Some(stats.ready.to_string()),
            "ApproximateNumberOfMessagesNotVisible" => Some(stats.in_flight.to_string()),
            "ApproximateNumberOfMessagesDelayed" => Some(stats.delayed.to_string()),
            "CreatedTimestamp" => Some((info.created_at / 1000).to_string()),
            "LastModifiedTimestamp" => Some((info.updated_at / 1000).to_string()),
            "QueueArn" => Some(c.arn(&q)),
            "VisibilityTimeout" => Some(cfg.visibility_timeout_seconds.to_string()),
            "MaximumMessageSize" => Some(cfg.max_message_bytes.to_string()),
            "MessageRetentionPeriod" => Some(cfg.retention_seconds.to_string()),
            "DelaySeconds" => Some(cfg.delay_seconds.to_string()),
            "ReceiveMessageWaitTimeSeconds" => Some(cfg.receive_wait_seconds.to_string()),
            "RedrivePolicy" => redrive_policy_json(c, cfg),
            "RedriveAllowPolicy" => cfg.redrive_allow_policy.clone(),
            "FifoQueue" => fifo.then(|| "true".to_string()),
            "ContentBasedDeduplication" => {
                fifo.then(|| cfg.content_based_deduplication.to_string())
            }
            "SqsManagedSseEnabled" => Some("false".to_string()),
            _ => None,
        };
        if let Some(v) = v {
            out.insert(n, json!(v));
        }
    }
    Ok(json!({"Attributes": out}))
}

async fn set_queue_attributes(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    info(c, &q).await?;
    let attributes = str_map(input, "Attributes");
    if !q.ends_with(".fifo") && attributes.contains_key("ContentBasedDeduplication") {
        return Err(SqsError::new(
            "InvalidAttributeName",
            "InvalidAttributeName",
            "Unknown Attribute ContentBasedDeduplication.",
        ));
    }
    let (patch, fifo) = queue_patch(c, &q, &attributes).await?;
    if attributes.contains_key("FifoQueue") && fifo != q.ends_with(".fifo") {
        return Err(SqsError::new(
            "InvalidAttributeName",
            "InvalidAttributeName",
            "Unknown Attribute FifoQueue.",
        ));
    }
    c.engine.put_queue(&q, patch).await?;
    Ok(json!({}))
}

// ---------- messages ----------

pub fn valid_body_chars(body: &str) -> bool {
    body.chars().all(|ch| {
        matches!(ch, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    })
}

/// A validated message of SendMessage or a batch entry.
struct Outgoing {
    group: Option<String>,
    dedup_id: Option<String>,
    body: String,
    attributes: Vec<(String, SqsAttribute)>,
    system: Vec<(String, String)>,
    delay: Option<u32>,
}

fn parse_message(
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
            sluice_engine::limits::DELAY_MAX_S as i64,
            &format!(
                "must be between 0 and {}",
                sluice_engine::limits::DELAY_MAX_S
            ),
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

fn sent_json(id: &str, m: &Outgoing) -> Map<String, Value> {
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

fn to_publish(m: &Outgoing) -> Publish {
    Publish {
        body: m.body.as_bytes().to_vec(),
        attributes: attrs::to_engine(&m.attributes, &m.system),
        delay_seconds: m.delay,
        group: m.group.clone(),
        dedup_id: m.dedup_id.clone(),
    }
}

async fn send_message(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let qi = info(c, &q).await?;
    let fifo = q.ends_with(".fifo");
    let m = parse_message(
        input,
        qi.config.max_message_bytes as usize,
        fifo,
        qi.config.content_based_deduplication,
    )?;
    let ids = c.engine.publish(&q, vec![to_publish(&m)]).await?;
    let mut out = sent_json(&ids[0].to_string(), &m);
    if fifo {
        out.insert("SequenceNumber".into(), json!(ids[0].0.to_string()));
    }
    Ok(Value::Object(out))
}

/// The batch rules shared by the three batch actions: 1-10 entries, distinct valid ids.
fn batch_entries(input: &Value, request_entry: &str) -> Result<Vec<Value>, SqsError> {
    let entries = input
        .get("Entries")
        .and_then(|e| e.as_array())
        .cloned()
        .unwrap_or_default();
    if entries.is_empty() {
        return Err(SqsError::new(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            format!("There should be at least one {request_entry} in the request."),
        ));
    }
    if entries.len() > 10 {
        return Err(SqsError::new(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!(
                "Maximum number of entries per request are 10. You have sent {}.",
                entries.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for e in &entries {
        let id = e.get("Id").and_then(|i| i.as_str()).unwrap_or_default();
        if id.is_empty()
            || id.len() > 80
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(SqsError::new(
                "InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id.to_string()) {
            return Err(SqsError::new(
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                format!("Id {id} repeated."),
            ));
        }
    }
    Ok(entries)
}

fn failed(id: &str, e: &SqsError) -> Value {
    json!({"Id": id, "SenderFault": e.sender, "Code": e.code, "Message": e.message})
}

async fn send_message_batch(c: &Ctx<'_>, input: &Value) -> R {
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
    if total > limit {
        return Err(SqsError::new(
            "BatchRequestTooLong",
            "AWS.SimpleQueueService.BatchRequestTooLong",
            format!(
                "Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes."
            ),
        ));
    }
    let mut ok: Vec<(String, Outgoing)> = Vec::new();
    let mut failures = Vec::new();
    for e in &entries {
        let id = e["Id"].as_str().unwrap_or_default().to_string();
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
            .publish(&q, ok.iter().map(|(_, m)| to_publish(m)).collect())
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

async fn receive_message(c: &Ctx<'_>, input: &Value) -> R {
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
            return Err(SqsError::new(
                "InvalidAttributeName",
                "InvalidAttributeName",
                format!("Unknown Attribute {n}."),
            ));
        }
    }
    let all_system = system_wanted.iter().any(|n| n == "All");
    let user_wanted = str_list(input, "MessageAttributeNames");
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
    let mut messages = Vec::with_capacity(got.len());
    for d in got {
        let m = &d.message;
        let body = String::from_utf8_lossy(&m.body).into_owned();
        let (user, system) = attrs::from_engine(&m.attributes);
        let mut out = Map::new();
        out.insert("MessageId".into(), json!(m.id.to_string()));
        out.insert("ReceiptHandle".into(), json!(d.receipt.encode()));
        out.insert("MD5OfBody".into(), json!(md5::of_body(body.as_bytes())));
        out.insert("Body".into(), json!(body));
        let mut sys = Map::new();
        let want = |n: &str| all_system || system_wanted.iter().any(|w| w == n);
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
        if q.ends_with(".fifo") {
            if want("MessageGroupId") {
                if let Some(g) = &m.group {
                    sys.insert("MessageGroupId".into(), json!(g));
                }
            }
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
            .filter(|(n, _)| attrs::wanted(&user_wanted, n))
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
        messages.push(Value::Object(out));
    }
    let answer = if messages.is_empty() {
        json!({})
    } else {
        json!({"Messages": messages})
    };
    if let Some(key) = attempt {
        if !messages_empty(&answer) {
            let until = c.engine.now() + sluice_engine::limits::DEDUP_WINDOW_MS;
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

/// SQS deletes are idempotent: a stale receipt or a message already gone is not an error.
fn delete_outcome(handle: &str, r: Result<(), EngineError>) -> Result<(), SqsError> {
    match r {
        Ok(()) | Err(EngineError::StaleReceipt) | Err(EngineError::MessageGone) => Ok(()),
        Err(EngineError::InvalidReceipt) => Err(SqsError::receipt_invalid(handle)),
        Err(e) => Err(e.into()),
    }
}

async fn delete_message(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let handle = req_str(input, "ReceiptHandle")?;
    info(c, &q).await?;
    let r = c.engine.ack(&q, &[handle.to_string()]).await?;
    delete_outcome(handle, r.into_iter().next().expect("one result"))?;
    Ok(json!({}))
}

async fn delete_message_batch(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    info(c, &q).await?;
    let entries = batch_entries(input, "DeleteMessageBatchRequestEntry")?;
    let mut successful = Vec::new();
    let mut failures = Vec::new();
    let mut handles = Vec::new();
    let mut ids = Vec::new();
    for e in &entries {
        let id = e["Id"].as_str().unwrap_or_default().to_string();
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
        for ((id, h), r) in ids.iter().zip(&handles).zip(results) {
            match delete_outcome(h, r) {
                Ok(()) => successful.push(json!({"Id": id})),
                Err(e) => failures.push(failed(id, &e)),
            }
        }
    }
    Ok(json!({"Successful": successful, "Failed": failures}))
}

fn visibility_of(entry: &Value) -> Result<u32, SqsError> {
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

fn visibility_error(handle: &str, e: EngineError) -> SqsError {
    match e {
        EngineError::InvalidReceipt => SqsError::receipt_invalid(handle),
        other => other.into(),
    }
}

async fn change_visibility(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let handle = req_str(input, "ReceiptHandle")?;
    let timeout = visibility_of(input)?;
    info(c, &q).await?;
    c.engine
        .change_visibility(&q, handle, timeout)
        .await
        .map_err(|e| visibility_error(handle, e))?;
    Ok(json!({}))
}

async fn change_visibility_batch(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    info(c, &q).await?;
    let entries = batch_entries(input, "ChangeMessageVisibilityBatchRequestEntry")?;
    let mut successful = Vec::new();
    let mut failures = Vec::new();
    for e in &entries {
        let id = e["Id"].as_str().unwrap_or_default();
        let outcome = async {
            let handle = req_str(e, "ReceiptHandle")?;
            let timeout = visibility_of(e)?;
            c.engine
                .change_visibility(&q, handle, timeout)
                .await
                .map_err(|err| visibility_error(handle, err))
        }
        .await;
        match outcome {
            Ok(_) => successful.push(json!({"Id": id})),
            Err(err) => failures.push(failed(id, &err)),
        }
    }
    Ok(json!({"Successful": successful, "Failed": failures}))
}

// ---------- tags, dead-letter sources, move tasks ----------

async fn set_tags(c: &Ctx<'_>, q: &str, tags: BTreeMap<String, String>) -> R {
    let patch = QueueConfigPatch {
        tags: Some(tags),
        ..Default::default()
    };
    c.engine.put_queue(q, patch).await?;
    Ok(json!({}))
}

async fn tag_queue(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let mut tags = info(c, &q).await?.config.tags;
    let add = str_map(input, "Tags");
    if add.is_empty() {
        return Err(SqsError::missing("Tags"));
    }
    tags.extend(add);
    if tags.len() > sluice_engine::limits::TAGS_MAX {
        return Err(SqsError::invalid(format!(
            "Too many tags: a queue can have at most {} tags.",
            sluice_engine::limits::TAGS_MAX
        )));
    }
    set_tags(c, &q, tags).await
}

async fn untag_queue(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let mut tags = info(c, &q).await?.config.tags;
    let keys = str_list(input, "TagKeys");
    if keys.is_empty() {
        return Err(SqsError::missing("TagKeys"));
    }
    for k in keys {
        tags.remove(&k);
    }
    set_tags(c, &q, tags).await
}

async fn list_queue_tags(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let tags = info(c, &q).await?.config.tags;
    if tags.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({"Tags": tags}))
}

async fn list_dead_letter_source_queues(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    info(c, &q).await?;
    let urls: Vec<Value> = c
        .engine
        .queue_infos()
        .await?
        .into_iter()
        .filter(|i| i.config.dead_letter_queue.as_deref() == Some(q.as_str()))
        .map(|i| json!(c.url(&i.name)))
        .collect();
    Ok(json!({"queueUrls": urls}))
}

/// A finished redrive. sluice runs a move synchronously, so tasks are born COMPLETED.
#[derive(Clone, Debug)]
pub struct MoveTask {
    handle: String,
    source_arn: String,
    destination_arn: Option<String>,
    moved: u64,
    started_ms: i64,
    rate: Option<i64>,
}

async fn start_message_move_task(c: &Ctx<'_>, input: &Value) -> R {
    let source_arn = req_str(input, "SourceArn")?;
    let source =
        name_of_arn(source_arn).ok_or_else(|| SqsError::invalid("Invalid value for SourceArn."))?;
    if c.engine.queue_info(source).await.is_err() {
        return Err(SqsError::new(
            "ResourceNotFoundException",
            "ResourceNotFoundException",
            "The resource that you specified for the SourceArn parameter doesn't exist.",
        ));
    }
    let is_dlq = c
        .engine
        .queue_infos()
        .await?
        .iter()
        .any(|i| i.config.dead_letter_queue.as_deref() == Some(source));
    if !is_dlq {
        return Err(SqsError::invalid(
            "Source queue must be configured as a Dead Letter Queue.",
        ));
    }
    let destination_arn = opt_str(input, "DestinationArn").map(|s| s.to_string());
    if let Some(d) = &destination_arn {
        let dest =
            name_of_arn(d).ok_or_else(|| SqsError::invalid("Invalid value for DestinationArn."))?;
        if c.engine.queue_info(dest).await.is_err() {
            return Err(SqsError::new(
                "ResourceNotFoundException",
                "ResourceNotFoundException",
                "The resource that you specified for the DestinationArn parameter doesn't exist.",
            ));
        }
        return Err(SqsError::unsupported(
            "DestinationArn is not supported yet: sluice moves dead letters back to their source queues (omit DestinationArn).",
        ));
    }
    let rate = opt_int(input, "MaxNumberOfMessagesPerSecond")?;
    if let Some(r) = rate {
        in_range(
            "MaxNumberOfMessagesPerSecond",
            r,
            1,
            500,
            "must be between 1 and 500",
        )?;
    }
    let moved = c.engine.redrive(source, None).await?;
    let task = MoveTask {
        handle: B64.encode(format!(
            "{}:{}",
            sluice_engine::MessageId::new_v7(),
            source_arn
        )),
        source_arn: source_arn.to_string(),
        destination_arn,
        moved,
        started_ms: c.engine.now(),
        rate,
    };
    let handle = task.handle.clone();
    let mut tasks = c.sqs.tasks.lock();
    tasks.push(task);
    let excess = tasks.len().saturating_sub(1000);
    tasks.drain(..excess);
    Ok(json!({"TaskHandle": handle}))
}

async fn list_message_move_tasks(c: &Ctx<'_>, input: &Value) -> R {
    let source_arn = req_str(input, "SourceArn")?;
    let max = match opt_int(input, "MaxResults")? {
        Some(m) => in_range("MaxResults", m, 1, 10, "must be between 1 and 10")? as usize,
        None => 1,
    };
    let tasks = c.sqs.tasks.lock();
    let results: Vec<Value> = tasks
        .iter()
        .rev()
        .filter(|t| t.source_arn == source_arn)
        .take(max)
        .map(|t| {
            let mut o = json!({
                "TaskHandle": t.handle,
                "Status": "COMPLETED",
                "SourceArn": t.source_arn,
                "ApproximateNumberOfMessagesMoved": t.moved,
                "ApproximateNumberOfMessagesToMove": t.moved,
                "StartedTimestamp": t.started_ms,
            });
            if let Some(d) = &t.destination_arn {
                o["DestinationArn"] = json!(d);
            }
            if let Some(r) = t.rate {
                o["MaxNumberOfMessagesPerSecond"] = json!(r);
            }
            o
        })
        .collect();
    Ok(json!({"Results": results}))
}

async fn cancel_message_move_task(c: &Ctx<'_>, input: &Value) -> R {
    let handle = req_str(input, "TaskHandle")?;
    let known = c.sqs.tasks.lock().iter().any(|t| t.handle == handle);
    if known {
        // Moves run to completion synchronously: there is nothing running to cancel.
        return Err(SqsError::new(
            "ResourceNotFoundException",
            "ResourceNotFoundException",
            "The task has already completed and cannot be cancelled.",
        ));
    }
    Err(SqsError::new(
        "ResourceNotFoundException",
        "ResourceNotFoundException",
        "The specified task handle does not exist.",
    ))
}

/// The engine-free input checks, for the fuzz target (see `super::fuzz_request`).
pub(super) fn fuzz_inputs(input: &Value) {
    let limit = sluice_engine::limits::MESSAGE_BYTES_DEFAULT as usize;
    for (fifo, content) in [(false, false), (true, false), (true, true)] {
        if let Ok(m) = parse_message(input, limit, fifo, content) {
            assert!(m.body.len() <= limit);
            let _ = sent_json("id", &m);
            let _ = to_publish(&m);
        }
    }
    if let Ok(entries) = batch_entries(input, "SendMessageBatchRequestEntry") {
        assert!((1..=10).contains(&entries.len()));
        for e in &entries {
            let _ = parse_message(e, limit, true, true);
            let _ = visibility_of(e);
        }
    }
    let _ = opt_int(input, "WaitTimeSeconds");
    let _ = opt_int(input, "MaxNumberOfMessages");
    let _ = str_list(input, "AttributeNames");
    let _ = str_list(input, "TagKeys");
    let _ = str_map(input, "Tags");
    for (name, v) in str_map(input, "Attributes") {
        let _ = parse_bool_attr(&name, &v);
        let _ = attr_int(&name, &v, 0, 900);
    }
    if let Ok(attrs) = super::attrs::parse(input.get("MessageAttributes")) {
        let engine = super::attrs::to_engine(&attrs, &[]);
        let _ = super::attrs::from_engine(&engine);
    }
}
