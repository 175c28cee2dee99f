//! DescribeProducers: the idempotent producers each partition remembers (id, epoch, last
//! sequence and timestamp), as `kafka-transactions describe-producers` shows them. No
//! producer is in a transaction yet, so coordinator epoch and transaction start are -1.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::Broker;

pub async fn handle(
    broker: &Broker,
    request: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
        for index in topic.partition_indexes {
            let response = PartitionResponse::default().with_partition_index(index);
            let fail = |code: ResponseError, message: String| {
                response
                    .clone()
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
            };
            let partition = match broker.partition(&name, index) {
                None => {
                    partitions.push(fail(
                        ResponseError::UnknownTopicOrPartition,
                        format!("this broker has no partition {name}-{index}"),
                    ));
                    continue;
                }
                Some(p) if p.is_offline() => {
                    partitions.push(fail(
                        ResponseError::KafkaStorageError,
                        format!("partition {name}-{index} is offline"),
                    ));
                    continue;
                }
                Some(p) => p,
            };
            let active = partition.view().await.producers.active();
            let producers = active
                .into_iter()
                .map(|p| {
                    ProducerState::default()
                        .with_producer_id(ProducerId(p.producer_id))
                        .with_producer_epoch(i32::from(p.epoch))
                        .with_last_sequence(p.last_sequence)
                        .with_last_timestamp(p.last_timestamp_ms)
                        .with_coordinator_epoch(-1)
                        .with_current_txn_start_offset(-1)
                })
                .collect();
            partitions.push(response.with_active_producers(producers));
        }
        topics.push(
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}
