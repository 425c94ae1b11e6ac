//! Logging and metrics setup. Logs go to stderr as human text or JSON lines. Metrics use the
//! `metrics` facade (the engine records storage sync figures through it) with a Prometheus
//! recorder; queue gauges and counters are read from the engine at scrape time, so they are
//! always exact and cost nothing on the hot path. [`FAMILIES`] describes every metric family
//! (`# HELP` in the exposition); a test checks that no family the server exports lacks one.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sluice_engine::Engine;
use tracing_subscriber::EnvFilter;

pub fn init_logging(format: &str, level: &str) {
    // The filter was checked by `config.rs`; a bad one here would silence every log.
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

pub struct Telemetry {
    handle: PrometheusHandle,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 25.0,
];
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
];

/// The kind of a metric family.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric family sluice exports, with its `# HELP` text.
const FAMILIES: &[(&str, Kind, &str)] = &[
    // HTTP
    ("sluice_http_requests_total", Kind::Counter, "HTTP requests answered, by route template, method and status."),
    ("sluice_http_request_duration_seconds", Kind::Histogram, "Time to answer an HTTP request, by route template."),
    ("sluice_streams_open", Kind::Gauge, "Streaming consumers connected now (WebSocket, HTTP/2 duplex, miniqueue)."),
    ("sluice_streams_refused_total", Kind::Counter, "Streaming consumers refused because --max-streams were open."),
    ("sluice_long_poll_waiters", Kind::Gauge, "Receives waiting in a long poll now."),
    ("sluice_sqs_requests_total", Kind::Counter, "SQS API calls, by action and outcome (ok or error)."),
    // Queues (read from the engine at scrape time)
    ("sluice_queue_messages", Kind::Gauge, "Messages of a queue's own list by state (ready, delayed, in_flight), and its messages now in a dead-letter queue (dead_lettered, push deliveries given up included)."),
    ("sluice_queue_depth", Kind::Gauge, "Every message of a queue waiting or in flight, its push subscriptions' copies included."),
    ("sluice_queue_oldest_ready_age_seconds", Kind::Gauge, "Age of the oldest ready message of a queue's own list."),
    ("sluice_messages_published_total", Kind::Counter, "Messages published to a queue since the server started (a push queue's: the most any of its subscriptions received)."),
    ("sluice_messages_received_total", Kind::Counter, "Messages handed to consumers (each receive counts) since the server started."),
    ("sluice_messages_acked_total", Kind::Counter, "Messages acknowledged (deleted) since the server started."),
    ("sluice_messages_nacked_total", Kind::Counter, "Messages given back by consumers since the server started."),
    ("sluice_messages_expired_total", Kind::Counter, "Messages dropped for outliving the queue's retention since the server started."),
    ("sluice_messages_visibility_timeouts_total", Kind::Counter, "Leases that ran out before an ack since the server started."),
    ("sluice_messages_dead_lettered_total", Kind::Counter, "Messages moved to the queue's dead-letter queue by receive count since the server started."),
    ("sluice_messages_redriven_total", Kind::Counter, "Dead letters sent back to this queue since the server started."),
    // Push delivery and timers
    ("sluice_push_attempts_total", Kind::Counter, "Webhook requests made, by queue, subscription and outcome (delivered, retry, throttled, failed)."),
    ("sluice_push_deliveries_total", Kind::Counter, "Messages whose push delivery ended, by queue, subscription and outcome (delivered, or failed: given up and dead-lettered)."),
    ("sluice_push_request_seconds", Kind::Histogram, "Duration of a webhook request, by queue and subscription."),
    ("sluice_push_backlog", Kind::Gauge, "Messages a subscription still has to deliver (ready, waiting for a retry, or in flight)."),
    ("sluice_push_rate_limit", Kind::Gauge, "Requests per second a subscription is held to now (adaptive after 429s; 0 = none)."),
    ("sluice_push_paused", Kind::Gauge, "1 while a subscription is paused (POST …/pause), else 0."),
    ("sluice_push_disabled", Kind::Gauge, "1 while a subscription is disabled (failing for disable_after_seconds; POST …/enable), else 0."),
    ("sluice_push_circuit_open", Kind::Gauge, "1 while a subscription's circuit breaker is open or half open (probing), else 0."),
    ("sluice_push_circuit_changes_total", Kind::Counter, "Circuit breaker changes of a subscription's endpoint, by change (opened, probe_failed, closed, disabled)."),
    ("sluice_timers", Kind::Gauge, "Timers by state: pending (not finished) and finished (kept in the archive)."),
    ("sluice_timer_attempts_total", Kind::Counter, "Timer calls made, by outcome (delivered, retry, throttled, failed)."),
    ("sluice_timer_deliveries_total", Kind::Counter, "Timers finished, by outcome (delivered, or failed after their attempts)."),
    ("sluice_timer_lateness_seconds", Kind::Histogram, "How late a timer's first call went out after its due time."),
    // Storage
    ("sluice_storage_bytes", Kind::Gauge, "Bytes the store uses on disk."),
    ("sluice_storage_messages", Kind::Gauge, "Messages in the store, all queues (internal ones included)."),
    ("sluice_storage_syncs_total", Kind::Counter, "fdatasync calls of the log writer (each may cover many requests)."),
    ("sluice_storage_sync_seconds", Kind::Histogram, "Duration of one write and fdatasync of the log."),
    ("sluice_storage_sync_batch_records", Kind::Histogram, "Records made durable by one sync (group commit)."),
    ("sluice_storage_sync_batch_bytes", Kind::Histogram, "Bytes made durable by one sync."),
    ("sluice_storage_write_errors_total", Kind::Counter, "Failed log writes or syncs (the store refuses writes until one succeeds again)."),
    ("sluice_storage_full_refusals_total", Kind::Counter, "Publishes and new queues refused for want of free disk space (--min-free-bytes)."),
    ("sluice_storage_corrupt_regions_total", Kind::Counter, "Damaged log regions skipped at recovery."),
    ("sluice_storage_corrupt_messages_total", Kind::Counter, "Damaged messages found while running (taken out of their queue)."),
    // File ingestion
    ("sluice_ingest_rows_total", Kind::Counter, "Rows of ingested files, by queue and outcome."),
    ("sluice_ingest_files_total", Kind::Counter, "Ingested files, by queue and final state."),
];

