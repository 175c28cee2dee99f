//! A Kafka client: connection, cluster view, producer, consumer and admin.

pub mod admin;
pub mod cluster;
pub mod conn;
pub mod consumer;
pub mod error;
pub mod partitioner;
pub mod producer;
pub mod records;

pub use admin::{Admin, AlterConfigOp, ConfigEntry, ConfigResource, NewTopic};
pub use cluster::{ClientConfig, Cluster, OffsetSpec, TopicPartition};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset};
pub use error::KafkaError;
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
pub use records::Compression;
