//! The domain types shared by the engine, the storage backends and the front ends: queue names
//! and configuration (with their documented limits), messages, receipts and statistics.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::limits;
use crate::validate::{range, validate_queue_name};

/// Per-queue configuration. Every field has a default, so `{}` is a valid queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    pub visibility_timeout_seconds: u32,
    pub delay_seconds: u32,
    pub retention_seconds: u32,
    pub max_message_bytes: u32,
    pub max_receives: Option<u32>,
    pub dead_letter_queue: Option<String>,
    /// Default long-poll wait of a receive that names none (SQS's ReceiveMessageWaitTimeSeconds).
    pub receive_wait_seconds: u32,
    /// Free-form tags (SQS TagQueue).
    pub tags: BTreeMap<String, String>,
    /// Which queues may use this one as their dead-letter queue, as SQS's RedriveAllowPolicy JSON.
    pub redrive_allow_policy: Option<String>,
    /// FIFO queues deduplicate by content when no deduplication id is given.
    pub content_based_deduplication: bool,
    /// Settings a front end keeps with the queue and reads back, which mean nothing to the
    /// engine (the SQS API's `Policy`, KMS and FIFO throughput attributes, keyed `sqs:NAME`).
    /// Stored and returned as given; each front end validates its own.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub adapter_settings: BTreeMap<String, String>,
    /// Push queues: keep each subscription's delivered messages this long, so they can be
    /// replayed (0: not kept).
    pub retain_delivered_seconds: u32,
    /// Set while the queue's consumption is paused (since then): receives hand out nothing,
    /// publishes are accepted. Changed only by `Engine::pause_queue`/`resume_queue`, never by
    /// a configuration patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<Millis>,
    /// How long a deduplication id (`dedup_id`, `Idempotency-Key`) is remembered: a second
    /// publish with the same id inside the window stores nothing and answers the first id.
    pub dedup_window_seconds: u32,
    /// The time to live of a message published without `ttl_seconds`/`expires_at` (None: none).
    pub default_ttl_seconds: Option<u32>,
    /// What happens to a message whose time to live has passed.
    pub on_expire: OnExpire,
    /// Standard queues: at most this many leased messages per message group at once
    /// (None: no limit). Groups at the limit are skipped by receives until one settles.
    pub max_in_flight_per_group: Option<u32>,
    /// Standard queues: each message group is handed out at most this many messages a second
    /// (a token bucket per group, burst the same; None: no limit). Not kept across restarts.
    pub group_rate_per_second: Option<u32>,
}

/// What happens to a message once its time to live (`expires_at`) has passed: it is never
/// delivered again, and is either dropped or moved to the queue's dead-letter queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpire {
    #[default]
    Drop,
    DeadLetter,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            visibility_timeout_seconds: limits::VISIBILITY_DEFAULT_S,
            delay_seconds: 0,
            retention_seconds: limits::RETENTION_DEFAULT_S,
            max_message_bytes: limits::MESSAGE_BYTES_DEFAULT,
            max_receives: None,
            dead_letter_queue: None,
            receive_wait_seconds: 0,
            tags: BTreeMap::new(),
            redrive_allow_policy: None,
            content_based_deduplication: false,
            adapter_settings: BTreeMap::new(),
            retain_delivered_seconds: 0,
            paused_at: None,
            dedup_window_seconds: limits::DEDUP_WINDOW_DEFAULT_S,
            default_ttl_seconds: None,
            on_expire: OnExpire::Drop,
            max_in_flight_per_group: None,
            group_rate_per_second: None,
        }
    }
}

