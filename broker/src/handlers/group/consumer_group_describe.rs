//! ConsumerGroupDescribe (KIP-848): members, epochs and assignments of consumer-protocol
//! groups. Classic groups answer GROUP_ID_NOT_FOUND, so clients fall back to
//! DescribeGroups for them, as they do with Kafka.

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::group::consumer_group::DescribedTopicPartitions;
use crate::Broker;

/// `member_type` of members that speak the consumer protocol (KIP-1099).
const CONSUMER_MEMBER: i8 = 1;

fn assignment(partitions: Vec<DescribedTopicPartitions>) -> Assignment {
    Assignment::default().with_topic_partitions(
        partitions
            .into_iter()
            .map(|tp| {
                TopicPartitions::default()
                    .with_topic_id(tp.topic_id)
                    .with_topic_name(TopicName(StrBytes::from_string(tp.topic_name)))
                    .with_partitions(tp.partitions)
            })
            .collect(),
    )
}

pub async fn handle(
    broker: &Broker,
    request: ConsumerGroupDescribeRequest,
    version: i16,
) -> ConsumerGroupDescribeResponse {
    let mut groups = Vec::with_capacity(request.group_ids.len());
    let include_operations = request.include_authorized_operations;
    for group_id in request.group_ids {
        let described = match broker.groups.describe_consumer(&group_id).await {
            Err(error) => {
                // Kafka's two sentences: a classic group of that name, or none at all.
                let classic = matches!(broker.groups.describe(&group_id).await, Ok(Some(_)));
                let message = if classic {
                    format!("Group {} is not a consumer group.", &*group_id)
                } else {
                    format!("Group {} not found.", &*group_id)
                };
                DescribedGroup::default()
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
            Ok(group) => DescribedGroup::default()
                .with_group_state(StrBytes::from_static_str(group.state.name()))
                .with_group_epoch(group.group_epoch)
                .with_assignment_epoch(group.assignment_epoch)
                .with_assignor_name(StrBytes::from_string(group.assignor_name))
                .with_members(
                    group
                        .members
                        .into_iter()
                        .map(|m| {
                            let member = Member::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_instance_id(m.instance_id.map(StrBytes::from_string))
                                .with_rack_id(m.rack_id.map(StrBytes::from_string))
                                .with_member_epoch(m.member_epoch)
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_subscribed_topic_names(
                                    m.subscribed_topic_names
                                        .into_iter()
                                        .map(|n| TopicName(StrBytes::from_string(n)))
                                        .collect(),
                                )
                                // Kafka reports no regex as "", not null.
                                .with_subscribed_topic_regex(Some(StrBytes::from_string(
                                    m.subscribed_topic_regex.unwrap_or_default(),
                                )))
                                .with_assignment(assignment(m.assignment))
                                .with_target_assignment(assignment(m.target_assignment));
                            if version >= 1 {
                                member.with_member_type(CONSUMER_MEMBER)
                            } else {
                                member
                            }
                        })
                        .collect(),
                ),
        };
        let operations = if include_operations && described.error_code == 0 {
            crate::handlers::admin::authorized_operations::GROUP
        } else {
            i32::MIN
        };
        groups.push(
            described
                .with_group_id(group_id)
                .with_authorized_operations(operations),
        );
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
