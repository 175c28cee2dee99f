//! OffsetFetch: committed offsets of one group (v0-v7) or several (v8+), for given
//! partitions or all the group has. A partition without a commit gets offset -1.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::group::coordinator::check_offsets_group_id;
use crate::group::records::CommittedOffset;
use crate::Broker;

type Fetched = Vec<((String, i32), Option<CommittedOffset>)>;
type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>)>);

async fn fetch(
    broker: &Broker,
    group_id: &str,
    partitions: Option<Vec<(String, i32)>>,
) -> Result<Fetched, ResponseError> {
    check_offsets_group_id(group_id)?;
    broker.groups.fetch_offsets(group_id, partitions).await
}

/// Groups fetched partitions by topic, in first-seen order.
fn by_topic(fetched: Fetched) -> Vec<TopicOffsets> {
    let mut topics: Vec<TopicOffsets> = Vec::new();
    for ((topic, partition), committed) in fetched {
        match topics.last_mut() {
            Some((name, partitions)) if *name == topic => partitions.push((partition, committed)),
            _ => topics.push((topic, vec![(partition, committed)])),
        }
    }
    topics
}

fn requested(topics: impl Iterator<Item = (String, Vec<i32>)>) -> Vec<(String, i32)> {
    topics
        .flat_map(|(name, partitions)| partitions.into_iter().map(move |p| (name.clone(), p)))
        .collect()
}

pub async fn handle(
    broker: &Broker,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for group in request.groups {
            let partitions = group.topics.map(|topics| {
                requested(
                    topics
                        .into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes)),
                )
            });
            // v9: a consumer-protocol member says who it is; its epoch must be current.
            let checked = broker
                .groups
                .validate_offset_fetch(
                    &group.group_id,
                    group.member_id.as_deref(),
                    group.member_epoch,
                )
                .await;
            let fetched = match checked {
                Ok(()) => fetch(broker, &group.group_id, partitions).await,
                Err(error) => Err(error),
            };
            let response = match fetched {
                Err(error) => OffsetFetchResponseGroup::default().with_error_code(error.code()),
                Ok(fetched) => OffsetFetchResponseGroup::default().with_topics(
                    by_topic(fetched)
                        .into_iter()
                        .map(|(name, partitions)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(StrBytes::from_string(name)))
                                .with_partitions(
                                    partitions
                                        .into_iter()
                                        .map(|(index, c)| {
                                            let c = committed_fields(c);
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(index)
                                                .with_committed_offset(c.0)
                                                .with_committed_leader_epoch(c.1)
                                                .with_metadata(Some(c.2))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            };
            groups.push(response.with_group_id(group.group_id));
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let partitions = request.topics.map(|topics| {
        requested(
            topics
                .into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes)),
        )
    });
    let group: GroupId = request.group_id;
    match fetch(broker, &group, partitions).await {
        // v0-v1 have no top-level error code; the client sees no offsets.
        Err(error) if version >= 2 => OffsetFetchResponse::default().with_error_code(error.code()),
        Err(_) => OffsetFetchResponse::default(),
        Ok(fetched) => OffsetFetchResponse::default().with_topics(
            by_topic(fetched)
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(index, c)| {
                                    let c = committed_fields(c);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(c.0)
                                        .with_committed_leader_epoch(c.1)
                                        .with_metadata(Some(c.2))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

/// Offset, leader epoch and metadata as the wire has them; no commit is offset -1.
fn committed_fields(committed: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match committed {
        Some(c) => (c.offset, c.leader_epoch, StrBytes::from_string(c.metadata)),
        None => (-1, -1, StrBytes::from_static_str("")),
    }
}
