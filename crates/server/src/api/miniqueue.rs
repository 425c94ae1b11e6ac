//! The miniqueue-compatible API (seed 002): `POST /publish/{topic}`, the full-duplex
//! `POST /subscribe/{topic}` stream, and `DELETE /{topic}`. Topics are ordinary sluice queues.
//!
//! A subscription is a session: a reader task parses the client's commands (JSON strings
//! separated by whitespace: `"INIT"`, `"ACK"`, `"NACK"`, `"BACK"`, `"DACK n"`) from the request
//! body and `session.rs` answers them, one message at a time. DACK counts live in memory (a
//! restart resets them).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, FromRef, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::json;
use sluice_engine::{Engine, IfMissing, MessageId, Publish};

use super::body::{BodyLimits, TimedBytes};
use super::Slots;
use crate::auth::{if_missing, Principal};

mod session;

/// The miniqueue router's state, built in `server.rs`.
pub struct MiniqueueState {
    engine: Arc<Engine>,
    /// The server-wide streaming slots (`--max-streams`): a subscription holds one.
    streams: Arc<Slots>,
    limits: BodyLimits,
    /// Message id -> how many times it was DACKed.
    dacks: Mutex<HashMap<MessageId, u32>>,
}

impl MiniqueueState {
    pub fn new(engine: Arc<Engine>, streams: Arc<Slots>, limits: BodyLimits) -> Arc<Self> {
        Arc::new(MiniqueueState {
            engine,
            streams,
            limits,
            dacks: Mutex::new(HashMap::new()),
        })
    }
}

impl FromRef<Arc<MiniqueueState>> for BodyLimits {
    fn from_ref(s: &Arc<MiniqueueState>) -> Self {
        s.limits
    }
}

pub fn routes<S: Clone + Send + Sync + 'static>(state: Arc<MiniqueueState>) -> Router<S> {
    Router::new()
        .route("/publish/{topic}", post(publish))
        .route("/subscribe/{topic}", post(subscribe))
        .route("/{topic}", any(purge))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn engine_error(e: sluice_engine::EngineError) -> Response {
    let api: super::error::ApiError = e.into();
    error(api.status, api.message)
}

async fn publish(
    State(s): State<Arc<MiniqueueState>>,
    Path(topic): Path<String>,
    caller: Option<Extension<Principal>>,
    TimedBytes(body): TimedBytes,
) -> Response {
    let msg = Publish {
        body: body.to_vec(),
        ..Default::default()
    };
    let missing = if_missing(caller.as_deref());
    match s.engine.publish_if(&topic, vec![msg], missing).await {
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(e) => engine_error(e),
    }
}

/// `DELETE /{topic}`; any other method on a one-segment path is the native 404.
async fn purge(
    State(s): State<Arc<MiniqueueState>>,
    method: axum::http::Method,
    Path(topic): Path<String>,
) -> Response {
    if method != axum::http::Method::DELETE {
        return super::error::not_found().await.into_response();
    }
    match s.engine.purge(&topic).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(sluice_engine::EngineError::QueueNotFound(_)) => StatusCode::OK.into_response(),
        Err(e) => engine_error(e),
    }
}

/// One parsed client command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Init,
    Ack,
    Nack,
    Back,
    Dack(u32),
    /// A command that does not parse: the error text to send back.
    Bad(&'static str),
}

pub fn parse_command(s: &str) -> Command {
    let mut parts = s.split_whitespace();
    match parts.next() {
        Some("INIT") => Command::Init,
        Some("ACK") => Command::Ack,
        Some("NACK") => Command::Nack,
        Some("BACK") => Command::Back,
        Some("DACK") => match parts.next() {
            None => Command::Bad("too few arguments provided to DACK"),
            Some(n) => match n.parse::<u32>() {
                Ok(n) if n <= sluice_engine::limits::DELAY_MAX_S => Command::Dack(n),
                _ => Command::Bad("invalid DACK duration argument at position [1]"),
            },
        },
        _ => Command::Bad("unrecognised command received"),
    }
}

/// The longest command the reader buffers while waiting for its end (commands are a few bytes:
/// `"DACK 30"`).
pub const MAX_COMMAND_BYTES: usize = 4096;

/// Splits a byte stream into JSON strings (the client's commands), keeping partial input.
#[derive(Default)]
pub struct CommandReader {
    buf: Vec<u8>,
}

