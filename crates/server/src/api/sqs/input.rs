//! Reading an action's input: the JSON protocol's shapes (which `query.rs` also produces from
//! form parameters), with SQS's own error for a missing or malformed parameter. Also the rules
//! that several actions share: the character set of bodies and attribute values, and the batch
//! envelope (1-10 entries with distinct, well-formed ids). No engine calls here.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

use super::error::SqsError;

pub fn opt_str<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(|x| x.as_str())
}

pub fn req_str<'a>(v: &'a Value, k: &str) -> Result<&'a str, SqsError> {
    match opt_str(v, k) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(SqsError::missing(k)),
    }
}

/// An integer parameter, given as a JSON number or (query protocol) a string.
pub fn opt_int(v: &Value, k: &str) -> Result<Option<i64>, SqsError> {
    let bad = |shown: &dyn std::fmt::Display| {
        SqsError::invalid(format!(
            "Value {shown} for parameter {k} is invalid. Reason: must be an integer."
        ))
    };
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| bad(n)),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad(s)),
        Some(other) => Err(bad(other)),
    }
}

/// `v` within `min..=max`, else SQS's `InvalidParameterValue` naming the parameter and `reason`.
pub fn in_range(k: &str, v: i64, min: i64, max: i64, reason: &str) -> Result<u32, SqsError> {
    if v < min || v > max {
        return Err(SqsError::invalid(format!(
            "Value {v} for parameter {k} is invalid. Reason: {reason}"
        )));
    }
    Ok(v as u32)
}

pub fn str_list(v: &Value, k: &str) -> Vec<String> {
    match v.get(k) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(|s| s.to_string()))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

pub fn str_map(v: &Value, k: &str) -> BTreeMap<String, String> {
    v.get(k)
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The characters SQS allows in a message body and in String/Number attribute values.
pub fn valid_body_chars(body: &str) -> bool {
    body.chars().all(|ch| {
        matches!(ch, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    })
}

/// The batch rules shared by the three batch actions: 1-10 entries, distinct valid ids.
pub fn batch_entries(input: &Value, request_entry: &str) -> Result<Vec<Value>, SqsError> {
    let entries = input
        .get("Entries")
        .and_then(|e| e.as_array())
        .cloned()
        .unwrap_or_default();
    if entries.is_empty() {
        return Err(SqsError::new(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            format!("There should be at least one {request_entry} in the request."),
        ));
    }
    if entries.len() > 10 {
        return Err(SqsError::new(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!(
                "Maximum number of entries per request are 10. You have sent {}.",
                entries.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for e in &entries {
        let id = e.get("Id").and_then(|i| i.as_str()).unwrap_or_default();
        if id.is_empty()
            || id.len() > 80
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(SqsError::new(
                "InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id.to_string()) {
            return Err(SqsError::new(
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                format!("Id {id} repeated."),
            ));
        }
    }
    Ok(entries)
}

/// A batch entry's id (validated by [`batch_entries`]).
pub fn entry_id(e: &Value) -> String {
    opt_str(e, "Id").unwrap_or_default().to_string()
}

/// One `Failed` entry of a batch answer.
pub fn failed(id: &str, e: &SqsError) -> Value {
    json!({"Id": id, "SenderFault": e.sender, "Code": e.code, "Message": e.message})
}
