//! Which messages a subscription takes: a filter on message attributes in the SNS
//! filter-policy JSON form, and Svix's `event_types` (the `event-type` attribute). A message
//! that does not match is not copied to that subscription at all (`fanout.rs`) and is counted
//! in its `filtered` counter. The policy is parsed once, when the subscription is stored, into
//! [`FilterPolicy`]; matching a message is then a few map lookups and comparisons.
//!
//! Policy: `{"KEY": [condition, ...], ...}`. Every key must match (AND); a key matches when
//! any of its conditions does (OR). Conditions: a string (equal), a number (numerically equal),
//! `{"prefix": "s"}`, `{"anything-but": value | [values] | {"prefix": "s"}}`, `{"numeric":
//! [op, n]}` or `[op, n, op, n]` (`=`, `<`, `<=`, `>`, `>=`), `{"exists": true|false}`. Every
//! condition but `"exists": false` needs the attribute to be present, as in SNS.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Millis;
use crate::error::{EngineError, Result};
use crate::model::{Attributes, MessageId, NewMessage};

use super::Push;

/// Limits of filters (documented in docs/webhooks.md).
pub mod limits {
    /// Attribute keys in one policy (a message has at most 32 attributes).
    pub const KEYS_MAX: usize = 32;
    /// Conditions under one key.
    pub const CONDITIONS_MAX: usize = 150;
    /// Length of a string in a condition, in bytes.
    pub const STRING_MAX: usize = 1024;
    /// Entries of `event_types`.
    pub const EVENT_TYPES_MAX: usize = 100;
    /// Length of an event type, in bytes.
    pub const EVENT_TYPE_MAX: usize = 256;
}

/// The attribute `event_types` match.
pub const EVENT_TYPE_ATTR: &str = "event-type";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Exact(String),
    Number(f64),
    Prefix(String),
    /// Present, and none of these match.
    AnythingBut(Vec<Cond>),
    Numeric(Vec<(Op, f64)>),
    Exists(bool),
}

impl Cond {
    /// Does the attribute's value (None: absent) match?
    fn matches(&self, v: Option<&str>) -> bool {
        let Some(v) = v else {
            return *self == Cond::Exists(false);
        };
        match self {
            Cond::Exact(s) => v == s,
            Cond::Number(n) => number(v) == Some(*n),
            Cond::Prefix(p) => v.starts_with(p.as_str()),
            Cond::AnythingBut(not) => !not.iter().any(|c| c.matches(Some(v))),
            Cond::Numeric(cmp) => number(v).is_some_and(|x| {
                cmp.iter().all(|&(op, n)| match op {
                    Op::Eq => x == n,
                    Op::Lt => x < n,
                    Op::Le => x <= n,
                    Op::Gt => x > n,
                    Op::Ge => x >= n,
                })
            }),
            Cond::Exists(e) => *e,
        }
    }
}

fn number(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Each attribute key of a policy with its conditions.
type Rules = Vec<(String, Vec<Cond>)>;

/// A parsed filter policy. It serializes back to the JSON it was given.
#[derive(Debug, Clone)]
pub struct FilterPolicy {
    inner: Arc<(Value, Rules)>,
}

impl PartialEq for FilterPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.inner.0 == other.inner.0
    }
}

impl Serialize for FilterPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.inner.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for FilterPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        FilterPolicy::parse(v).map_err(serde::de::Error::custom)
    }
}

fn bad(at: impl Into<String>, message: impl Into<String>) -> EngineError {
    EngineError::invalid(at, message)
}

fn string(at: &str, s: &str) -> Result<String> {
    if s.len() > limits::STRING_MAX {
        return Err(bad(
            at,
            format!(
                "is {} bytes long; the limit is {}",
                s.len(),
                limits::STRING_MAX
            ),
        ));
    }
    Ok(s.to_string())
}

fn finite(at: &str, v: &Value) -> Result<f64> {
    v.as_f64()
        .filter(|n| n.is_finite())
        .ok_or_else(|| bad(at, format!("must be a number, not {v}")))
}

/// A string or number condition (an exact match, or one value of `anything-but`).
fn value_cond(at: &str, v: &Value) -> Result<Cond> {
    match v {
        Value::String(s) => Ok(Cond::Exact(string(at, s)?)),
        Value::Number(_) => Ok(Cond::Number(finite(at, v)?)),
        other => Err(bad(
            at,
            format!("must be a string, a number or an object with one operator, not {other}"),
        )),
    }
}

