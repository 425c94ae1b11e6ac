//! Input validators shared by the engine's services: numeric ranges, queue and resource names,
//! message attributes, FIFO ids, and the parts of an outgoing HTTP request (URL, method,
//! headers) that subscriptions and timers both configure. Each error names the field and the
//! limit, so every front end can show it as is.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};
use crate::limits;

/// `v` must lie in `min..=max`.
pub fn range(field: &str, v: u64, min: u64, max: u64) -> Result<()> {
    if v < min || v > max {
        return Err(EngineError::invalid(
            field,
            format!("is {v}; must be between {min} and {max}"),
        ));
    }
    Ok(())
}

/// A finite `v` in `min..=max`.
pub fn frange(field: &str, v: f64, min: f64, max: f64) -> Result<()> {
    if !v.is_finite() || v < min || v > max {
        return Err(EngineError::invalid(
            field,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(())
}

/// A validated queue name: 1-80 chars of `[A-Za-z0-9_-]`, plus an optional `.fifo` suffix.
pub fn validate_queue_name(name: &str) -> Result<()> {
    let bad = |reason: &str| EngineError::InvalidQueueName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    if stem.is_empty() {
        return Err(bad(
            "must have 1 to 80 characters before an optional .fifo suffix",
        ));
    }
    if stem.len() > limits::QUEUE_NAME_MAX {
        return Err(bad(&format!(
            "is {} characters long; the limit is {} (plus an optional .fifo suffix)",
            stem.len(),
            limits::QUEUE_NAME_MAX
        )));
    }
    if !stem
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad(
            "may contain only A-Z, a-z, 0-9, '-' and '_' (plus an optional .fifo suffix)",
        ));
    }
    Ok(())
}

/// Names of subscriptions and schedules: 1 to `NAME_MAX` characters of `[A-Za-z0-9_-]`.
pub const NAME_MAX: usize = 64;

pub fn validate_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > NAME_MAX
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(EngineError::invalid(
            field,
            format!("must have 1 to {NAME_MAX} characters of A-Z, a-z, 0-9, '-' and '_'"),
        ));
    }
    Ok(())
}

/// FIFO group and deduplication ids: 1-128 printable ASCII characters (as SQS allows).
pub fn validate_fifo_id(v: &str, field: &str) -> Result<()> {
    if v.is_empty() || v.len() > limits::FIFO_ID_MAX || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(EngineError::invalid(
            field,
            format!(
                "must be 1 to {} printable ASCII characters (letters, digits, punctuation)",
                limits::FIFO_ID_MAX
            ),
        ));
    }
    Ok(())
}

/// At most `ATTRIBUTES_MAX` attributes, names of 1 to `ATTRIBUTE_NAME_MAX` bytes.
pub fn validate_attributes(attrs: &BTreeMap<String, String>, field: &str) -> Result<()> {
    if attrs.len() > limits::ATTRIBUTES_MAX {
        return Err(EngineError::invalid(
            field,
            format!(
                "has {} attributes; the limit is {}",
                attrs.len(),
                limits::ATTRIBUTES_MAX
            ),
        ));
    }
    for k in attrs.keys() {
        if k.is_empty() || k.len() > limits::ATTRIBUTE_NAME_MAX {
            return Err(EngineError::invalid(
                field,
                format!(
                    "attribute name {:?} must have 1 to {} bytes",
                    k.chars().take(40).collect::<String>(),
                    limits::ATTRIBUTE_NAME_MAX
                ),
            ));
        }
    }
    Ok(())
}

/// 1 to `ACK_BATCH_MAX` receipts per call.
pub fn check_receipt_count(n: usize) -> Result<()> {
    range("receipts", n as u64, 1, limits::ACK_BATCH_MAX as u64).map_err(|_| {
        EngineError::invalid(
            "receipts",
            format!(
                "contains {n} receipts; must be between 1 and {}",
                limits::ACK_BATCH_MAX
            ),
        )
    })
}

/// Longest URL a subscription or timer may call.
pub const URL_MAX: usize = 2048;
/// Extra headers a subscription or timer may set.
pub const HEADERS_MAX: usize = 32;

/// An absolute http(s) URL with a host.
pub fn validate_url(field: &str, s: &str) -> Result<()> {
    if s.len() > URL_MAX {
        return Err(EngineError::invalid(
            field,
            format!("is {} bytes long; the limit is {URL_MAX}", s.len()),
        ));
    }
    match url::Url::parse(s) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(EngineError::invalid(
            field,
            "must be an absolute http:// or https:// URL with a host",
        )),
        Err(e) => Err(EngineError::invalid(
            field,
            format!("is not a valid absolute URL ({e})"),
        )),
    }
}

pub fn validate_method(field: &str, m: &str) -> Result<()> {
    match m {
        "POST" | "PUT" | "PATCH" | "GET" | "DELETE" => Ok(()),
        _ => Err(EngineError::invalid(
            field,
            "must be one of POST, PUT, PATCH, GET, DELETE",
        )),
    }
}

/// Extra request headers: valid names, visible-ASCII values, none that sluice sets itself.
pub fn validate_headers(field: &str, h: &BTreeMap<String, String>) -> Result<()> {
    if h.len() > HEADERS_MAX {
        return Err(EngineError::invalid(
            field,
            format!("has {} headers; the limit is {HEADERS_MAX}", h.len()),
        ));
    }
    for (k, v) in h {
        let lk = k.to_ascii_lowercase();
        let token = !k.is_empty()
            && k.len() <= 256
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(EngineError::invalid(
                field,
                format!("{k:?} is not a valid header name"),
            ));
        }
        if matches!(
            lk.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection" | "upgrade" | "te"
        ) || lk.starts_with("webhook-")
            || lk.starts_with("sluice-")
        {
            return Err(EngineError::invalid(
                field,
                format!("{k:?} is set by sluice and cannot be configured"),
            ));
        }
        if v.len() > 8192 || !v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return Err(EngineError::invalid(
                field,
                format!("value of {k:?} must be at most 8192 visible ASCII characters"),
            ));
        }
    }
    Ok(())
}
