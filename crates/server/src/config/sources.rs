//! Where the server's settings come from: the command line and the environment (`ServeArgs`,
//! with clap: a flag wins over its `SLUICE_*` variable) and the optional TOML file
//! (`FileConfig`, whose keys are the flags' names). `config.rs` merges them into `ServeConfig`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

use super::Origins;
use crate::human_errors::whole;

/// `sluice serve`'s flags; most also read a `SLUICE_*` environment variable (the forwarder's
/// read the seed's `WEBHOOK_*` names).
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on (HTTP/1.1 and h2c). `:PORT` means every interface (the
    /// forwarder seed's `-http :8080`, accepted as `--http`). [default: 127.0.0.1:8080]
    #[arg(long, env = "SLUICE_LISTEN", alias = "http", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Directory of the embedded store (and of ingestion's spool with any storage).
    /// [default: ./sluice-data]
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the effective settings, each with where it came from (flag, environment, config
    /// file or default), and exit without serving.
    #[arg(long)]
    pub print_config: bool,
    /// Where messages live: `embedded` (default: the data directory), `redis://HOST:PORT[/DB]`
    /// (one Redis server, shared by any number of sluice nodes) or
    /// `redis+cluster://HOST:PORT[,HOST:PORT...]` (a Redis Cluster, given by seed nodes).
    #[arg(long, env = "SLUICE_STORAGE")]
    pub storage: Option<String>,
    /// Redis storage: every key starts with this (several deployments can share one Redis).
    #[arg(long, env = "SLUICE_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Redis storage: acknowledge a change only once this many replicas have it (Redis WAIT;
    /// default 0). A write not confirmed within --redis-wait-timeout-ms answers 503.
    #[arg(long, env = "SLUICE_REDIS_WAIT_REPLICAS", value_parser = whole::<u32>)]
    pub redis_wait_replicas: Option<u32>,
    /// Redis storage: how long --redis-wait-replicas may wait, in milliseconds (default 1000).
    #[arg(long, env = "SLUICE_REDIS_WAIT_TIMEOUT_MS", value_parser = whole::<u64>)]
    pub redis_wait_timeout_ms: Option<u64>,
    /// `human` or `json`. [default: human]
    #[arg(long, env = "SLUICE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// off, error, warn, info, debug or trace, or comma-separated `target=level` directives
    /// (`info,sluice::delivery=debug`). [default: info]
    #[arg(long, env = "SLUICE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// A TOML file with any of these settings (flags and env win over it).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Largest message any queue may accept, in bytes (queues default to 256 KiB).
    #[arg(long, env = "SLUICE_MAX_MESSAGE_BYTES", value_parser = whole::<u32>)]
    pub max_message_bytes: Option<u32>,
    /// Largest request body, in bytes.
    #[arg(long, env = "SLUICE_MAX_REQUEST_BYTES", value_parser = whole::<usize>)]
    pub max_request_bytes: Option<usize>,
    /// Most queues the server holds.
    #[arg(long, env = "SLUICE_MAX_QUEUES", value_parser = whole::<usize>)]
    pub max_queues: Option<usize>,
    /// Refuse new messages and queues (503 storage_full) while the data directory's disk has
    /// less free space than this many bytes (default 67108864, 64 MiB; 0 turns it off).
    #[arg(long, env = "SLUICE_MIN_FREE_BYTES", value_parser = whole::<u64>)]
    pub min_free_bytes: Option<u64>,
    /// Bytes of delivery history (push and timer attempts) the embedded store keeps on disk;
    /// the oldest attempts go first (default 67108864, 64 MiB).
    #[arg(long, env = "SLUICE_HISTORY_MAX_BYTES", value_parser = whole::<u64>)]
    pub history_max_bytes: Option<u64>,
    /// Most receives long-polling at once.
    #[arg(long, env = "SLUICE_MAX_WAITERS", value_parser = whole::<usize>)]
    pub max_waiters: Option<usize>,
    /// Base of the queue URLs the SQS API returns (default: from each request's Host header).
    #[arg(long, env = "SLUICE_SQS_BASE_URL")]
    pub sqs_base_url: Option<String>,
    /// SQS access keys as ACCESS_KEY_ID:SECRET (repeatable, or comma-separated in the env var).
    /// When set, SigV4 signatures on the SQS API are verified; otherwise they are not checked.
    #[arg(long, env = "SLUICE_SQS_CREDENTIALS", value_delimiter = ',')]
    pub sqs_credentials: Vec<String>,
    /// The one region SigV4 credential scopes may name when signatures are checked (default:
    /// any region; the service must always be `sqs`).
    #[arg(long, env = "SLUICE_SQS_REGION")]
    pub sqs_region: Option<String>,
    /// Seconds after a PurgeQueue during which another purge of that queue answers
    /// PurgeQueueInProgress, as SQS does (default 60; 0 allows back-to-back purges, for tests).
    #[arg(long, env = "SLUICE_SQS_PURGE_INTERVAL_SECONDS", value_parser = whole::<u64>)]
    pub sqs_purge_interval_seconds: Option<u64>,
    /// PEM certificate chain: serve TLS (ALPN h2 and http/1.1) on --listen. Reloaded on SIGHUP.
    #[arg(long, env = "SLUICE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SLUICE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Close a connection that has not sent its complete request headers within this many
    /// seconds (slow-loris guard).
    #[arg(long, env = "SLUICE_HEADER_TIMEOUT_SECONDS", value_parser = whole::<u64>)]
    pub header_timeout_seconds: Option<u64>,
    /// Answer 408 to a request whose body has not fully arrived within this many seconds
    /// (slow-body guard; streaming endpoints are exempt).
    #[arg(long, env = "SLUICE_BODY_TIMEOUT_SECONDS", value_parser = whole::<u64>)]
    pub body_timeout_seconds: Option<u64>,
    /// Most bytes of request headers (request line and headers over HTTP/1.1, the header list
    /// over HTTP/2); more is answered 431. 8192 to 1048576, default 65536.
    #[arg(long, env = "SLUICE_MAX_HEADER_BYTES", value_parser = whole::<usize>)]
    pub max_header_bytes: Option<usize>,
    /// Most streaming consumers open at once (WebSocket, HTTP/2 duplex, miniqueue subscribe);
    /// one more is answered 503 too_many_streams. Default 1000.
    #[arg(long, env = "SLUICE_MAX_STREAMS", value_parser = whole::<usize>)]
    pub max_streams: Option<usize>,
    /// Path prefix of the awe_queue-compatible API (default: the root).
    #[arg(long, env = "SLUICE_AWE_PREFIX")]
    pub awe_prefix: Option<String>,
    /// Queue behind the awe_queue-compatible API.
    #[arg(long, env = "SLUICE_AWE_QUEUE")]
    pub awe_queue: Option<String>,
    /// Let webhooks and timers call loopback, private, link-local and metadata addresses
    /// (refused by default; use for local development and tests).
    #[arg(long, env = "SLUICE_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,
    /// Timer calls in flight at once.
    #[arg(long, env = "SLUICE_TIMER_CONCURRENCY", value_parser = whole::<usize>)]
    pub timer_concurrency: Option<usize>,
    /// POST operational events (endpoint.disabled, endpoint.circuit_opened/closed,
    /// attempt.exhausted) to this URL, for the operator (docs/webhooks.md).
    #[arg(long, env = "SLUICE_EVENTS_URL")]
    pub events_url: Option<String>,
    /// Sign operational events with this `whsec_` secret (Standard Webhooks).
    #[arg(long, env = "SLUICE_EVENTS_SECRET")]
    pub events_secret: Option<String>,
    /// The forwarder (seed 001): POST the records received on /log, in batches, to this URL.
    #[arg(long, env = "WEBHOOK_POST_ENDPOINT")]
    pub post_endpoint: Option<String>,
    /// The forwarder's batch size (default 10).
    #[arg(long, env = "WEBHOOK_BATCH_SIZE", value_parser = whole::<u32>)]
    pub batch_size: Option<u32>,
    /// The forwarder's batch interval, Go duration syntax like 10s or 1m30s (default 10s).
    #[arg(long, env = "WEBHOOK_BATCH_INTERVAL")]
    pub batch_interval: Option<String>,
    /// Exit (status 1) when a forwarder batch fails after its retries, as the seed does;
    /// by default the batch is dead-lettered and the server keeps running.
    #[arg(long, env = "SLUICE_EXIT_ON_FORWARD_FAILURE")]
    pub exit_on_forward_failure: bool,
    /// Log every HTTP request (method, path, status, duration) at info level. On by default
    /// when the forwarder is configured (its seed logs each request).
    #[arg(long, env = "SLUICE_ACCESS_LOG", num_args = 0..=1, default_missing_value = "true")]
    pub access_log: Option<bool>,
    /// Ingest files dropped into DIR into QUEUE: `DIR=QUEUE[:FORMAT[:DEDUP]]`, FORMAT one of
    /// csv (default), jsonl, lines; DEDUP one of user (csv default), row (default otherwise),
    /// content. Repeatable.
    #[arg(long = "watch", value_name = "DIR=QUEUE[:FORMAT[:DEDUP]]")]
    pub watch: Vec<String>,
    /// A file written in place is taken once its modification time is this old (a file
    /// renamed into the folder is taken at once).
    #[arg(long, env = "SLUICE_WATCH_SETTLE_MS", value_parser = whole::<u64>)]
    pub watch_settle_ms: Option<u64>,
    /// Rescan watched folders this often, besides file-system events (safety net).
    #[arg(long, env = "SLUICE_WATCH_RESCAN_SECONDS", value_parser = whole::<u64>)]
    pub watch_rescan_seconds: Option<u64>,
    /// The largest file accepted by POST /upload and POST /v1/ingest.
    #[arg(long, env = "SLUICE_MAX_UPLOAD_BYTES", value_parser = whole::<u64>)]
    pub max_upload_bytes: Option<u64>,
    /// A TOML file of `[[key]]` tables (key, role, optional queues globs): API keys. With keys,
    /// every request but health checks and the dashboard's files needs one (docs/security).
    #[arg(long, env = "SLUICE_AUTH_KEYS")]
    pub auth_keys: Option<PathBuf>,
    /// Serve without API keys on a non-loopback address (refused otherwise).
    #[arg(long, env = "SLUICE_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
}

/// The `--config` TOML file: the flags' settings by the flags' names (an unknown key is an
/// error, so a typo is not silently ignored).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) storage: Option<String>,
    pub(super) redis_prefix: Option<String>,
    pub(super) redis_wait_replicas: Option<u32>,
    pub(super) redis_wait_timeout_ms: Option<u64>,
    pub(super) log_format: Option<String>,
    pub(super) log_level: Option<String>,
    pub(super) max_message_bytes: Option<u32>,
    pub(super) max_request_bytes: Option<usize>,
    pub(super) max_queues: Option<usize>,
    pub(super) min_free_bytes: Option<u64>,
    pub(super) history_max_bytes: Option<u64>,
    pub(super) max_waiters: Option<usize>,
    pub(super) sqs_base_url: Option<String>,
    #[serde(default)]
    pub(super) sqs_credentials: Vec<String>,
    pub(super) sqs_region: Option<String>,
    pub(super) sqs_purge_interval_seconds: Option<u64>,
    pub(super) awe_prefix: Option<String>,
    pub(super) awe_queue: Option<String>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) header_timeout_seconds: Option<u64>,
    pub(super) body_timeout_seconds: Option<u64>,
    pub(super) max_header_bytes: Option<usize>,
    pub(super) max_streams: Option<usize>,
    #[serde(default)]
    pub(super) allow_private_targets: bool,
    pub(super) timer_concurrency: Option<usize>,
    pub(super) events_url: Option<String>,
    pub(super) events_secret: Option<String>,
    pub(super) post_endpoint: Option<String>,
    pub(super) batch_size: Option<u32>,
    pub(super) batch_interval: Option<String>,
    #[serde(default)]
    pub(super) exit_on_forward_failure: bool,
    pub(super) access_log: Option<bool>,
    #[serde(default)]
    pub(super) watch: Vec<String>,
    pub(super) watch_settle_ms: Option<u64>,
    pub(super) watch_rescan_seconds: Option<u64>,
    pub(super) max_upload_bytes: Option<u64>,
    pub(super) auth_keys: Option<PathBuf>,
    #[serde(default)]
    pub(super) insecure_no_auth: bool,
    /// API keys inline, as in an --auth-keys file.
    #[serde(default)]
    pub(super) key: Vec<crate::auth::KeySpec>,
}

impl FileConfig {
    /// The `--config` file, if one is given (`origins` learns which settings it holds).
    pub(super) fn read(path: Option<&Path>, origins: &Origins) -> anyhow::Result<FileConfig> {
        let Some(p) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading config file {}", p.display()))?;
        origins.file_read(p, &text);
        toml::from_str(&text).map_err(|e| {
            let why = e.to_string();
            anyhow::anyhow!(
                "parsing config file {}: {}",
                p.display(),
                crate::human_errors::humanize_serde(&why)
            )
        })
    }
}
