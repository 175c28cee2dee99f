//! Metadata: brokers, the controller, and topics with their partitions' leaders.
//! Unknown topics are created on the fly when the client allows it and
//! `auto.create.topics.enable` is on, as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use runnel_protocol::kafka::topic_name;

use super::authorized_operations;
use crate::group::coordinator::OFFSETS_TOPIC;
use crate::metadata::TopicImage;
use crate::Broker;

pub async fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let node = BrokerId(broker.config.node_id);
    let (host, port) = broker.advertised();
    let image = broker.image();
    // v0 sends an empty list for "all topics"; later versions send null.
    let requested: Option<Vec<(Option<String>, uuid::Uuid)>> = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
                .collect(),
        ),
    };
    let mut topics = Vec::new();
    match requested {
        None => {
            for topic in image.topics.values() {
                topics.push(describe(broker, topic, node));
            }
        }
        Some(list) => {
            for (name, id) in list {
                // A topic id, when given, names the topic: the Java client asks by id with the
                // name left at its default, an empty string, and Kafka looks the id up.
                let resolved = if id.is_nil() {
                    name
                } else {
                    image.topic_names.get(&id).cloned()
                };
                let Some(name) = resolved else {
                    topics.push(
                        MetadataResponseTopic::default()
                            .with_name(None)
                            .with_topic_id(id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    );
                    continue;
                };
                let known = broker.image().topics.get(&name).cloned();
                let topic = match known {
                    Some(topic) => Ok(topic),
                    // Created with the coordinator's layout, whatever the request says.
                    None if name == OFFSETS_TOPIC => match broker.groups.ensure_topic(broker).await
                    {
                        Ok(()) => broker
                            .image()
                            .topics
                            .get(&name)
                            .cloned()
                            .ok_or(ResponseError::UnknownTopicOrPartition),
                        Err(e) => Err(e.code),
                    },
                    None if request.allow_auto_topic_creation
                        && broker.config.auto_create_topics_enable =>
                    {
                        let partitions = broker.config.num_partitions;
                        match broker
                            .create_topic(
                                &name,
                                partitions,
                                broker.config.default_replication_factor,
                                None,
                                BTreeMap::new(),
                                false,
                            )
                            .await
                        {
                            Ok((topic, _)) => Ok(topic),
                            // Another client created it first.
                            Err(e) if e.code == ResponseError::TopicAlreadyExists => {
                                broker.image().topics.get(&name).cloned().ok_or(e.code)
                            }
                            Err(e) => Err(e.code),
                        }
                    }
                    None => Err(ResponseError::UnknownTopicOrPartition),
                };
                match topic {
                    Ok(topic) => topics.push(describe(broker, &topic, node)),
                    Err(code) => topics.push(
                        MetadataResponseTopic::default()
                            .with_name(Some(topic_name(&name)))
                            .with_error_code(code.code()),
                    ),
                }
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(StrBytes::from_string(host.to_string()))
            .with_port(i32::from(port))])
        .with_cluster_id(Some(StrBytes::from_string(image.cluster_id.clone())))
        .with_controller_id(node)
        .with_cluster_authorized_operations(authorized_operations::if_asked(
            request.include_cluster_authorized_operations,
            authorized_operations::CLUSTER,
        ))
        .with_topics(
            topics
                .into_iter()
                .map(|t| {
                    let found = t.error_code == 0;
                    if request.include_topic_authorized_operations && found {
                        t.with_topic_authorized_operations(authorized_operations::TOPIC)
                    } else {
                        t
                    }
                })
                .collect(),
        )
}

/// A partition's error code and offline replicas, as Metadata and DescribeTopicPartitions
/// report them: an offline replica is Kafka's KAFKA_STORAGE_ERROR, listed as offline (the
/// broker's log says why).
pub fn partition_status(broker: &Broker, topic: &str, index: i32) -> (i16, Vec<BrokerId>) {
    let node = BrokerId(broker.config.node_id);
    match broker.partition(topic, index) {
        Some(p) if p.is_offline() => (ResponseError::KafkaStorageError.code(), vec![node]),
        Some(_) => (0, Vec::new()),
        None => (ResponseError::LeaderNotAvailable.code(), Vec::new()),
    }
}

fn describe(broker: &Broker, topic: &TopicImage, node: BrokerId) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|index| {
            let (error, offline) = partition_status(broker, &topic.name, index);
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
}
