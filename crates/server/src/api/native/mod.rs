//! The native JSON API under `/v1`. Each handler parses and shapes; the rules live in the engine.
//! `queues.rs` (queue management), `publish.rs` (publish, the `Idempotency-Key` header),
//! `messages.rs` (receive, peek, the message view), `settle.rs` (ack, nack, leases, redrive).

mod messages;
mod publish;
mod queues;
mod settle;

pub use self::messages::*;
pub use self::publish::*;
pub use self::queues::*;
pub use self::settle::*;

/// An answer whose JSON was written by hand (the hot requests' answers: no intermediate
/// strings, nothing escaped that cannot need it).
fn json_answer(status: axum::http::StatusCode, body: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
