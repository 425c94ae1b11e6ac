//! The native JSON API under `/v1`. Each handler parses and shapes; the rules live in the engine.
//! `queues.rs` (queue management), `messages.rs` (publish, receive, peek), `settle.rs` (ack,
//! nack, leases, redrive).

mod messages;
mod queues;
mod settle;

pub use self::messages::*;
pub use self::queues::*;
pub use self::settle::*;
