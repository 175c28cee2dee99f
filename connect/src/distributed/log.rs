//! One of the worker's compacted topics, read from the beginning and written to (Kafka's
//! `KafkaBasedLog`): created if missing, read to its end on demand, tailed by polling.

use std::time::Duration;

use bytes::Bytes;
use runnel_client::kafka::error::ResponseError;
use runnel_client::kafka::producer::{Acks, ProducerConfig, ProducerRecord};
use runnel_client::kafka::{
    Admin, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, NewTopic, OffsetReset,
    OffsetSpec, Producer, TopicPartition,
};

use crate::error::ConnectError;

/// How one internal topic is to be created.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// -1: the broker's default.
    pub replication_factor: i16,
}

/// Bound on the polls one read to the end may take, so a topic that grows faster than
/// we read does not keep a caller forever.
const MAX_POLLS_TO_END: usize = 100_000;
const POLL_TIMEOUT_MS: u64 = 200;

/// A compacted topic read from the start, and a producer to it.
pub struct TopicLog {
    topic: String,
    consumer: Consumer,
    partitions: Vec<TopicPartition>,
    producer: Producer,
}

/// Creates the topic (compacted) unless it exists.
pub async fn ensure_topic(admin: &Admin, spec: &TopicSpec) -> Result<(), ConnectError> {
    let topic = NewTopic::new(&spec.name, spec.partitions, spec.replication_factor)
        .with_config("cleanup.policy", "compact");
    match admin.create_topic(topic, false).await {
        Ok(()) => {
            tracing::info!(topic = %spec.name, partitions = spec.partitions, "created internal topic");
            Ok(())
        }
        Err(e) if e.code() == Some(ResponseError::TopicAlreadyExists) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl TopicLog {
    pub async fn open(client: ClientConfig, topic: &str) -> Result<TopicLog, ConnectError> {
        let mut config = ConsumerConfig::new(client.clone());
        config.auto_offset_reset = OffsetReset::Earliest;
        config.fetch_max_wait_ms = 100;
        let mut consumer = Consumer::new(config).await?;
        let partitions = consumer.assign_topic(topic).await?;
        for tp in &partitions {
            consumer.seek_to_beginning(tp)?;
        }
        let mut p = ProducerConfig::new(client);
        // Kafka's internal logs write with acks=all and one request in flight, in order.
        p.acks = Acks::All;
        p.linger_ms = 0;
        let producer = Producer::new(p).await?;
        Ok(TopicLog {
            topic: topic.to_string(),
            consumer,
            partitions,
            producer,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Every record up to the end the brokers report now, in order per partition.
    pub async fn read_to_end(&mut self) -> Result<Vec<ConsumerRecord>, ConnectError> {
        let asked: Vec<(TopicPartition, OffsetSpec)> = self
            .partitions
            .iter()
            .map(|tp| (tp.clone(), OffsetSpec::Latest))
            .collect();
        let mut ends = Vec::with_capacity(asked.len());
        for (tp, listed) in self.consumer.cluster().list_offsets(&asked).await? {
            ends.push((tp, listed?.offset));
        }
        let mut out = Vec::new();
        for _ in 0..MAX_POLLS_TO_END {
            let behind = ends
                .iter()
                .any(|(tp, end)| self.consumer.position(tp).is_none_or(|p| p < *end));
            if !behind {
                return Ok(out);
            }
            out.extend(self.poll().await?);
        }
        Err(ConnectError::Worker(format!(
            "could not read {} to its end in {MAX_POLLS_TO_END} polls",
            self.topic
        )))
    }

    /// What arrived since the last read, waiting a little when nothing did.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, ConnectError> {
        Ok(self
            .consumer
            .poll(Duration::from_millis(POLL_TIMEOUT_MS))
            .await?)
    }

    /// Writes one record and waits for the brokers to acknowledge it.
    pub async fn send(&self, key: Bytes, value: Option<Bytes>) -> Result<(), ConnectError> {
        let record = match value {
            Some(v) => ProducerRecord::new(&self.topic, v),
            None => ProducerRecord::null_value(&self.topic),
        }
        .with_key(key);
        self.producer.send_and_wait(record).await?;
        Ok(())
    }
}
