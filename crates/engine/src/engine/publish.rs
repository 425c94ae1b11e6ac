//! Publishing: the per-message rules checked before anything is stored (size, attributes,
//! delay, FIFO groups and deduplication, priority, time to live, idempotency keys), then one
//! store call for the batch (fanned out on a push queue). A repeated deduplication id inside
//! the queue's window stores nothing and answers the first message's id (`Published`).

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::limits;
use crate::model::{is_fifo, message_size, Attributes, MessageId, NewMessage};
use crate::validate::{range, validate_attributes, validate_fifo_id, validate_queue_name};

use super::Engine;

/// One message to publish.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    pub body: Vec<u8>,
    pub attributes: Attributes,
    /// None: the queue's default delay. Not allowed per message on FIFO queues.
    pub delay_seconds: Option<u32>,
    /// Message group: required on FIFO queues (order within the group); on standard queues
    /// receives take turns between groups (fair queues).
    pub group: Option<String>,
    /// Deduplication (idempotency) id: a repeat inside the queue's `dedup_window_seconds`
    /// stores nothing. On FIFO queues required unless the queue deduplicates by content.
    pub dedup_id: Option<String>,
    /// 0-9, higher first (standard queues; default [`limits::PRIORITY_DEFAULT`]).
    pub priority: Option<u8>,
    /// Time to live from now (1 s to 14 days); default: the queue's `default_ttl_seconds`.
    pub ttl_seconds: Option<u32>,
    /// Or an absolute end of life (in the future, at most 14 days ahead).
    pub expires_at: Option<Millis>,
}

/// What a publish does when its queue does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// Create it with defaults (within `EngineOptions::max_queues_on_use`).
    Create,
    /// Answer `QueueNotFound` (the caller may not create queues).
    Refuse,
}

/// One message published under a caller-chosen id ([`Engine::publish_keyed`]).
#[derive(Debug, Clone)]
pub struct KeyedPublish {
    pub id: MessageId,
    pub body: Vec<u8>,
    pub attributes: Attributes,
}

/// The answer for one published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub id: MessageId,
    /// A repeat of a deduplication id inside the window: nothing was stored, `id` is the
    /// first message's.
    pub duplicate: bool,
}

impl Engine {
    /// Publish one or more messages; the queue is created with defaults if missing. Returns
    /// the ids, in order, once all of them are durable.
    pub async fn publish(&self, queue: &str, messages: Vec<Publish>) -> Result<Vec<MessageId>> {
        self.publish_if(queue, messages, IfMissing::Create).await
    }

    /// [`Engine::publish`], saying what to do when the queue does not exist.
    pub async fn publish_if(
        &self,
        queue: &str,
        messages: Vec<Publish>,
        missing: IfMissing,
    ) -> Result<Vec<MessageId>> {
        let out = self.publish_detailed(queue, messages, missing).await?;
        Ok(out.into_iter().map(|p| p.id).collect())
    }

    /// [`Engine::publish_if`], telling which messages were repeats of a deduplication id.
    pub async fn publish_detailed(
        &self,
        queue: &str,
        messages: Vec<Publish>,
        missing: IfMissing,
    ) -> Result<Vec<Published>> {
        validate_queue_name(queue)?;
        if messages.is_empty() {
            return Err(EngineError::invalid(
                "messages",
                "must contain at least 1 message",
            ));
        }
        if messages.len() > limits::PUBLISH_BATCH_MAX {
            return Err(EngineError::invalid(
                "messages",
                format!(
                    "contains {} messages; the limit is {} per request",
                    messages.len(),
                    limits::PUBLISH_BATCH_MAX
                ),
            ));
        }
        let now = self.now();
        let fifo = is_fifo(queue);
        let content_dedup = if fifo {
            self.core
                .store
                .get_queue(queue)
                .await?
                .map(|q| q.config.content_based_deduplication)
                .unwrap_or(false)
        } else {
            false
        };
        let single = messages.len() == 1;
        let mut batch = Vec::with_capacity(messages.len());
        // The ids asked for: a duplicate comes back with the first message's id instead.
        let asked = MessageId::new_v7s(messages.len());
        for ((i, m), &id) in messages.into_iter().enumerate().zip(&asked) {
            let field = |f: &str| {
                if single {
                    f.to_string()
                } else {
                    format!("messages[{i}].{f}")
                }
            };
            batch.push(self.check_one(m, id, now, fifo, content_dedup, &field)?);
        }
        let ids = self.append(queue, batch, now, missing).await?;
        Ok(ids
            .into_iter()
            .zip(asked)
            .map(|(id, asked)| Published {
                id,
                duplicate: id != asked,
            })
            .collect())
    }

