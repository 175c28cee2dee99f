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
                topics.push(describe(broker, topic));
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
                    Ok(topic) => topics.push(describe(broker, &topic)),
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
        .with_brokers(cluster_brokers(broker))
        .with_cluster_id(Some(StrBytes::from_string(image.cluster_id.clone())))
        .with_controller_id(controller_id(broker))
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

/// A partition as Metadata and DescribeTopicPartitions report it.
pub struct PartitionStatus {
    pub error: i16,
    /// -1 when no live broker serves it.
    pub leader: BrokerId,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// An offline replica here is Kafka's KAFKA_STORAGE_ERROR (the broker's log says why).
    pub offline: Vec<BrokerId>,
}

pub fn partition_status(broker: &Broker, topic: &TopicImage, index: i32) -> PartitionStatus {
    let image = broker.image();
    let replicas: Vec<BrokerId> = topic
        .replicas_of(index)
        .iter()
        .map(|&b| BrokerId(b))
        .collect();
    let leader = image.leader_of(topic, index);
    let mut status = PartitionStatus {
        error: 0,
        leader: BrokerId(leader.unwrap_or(-1)),
        isr: leader.map(BrokerId).into_iter().collect(),
        replicas,
        offline: Vec::new(),
    };
    if leader.is_none() {
        status.error = ResponseError::LeaderNotAvailable.code();
    } else if leader == Some(broker.config.node_id) {
        match broker.partition(&topic.name, index) {
            Some(p) if p.is_offline() => {
                status.error = ResponseError::KafkaStorageError.code();
                status.offline = vec![status.leader];
            }
            Some(_) => {}
            // Placed here, and not open yet: the publisher is on its way.
            None => status.error = ResponseError::LeaderNotAvailable.code(),
        }
    }
    status
}

/// The brokers clients may reach: the live ones, and this one (it answers, after all).
pub fn cluster_brokers(broker: &Broker) -> Vec<MetadataResponseBroker> {
    let image = broker.image();
    let me = broker.config.node_id;
    let mut brokers: Vec<MetadataResponseBroker> = image
        .live_brokers()
        .filter(|b| b.id != me)
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.clone().map(StrBytes::from_string))
        })
        .collect();
    let (host, port) = broker.advertised();
    brokers.push(
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(me))
            .with_host(StrBytes::from_string(host.to_string()))
            .with_port(i32::from(port))
            .with_rack(broker.config.broker_rack.clone().map(StrBytes::from_string)),
    );
    brokers.sort_by_key(|b| b.node_id.0);
    brokers
}

/// The controller clients are told of: the active one, or this broker while there is
/// none (every broker forwards controller requests).
pub fn controller_id(broker: &Broker) -> BrokerId {
    BrokerId(broker.active_controller().unwrap_or(broker.config.node_id))
}

fn describe(broker: &Broker, topic: &TopicImage) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|index| {
            let status = partition_status(broker, topic, index);
            MetadataResponsePartition::default()
                .with_error_code(status.error)
                .with_partition_index(index)
                .with_leader_id(status.leader)
                .with_leader_epoch(0)
                .with_replica_nodes(status.replicas)
                .with_isr_nodes(status.isr)
                .with_offline_replicas(status.offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
}
