//! Native streaming consumers: many messages in flight on one connection, settled by receipt.
//!
//! One session (`run_session`) behind two transports: a WebSocket at `GET /v1/queues/{q}/stream`
//! and newline-delimited JSON over an HTTP/2 (or HTTP/1.1) duplex `POST /v1/queues/{q}/stream`.
//! The client sets a prefetch (its credit): the server keeps at most that many messages leased
//! to the connection and delivers more as they are settled. Deliveries are written through a
//! small bounded channel, so a slow consumer slows its own session down instead of making the
//! server buffer. Closing the connection releases the outstanding messages (back to the front).
//! So does a server shutdown: the session sends `{"type":"error","code":"shutting_down"}`,
//! releases what it holds and ends the stream at once, so shutdown need not wait for clients.
//!
//! Client frames: `{"type":"ack","receipt"}`, `{"type":"nack","receipt","delay_seconds"?}`,
//! `{"type":"back","receipt"}`, `{"type":"extend","receipt","visibility_timeout_seconds"}`,
//! `{"type":"credit","prefetch":n}`. Server frames: `{"type":"message",...}` (the native
//! message shape with its receipt), `{"type":"acked"|"nacked"|"extended","receipt",...}`,
//! `{"type":"error","code","message","receipt"?}`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_engine::{Delivery, Engine, EngineError, Placement, ReceiveOptions};
use tokio::sync::mpsc;

use super::body::QueryParams;
use super::error::ApiError;
use super::native::delivery_view;
use super::AppState;

pub const PREFETCH_DEFAULT: usize = 10;
pub const PREFETCH_MAX: usize = 1000;
/// The largest client frame (a WebSocket message, or one line of the duplex stream). Client
/// frames are credits, acks and nacks: a few hundred bytes.
pub const MAX_CLIENT_FRAME_BYTES: usize = 64 * 1024;

#[derive(Deserialize, Default)]
pub struct StreamQuery {
    /// Messages in flight on this connection at most (1-1000, default 10).
    pub prefetch: Option<usize>,
    /// Lease of each delivery (default: the queue's visibility timeout).
    pub visibility_timeout_seconds: Option<u32>,
}

#[derive(Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Ack {
        receipt: String,
    },
    Nack {
        receipt: String,
        delay_seconds: Option<u32>,
    },
    Back {
        receipt: String,
    },
    Extend {
        receipt: String,
        visibility_timeout_seconds: u32,
    },
    Credit {
        prefetch: usize,
    },
}

pub enum Inbound {
    Frame(ClientFrame),
    Bad(String),
    Closed,
}

fn error_frame(e: &EngineError, receipt: Option<&str>) -> Value {
    let api: ApiError = e.clone().into();
    let mut v = json!({"type": "error", "code": api.code, "message": api.message});
    if let Some(r) = receipt {
        v["receipt"] = json!(r);
    }
    v
}

fn check_prefetch(n: usize) -> Result<usize, String> {
    if (1..=PREFETCH_MAX).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "prefetch: is {n}; must be between 1 and {PREFETCH_MAX}"
        ))
    }
}

