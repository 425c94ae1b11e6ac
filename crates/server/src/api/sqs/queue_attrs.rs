//! Queue attributes: SQS's names, ranges and defaults, turned into an engine config patch
//! (`queue_patch`) and read back from the config (`values`). The attributes that mean nothing
//! to the engine (`Policy`, the KMS settings, `SqsManagedSseEnabled`, FIFO's
//! `DeduplicationScope` and `FifoThroughputLimit`) are validated here and kept in the queue's
//! `adapter_settings` under `sqs:NAME`, so they are stored with the queue, survive restarts,
//! and go when the queue goes.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sluice_engine::{QueueConfig, QueueConfigPatch, QueueInfo, QueueStats};

use super::error::SqsError;
use super::{name_of_arn, Ctx};

/// Every attribute GetQueueAttributes knows, in the order `All` lists them.
pub const QUEUE_ATTRIBUTES: &[&str] = &[
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
    "Policy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

/// The largest message SQS allows since its 2025 change, and its default for new queues.
pub const MAX_MESSAGE_BYTES: u32 = 1_048_576;
/// SQS's longest delay (queue attribute and per message).
pub const MAX_DELAY_S: i64 = 900;

/// The prefix of the SQS adapter's entries in a queue's `adapter_settings`.
const KEY: &str = "sqs:";
/// Attributes stored as given (after validation) in `adapter_settings`.
const STORED: &[&str] = &[
    "Policy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "DeduplicationScope",
    "FifoThroughputLimit",
];
/// Attributes that exist on FIFO queues only.
const FIFO_ONLY: &[&str] = &[
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

pub fn unknown_attribute(name: &str) -> SqsError {
    SqsError::new(
        "InvalidAttributeName",
        "InvalidAttributeName",
        format!("Unknown Attribute {name}."),
    )
}

fn invalid_attr(name: &str) -> SqsError {
    SqsError::new(
        "InvalidAttributeValue",
        "InvalidAttributeValue",
        format!("Invalid value for the parameter {name}."),
    )
}

fn invalid_attr_because(name: &str, reason: &str) -> SqsError {
    SqsError::new(
        "InvalidAttributeValue",
        "InvalidAttributeValue",
        format!("Invalid value for the parameter {name}. Reason: {reason}"),
    )
}

pub fn parse_bool_attr(name: &str, v: &str) -> Result<bool, SqsError> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid_attr(name)),
    }
}

pub fn attr_int(name: &str, v: &str, min: i64, max: i64) -> Result<u32, SqsError> {
    let n: i64 = v.trim().parse().map_err(|_| invalid_attr(name))?;
    if n < min || n > max {
        return Err(invalid_attr_because(
            name,
            &format!("must be between {min} and {max}."),
        ));
    }
    Ok(n as u32)
}

/// The largest `MaximumMessageSize` this server allows: SQS's 1 MiB, or less when the server's
/// `--max-message-bytes` is lower.
pub fn max_message_bytes(c: &Ctx<'_>) -> u32 {
    MAX_MESSAGE_BYTES.min(c.engine.options().max_message_bytes)
}

/// One stored attribute checked against SQS's rules; `Ok(None)` removes it.
fn stored_value(name: &str, v: &str, fifo: bool) -> Result<Option<String>, SqsError> {
    if FIFO_ONLY.contains(&name) && !fifo {
        return Err(unknown_attribute(name));
    }
    let v = v.trim();
    match name {
        "Policy" => {
            if v.is_empty() {
                return Ok(None);
            }
            match serde_json::from_str::<Value>(v) {
                Ok(Value::Object(_)) => Ok(Some(v.to_string())),
                _ => Err(invalid_attr_because(
                    name,
                    "the policy is not a valid JSON object.",
                )),
            }
        }
        "KmsMasterKeyId" => Ok((!v.is_empty()).then(|| v.to_string())),
        "KmsDataKeyReusePeriodSeconds" => {
            attr_int(name, v, 60, 86_400)?;
            Ok(Some(v.to_string()))
        }
        "SqsManagedSseEnabled" => Ok(Some(parse_bool_attr(name, v)?.to_string())),
        "DeduplicationScope" => match v {
            "messageGroup" | "queue" => Ok(Some(v.to_string())),
            _ => Err(invalid_attr_because(name, "must be messageGroup or queue.")),
        },
        "FifoThroughputLimit" => match v {
            "perQueue" | "perMessageGroupId" => Ok(Some(v.to_string())),
            _ => Err(invalid_attr_because(
                name,
                "must be perQueue or perMessageGroupId.",
            )),
        },
        _ => Err(unknown_attribute(name)),
    }
}

