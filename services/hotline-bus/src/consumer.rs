//! The one consumer loop every worker uses (after rdkafka's at-least-once example):
//! `enable.auto.offset.store=false`; receive, handle, and only then store the offset, which the
//! auto-commit timer (and the final commit on shutdown) sends to the broker. A record whose
//! handling keeps failing goes to the dead-letter topic with its error, and the stream behind it
//! keeps flowing.

use crate::publisher::Outgoing;
use crate::{headers, BusError, KafkaConfig, Publisher};
use hotline_events::Event;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientContext, Message};
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A worker's reaction to events. One handler per worker; it ignores event types it does not need.
pub trait Handler: Send + Sync {
    /// The worker's name: its consumer group and its key in `processed_events`.
    fn name(&self) -> &str;
    fn handle(&self, event: &Event) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A dependency (the database) is down: retried until it is back, the partition waits.
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// Might succeed on a retry (a row not there yet); dead-lettered after `max_attempts`.
    #[error("{0}")]
    Failed(String),
    /// Can never succeed as it is (an invalid field): dead-lettered at once.
    #[error("{0}")]
    Rejected(String),
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub group_id: String,
    pub topics: Vec<String>,
    pub max_attempts: u32,
    pub initial_backoff: Duration,
}

impl ConsumerSettings {
    pub fn new(group_id: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            group_id: group_id.into(),
            topics,
            max_attempts: 3,
            initial_backoff: Duration::from_millis(200),
        }
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(10);

struct LoggingContext;

impl ClientContext for LoggingContext {}

impl ConsumerContext for LoggingContext {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// Runs until `shutdown` is cancelled. Returns an error only when the consumer cannot be built.
pub async fn run_consumer<H: Handler>(
    config: &KafkaConfig,
    settings: &ConsumerSettings,
    handler: &H,
    dead_letters: &Publisher,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let consumer: StreamConsumer<LoggingContext> = config
        .client_config()
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout_ms / 3).max(100).to_string(),
        )
        .create_with_context(LoggingContext)?;
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(group = %settings.group_id, ?topics, "consumer started");

    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = consumer.recv() => received,
        };
        let message = match received {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "kafka receive failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let span = tracing::info_span!(
            "event",
            consumer = %settings.group_id,
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            event_id = tracing::field::Empty,
            event_type = tracing::field::Empty,
        );
        hotline_events::trace::continue_trace(&span, header(&message, headers::TRACEPARENT));
        if let Some(group) = header(&message, headers::REDRIVEN_FOR) {
            if group != settings.group_id {
                metrics::counter!("hotline_redriven_skipped_total", "consumer" => settings.group_id.clone()).increment(1);
                if let Err(error) = consumer.store_offset_from_message(&message) {
                    tracing::warn!(%error, "could not store offset; the record may be redelivered");
                }
                continue;
            }
        }
        let done = process(&message, settings, handler, dead_letters, &shutdown)
            .instrument(span)
            .await;
        if done == Processed::Interrupted {
            break; // shutting down before the effect was durable: the record will be redelivered
        }
        if let Err(error) = consumer.store_offset_from_message(&message) {
            tracing::warn!(%error, "could not store offset; the record may be redelivered");
        }
    }

    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit is the usual reason; not worth more than a note.
        tracing::debug!(%error, "final commit");
    }
    tracing::info!(group = %settings.group_id, "consumer stopped");
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Processed {
    Done,
    Interrupted,
}

async fn process<H: Handler>(
    message: &BorrowedMessage<'_>,
    settings: &ConsumerSettings,
    handler: &H,
    dead_letters: &Publisher,
    shutdown: &CancellationToken,
) -> Processed {
    let payload = message.payload().unwrap_or_default();
    let event = match Event::decode(payload) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%error, "undecodable record");
            return dead_letter(
                message,
                &error.to_string(),
                1,
                settings,
                dead_letters,
                shutdown,
            )
            .await;
        }
    };
    let span = tracing::Span::current();
    span.record("event_id", tracing::field::display(event.event_id));
    span.record("event_type", event.event_type());

    let mut attempts = 0u32;
    let mut backoff = settings.initial_backoff;
    loop {
        attempts += 1;
        let error = match handler.handle(&event).await {
            Ok(()) => {
                metrics::counter!("hotline_events_handled_total", "consumer" => settings.group_id.clone(), "outcome" => "ok").increment(1);
                return Processed::Done;
            }
            Err(error) => error,
        };
        let give_up = match &error {
            HandlerError::Unavailable(_) => false,
            HandlerError::Failed(_) => attempts >= settings.max_attempts,
            HandlerError::Rejected(_) => true,
        };
        if give_up {
            tracing::error!(%error, attempts, "handling failed; sending to the dead-letter topic");
            return dead_letter(
                message,
                &error.to_string(),
                attempts,
                settings,
                dead_letters,
                shutdown,
            )
            .await;
        }
        tracing::warn!(%error, attempts, ?backoff, "handling failed; will retry");
        tokio::select! {
            _ = shutdown.cancelled() => return Processed::Interrupted,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Publishes the record with its error to the dead-letter topic; retried until the broker takes it,
/// because the offset may only move on once the record is safe somewhere.
async fn dead_letter(
    message: &BorrowedMessage<'_>,
    error: &str,
    attempts: u32,
    settings: &ConsumerSettings,
    dead_letters: &Publisher,
    shutdown: &CancellationToken,
) -> Processed {
    let topic = dead_letters.config().dead_letter_topic();
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let attempts = attempts.to_string();
    let failed_at = chrono::Utc::now().to_rfc3339();
    let key = message
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    // Keep the original headers (event type, trace context) beside the error.
    let mut original: Vec<(String, String)> = Vec::new();
    if let Some(hdrs) = message.headers() {
        for header in hdrs.iter() {
            if let Some(value) = header.value {
                original.push((
                    header.key.to_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                ));
            }
        }
    }
    let mut backoff = settings.initial_backoff;
    loop {
        let mut headers_out: Vec<(&str, &str)> = original
            .iter()
            .filter(|(k, _)| !k.starts_with("dlq."))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        headers_out.extend([
            (headers::DLQ_TOPIC, message.topic()),
            (headers::DLQ_PARTITION, partition.as_str()),
            (headers::DLQ_OFFSET, offset.as_str()),
            (headers::DLQ_CONSUMER, settings.group_id.as_str()),
            (headers::DLQ_ERROR, error),
            (headers::DLQ_ATTEMPTS, attempts.as_str()),
            (headers::DLQ_FAILED_AT, failed_at.as_str()),
        ]);
        let sent = dead_letters
            .send(Outgoing {
                topic: &topic,
                key: &key,
                payload: message.payload().unwrap_or_default(),
                headers: headers_out,
            })
            .await;
        match sent {
            Ok(()) => {
                metrics::counter!("hotline_dead_letters_total", "consumer" => settings.group_id.clone()).increment(1);
                return Processed::Done;
            }
            Err(send_error) => {
                tracing::error!(error = %send_error, "could not publish to the dead-letter topic; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Processed::Interrupted,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// A header of the record as text (absent, or not UTF-8: `None`).
fn header<'m>(message: &'m BorrowedMessage<'_>, key: &str) -> Option<&'m str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}
