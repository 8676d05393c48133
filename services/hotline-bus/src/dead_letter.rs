//! Reading and re-driving the dead-letter topic (`hotline dlq list|redrive`).

use crate::publisher::Outgoing;
use crate::{headers, BusError, KafkaConfig, Publisher};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One dead-lettered record with what went wrong.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub consumer: String,
    pub error: String,
    pub attempts: u32,
    pub failed_at: String,
    pub event_type: Option<String>,
    #[serde(skip)]
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub payload: Vec<u8>,
}

/// Every record on the dead-letter topic, read from the beginning without joining a group.
/// Blocking: call it from `spawn_blocking` or a CLI.
pub fn read_all(config: &KafkaConfig, timeout: Duration) -> Result<Vec<DeadLetter>, BusError> {
    let topic = config.dead_letter_topic();
    let consumer: BaseConsumer = config
        .client_config()
        .set(
            "group.id",
            format!("hotline-dlq-reader-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(&topic, partition, timeout)?;
        if high > low {
            remaining.insert(partition, high);
            assignment.add_partition_offset(&topic, partition, Offset::Offset(low))?;
        }
    }
    let mut letters = Vec::new();
    if remaining.is_empty() {
        return Ok(letters);
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    while !remaining.is_empty() && Instant::now() < deadline {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = result?;
        if let Some(high) = remaining.get(&message.partition()) {
            if message.offset() + 1 >= *high {
                remaining.remove(&message.partition());
            }
        }
        letters.push(parse(&message)?);
    }
    letters.sort_by_key(|l| (l.partition, l.offset));
    Ok(letters)
}

fn parse(message: &rdkafka::message::BorrowedMessage<'_>) -> Result<DeadLetter, BusError> {
    let mut hdrs: Vec<(String, String)> = Vec::new();
    if let Some(h) = message.headers() {
        for header in h.iter() {
            if let Some(value) = header.value {
                hdrs.push((
                    header.key.to_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                ));
            }
        }
    }
    let (partition, offset) = (message.partition(), message.offset());
    let get = |name: &'static str| -> Result<String, BusError> {
        hdrs.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or(BusError::DeadLetterHeader {
                partition,
                offset,
                header: name,
            })
    };
    Ok(DeadLetter {
        partition,
        offset,
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        original_topic: get(headers::DLQ_TOPIC)?,
        original_partition: get(headers::DLQ_PARTITION)?.parse().unwrap_or(-1),
        original_offset: get(headers::DLQ_OFFSET)?.parse().unwrap_or(-1),
        consumer: get(headers::DLQ_CONSUMER)?,
        error: get(headers::DLQ_ERROR)?,
        attempts: get(headers::DLQ_ATTEMPTS)?.parse().unwrap_or(0),
        failed_at: get(headers::DLQ_FAILED_AT)?,
        event_type: get(headers::EVENT_TYPE).ok(),
        headers: hdrs,
        payload: message.payload().unwrap_or_default().to_vec(),
    })
}

/// Sends a dead letter back to the topic it came from, with its original key and headers, so the
/// consumer that failed gets it again.
pub async fn redrive(publisher: &Publisher, letter: &DeadLetter) -> Result<(), BusError> {
    let mut headers_out: Vec<(&str, &str)> = letter
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with("dlq.") && k.as_str() != headers::REDRIVEN_FOR)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Only the group that failed gets it again: the others would receive it after the case's
    // later events, and most of them handled it long ago.
    headers_out.push((headers::REDRIVEN_FOR, letter.consumer.as_str()));
    publisher
        .send(Outgoing {
            topic: &letter.original_topic,
            key: &letter.key,
            payload: &letter.payload,
            headers: headers_out,
        })
        .await
}
