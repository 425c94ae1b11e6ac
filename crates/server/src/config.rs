//! The server's configuration: one typed struct built from flags, environment variables
//! (`SLUICE_*`, handled by clap) and an optional TOML file, in that order of precedence.
//! Nothing else in the binary reads the environment. `config/sources.rs` holds the flags
//! (`ServeArgs`) and the file (`FileConfig`); `config/origins.rs` tells where each setting came
//! from (`sluice serve --print-config`); `config/checks.rs` checks the address and the log
//! filter.

mod checks;
mod origins;
mod sources;

use std::path::PathBuf;

use anyhow::Context;
use sluice_engine::embedded::EmbeddedOptions;
use sluice_engine::EngineOptions;

use checks::{check_listen, check_log_filter};
pub use origins::{Origin, Origins};
use sources::FileConfig;
pub use sources::ServeArgs;

/// `--listen` when not set.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:8080";
/// `--data-dir` when not set.
pub const DATA_DIR_DEFAULT: &str = "sluice-data";
/// The log levels `--log-level` takes (alone, or after `target=` in a directive).
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `--max-header-bytes` when not set.
pub const MAX_HEADER_BYTES_DEFAULT: usize = 64 * 1024;
/// `--max-streams` when not set.
pub const MAX_STREAMS_DEFAULT: usize = 1000;

/// Where messages live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// The embedded store in the data directory.
    Embedded,
    /// A Redis server or cluster shared by every node.
    Redis {
        url: String,
        settings: RedisSettings,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub prefix: String,
    pub wait_replicas: u32,
    pub wait_timeout_ms: u64,
}

impl Storage {
    fn parse(s: Option<&str>, settings: RedisSettings) -> anyhow::Result<Storage> {
        match s {
            None | Some("") | Some("embedded") => Ok(Storage::Embedded),
            Some(url) if url.starts_with("redis://") || url.starts_with("redis+cluster://") => {
                if settings.prefix.is_empty() || settings.prefix.contains(['{', '}']) {
                    anyhow::bail!("--redis-prefix must be non-empty and contain no braces");
                }
                Ok(Storage::Redis {
                    url: url.to_string(),
                    settings,
                })
            }
            Some(other) => anyhow::bail!(
                "--storage {other:?}: expected `embedded`, `redis://HOST:PORT[/DB]` or \
                 `redis+cluster://HOST:PORT[,HOST:PORT...]`"
            ),
        }
    }
}

/// The forwarder's settings (seed 001).
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    pub endpoint: String,
    pub batch_size: u32,
    pub batch_interval_ms: u64,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub storage: Storage,
    pub log_format: String,
    pub log_level: String,
    pub max_message_bytes: u32,
    pub max_request_bytes: usize,
    pub max_queues: usize,
    pub min_free_bytes: u64,
    pub history_max_bytes: u64,
    pub max_waiters: usize,
    pub sqs_base_url: Option<String>,
    /// (access key id, secret) pairs.
    pub sqs_credentials: Vec<(String, String)>,
    /// The region signatures must be scoped to (None: any).
    pub sqs_region: Option<String>,
    /// PurgeQueue's cooldown per queue, in seconds (0: none).
    pub sqs_purge_interval_seconds: u64,
    pub awe_prefix: String,
    pub awe_queue: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub header_timeout_seconds: u64,
    pub body_timeout_seconds: u64,
    pub max_header_bytes: usize,
    pub max_streams: usize,
    pub allow_private_targets: bool,
    pub timer_concurrency: usize,
    pub events_url: Option<String>,
    pub events_secret: Option<String>,
    pub forwarder: Option<ForwarderConfig>,
    pub exit_on_forward_failure: bool,
    pub access_log: bool,
    pub watches: Vec<crate::ingest::WatchSpec>,
    pub watch_settle_ms: u64,
    pub watch_rescan_seconds: u64,
    pub max_upload_bytes: u64,
    /// API keys from --auth-keys and the config file's `[[key]]` tables.
    pub auth_keys: Vec<crate::auth::KeySpec>,
    pub insecure_no_auth: bool,
}

