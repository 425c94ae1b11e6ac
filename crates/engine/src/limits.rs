//! Documented limits of queues and messages. Each number is written down once, here, and used
//! by name; front ends quote these numbers in their error messages. (Server-wide limits are
//! `EngineOptions` and the server's `ServeConfig` fields; push limits are `push::limits`.)

pub const QUEUE_NAME_MAX: usize = 80;
pub const VISIBILITY_TIMEOUT_MAX_S: u32 = 12 * 3600;
pub const DELAY_MAX_S: u32 = 365 * 24 * 3600;
pub const RETENTION_MIN_S: u32 = 60;
pub const RETENTION_MAX_S: u32 = 14 * 24 * 3600;
pub const RETENTION_DEFAULT_S: u32 = 4 * 24 * 3600;
pub const VISIBILITY_DEFAULT_S: u32 = 30;
pub const MESSAGE_BYTES_DEFAULT: u32 = 256 * 1024;
/// The largest server-wide message limit that can be configured.
pub const MESSAGE_BYTES_CEILING: u32 = 16 * 1024 * 1024;
pub const MAX_RECEIVES_MAX: u32 = 1000;
pub const RECEIVE_BATCH_MAX: usize = 100;
pub const PUBLISH_BATCH_MAX: usize = 1000;
pub const WAIT_MAX_S: u32 = 20;
pub const ATTRIBUTES_MAX: usize = 32;
pub const ATTRIBUTE_NAME_MAX: usize = 512;
pub const ACK_BATCH_MAX: usize = 1000;
pub const PEEK_MAX: usize = 1000;
pub const TAGS_MAX: usize = 50;
/// Deduplication window: the default (SQS FIFO's fixed 5 minutes) and the longest a queue may set.
pub const DEDUP_WINDOW_DEFAULT_S: u32 = 5 * 60;
pub const DEDUP_WINDOW_MAX_S: u32 = 24 * 3600;
/// SQS's fixed window (FIFO deduplication, receive request attempt ids).
pub const DEDUP_WINDOW_MS: i64 = DEDUP_WINDOW_DEFAULT_S as i64 * 1000;
/// Message priorities: 0-9, higher first; a message without one has 4.
pub const PRIORITY_MAX: u8 = 9;
pub const PRIORITY_DEFAULT: u8 = 4;
/// The longest time to live a message or queue may set (the longest retention).
pub const TTL_MAX_S: u32 = RETENTION_MAX_S;
/// The largest `max_in_flight_per_group`.
pub const GROUP_IN_FLIGHT_MAX: u32 = 100_000;
/// The largest `group_rate_per_second`.
pub const GROUP_RATE_MAX: u32 = 100_000;
/// FIFO message group ids and deduplication ids.
pub const FIFO_ID_MAX: usize = 128;