impl Telemetry {
    pub fn install() -> anyhow::Result<Telemetry> {
        use metrics_exporter_prometheus::Matcher;
        // No idle timeout: push lanes keep their metrics' handles (`delivery::webhook::Meters`),
        // which an idle timeout would cut off from `/metrics`.
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
            .set_buckets_for_metric(
                Matcher::Full("sluice_storage_sync_batch_records".into()),
                COUNT_BUCKETS,
            )?
            .set_buckets_for_metric(
                Matcher::Full("sluice_storage_sync_batch_bytes".into()),
                &[
                    512.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
                ],
            )?
            .install_recorder()?;
        for &(name, kind, help) in FAMILIES {
            match kind {
                Kind::Counter => metrics::describe_counter!(name, help),
                Kind::Gauge => metrics::describe_gauge!(name, help),
                Kind::Histogram => metrics::describe_histogram!(name, help),
            }
        }
        Ok(Telemetry { handle })
    }

    /// Drain the histograms' recorded samples into their buckets every 5 s. The exporter keeps
    /// every sample until then (or until a scrape): a server nobody scraped grew by about 32
    /// bytes a request, 30 MB per million timers created.
    pub fn spawn_upkeep(&self) {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        });
    }

    pub async fn render(&self, engine: &Engine) -> String {
        if let Ok(queues) = engine.list_queue_counts().await {
            for (q, s, c) in queues {
                let n = q.name;
                for (state, v) in [
                    ("ready", s.ready),
                    ("delayed", s.delayed),
                    ("in_flight", s.in_flight),
                    ("dead_lettered", c.dead_lettered),
                ] {
                    metrics::gauge!("sluice_queue_messages", "queue" => n.clone(), "state" => state).set(v as f64);
                }
                metrics::gauge!("sluice_queue_depth", "queue" => n.clone()).set(c.total as f64);
                metrics::gauge!("sluice_queue_oldest_ready_age_seconds", "queue" => n.clone())
                    .set(s.oldest_ready_age_seconds as f64);
                for (name, v) in [
                    ("sluice_messages_published_total", c.published),
                    ("sluice_messages_received_total", s.received),
                    ("sluice_messages_acked_total", s.acked),
                    ("sluice_messages_nacked_total", s.nacked),
                    ("sluice_messages_expired_total", s.expired),
                    (
                        "sluice_messages_visibility_timeouts_total",
                        s.visibility_timeouts,
                    ),
                    ("sluice_messages_dead_lettered_total", s.dead_lettered_total),
                    ("sluice_messages_redriven_total", s.redriven),
                ] {
                    metrics::counter!(name, "queue" => n.clone()).absolute(v);
                }
            }
        }
        let info = engine.store_info();
        metrics::gauge!("sluice_storage_bytes").set(info.bytes_on_disk as f64);
        metrics::gauge!("sluice_storage_messages").set(info.messages as f64);
        metrics::gauge!("sluice_long_poll_waiters").set(engine.waiting() as f64);
        self.handle.render()
    }
}