/// Does `listen` bind only loopback? (`localhost`, 127.0.0.0/8, ::1.)
pub fn is_loopback(listen: &str) -> bool {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => listen
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

/// A Go `time.Duration` string: a sequence of decimal numbers with units ns, us, µs, ms, s,
/// m, h (`10s`, `1m30s`, `1.5h`, `250ms`). Returns milliseconds.
pub fn parse_go_duration(s: &str) -> anyhow::Result<u64> {
    let bad = || anyhow::anyhow!("{s:?} is not a duration like 10s, 500ms, 1m30s or 1h");
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total_ms = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return Err(bad()),
        };
        total_ms += n * factor;
        rest = &rest[unit_end..];
    }
    Ok(total_ms.round() as u64)
}

fn parse_credentials(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|c| {
            c.split_once(':')
                .filter(|(k, s)| !k.is_empty() && !s.is_empty())
                .map(|(k, s)| (k.to_string(), s.to_string()))
                .ok_or_else(|| anyhow::anyhow!("sqs_credentials entries are ACCESS_KEY_ID:SECRET"))
        })
        .collect()
}

impl ServeConfig {
    /// The settings from `args` (flags and environment), the config file it names and the
    /// defaults; `origins` learns which keys the file sets.
    pub fn resolve(args: ServeArgs, origins: &Origins) -> anyhow::Result<ServeConfig> {
        let file = FileConfig::read(args.config.as_deref(), origins)?;
        let defaults = EngineOptions::default();
        let cfg = ServeConfig {
            listen: args
                .listen
                .or(file.listen)
                .map(|l| match l.strip_prefix(':') {
                    Some(port) => format!("0.0.0.0:{port}"),
                    None => l,
                })
                .unwrap_or_else(|| LISTEN_DEFAULT.into()),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT)),
            storage: Storage::parse(
                args.storage.or(file.storage).as_deref(),
                RedisSettings {
                    prefix: args
                        .redis_prefix
                        .or(file.redis_prefix)
                        .unwrap_or_else(|| "sluice".into()),
                    wait_replicas: args
                        .redis_wait_replicas
                        .or(file.redis_wait_replicas)
                        .unwrap_or(0),
                    wait_timeout_ms: args
                        .redis_wait_timeout_ms
                        .or(file.redis_wait_timeout_ms)
                        .unwrap_or(1000),
                },
            )?,
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or_else(|| "human".into()),
            log_level: args
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            max_message_bytes: args
                .max_message_bytes
                .or(file.max_message_bytes)
                .unwrap_or(defaults.max_message_bytes),
            max_request_bytes: args
                .max_request_bytes
                .or(file.max_request_bytes)
                .unwrap_or(16 * 1024 * 1024),
            max_queues: args
                .max_queues
                .or(file.max_queues)
                .unwrap_or(EmbeddedOptions::default().max_queues),
            min_free_bytes: args
                .min_free_bytes
                .or(file.min_free_bytes)
                .unwrap_or(EmbeddedOptions::default().min_free_bytes),
            history_max_bytes: args
                .history_max_bytes
                .or(file.history_max_bytes)
                .unwrap_or(EmbeddedOptions::default().history_max_bytes),
            max_waiters: args
                .max_waiters
                .or(file.max_waiters)
                .unwrap_or(defaults.max_waiters),
            sqs_base_url: args.sqs_base_url.or(file.sqs_base_url),
            sqs_region: args.sqs_region.or(file.sqs_region),
            sqs_purge_interval_seconds: args
                .sqs_purge_interval_seconds
                .or(file.sqs_purge_interval_seconds)
                .unwrap_or(60),
            awe_prefix: args.awe_prefix.or(file.awe_prefix).unwrap_or_default(),
            header_timeout_seconds: args
                .header_timeout_seconds
                .or(file.header_timeout_seconds)
                .unwrap_or(30),
            body_timeout_seconds: args
                .body_timeout_seconds
                .or(file.body_timeout_seconds)
                .unwrap_or(60),
            max_header_bytes: args
                .max_header_bytes
                .or(file.max_header_bytes)
                .unwrap_or(MAX_HEADER_BYTES_DEFAULT),
            max_streams: args
                .max_streams
                .or(file.max_streams)
                .unwrap_or(MAX_STREAMS_DEFAULT),
            tls_cert: args.tls_cert.or(file.tls_cert),
            tls_key: args.tls_key.or(file.tls_key),
            awe_queue: args
                .awe_queue
                .or(file.awe_queue)
                .unwrap_or_else(|| "awe".into()),
            allow_private_targets: args.allow_private_targets || file.allow_private_targets,
            timer_concurrency: args
                .timer_concurrency
                .or(file.timer_concurrency)
                .unwrap_or(100),
            events_url: args.events_url.or(file.events_url),
            events_secret: args.events_secret.or(file.events_secret),
            exit_on_forward_failure: args.exit_on_forward_failure || file.exit_on_forward_failure,
            forwarder: match args.post_endpoint.or(file.post_endpoint) {
                Some(endpoint) if !endpoint.is_empty() => Some(ForwarderConfig {
                    endpoint,
                    batch_size: args.batch_size.or(file.batch_size).unwrap_or(10),
                    batch_interval_ms: parse_go_duration(
                        args.batch_interval
                            .or(file.batch_interval)
                            .as_deref()
                            .unwrap_or("10s"),
                    )
                    .context("batch_interval (WEBHOOK_BATCH_INTERVAL)")?,
                }),
                _ => None,
            },
            access_log: false,
            watches: (if args.watch.is_empty() {
                &file.watch
            } else {
                &args.watch
            })
            .iter()
            .map(|w| crate::ingest::WatchSpec::parse(w).with_context(|| format!("watch {w:?}")))
            .collect::<anyhow::Result<_>>()?,
            watch_settle_ms: args
                .watch_settle_ms
                .or(file.watch_settle_ms)
                .unwrap_or(1000),
            watch_rescan_seconds: args
                .watch_rescan_seconds
                .or(file.watch_rescan_seconds)
                .unwrap_or(5),
            max_upload_bytes: args
                .max_upload_bytes
                .or(file.max_upload_bytes)
                .unwrap_or(1 << 30),
            sqs_credentials: parse_credentials(if args.sqs_credentials.is_empty() {
                &file.sqs_credentials
            } else {
                &args.sqs_credentials
            })?,
            auth_keys: Vec::new(),
            insecure_no_auth: false,
        };
        let mut cfg = cfg;
        cfg.insecure_no_auth = args.insecure_no_auth || file.insecure_no_auth;
        cfg.auth_keys = file.key;
        if let Some(p) = args.auth_keys.or(file.auth_keys) {
            cfg.auth_keys.extend(crate::auth::Auth::load(&p)?);
        }
        cfg.access_log = args
            .access_log
            .or(file.access_log)
            .unwrap_or(cfg.forwarder.is_some());
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        use sluice_engine::limits::MESSAGE_BYTES_CEILING;
        if !(1024..=MESSAGE_BYTES_CEILING).contains(&self.max_message_bytes) {
            anyhow::bail!("max_message_bytes must be between 1024 and {MESSAGE_BYTES_CEILING}");
        }
        // A message sent as base64 in JSON must fit in a request.
        let needed = self.max_message_bytes as usize / 3 * 4 + 64 * 1024;
        if self.max_request_bytes < needed {
            anyhow::bail!(
                "max_request_bytes ({}) must be at least {needed} to carry a message of max_message_bytes ({}) as base64",
                self.max_request_bytes,
                self.max_message_bytes
            );
        }
        if !(1..=3600).contains(&self.header_timeout_seconds) {
            anyhow::bail!("header_timeout_seconds must be between 1 and 3600");
        }
        if !(1..=3600).contains(&self.body_timeout_seconds) {
            anyhow::bail!("body_timeout_seconds must be between 1 and 3600");
        }
        if !(8192..=1024 * 1024).contains(&self.max_header_bytes) {
            anyhow::bail!("max_header_bytes must be between 8192 and 1048576");
        }
        if !(1..=1_000_000).contains(&self.max_streams) {
            anyhow::bail!("max_streams must be between 1 and 1000000");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key go together");
        }
        if !self.awe_prefix.is_empty() && !self.awe_prefix.starts_with('/') {
            anyhow::bail!("awe_prefix must start with / (got {:?})", self.awe_prefix);
        }
        sluice_engine::validate_queue_name(&self.awe_queue)
            .map_err(|e| anyhow::anyhow!("awe_queue: {e}"))?;
        if !(1..=10_000).contains(&self.timer_concurrency) {
            anyhow::bail!("timer_concurrency must be between 1 and 10000");
        }
        if let Some(f) = &self.forwarder {
            if !(1..=1000).contains(&f.batch_size) {
                anyhow::bail!("batch_size (WEBHOOK_BATCH_SIZE) must be between 1 and 1000");
            }
            if f.batch_interval_ms > 3_600_000 {
                anyhow::bail!("batch_interval (WEBHOOK_BATCH_INTERVAL) must be at most 1h");
            }
            sluice_engine::validate::validate_url("post_endpoint", &f.endpoint)
                .map_err(|e| anyhow::anyhow!("{e} (WEBHOOK_POST_ENDPOINT)"))?;
        }
        if let Some(u) = &self.events_url {
            sluice_engine::validate::validate_url("events_url", u)
                .map_err(|e| anyhow::anyhow!("{e} (--events-url)"))?;
        }
        if let Some(k) = &self.events_secret {
            sluice_engine::push::SigningKey::parse(k)
                .map_err(|e| anyhow::anyhow!("events_secret: {e} (--events-secret)"))?;
        }
        check_listen(&self.listen)?;
        check_log_filter(&self.log_level)?;
        if self.auth_keys.is_empty() && !self.insecure_no_auth && !is_loopback(&self.listen) {
            anyhow::bail!(
                "refusing to serve {} without API keys: give --auth-keys FILE, listen on loopback \
                 (127.0.0.1:PORT), or pass --insecure-no-auth to accept anyone on the network",
                self.listen
            );
        }
        if self.watch_settle_ms > 3_600_000 {
            anyhow::bail!("watch_settle_ms must be at most 3600000 (1 hour)");
        }
        if !(1..=3600).contains(&self.watch_rescan_seconds) {
            anyhow::bail!("watch_rescan_seconds must be between 1 and 3600");
        }
        if self.max_upload_bytes < 1024 {
            anyhow::bail!("max_upload_bytes must be at least 1024");
        }
        let mut dirs = std::collections::HashSet::new();
        for w in &self.watches {
            if !dirs.insert(w.dir.clone()) {
                anyhow::bail!("watch: folder {} is watched twice", w.dir.display());
            }
        }
        if !["human", "json"].contains(&self.log_format.as_str()) {
            anyhow::bail!(
                "log_format must be human or json, not {:?}",
                self.log_format
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s").unwrap(), 10_000);
        assert_eq!(parse_go_duration("1m30s").unwrap(), 90_000);
        assert_eq!(parse_go_duration("250ms").unwrap(), 250);
        assert_eq!(parse_go_duration("1.5h").unwrap(), 5_400_000);
        assert_eq!(parse_go_duration("0").unwrap(), 0);
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("ten s").is_err());
        assert!(parse_go_duration("").is_err());
    }
}