/// Queue attributes to a config patch. Returns the patch and whether FifoQueue=true was asked.
/// `base` is the queue's current config (for the stored attributes), or the defaults.
pub async fn queue_patch(
    c: &Ctx<'_>,
    queue: &str,
    base: &QueueConfig,
    attrs: &BTreeMap<String, String>,
) -> Result<(QueueConfigPatch, bool), SqsError> {
    let mut p = QueueConfigPatch::default();
    let mut fifo = false;
    let is_fifo = queue.ends_with(".fifo");
    let mut settings = base.adapter_settings.clone();
    for (k, v) in attrs {
        match k.as_str() {
            "VisibilityTimeout" => p.visibility_timeout_seconds = Some(attr_int(k, v, 0, 43_200)?),
            "DelaySeconds" => p.delay_seconds = Some(attr_int(k, v, 0, MAX_DELAY_S)?),
            "MessageRetentionPeriod" => p.retention_seconds = Some(attr_int(k, v, 60, 1_209_600)?),
            "MaximumMessageSize" => {
                p.max_message_bytes = Some(attr_int(k, v, 1024, max_message_bytes(c) as i64)?)
            }
            "ReceiveMessageWaitTimeSeconds" => {
                p.receive_wait_seconds = Some(attr_int(k, v, 0, 20)?)
            }
            "RedrivePolicy" => {
                let (max, dlq) = redrive_policy(c, queue, v).await?;
                p.max_receives = Some(max);
                p.dead_letter_queue = Some(dlq);
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
                if !is_fifo {
                    return Err(unknown_attribute(k));
                }
                p.content_based_deduplication = Some(parse_bool_attr(k, v)?)
            }
            k if STORED.contains(&k) => match stored_value(k, v, is_fifo)? {
                Some(v) => {
                    settings.insert(format!("{KEY}{k}"), v);
                }
                None => {
                    settings.remove(&format!("{KEY}{k}"));
                }
            },
            other => return Err(unknown_attribute(other)),
        }
    }
    if settings.get("sqs:FifoThroughputLimit").map(String::as_str) == Some("perMessageGroupId")
        && settings.get("sqs:DeduplicationScope").map(String::as_str) == Some("queue")
    {
        return Err(invalid_attr_because(
            "FifoThroughputLimit",
            "perMessageGroupId requires DeduplicationScope messageGroup.",
        ));
    }
    if settings != base.adapter_settings {
        p.adapter_settings = Some(settings);
    }
    Ok((p, fifo))
}

/// `RedrivePolicy`: `(maxReceiveCount, dead-letter queue)`, both None for an empty policy.
async fn redrive_policy(
    c: &Ctx<'_>,
    queue: &str,
    v: &str,
) -> Result<(Option<u32>, Option<String>), SqsError> {
    if v.trim().is_empty() {
        return Ok((None, None));
    }
    let bad = |why: &str| {
        SqsError::invalid(format!(
            "Value {v} for parameter RedrivePolicy is invalid. Reason: {why}"
        ))
    };
    let policy: Value =
        serde_json::from_str(v).map_err(|_| bad("Redrive policy is not a valid JSON map."))?;
    let arn = policy
        .get("deadLetterTargetArn")
        .and_then(|a| a.as_str())
        .ok_or_else(|| {
            bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
        })?;
    let max = match policy.get("maxReceiveCount") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad("Redrive policy does not contain mandatory attribute: maxReceiveCount."))?;
    if !(1..=1000).contains(&max) {
        return Err(bad(
            "Invalid value for maxReceiveCount: must be between 1 and 1000.",
        ));
    }
    let dlq = name_of_arn(arn).ok_or_else(|| bad("Invalid value for deadLetterTargetArn."))?;
    if dlq == queue {
        return Err(bad("Dead letter target cannot be the queue itself."));
    }
    if c.engine.queue_info(dlq).await.is_err() {
        return Err(bad("Dead letter target does not exist."));
    }
    if dlq.ends_with(".fifo") != queue.ends_with(".fifo") {
        return Err(bad(
            "Dead-letter target must be of the same type (standard or FIFO) as the source.",
        ));
    }
    Ok((Some(max as u32), Some(dlq.to_string())))
}

