//! Typed configuration from flags and environment. Every service reads the same struct.

use clap::Args;
use hotline_bus::KafkaConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL, the system of record.
    #[arg(
        long,
        env = "HOTLINE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/hotline",
        global = true
    )]
    pub database_url: String,
    #[arg(
        long,
        env = "HOTLINE_DATABASE_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
    pub database_max_connections: u32,
    /// Kafka bootstrap servers (any Kafka-protocol broker).
    #[arg(
        long,
        env = "HOTLINE_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub kafka_brokers: String,
    /// Prefix of every topic name.
    #[arg(
        long,
        env = "HOTLINE_TOPIC_PREFIX",
        default_value = "hotline.",
        global = true
    )]
    pub topic_prefix: String,
    /// Prefix of the consumer group names, for deployments that share a Kafka cluster.
    #[arg(
        long,
        env = "HOTLINE_CONSUMER_GROUP_PREFIX",
        default_value = "",
        global = true
    )]
    pub consumer_group_prefix: String,
    #[arg(
        long,
        env = "HOTLINE_KAFKA_PARTITIONS",
        default_value_t = 3,
        global = true
    )]
    pub kafka_partitions: i32,
    #[arg(
        long,
        env = "HOTLINE_KAFKA_REPLICATION",
        default_value_t = 1,
        global = true
    )]
    pub kafka_replication: i32,
    #[arg(
        long,
        env = "HOTLINE_KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub kafka_session_timeout_ms: u32,
    /// Extra librdkafka properties for production clusters, `key=value` separated by commas
    /// (e.g. `security.protocol=SASL_SSL,sasl.mechanism=SCRAM-SHA-512`). Secrets go in
    /// HOTLINE_KAFKA_SASL_PASSWORD, never here.
    #[arg(
        long,
        env = "HOTLINE_KAFKA_PROPERTIES",
        default_value = "",
        global = true
    )]
    pub kafka_properties: String,
    #[arg(long, env = "HOTLINE_KAFKA_SASL_USERNAME", global = true)]
    pub kafka_sasl_username: Option<String>,
    #[arg(
        long,
        env = "HOTLINE_KAFKA_SASL_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub kafka_sasl_password: Option<Secret>,
    /// Key of the callers' phone hashes (HMAC-SHA256): repeats are found by the hash, so the
    /// number itself is never compared or logged. Keep it secret and stable: changing it
    /// forgets every caller. A development key is used when unset.
    #[arg(
        long,
        env = "HOTLINE_CALLER_KEY_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub caller_key_secret: Option<Secret>,
    /// Where the HTTP API listens.
    #[arg(
        long,
        env = "HOTLINE_HTTP_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub http_addr: SocketAddr,
    /// Where a process without the API (`hotline run relay classifier …`) serves /metrics and
    /// /healthz for Prometheus; the API process serves them on HOTLINE_HTTP_ADDR.
    #[arg(long, env = "HOTLINE_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<SocketAddr>,
    /// How often the tracker looks for passed warning points and deadlines.
    #[arg(
        long,
        env = "HOTLINE_DEADLINE_SCAN_INTERVAL_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub deadline_scan_interval_ms: u64,
    /// A deadline policy file replacing the built-in `seeds/deadline-policy.toml`.
    #[arg(long, env = "HOTLINE_DEADLINE_POLICY_FILE", global = true)]
    pub deadline_policy_file: Option<PathBuf>,
    /// A model directory from `hotline train`; the classifier loads it at start and whenever
    /// `model.bin` changes. The built-in model (trained from seeds/) by default.
    #[arg(long, env = "HOTLINE_MODEL_DIR", global = true)]
    pub model_dir: Option<PathBuf>,
    /// How often the classifier looks for a new model in HOTLINE_MODEL_DIR.
    #[arg(
        long,
        env = "HOTLINE_MODEL_RELOAD_INTERVAL_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub model_reload_interval_ms: u64,
    /// How often loaded holiday schedules are re-read from the database.
    #[arg(
        long,
        env = "HOTLINE_CALENDAR_RELOAD_INTERVAL_MS",
        default_value_t = 60_000,
        global = true
    )]
    pub calendar_reload_interval_ms: u64,
    /// How often the API process refreshes the 30-day rate gauges on /metrics.
    #[arg(
        long,
        env = "HOTLINE_RATES_INTERVAL_MS",
        default_value_t = 300_000,
        global = true
    )]
    pub rates_interval_ms: u64,
    /// How often hotspots are checked for resolution and playbook reminders for due seasons.
    #[arg(
        long,
        env = "HOTLINE_PROACTIVE_SCAN_INTERVAL_MS",
        default_value_t = 60_000,
        global = true
    )]
    pub proactive_scan_interval_ms: u64,
    /// Published outbox rows older than this are deleted (Kafka holds the events).
    #[arg(
        long,
        env = "HOTLINE_OUTBOX_RETENTION_DAYS",
        default_value_t = 7,
        global = true
    )]
    pub outbox_retention_days: i64,
    /// Processed-event keys older than this are deleted. Keep it above the topics' retention and
    /// the dead-letter redrive window: a key is what makes a redelivery harmless.
    #[arg(
        long,
        env = "HOTLINE_PROCESSED_RETENTION_DAYS",
        default_value_t = 45,
        global = true
    )]
    pub processed_retention_days: i64,
    /// Webhook attempts before a delivery is parked as failed (and that case's later deliveries to
    /// the unit wait for an admin).
    #[arg(
        long,
        env = "HOTLINE_WEBHOOK_MAX_ATTEMPTS",
        default_value_t = 10,
        global = true
    )]
    pub webhook_max_attempts: u32,
    /// First retry delay; each further retry doubles it (with jitter), up to the maximum.
    #[arg(
        long,
        env = "HOTLINE_WEBHOOK_RETRY_BASE_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub webhook_retry_base_ms: u64,
    #[arg(
        long,
        env = "HOTLINE_WEBHOOK_RETRY_MAX_MS",
        default_value_t = 3_600_000,
        global = true
    )]
    pub webhook_retry_max_ms: u64,
    #[arg(
        long,
        env = "HOTLINE_WEBHOOK_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub webhook_timeout_ms: u64,
    /// Deliveries in flight at once (order per unit and case holds whatever the number).
    #[arg(
        long,
        env = "HOTLINE_WEBHOOK_SENDERS",
        default_value_t = 4,
        global = true
    )]
    pub webhook_senders: usize,
    /// `text` or `json` logs (on stderr).
    #[arg(
        long,
        env = "HOTLINE_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: String,
}