/// A partial update of a [`QueueConfig`]: absent fields keep their value; for the nullable
/// fields, `Some(None)` clears them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueConfigPatch {
    pub visibility_timeout_seconds: Option<u32>,
    pub delay_seconds: Option<u32>,
    pub retention_seconds: Option<u32>,
    pub max_message_bytes: Option<u32>,
    pub max_receives: Option<Option<u32>>,
    pub dead_letter_queue: Option<Option<String>>,
    pub receive_wait_seconds: Option<u32>,
    pub tags: Option<BTreeMap<String, String>>,
    pub redrive_allow_policy: Option<Option<String>>,
    pub content_based_deduplication: Option<bool>,
    /// Replaces [`QueueConfig::adapter_settings`] whole.
    pub adapter_settings: Option<BTreeMap<String, String>>,
    pub retain_delivered_seconds: Option<u32>,
    pub dedup_window_seconds: Option<u32>,
    pub default_ttl_seconds: Option<Option<u32>>,
    pub on_expire: Option<OnExpire>,
    pub max_in_flight_per_group: Option<Option<u32>>,
    pub group_rate_per_second: Option<Option<u32>>,
}

impl QueueConfigPatch {
    pub fn apply(&self, base: &QueueConfig) -> QueueConfig {
        let mut c = base.clone();
        if let Some(v) = self.visibility_timeout_seconds {
            c.visibility_timeout_seconds = v;
        }
        if let Some(v) = self.delay_seconds {
            c.delay_seconds = v;
        }
        if let Some(v) = self.retention_seconds {
            c.retention_seconds = v;
        }
        if let Some(v) = self.max_message_bytes {
            c.max_message_bytes = v;
        }
        if let Some(v) = self.max_receives {
            c.max_receives = v;
        }
        if let Some(v) = &self.dead_letter_queue {
            c.dead_letter_queue = v.clone();
        }
        if let Some(v) = self.receive_wait_seconds {
            c.receive_wait_seconds = v;
        }
        if let Some(v) = &self.tags {
            c.tags = v.clone();
        }
        if let Some(v) = &self.redrive_allow_policy {
            c.redrive_allow_policy = v.clone();
        }
        if let Some(v) = self.content_based_deduplication {
            c.content_based_deduplication = v;
        }
        if let Some(v) = &self.adapter_settings {
            c.adapter_settings = v.clone();
        }
        if let Some(v) = self.retain_delivered_seconds {
            c.retain_delivered_seconds = v;
        }
        if let Some(v) = self.dedup_window_seconds {
            c.dedup_window_seconds = v;
        }
        if let Some(v) = self.default_ttl_seconds {
            c.default_ttl_seconds = v;
        }
        if let Some(v) = self.on_expire {
            c.on_expire = v;
        }
        if let Some(v) = self.max_in_flight_per_group {
            c.max_in_flight_per_group = v;
        }
        if let Some(v) = self.group_rate_per_second {
            c.group_rate_per_second = v;
        }
        c
    }
}

