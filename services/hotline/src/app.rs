//! Starting Hotline's components, all in one process or one per process.

use crate::config::Config;
use anyhow::Context;
use hotline_bus::{run_consumer, ConsumerSettings, Handler, KafkaConfig, Publisher};
use hotline_domain::calendar::WorkingCalendar;
use hotline_domain::deadlines::DeadlinePolicy;
use hotline_events::Stream;
use hotline_store::PgPool;
use hotline_workers::calendar::{run_calendar_reloader, CalendarSlot};
use hotline_workers::classifier::{run_model_reloader, ClassifierWorker, ModelSlot};
use hotline_workers::notifier::{run_sender, NotifierWorker};
use hotline_workers::proactive::{run_proactive_scanner, ProactiveRules, ProactiveWorker};
use hotline_workers::router::{Directories, RouterWorker};
use hotline_workers::tracker::{run_deadline_scanner, Rules, TrackerWorker};
use hotline_workers::Clock;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Component {
    Api,
    Relay,
    Classifier,
    Router,
    Tracker,
    /// Webhooks to units: queues a delivery per case event and unit, and sends them.
    Notifier,
    /// Hotspots, special items and seasonal reminders (未诉先办, 专项深办).
    Proactive,
}

impl Component {
    pub const ALL: [Component; 7] = [
        Component::Api,
        Component::Relay,
        Component::Classifier,
        Component::Router,
        Component::Tracker,
        Component::Notifier,
        Component::Proactive,
    ];
}

/// A running set of components.
pub struct Stack {
    pub api_addr: Option<SocketAddr>,
    pub pool: PgPool,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Stack {
    /// Stops every component gracefully: consumers commit what they finished.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Runs until Ctrl-C or SIGTERM, then stops.
    pub async fn run_until_stopped(self) {
        shutdown_signal().await;
        tracing::info!("stopping");
        self.stop().await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub fn policy(config: &Config) -> anyhow::Result<DeadlinePolicy> {
    let policy = match &config.deadline_policy_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("failed to read the deadline policy {}", path.display())
            })?;
            DeadlinePolicy::parse(&text).context("invalid deadline policy")?
        }
        None => DeadlinePolicy::builtin(),
    };
    Ok(policy)
}

/// Prepares the database and the topics; safe to run again and from several processes.
pub async fn prepare(config: &Config) -> anyhow::Result<(PgPool, KafkaConfig)> {
    let pool = hotline_store::db::prepare(&config.database_url, config.database_max_connections)
        .await
        .context("failed to prepare the database")?;
    let kafka = config.kafka()?;
    hotline_bus::topics::ensure_topics(&kafka)
        .await
        .context("failed to create the Kafka topics")?;
    Ok((pool, kafka))
}

