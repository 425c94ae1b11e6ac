//! API keys: who may call what. Keys come from `--auth-keys FILE` (or `[[key]]` tables in the
//! main config file). A request carries `Authorization: Bearer KEY` (the SQS API: a SigV4
//! signature by a configured access key pair). Each key has a role and, optionally, queue name
//! globs. Keys are kept only as BLAKE3 hashes and compared in constant time; they are never
//! logged. Without keys, every request is allowed (and the server refuses to listen beyond
//! loopback unless `--insecure-no-auth`).
//!
//! The route → permission table lives here ([`need`]), so handlers stay free of access rules.

use std::path::Path;

use anyhow::{bail, Context};
use axum::http::{HeaderMap, Method};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: queue settings, subscriptions, timers, schedules, ingestion, purge, redrive.
    Admin,
    /// Publish to the key's queues, and read their settings and counts.
    Publish,
    /// Receive, ack, nack, peek and stream from the key's queues, and read their settings.
    Consume,
    PublishConsume,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Publish => "publish",
            Role::Consume => "consume",
            Role::PublishConsume => "publish_consume",
        }
    }
}

/// One `[[key]]` table as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// A bearer key (at least 16 characters).
    pub key: Option<String>,
    /// Or an SQS access key pair (SigV4).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub role: Role,
    /// Queue name globs (`orders*`); absent means every queue.
    pub queues: Option<Vec<String>>,
    /// May this key create a queue by using it (publishing to a missing queue, a miniqueue
    /// subscribe)? Default: only admin keys. Within its globs, and within the headroom
    /// `--max-queues` keeps for explicit creation.
    pub create_queues: Option<bool>,
    /// A label for logs and errors (the key itself is never shown).
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    key: Vec<KeySpec>,
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Health, readiness, the dashboard's static files, the OpenAPI document.
    Public,
    /// Any valid key (server facts, metrics, listing queues).
    AnyKey,
    Publish(String),
    Consume(String),
    /// Read a queue's settings and counts: any role that covers the queue.
    Read(String),
    Admin,
    /// The SQS API checks SigV4 itself and asks [`Auth::sqs_allows`] per action.
    Sqs,
}

/// A caller, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    pub label: String,
    role: Role,
    queues: Option<GlobSet>,
    create_queues: bool,
}

impl Principal {
    /// May this key create queues by using them (see `KeySpec::create_queues`)?
    pub fn may_create_queues(&self) -> bool {
        self.create_queues
    }

    /// Does this key's `queues` globs cover `queue`? (Lists show a key only its queues.)
    pub fn covers(&self, queue: &str) -> bool {
        self.queues.as_ref().is_none_or(|g| g.is_match(queue))
    }

    /// Is this caller allowed what `need` asks? `Err` carries the reason for a 403.
    pub fn allows(&self, need: &Need) -> Result<(), String> {
        let queue = self.allows_role(need)?;
        if let Some(q) = queue {
            if !self.covers(q) {
                return Err(format!(
                    "key {:?} does not cover queue {q:?} (see its queues globs)",
                    self.label
                ));
            }
        }
        Ok(())
    }

    /// The role half of [`Principal::allows`]: may this role do it at all, whatever the queue?
    /// Returns the queue still to be checked, if any.
    fn allows_role<'n>(&self, need: &'n Need) -> Result<Option<&'n String>, String> {
        let role = self.role;
        let (ok, what, queue) = match need {
            Need::Public | Need::AnyKey | Need::Sqs => (true, "", None),
            Need::Admin => (role == Role::Admin, "this route needs an admin key", None),
            Need::Publish(q) => (
                matches!(role, Role::Admin | Role::Publish | Role::PublishConsume),
                "publishing needs a publish, publish_consume or admin key",
                Some(q),
            ),
            Need::Consume(q) => (
                matches!(role, Role::Admin | Role::Consume | Role::PublishConsume),
                "consuming needs a consume, publish_consume or admin key",
                Some(q),
            ),
            Need::Read(q) => (true, "", Some(q)),
        };
        if !ok {
            return Err(format!(
                "{what}; key {:?} has role {}",
                self.label,
                role.name()
            ));
        }
        Ok(queue)
    }
}

struct Entry {
    hash: blake3::Hash,
    principal: Principal,
}