impl QueueConfig {
    /// Check every field against its documented range. `message_ceiling` is the server-wide
    /// message size limit.
    pub fn validate(&self, own_name: &str, message_ceiling: u32) -> Result<()> {
        range(
            "visibility_timeout_seconds",
            self.visibility_timeout_seconds as u64,
            0,
            limits::VISIBILITY_TIMEOUT_MAX_S as u64,
        )?;
        range(
            "delay_seconds",
            self.delay_seconds as u64,
            0,
            limits::DELAY_MAX_S as u64,
        )?;
        range(
            "retention_seconds",
            self.retention_seconds as u64,
            limits::RETENTION_MIN_S as u64,
            limits::RETENTION_MAX_S as u64,
        )?;
        range(
            "max_message_bytes",
            self.max_message_bytes as u64,
            1,
            message_ceiling as u64,
        )?;
        if let Some(m) = self.max_receives {
            range("max_receives", m as u64, 1, limits::MAX_RECEIVES_MAX as u64)?;
        }
        range(
            "receive_wait_seconds",
            self.receive_wait_seconds as u64,
            0,
            limits::WAIT_MAX_S as u64,
        )?;
        if self.retain_delivered_seconds != 0 {
            range(
                "retain_delivered_seconds",
                self.retain_delivered_seconds as u64,
                limits::RETENTION_MIN_S as u64,
                limits::RETENTION_MAX_S as u64,
            )
            .map_err(|_| {
                EngineError::invalid(
                    "retain_delivered_seconds",
                    format!(
                        "is {}; must be 0 (not kept) or between {} and {}",
                        self.retain_delivered_seconds,
                        limits::RETENTION_MIN_S,
                        limits::RETENTION_MAX_S
                    ),
                )
            })?;
        }
        if self.tags.len() > limits::TAGS_MAX {
            return Err(EngineError::invalid(
                "tags",
                format!(
                    "has {} tags; the limit is {}",
                    self.tags.len(),
                    limits::TAGS_MAX
                ),
            ));
        }
        if self.content_based_deduplication && !own_name.ends_with(".fifo") {
            return Err(EngineError::invalid(
                "content_based_deduplication",
                "applies only to FIFO queues (names ending in .fifo)",
            ));
        }
        if let Some(dlq) = &self.dead_letter_queue {
            validate_queue_name(dlq)
                .map_err(|e| EngineError::invalid("dead_letter_queue", e.to_string()))?;
            if dlq == own_name {
                return Err(EngineError::invalid(
                    "dead_letter_queue",
                    "a queue cannot be its own dead-letter queue",
                ));
            }
        }
        range(
            "dedup_window_seconds",
            self.dedup_window_seconds as u64,
            1,
            limits::DEDUP_WINDOW_MAX_S as u64,
        )?;
        if let Some(t) = self.default_ttl_seconds {
            range("default_ttl_seconds", t as u64, 1, limits::TTL_MAX_S as u64)?;
        }
        if let Some(n) = self.max_in_flight_per_group {
            if own_name.ends_with(".fifo") {
                return Err(EngineError::invalid(
                    "max_in_flight_per_group",
                    "applies only to standard queues (a FIFO queue leases one group to one consumer at a time)",
                ));
            }
            range(
                "max_in_flight_per_group",
                n as u64,
                1,
                limits::GROUP_IN_FLIGHT_MAX as u64,
            )?;
        }
        if let Some(n) = self.group_rate_per_second {
            if own_name.ends_with(".fifo") {
                return Err(EngineError::invalid(
                    "group_rate_per_second",
                    "applies only to standard queues",
                ));
            }
            range(
                "group_rate_per_second",
                n as u64,
                1,
                limits::GROUP_RATE_MAX as u64,
            )?;
        }
        if self.on_expire == OnExpire::DeadLetter && self.dead_letter_queue.is_none() {
            return Err(EngineError::invalid(
                "on_expire",
                "dead_letter needs a dead_letter_queue (and max_receives) on the queue",
            ));
        }
        if self.max_receives.is_some() != self.dead_letter_queue.is_some() {
            return Err(EngineError::invalid(
                "max_receives",
                "max_receives and dead_letter_queue must be set together (or both null)",
            ));
        }
        Ok(())
    }
}

/// A queue as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub name: String,
    pub config: QueueConfig,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Counts and counters of one queue. Gauges are exact at the moment they are read; counters
/// count since the queue was created (or its counters were reset), across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueStats {
    pub ready: u64,
    pub delayed: u64,
    pub in_flight: u64,
    /// Messages of this queue now sitting in its dead-letter queue.
    pub dead_lettered: u64,
    pub oldest_ready_age_seconds: u64,
    pub published: u64,
    pub received: u64,
    pub acked: u64,
    pub nacked: u64,
    /// Dropped because they outlived the queue's retention period.
    pub expired: u64,
    /// Leases that ran out before an ack.
    pub visibility_timeouts: u64,
    /// Messages moved from this queue to its dead-letter queue.
    pub dead_lettered_total: u64,
    pub redriven: u64,
    /// Push copies (a subscription's queue): deliveries answered 2xx.
    pub delivered: u64,
    /// Push copies: attempts to be tried again (5xx, 408, timeouts, connection errors).
    pub retried: u64,
    /// Push copies: attempts answered 429 (not counted as attempts).
    pub throttled: u64,
    /// Push copies: given up and dead-lettered.
    pub failed: u64,
    /// Push copies: messages published to the push queue that the subscription's filter or
    /// event types did not select, so no copy was made.
    pub filtered: u64,
}

/// A time-ordered unique message id (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u128);