fn prefix(at: &str, v: &Value) -> Result<Cond> {
    match v {
        Value::String(s) => Ok(Cond::Prefix(string(at, s)?)),
        other => Err(bad(at, format!("must be a string, not {other}"))),
    }
}

fn numeric(at: &str, v: &Value) -> Result<Cond> {
    let parts = v.as_array().ok_or_else(|| {
        bad(
            at,
            "must be [op, number] or [op, number, op, number] with op one of =, <, <=, >, >=",
        )
    })?;
    if parts.is_empty() || parts.len() > 4 || parts.len() % 2 != 0 {
        return Err(bad(
            at,
            format!(
                "has {} entries; give [op, number] or a range [op, number, op, number]",
                parts.len()
            ),
        ));
    }
    let mut cmp = Vec::new();
    for (i, pair) in parts.chunks(2).enumerate() {
        let op = match pair[0].as_str() {
            Some("=") => Op::Eq,
            Some("<") => Op::Lt,
            Some("<=") => Op::Le,
            Some(">") => Op::Gt,
            Some(">=") => Op::Ge,
            _ => {
                return Err(bad(
                    format!("{at}[{}]", 2 * i),
                    format!("{} is not one of =, <, <=, >, >=", pair[0]),
                ))
            }
        };
        cmp.push((op, finite(&format!("{at}[{}]", 2 * i + 1), &pair[1])?));
    }
    if cmp.len() == 2 {
        let lower = matches!(cmp[0].0, Op::Gt | Op::Ge);
        let upper = matches!(cmp[1].0, Op::Lt | Op::Le);
        if !lower || !upper || cmp[0].1 > cmp[1].1 {
            return Err(bad(
                at,
                "a range is a lower bound (> or >=) then a higher upper bound (< or <=)",
            ));
        }
    }
    Ok(Cond::Numeric(cmp))
}

fn anything_but(at: &str, v: &Value) -> Result<Cond> {
    let not = match v {
        Value::Array(vs) if !vs.is_empty() => vs
            .iter()
            .enumerate()
            .map(|(i, v)| value_cond(&format!("{at}[{i}]"), v))
            .collect::<Result<Vec<_>>>()?,
        Value::Object(m) if m.len() == 1 && m.contains_key("prefix") => {
            vec![prefix(&format!("{at}.prefix"), &m["prefix"])?]
        }
        Value::String(_) | Value::Number(_) => vec![value_cond(at, v)?],
        _ => {
            return Err(bad(
                at,
                "must be a string, a number, a non-empty list of them, or {\"prefix\": \"…\"}",
            ))
        }
    };
    Ok(Cond::AnythingBut(not))
}

fn condition(at: &str, v: &Value) -> Result<Cond> {
    let Value::Object(m) = v else {
        return value_cond(at, v);
    };
    let mut it = m.iter();
    let (Some((op, arg)), None) = (it.next(), it.next()) else {
        return Err(bad(at, "an operator object has exactly one key"));
    };
    let at = format!("{at}.{op}");
    match op.as_str() {
        "prefix" => prefix(&at, arg),
        "anything-but" => anything_but(&at, arg),
        "numeric" => numeric(&at, arg),
        "exists" => arg
            .as_bool()
            .map(Cond::Exists)
            .ok_or_else(|| bad(&at, "must be true or false")),
        _ => Err(bad(
            at,
            "is not a supported operator (prefix, anything-but, numeric, exists)",
        )),
    }
}

impl FilterPolicy {
    /// Parse and check a policy. Errors name the offending place: `filter.KEY[i].OPERATOR`.
    pub fn parse(v: Value) -> Result<FilterPolicy> {
        let Value::Object(m) = &v else {
            return Err(bad(
                "filter",
                "must be an object of attribute names to lists of conditions",
            ));
        };
        if m.is_empty() || m.len() > limits::KEYS_MAX {
            return Err(bad(
                "filter",
                format!(
                    "has {} keys; give 1 to {} attribute names",
                    m.len(),
                    limits::KEYS_MAX
                ),
            ));
        }
        let mut rules = Vec::with_capacity(m.len());
        for (key, conds) in m {
            let at = format!("filter.{key}");
            if key.is_empty() || key.len() > 256 {
                return Err(bad(&at, "attribute names have 1 to 256 bytes"));
            }
            let Value::Array(list) = conds else {
                return Err(bad(
                    &at,
                    format!("must be a list of conditions (e.g. [\"a\", \"b\"]), not {conds}"),
                ));
            };
            if list.is_empty() || list.len() > limits::CONDITIONS_MAX {
                return Err(bad(
                    &at,
                    format!(
                        "has {} conditions; give 1 to {}",
                        list.len(),
                        limits::CONDITIONS_MAX
                    ),
                ));
            }
            let parsed = list
                .iter()
                .enumerate()
                .map(|(i, c)| condition(&format!("{at}[{i}]"), c))
                .collect::<Result<Vec<_>>>()?;
            rules.push((key.clone(), parsed));
        }
        Ok(FilterPolicy {
            inner: Arc::new((v, rules)),
        })
    }

