//! The engine's errors. Each variant names the rule that was broken, so every front end can map
//! it to its own wire shape (native JSON, SQS error codes, ...) in one place.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EngineError {
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidQueueName { name: String, reason: String },
    #[error("queue {0:?} does not exist")]
    QueueNotFound(String),
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("message is {size} bytes (body plus attribute names and values); the limit is {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("receipt is malformed")]
    InvalidReceipt,
    #[error("receipt is stale: its lease expired, or the message was received again after this receipt was issued")]
    StaleReceipt,
    #[error("the message of this receipt is not in flight any more (acked, released, returned after its lease, dead-lettered or purged)")]
    MessageGone,
    #[error("too many queues: the limit is {limit}")]
    TooManyQueues { limit: usize },
    #[error("queue {queue:?} does not exist, and queues are created on first use only while fewer than {limit} exist (the rest of the queue limit is kept for queues created explicitly)")]
    TooManyQueuesOnUse { queue: String, limit: usize },
    #[error("storage is unavailable: {0}")]
    StorageUnavailable(String),
    #[error("storage is full: the disk holding the data directory has {free} bytes free, below the {reserve}-byte reserve (--min-free-bytes); new messages are refused until space is freed (receives and acks still work)")]
    StorageFull { free: u64, reserve: u64 },
    #[error("storage error: {0}")]
    Storage(String),
    #[error(
        "too many receives are already waiting (limit {limit}); retry later or without waiting"
    )]
    TooManyWaiters { limit: usize },
    #[error("queue {0:?} has push subscriptions: its messages are delivered to their endpoints, so pull receives are refused (delete the subscriptions to pull again)")]
    PushQueue(String),
    #[error("{what} {id:?} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
}

impl EngineError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        EngineError::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::Storage(e.to_string())
    }
}
