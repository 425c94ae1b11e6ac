//! What a timer is: its target ([`TimerSpec`], stored as the body of its message in the
//! internal queue `~timers`), where it stands ([`TimerStatus`]), and the outcome codes the
//! archive keeps for finished timers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::model::{Attributes, MessageId};
use crate::validate::{
    range, validate_headers, validate_method, validate_queue_name, validate_url,
};

/// The internal queue of pending timers.
pub const TIMER_QUEUE: &str = "~timers";
/// Timer bodies (and schedule bodies) are at most this long.
pub const TIMER_BODY_MAX: usize = 256 * 1024;
/// Attempts of a timer when it names none.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// Archive codes.
pub const SUCCEEDED: u8 = 1;
pub const FAILED: u8 = 2;
pub const CANCELLED: u8 = 3;

fn default_method() -> String {
    "POST".into()
}

/// What a timer does when it is due: an HTTP call, or a publish to a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body (or message body for a queue target), UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: Attributes,
    /// httpqueue's rule: call `{url}/{id}`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append_id: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The schedule this firing belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// A subscription's failure callback (`QUEUE/NAME`): the timer lane signs the call with
    /// that subscription's secrets in force when it is made (none are stored here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_for: Option<String>,
    #[serde(default)]
    pub due_at: Millis,
    #[serde(default)]
    pub created_at: Millis,
}

impl TimerSpec {
    pub fn http(url: impl Into<String>) -> Self {
        TimerSpec {
            url: Some(url.into()),
            method: default_method(),
            headers: BTreeMap::new(),
            body: None,
            queue: None,
            attributes: Attributes::new(),
            append_id: false,
            max_attempts: None,
            schedule: None,
            signed_for: None,
            due_at: 0,
            created_at: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        match (&self.url, &self.queue) {
            (Some(u), None) => {
                validate_url("url", u)?;
                validate_method("method", &self.method)?;
                validate_headers("headers", &self.headers)?;
            }
            (None, Some(q)) => validate_queue_name(q)?,
            _ => {
                return Err(EngineError::invalid(
                    "url",
                    "give exactly one target: \"url\" (an HTTP call) or \"queue\" (a publish)",
                ))
            }
        }
        if self.body.as_ref().map_or(0, |b| b.len()) > TIMER_BODY_MAX {
            return Err(EngineError::invalid(
                "body",
                format!("is longer than {TIMER_BODY_MAX} bytes"),
            ));
        }
        if let Some(m) = self.max_attempts {
            range("max_attempts", m as u64, 1, 100)?;
        }
        Ok(())
    }

    /// The URL to call: with httpqueue's rule, the timer id becomes the last path segment
    /// (before any query).
    pub fn call_url(&self, id: MessageId) -> String {
        let url = self.url.clone().unwrap_or_default();
        if !self.append_id {
            return url;
        }
        let segment = id.to_string();
        match url::Url::parse(&url) {
            Ok(mut u) => {
                let path = u.path().trim_end_matches('/').to_string();
                u.set_path(&format!("{path}/{segment}"));
                u.to_string()
            }
            Err(_) => format!("{}/{segment}", url.trim_end_matches('/')),
        }
    }
}

/// Where a timer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerStatus {
    Scheduled,
    Delivering,
    Retrying,
    Succeeded,
    Failed,
    Cancelled,
}

impl TimerStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TimerStatus::Succeeded | TimerStatus::Failed | TimerStatus::Cancelled
        )
    }

    /// The status's name, as the API shows it.
    pub fn label(self) -> &'static str {
        match self {
            TimerStatus::Scheduled => "scheduled",
            TimerStatus::Delivering => "delivering",
            TimerStatus::Retrying => "retrying",
            TimerStatus::Succeeded => "succeeded",
            TimerStatus::Failed => "failed",
            TimerStatus::Cancelled => "cancelled",
        }
    }

    pub(crate) fn of_code(code: u8) -> TimerStatus {
        match code {
            SUCCEEDED => TimerStatus::Succeeded,
            CANCELLED => TimerStatus::Cancelled,
            _ => TimerStatus::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimerInfo {
    pub id: MessageId,
    pub status: TimerStatus,
    /// When it is (was first) due; None for archived timers (only the outcome is kept).
    pub due_at: Option<Millis>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_ids_go_into_the_path() {
        let call = |url: &str| {
            TimerSpec {
                append_id: true,
                ..TimerSpec::http(url)
            }
            .call_url(MessageId(1))
        };
        let id = MessageId(1).to_string();
        assert_eq!(call("http://h/cb"), format!("http://h/cb/{id}"));
        assert_eq!(call("http://h/cb/"), format!("http://h/cb/{id}"));
        assert_eq!(
            call("http://h/cb?tenant=acme"),
            format!("http://h/cb/{id}?tenant=acme")
        );
        assert_eq!(call("http://h"), format!("http://h/{id}"));
        assert_eq!(
            TimerSpec::http("http://h/x").call_url(MessageId(1)),
            "http://h/x"
        );
    }
}
