//! A Kafka client: connection, cluster view, producer, consumer and admin.

pub mod admin;
pub mod cluster;
pub mod conn;
pub mod consumer;
pub mod consumer_member;
pub mod coordinator;
pub mod error;
pub mod group;
pub mod group_admin;
pub mod group_consumer;
pub mod partitioner;
pub mod producer;
pub mod records;

pub use admin::{Admin, AlterConfigOp, ConfigEntry, ConfigResource, NewTopic};
pub use cluster::{ClientConfig, Cluster, OffsetSpec, TopicPartition};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset};
pub use coordinator::CommittedOffset;
pub use error::KafkaError;
pub use group::Assignor;
pub use group_admin::{GroupDescription, ListedGroup, MemberDescription};
pub use group_consumer::{GroupConsumer, GroupConsumerConfig, GroupProtocol};
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
pub use records::Compression;
