//! Message move tasks (StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask), run
//! as in SQS: Start checks the request and returns a handle at once, and a background task moves
//! the dead letters, at most `MaxNumberOfMessagesPerSecond` a second when given, either back to
//! the queues they came from (the engine's redrive) or to `DestinationArn` (receive, send,
//! delete: at least once, like SQS's own move).
//!
//! Each task is a record in the engine's durable settings under
//! `sqs-move/SOURCE/STARTED-ID`, rewritten as it makes progress, so ListMessageMoveTasks shows
//! progress and tasks survive a restart: a task still RUNNING when the server stopped resumes
//! when it starts ([`resume`]). The last ten tasks of each source queue are kept.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sluice_engine::{Engine, EngineError, MessageId, Publish, ReceiveOptions};

use super::input::{in_range, opt_int, opt_str, req_str};
use super::{name_of_arn, Ctx, SqsError, SqsState};

type R = Result<Value, SqsError>;

const PREFIX: &str = "sqs-move/";
/// Tasks kept per source queue (ListMessageMoveTasks shows at most these).
const KEEP: usize = 10;
/// Messages moved per step when no rate is given.
const STEP: usize = 100;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MoveTask {
    handle: String,
    source_arn: String,
    source: String,
    destination_arn: Option<String>,
    destination: Option<String>,
    rate: Option<u32>,
    /// RUNNING, COMPLETED, CANCELLING, CANCELLED or FAILED.
    status: String,
    moved: u64,
    to_move: u64,
    started_ms: i64,
    failure: Option<String>,
}

fn not_found(what: &str) -> SqsError {
    SqsError::new(
        "ResourceNotFoundException",
        "ResourceNotFoundException",
        format!("The resource that you specified for the {what} parameter doesn't exist."),
    )
}

fn key_of(t: &MoveTask) -> String {
    format!(
        "{PREFIX}{}/{:020}-{}",
        t.source,
        t.started_ms,
        &t.handle[..t.handle.len().min(16)]
    )
}

async fn save(engine: &Engine, t: &MoveTask) -> Result<(), EngineError> {
    let v = serde_json::to_string(t).map_err(|e| EngineError::Storage(e.to_string()))?;
    engine.store_meta_put(&key_of(t), Some(v)).await
}

/// The tasks of a source queue, newest first.
async fn tasks_of(engine: &Engine, source: &str) -> Result<Vec<MoveTask>, SqsError> {
    let mut v: Vec<MoveTask> = engine
        .store_meta_list(&format!("{PREFIX}{source}/"))
        .await?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_str(&v).ok())
        .collect();
    v.reverse();
    Ok(v)
}