    /// The policy as it was given.
    pub fn json(&self) -> &Value {
        &self.inner.0
    }

    /// Does a message with these attributes match? Every key must, each by any condition.
    pub fn matches(&self, attributes: &Attributes) -> bool {
        self.inner.1.iter().all(|(key, conds)| {
            let v = attributes.get(key).map(String::as_str);
            conds.iter().any(|c| c.matches(v))
        })
    }
}

/// Check a subscription's `event_types`.
pub fn validate_event_types(types: &[String]) -> Result<()> {
    if types.len() > limits::EVENT_TYPES_MAX {
        return Err(bad(
            "event_types",
            format!(
                "has {} entries; the limit is {}",
                types.len(),
                limits::EVENT_TYPES_MAX
            ),
        ));
    }
    for (i, t) in types.iter().enumerate() {
        if t.is_empty() || t.len() > limits::EVENT_TYPE_MAX {
            return Err(bad(
                format!("event_types[{i}]"),
                format!("must have 1 to {} bytes", limits::EVENT_TYPE_MAX),
            ));
        }
    }
    Ok(())
}

/// What a subscription selects: its filter and its event types, both required to match.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    pub filter: Option<FilterPolicy>,
    pub event_types: Vec<String>,
}

impl Selector {
    /// The selector of a subscription that selects something (None: it takes every message).
    pub fn of(filter: &Option<FilterPolicy>, event_types: &[String]) -> Option<Selector> {
        (filter.is_some() || !event_types.is_empty()).then(|| Selector {
            filter: filter.clone(),
            event_types: event_types.to_vec(),
        })
    }

    pub fn matches(&self, attributes: &Attributes) -> bool {
        (self.event_types.is_empty()
            || attributes
                .get(EVENT_TYPE_ATTR)
                .is_some_and(|t| self.event_types.iter().any(|e| e == t)))
            && self.filter.as_ref().is_none_or(|f| f.matches(attributes))
    }
}