impl MessageId {
    /// A new id, greater than every id this process made before it (`ids.rs`).
    pub fn new_v7() -> Self {
        MessageId(crate::ids::new_v7())
    }
    /// `n` new ids in one go (one lock and one clock read for a batch), in increasing order.
    pub fn new_v7s(n: usize) -> Vec<MessageId> {
        crate::ids::new_v7s(n).into_iter().map(MessageId).collect()
    }
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s)
            .ok()
            .map(|u| MessageId(u.as_u128()))
    }
    /// The id as text (as `Display` writes it: lowercase hex and hyphens, 36 bytes), written
    /// into `buf` without the formatting machinery, for answers written by hand.
    pub fn encode<'b>(&self, buf: &'b mut [u8; 36]) -> &'b str {
        uuid::Uuid::from_u128(self.0).hyphenated().encode_lower(buf)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).hyphenated().fmt(f)
    }
}

/// The proof of one receive, as the store knows it: the message id and the receive nonce. The
/// nonce changes on every receive, so a receipt from an earlier receive is stale. Clients get
/// it sealed (`receipts.rs`: bound to the queue and signed with the data set's key), never as
/// these two numbers, which anyone who peeked could rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    pub id: MessageId,
    pub nonce: u32,
}

pub type Attributes = BTreeMap<String, String>;

/// A message as a producer hands it over, already validated by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub id: MessageId,
    pub body: Vec<u8>,
    pub attributes: Attributes,
    pub enqueued_at: Millis,
    /// None: the queue's default delay.
    pub delay_ms: Option<u64>,
    /// FIFO message group (required on FIFO queues; kept but not ordered on others).
    pub group: Option<String>,
    /// Deduplication id (already derived from the body for content-based deduplication).
    pub dedup_id: Option<String>,
    /// 0-9, higher first ([`limits::PRIORITY_DEFAULT`] unless given); FIFO queues keep 4.
    pub priority: u8,
    /// After this moment the message is never delivered (`QueueConfig::on_expire`).
    pub expires_at: Option<Millis>,
}

impl NewMessage {
    /// A message with the default priority and no time to live.
    pub fn plain(
        id: MessageId,
        body: Vec<u8>,
        attributes: Attributes,
        enqueued_at: Millis,
    ) -> Self {
        NewMessage {
            id,
            body,
            attributes,
            enqueued_at,
            delay_ms: None,
            group: None,
            dedup_id: None,
            priority: limits::PRIORITY_DEFAULT,
            expires_at: None,
        }
    }
}

/// Is this the name of a FIFO queue?
pub fn is_fifo(name: &str) -> bool {
    name.ends_with(".fifo")
}

/// A 32-bit tag of a message group, never 0 (0 means "no group"). Distinct groups may share a
/// tag; that only makes them wait for each other, never reorders a group.
pub fn group_tag(group: &str) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in group.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h.max(1)
}

/// The size a message counts against `max_message_bytes`: body plus attribute names and values
/// (as SQS counts it).
pub fn message_size(body: &[u8], attributes: &Attributes) -> usize {
    body.len()
        + attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// A stored message as consumers and the dashboard see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub body: Vec<u8>,
    pub attributes: Attributes,
    pub enqueued_at: Millis,
    pub visible_at: Millis,
    pub receive_count: u32,
    pub first_received_at: Option<Millis>,
    /// Set when the message is a dead letter: the queue it came from.
    pub dead_letter_source: Option<String>,
    pub state: MessageState,
    pub group: Option<String>,
    pub dedup_id: Option<String>,
    pub priority: u8,
    pub expires_at: Option<Millis>,
}

impl Message {
    /// FIFO sequence number: increasing in publish order within a queue.
    pub fn sequence_number(&self) -> String {
        self.id.0.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    Ready,
    Delayed,
    InFlight,
}

/// A message handed to a consumer together with its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message: Message,
    pub receipt: Receipt,
    pub lease_until: Millis,
}

/// Where a message goes when it is released by a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Behind the messages already waiting (the normal nack, and miniqueue's BACK).
    Back,
    /// Ahead of the messages already waiting (miniqueue's NACK).
    Front,
}

/// The outcome for one receipt of a batch ack/nack.
pub type ReceiptResult = std::result::Result<(), EngineError>;