#[derive(Default)]
pub struct Auth {
    bearer: Vec<Entry>,
    /// SQS key pairs: (access key id, secret, principal).
    sqs: Vec<(String, String, Principal)>,
}

impl Auth {
    /// Build from key tables (from `--auth-keys` and the config file).
    pub fn new(specs: &[KeySpec]) -> anyhow::Result<Auth> {
        let mut auth = Auth::default();
        for (i, s) in specs.iter().enumerate() {
            let label = s.name.clone().unwrap_or_else(|| format!("key #{}", i + 1));
            let queues = match &s.queues {
                None => None,
                Some(globs) => {
                    let mut b = GlobSetBuilder::new();
                    for g in globs {
                        b.add(Glob::new(g).with_context(|| format!("{label}: queues glob {g:?}"))?);
                    }
                    Some(b.build()?)
                }
            };
            let principal = Principal {
                label: label.clone(),
                role: s.role,
                queues,
                create_queues: s.create_queues.unwrap_or(s.role == Role::Admin),
            };
            match (&s.key, &s.access_key_id, &s.secret_access_key) {
                (Some(k), None, None) => {
                    if k.len() < 16 {
                        bail!(
                            "{label}: key is {} characters; at least 16 are required",
                            k.len()
                        );
                    }
                    if k.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        bail!("{label}: key must not contain spaces or control characters");
                    }
                    let hash = blake3::hash(k.as_bytes());
                    if auth.bearer.iter().any(|e| e.hash == hash) {
                        bail!("{label}: the same key is listed twice");
                    }
                    auth.bearer.push(Entry { hash, principal });
                }
                (None, Some(id), Some(secret)) => {
                    if secret.len() < 16 {
                        bail!("{label}: secret_access_key is shorter than 16 characters");
                    }
                    auth.sqs.push((id.clone(), secret.clone(), principal));
                }
                _ => bail!("{label}: give either key, or access_key_id and secret_access_key"),
            }
        }
        Ok(auth)
    }

    pub fn load(path: &Path) -> anyhow::Result<Vec<KeySpec>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --auth-keys {}", path.display()))?;
        let f: KeyFile = toml::from_str(&text)
            .with_context(|| format!("parsing --auth-keys {}", path.display()))?;
        if f.key.is_empty() {
            bail!("--auth-keys {}: no [[key]] tables", path.display());
        }
        Ok(f.key)
    }

    /// Bearer keys and SQS pairs configured.
    pub fn counts(&self) -> (usize, usize) {
        (self.bearer.len(), self.sqs.len())
    }

    /// Are keys configured (is access checked at all)?
    pub fn enabled(&self) -> bool {
        !self.bearer.is_empty() || !self.sqs.is_empty()
    }

    /// The SQS key pairs, for SigV4 verification.
    pub fn sqs_credentials(&self) -> Vec<(String, String)> {
        self.sqs
            .iter()
            .map(|(id, secret, _)| (id.clone(), secret.clone()))
            .collect()
    }

    /// The principal of a bearer key. Every configured key is compared (constant time per
    /// comparison, no early exit), so timing does not tell which prefix matched.
    pub fn bearer(&self, headers: &HeaderMap) -> Result<Principal, &'static str> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Err("an API key is required: send Authorization: Bearer KEY");
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or("the Authorization header must be Bearer KEY")?;
        let hash = blake3::hash(token.as_bytes());
        let mut found = None;
        for e in &self.bearer {
            // blake3::Hash's equality is constant-time.
            if e.hash == hash {
                found = Some(&e.principal);
            }
        }
        found.cloned().ok_or("this API key is not valid")
    }

    /// The principal of an SQS access key id (None for --sqs-credentials pairs, which see all).
    pub fn sqs_principal(&self, access_key_id: &str) -> Option<Principal> {
        self.sqs
            .iter()
            .find(|(id, _, _)| id == access_key_id)
            .map(|(_, _, p)| p.clone())
    }

    /// Before the body is read (so before the queue is known): may the role of the pair
    /// `access_key_id` claims run `action` at all?
    pub fn sqs_role_allows(&self, access_key_id: &str, action: &str) -> Result<(), String> {
        match self.sqs.iter().find(|(id, _, _)| id == access_key_id) {
            Some((_, _, p)) => p.allows_role(&sqs_need(action, None)).map(|_| ()),
            None => Ok(()),
        }
    }

    /// After SigV4 verified `access_key_id`: may it run `action` on `queue` (if any)?
    pub fn sqs_allows(
        &self,
        access_key_id: &str,
        action: &str,
        queue: Option<&str>,
    ) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        match self.sqs.iter().find(|(id, _, _)| id == access_key_id) {
            Some((_, _, p)) => p.allows(&sqs_need(action, queue)),
            // The signature was verified, so the pair is one of --sqs-credentials: those
            // predate roles and act as admin.
            None => Ok(()),
        }
    }
}

