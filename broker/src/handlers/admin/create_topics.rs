//! CreateTopics: name rules, partition count, replication factor, configs, validate-only.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::group::coordinator::OFFSETS_TOPIC;
use crate::{ApiError, Broker};

pub async fn handle(
    broker: &Broker,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    let mut counts = std::collections::HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.to_string()).or_insert(0) += 1;
    }
    let mut answered = std::collections::HashSet::new();
    for topic in request.topics {
        let name = topic.name.clone();
        // Kafka answers a name given twice once, with INVALID_REQUEST, creating neither.
        if !answered.insert(name.0.to_string()) {
            continue;
        }
        let result = if counts[name.0.as_str()] > 1 {
            Err(ApiError::new(
                ResponseError::InvalidRequest,
                "the request names this topic more than once; name each topic once",
            ))
        } else {
            create(broker, topic, request.validate_only, version).await
        };
        results.push(match result {
            Ok(created) => created,
            Err(e) => CreatableTopicResult::default()
                .with_name(name)
                .with_error_code(e.code.code())
                .with_error_message(Some(StrBytes::from_string(e.message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_topic_config_error_code(0),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn create(
    broker: &Broker,
    topic: CreatableTopic,
    validate_only: bool,
    version: i16,
) -> Result<CreatableTopicResult, ApiError> {
    if topic.name.0.as_str() == OFFSETS_TOPIC {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!(
                "{OFFSETS_TOPIC} is internal: the broker creates it when the first group needs it"
            ),
        ));
    }
    let mut partitions = topic.num_partitions;
    let mut replication_factor = topic.replication_factor;
    let mut replicas = None;
    if !topic.assignments.is_empty() {
        if partitions != -1 || replication_factor != -1 {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "give either replica assignments or a partition count and replication factor, not both",
            ));
        }
        for (expected, assignment) in topic.assignments.iter().enumerate() {
            if assignment.partition_index != expected as i32 {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    "replica assignments must cover partitions 0, 1, 2, ... in order",
                ));
            }
        }
        partitions = topic.assignments.len() as i32;
        replicas = Some(
            topic
                .assignments
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect(),
        );
        replication_factor = topic.assignments[0].broker_ids.len() as i16;
    }
    if partitions == -1 {
        partitions = broker.config.num_partitions;
    }
    if replication_factor == -1 {
        replication_factor = broker.config.default_replication_factor;
    }
    let mut configs = BTreeMap::new();
    for config in topic.configs {
        let Some(value) = config.value else {
            return Err(ApiError::new(
                ResponseError::InvalidConfig,
                format!("config {} has a null value", config.name),
            ));
        };
        configs.insert(config.name.to_string(), value.to_string());
    }
    let (created, replication_factor) = broker
        .create_topic(
            &topic.name.0,
            partitions,
            replication_factor,
            replicas,
            configs,
            validate_only,
        )
        .await?;
    let effective = broker.topic_config(&created);
    let configs = effective
        .entries()
        .map(|(name, value, source)| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(name))
                .with_value(Some(StrBytes::from_string(value.to_string())))
                .with_config_source(source as i8)
        })
        .collect();
    Ok(CreatableTopicResult::default()
        .with_name(topic.name)
        .with_topic_id(created.id)
        .with_num_partitions(created.partitions)
        .with_replication_factor(replication_factor)
        // The effective configs are in the response from v5.
        .with_configs((version >= 5).then_some(configs)))
}
