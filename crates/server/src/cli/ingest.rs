//! `sluice ingest FILE --queue Q`: upload a file to the server's ingestion pipeline (the same
//! one a watched folder feeds) and follow it with a progress bar: bytes while uploading, then
//! rows read (rows/s, ETA), then optionally deliveries.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use super::client::{enc, Client};
use super::output::out;
use super::ClientOpts;
use crate::ingest::{DedupKey, Format};

#[derive(Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// The file to ingest.
    pub file: PathBuf,
    /// Queue to ingest into.
    #[arg(long)]
    pub queue: String,
    /// csv, jsonl or lines (default: the format of the queue's watched folder, else csv).
    #[arg(long)]
    pub format: Option<String>,
    /// Dedup key: user (csv default), row or content.
    #[arg(long)]
    pub dedup: Option<String>,
    /// Return once the file is uploaded, without following its rows.
    #[arg(long)]
    pub no_wait: bool,
    /// Also wait until the queue's subscriptions delivered every row.
    #[arg(long)]
    pub wait_delivered: bool,
}

fn bar(len: u64, template: &str, quiet: bool) -> indicatif::ProgressBar {
    super::output::progress(Some(len), template, quiet)
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let opts = &args.client;
    let client = Client::new(&opts.server)?;
    if let Some(f) = &args.format {
        let format = Format::parse(f)
            .with_context(|| format!("--format {f:?}: expected csv, jsonl or lines"))?;
        if let Some(d) = &args.dedup {
            let dedup = DedupKey::parse(d)
                .with_context(|| format!("--dedup {d:?}: expected user, row or content"))?;
            dedup
                .check(format)
                .map_err(|e| anyhow::anyhow!("--dedup: {e}"))?;
        }
    }
    let (accepted, size) = upload(&client, &args).await?;
    let id = accepted["id"].as_str().unwrap_or_default().to_string();
    if let Some(earlier) = accepted["duplicate_of"].as_str() {
        if opts.json {
            out(serde_json::to_string_pretty(&accepted)?)?;
        } else {
            out(format!("identical content was already ingested into {} from {earlier} (file id {id}); nothing was sent again", args.queue))?;
        }
        return Ok(());
    }
    if args.no_wait {
        return print_final(opts, &accepted, None);
    }
    let started = Instant::now();
    let mut rec = wait_read(&client, &id, size, opts.json).await?;
    let subscribed = client
        .get(&format!("/v1/queues/{}/subscriptions", enc(&args.queue)))
        .await
        .ok()
        .and_then(|v| v["subscriptions"].as_array().map(|a| !a.is_empty()))
        .unwrap_or(false);
    if args.wait_delivered && !subscribed {
        eprintln!(
            "--wait-delivered: queue {} has no subscription; not waiting for deliveries",
            args.queue
        );
    }
    if args.wait_delivered
        && subscribed
        && matches!(rec["state"].as_str(), Some("processed" | "failed"))
    {
        rec = wait_delivered(&client, &id, &rec, opts.json).await?;
    }
    print_final(opts, &rec, Some(started.elapsed()))
}

/// Stream the file to `POST /v1/ingest`, showing the upload's progress; the server's answer
/// (the file's record, or the earlier file it duplicates), and the file's size.
async fn upload(client: &Client, args: &IngestArgs) -> anyhow::Result<(Value, u64)> {
    let file = tokio::fs::File::open(&args.file)
        .await
        .with_context(|| format!("opening {}", args.file.display()))?;
    let size = file.metadata().await?.len();
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut path = format!("/v1/ingest?queue={}", enc(&args.queue));
    path.push_str(&format!("&name={}", enc(&name)));
    if let Some(f) = &args.format {
        path.push_str(&format!("&format={}", enc(f)));
    }
    if let Some(d) = &args.dedup {
        path.push_str(&format!("&dedup={}", enc(d)));
    }
    let up = bar(
        size,
        "uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        args.client.json,
    );
    let up2 = up.clone();
    let stream = futures::stream::unfold(file, move |mut f| {
        let up = up2.clone();
        async move {
            let mut buf = vec![0u8; 256 * 1024];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    up.inc(n as u64);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        }
    });
    let accepted = client
        .post_body(&path, reqwest::Body::wrap_stream(stream))
        .await?;
    up.finish_and_clear();
    Ok((accepted, size))
}