/// What a publish by `caller` does when its queue is missing: create it (no keys configured,
/// or a key that may create queues) or answer that it does not exist.
pub fn if_missing(caller: Option<&Principal>) -> sluice_engine::IfMissing {
    match caller {
        Some(p) if !p.may_create_queues() => sluice_engine::IfMissing::Refuse,
        _ => sluice_engine::IfMissing::Create,
    }
}

/// May `caller` see the secrets of `queue`'s subscriptions (header values, credentials in the
/// URL)? Only a caller that may change them (what `PUT` of a subscription needs), or anyone
/// when no keys are configured (`caller` is None).
pub fn sees_subscription_secrets(caller: Option<&Principal>, queue: &str) -> bool {
    let change = need(
        &Method::PUT,
        "/v1/queues/{queue}/subscriptions/{name}",
        Some(queue),
        "",
    );
    caller.is_none_or(|p| p.allows(&change).is_ok())
}

/// What an SQS action needs.
fn sqs_need(action: &str, queue: Option<&str>) -> Need {
    let q = || queue.unwrap_or_default().to_string();
    match action {
        "SendMessage" | "SendMessageBatch" => Need::Publish(q()),
        "ReceiveMessage"
        | "DeleteMessage"
        | "DeleteMessageBatch"
        | "ChangeMessageVisibility"
        | "ChangeMessageVisibilityBatch" => Need::Consume(q()),
        "GetQueueUrl" | "GetQueueAttributes" | "ListQueueTags" => match queue {
            Some(q) => Need::Read(q.to_string()),
            None => Need::AnyKey,
        },
        "ListQueues" => Need::AnyKey,
        _ => Need::Admin,
    }
}