pub async fn start(c: &Ctx<'_>, input: &Value) -> R {
    let source_arn = req_str(input, "SourceArn")?;
    let source = name_of_arn(source_arn)
        .ok_or_else(|| SqsError::invalid("Invalid value for SourceArn."))?
        .to_string();
    let source_info = c
        .engine
        .get_queue(&source)
        .await
        .map_err(|_| not_found("SourceArn"))?;
    let infos = c.engine.queue_infos().await?;
    if !infos
        .iter()
        .any(|i| i.config.dead_letter_queue.as_deref() == Some(source.as_str()))
    {
        return Err(SqsError::invalid(
            "Source queue must be configured as a Dead Letter Queue.",
        ));
    }
    let destination_arn = opt_str(input, "DestinationArn").map(str::to_string);
    let destination = match &destination_arn {
        Some(d) => {
            let dest = name_of_arn(d)
                .ok_or_else(|| SqsError::invalid("Invalid value for DestinationArn."))?;
            if !infos.iter().any(|i| i.name == dest) {
                return Err(not_found("DestinationArn"));
            }
            if dest == source {
                return Err(SqsError::invalid(
                    "Value for parameter DestinationArn is invalid. Reason: the destination cannot be the source queue.",
                ));
            }
            if dest.ends_with(".fifo") != source.ends_with(".fifo") {
                return Err(SqsError::invalid(
                    "Value for parameter DestinationArn is invalid. Reason: the destination must be of the same type (standard or FIFO) as the source.",
                ));
            }
            Some(dest.to_string())
        }
        None => None,
    };
    let rate = match opt_int(input, "MaxNumberOfMessagesPerSecond")? {
        Some(r) => Some(in_range(
            "MaxNumberOfMessagesPerSecond",
            r,
            1,
            500,
            "must be between 1 and 500",
        )?),
        None => None,
    };
    let earlier = tasks_of(c.engine, &source).await?;
    if earlier
        .iter()
        .any(|t| t.status == "RUNNING" || t.status == "CANCELLING")
    {
        return Err(SqsError::invalid(
            "There can be only one active message movement task per queue at any given time.",
        ));
    }
    let (_, stats) = source_info;
    let task = MoveTask {
        handle: B64.encode(format!("{}:{source_arn}", MessageId::new_v7())),
        source_arn: source_arn.to_string(),
        source: source.clone(),
        destination_arn,
        destination,
        rate,
        status: "RUNNING".into(),
        moved: 0,
        to_move: stats.ready + stats.delayed,
        started_ms: c.engine.now(),
        failure: None,
    };
    save(c.engine, &task).await?;
    for old in earlier.iter().skip(KEEP - 1) {
        c.engine.store_meta_put(&key_of(old), None).await?;
    }
    let handle = task.handle.clone();
    spawn(c.sqs.clone(), task);
    Ok(json!({"TaskHandle": handle}))
}

pub async fn list(c: &Ctx<'_>, input: &Value) -> R {
    let source_arn = req_str(input, "SourceArn")?;
    let max = match opt_int(input, "MaxResults")? {
        Some(m) => in_range("MaxResults", m, 1, 10, "must be between 1 and 10")? as usize,
        None => 1,
    };
    let Some(source) = name_of_arn(source_arn) else {
        return Err(SqsError::invalid("Invalid value for SourceArn."));
    };
    let results: Vec<Value> = tasks_of(c.engine, source)
        .await?
        .iter()
        .take(max)
        .map(|t| {
            let mut o = json!({
                "Status": t.status,
                "SourceArn": t.source_arn,
                "ApproximateNumberOfMessagesMoved": t.moved,
                "ApproximateNumberOfMessagesToMove": t.to_move.max(t.moved),
                "StartedTimestamp": t.started_ms,
            });
            if t.status == "RUNNING" {
                o["TaskHandle"] = json!(t.handle);
            }
            if let Some(d) = &t.destination_arn {
                o["DestinationArn"] = json!(d);
            }
            if let Some(r) = t.rate {
                o["MaxNumberOfMessagesPerSecond"] = json!(r);
            }
            if let Some(f) = &t.failure {
                o["FailureReason"] = json!(f);
            }
            o
        })
        .collect();
    Ok(json!({"Results": results}))
}

pub async fn cancel(c: &Ctx<'_>, input: &Value) -> R {
    let handle = req_str(input, "TaskHandle")?;
    let unknown = || {
        SqsError::new(
            "ResourceNotFoundException",
            "ResourceNotFoundException",
            "The specified task handle does not exist.",
        )
    };
    let source = B64
        .decode(handle)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(_, arn)| arn.to_string()))
        .and_then(|arn| name_of_arn(&arn).map(str::to_string))
        .ok_or_else(unknown)?;
    let mut task = tasks_of(c.engine, &source)
        .await?
        .into_iter()
        .find(|t| t.handle == handle)
        .ok_or_else(unknown)?;
    if task.status != "RUNNING" {
        return Err(SqsError::new(
            "ResourceNotFoundException",
            "ResourceNotFoundException",
            format!(
                "The task is {} and cannot be cancelled: only a RUNNING task can.",
                task.status
            ),
        ));
    }
    c.sqs.cancels.lock().insert(handle.to_string());
    // What the runner has saved so far; it stops before its next step.
    task.status = "CANCELLING".into();
    save(c.engine, &task).await?;
    Ok(json!({"ApproximateNumberOfMessagesMoved": task.moved}))
}