/// Run one consumer session until the client goes away.
pub async fn run_session(
    engine: Arc<Engine>,
    queue: String,
    mut prefetch: usize,
    visibility: Option<u32>,
    mut inbox: mpsc::Receiver<Inbound>,
    outbox: mpsc::Sender<Value>,
) {
    let mut leased: HashSet<String> = HashSet::new();
    let mut pending: Option<tokio::task::JoinHandle<sluice_engine::Result<Vec<Delivery>>>> = None;
    let mut shutdown = engine.shutdown_signal();
    loop {
        if *shutdown.borrow() {
            let _ = outbox.try_send(json!({"type": "error", "code": "shutting_down",
                "message": "the server is shutting down; connect again once it is back"}));
            break;
        }
        if leased.len() < prefetch && pending.is_none() {
            let (e, q) = (engine.clone(), queue.clone());
            let max = (prefetch - leased.len()).min(sluice_engine::limits::RECEIVE_BATCH_MAX);
            pending = Some(tokio::spawn(async move {
                e.receive(
                    &q,
                    ReceiveOptions {
                        max_messages: max,
                        wait_seconds: Some(2),
                        visibility_timeout_seconds: visibility,
                    },
                )
                .await
            }));
        }
        let input = tokio::select! {
            done = async { pending.as_mut().expect("guarded").await }, if pending.is_some() => {
                pending = None;
                match done {
                    Ok(Ok(got)) => {
                        for d in got {
                            let view = delivery_view(&engine, &queue, d);
                            leased.extend(view.receipt.clone());
                            let mut v = serde_json::to_value(view).expect("json");
                            v["type"] = json!("message");
                            if outbox.send(v).await.is_err() {
                                break;
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        let _ = outbox.send(error_frame(&e, None)).await;
                        break;
                    }
                    Err(_) => break,
                }
                continue;
            }
            i = inbox.recv() => i.unwrap_or(Inbound::Closed),
            _ = outbox.closed() => Inbound::Closed,
            _ = async { drop(shutdown.wait_for(|down| *down).await) } => continue,
        };
        // Take every frame already waiting, so consecutive acks share one engine call (and
        // one sync) instead of paying a sync each.
        let mut batch = vec![input];
        while batch.len() < 256 {
            match inbox.try_recv() {
                Ok(i) => batch.push(i),
                Err(_) => break,
            }
        }
        let mut replies: Vec<Value> = Vec::new();
        let mut acks: Vec<String> = Vec::new();
        let mut closed = false;
        for input in batch {
            let frame = match input {
                Inbound::Closed => {
                    closed = true;
                    break;
                }
                Inbound::Frame(ClientFrame::Ack { receipt }) => {
                    acks.push(receipt);
                    continue;
                }
                Inbound::Bad(why) => {
                    flush_acks(&engine, &queue, &mut leased, &mut acks, &mut replies).await;
                    replies.push(json!({"type": "error", "code": "invalid_frame", "message": why}));
                    continue;
                }
                Inbound::Frame(f) => f,
            };
            flush_acks(&engine, &queue, &mut leased, &mut acks, &mut replies).await;
            if let Some(reply) = answer(&engine, &queue, &mut prefetch, &mut leased, frame).await {
                replies.push(reply);
            }
        }
        flush_acks(&engine, &queue, &mut leased, &mut acks, &mut replies).await;
        let mut gone = false;
        for reply in replies {
            if outbox.send(reply).await.is_err() {
                gone = true;
                break;
            }
        }
        if closed || gone {
            break;
        }
    }
    // Release everything this connection holds: a receive still running first.
    let mut release: Vec<String> = leased.into_iter().collect();
    if let Some(p) = pending.take() {
        if let Ok(Ok(got)) = p.await {
            release.extend(got.iter().map(|d| engine.receipt(&queue, &d.receipt)));
        }
    }
    if !release.is_empty() {
        let _ = engine.nack(&queue, &release, 0, Placement::Front).await;
    }
}

/// The answer to one client frame other than an ack (acks are batched by `flush_acks`): a
/// valid credit changes `prefetch` and has no answer (an out-of-range one is answered with
/// `invalid_argument`); a nack, a back or an extend acts on its lease.
async fn answer(
    engine: &Engine,
    queue: &str,
    prefetch: &mut usize,
    leased: &mut HashSet<String>,
    frame: ClientFrame,
) -> Option<Value> {
    Some(match frame {
        ClientFrame::Ack { .. } => unreachable!("batched above"),
        ClientFrame::Credit { prefetch: n } => match check_prefetch(n) {
            Ok(n) => {
                *prefetch = n;
                return None;
            }
            Err(why) => {
                json!({"type": "error", "code": "invalid_argument", "message": why})
            }
        },
        ClientFrame::Nack {
            receipt,
            delay_seconds,
        } => {
            let r = engine
                .nack(
                    queue,
                    std::slice::from_ref(&receipt),
                    delay_seconds.unwrap_or(0),
                    Placement::Front,
                )
                .await;
            settle(leased, receipt, r.map(|mut v| v.remove(0)), "nacked")
        }
        ClientFrame::Back { receipt } => {
            let r = engine
                .nack(queue, std::slice::from_ref(&receipt), 0, Placement::Back)
                .await;
            settle(leased, receipt, r.map(|mut v| v.remove(0)), "nacked")
        }
        ClientFrame::Extend {
            receipt,
            visibility_timeout_seconds,
        } => match engine
            .change_visibility(queue, &receipt, visibility_timeout_seconds)
            .await
        {
            Ok(until) => {
                json!({"type": "extended", "receipt": receipt, "visible_at": sluice_engine::rfc3339(until)})
            }
            Err(e) => error_frame(&e, Some(&receipt)),
        },
    })
}

/// Settle the acks gathered so far in one engine call.
async fn flush_acks(
    engine: &Engine,
    queue: &str,
    leased: &mut HashSet<String>,
    acks: &mut Vec<String>,
    replies: &mut Vec<Value>,
) {
    if acks.is_empty() {
        return;
    }
    let receipts = std::mem::take(acks);
    match engine.ack(queue, &receipts).await {
        Ok(results) => {
            for (receipt, r) in receipts.into_iter().zip(results) {
                replies.push(settle(leased, receipt, Ok(r), "acked"));
            }
        }
        Err(e) => {
            for receipt in receipts {
                replies.push(error_frame(&e, Some(&receipt)));
            }
        }
    }
}

fn settle(
    leased: &mut HashSet<String>,
    receipt: String,
    r: sluice_engine::Result<sluice_engine::ReceiptResult>,
    done: &str,
) -> Value {
    match r {
        Ok(Ok(())) => {
            leased.remove(&receipt);
            json!({"type": done, "receipt": receipt})
        }
        Ok(Err(e)) | Err(e) => {
            if matches!(e, EngineError::StaleReceipt | EngineError::MessageGone) {
                leased.remove(&receipt);
            }
            error_frame(&e, Some(&receipt))
        }
    }
}

async fn prepare(s: &AppState, queue: &str, q: &StreamQuery) -> Result<usize, ApiError> {
    s.engine.queue_info(queue).await?;
    if let Some(v) = q.visibility_timeout_seconds {
        sluice_engine::range(
            "visibility_timeout_seconds",
            v as u64,
            0,
            sluice_engine::limits::VISIBILITY_TIMEOUT_MAX_S as u64,
        )?;
    }
    check_prefetch(q.prefetch.unwrap_or(PREFETCH_DEFAULT))
        .map_err(|m| ApiError::bad_request("invalid_argument", m))
}

/// `GET /v1/queues/{queue}/stream`: a WebSocket consumer (JSON text frames).
pub async fn websocket(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    QueryParams(q): QueryParams<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let prefetch = match prepare(&s, &queue, &q).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let slot = match s.streams.take() {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let engine = s.engine.clone();
    ws.max_message_size(MAX_CLIENT_FRAME_BYTES)
        .max_frame_size(MAX_CLIENT_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            ws_session(
                socket,
                engine,
                queue,
                prefetch,
                q.visibility_timeout_seconds,
            )
            .await;
            drop(slot);
        })
}

async fn ws_session(
    socket: WebSocket,
    engine: Arc<Engine>,
    queue: String,
    prefetch: usize,
    vis: Option<u32>,
) {
    let (mut sink, mut stream) = socket.split();
    let (in_tx, in_rx) = mpsc::channel::<Inbound>(64);
    let (out_tx, mut out_rx) = mpsc::channel::<Value>(16);
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let inbound = match msg {
                WsMessage::Text(t) => parse_frame(t.as_bytes()),
                WsMessage::Binary(b) => parse_frame(&b),
                WsMessage::Close(_) => break,
                _ => continue,
            };
            if in_tx.send(inbound).await.is_err() {
                return;
            }
        }
        let _ = in_tx.send(Inbound::Closed).await;
    });
    let writer = tokio::spawn(async move {
        while let Some(v) = out_rx.recv().await {
            if sink
                .send(WsMessage::Text(v.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    });
    run_session(engine, queue, prefetch, vis, in_rx, out_tx).await;
    let _ = writer.await;
}

fn parse_frame(bytes: &[u8]) -> Inbound {
    match serde_json::from_slice::<ClientFrame>(bytes) {
        Ok(f) => Inbound::Frame(f),
        Err(e) => Inbound::Bad(format!("not a valid frame: {e}")),
    }
}

/// `POST /v1/queues/{queue}/stream`: the same protocol as newline-delimited JSON over a duplex
/// request/response (HTTP/2; over HTTP/1.1 only if the client streams both ways).
pub async fn duplex(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    QueryParams(q): QueryParams<StreamQuery>,
    body: Body,
) -> Response {
    let prefetch = match prepare(&s, &queue, &q).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let slot = match s.streams.take() {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let (in_tx, in_rx) = mpsc::channel::<Inbound>(64);
    let (out_tx, mut out_rx) = mpsc::channel::<Value>(16);
    let mut stream = body.into_data_stream();
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            buf.extend_from_slice(&chunk);
            while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                if in_tx.send(parse_frame(&line)).await.is_err() {
                    return;
                }
            }
            if buf.len() > MAX_CLIENT_FRAME_BYTES {
                // Not a frame: say so and end the stream rather than buffer without end.
                let why = format!(
                    "a frame is at most {MAX_CLIENT_FRAME_BYTES} bytes and ends with a newline"
                );
                let _ = in_tx.send(Inbound::Bad(why)).await;
                break;
            }
        }
        let _ = in_tx.send(Inbound::Closed).await;
    });
    let session = run_session(
        s.engine.clone(),
        queue,
        prefetch,
        q.visibility_timeout_seconds,
        in_rx,
        out_tx,
    );
    tokio::spawn(async move {
        session.await;
        drop(slot);
    });
    let body = futures::stream::poll_fn(move |cx| {
        out_rx.poll_recv(cx).map(|o| {
            o.map(|v| {
                let mut b = v.to_string().into_bytes();
                b.push(b'\n');
                Ok::<_, Infallible>(Bytes::from(b))
            })
        })
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(body))
        .expect("valid response")
}
