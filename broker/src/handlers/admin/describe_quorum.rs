//! DescribeQuorum: the controller quorum as its leader sees it (what Kafka's
//! `kafka-metadata-quorum describe --status` prints). Any broker answers, asking the
//! active controller.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::controller::{ControllerAnswer, ControllerCommand, QuorumDescription};
use crate::metadata::METADATA_LOG_DIR;
use crate::{ApiError, Broker};

/// The metadata topic's name, as KRaft calls it.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    broker: &Broker,
    request: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let asks_for_metadata = request.topics.iter().all(|t| {
        t.topic_name.0.as_str() == METADATA_TOPIC
            && t.partitions.iter().all(|p| p.partition_index == 0)
    });
    if !asks_for_metadata || request.topics.is_empty() {
        return refused(ApiError::new(
            ResponseError::InvalidRequest,
            format!("the quorum's log is {METADATA_TOPIC}-0 ({METADATA_LOG_DIR}); ask for that partition"),
        ));
    }
    let described = match broker
        .controller_call(ControllerCommand::DescribeQuorum)
        .await
    {
        Ok(ControllerAnswer::Quorum(q)) => q,
        Ok(other) => return refused(crate::unexpected(other)),
        Err(e) => return refused(e),
    };
    let response = DescribeQuorumResponse::default()
        .with_error_message(None)
        .with_topics(vec![TopicData::default()
            .with_topic_name(StrBytes::from_static_str(METADATA_TOPIC).into())
            .with_partitions(vec![partition(&described)])]);
    if version < 2 {
        return response;
    }
    response.with_nodes(nodes(broker))
}

fn partition(described: &QuorumDescription) -> PartitionData {
    let voters = described
        .voters
        .iter()
        .map(|&(id, matched)| {
            ReplicaState::default()
                .with_replica_id(BrokerId(id as i32))
                // Raft index i is the metadata log's offset i - 1: the end offset is i.
                .with_log_end_offset(matched as i64)
                .with_last_fetch_timestamp(-1)
                .with_last_caught_up_timestamp(-1)
        })
        .collect();
    PartitionData::default()
        .with_partition_index(0)
        .with_error_message(None)
        .with_leader_id(BrokerId(described.leader_id as i32))
        .with_leader_epoch(i32::try_from(described.leader_epoch).unwrap_or(i32::MAX))
        .with_high_watermark(described.high_watermark as i64)
        .with_current_voters(voters)
}

/// Each voter's controller listener (v2).
fn nodes(broker: &Broker) -> Vec<Node> {
    broker
        .config
        .quorum_voters()
        .into_iter()
        .map(|(id, (host, port))| {
            let port = if id == broker.config.node_id {
                broker.controller_addr().port()
            } else {
                port
            };
            Node::default()
                .with_node_id(BrokerId(id))
                .with_listeners(vec![Listener::default()
                    .with_name(StrBytes::from_static_str("CONTROLLER"))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port)])
        })
        .collect()
}

fn refused(e: ApiError) -> DescribeQuorumResponse {
    DescribeQuorumResponse::default()
        .with_error_code(e.code.code())
        .with_error_message(Some(StrBytes::from_string(e.message)))
}
