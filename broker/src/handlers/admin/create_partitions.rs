//! CreatePartitions: grow a topic's partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::{ApiError, Broker};

pub async fn handle(
    broker: &Broker,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let node = broker.config.node_id;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let assignments_ok = topic.assignments.as_ref().is_none_or(|list| {
            list.iter()
                .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == node)
        });
        let result = if assignments_ok {
            broker
                .create_partitions(&topic.name.0, topic.count, request.validate_only)
                .await
        } else {
            Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "this cluster has one broker, node {node}; assign new partitions to it alone"
                ),
            ))
        };
        let mut response = CreatePartitionsTopicResult::default().with_name(topic.name);
        if let Err(e) = result {
            response = response
                .with_error_code(e.code.code())
                .with_error_message(Some(StrBytes::from_string(e.message)));
        }
        results.push(response);
    }
    CreatePartitionsResponse::default().with_results(results)
}
