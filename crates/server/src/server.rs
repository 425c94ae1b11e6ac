//! `sluice serve`: open storage, build the engine, serve HTTP until SIGINT/SIGTERM, then shut
//! down in order: stop accepting, wake long polls, let in-flight requests finish, sync, exit 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sluice_engine::embedded::{EmbeddedOptions, EmbeddedStore};
use sluice_engine::redis_store::{RedisOptions, RedisStore};
use sluice_engine::{Clock, Engine, EngineOptions, Store, SystemClock};

use crate::api::{self, AppInner, AppState};
use crate::config::{ServeConfig, Storage};
use crate::telemetry::{self, Telemetry};
use crate::{chunk_watch, direct_h1};

/// Queues may be created on first use only up to `--max-queues` less 1% (at least 1): the
/// rest is kept for queues created explicitly (PUT, CreateQueue), so publishers that fill the
/// limit cannot lock the admin out.
pub fn queues_on_use(max_queues: usize) -> usize {
    max_queues.saturating_sub((max_queues / 100).max(1))
}

pub async fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    telemetry::init_logging(&cfg.log_format, &cfg.log_level);
    let telemetry = Arc::new(Telemetry::install()?);
    telemetry.spawn_upkeep();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let store = open_store(&cfg, clock.as_ref()).await?;
    let engine = Engine::new(
        store,
        clock,
        EngineOptions {
            max_message_bytes: cfg.max_message_bytes,
            max_waiters: cfg.max_waiters,
            max_queues_on_use: Some(queues_on_use(cfg.max_queues)),
        },
    );
    engine
        .load()
        .await
        .context("loading push subscriptions, timers and schedules")?;
    return_freed_memory();
    if engine.is_shared() {
        register_node(&engine, &cfg.listen);
    }
    let housekeeping = engine.spawn_housekeeping();
    let scheduler = engine.spawn_scheduler();
    let push = crate::delivery::PushManager::new(
        engine.clone(),
        crate::delivery::PushOptions {
            allow_private_targets: cfg.allow_private_targets,
            timer_concurrency: cfg.timer_concurrency,
            events_url: cfg.events_url.clone(),
            events_secret: cfg.events_secret.clone(),
        },
    )?;
    if cfg.allow_private_targets {
        tracing::warn!(
            "--allow-private-targets: webhooks and timers may call loopback and private addresses"
        );
    }
    match &cfg.forwarder {
        Some(f) => {
            crate::api::forwarder::install(&engine, &push, f, cfg.exit_on_forward_failure).await?
        }
        None => {
            if let Err(e) = crate::api::forwarder::uninstall(&engine).await {
                tracing::warn!(error = %e, "could not remove the forwarder subscription of an earlier run");
            }
        }
    }
    push.start(engine.shutdown_signal());
    let ingest = crate::ingest::Ingest::start(
        engine.clone(),
        crate::ingest::IngestOptions {
            watches: cfg.watches.clone(),
            settle: Duration::from_millis(cfg.watch_settle_ms),
            rescan: Duration::from_secs(cfg.watch_rescan_seconds),
            max_upload_bytes: cfg.max_upload_bytes,
            spool: cfg.data_dir.join("ingest"),
        },
    )
    .await
    .context("starting file ingestion")?;
    push.add_observer(ingest.clone());

    let auth = load_auth(&cfg)?;
    let rates = Arc::new(crate::rates::Rates::default());
    rates.spawn(engine.clone());
    let limits = api::body::BodyLimits {
        max_request_bytes: cfg.max_request_bytes,
        body_timeout: Duration::from_secs(cfg.body_timeout_seconds),
    };
    let streams = Arc::new(api::Slots::new(cfg.max_streams));
    let compat = compat_routers(&cfg, &engine, &auth, limits, &streams).await?;
    let app = api::router(
        AppState::new(AppInner {
            engine: engine.clone(),
            telemetry,
            max_request_bytes: cfg.max_request_bytes,
            push: push.clone(),
            ingest,
            access_log: cfg.access_log,
            body_timeout: Duration::from_secs(cfg.body_timeout_seconds),
            rates: rates.clone(),
            listen: cfg.listen.clone(),
            loopback: crate::config::is_loopback(&cfg.listen),
            auth: auth.clone(),
            tls: cfg.tls_cert.is_some(),
            streams,
            http_metrics: Default::default(),
        }),
        compat,
    );
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(crate::tls::Tls::new(c, k)?),
        _ => None,
    };
    let url = format!(
        "{}://{}",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?
    );
    let startup = Startup::new(&cfg, url, &auth);
    if cfg.log_format == "human" {
        eprint!("{}", startup.banner());
    } else {
        tracing::info!(url = %startup.url, data = %startup.data, auth = %startup.auth,
            version = env!("CARGO_PKG_VERSION"), "sluice is serving (HTTP/1.1 and HTTP/2 on one port)");
    }

    let e2 = engine.clone();
    let stop = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        e2.begin_shutdown();
    };
    if let Some(tls) = &tls {
        tls.spawn_reloader();
    }
    serve_connections(
        listener,
        app,
        tls,
        direct_h1::Limits {
            header_timeout: Duration::from_secs(cfg.header_timeout_seconds),
            max_header_bytes: cfg.max_header_bytes,
            max_body_bytes: cfg.max_request_bytes.min(direct_h1::MAX_BODY_BYTES),
            body_timeout: Duration::from_secs(cfg.body_timeout_seconds),
        },
        stop,
    )
    .await;
    housekeeping.abort();
    scheduler.abort();
    engine.close().await?;
    tracing::info!("storage synced and closed; bye");
    Ok(())
}

