//! A client of the native streaming endpoint over HTTP/2 cleartext (`POST
//! /v1/queues/{q}/stream`, newline-delimited JSON both ways), shared by `sluice tail` and the
//! `stream` bench scenario. Failures a reconnect may cure (no connection, a 5xx, a dropped
//! stream) are [`Retryable`]; the rest (404, 401...) are not.

use std::convert::Infallible;

use anyhow::bail;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::sync::mpsc;

/// An error after which trying again later may work: the server is not reachable (restarting,
/// shutting down) or answered 5xx.
#[derive(Debug)]
pub struct Retryable(pub String);

impl std::fmt::Display for Retryable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Retryable {}

pub struct StreamClient {
    up: mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    down: hyper::body::Incoming,
    pending: Vec<u8>,
}

impl StreamClient {
    pub async fn open(server: &str, queue: &str, prefetch: usize) -> anyhow::Result<StreamClient> {
        let server = super::client::with_scheme(server);
        if server.starts_with("https://") {
            bail!("streaming clients speak h2c (plain HTTP/2); got {server}");
        }
        let authority = server.trim_start_matches("http://").to_string();
        let tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| {
                Retryable(format!(
                    "cannot connect to {server} ({e}): is `sluice serve` running on {authority}?"
                ))
            })?;
        tcp.set_nodelay(true)?;
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .map_err(|e| Retryable(format!("HTTP/2 handshake with {server}: {e}")))?;
        tokio::spawn(conn);
        let (up, mut rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
        let body = StreamBody::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let mut req = hyper::Request::post(format!(
            "http://{authority}/v1/queues/{queue}/stream?prefetch={prefetch}"
        ));
        if let Some(auth) = super::client::bearer_header() {
            req = req.header("authorization", auth);
        }
        let req = req.body(body)?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| Retryable(format!("opening the stream: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.into_body().collect().await?.to_bytes();
            let why = format!("{status}: {}", String::from_utf8_lossy(&text));
            if status.is_server_error() {
                return Err(Retryable(why).into());
            }
            bail!(why);
        }
        Ok(StreamClient {
            up,
            down: resp.into_body(),
            pending: Vec::new(),
        })
    }

    /// Send one client frame.
    pub async fn send(&self, frame: &Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(frame)?;
        line.push(b'\n');
        self.up
            .send(Ok(Frame::data(Bytes::from(line))))
            .await
            .map_err(|_| anyhow::anyhow!("the stream is closed"))
    }

    /// The next server frame, or None when the server closed the stream.
    pub async fn next(&mut self) -> anyhow::Result<Option<Value>> {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Ok(Some(serde_json::from_slice(&line)?));
            }
            match self.down.frame().await {
                None => return Ok(None),
                Some(f) => {
                    let f = f.map_err(|e| Retryable(format!("the stream broke: {e}")))?;
                    if let Ok(d) = f.into_data() {
                        self.pending.extend_from_slice(&d);
                    }
                }
            }
        }
    }
}
