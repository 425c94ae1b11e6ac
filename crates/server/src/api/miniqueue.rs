//! The miniqueue-compatible API (seed 002): `POST /publish/{topic}`, the full-duplex
//! `POST /subscribe/{topic}` stream, and `DELETE /{topic}`. Topics are ordinary sluice queues.
//!
//! A subscription is a session: a reader task parses the client's commands (JSON strings
//! separated by whitespace: `"INIT"`, `"ACK"`, `"NACK"`, `"BACK"`, `"DACK n"`) from the request
//! body; the session loop takes them in order, as the seed does: a command that asks for the
//! next message is answered (the message written as one JSON line, flushed at once) before the
//! next command is read, and the end of the request body ends the session only once the
//! commands before it are done. It keeps at most one outstanding message (a receive with a long
//! lease). Waiting for a message is a long poll run as its own task and never abandoned midway,
//! so a delivery is never lost between the store and the client; when the client goes away, the
//! outstanding message is NACKed (back to
//! the front). DACK counts live in memory (a restart resets them).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, FromRef, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::json;
use sluice_engine::{Engine, IfMissing, MessageId, Placement, Publish, ReceiveOptions};
use tokio::sync::mpsc;

use super::body::{BodyLimits, TimedBytes};
use super::Slots;
use crate::auth::{if_missing, Principal};

/// How long an outstanding message stays leased to a connected subscriber (the engine's maximum);
/// a subscriber that disconnects releases it at once.
const LEASE_S: u32 = 43_200;

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

enum Input {
    Cmd(Command),
    Gone,
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
    let (out_tx, out_rx) = mpsc::channel::<Result<Bytes, Infallible>>(8);
    let (cmd_tx, cmd_rx) = mpsc::channel::<Input>(64);
    let mut stream = body.into_data_stream();
    tokio::spawn(async move {
        let mut reader = CommandReader::default();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            for c in reader.feed(&chunk) {
                if cmd_tx.send(Input::Cmd(c)).await.is_err() {
                    return;
                }
            }
        }
        let _ = cmd_tx.send(Input::Gone).await;
    });
    let session = session(s.clone(), topic, cmd_rx, out_tx);
    tokio::spawn(async move {
        session.await;
        drop(slot);
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(tokio_stream_from(out_rx)))
        .expect("valid response")
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

struct Outstanding {
    id: MessageId,
    receipt: String,
}

async fn session(
    state: Arc<MiniqueueState>,
    topic: String,
    mut cmds: mpsc::Receiver<Input>,
    out: mpsc::Sender<Result<Bytes, Infallible>>,
) {
    let engine = state.engine.clone();
    let line = |v: serde_json::Value| {
        let mut b = serde_json::to_vec(&v).expect("json");
        b.push(b'\n');
        Ok(Bytes::from(b))
    };
    let mut outstanding: Option<Outstanding> = None;
    let mut wanted = false;
    let mut pending: Option<
        tokio::task::JoinHandle<sluice_engine::Result<Vec<sluice_engine::Delivery>>>,
    > = None;
    loop {
        // Like the seed, commands are taken one at a time: a command that asks for the next
        // message (INIT, ACK, NACK, BACK, DACK) is answered before the next command is read.
        // So `"INIT"\n"ACK"\n` followed by the end of the body delivers one message, acks it
        // and then waits for the next, until the client goes away.
        if wanted && outstanding.is_none() {
            let running = pending.get_or_insert_with(|| {
                let e = engine.clone();
                let t = topic.clone();
                tokio::spawn(async move {
                    e.receive(
                        &t,
                        ReceiveOptions {
                            max_messages: 1,
                            wait_seconds: Some(2),
                            visibility_timeout_seconds: Some(LEASE_S),
                        },
                    )
                    .await
                })
            });
            let done = tokio::select! {
                done = running => done,
                _ = out.closed() => break,
            };
            pending = None;
            match done {
                Ok(Ok(mut got)) if !got.is_empty() => {
                    let d = got.remove(0);
                    let dacks = state.dacks.lock().get(&d.message.id).copied().unwrap_or(0);
                    let mut v = json!({"msg": B64.encode(&d.message.body)});
                    if dacks > 0 {
                        v["dackCount"] = json!(dacks);
                    }
                    outstanding = Some(Outstanding {
                        id: d.message.id,
                        receipt: engine.receipt(&topic, &d.receipt),
                    });
                    wanted = false;
                    if out.send(line(v)).await.is_err() {
                        break;
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let _ = out.send(line(json!({"error": e.to_string()}))).await;
                    break;
                }
                Err(_) => break,
            }
            continue;
        }
        let input = tokio::select! {
            c = cmds.recv() => c.unwrap_or(Input::Gone),
            _ = out.closed() => Input::Gone,
        };
        let cmd = match input {
            Input::Gone => break,
            Input::Cmd(c) => c,
        };
        let mut settle = |placement: Option<(u32, Placement)>| {
            let engine = engine.clone();
            let topic = topic.clone();
            let taken = outstanding.take();
            async move {
                if let Some(o) = taken {
                    match placement {
                        None => {
                            let _ = engine.ack(&topic, &[o.receipt]).await;
                        }
                        Some((delay, p)) => {
                            let _ = engine.nack(&topic, &[o.receipt], delay, p).await;
                        }
                    }
                    return Some(o.id);
                }
                None
            }
        };
        match cmd {
            Command::Init => wanted = true,
            Command::Ack => {
                if let Some(id) = settle(None).await {
                    state.dacks.lock().remove(&id);
                }
                wanted = true;
            }
            Command::Nack => {
                settle(Some((0, Placement::Front))).await;
                wanted = true;
            }
            Command::Back => {
                settle(Some((0, Placement::Back))).await;
                wanted = true;
            }
            Command::Dack(n) => {
                if let Some(id) = settle(Some((n, Placement::Front))).await {
                    *state.dacks.lock().entry(id).or_default() += 1;
                }
                wanted = true;
            }
            Command::Bad(why) => {
                if out.send(line(json!({"error": why}))).await.is_err() {
                    break;
                }
            }
        }
    }
    // The client is gone: a receive still waiting must finish (it may hold a message), then
    // whatever is outstanding goes back to the front.
    if let Some(p) = pending.take() {
        if let Ok(Ok(got)) = p.await {
            let receipts: Vec<String> = got
                .iter()
                .map(|d| engine.receipt(&topic, &d.receipt))
                .collect();
            if !receipts.is_empty() {
                let _ = engine.nack(&topic, &receipts, 0, Placement::Front).await;
            }
        }
    }
    if let Some(o) = outstanding {
        let _ = engine.nack(&topic, &[o.receipt], 0, Placement::Front).await;
    }
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