/// The API keys (`--auth-keys`), said in the log; a warning where no keys guard a port beyond
/// loopback.
fn load_auth(cfg: &ServeConfig) -> anyhow::Result<Arc<crate::auth::Auth>> {
    let auth = Arc::new(crate::auth::Auth::new(&cfg.auth_keys).context("--auth-keys")?);
    let (bearer_keys, sqs_pairs) = auth.counts();
    if auth.enabled() {
        tracing::info!(
            bearer_keys,
            sqs_pairs,
            "API keys are required (Authorization: Bearer KEY; SigV4 on the SQS API)"
        );
    } else if !crate::config::is_loopback(&cfg.listen) {
        tracing::warn!(listen = %cfg.listen, "--insecure-no-auth: NO API KEYS, and listening beyond loopback: anyone who can reach this port can read, publish, purge and delete");
        eprintln!("WARNING: sluice is serving {} with no API keys (--insecure-no-auth): anyone who can reach it has full access.", cfg.listen);
    }
    Ok(auth)
}

/// The compatibility front ends (SQS, and the seeds' APIs), each a thin adapter over the engine.
/// SQS message move tasks interrupted by the last stop are resumed here.
async fn compat_routers(
    cfg: &ServeConfig,
    engine: &Arc<Engine>,
    auth: &Arc<crate::auth::Auth>,
    limits: api::body::BodyLimits,
    streams: &Arc<api::Slots>,
) -> anyhow::Result<api::CompatRouters> {
    let mut sqs_credentials = cfg.sqs_credentials.clone();
    sqs_credentials.extend(auth.sqs_credentials());
    let sqs = api::sqs::SqsState::new(
        engine.clone(),
        auth.clone(),
        limits,
        api::sqs::SqsOptions {
            base_url: cfg.sqs_base_url.clone(),
            credentials: sqs_credentials,
            region: cfg.sqs_region.clone(),
            purge_interval_seconds: cfg.sqs_purge_interval_seconds,
        },
    );
    sqs.resume_move_tasks()
        .await
        .context("resuming SQS message move tasks")?;
    Ok(api::CompatRouters {
        sqs: api::sqs::routes(sqs),
        awe: api::awe::routes(
            &cfg.awe_prefix,
            api::awe::AweState::new(engine.clone(), &cfg.awe_queue, limits),
        ),
        miniqueue: api::miniqueue::routes(api::miniqueue::MiniqueueState::new(
            engine.clone(),
            streams.clone(),
            limits,
        )),
        awe_queue: cfg.awe_queue.clone(),
    })
}