/// The key used when HOTLINE_CALLER_KEY_SECRET is unset (local runs and tests).
const DEVELOPMENT_CALLER_KEY: &str = "hotline-development-caller-key";

impl Config {
    pub fn caller_key_secret(&self) -> String {
        match &self.caller_key_secret {
            Some(secret) => secret.expose().to_owned(),
            None => DEVELOPMENT_CALLER_KEY.to_owned(),
        }
    }

    pub fn webhook_policy(&self) -> hotline_workers::notifier::RetryPolicy {
        use std::time::Duration;
        hotline_workers::notifier::RetryPolicy {
            max_attempts: self.webhook_max_attempts.max(1),
            base_delay: Duration::from_millis(self.webhook_retry_base_ms),
            max_delay: Duration::from_millis(self.webhook_retry_max_ms),
            request_timeout: Duration::from_millis(self.webhook_timeout_ms),
        }
    }
}

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl Config {
    pub fn kafka(&self) -> anyhow::Result<KafkaConfig> {
        let mut properties = Vec::new();
        for pair in self
            .kafka_properties
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("HOTLINE_KAFKA_PROPERTIES: `{pair}` is not key=value")
            })?;
            properties.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        if let Some(user) = &self.kafka_sasl_username {
            properties.push(("sasl.username".into(), user.clone()));
        }
        if let Some(password) = &self.kafka_sasl_password {
            properties.push(("sasl.password".into(), password.expose().to_owned()));
        }
        Ok(KafkaConfig {
            brokers: self.kafka_brokers.clone(),
            topic_prefix: self.topic_prefix.clone(),
            group_prefix: self.consumer_group_prefix.clone(),
            partitions: self.kafka_partitions,
            replication: self.kafka_replication,
            session_timeout_ms: self.kafka_session_timeout_ms,
            client_properties: properties,
        })
    }
}

/// The file `deploy/local/up` writes with the local stack's addresses, so that `hotline token
/// issue` and friends find it with no set-up. Variables already set win.
pub fn local_stack_env_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("hotline/local.env"))
}

pub fn load_local_stack_defaults() {
    let Some(path) = local_stack_env_file() else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            if key.starts_with("HOTLINE_") && std::env::var_os(key).is_none() {
                std::env::set_var(key, value);
            }
        }
    }
}

impl Config {
    /// Builds a config from flags, with the environment and defaults behind them (tests, tools).
    pub fn from_flags<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            config: Config,
        }
        let args = std::iter::once(std::ffi::OsString::from("hotline"))
            .chain(flags.into_iter().map(Into::into));
        <Flags as clap::Parser>::try_parse_from(args).map(|f| f.config)
    }
}
