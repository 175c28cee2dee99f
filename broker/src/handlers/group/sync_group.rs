//! SyncGroup: members of a new generation collect their assignment, which the leader sends.
//! Parked until the leader's assignment is durable.

use bytes::Bytes;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::group::coordinator::check_group_id;
use crate::group::membership::SyncRequest;
use crate::Broker;

pub async fn handle(
    broker: &Broker,
    request: SyncGroupRequest,
    _version: i16,
) -> SyncGroupResponse {
    let group_id = request.group_id.0.to_string();
    if let Err(error) = check_group_id(&group_id) {
        return SyncGroupResponse::default().with_error_code(error.code());
    }
    let sync = SyncRequest {
        request_id: 0,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|s| s.to_string()),
        generation_id: request.generation_id,
        protocol_type: request.protocol_type.map(|s| s.to_string()),
        protocol_name: request.protocol_name.map(|s| s.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let answer = broker.groups.sync(&group_id, sync).await;
    SyncGroupResponse::default()
        .with_error_code(answer.error.map_or(0, |e| e.code()))
        .with_protocol_type(answer.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(answer.protocol_name.map(StrBytes::from_string))
        .with_assignment(if answer.error.is_some() {
            Bytes::new()
        } else {
            answer.assignment
        })
}
