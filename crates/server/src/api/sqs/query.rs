//! The query protocol (form-encoded `Action=...`, XML answers) as a translation layer: flat
//! parameters such as `Attribute.1.Name` become the JSON protocol's input shape, and each
//! action's JSON output is rendered as the documented XML. So both protocols share one
//! implementation of every action (`actions.rs`).

use serde_json::{Map, Value};

/// Flat form parameters to the JSON protocol's input for `action`.
pub fn input_from_form(action: &str, pairs: &[(String, String)]) -> Value {
    let mut root = Value::Object(Map::new());
    for (k, v) in pairs {
        if k == "Action" || k == "Version" || k.starts_with("X-Amz-") || k == "AWSAccessKeyId" {
            continue;
        }
        insert(&mut root, &k.split('.').collect::<Vec<_>>(), v);
    }
    rename(action, listify(root))
}

fn insert(node: &mut Value, path: &[&str], v: &str) {
    let Value::Object(map) = node else { return };
    if path.len() == 1 {
        map.insert(path[0].to_string(), Value::String(v.to_string()));
        return;
    }
    let child = map
        .entry(path[0].to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        *child = Value::Object(Map::new());
    }
    insert(child, &path[1..], v);
}

/// Objects whose keys are all numbers (`Attribute.1`, `Attribute.2`) become arrays in order.
fn listify(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            if !map.is_empty() && map.keys().all(|k| k.parse::<u32>().is_ok()) {
                let mut items: Vec<(u32, Value)> = map
                    .into_iter()
                    .map(|(k, v)| (k.parse().unwrap_or(0), listify(v)))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(map.into_iter().map(|(k, v)| (k, listify(v))).collect())
            }
        }
        other => other,
    }
}

fn as_list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// A list of `{key_field, value_field}` pairs as a map.
fn pairs_to_map(v: Value, key_field: &str, value_field: &str) -> Value {
    let mut m = Map::new();
    for item in as_list(v) {
        if let Some(k) = item.get(key_field).and_then(|k| k.as_str()) {
            m.insert(
                k.to_string(),
                item.get(value_field).cloned().unwrap_or(Value::Null),
            );
        }
    }
    Value::Object(m)
}

fn rename(action: &str, v: Value) -> Value {
    let Value::Object(map) = v else { return v };
    let mut out = Map::new();
    for (k, v) in map {
        let (key, val) = match k.as_str() {
            "Attribute" => ("Attributes".to_string(), pairs_to_map(v, "Name", "Value")),
            "AttributeName" => ("AttributeNames".to_string(), Value::Array(as_list(v))),
            "MessageAttributeName" => (
                "MessageAttributeNames".to_string(),
                Value::Array(as_list(v)),
            ),
            "MessageSystemAttributeName" => (
                "MessageSystemAttributeNames".to_string(),
                Value::Array(as_list(v)),
            ),
            "MessageAttribute" => (
                "MessageAttributes".to_string(),
                pairs_to_map(v, "Name", "Value"),
            ),
            "MessageSystemAttribute" => (
                "MessageSystemAttributes".to_string(),
                pairs_to_map(v, "Name", "Value"),
            ),
            "Tag" if action == "CreateQueue" => {
                ("tags".to_string(), pairs_to_map(v, "Key", "Value"))
            }
            "Tag" => ("Tags".to_string(), pairs_to_map(v, "Key", "Value")),
            "TagKey" => ("TagKeys".to_string(), Value::Array(as_list(v))),
            "AWSAccountId" => ("AWSAccountIds".to_string(), Value::Array(as_list(v))),
            "ActionName" => ("Actions".to_string(), Value::Array(as_list(v))),
            e if e.ends_with("BatchRequestEntry") => (
                "Entries".to_string(),
                Value::Array(as_list(v).into_iter().map(|x| rename(action, x)).collect()),
            ),
            _ => (k, v),
        };
        out.insert(key, val);
    }
    Value::Object(out)
}

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\r' => o.push_str("&#xD;"),
            c => o.push(c),
        }
    }
    o
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

fn elem(out: &mut String, name: &str, v: &Value) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&scalar(v));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn fields(out: &mut String, action: &str, obj: &Value) {
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            field(out, action, k, v);
        }
    }
}

fn field(out: &mut String, action: &str, key: &str, v: &Value) {
    let empty = Vec::new();
    let list = v.as_array().unwrap_or(&empty);
    match key {
        "QueueUrls" | "queueUrls" => list.iter().for_each(|u| elem(out, "QueueUrl", u)),
        "Attributes" => {
            for (n, val) in v.as_object().into_iter().flatten() {
                out.push_str("<Attribute>");
                elem(out, "Name", &Value::String(n.clone()));
                elem(out, "Value", val);
                out.push_str("</Attribute>");
            }
        }
        "Tags" => {
            for (n, val) in v.as_object().into_iter().flatten() {
                out.push_str("<Tag>");
                elem(out, "Key", &Value::String(n.clone()));
                elem(out, "Value", val);
                out.push_str("</Tag>");
            }
        }
        "MessageAttributes" => {
            for (n, val) in v.as_object().into_iter().flatten() {
                out.push_str("<MessageAttribute>");
                elem(out, "Name", &Value::String(n.clone()));
                out.push_str("<Value>");
                for (k, x) in val.as_object().into_iter().flatten() {
                    elem(out, k, x);
                }
                out.push_str("</Value></MessageAttribute>");
            }
        }
        "Messages" => wrap_each(out, action, "Message", list),
        "Successful" => wrap_each(out, action, &format!("{action}ResultEntry"), list),
        "Failed" => wrap_each(out, action, "BatchResultErrorEntry", list),
        "Results" => wrap_each(out, action, "ListMessageMoveTasksResultEntry", list),
        _ => elem(out, key, v),
    }
}

