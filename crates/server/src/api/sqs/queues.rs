//! The queue actions: CreateQueue, GetQueueUrl, ListQueues, DeleteQueue, PurgeQueue,
//! Get/SetQueueAttributes, the tag actions and ListDeadLetterSourceQueues. Attribute names,
//! ranges and stored attributes are `queue_attrs.rs`'s; permissions are `permissions.rs`'s.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sluice_engine::{QueueConfig, QueueConfigPatch};

use super::input::{in_range, opt_int, opt_str, req_str, str_list, str_map};
use super::queue_attrs::{self, unknown_attribute, QUEUE_ATTRIBUTES};
use super::{Ctx, SqsError};

type R = Result<Value, SqsError>;

pub async fn info(c: &Ctx<'_>, name: &str) -> Result<sluice_engine::QueueInfo, SqsError> {
    c.engine.queue_info(name).await.map_err(SqsError::from)
}

pub async fn create_queue(c: &Ctx<'_>, input: &Value) -> R {
    let name = req_str(input, "QueueName")?;
    if sluice_engine::validate_queue_name(name).is_err() {
        return Err(SqsError::invalid(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ));
    }
    let attributes = str_map(input, "Attributes");
    let tags = str_map(input, "tags");
    check_tags(name, &tags)?;
    let existing = c.engine.queue_info(name).await.ok();
    let base = existing
        .as_ref()
        .map(|e| e.config.clone())
        .unwrap_or_default();
    let (mut patch, fifo) = queue_attrs::queue_patch(c, name, &base, &attributes).await?;
    let is_fifo_name = name.ends_with(".fifo");
    if fifo != is_fifo_name {
        return Err(SqsError::invalid(if is_fifo_name {
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length. Set FifoQueue=true for a .fifo name."
        } else {
            "The name of a FIFO queue must end with the .fifo suffix."
        }));
    }
    if let Some(existing) = existing {
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
    if patch.max_message_bytes.is_none() {
        // SQS's default since 2025 (the engine's own default is smaller).
        patch.max_message_bytes = Some(queue_attrs::max_message_bytes(c));
    }
    if !tags.is_empty() {
        patch.tags = Some(tags);
    }
    c.engine.put_queue(name, patch).await?;
    Ok(json!({"QueueUrl": c.url(name)}))
}

pub async fn get_queue_url(c: &Ctx<'_>, input: &Value) -> R {
    let name = req_str(input, "QueueName")?;
    if sluice_engine::validate_queue_name(name).is_err() {
        return Err(SqsError::no_queue());
    }
    info(c, name).await?;
    Ok(json!({"QueueUrl": c.url(name)}))
}

/// Pagination tokens are the base64 of the last name returned.
pub async fn list_queues(c: &Ctx<'_>, input: &Value) -> R {
    let prefix = opt_str(input, "QueueNamePrefix").unwrap_or_default();
    let names: Vec<String> = c
        .engine
        .queue_infos()
        .await?
        .into_iter()
        .map(|q| q.name)
        .filter(|n| n.starts_with(prefix))
        .filter(|n| c.principal.as_ref().is_none_or(|p| p.covers(n)))
        .collect();
    let (page, next) = paginate(input, &names)?;
    let mut out = Map::new();
    out.insert(
        "QueueUrls".into(),
        Value::Array(page.iter().map(|n| json!(c.url(n))).collect()),
    );
    if let Some(t) = next {
        out.insert("NextToken".into(), json!(t));
    }
    Ok(Value::Object(out))
}

/// One page of sorted `names` by `MaxResults` (1-1000) and `NextToken`; the token of the next
/// page only when `MaxResults` was given, as in SQS.
fn paginate<'a>(
    input: &Value,
    names: &'a [String],
) -> Result<(Vec<&'a String>, Option<String>), SqsError> {
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
    let rest: Vec<&String> = names
        .iter()
        .filter(|n| after.as_ref().is_none_or(|a| *n > a))
        .collect();
    let limit = max.unwrap_or(1000);
    let page: Vec<&String> = rest.iter().take(limit).copied().collect();
    let next = (max.is_some() && rest.len() > limit)
        .then(|| page.last().map(|l| B64.encode(l.as_bytes())))
        .flatten();
    Ok((page, next))
}

pub async fn delete_queue(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    c.engine.delete_queue(&q).await?;
    c.sqs.purges.lock().remove(&q);
    Ok(json!({}))
}

