//! Where each setting came from, for `sluice serve --print-config`: a flag, an environment
//! variable, the config file or the built-in default. Flags and environment variables are told
//! apart by clap (`ArgMatches::value_source`); the file's keys are read from its TOML table.
//! The printout is itself a valid TOML file (secrets masked), one setting per line with its
//! origin and, for sizes and durations, the value in units.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use parking_lot::Mutex;

use super::{ServeArgs, ServeConfig, Storage};

/// Where one setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    /// This environment variable.
    Env(String),
    /// This config file.
    File(PathBuf),
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag => f.write_str("flag"),
            Origin::Env(v) => write!(f, "env {v}"),
            Origin::File(p) => write!(f, "file {}", p.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// The origins of `sluice serve`'s settings, by setting name (the flag's name with `_`).
#[derive(Debug, Default)]
pub struct Origins {
    given: BTreeMap<String, Origin>,
    file: Mutex<Option<(PathBuf, BTreeSet<String>)>>,
}

impl Origins {
    /// What the command line and the environment set.
    pub fn from_matches(m: &ArgMatches) -> Origins {
        let cmd = ServeArgs::augment_args(clap::Command::new("serve"));
        let mut given = BTreeMap::new();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            let origin = match m.value_source(id) {
                Some(ValueSource::CommandLine) => Origin::Flag,
                Some(ValueSource::EnvVariable) => Origin::Env(
                    arg.get_env()
                        .map(|e| e.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                _ => continue,
            };
            given.insert(id.to_string(), origin);
        }
        Origins {
            given,
            file: Mutex::new(None),
        }
    }

    /// The config file was read: note which keys it sets.
    pub(super) fn file_read(&self, path: &Path, text: &str) {
        let keys = text
            .parse::<toml::Table>()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        *self.file.lock() = Some((path.to_path_buf(), keys));
    }

    /// Where `key` came from.
    pub fn of(&self, key: &str) -> Origin {
        if let Some(o) = self.given.get(key) {
            return o.clone();
        }
        match &*self.file.lock() {
            Some((path, keys)) if keys.contains(key) => Origin::File(path.clone()),
            _ => Origin::Default,
        }
    }
}

/// One line of the printout: the setting, its value as TOML (None: not set) and a note.
struct Entry {
    key: &'static str,
    value: Option<String>,
    note: String,
}

fn text(s: &str) -> Option<String> {
    Some(toml::Value::String(s.to_string()).to_string())
}

fn num(n: impl Into<i64>) -> Option<String> {
    Some(n.into().to_string())
}

fn big(n: u64) -> Option<String> {
    Some(n.to_string())
}

fn path(p: &Option<PathBuf>) -> Option<String> {
    p.as_ref().and_then(|p| text(&p.display().to_string()))
}

fn flag(b: bool) -> Option<String> {
    Some(b.to_string())
}

/// `1048576` → `1 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut unit) = (n as f64, "B");
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if unit == "B" {
        format!("{n} B")
    } else {
        format!("{} {unit}", (v * 10.0).round() / 10.0)
    }
}

fn secs(n: u64) -> String {
    match n {
        n if n % 3600 == 0 && n > 0 => format!("{} h", n / 3600),
        n if n % 60 == 0 && n > 0 => format!("{} min", n / 60),
        n => format!("{n} s"),
    }
}

impl ServeConfig {
    fn entries(&self) -> Vec<Entry> {
        let e = |key, value, note: &str| Entry {
            key,
            value,
            note: note.to_string(),
        };
        let (storage, redis) = match &self.storage {
            Storage::Embedded => ("embedded".to_string(), None),
            Storage::Redis { url, settings } => (url.clone(), Some(settings)),
        };
        let redis_note = if redis.is_some() {
            ""
        } else {
            "only with redis storage"
        };
        let fwd = self.forwarder.as_ref();
        let keys = self.auth_keys.len();
        let roles: BTreeSet<String> = self
            .auth_keys
            .iter()
            .map(|k| format!("{:?}", k.role).to_lowercase())
            .collect();
        vec![
            e("listen", text(&self.listen), ""),
            e("data_dir", text(&self.data_dir.display().to_string()), ""),
            e("storage", text(&storage), ""),
            e(
                "redis_prefix",
                redis.and_then(|r| text(&r.prefix)),
                redis_note,
            ),
            e(
                "redis_wait_replicas",
                redis.and_then(|r| num(r.wait_replicas)),
                redis_note,
            ),
            e(
                "redis_wait_timeout_ms",
                redis.and_then(|r| big(r.wait_timeout_ms)),
                redis_note,
            ),
            e("log_format", text(&self.log_format), ""),
            e("log_level", text(&self.log_level), ""),
            e(
                "config",
                None,
                "a file of these settings, named by --config or SLUICE_CONFIG",
            ),
            e(
                "max_message_bytes",
                num(self.max_message_bytes),
                &bytes(self.max_message_bytes as u64),
            ),
            e(
                "max_request_bytes",
                big(self.max_request_bytes as u64),
                &bytes(self.max_request_bytes as u64),
            ),
            e("max_queues", big(self.max_queues as u64), ""),
            e(
                "min_free_bytes",
                big(self.min_free_bytes),
                &bytes(self.min_free_bytes),
            ),
            e(
                "history_max_bytes",
                big(self.history_max_bytes),
                &bytes(self.history_max_bytes),
            ),
            e("max_waiters", big(self.max_waiters as u64), ""),
            e(
                "sqs_base_url",
                self.sqs_base_url.as_deref().and_then(text),
                "from each request's Host header when not set",
            ),
            e(
                "sqs_credentials",
                Some(format!(
                    "[{}]",
                    self.sqs_credentials
                        .iter()
                        .map(|(id, _)| format!("\"{id}:********\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                "secrets masked",
            ),
            e(
                "sqs_purge_interval_seconds",
                big(self.sqs_purge_interval_seconds),
                &secs(self.sqs_purge_interval_seconds),
            ),
            e("tls_cert", path(&self.tls_cert), "plain HTTP when not set"),
            e("tls_key", path(&self.tls_key), ""),
            e(
                "header_timeout_seconds",
                big(self.header_timeout_seconds),
                &secs(self.header_timeout_seconds),
            ),
            e(
                "body_timeout_seconds",
                big(self.body_timeout_seconds),
                &secs(self.body_timeout_seconds),
            ),
            e(
                "max_header_bytes",
                big(self.max_header_bytes as u64),
                &bytes(self.max_header_bytes as u64),
            ),
            e("max_streams", big(self.max_streams as u64), ""),
            e(
                "sqs_region",
                self.sqs_region.as_deref().and_then(text),
                "SigV4 signatures must be scoped to it; any region when not set",
            ),
            e("awe_prefix", text(&self.awe_prefix), ""),
            e("awe_queue", text(&self.awe_queue), ""),
            e(
                "allow_private_targets",
                flag(self.allow_private_targets),
                "",
            ),
            e("timer_concurrency", big(self.timer_concurrency as u64), ""),
            e(
                "events_url",
                self.events_url
                    .as_deref()
                    .map(crate::redact::url)
                    .as_deref()
                    .and_then(text),
                "operational events; none when not set",
            ),
            e(
                "events_secret",
                self.events_secret
                    .as_deref()
                    .map(sluice_engine::push::secret::mask)
                    .as_deref()
                    .and_then(text),
                "secret masked",
            ),
            e(
                "post_endpoint",
                fwd.and_then(|f| text(&f.endpoint)),
                "the forwarder is off when not set",
            ),
            e("batch_size", fwd.map(|f| f.batch_size.to_string()), ""),
            e(
                "batch_interval",
                fwd.and_then(|f| text(&format!("{}ms", f.batch_interval_ms))),
                "",
            ),
            e(
                "exit_on_forward_failure",
                flag(self.exit_on_forward_failure),
                "",
            ),
            e("access_log", flag(self.access_log), ""),
            e(
                "watch",
                Some(format!(
                    "[{}]",
                    self.watches
                        .iter()
                        .map(|w| {
                            toml::Value::String(format!(
                                "{}={}:{}:{}",
                                w.dir.display(),
                                w.queue,
                                w.format.as_str(),
                                w.dedup.as_str()
                            ))
                            .to_string()
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                "",
            ),
            e("watch_settle_ms", big(self.watch_settle_ms), ""),
            e(
                "watch_rescan_seconds",
                big(self.watch_rescan_seconds),
                &secs(self.watch_rescan_seconds),
            ),
            e(
                "max_upload_bytes",
                big(self.max_upload_bytes),
                &bytes(self.max_upload_bytes),
            ),
            e(
                "auth_keys",
                None,
                &if keys == 0 {
                    "no API keys: loopback only, unless insecure_no_auth".to_string()
                } else {
                    format!(
                        "{keys} API key(s) loaded (roles: {}); keys are never printed",
                        roles.into_iter().collect::<Vec<_>>().join(", ")
                    )
                },
            ),
            e("insecure_no_auth", flag(self.insecure_no_auth), ""),
        ]
    }

    /// The effective settings as a TOML file, each line saying where its value came from.
    pub fn describe(&self, origins: &Origins) -> String {
        let mut out = String::from(
            "# sluice serve: effective settings. Precedence: flag > environment (SLUICE_*) > \
             config file > default.\n",
        );
        if let Some((p, _)) = &*origins.file.lock() {
            let _ = writeln!(out, "# config file: {}", p.display());
        }
        for en in self.entries() {
            let origin = origins.of(en.key);
            let note = if en.note.is_empty() {
                String::new()
            } else {
                format!("; {}", en.note)
            };
            let _ = match &en.value {
                Some(v) => writeln!(out, "{} = {v}  # {origin}{note}", en.key),
                None => writeln!(out, "# {} is not set  # {origin}{note}", en.key),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of `sluice serve` is a line of the printout.
    #[test]
    fn every_setting_is_printed() {
        let cmd = ServeArgs::augment_args(clap::Command::new("serve"));
        let m = cmd
            .clone()
            .get_matches_from(["serve", "--listen", "127.0.0.1:1"]);
        let origins = Origins::from_matches(&m);
        let cfg = ServeConfig::resolve(
            ServeArgs {
                listen: Some("127.0.0.1:1".into()),
                ..Default::default()
            },
            &origins,
        )
        .unwrap();
        let printed = cfg.describe(&origins);
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "print_config") {
                continue;
            }
            assert!(
                printed.lines().any(|l| l.starts_with(&format!("{id} = "))
                    || l.starts_with(&format!("# {id} is not set"))),
                "--print-config does not show {id}:\n{printed}"
            );
        }
        assert!(
            printed.contains("listen = \"127.0.0.1:1\"  # flag"),
            "{printed}"
        );
        assert!(
            printed.contains("max_message_bytes = 1048576  # default; 1 MiB"),
            "{printed}"
        );
        printed
            .parse::<toml::Table>()
            .expect("the printout is TOML");
    }
}