fn wrap_each(out: &mut String, action: &str, tag: &str, items: &[Value]) {
    for item in items {
        out.push('<');
        out.push_str(tag);
        out.push('>');
        fields(out, action, item);
        out.push_str("</");
        out.push_str(tag);
        out.push('>');
    }
}

const XMLNS: &str = "http://queue.amazonaws.com/doc/2012-11-05/";

/// Actions whose XML answer has no `<ActionResult>` element.
const NO_RESULT: &[&str] = &[
    "DeleteQueue",
    "PurgeQueue",
    "SetQueueAttributes",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "TagQueue",
    "UntagQueue",
    "AddPermission",
    "RemovePermission",
];

pub fn success_xml(action: &str, output: &Value, request_id: &str) -> String {
    let mut body = String::new();
    if !NO_RESULT.contains(&action) {
        body.push_str(&format!("<{action}Result>"));
        fields(&mut body, action, output);
        body.push_str(&format!("</{action}Result>"));
    }
    format!(
        "<?xml version=\"1.0\"?><{action}Response xmlns=\"{XMLNS}\">{body}<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    )
}

pub fn error_xml(kind: &str, code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message><Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        escape(code),
        escape(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn flat_params_become_json_shapes() {
        let v = input_from_form(
            "CreateQueue",
            &p(&[
                ("Action", "CreateQueue"),
                ("QueueName", "q"),
                ("Attribute.1.Name", "VisibilityTimeout"),
                ("Attribute.1.Value", "40"),
                ("Attribute.2.Name", "DelaySeconds"),
                ("Attribute.2.Value", "5"),
                ("Tag.1.Key", "team"),
                ("Tag.1.Value", "core"),
            ]),
        );
        assert_eq!(
            v,
            json!({"QueueName": "q", "Attributes": {"VisibilityTimeout": "40", "DelaySeconds": "5"}, "tags": {"team": "core"}})
        );
        let v = input_from_form(
            "SendMessageBatch",
            &p(&[
                ("SendMessageBatchRequestEntry.2.Id", "b"),
                ("SendMessageBatchRequestEntry.2.MessageBody", "two"),
                ("SendMessageBatchRequestEntry.1.Id", "a"),
                ("SendMessageBatchRequestEntry.1.MessageBody", "one"),
                (
                    "SendMessageBatchRequestEntry.1.MessageAttribute.1.Name",
                    "k",
                ),
                (
                    "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType",
                    "String",
                ),
                (
                    "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue",
                    "v",
                ),
            ]),
        );
        assert_eq!(v["Entries"][0]["Id"], "a");
        assert_eq!(v["Entries"][1]["MessageBody"], "two");
        assert_eq!(
            v["Entries"][0]["MessageAttributes"]["k"]["StringValue"],
            "v"
        );
        let v = input_from_form(
            "ReceiveMessage",
            &p(&[
                ("AttributeName.1", "All"),
                ("MessageAttributeName.1", "foo.*"),
            ]),
        );
        assert_eq!(
            v,
            json!({"AttributeNames": ["All"], "MessageAttributeNames": ["foo.*"]})
        );
    }

    #[test]
    fn json_output_renders_as_sqs_xml() {
        let x = success_xml(
            "ReceiveMessage",
            &json!({"Messages": [{"MessageId": "m1", "Body": "a<b", "Attributes": {"SentTimestamp": "1"},
                "MessageAttributes": {"k": {"StringValue": "v", "DataType": "String"}}}]}),
            "rid",
        );
        assert!(x.contains("<ReceiveMessageResult><Message>"), "{x}");
        assert!(
            x.contains("<MessageId>m1</MessageId>") && x.contains("<Body>a&lt;b</Body>"),
            "{x}"
        );
        assert!(x.contains("<Attribute><Name>SentTimestamp</Name><Value>1</Value></Attribute>"));
        assert!(x.contains("<MessageAttribute><Name>k</Name><Value>"), "{x}");
        assert!(
            x.contains("<StringValue>v</StringValue>") && x.contains("<DataType>String</DataType>")
        );
        let x = success_xml("DeleteQueue", &json!({}), "rid");
        assert!(!x.contains("DeleteQueueResult"));
        let x = success_xml(
            "SendMessageBatch",
            &json!({"Successful": [{"Id": "a"}], "Failed": [{"Id": "b", "SenderFault": true}]}),
            "r",
        );
        assert!(x.contains("<SendMessageBatchResultEntry><Id>a</Id></SendMessageBatchResultEntry>"));
        assert!(x.contains("<BatchResultErrorEntry><Id>b</Id><SenderFault>true</SenderFault></BatchResultErrorEntry>"));
    }
}
