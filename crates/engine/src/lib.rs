//! # sluice-engine
//!
//! The queue engine of sluice: named queues with at-least-once delivery, leases with fresh
//! receipts, delays, dead-letter queues and redrive, behind one [`Store`] trait with an embedded
//! durable backend. Architecture invariant: this crate knows nothing of HTTP; every front end
//! (native REST, SQS, compat APIs, streaming, dashboard) is an adapter over [`Engine`].

pub mod clock;
pub mod conformance;
pub mod embedded;
mod engine;
mod error;
pub mod model;
pub mod push;
pub mod redis_store;
pub mod store;
pub mod timers;

pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use engine::{Engine, EngineOptions, KeyedPublish, Publish, ReceiveOptions};
pub use error::{EngineError, Result};
pub use model::*;
pub use store::{Store, StoreInfo};
