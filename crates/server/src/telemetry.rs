//! Logging and metrics setup. Logs go to stderr as human text or JSON lines. Metrics use the
//! `metrics` facade (the engine records storage sync figures through it) with a Prometheus
//! recorder; queue gauges and counters are read from the engine at scrape time, so they are
//! always exact and cost nothing on the hot path.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sluice_engine::Engine;
use tracing_subscriber::EnvFilter;

pub fn init_logging(format: &str, level: &str) {
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

impl Telemetry {
    pub fn install() -> anyhow::Result<Telemetry> {
        use metrics_exporter_prometheus::Matcher;
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
        Ok(Telemetry { handle })
    }

    pub async fn render(&self, engine: &Engine) -> String {
        if let Ok(queues) = engine.list_queues().await {
            for (q, s) in queues {
                let n = q.name;
                for (state, v) in [
                    ("ready", s.ready),
                    ("delayed", s.delayed),
                    ("in_flight", s.in_flight),
                    ("dead_lettered", s.dead_lettered),
                ] {
                    metrics::gauge!("sluice_queue_messages", "queue" => n.clone(), "state" => state).set(v as f64);
                }
                metrics::gauge!("sluice_queue_oldest_ready_age_seconds", "queue" => n.clone())
                    .set(s.oldest_ready_age_seconds as f64);
                for (name, v) in [
                    ("sluice_messages_published_total", s.published),
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