/// Resume the tasks that were RUNNING when the server stopped (once, at start).
pub async fn resume(state: Arc<SqsState>) -> Result<(), EngineError> {
    for (_, v) in state.engine.store_meta_list(PREFIX).await? {
        let Ok(mut t) = serde_json::from_str::<MoveTask>(&v) else {
            continue;
        };
        match t.status.as_str() {
            "RUNNING" => spawn(state.clone(), t),
            "CANCELLING" => {
                t.status = "CANCELLED".into();
                save(&state.engine, &t).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn spawn(state: Arc<SqsState>, task: MoveTask) {
    tokio::spawn(run(state, task));
}

async fn run(state: Arc<SqsState>, mut task: MoveTask) {
    let engine = state.engine.clone();
    let shutdown = engine.shutdown_signal();
    loop {
        if *shutdown.borrow() {
            return; // still RUNNING in the store: resumed at the next start
        }
        if state.cancels.lock().remove(&task.handle) {
            task.status = "CANCELLED".into();
            break;
        }
        let step_started = engine.now();
        let step = task.rate.map_or(STEP, |r| r as usize);
        match move_step(&engine, &task, step).await {
            Ok(0) => {
                task.status = "COMPLETED".into();
                break;
            }
            Ok(n) => task.moved += n,
            Err(_) if *shutdown.borrow() => return,
            Err(e) => {
                task.status = "FAILED".into();
                task.failure = Some(e.to_string());
                break;
            }
        }
        // A cancel may have been saved meanwhile: keep its status in the record.
        if state.cancels.lock().contains(&task.handle) {
            continue;
        }
        if let Err(e) = save(&engine, &task).await {
            tracing::warn!(error = %e, source = %task.source, "message move task: saving progress failed");
        }
        if task.rate.is_some() {
            engine.clock().sleep_until(step_started + 1000).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    if let Err(e) = save(&engine, &task).await {
        tracing::warn!(error = %e, source = %task.source, "message move task: saving its end failed");
    }
}

/// Move up to `n` messages; returns how many moved (0: the source is drained).
async fn move_step(engine: &Engine, t: &MoveTask, n: usize) -> Result<u64, EngineError> {
    let Some(dest) = &t.destination else {
        return engine.redrive(&t.source, Some(n)).await;
    };
    let dest_fifo = sluice_engine::is_fifo(dest);
    let got = engine
        .receive(
            &t.source,
            ReceiveOptions {
                max_messages: n.min(sluice_engine::limits::RECEIVE_BATCH_MAX),
                wait_seconds: Some(0),
                visibility_timeout_seconds: Some(60),
            },
        )
        .await?;
    if got.is_empty() {
        return Ok(0);
    }
    let copies = got
        .iter()
        .map(|d| Publish {
            body: d.message.body.clone(),
            attributes: d.message.attributes.clone(),
            delay_seconds: Some(0).filter(|_| d.message.group.is_none()),
            group: d.message.group.clone(),
            // A standard queue's deduplication id is an idempotency key: the dead letter's
            // own key, still in the source's window, would make the move store nothing.
            dedup_id: d.message.dedup_id.clone().filter(|_| dest_fifo),
            // A dead letter has no time to live; its priority goes home with it.
            priority: Some(d.message.priority).filter(|_| !dest_fifo),
            ..Default::default()
        })
        .collect();
    engine.publish(dest, copies).await?;
    let receipts: Vec<String> = got
        .iter()
        .map(|d| engine.receipt(&t.source, &d.receipt))
        .collect();
    engine.ack(&t.source, &receipts).await?;
    Ok(got.len() as u64)
}
