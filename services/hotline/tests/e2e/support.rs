//! The test harness: a fresh database and topic prefix per test, the stack started in-process on
//! port 0, an HTTP client, and waiting for conditions with a deadline (never bare sleeps).

use hotline::app::{self, Component, Stack};
use hotline::config::Config;
use hotline_store::tokens::{self, NewToken, Role};
use hotline_store::PgPool;
use hotline_workers::Clock;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::Message;
use serde_json::Value;
use std::future::Future;
use std::time::{Duration, Instant};

pub fn postgres_base() -> String {
    std::env::var("HOTLINE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn brokers() -> String {
    std::env::var("HOTLINE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub struct TestEnv {
    pub config: Config,
    pub database: String,
}

impl TestEnv {
    pub async fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("hotline_test_{}", &id[..16]);
        // Topics and consumer groups of this test's own: tests run in parallel, and a worker of
        // one test joining, leaving or being killed must not rebalance another test's group.
        let prefix = format!("t{}.", &id[..12]);
        let config = Config::from_flags([
            "--database-url",
            &format!("{}/{}", postgres_base(), database),
            "--kafka-brokers",
            &brokers(),
            "--topic-prefix",
            &prefix,
            "--consumer-group-prefix",
            &prefix,
            "--http-addr",
            "127.0.0.1:0",
            "--kafka-session-timeout-ms",
            "6000",
            "--deadline-scan-interval-ms",
            "200",
        ])
        .expect("test flags parse");
        Self { config, database }
    }

    pub async fn start<C: Clock + Clone>(&self, components: &[Component], clock: C) -> Stack {
        app::start(&self.config, components, clock)
            .await
            .expect("stack starts")
    }

    pub async fn start_all<C: Clock + Clone>(&self, clock: C) -> Stack {
        self.start(&Component::ALL, clock).await
    }

    /// The consumer group of a worker (its `NAME`, e.g. `hotline_workers::router::NAME`) in this
    /// test's stack.
    pub fn group(&self, worker: &str) -> String {
        format!("{}{worker}", self.config.consumer_group_prefix)
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}{}.v1", self.config.topic_prefix, name)
    }

    /// Environment for child `hotline` processes pointing at this test's database and topics.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HOTLINE_DATABASE_URL", self.config.database_url.clone()),
            ("HOTLINE_KAFKA_BROKERS", self.config.kafka_brokers.clone()),
            ("HOTLINE_TOPIC_PREFIX", self.config.topic_prefix.clone()),
            (
                "HOTLINE_CONSUMER_GROUP_PREFIX",
                self.config.consumer_group_prefix.clone(),
            ),
            ("HOTLINE_KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
            ("HOTLINE_HTTP_ADDR", "127.0.0.1:0".into()),
            ("XDG_STATE_HOME", "/nonexistent".into()),
        ]
    }

    /// Drops the test database; best effort.
    pub async fn cleanup(self, pool: PgPool) {
        pool.close().await;
        if let Ok(admin) =
            hotline_store::db::connect(&format!("{}/postgres", postgres_base()), 1).await
        {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.database
            ))
            .execute(&admin)
            .await;
        }
    }
}

