//! SQS message attributes (typed: String, Number, Binary, each with an optional custom suffix)
//! and how they are kept in the engine's string attributes: the value under its own name (Binary
//! as base64), and, for any type other than plain `String`, the type under `sqs:type:NAME`
//! (`:` cannot appear in an SQS attribute name, so the two never collide). Attributes published
//! through the native API therefore read as String attributes through SQS, and the reverse.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sluice_engine::Attributes;

use super::error::SqsError;
use super::input::valid_body_chars;

pub const TYPE_PREFIX: &str = "sqs:type:";
pub const SYSTEM_PREFIX: &str = "sqs:sys:";
pub const MAX_ATTRIBUTES: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsAttribute {
    pub data_type: String,
    pub string: Option<String>,
    pub binary: Option<Vec<u8>>,
}

impl SqsAttribute {
    /// Bytes this attribute counts towards the message size, as SQS counts them.
    pub fn size(&self, name: &str) -> usize {
        name.len()
            + self.data_type.len()
            + self.string.as_ref().map(|s| s.len()).unwrap_or(0)
            + self.binary.as_ref().map(|b| b.len()).unwrap_or(0)
    }

    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        if let Some(s) = &self.string {
            o.insert("StringValue".into(), json!(s));
        }
        if let Some(b) = &self.binary {
            o.insert("BinaryValue".into(), json!(B64.encode(b)));
        }
        o.insert("DataType".into(), json!(self.data_type));
        Value::Object(o)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.to_ascii_lowercase().starts_with("aws.")
        && !name.to_ascii_lowercase().starts_with("amazon.")
}

/// Parse `MessageAttributes` (`{"name": {"DataType", "StringValue" | "BinaryValue"}}`).
pub fn parse(v: Option<&Value>) -> Result<Vec<(String, SqsAttribute)>, SqsError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let obj = v
        .as_object()
        .ok_or_else(|| SqsError::invalid("MessageAttributes must be a map of name to value."))?;
    if obj.len() > MAX_ATTRIBUTES {
        return Err(SqsError::invalid(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
            obj.len()
        )));
    }
    let mut out = Vec::with_capacity(obj.len());
    for (name, val) in obj {
        if !valid_name(name) {
            return Err(SqsError::invalid(format!(
                "The message attribute name '{name}' is invalid. Attribute name can contain A-Z, a-z, 0-9, underscore (_), hyphen (-), and period (.) characters."
            )));
        }
        let data_type = val
            .get("DataType")
            .and_then(|d| d.as_str())
            .ok_or_else(|| {
                SqsError::invalid(format!(
                    "The message attribute '{name}' must contain non-empty DataType."
                ))
            })?
            .to_string();
        let base = data_type.split('.').next().unwrap_or_default().to_string();
        let base = base.as_str();
        let string = val
            .get("StringValue")
            .and_then(|s| s.as_str())
            .map(|s| s.to_string());
        let binary = match val.get("BinaryValue").and_then(|s| s.as_str()) {
            Some(b64) => Some(B64.decode(b64).map_err(|_| {
                SqsError::invalid(format!(
                    "The message attribute '{name}' has an invalid base64 BinaryValue."
                ))
            })?),
            None => None,
        };
        match base {
            "String" | "Number" => {
                let Some(s) = &string else {
                    return Err(SqsError::invalid(format!(
                        "The message attribute '{name}' with type '{data_type}' must contain a non-empty StringValue."
                    )));
                };
                if s.is_empty() {
                    return Err(SqsError::invalid(format!(
                        "The message attribute '{name}' with type '{data_type}' must contain a non-empty StringValue."
                    )));
                }
                if !valid_body_chars(s) {
                    return Err(SqsError::new(
                        "InvalidMessageContents",
                        "InvalidMessageContents",
                        format!("Invalid characters found in the value of message attribute '{name}'. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"),
                    ));
                }
                if base == "Number" && s.trim().parse::<f64>().is_err() {
                    return Err(SqsError::invalid(format!(
                        "Can't cast the value of message (user) attribute '{name}' to a number."
                    )));
                }
            }
            "Binary" => {
                if binary.as_ref().is_none_or(|b| b.is_empty()) {
                    return Err(SqsError::invalid(format!(
                        "The message attribute '{name}' with type 'Binary' must contain a non-empty BinaryValue."
                    )));
                }
            }
            _ => {
                return Err(SqsError::invalid(format!(
                    "The message attribute '{name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."
                )))
            }
        }
        out.push((
            name.clone(),
            SqsAttribute {
                data_type,
                string: if base == "Binary" { None } else { string },
                binary: if base == "Binary" { binary } else { None },
            },
        ));
    }
    Ok(out)
}

/// Into engine attributes.
pub fn to_engine(attrs: &[(String, SqsAttribute)], system: &[(String, String)]) -> Attributes {
    let mut out = Attributes::new();
    for (name, a) in attrs {
        match &a.binary {
            Some(b) => {
                out.insert(name.clone(), B64.encode(b));
            }
            None => {
                out.insert(name.clone(), a.string.clone().unwrap_or_default());
            }
        }
        if a.data_type != "String" {
            out.insert(format!("{TYPE_PREFIX}{name}"), a.data_type.clone());
        }
    }
    for (k, v) in system {
        out.insert(format!("{SYSTEM_PREFIX}{k}"), v.clone());
    }
    out
}

/// Back from engine attributes: the message attributes, and the system attributes.
/// Named message attributes, and named system attributes.
pub type Split = (Vec<(String, SqsAttribute)>, Vec<(String, String)>);

pub fn from_engine(attrs: &Attributes) -> Split {
    let mut user = Vec::new();
    let mut system = Vec::new();
    for (k, v) in attrs {
        if k.starts_with(TYPE_PREFIX) {
            continue;
        }
        if let Some(s) = k.strip_prefix(SYSTEM_PREFIX) {
            system.push((s.to_string(), v.clone()));
            continue;
        }
        let data_type = attrs
            .get(&format!("{TYPE_PREFIX}{k}"))
            .cloned()
            .unwrap_or_else(|| "String".to_string());
        let a = if data_type.starts_with("Binary") {
            SqsAttribute {
                data_type,
                string: None,
                binary: Some(B64.decode(v).unwrap_or_else(|_| v.as_bytes().to_vec())),
            }
        } else {
            SqsAttribute {
                data_type,
                string: Some(v.clone()),
                binary: None,
            }
        };
        user.push((k.clone(), a));
    }
    (user, system)
}

/// Does `name` pass a MessageAttributeNames filter (`All`, `.*`, `prefix.*`, or exact names)?
pub fn wanted(filters: &[String], name: &str) -> bool {
    filters.iter().any(|f| {
        f == "All"
            || f == ".*"
            || f == name
            || f.strip_suffix(".*")
                .is_some_and(|p| name.starts_with(p) && name[p.len()..].starts_with('.'))
    })
}
