//! ConsumerGroupHeartbeat (KIP-848): the consumer protocol's one request. Members join,
//! report what they own, receive their assignment from the server-side assignor, and
//! leave, all by heartbeating with their member epoch.

use std::net::SocketAddr;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::group::assignor::Assignor;
use crate::group::consumer_group::{self, ConsumerHeartbeatRequest};
use crate::group::coordinator::check_group_id;
use crate::Broker;

pub async fn handle(
    broker: &Broker,
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> ConsumerGroupHeartbeatResponse {
    let refuse = |error: ResponseError, message: &str| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message.to_string())))
    };
    let group_id = request.group_id.0.to_string();
    if check_group_id(&group_id).is_err() {
        return refuse(
            ResponseError::InvalidRequest,
            "GroupId can't be empty: name the group to join",
        );
    }
    // Kafka refuses these joins before it looks the group up, so they create no group.
    if request.member_epoch == consumer_group::JOIN_GROUP_MEMBER_EPOCH {
        // v1 (KIP-1082): the client makes up its member id, a UUID, before joining.
        if version >= 1 && request.member_id.is_empty() {
            return refuse(
                ResponseError::InvalidRequest,
                "MemberId can't be empty: generate a UUID for the member before it joins",
            );
        }
        if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none() {
            return refuse(
                ResponseError::InvalidRequest,
                "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
            );
        }
        if let Some(name) = &request.server_assignor {
            if Assignor::from_name(name).is_none() {
                return refuse(
                    ResponseError::UnsupportedAssignor,
                    &format!("ServerAssignor {name} is not supported: use uniform or range"),
                );
            }
        }
    }
    if let Err(e) = broker.groups.ensure_topic(broker).await {
        return refuse(ResponseError::CoordinatorNotAvailable, &e.message);
    }
    let heartbeat = ConsumerHeartbeatRequest {
        request_id: 0,
        group_id,
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: request.server_assignor.map(|s| s.to_string()),
        topic_partitions: request.topic_partitions.map(|owned| {
            owned
                .into_iter()
                .map(|tp| consumer_group::TopicPartitions {
                    topic_id: tp.topic_id,
                    partitions: tp.partitions,
                })
                .collect()
        }),
        client_id: client_id.to_string(),
        client_host: format!("/{}", peer.ip()),
    };
    let answer = broker.groups.consumer_heartbeat(broker, heartbeat).await;
    if answer.error == Some(ResponseError::InvalidRequest) {
        // Clients treat this as fatal; say why where an operator looks.
        tracing::warn!(%peer, client_id, message = ?answer.error_message, "refused a malformed ConsumerGroupHeartbeat");
    }
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(answer.error.map_or(0, |e| e.code()))
        .with_error_message(answer.error_message.map(StrBytes::from_string))
        .with_member_id(answer.member_id.map(StrBytes::from_string))
        .with_member_epoch(answer.member_epoch)
        .with_heartbeat_interval_ms(answer.heartbeat_interval_ms)
        .with_assignment(answer.assignment.map(|owned| {
            Assignment::default().with_topic_partitions(
                owned
                    .into_iter()
                    .map(|tp| {
                        TopicPartitions::default()
                            .with_topic_id(tp.topic_id)
                            .with_partitions(tp.partitions)
                    })
                    .collect(),
            )
        }))
}