pub async fn token(pool: &PgPool, role: Role, unit: Option<&str>) -> String {
    let mut conn = pool.acquire().await.unwrap();
    tokens::issue(
        &mut conn,
        &NewToken {
            role,
            unit,
            school: None,
            name: "test",
            expires_at: None,
        },
    )
    .await
    .unwrap()
    .1
}

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(stack: &Stack) -> Self {
        Self {
            base: format!("http://{}", stack.api_addr.expect("API started")),
            http: reqwest::Client::new(),
        }
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits until the case at `case_path` has a `kind` clock whose `field` (`met_at`,
    /// `paused_at` …) is set.
    pub async fn wait_clock(&self, case_path: &str, token: &str, kind: &str, field: &str) {
        let what = format!("the {kind} clock's {field}");
        eventually(&what, Duration::from_secs(20), || async {
            let (_, case) = self.get(case_path, token).await;
            case["clocks"]
                .as_array()?
                .iter()
                .any(|c| c["kind"] == kind && c[field].is_string())
                .then_some(())
        })
        .await;
    }

    /// The Prometheus text of `/metrics` (no token needed).
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn file(&self, token: &str, content: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/appeals",
                token,
                &serde_json::json!({"content": content, "channel": "phone"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Waits until the appeal has left intake and classification (routed, triage or transferred out).
    pub async fn wait_settled(&self, token: &str, appeal_id: &str) -> Value {
        eventually(
            &format!("appeal {appeal_id} settles"),
            Duration::from_secs(60),
            || async {
                let (_, body) = self
                    .get(&format!("/api/v1/appeals/{appeal_id}"), token)
                    .await;
                matches!(
                    body["status"].as_str(),
                    Some("routed" | "triage" | "transferred_out")
                )
                .then_some(body)
            },
        )
        .await
    }
}

/// The single number a `SELECT count(*) …` returns.
pub async fn count_rows(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Polls `check` until it returns Some, or panics after `timeout`.
/// How long a test waits for what a consumer does; only a failing test waits it out. The tests
/// run in parallel on a 2-core machine, and a busy machine can hold a delivery for tens of
/// seconds (a consumer's first join, a rebalance when a test's second stack joins its group).
pub const CONSUMER_WAIT: Duration = Duration::from_secs(90);

pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub partition: i32,
    pub offset: i64,
    pub event_type: String,
    pub payload: Vec<u8>,
}

/// Every record on `topic` up to its current end, read without a consumer group.
pub fn read_topic(topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("test-reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    let mut remaining = std::collections::HashMap::new();
    for partition in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), timeout)
            .unwrap();
        if high > low {
            remaining.insert(partition.id(), high);
            assignment
                .add_partition_offset(topic, partition.id(), rdkafka::Offset::Offset(low))
                .unwrap();
        }
    }
    let mut records = Vec::new();
    if remaining.is_empty() {
        return records;
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !remaining.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        if remaining
            .get(&message.partition())
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            remaining.remove(&message.partition());
        }
        let event_type = message
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|h| h.key == "event_type")
                    .and_then(|h| h.value)
            })
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        records.push(Record {
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            partition: message.partition(),
            offset: message.offset(),
            event_type,
            payload: message.payload().unwrap_or_default().to_vec(),
        });
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// Event types of one key's records, in partition order.
pub fn types_for_key(records: &[Record], key: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.key == key)
        .map(|r| r.event_type.clone())
        .collect()
}

/// Waits until consumer group `group` has committed past `offset` on `topic`/`partition`: proof
/// that it handled the record there.
pub async fn wait_consumed(group: &str, topic: &str, partition: i32, offset: i64) {
    let group = group.to_owned();
    let topic = topic.to_owned();
    eventually(
        &format!("{group} commits past {topic}/{partition}@{offset}"),
        CONSUMER_WAIT,
        || {
            let (group, topic) = (group.clone(), topic.clone());
            async move {
                tokio::task::spawn_blocking(move || {
                    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                        .set("bootstrap.servers", brokers())
                        .set("group.id", &group)
                        .set("enable.auto.commit", "false")
                        .create()
                        .unwrap();
                    let mut tpl = rdkafka::TopicPartitionList::new();
                    tpl.add_partition(&topic, partition);
                    let committed = consumer
                        .committed_offsets(tpl, Duration::from_secs(5))
                        .ok()?;
                    let element = committed.find_partition(&topic, partition)?;
                    match element.offset() {
                        rdkafka::Offset::Offset(o) if o > offset => Some(()),
                        _ => None,
                    }
                })
                .await
                .unwrap()
            }
        },
    )
    .await
}

/// Produces raw records (tests of redelivery and poison messages).
pub async fn produce(
    topic: &str,
    key: &str,
    payload: &[u8],
    event_type: Option<&str>,
) -> (i32, i64) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let mut headers = rdkafka::message::OwnedHeaders::new();
    if let Some(t) = event_type {
        headers = headers.insert(rdkafka::message::Header {
            key: "event_type",
            value: Some(t),
        });
    }
    let delivery = producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    (delivery.partition, delivery.offset)
}

/// Starts the `hotline` binary in the background against this test's database and topics
/// (quiet; killed when dropped).
pub fn spawn_hotline(
    env: &TestEnv,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> tokio::process::Child {
    hotline_command(env, args, extra_env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("hotline binary starts")
}

/// Serves `app` on a free local port (a webhook receiver, a trace collector); returns its URL.
pub async fn serve_locally(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Runs the `hotline` binary against this test's database and topics; returns its output.
pub async fn hotline_cli(
    env: &TestEnv,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> std::process::Output {
    hotline_command(env, args, extra_env)
        .output()
        .await
        .unwrap()
}

/// The `hotline` binary with `args`, pointed at this test's database and topics, logging warnings
/// only.
fn hotline_command(
    env: &TestEnv,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hotline"));
    command
        .args(args)
        .envs(env.child_env())
        .envs(extra_env.iter().copied())
        .env("RUST_LOG", "warn");
    command
}

/// Runs the `hotline` binary, asserts success, and parses each line of its stdout as JSON.
pub async fn hotline_json(env: &TestEnv, args: &[&str], extra_env: &[(&str, &str)]) -> Vec<Value> {
    let output = hotline_cli(env, args, extra_env).await;
    assert!(
        output.status.success(),
        "hotline {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The event types of a case's history, oldest first.
pub fn history_events(case: &Value) -> Vec<String> {
    case["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap().to_owned())
        .collect()
}
