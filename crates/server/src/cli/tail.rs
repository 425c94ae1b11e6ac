//! `sluice tail QUEUE`: stream a queue to stdout, one JSON line per message, over the HTTP/2
//! streaming endpoint. When the server goes away (a restart, a shutdown) it reconnects with
//! backoff (0.25 s doubling to 10 s) and says so on stderr; a reader that closed the pipe
//! (`sluice tail q | head`) ends it quietly with status 0. Errors a reconnect cannot cure (no
//! such queue, a refused key) end it with status 1.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::stream_client::{Retryable, StreamClient};
use super::ClientOpts;
use crate::human_errors::whole;

#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    pub queue: String,
    /// Acknowledge each message after printing it (otherwise they are released on exit).
    #[arg(long)]
    pub ack: bool,
    /// Messages in flight at once (1-1000).
    #[arg(long, default_value_t = 10, value_parser = whole::<usize>)]
    pub prefetch: usize,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How one connection ended.
enum Ended {
    /// Ctrl-C, or nobody reads stdout any more: stop.
    Done,
    /// The stream ended or broke: connect again.
    Lost(String),
}

pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let server = args.client.server_url();
    let mut backoff = FIRST_BACKOFF;
    let mut connected_before = false;
    loop {
        let opened = tokio::select! {
            c = StreamClient::open(&server, &args.queue, args.prefetch) => c,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let why = match opened {
            Ok(mut c) => {
                if connected_before {
                    eprintln!("sluice tail: reconnected to {server}");
                }
                connected_before = true;
                backoff = FIRST_BACKOFF;
                match follow(&mut c, &args).await? {
                    Ended::Done => return Ok(()),
                    Ended::Lost(why) => why,
                }
            }
            // The first connection must work: a typo in --server should not spin.
            Err(e) if connected_before && e.is::<Retryable>() => e.to_string(),
            Err(e) => return Err(e),
        };
        eprintln!(
            "sluice tail: {why}; reconnecting in {:.2} s",
            backoff.as_secs_f64()
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Print messages until the stream ends.
async fn follow(c: &mut StreamClient, args: &TailArgs) -> anyhow::Result<Ended> {
    let mut out = std::io::stdout().lock();
    loop {
        let frame = tokio::select! {
            f = c.next() => f,
            _ = tokio::signal::ctrl_c() => return Ok(Ended::Done),
        };
        let mut frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(Ended::Lost("the server closed the stream".into())),
            Err(e) if e.is::<Retryable>() => return Ok(Ended::Lost(e.to_string())),
            Err(e) => return Err(e),
        };
        match frame["type"].as_str() {
            Some("message") => {
                let receipt = frame["receipt"].clone();
                if let Some(o) = frame.as_object_mut() {
                    o.remove("type");
                }
                if let Err(e) = writeln!(out, "{frame}").and_then(|_| out.flush()) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(Ended::Done);
                    }
                    return Err(e.into());
                }
                if args.ack
                    && c.send(&json!({"type": "ack", "receipt": receipt}))
                        .await
                        .is_err()
                {
                    return Ok(Ended::Lost("the stream closed".into()));
                }
            }
            Some("error") => {
                let code = frame["code"].as_str().unwrap_or_default();
                let message = frame["message"].as_str().unwrap_or_default();
                match code {
                    "shutting_down" => return Ok(Ended::Lost(message.to_string())),
                    "queue_not_found" => anyhow::bail!("{message}"),
                    _ => eprintln!("sluice tail: {code}: {message}"),
                }
            }
            _ => {}
        }
    }
}