/// One purge per queue per `--sqs-purge-interval-seconds` (60 s, as SQS).
pub async fn purge_queue(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    info(c, &q).await?;
    let now = c.engine.now();
    let window = c.sqs.purge_interval_ms;
    {
        let mut purges = c.sqs.purges.lock();
        purges.retain(|_, at| now - *at < window);
        if window > 0 && purges.contains_key(&q) {
            return Err(SqsError::new(
                "PurgeQueueInProgress",
                "AWS.SimpleQueueService.PurgeQueueInProgress",
                format!(
                    "Only one PurgeQueue operation on {q} is allowed every {} seconds.",
                    window / 1000
                ),
            ));
        }
        purges.insert(q.clone(), now);
    }
    c.engine.purge(&q).await?;
    Ok(json!({}))
}

pub async fn get_queue_attributes(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    info(c, &q).await?;
    let mut names = str_list(input, "AttributeNames");
    if names.is_empty() {
        return Ok(json!({}));
    }
    if let Some(n) = names
        .iter()
        .find(|n| *n != "All" && !QUEUE_ATTRIBUTES.contains(&n.as_str()))
    {
        return Err(unknown_attribute(n));
    }
    if names.iter().any(|n| n == "All") {
        names = QUEUE_ATTRIBUTES.iter().map(|s| s.to_string()).collect();
    }
    let (info, stats) = c.engine.get_queue(&q).await?;
    let mut out = Map::new();
    for n in names {
        if let Some(v) = queue_attrs::value(c, &n, &info, &stats) {
            out.insert(n, json!(v));
        }
    }
    Ok(json!({"Attributes": out}))
}

pub async fn set_queue_attributes(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let current = info(c, &q).await?;
    let attributes = str_map(input, "Attributes");
    let (patch, fifo) = queue_attrs::queue_patch(c, &q, &current.config, &attributes).await?;
    if attributes.contains_key("FifoQueue") && fifo != q.ends_with(".fifo") {
        return Err(unknown_attribute("FifoQueue"));
    }
    c.engine.put_queue(&q, patch).await?;
    Ok(json!({}))
}

// ---------- tags ----------

/// SQS's tag rules: keys 1-128 characters, values at most 256.
fn check_tags(queue: &str, tags: &BTreeMap<String, String>) -> Result<(), SqsError> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(SqsError::invalid(
                "Tag keys must be between 1 and 128 characters in length.",
            ));
        }
        if v.chars().count() > 256 {
            return Err(SqsError::invalid(
                "Tag values must be less than 256 characters in length.",
            ));
        }
    }
    if tags.len() > sluice_engine::limits::TAGS_MAX {
        return Err(too_many_tags(queue));
    }
    Ok(())
}

fn too_many_tags(queue: &str) -> SqsError {
    SqsError::invalid(format!("Too many tags added for queue {queue}."))
}

async fn set_tags(c: &Ctx<'_>, q: &str, tags: BTreeMap<String, String>) -> R {
    let patch = QueueConfigPatch {
        tags: Some(tags),
        ..Default::default()
    };
    c.engine.put_queue(q, patch).await?;
    Ok(json!({}))
}

pub async fn tag_queue(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let mut tags = info(c, &q).await?.config.tags;
    let add = str_map(input, "Tags");
    if add.is_empty() {
        return Err(SqsError::missing("Tags"));
    }
    check_tags(&q, &add)?;
    tags.extend(add);
    if tags.len() > sluice_engine::limits::TAGS_MAX {
        return Err(too_many_tags(&q));
    }
    set_tags(c, &q, tags).await
}

pub async fn untag_queue(c: &Ctx<'_>, input: &Value) -> R {
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

pub async fn list_queue_tags(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let tags = info(c, &q).await?.config.tags;
    if tags.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({"Tags": tags}))
}

pub async fn list_dead_letter_source_queues(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    info(c, &q).await?;
    let names: Vec<String> = c
        .engine
        .queue_infos()
        .await?
        .into_iter()
        .filter(|i| i.config.dead_letter_queue.as_deref() == Some(q.as_str()))
        .map(|i| i.name)
        .collect();
    let (page, next) = paginate(input, &names)?;
    let mut out = Map::new();
    out.insert(
        "queueUrls".into(),
        Value::Array(page.iter().map(|n| json!(c.url(n))).collect()),
    );
    if let Some(t) = next {
        out.insert("NextToken".into(), json!(t));
    }
    Ok(Value::Object(out))
}

/// Replace the SQS adapter's stored attributes of `q` (used by the permission actions).
pub async fn put_settings(
    c: &Ctx<'_>,
    q: &str,
    cfg: &QueueConfig,
    settings: BTreeMap<String, String>,
) -> Result<(), SqsError> {
    if settings == cfg.adapter_settings {
        return Ok(());
    }
    let patch = QueueConfigPatch {
        adapter_settings: Some(settings),
        ..Default::default()
    };
    c.engine.put_queue(q, patch).await?;
    Ok(())
}