/// Open the configured store: the embedded log (recovering it, with what recovery found in the
/// log) or the shared Redis one.
async fn open_store(cfg: &ServeConfig, clock: &dyn Clock) -> anyhow::Result<Arc<dyn Store>> {
    let started = Instant::now();
    Ok(match &cfg.storage {
        Storage::Embedded => {
            let (store, report) = EmbeddedStore::open(
                &cfg.data_dir,
                EmbeddedOptions {
                    max_queues: cfg.max_queues,
                    min_free_bytes: cfg.min_free_bytes,
                    history_max_bytes: cfg.history_max_bytes,
                    ..EmbeddedOptions::default()
                },
                clock.now_ms(),
            )
            .with_context(|| format!("opening the data directory {}", cfg.data_dir.display()))?;
            tracing::info!(
                data_dir = %cfg.data_dir.display(),
                segments = report.segments,
                records = report.records,
                messages = report.messages,
                dropped_tails = report.dropped.len(),
                recovery_ms = started.elapsed().as_millis() as u64,
                "storage open"
            );
            Arc::new(store)
        }
        Storage::Redis { url, settings } => {
            let store = RedisStore::open(RedisOptions {
                url: url.clone(),
                prefix: settings.prefix.clone(),
                wait_replicas: settings.wait_replicas,
                wait_timeout_ms: settings.wait_timeout_ms,
                max_queues: cfg.max_queues,
            })
            .await
            .with_context(|| format!("connecting to {url}"))?;
            tracing::info!(
                storage = %url,
                prefix = %settings.prefix,
                wait_replicas = settings.wait_replicas,
                "storage open (redis, shared by every node on it)"
            );
            Arc::new(store)
        }
    })
}

/// On a shared (Redis) store: tell the other nodes this one is up, with where it listens.
fn register_node(engine: &Engine, listen: &str) {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let id = format!(
        "{hostname}/{}/{}",
        listen,
        sluice_engine::MessageId::new_v7()
    );
    engine.set_node(
        id,
        serde_json::json!({
            "address": listen,
            "host": hostname,
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": sluice_engine::rfc3339(engine.started_at()),
        })
        .to_string(),
    );
}

/// What the startup banner says.
struct Startup {
    url: String,
    data: String,
    auth: String,
}

impl Startup {
    /// What the server says at start: its `url`, where its data goes, who may talk to it.
    fn new(cfg: &ServeConfig, url: String, auth: &crate::auth::Auth) -> Startup {
        let (bearer_keys, sqs_pairs) = auth.counts();
        Startup {
            url,
            data: match &cfg.storage {
                Storage::Embedded => format!(
                    "{} (embedded store)",
                    std::path::absolute(&cfg.data_dir)
                        .unwrap_or_else(|_| cfg.data_dir.clone())
                        .display()
                ),
                Storage::Redis { url, .. } => format!("{url} (shared Redis store)"),
            },
            auth: if auth.enabled() {
                format!("API keys required ({bearer_keys} bearer keys, {sqs_pairs} SQS key pairs)")
            } else if crate::config::is_loopback(&cfg.listen) {
                "no API keys: loopback only (give --auth-keys FILE to require keys)".to_string()
            } else {
                "NONE (--insecure-no-auth): anyone who can reach this port has full access"
                    .to_string()
            },
        }
    }

    /// For people starting the server in a terminal: where it is, where data goes, who may
    /// talk to it, how to stop it. (With `--log-format json`, the same is one log record.)
    fn banner(&self) -> String {
        format!(
            "\nsluice {} is serving {} (HTTP/1.1 and HTTP/2)\n  \
             dashboard  {}/\n  \
             data       {}\n  \
             auth       {}\n  \
             stop       Ctrl-C or SIGTERM (finishes requests, syncs, exits)\n\n",
            env!("CARGO_PKG_VERSION"),
            self.url,
            self.url,
            self.data,
            self.auth
        )
    }
}

