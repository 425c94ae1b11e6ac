//! The action table: each SQS action name to the function that serves it (over the JSON
//! protocol's input and output shapes, which `query.rs` translates for the query protocol).
//! The actions themselves live by topic: `queues.rs`, `permissions.rs`, `messages.rs`,
//! `receive.rs`, `moves.rs`.

use serde_json::Value;

use super::input::{batch_entries, opt_int, str_list, str_map};
use super::messages::{parse_message, sent_json, to_publish, visibility_of};
use super::queue_attrs::{attr_int, parse_bool_attr};
use super::{messages, moves, permissions, queues, receive, Ctx, SqsError};

pub async fn dispatch(c: &Ctx<'_>, action: &str, input: &Value) -> Result<Value, SqsError> {
    match action {
        "CreateQueue" => queues::create_queue(c, input).await,
        "GetQueueUrl" => queues::get_queue_url(c, input).await,
        "ListQueues" => queues::list_queues(c, input).await,
        "DeleteQueue" => queues::delete_queue(c, input).await,
        "PurgeQueue" => queues::purge_queue(c, input).await,
        "GetQueueAttributes" => queues::get_queue_attributes(c, input).await,
        "SetQueueAttributes" => queues::set_queue_attributes(c, input).await,
        "TagQueue" => queues::tag_queue(c, input).await,
        "UntagQueue" => queues::untag_queue(c, input).await,
        "ListQueueTags" => queues::list_queue_tags(c, input).await,
        "ListDeadLetterSourceQueues" => queues::list_dead_letter_source_queues(c, input).await,
        "AddPermission" => permissions::add_permission(c, input).await,
        "RemovePermission" => permissions::remove_permission(c, input).await,
        "SendMessage" => messages::send_message(c, input).await,
        "SendMessageBatch" => messages::send_message_batch(c, input).await,
        "ReceiveMessage" => receive::receive_message(c, input).await,
        "DeleteMessage" => messages::delete_message(c, input).await,
        "DeleteMessageBatch" => messages::delete_message_batch(c, input).await,
        "ChangeMessageVisibility" => messages::change_visibility(c, input).await,
        "ChangeMessageVisibilityBatch" => messages::change_visibility_batch(c, input).await,
        "StartMessageMoveTask" => moves::start(c, input).await,
        "ListMessageMoveTasks" => moves::list(c, input).await,
        "CancelMessageMoveTask" => moves::cancel(c, input).await,
        other => Err(SqsError::new(
            "InvalidAction",
            "InvalidAction",
            format!("The action {other} is not valid for this endpoint."),
        )),
    }
}

/// The engine-free input checks, for the fuzz target (see `super::fuzz_request`).
pub(super) fn fuzz_inputs(input: &Value) {
    let limit = sluice_engine::limits::MESSAGE_BYTES_DEFAULT as usize;
    for (fifo, content) in [(false, false), (true, false), (true, true)] {
        if let Ok(m) = parse_message(input, limit, fifo, content) {
            assert!(m.body.len() <= limit);
            let _ = sent_json("id", &m);
            let _ = to_publish(&m);
        }
    }
    if let Ok(entries) = batch_entries(input, "SendMessageBatchRequestEntry") {
        assert!((1..=10).contains(&entries.len()));
        for e in &entries {
            let _ = parse_message(e, limit, true, true);
            let _ = visibility_of(e);
        }
    }
    let _ = opt_int(input, "WaitTimeSeconds");
    let _ = opt_int(input, "MaxNumberOfMessages");
    let _ = str_list(input, "AttributeNames");
    let _ = str_list(input, "TagKeys");
    let _ = str_map(input, "Tags");
    for (name, v) in str_map(input, "Attributes") {
        let _ = parse_bool_attr(&name, &v);
        let _ = attr_int(&name, &v, 0, 900);
    }
    if let Ok(attrs) = super::attrs::parse(input.get("MessageAttributes")) {
        let engine = super::attrs::to_engine(&attrs, &[]);
        let _ = super::attrs::from_engine(&engine);
    }
}