    /// Check one message against the rules and make it a `NewMessage` with the id `id`.
    fn check_one(
        &self,
        m: Publish,
        id: MessageId,
        now: Millis,
        fifo: bool,
        content_dedup: bool,
        field: &dyn Fn(&str) -> String,
    ) -> Result<NewMessage> {
        if let Some(d) = m.delay_seconds {
            range(
                &field("delay_seconds"),
                d as u64,
                0,
                limits::DELAY_MAX_S as u64,
            )?;
        }
        // An empty map is valid: no field name built (a String) for most messages.
        if !m.attributes.is_empty() {
            validate_attributes(&m.attributes, &field("attributes"))?;
        }
        for (name, v) in [
            ("message_group_id", &m.group),
            ("deduplication_id", &m.dedup_id),
        ] {
            if let Some(v) = v {
                validate_fifo_id(v, &field(name))?;
            }
        }
        if let Some(p) = m.priority {
            if fifo {
                return Err(EngineError::invalid(
                    field("priority"),
                    "applies only to standard queues (a FIFO queue keeps publish order)",
                ));
            }
            range(&field("priority"), p as u64, 0, limits::PRIORITY_MAX as u64)?;
        }
        let expires_at = match (m.ttl_seconds, m.expires_at) {
            (Some(_), Some(_)) => {
                return Err(EngineError::invalid(
                    field("ttl_seconds"),
                    "give either ttl_seconds or expires_at, not both",
                ))
            }
            (Some(t), None) => {
                range(&field("ttl_seconds"), t as u64, 1, limits::TTL_MAX_S as u64)?;
                Some(now + t as i64 * 1000)
            }
            (None, Some(at)) => {
                let longest = now + limits::TTL_MAX_S as i64 * 1000;
                if at <= now || at > longest {
                    return Err(EngineError::invalid(
                        field("expires_at"),
                        format!(
                            "must be in the future and at most {} days ahead",
                            limits::TTL_MAX_S / 86_400
                        ),
                    ));
                }
                Some(at)
            }
            (None, None) => None,
        };
        let dedup_id = if fifo {
            if m.group.is_none() {
                return Err(EngineError::invalid(
                    field("message_group_id"),
                    "is required on FIFO queues",
                ));
            }
            if m.delay_seconds.is_some_and(|d| d > 0) {
                return Err(EngineError::invalid(
                    field("delay_seconds"),
                    "FIFO queues take no per-message delay (set the queue's delay_seconds)",
                ));
            }
            match (&m.dedup_id, content_dedup) {
                (Some(d), _) => Some(d.clone()),
                (None, true) => Some(sha256_hex(&m.body)),
                (None, false) => {
                    return Err(EngineError::invalid(
                        field("deduplication_id"),
                        "is required on a FIFO queue without content_based_deduplication",
                    ))
                }
            }
        } else {
            m.dedup_id
        };
        let size = message_size(&m.body, &m.attributes);
        if size > self.opts.max_message_bytes as usize {
            return Err(EngineError::MessageTooLarge {
                size,
                limit: self.opts.max_message_bytes as usize,
            });
        }
        Ok(NewMessage {
            id,
            body: m.body,
            attributes: m.attributes,
            enqueued_at: now,
            delay_ms: m.delay_seconds.map(|d| d as u64 * 1000),
            group: m.group,
            dedup_id,
            priority: m.priority.unwrap_or(limits::PRIORITY_DEFAULT),
            expires_at,
        })
    }

    /// Store validated messages: fanned out on a push queue, else appended (creating the
    /// queue with defaults if missing and allowed); long polls are woken.
    async fn append(
        &self,
        queue: &str,
        batch: Vec<NewMessage>,
        now: Millis,
        missing: IfMissing,
    ) -> Result<Vec<MessageId>> {
        if self.push.is_push(queue) {
            return self.push.fan_out(queue, batch).await;
        }
        let ids = match self.core.store.publish(queue, &batch, now).await {
            Err(EngineError::QueueNotFound(q)) => {
                if missing == IfMissing::Refuse {
                    return Err(EngineError::QueueNotFound(q));
                }
                self.create_on_use(queue).await?;
                self.core.store.publish(queue, &batch, now).await?
            }
            other => other?,
        };
        self.core.wake(queue, ids.len());
        Ok(ids)
    }

    /// Publish messages under ids the caller derived deterministically (file ingestion: the
    /// file's hash and the row's key). Each id doubles as the deduplication id, so a producer
    /// that repeats a batch after a crash (within the queue's deduplication window, 5 minutes by default) stores every message
    /// once, and push deliveries carry the same `webhook-id` whatever happens. On a FIFO queue
    /// every message goes to `group`. The queue is created with defaults if missing.
    pub async fn publish_keyed(
        &self,
        queue: &str,
        messages: Vec<KeyedPublish>,
        group: &str,
    ) -> Result<Vec<MessageId>> {
        validate_queue_name(queue)?;
        let fifo = is_fifo(queue);
        if fifo {
            validate_fifo_id(group, "message_group_id")?;
        }
        let now = self.now();
        let mut batch = Vec::with_capacity(messages.len());
        for m in messages {
            validate_attributes(&m.attributes, "attributes")?;
            let size = message_size(&m.body, &m.attributes);
            if size > self.opts.max_message_bytes as usize {
                return Err(EngineError::MessageTooLarge {
                    size,
                    limit: self.opts.max_message_bytes as usize,
                });
            }
            batch.push(NewMessage {
                id: m.id,
                body: m.body,
                attributes: m.attributes,
                enqueued_at: now,
                delay_ms: None,
                group: fifo.then(|| group.to_string()),
                dedup_id: Some(m.id.to_string()),
                priority: limits::PRIORITY_DEFAULT,
                expires_at: None,
            });
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.append(queue, batch, now, IfMissing::Create).await
    }
}

fn sha256_hex(body: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
