//! The idempotent producer: retries never duplicate or reorder records within a partition.

use crate::{headers, BusError, KafkaConfig};
use hotline_events::Stream;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    config: KafkaConfig,
}

/// One record to publish.
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub payload: &'a [u8],
    pub headers: Vec<(&'a str, &'a str)>,
}

impl Publisher {
    pub fn new(config: &KafkaConfig) -> Result<Self, BusError> {
        let producer = config
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()?;
        Ok(Self {
            producer,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    pub fn topic(&self, stream: Stream) -> String {
        self.config.topic(stream)
    }

    /// Sends one record and waits until the broker acknowledged it.
    pub async fn send(&self, record: Outgoing<'_>) -> Result<(), BusError> {
        let mut owned = OwnedHeaders::new();
        for (key, value) in &record.headers {
            owned = owned.insert(Header {
                key,
                value: Some(*value),
            });
        }
        self.producer
            .send(
                FutureRecord::to(record.topic)
                    .key(record.key)
                    .payload(record.payload)
                    .headers(owned),
                Duration::from_secs(0),
            )
            .await
            .map_err(|(error, _)| BusError::Kafka(error))?;
        Ok(())
    }

    /// Publishes one Hotline event on its stream's topic, keyed by its aggregate.
    pub async fn send_event(
        &self,
        stream: Stream,
        key: &str,
        event_type: &str,
        event_id: &str,
        traceparent: Option<&str>,
        payload: &[u8],
    ) -> Result<(), BusError> {
        let topic = self.topic(stream);
        let mut hdrs = vec![
            (headers::EVENT_TYPE, event_type),
            (headers::EVENT_ID, event_id),
        ];
        if let Some(t) = traceparent {
            hdrs.push((headers::TRACEPARENT, t));
        }
        self.send(Outgoing {
            topic: &topic,
            key,
            payload,
            headers: hdrs,
        })
        .await
    }
}