/// Poll the file's record until the server has read it all (or refused it), showing the rows
/// read and their rate; an `error` state is retried by the server, and shown meanwhile.
async fn wait_read(client: &Client, id: &str, size: u64, json: bool) -> anyhow::Result<Value> {
    let rows = bar(
        size,
        "reading  {bar:30} {percent:>3}% {msg} ETA {eta}",
        json,
    );
    let started = Instant::now();
    let rec = loop {
        let rec = client.get(&format!("/v1/ingest/{id}")).await?;
        let state = rec["state"].as_str().unwrap_or_default();
        let read = rec["rows_read"].as_u64().unwrap_or(0);
        rows.set_position(rec["offset"].as_u64().unwrap_or(0).min(size));
        let per_s = read as f64 / started.elapsed().as_secs_f64().max(0.001);
        rows.set_message(format!(
            "{} rows ({} rows/s)",
            super::output::thousands(read),
            super::output::rate(per_s)
        ));
        if !matches!(state, "queued" | "reading" | "error") {
            break rec;
        }
        if state == "error" {
            rows.set_message(format!(
                "retrying: {}",
                rec["error"].as_str().unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    rows.finish_and_clear();
    Ok(rec)
}

/// `--wait-delivered`: poll until every row published from the file was delivered or dead
/// lettered; the file's last record.
async fn wait_delivered(
    client: &Client,
    id: &str,
    read: &Value,
    json: bool,
) -> anyhow::Result<Value> {
    let total = read["rows_published"].as_u64().unwrap_or(0);
    let del = bar(
        total,
        "delivered {bar:30} {pos}/{len} ({rate}) ETA {eta}",
        json,
    );
    loop {
        let rec = client.get(&format!("/v1/ingest/{id}")).await?;
        let done = rec["rows_delivered"].as_u64().unwrap_or(0);
        let dead = rec["rows_dead_lettered"].as_u64().unwrap_or(0);
        del.set_position(done);
        if done + dead >= total {
            del.finish_and_clear();
            return Ok(rec);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn print_final(opts: &ClientOpts, rec: &Value, took: Option<Duration>) -> anyhow::Result<()> {
    if opts.json {
        out(serde_json::to_string_pretty(rec)?)?;
    } else if let Some(took) = took {
        let get = |k: &str| rec[k].as_u64().unwrap_or(0);
        out(format!(
            "{} {}: {} rows read, {} published, {} failed, {} duplicates, {} delivered ({:.1} s)",
            rec["name"].as_str().unwrap_or_default(),
            rec["state"].as_str().unwrap_or_default(),
            get("rows_read"),
            get("rows_published"),
            get("rows_failed"),
            get("duplicates"),
            get("rows_delivered"),
            took.as_secs_f64()
        ))?;
        for k in ["report", "duplicates_report", "error"] {
            if let Some(v) = rec[k].as_str() {
                out(format!("{k}: {v}"))?;
            }
        }
    } else {
        out(format!(
            "accepted {} as {} (id {})",
            rec["name"].as_str().unwrap_or_default(),
            rec["path"].as_str().unwrap_or_default(),
            rec["id"].as_str().unwrap_or_default()
        ))?;
    }
    match rec["state"].as_str() {
        Some("failed") | Some("vanished") => anyhow::bail!(
            "{}",
            rec["error"]
                .as_str()
                .unwrap_or("some rows failed; see the report")
        ),
        _ => Ok(()),
    }
}