impl CommandReader {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Command> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut consumed = 0;
        {
            let mut it =
                serde_json::Deserializer::from_slice(&self.buf).into_iter::<serde_json::Value>();
            loop {
                match it.next() {
                    Some(Ok(serde_json::Value::String(s))) => {
                        consumed = it.byte_offset();
                        out.push(parse_command(&s));
                    }
                    Some(Ok(_)) => {
                        consumed = it.byte_offset();
                        out.push(Command::Bad("unrecognised command received"));
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(_)) => {
                        // Garbage: report it once and drop the rest of this buffer.
                        consumed = self.buf.len();
                        out.push(Command::Bad("unrecognised command received"));
                        break;
                    }
                    None => {
                        consumed = self.buf.len();
                        break;
                    }
                }
            }
        }
        self.buf.drain(..consumed);
        if self.buf.len() > MAX_COMMAND_BYTES {
            // An unfinished command this long is not one: drop it rather than buffer forever.
            self.buf.clear();
            out.push(Command::Bad("command too long: at most 4096 bytes"));
        }
        out
    }
}

/// The client's commands as the session takes them, read from the request body in the
/// session's own task (no hand-off per command).
pub struct Commands {
    body: axum::body::BodyDataStream,
    reader: CommandReader,
    parsed: VecDeque<Command>,
    ended: bool,
}

impl Commands {
    /// The next command; `None` once the body has ended (or failed) and every command before
    /// that was taken. Cancel-safe: nothing is lost if the wait is dropped.
    pub async fn next(&mut self) -> Option<Command> {
        loop {
            if let Some(c) = self.parsed.pop_front() {
                return Some(c);
            }
            if self.ended {
                return None;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.parsed.extend(self.reader.feed(&chunk)),
                _ => self.ended = true,
            }
        }
    }
}

async fn subscribe(
    State(s): State<Arc<MiniqueueState>>,
    Path(topic): Path<String>,
    caller: Option<Extension<Principal>>,
    body: Body,
) -> Response {
    // Topics are created on first use, like miniqueue's (by callers that may create queues).
    if s.engine.queue_info(&topic).await.is_err() {
        let created = match if_missing(caller.as_deref()) {
            IfMissing::Create => s.engine.create_on_use(&topic).await,
            IfMissing::Refuse => Err(sluice_engine::EngineError::QueueNotFound(topic.clone())),
        };
        if let Err(e) = created {
            return engine_error(e);
        }
    }
    let slot = match s.streams.take() {
        Ok(slot) => slot,
        Err(e) => return error(e.status, e.message),
    };
    let commands = Commands {
        body: body.into_data_stream(),
        reader: CommandReader::default(),
        parsed: VecDeque::new(),
        ended: false,
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(session::stream(s, topic, commands, slot)))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_as_the_seed_documents() {
        assert_eq!(parse_command("INIT"), Command::Init);
        assert_eq!(parse_command("DACK 10"), Command::Dack(10));
        assert_eq!(
            parse_command("DACK"),
            Command::Bad("too few arguments provided to DACK")
        );
        assert_eq!(
            parse_command("DACK x"),
            Command::Bad("invalid DACK duration argument at position [1]")
        );
        assert_eq!(
            parse_command("HELLO"),
            Command::Bad("unrecognised command received")
        );
    }

    #[test]
    fn the_reader_splits_json_strings_across_chunks() {
        let mut r = CommandReader::default();
        assert_eq!(r.feed(b"\"INIT\"\n\"AC"), vec![Command::Init]);
        assert_eq!(
            r.feed(b"K\" \"DACK 5\""),
            vec![Command::Ack, Command::Dack(5)]
        );
        assert_eq!(
            r.feed(b"  42 "),
            vec![Command::Bad("unrecognised command received")]
        );
        assert_eq!(r.feed(b"\"NACK\""), vec![Command::Nack]);
    }

    #[test]
    fn an_endless_command_is_dropped_not_buffered() {
        let mut r = CommandReader::default();
        assert!(r.feed(b"\"AAAA").is_empty());
        let long = vec![b'A'; MAX_COMMAND_BYTES];
        assert_eq!(
            r.feed(&long),
            vec![Command::Bad("command too long: at most 4096 bytes")]
        );
        assert!(r.buf.is_empty());
        assert_eq!(r.feed(b"\"ACK\""), vec![Command::Ack]);
    }
}