/// What a native, streaming or compat route needs, from its method, route template and
/// queue parameter. Unknown routes need an admin key (fail closed).
pub fn need(method: &Method, template: &str, queue: Option<&str>, awe_queue: &str) -> Need {
    let q = || queue.unwrap_or_default().to_string();
    let get = method == Method::GET || method == Method::HEAD;
    match template {
        "/healthz" | "/health" | "/readyz" | "/openapi.json" | "/ui" | "/ui/" | "/ui/{*path}" => {
            Need::Public
        }
        "/" if get => Need::Public,
        "/" | "/{account}/{queue}" => Need::Sqs,
        "/metrics" | "/v1/server" | "/v1/rates" | "/v1/queues" => Need::AnyKey,
        "/v1/queues/{queue}" if get => Need::Read(q()),
        "/v1/queues/{queue}/messages" if get => Need::Consume(q()),
        "/v1/queues/{queue}/messages" => Need::Publish(q()),
        "/v1/queues/{queue}/receive"
        | "/v1/queues/{queue}/ack"
        | "/v1/queues/{queue}/nack"
        | "/v1/queues/{queue}/visibility"
        | "/v1/queues/{queue}/stream" => Need::Consume(q()),
        "/v1/queues/{queue}/subscriptions"
        | "/v1/queues/{queue}/subscriptions/{name}"
        | "/v1/queues/{queue}/subscriptions/{name}/attempts"
        | "/v1/queues/{queue}/messages/{id}/attempts"
            if get =>
        {
            Need::Read(q())
        }
        // The forwarder's intake publishes to `log`; miniqueue's topics are queues.
        "/log" => Need::Publish("log".into()),
        "/publish/{topic}" => Need::Publish(q()),
        "/subscribe/{topic}" => Need::Consume(q()),
        // awe_queue's routes, with or without a trailing slash, under any prefix.
        t if t.trim_end_matches('/').ends_with("/send-message") => {
            Need::Publish(awe_queue.to_string())
        }
        t if t.trim_end_matches('/').ends_with("/receive-message")
            || t.trim_end_matches('/').ends_with("/delete-message/{key}") =>
        {
            Need::Consume(awe_queue.to_string())
        }
        t if t.trim_end_matches('/').ends_with("/get-stats") => Need::Read(awe_queue.to_string()),
        _ => Need::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &str, role: Role, queues: Option<&[&str]>) -> KeySpec {
        KeySpec {
            key: Some(key.into()),
            access_key_id: None,
            secret_access_key: None,
            role,
            queues: queues.map(|q| q.iter().map(|s| s.to_string()).collect()),
            create_queues: None,
            name: None,
        }
    }

    fn bearer(auth: &Auth, key: &str) -> Result<Principal, &'static str> {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {key}").parse().unwrap());
        auth.bearer(&h)
    }

    #[test]
    fn roles_and_globs() {
        let auth = Auth::new(&[
            spec("admin-key-0123456789", Role::Admin, None),
            spec("orders-publisher-key", Role::Publish, Some(&["orders*"])),
            spec("worker-key-0123456789", Role::Consume, None),
        ])
        .unwrap();
        let admin = bearer(&auth, "admin-key-0123456789").unwrap();
        let publisher = bearer(&auth, "orders-publisher-key").unwrap();
        let worker = bearer(&auth, "worker-key-0123456789").unwrap();
        assert!(bearer(&auth, "nope-nope-nope-nope").is_err());
        assert!(auth.bearer(&HeaderMap::new()).is_err());
        assert!(admin.allows(&Need::Admin).is_ok());
        assert!(publisher.allows(&Need::Publish("orders-eu".into())).is_ok());
        let e = publisher
            .allows(&Need::Publish("payments".into()))
            .unwrap_err();
        assert!(e.contains("does not cover queue \"payments\""), "{e}");
        assert!(publisher.allows(&Need::Consume("orders".into())).is_err());
        assert!(publisher.allows(&Need::Admin).is_err());
        assert!(worker.allows(&Need::Consume("anything".into())).is_ok());
        assert!(worker.allows(&Need::Publish("anything".into())).is_err());
        assert!(worker.allows(&Need::Read("anything".into())).is_ok());
    }

    #[test]
    fn bad_key_files_are_refused() {
        assert!(Auth::new(&[spec("short", Role::Admin, None)]).is_err());
        assert!(Auth::new(&[spec("has a space in it!!", Role::Admin, None)]).is_err());
        let k = spec("duplicate-key-0123456", Role::Admin, None);
        assert!(Auth::new(&[k.clone(), k]).is_err());
        assert!(Auth::new(&[spec("glob-key-0123456789", Role::Admin, Some(&["[bad"]))]).is_err());
        let parsed: KeyFile = toml::from_str(
            "[[key]]\nkey = \"0123456789abcdef\"\nrole = \"publish_consume\"\nqueues = [\"a*\"]\n",
        )
        .unwrap();
        assert_eq!(parsed.key[0].role, Role::PublishConsume);
        assert!(toml::from_str::<KeyFile>("[[key]]\nkey = \"x\"\nrole = \"root\"\n").is_err());
    }

    #[test]
    fn routes_map_to_needs() {
        let n = |m: Method, t: &str, q: Option<&str>| need(&m, t, q, "awe");
        assert_eq!(n(Method::GET, "/healthz", None), Need::Public);
        assert_eq!(n(Method::GET, "/", None), Need::Public);
        assert_eq!(n(Method::POST, "/", None), Need::Sqs);
        assert_eq!(
            n(Method::POST, "/v1/queues/{queue}/messages", Some("o")),
            Need::Publish("o".into())
        );
        assert_eq!(
            n(Method::GET, "/v1/queues/{queue}/messages", Some("o")),
            Need::Consume("o".into())
        );
        assert_eq!(n(Method::PUT, "/v1/queues/{queue}", Some("o")), Need::Admin);
        assert_eq!(
            n(Method::POST, "/v1/queues/{queue}/purge", Some("o")),
            Need::Admin
        );
        assert_eq!(n(Method::GET, "/v1/timers", None), Need::Admin);
        assert_eq!(
            n(Method::POST, "/q/send-message", None),
            Need::Publish("awe".into())
        );
        assert_eq!(n(Method::GET, "/something/new", None), Need::Admin);
        assert_eq!(
            sqs_need("SendMessage", Some("o")),
            Need::Publish("o".into())
        );
        assert_eq!(sqs_need("CreateQueue", Some("o")), Need::Admin);
    }
}