pub async fn start<C: Clock + Clone>(
    config: &Config,
    components: &[Component],
    clock: C,
) -> anyhow::Result<Stack> {
    let (pool, kafka) = prepare(config).await?;
    if config.caller_key_secret.is_none()
        && components
            .iter()
            .any(|c| matches!(c, Component::Api | Component::Router))
    {
        tracing::warn!(
            "HOTLINE_CALLER_KEY_SECRET is unset: callers' phones are hashed with the public \
             development key; set a secret of your own in production"
        );
    }
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let publisher = Publisher::new(&kafka).context("failed to create the Kafka producer")?;
    let mut api_addr = None;
    let calendar = Arc::new(CalendarSlot::new(WorkingCalendar::builtin()));
    let directories = Arc::new(Directories::builtin());
    if components
        .iter()
        .any(|c| matches!(c, Component::Api | Component::Tracker))
    {
        hotline_workers::calendar::reload(&pool, &calendar, &clock)
            .await
            .context("failed to load the calendar")?;
        tasks.spawn(run_calendar_reloader(
            pool.clone(),
            Arc::clone(&calendar),
            clock.clone(),
            Duration::from_millis(config.calendar_reload_interval_ms),
            shutdown.clone(),
        ));
    }

    if let Some(addr) = config
        .metrics_addr
        .filter(|_| !components.contains(&Component::Api))
    {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("failed to listen on {addr} for metrics"))?;
        let handle = crate::telemetry::metrics();
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let handle = handle.clone();
                    async move { handle.render() }
                }),
            )
            .route("/healthz", axum::routing::get(|| async { "ok" }));
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(error) = serve.await {
                tracing::error!(%error, "metrics server failed");
            }
        });
        tracing::info!(%addr, "metrics listening");
    } else if !components.contains(&Component::Api) {
        // Counters still count; they are rendered by whoever serves /metrics.
        crate::telemetry::metrics();
    }

    for component in components {
        match component {
            Component::Api => {
                let listener = tokio::net::TcpListener::bind(config.http_addr)
                    .await
                    .with_context(|| format!("failed to listen on {}", config.http_addr))?;
                api_addr = Some(listener.local_addr()?);
                let state = hotline_api::AppState {
                    pool: pool.clone(),
                    clock: Arc::new(clock.clone()),
                    metrics: Some(crate::telemetry::metrics()),
                    calendar: Arc::clone(&calendar),
                    policy: Arc::new(policy(config)?),
                    directories: Arc::clone(&directories),
                    caller_key_secret: config.caller_key_secret().into(),
                    repeat_policy: Arc::new(hotline_domain::repeats::RepeatPolicy::builtin()),
                };
                tasks.spawn(hotline_api::stats::run_rate_gauges(
                    state.clone(),
                    Duration::from_millis(config.rates_interval_ms),
                    shutdown.clone(),
                ));
                let app = hotline_api::router(state);
                let stop = shutdown.clone();
                tasks.spawn(async move {
                    let serve = axum::serve(listener, app)
                        .with_graceful_shutdown(async move { stop.cancelled().await });
                    if let Err(error) = serve.await {
                        tracing::error!(%error, "HTTP server failed");
                    }
                });
                tracing::info!(addr = %api_addr.unwrap_or(config.http_addr), "API listening");
            }
            Component::Relay => {
                tasks.spawn(hotline_workers::relay::run_relay(
                    pool.clone(),
                    publisher.clone(),
                    shutdown.clone(),
                ));
                tasks.spawn(hotline_workers::relay::run_housekeeping(
                    pool.clone(),
                    clock.clone(),
                    hotline_workers::relay::Retention {
                        outbox: chrono::Duration::days(config.outbox_retention_days.max(1)),
                        processed_keys: chrono::Duration::days(
                            config.processed_retention_days.max(1),
                        ),
                    },
                    Duration::from_secs(3600),
                    shutdown.clone(),
                ));
            }
            Component::Classifier => {
                let initial = match &config.model_dir {
                    Some(dir) if dir.join("model.bin").exists() => {
                        crate::classifier::load_topic_classifier(dir)?
                    }
                    _ => crate::classifier::builtin()?,
                };
                tracing::info!(
                    model_version = initial.model_version(),
                    "classifier model ready"
                );
                let model = Arc::new(ModelSlot::new(initial));
                if let Some(dir) = &config.model_dir {
                    tasks.spawn(run_model_reloader(
                        Arc::clone(&model),
                        dir.clone(),
                        |dir| {
                            crate::classifier::load_topic_classifier(dir)
                                .map_err(|e| format!("{e:#}"))
                        },
                        Duration::from_millis(config.model_reload_interval_ms),
                        shutdown.clone(),
                    ));
                }
                let worker = ClassifierWorker {
                    pool: pool.clone(),
                    model,
                    clock: clock.clone(),
                };
                spawn_consumer(
                    &mut tasks,
                    &kafka,
                    &publisher,
                    worker,
                    &[Stream::Appeals],
                    &shutdown,
                );
            }
            Component::Router => {
                let worker = RouterWorker {
                    pool: pool.clone(),
                    directories: Arc::clone(&directories),
                    clock: clock.clone(),
                };
                spawn_consumer(
                    &mut tasks,
                    &kafka,
                    &publisher,
                    worker,
                    &[Stream::Appeals, Stream::Cases],
                    &shutdown,
                );
            }
            Component::Tracker => {
                let worker = TrackerWorker {
                    pool: pool.clone(),
                    rules: Arc::new(Rules {
                        policy: policy(config)?,
                        calendar: Arc::clone(&calendar),
                    }),
                    clock: clock.clone(),
                };
                spawn_consumer(
                    &mut tasks,
                    &kafka,
                    &publisher,
                    worker,
                    &[Stream::Cases],
                    &shutdown,
                );
                tasks.spawn(run_deadline_scanner(
                    pool.clone(),
                    clock.clone(),
                    Duration::from_millis(config.deadline_scan_interval_ms),
                    shutdown.clone(),
                ));
            }
            Component::Proactive => {
                let rules = Arc::new(ProactiveRules::builtin(Arc::clone(&directories)));
                let worker = ProactiveWorker {
                    pool: pool.clone(),
                    rules: Arc::clone(&rules),
                    clock: clock.clone(),
                };
                spawn_consumer(
                    &mut tasks,
                    &kafka,
                    &publisher,
                    worker,
                    &[Stream::Appeals, Stream::Cases],
                    &shutdown,
                );
                tasks.spawn(run_proactive_scanner(
                    pool.clone(),
                    rules,
                    clock.clone(),
                    Duration::from_millis(config.proactive_scan_interval_ms),
                    shutdown.clone(),
                ));
            }
            Component::Notifier => {
                let worker = NotifierWorker { pool: pool.clone() };
                spawn_consumer(
                    &mut tasks,
                    &kafka,
                    &publisher,
                    worker,
                    &[Stream::Cases],
                    &shutdown,
                );
                tasks.spawn(run_sender(
                    pool.clone(),
                    clock.clone(),
                    config.webhook_policy(),
                    config.webhook_senders,
                    Duration::from_millis(250),
                    shutdown.clone(),
                ));
            }
        }
    }
    Ok(Stack {
        api_addr,
        pool,
        shutdown,
        tasks,
    })
}

fn spawn_consumer<H: Handler + 'static>(
    tasks: &mut JoinSet<()>,
    kafka: &KafkaConfig,
    publisher: &Publisher,
    handler: H,
    streams: &[Stream],
    shutdown: &CancellationToken,
) {
    let kafka = kafka.clone();
    let publisher = publisher.clone();
    let shutdown = shutdown.clone();
    let topics = streams.iter().map(|s| kafka.topic(*s)).collect();
    let settings = ConsumerSettings::new(kafka.group(handler.name()), topics);
    tasks.spawn(async move {
        if let Err(error) = run_consumer(&kafka, &settings, &handler, &publisher, shutdown).await {
            tracing::error!(%error, consumer = %settings.group_id, "consumer failed to start");
        }
    });
}
