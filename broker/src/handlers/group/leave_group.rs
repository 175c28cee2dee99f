//! LeaveGroup: members leave a classic group (v0-v2 one member by id, v3+ a batch that may
//! name static members by instance id alone).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::group::coordinator::check_group_id;
use crate::group::membership::{LeaveRequest, LeavingMember};
use crate::Broker;

pub async fn handle(
    broker: &Broker,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    if let Err(error) = check_group_id(&group_id) {
        return LeaveGroupResponse::default().with_error_code(error.code());
    }
    let members = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let answer = broker
        .groups
        .leave(
            &group_id,
            LeaveRequest {
                request_id: 0,
                members,
            },
        )
        .await;
    if version < 3 {
        // One member, whose error is the response's.
        let error = answer
            .error
            .or_else(|| answer.members.first().and_then(|m| m.error));
        return LeaveGroupResponse::default().with_error_code(error.map_or(0, |e| e.code()));
    }
    LeaveGroupResponse::default()
        .with_error_code(answer.error.map_or(0, |e| e.code()))
        .with_members(
            answer
                .members
                .into_iter()
                .map(|m| {
                    MemberResponse::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                        .with_error_code(m.error.map_or(0, |e| e.code()))
                })
                .collect(),
        )
}
