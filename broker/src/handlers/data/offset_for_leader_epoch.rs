//! OffsetForLeaderEpoch: the end offset of a leader epoch, from the leader-epoch cache
//! (KIP-101). Consumers use it to detect truncation after a leader change (KIP-320).

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use crate::Broker;

pub async fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let response = EpochEndOffset::default().with_partition(p.partition);
            let partition = match broker.serving(&topic.topic.0, p.partition) {
                Ok(partition) => partition,
                Err(e) => {
                    partitions.push(
                        response
                            .with_error_code(e.code.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    );
                    continue;
                }
            };
            if p.current_leader_epoch > 0 {
                partitions.push(
                    response
                        .with_error_code(ResponseError::UnknownLeaderEpoch.code())
                        .with_leader_epoch(-1)
                        .with_end_offset(-1),
                );
                continue;
            }
            let state = partition.view().await;
            let found = state
                .log
                .leader_epochs()
                .end_offset_for(p.leader_epoch, state.log.log_end_offset());
            let (epoch, end) = found.unwrap_or((-1, -1));
            partitions.push(response.with_leader_epoch(epoch).with_end_offset(end));
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