/// Concurrent requests (streams) per HTTP/2 connection.
const MAX_H2_STREAMS: u32 = 256;

/// The accept loop, for plain and TLS connections alike. A plain connection is first served
/// by `direct_h1` while its requests are the direct ones; then, and a TLS connection after its
/// handshake, it is served by hyper as HTTP/1.1 or HTTP/2: by ALPN over TLS, by the connection
/// preface in cleartext (h2c prior knowledge), with upgrades (WebSocket). Every stream hyper
/// serves is watched on its read side (`chunk_watch`: bytes pass through untouched). A
/// connection that has not sent its request headers within `header_timeout` is closed
/// (slow-loris guard). Sockets set TCP_NODELAY: streams of small frames must not wait for
/// Nagle's algorithm (a 40 ms stall against the client's delayed ACK). At shutdown,
/// connections are drained gracefully.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: api::FrontDoor,
    tls: Option<Arc<crate::tls::Tls>>,
    limits: direct_h1::Limits,
    stop: impl std::future::Future<Output = ()>,
) {
    let header_timeout = limits.header_timeout;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stop_direct = Arc::new(direct_h1::Stop::default());
    tokio::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        // The chunk watch: the connection's reads are followed, and its requests tagged, so
        // that body readers can refuse a chunk announcing more than their limit at once.
        let announcements = Arc::new(chunk_watch::Announcements::default());
        let service = TowerToHyperService::new(chunk_watch::tag_requests(
            app.clone(),
            announcements.clone(),
        ));
        let watcher = graceful.watcher();
        let direct_app = app.clone();
        let stopping = stop_direct.clone();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(limits.max_header_bytes);
            // Headers per HTTP/1.1 request: hyper's default, 100 (docs/api.md "Limits"). Not set
            // explicitly: with a configured count hyper zero-fills two 100-entry buffers per
            // request (~1,500 instructions, 3% of a publish, measured with callgrind), while
            // its default parses into uninitialized stack space.
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_header_list_size(limits.max_header_bytes as u32)
                .max_concurrent_streams(MAX_H2_STREAMS);
            let result = match acceptor {
                Some(acceptor) => {
                    // The handshake gets the same deadline as the headers.
                    let stream =
                        match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let stream = chunk_watch::Watched::new(stream, announcements);
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                None => {
                    // The direct requests without hyper, until one is not (`direct_h1.rs`).
                    let tcp =
                        match direct_h1::serve(tcp, direct_app, limits, stopping.clone()).await {
                            direct_h1::End::Closed => return,
                            direct_h1::End::HandOver(tcp) => tcp,
                        };
                    let tcp = chunk_watch::Watched::new(tcp, announcements);
                    if stopping.is_stopped() {
                        // Handed over during shutdown: hyper-util's watcher would cancel the
                        // connection before reading the request that is already here. Serve
                        // that one and close; the watcher, held meanwhile, keeps the drain
                        // waiting for it.
                        builder.http1().keep_alive(false);
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                        let served = conn.await;
                        drop(watcher);
                        served
                    } else {
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                        watcher.watch(conn.into_owned()).await
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    stop_direct.stop();
    // Let in-flight requests finish (long polls were already answered by begin_shutdown).
    if tokio::time::timeout(std::time::Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within 30 s of shutdown");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Give back to the system the memory recovery used and freed (whole log segments read, the id
/// lists the timers load from). mimalloc returns freed pages only on later allocator activity,
/// which an idle server may not have for hours: without this, the RSS after a restart with 1M
/// pending timers stayed at recovery's peak, 300 bytes a timer instead of 85.
fn return_freed_memory() {
    // Linked into every binary of this crate, tests included, so the symbol below resolves.
    extern crate mimalloc as _;
    extern "C" {
        /// mimalloc's own entry point (linked by the `mimalloc` crate, the global allocator
        /// of the `sluice` binary; harmless where it is not).
        fn mi_collect(force: bool);
    }
    // SAFETY: a plain C function taking a bool, safe to call from any thread at any time.
    unsafe { mi_collect(true) }
}
