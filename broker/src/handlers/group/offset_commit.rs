//! OffsetCommit: a consumer's positions, made durable in `__consumer_offsets`. A member of
//! a group commits for its generation; anyone may commit to an empty group.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use crate::group::coordinator::check_offsets_group_id;
use crate::group::membership;
use crate::group::records::CommittedOffset;
use crate::{now_ms, Broker};

pub async fn handle(
    broker: &Broker,
    request: OffsetCommitRequest,
    _version: i16,
) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let now = now_ms();
    let offsets: Vec<((String, i32), CommittedOffset)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    (t.name.0.to_string(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map_or_else(String::new, |m| m.to_string()),
                        commit_timestamp_ms: now,
                    },
                )
            })
        })
        .collect();
    let results = match check_offsets_group_id(&group_id) {
        Err(error) => Err(error),
        Ok(()) => match broker.groups.ensure_topic(broker).await {
            Err(_) => Err(ResponseError::CoordinatorNotAvailable),
            Ok(()) => {
                let member = membership::OffsetCommitRequest {
                    request_id: 0,
                    member_id: request.member_id.to_string(),
                    group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
                    generation_id: request.generation_id_or_member_epoch,
                };
                broker
                    .groups
                    .commit_offsets(&group_id, member, offsets)
                    .await
            }
        },
    };
    let mut results = results.map(Vec::into_iter);
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result = match &mut results {
                        Ok(each) => each.next().expect("one result per offset"),
                        Err(error) => Err(*error),
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(result.err().map_or(0, |e| e.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
