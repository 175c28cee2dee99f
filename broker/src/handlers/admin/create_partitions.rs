//! CreatePartitions: grow a topic's partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::Broker;

pub async fn handle(
    broker: &Broker,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    let mut counts = std::collections::HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.to_string()).or_insert(0) += 1;
    }
    let mut answered = std::collections::HashSet::new();
    for topic in request.topics {
        // As in Kafka: a topic named twice is answered once, with INVALID_REQUEST.
        if !answered.insert(topic.name.0.to_string()) {
            continue;
        }
        if counts[topic.name.0.as_str()] > 1 {
            results.push(
                CreatePartitionsTopicResult::default()
                    .with_name(topic.name)
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "the request names this topic more than once; name each topic once",
                    ))),
            );
            continue;
        }
        // Assignments, when given, must name each new partition's replicas.
        let adding = broker
            .topic_partition_count(&topic.name.0)
            .map(|now| i64::from(topic.count) - i64::from(now));
        let assignments_count_ok = match (&topic.assignments, adding) {
            (Some(list), Some(adding)) if adding > 0 => list.len() as i64 == adding,
            _ => true,
        };
        if !assignments_count_ok {
            let given = topic.assignments.as_ref().map_or(0, Vec::len);
            results.push(
                CreatePartitionsTopicResult::default()
                    .with_name(topic.name)
                    .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "{} new partitions need {} replica assignments, and {given} were given; give one per new partition",
                        adding.unwrap_or(0),
                        adding.unwrap_or(0)
                    )))),
            );
            continue;
        }
        let replicas = topic.assignments.as_ref().map(|list| {
            list.iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let result = broker
            .create_partitions(&topic.name.0, topic.count, replicas, request.validate_only)
            .await;
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
