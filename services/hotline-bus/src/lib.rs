//! Kafka for Hotline. Any Kafka-protocol broker works (tansu locally, a Kafka cluster in
//! production): the client is librdkafka through rdkafka.

pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod publisher;
pub mod topics;

pub use config::KafkaConfig;
pub use consumer::{run_consumer, ConsumerSettings, Handler, HandlerError};
pub use publisher::Publisher;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("could not create topic {topic}: {code}")]
    CreateTopic { topic: String, code: String },
    #[error("dead-letter record {partition}/{offset} is missing header `{header}`")]
    DeadLetterHeader {
        partition: i32,
        offset: i64,
        header: &'static str,
    },
}

/// Header names Hotline writes on every record.
pub mod headers {
    pub const EVENT_TYPE: &str = "event_type";
    pub const EVENT_ID: &str = "event_id";
    pub const TRACEPARENT: &str = "traceparent";
    pub const DLQ_TOPIC: &str = "dlq.original_topic";
    pub const DLQ_PARTITION: &str = "dlq.original_partition";
    pub const DLQ_OFFSET: &str = "dlq.original_offset";
    pub const DLQ_CONSUMER: &str = "dlq.consumer";
    pub const DLQ_ERROR: &str = "dlq.error";
    pub const DLQ_ATTEMPTS: &str = "dlq.attempts";
    pub const DLQ_FAILED_AT: &str = "dlq.failed_at";
    /// On a redriven record: the consumer group it is redriven for. The topic's other groups
    /// handled it when it first came, and skip it now.
    pub const REDRIVEN_FOR: &str = "redriven_for";
}