/// A stored attribute of the SQS adapter.
pub fn stored<'a>(cfg: &'a QueueConfig, name: &str) -> Option<&'a str> {
    cfg.adapter_settings
        .get(&format!("{KEY}{name}"))
        .map(String::as_str)
}

/// The value of attribute `name` for GetQueueAttributes (None: not shown for this queue).
pub fn value(c: &Ctx<'_>, name: &str, info: &QueueInfo, stats: &QueueStats) -> Option<String> {
    let cfg = &info.config;
    let q = info.name.as_str();
    let fifo = q.ends_with(".fifo");
    let kms = stored(cfg, "KmsMasterKeyId");
    match name {
        "ApproximateNumberOfMessages" => Some(stats.ready.to_string()),
        "ApproximateNumberOfMessagesNotVisible" => Some(stats.in_flight.to_string()),
        "ApproximateNumberOfMessagesDelayed" => Some(stats.delayed.to_string()),
        "CreatedTimestamp" => Some((info.created_at / 1000).to_string()),
        "LastModifiedTimestamp" => Some((info.updated_at / 1000).to_string()),
        "QueueArn" => Some(c.arn(q)),
        "VisibilityTimeout" => Some(cfg.visibility_timeout_seconds.to_string()),
        "MaximumMessageSize" => Some(cfg.max_message_bytes.to_string()),
        "MessageRetentionPeriod" => Some(cfg.retention_seconds.to_string()),
        "DelaySeconds" => Some(cfg.delay_seconds.to_string()),
        "ReceiveMessageWaitTimeSeconds" => Some(cfg.receive_wait_seconds.to_string()),
        "RedrivePolicy" => match (&cfg.dead_letter_queue, cfg.max_receives) {
            (Some(dlq), Some(max)) => {
                Some(json!({"deadLetterTargetArn": c.arn(dlq), "maxReceiveCount": max}).to_string())
            }
            _ => None,
        },
        "RedriveAllowPolicy" => cfg.redrive_allow_policy.clone(),
        "Policy" => stored(cfg, "Policy").map(str::to_string),
        "KmsMasterKeyId" => kms.map(str::to_string),
        "KmsDataKeyReusePeriodSeconds" => kms.map(|_| {
            stored(cfg, "KmsDataKeyReusePeriodSeconds")
                .unwrap_or("300")
                .to_string()
        }),
        // SQS-managed encryption is on by default for new queues, and off with a KMS key.
        "SqsManagedSseEnabled" => Some(
            match stored(cfg, "SqsManagedSseEnabled") {
                Some(v) => v == "true" && kms.is_none(),
                None => kms.is_none(),
            }
            .to_string(),
        ),
        "FifoQueue" => fifo.then(|| "true".to_string()),
        "ContentBasedDeduplication" => fifo.then(|| cfg.content_based_deduplication.to_string()),
        "DeduplicationScope" => fifo.then(|| {
            stored(cfg, "DeduplicationScope")
                .unwrap_or("queue")
                .to_string()
        }),
        "FifoThroughputLimit" => fifo.then(|| {
            stored(cfg, "FifoThroughputLimit")
                .unwrap_or("perQueue")
                .to_string()
        }),
        _ => None,
    }
}
