//! DescribeTopicPartitions (KIP-966): Metadata's topic view with eligible leader replicas,
//! paged. Kafka 4's `kafka-topics --describe` uses it. Topics come sorted by name; a
//! response holds at most `response_partition_limit` partitions (capped by the broker's
//! `max.request.partition.size.limit`) and a cursor naming where the next page starts.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};
use kafka_protocol::ResponseError;
use runnel_protocol::kafka::topic_name;

use super::authorized_operations;
use super::metadata::partition_status;
use crate::Broker;

/// Kafka's default `max.request.partition.size.limit`.
pub const DEFAULT_PARTITION_LIMIT: i32 = 2000;

pub fn handle(
    broker: &Broker,
    request: DescribeTopicPartitionsRequest,
    _version: i16,
) -> DescribeTopicPartitionsResponse {
    let image = broker.image();
    let broker_limit = broker
        .config
        .properties
        .get("max.request.partition.size.limit")
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_PARTITION_LIMIT);
    let mut budget = match request.response_partition_limit {
        n if n > 0 => n.min(broker_limit),
        _ => broker_limit,
    };
    let mut names: Vec<String> = if request.topics.is_empty() {
        image.topics.keys().cloned().collect()
    } else {
        request
            .topics
            .iter()
            .map(|t| t.name.0.to_string())
            .collect()
    };
    names.sort();
    names.dedup();
    let (start_topic, mut start_partition) = match &request.cursor {
        Some(c) => (Some(c.topic_name.0.to_string()), c.partition_index.max(0)),
        None => (None, 0),
    };
    if let Some(start) = &start_topic {
        if !names.contains(start) {
            return DescribeTopicPartitionsResponse::default().with_topics(vec![
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(start)))
                    .with_error_code(ResponseError::InvalidRequest.code()),
            ]);
        }
        names.retain(|n| n >= start);
    }

    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        let Some(topic) = image.topics.get(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_topic_authorized_operations(authorized_operations::TOPIC),
            );
            continue;
        };
        if budget == 0 {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(&name))
                    .with_partition_index(0),
            );
            break;
        }
        let first = start_partition.min(topic.partitions);
        start_partition = 0;
        let last = (first + budget).min(topic.partitions);
        budget -= last - first;
        let partitions = (first..last)
            .map(|index| {
                let status = partition_status(broker, topic, index);
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(status.error)
                    .with_partition_index(index)
                    .with_leader_id(status.leader)
                    .with_leader_epoch(0)
                    .with_replica_nodes(status.replicas)
                    .with_isr_nodes(status.isr)
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(status.offline)
            })
            .collect();
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(topic.id)
                .with_is_internal(name.starts_with("__"))
                .with_topic_authorized_operations(authorized_operations::TOPIC)
                .with_partitions(partitions),
        );
        if last < topic.partitions {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(&name))
                    .with_partition_index(last),
            );
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}
