//! AddPermission and RemovePermission: they maintain the queue's `Policy` document (one
//! statement per label, as SQS writes it), stored with the other SQS attributes. sluice has no
//! IAM, so the policy is kept and returned but not enforced (access is `--sqs-credentials` and
//! the API keys' roles).

use serde_json::{json, Value};

use super::input::{req_str, str_list};
use super::queue_attrs::stored;
use super::queues::{info, put_settings};
use super::{Ctx, SqsError};

type R = Result<Value, SqsError>;

/// The actions a permission may name (`*` is all of them).
const ACTIONS: &[&str] = &[
    "*",
    "SendMessage",
    "ReceiveMessage",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "PurgeQueue",
    "ListQueueTags",
    "TagQueue",
    "UntagQueue",
    "SetQueueAttributes",
    "DeleteQueue",
    "StartMessageMoveTask",
    "CancelMessageMoveTask",
    "ListMessageMoveTasks",
];
/// SQS allows at most seven actions in one statement.
const MAX_ACTIONS: usize = 7;

fn bad_label(label: &str, reason: &str) -> SqsError {
    SqsError::invalid(format!(
        "Value {label} for parameter Label is invalid. Reason: {reason}"
    ))
}

/// The queue's policy as a document with a `Statement` list (a new one when there is none).
fn policy_of(c: &Ctx<'_>, q: &str, current: Option<&str>) -> Value {
    let mut doc = current
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .filter(Value::is_object)
        .unwrap_or_else(
            || json!({"Version": "2012-10-17", "Id": format!("{}/SQSDefaultPolicy", c.arn(q))}),
        );
    if !doc.get("Statement").is_some_and(Value::is_array) {
        let one = doc.get("Statement").cloned().filter(Value::is_object);
        doc["Statement"] = Value::Array(one.into_iter().collect());
    }
    doc
}

fn statements(doc: &mut Value) -> &mut Vec<Value> {
    if !doc["Statement"].is_array() {
        doc["Statement"] = json!([]);
    }
    match &mut doc["Statement"] {
        Value::Array(a) => a,
        _ => unreachable!("made an array above"),
    }
}

/// One value, or a list of several (as SQS writes `Principal.AWS` and `Action`).
fn one_or_many(v: Vec<String>) -> Value {
    if v.len() == 1 {
        json!(v[0])
    } else {
        json!(v)
    }
}

pub async fn add_permission(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let label = req_str(input, "Label")?;
    if label.len() > 80
        || !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad_label(
            label,
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length.",
        ));
    }
    let accounts = str_list(input, "AWSAccountIds");
    if accounts.is_empty() {
        return Err(SqsError::missing("AWSAccountIds"));
    }
    if let Some(a) = accounts
        .iter()
        .find(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(SqsError::invalid(format!(
            "Value {a} for parameter AWSAccountIds is invalid. Reason: An AWS account id has 12 digits."
        )));
    }
    let actions = str_list(input, "Actions");
    if actions.is_empty() {
        return Err(SqsError::missing("Actions"));
    }
    if let Some(a) = actions.iter().find(|a| !ACTIONS.contains(&a.as_str())) {
        return Err(SqsError::invalid(format!(
            "Value SQS:{a} for parameter ActionName is invalid. Reason: Please refer to the appropriate WSDL for a list of valid actions."
        )));
    }
    if actions.len() > MAX_ACTIONS {
        return Err(SqsError::new(
            "OverLimit",
            "OverLimit",
            format!(
                "{} Actions were found, maximum allowed is {MAX_ACTIONS}.",
                actions.len()
            ),
        ));
    }
    let cfg = info(c, &q).await?.config;
    let mut doc = policy_of(c, &q, stored(&cfg, "Policy"));
    let list = statements(&mut doc);
    if list.iter().any(|s| s["Sid"] == label) {
        return Err(bad_label(label, "Already exists."));
    }
    list.push(json!({
        "Sid": label,
        "Effect": "Allow",
        "Principal": {"AWS": one_or_many(accounts.iter().map(|a| format!("arn:aws:iam::{a}:root")).collect())},
        "Action": one_or_many(actions.iter().map(|a| format!("SQS:{a}")).collect()),
        "Resource": c.arn(&q),
    }));
    let mut settings = cfg.adapter_settings.clone();
    settings.insert("sqs:Policy".into(), doc.to_string());
    put_settings(c, &q, &cfg, settings).await?;
    Ok(json!({}))
}

pub async fn remove_permission(c: &Ctx<'_>, input: &Value) -> R {
    let q = c.queue(input)?;
    let label = req_str(input, "Label")?;
    let cfg = info(c, &q).await?.config;
    let Some(current) = stored(&cfg, "Policy") else {
        return Err(bad_label(label, "can't find label on existing policy."));
    };
    let mut doc = policy_of(c, &q, Some(current));
    let list = statements(&mut doc);
    let before = list.len();
    list.retain(|s| s["Sid"] != label);
    if list.len() == before {
        return Err(bad_label(label, "can't find label on existing policy."));
    }
    let empty = list.is_empty();
    let mut settings = cfg.adapter_settings.clone();
    if empty {
        settings.remove("sqs:Policy");
    } else {
        settings.insert("sqs:Policy".into(), doc.to_string());
    }
    put_settings(c, &q, &cfg, settings).await?;
    Ok(json!({}))
}
