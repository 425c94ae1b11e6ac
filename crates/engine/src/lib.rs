//! # sluice-engine
//!
//! The queue engine of sluice: named queues with at-least-once delivery, leases with fresh
//! receipts, delays, dead-letter queues and redrive, push subscriptions, timers and cron
//! schedules, behind one [`Store`] trait with two durable backends (embedded, Redis).
//! Architecture invariant: this crate knows nothing of HTTP; every front end (native REST, SQS,
//! compat APIs, streaming, dashboard) is an adapter over [`Engine`].
//!
//! Layers, each depending only on those below it: `model`, `limits`, `validate`, `clock`,
//! `error` and the [`Store`] trait; `core` (store, clock, long-poll wake-ups); the services
//! `history`, `push` and `timers`; and `engine`, the facade every front end calls.

pub(crate) mod chunked;
pub mod clock;
#[cfg(feature = "test-support")]
pub mod conformance;
mod core;
pub mod embedded;
mod engine;
mod error;
pub mod history;
mod ids;
pub mod json_out;
pub mod limits;
pub mod model;
pub mod push;
pub mod receipts;
pub mod redis_store;
pub mod store;
pub mod timers;
pub mod validate;

pub use clock::{rfc3339, Clock, ManualClock, Millis, SystemClock};
pub use engine::{
    CopyCounts, DeadLettersHeld, DueTimer, Engine, EngineOptions, IfMissing, KeyedPublish, Publish,
    Published, QueueCounts, ReceiveOptions,
};
pub use error::{EngineError, Result};
pub use model::*;
pub use receipts::ReceiptKey;
pub use store::{HistoryRecord, Settle, Store, StoreInfo};
pub use validate::{range, validate_queue_name};
