//! `sluice sink`: a webhook receiver for demos and tests. It records every request as one
//! JSON line (time, method, path, headers, body, signature check, the status it answered) and
//! can misbehave on purpose: fail a fraction of requests, answer 429 past a rate, answer slowly.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use clap::Args;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::json;
use tokio::io::AsyncWriteExt;

#[derive(Args, Debug, Clone)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: String,
    /// Append one JSON line per request to this file (`-`: stdout).
    #[arg(long, default_value = "-")]
    pub out: String,
    /// Verify Standard Webhooks signatures with this secret (`whsec_...`).
    #[arg(long)]
    pub secret: Option<String>,
    /// Fraction of requests (0-1) answered with --status instead of 200.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Status of the failed requests.
    #[arg(long, default_value_t = 500)]
    pub status: u16,
    /// Answer 429 (Retry-After: 1) to requests beyond this many per second.
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Wait this long before answering each request.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
}

struct Sink {
    args: SinkArgs,
    key: Option<Vec<u8>>,
    limiter: Option<DefaultDirectRateLimiter>,
    out: tokio::sync::Mutex<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
}

pub async fn run(args: SinkArgs) -> anyhow::Result<()> {
    let key = match &args.secret {
        Some(s) => {
            Some(sluice_engine::push::signing_key(s).map_err(|e| anyhow::anyhow!("--secret {e}"))?)
        }
        None => None,
    };
    if !(0.0..=1.0).contains(&args.fail_rate) {
        anyhow::bail!("--fail-rate must be between 0 and 1");
    }
    let out: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = if args.out == "-" {
        Box::new(tokio::io::stdout())
    } else {
        Box::new(
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&args.out)
                .await?,
        )
    };
    let limiter = match args.rate_limit {
        Some(0) => anyhow::bail!("--rate-limit must be at least 1"),
        Some(n) => Some(RateLimiter::direct(Quota::per_second(
            NonZeroU32::new(n).expect("nonzero"),
        ))),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    eprintln!("sluice sink listening on http://{}", listener.local_addr()?);
    let state = Arc::new(Sink {
        args,
        key,
        limiter,
        out: tokio::sync::Mutex::new(out),
    });
    let app = axum::Router::new().fallback(record).with_state(state);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn record(
    State(s): State<Arc<Sink>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = chrono::Utc::now();
    if s.args.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(s.args.delay_ms)).await;
    }
    let status = if s.limiter.as_ref().is_some_and(|l| l.check().is_err()) {
        StatusCode::TOO_MANY_REQUESTS
    } else if s.args.fail_rate > 0.0 && rand::random::<f64>() < s.args.fail_rate {
        StatusCode::from_u16(s.args.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    } else {
        StatusCode::OK
    };
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let signature = s.key.as_ref().map(|key| {
        match (
            header("webhook-id"),
            header("webhook-timestamp").and_then(|t| t.parse::<i64>().ok()),
            header("webhook-signature"),
        ) {
            (Some(id), Some(ts), Some(sig)) => {
                let want = crate::delivery::signing::sign(key, id, ts, &body);
                if sig.split(' ').any(|x| x == want) {
                    "valid"
                } else {
                    "invalid"
                }
            }
            _ => "missing",
        }
    });
    let hdrs: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                json!(String::from_utf8_lossy(v.as_bytes())),
            )
        })
        .collect();
    let mut line = json!({
        "time": received.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": hdrs,
        "signature": signature,
        "status": status.as_u16(),
    });
    match std::str::from_utf8(&body) {
        Ok(t) => line["body"] = json!(t),
        Err(_) => {
            use base64::Engine as _;
            line["body_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&body))
        }
    }
    let mut bytes = serde_json::to_vec(&line).expect("json");
    bytes.push(b'\n');
    {
        let mut out = s.out.lock().await;
        let _ = out.write_all(&bytes).await;
        let _ = out.flush().await;
    }
    let mut resp = (status, axum::Json(json!({"ok": status == StatusCode::OK}))).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    resp
}