impl Push {
    /// Fan a validated batch out to a queue whose subscriptions select: each copy queue gets
    /// the messages its selector takes (in batch order) and counts the others as `filtered`,
    /// all in the same group commit. Returns each message's id: the stored one where a copy
    /// was stored (a FIFO repeat answers the earlier message's id), else its own.
    pub(super) async fn fan_out_selected(
        &self,
        targets: Vec<(String, Option<Selector>)>,
        batch: Vec<NewMessage>,
        now: Millis,
    ) -> Result<Vec<MessageId>> {
        let store = &self.core.store;
        let mut copies = Vec::new();
        let mut filtered = Vec::new();
        for (child, selector) in targets {
            let take: Vec<usize> = (0..batch.len())
                .filter(|&i| {
                    selector
                        .as_ref()
                        .is_none_or(|s| s.matches(&batch[i].attributes))
                })
                .collect();
            let skipped = (batch.len() - take.len()) as u64;
            if skipped > 0 {
                filtered.push((child.clone(), skipped));
            }
            if !take.is_empty() {
                copies.push((child, take));
            }
        }
        // A subscription that takes every message stores the batch as it is; one that skips
        // some stores a copy of the rest.
        let chosen: Vec<Option<Vec<NewMessage>>> = copies
            .iter()
            .map(|(_, take)| {
                (take.len() < batch.len()).then(|| take.iter().map(|&i| batch[i].clone()).collect())
            })
            .collect();
        let publishes = copies
            .iter()
            .zip(&chosen)
            .map(|((child, _), msgs)| store.publish(child, msgs.as_deref().unwrap_or(&batch), now));
        let counts = filtered
            .iter()
            .map(|(child, n)| store.count_filtered(child, *n, now));
        let (published, counted) = futures::future::join(
            futures::future::join_all(publishes),
            futures::future::join_all(counts),
        )
        .await;
        counted.into_iter().collect::<Result<Vec<()>>>()?;
        let mut ids: Vec<Option<MessageId>> = vec![None; batch.len()];
        for ((child, take), stored) in copies.iter().zip(published) {
            for (&i, id) in take.iter().zip(stored?) {
                ids[i].get_or_insert(id);
            }
            self.core.wake(child, take.len());
        }
        Ok(ids
            .into_iter()
            .zip(&batch)
            .map(|(id, m)| id.unwrap_or(m.id))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(kv: &[(&str, &str)]) -> Attributes {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn policy(v: Value) -> FilterPolicy {
        FilterPolicy::parse(v).unwrap()
    }

    #[test]
    fn sns_operators_match_as_documented() {
        let p = policy(json!({
            "store": ["example_corp", {"prefix": "acme-"}],
            "price": [{"numeric": [">=", 100, "<", 200]}, 42],
            "event": [{"anything-but": ["order_cancelled", "order_refunded"]}],
            "customer_interests": [{"exists": true}],
        }));
        let base = [
            ("store", "acme-eu"),
            ("price", "150.5"),
            ("event", "order_placed"),
            ("customer_interests", "x"),
        ];
        assert!(p.matches(&attrs(&base)));
        let with = |k: &str, v: &str| {
            let mut a = attrs(&base);
            a.insert(k.into(), v.into());
            a
        };
        assert!(p.matches(&with("store", "example_corp")));
        assert!(!p.matches(&with("store", "example")));
        assert!(
            p.matches(&with("price", "42.0")),
            "numbers compare as numbers"
        );
        assert!(p.matches(&with("price", "100")));
        assert!(!p.matches(&with("price", "200")));
        assert!(!p.matches(&with("price", "cheap")));
        assert!(!p.matches(&with("event", "order_refunded")));
        let mut missing = attrs(&base);
        missing.remove("customer_interests");
        assert!(!p.matches(&missing), "AND across keys");
        missing = attrs(&base);
        missing.remove("event");
        assert!(!p.matches(&missing), "anything-but needs the attribute");
        let absent = policy(json!({"trace": [{"exists": false}]}));
        assert!(absent.matches(&attrs(&[])));
        assert!(!absent.matches(&attrs(&[("trace", "1")])));
        let not_prefix = policy(json!({"k": [{"anything-but": {"prefix": "test-"}}]}));
        assert!(not_prefix.matches(&attrs(&[("k", "prod-1")])));
        assert!(!not_prefix.matches(&attrs(&[("k", "test-1")])));
        let eq = policy(json!({"n": [{"numeric": ["=", 3]}], "s": [5]}));
        assert!(eq.matches(&attrs(&[("n", "3.0"), ("s", "5")])));
        assert!(!eq.matches(&attrs(&[("n", "3.1"), ("s", "5")])));
    }

    #[test]
    fn errors_point_at_the_offending_key() {
        for (v, at) in [
            (json!([]), "filter:"),
            (json!({}), "filter:"),
            (json!({"a": "x"}), "filter.a:"),
            (json!({"a": []}), "filter.a:"),
            (json!({"a": ["x", {"regex": "."}]}), "filter.a[1].regex:"),
            (
                json!({"a": [{"numeric": ["~", 1]}]}),
                "filter.a[0].numeric[0]:",
            ),
            (
                json!({"a": [{"numeric": [">", "x"]}]}),
                "filter.a[0].numeric[1]:",
            ),
            (
                json!({"a": [{"numeric": ["<", 5, ">", 1]}]}),
                "filter.a[0].numeric:",
            ),
            (json!({"a": [{"exists": "yes"}]}), "filter.a[0].exists:"),
            (
                json!({"a": [{"anything-but": [true]}]}),
                "filter.a[0].anything-but[0]:",
            ),
            (json!({"a": [null]}), "filter.a[0]:"),
            (json!({"a": [{"prefix": 1, "x": 2}]}), "filter.a[0]:"),
        ] {
            let e = FilterPolicy::parse(v.clone()).unwrap_err().to_string();
            assert!(e.starts_with(at), "{v}: {e}");
        }
        assert!(validate_event_types(&["".into()])
            .unwrap_err()
            .to_string()
            .starts_with("event_types[0]:"));
    }

    #[test]
    fn event_types_and_filter_both_apply_and_round_trip() {
        let p = policy(json!({"region": ["eu"]}));
        let s = Selector::of(&Some(p.clone()), &["order.created".into()]).unwrap();
        assert!(s.matches(&attrs(&[("event-type", "order.created"), ("region", "eu")])));
        assert!(!s.matches(&attrs(&[("event-type", "order.created"), ("region", "us")])));
        assert!(!s.matches(&attrs(&[("region", "eu")])));
        assert!(Selector::of(&None, &[]).is_none());
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(text, r#"{"region":["eu"]}"#);
        assert_eq!(serde_json::from_str::<FilterPolicy>(&text).unwrap(), p);
    }
}
