//! JoinGroup: a member joins a classic group or rejoins it for a rebalance. The request is
//! parked until the group's join phase completes, so the answer may take up to the
//! rebalance timeout.

use std::net::SocketAddr;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::group::coordinator::check_group_id;
use crate::group::membership::{JoinRequest, Protocol};
use crate::Broker;

pub async fn handle(
    broker: &Broker,
    request: JoinGroupRequest,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> JoinGroupResponse {
    let group_id = request.group_id.0.to_string();
    let refuse = |code: i16| {
        JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            // Null from v7, where it may be.
            .with_protocol_name((version < 7).then(|| StrBytes::from_static_str("")))
            .with_member_id(request.member_id.clone())
    };
    let checked = check_group_id(&group_id).and(check_short_strings(&request));
    if let Err(error) = checked {
        return refuse(error.code());
    }
    // Kafka checks the session timeout before it looks the group up: a refused join
    // leaves no empty group behind.
    let group = &broker.config.group;
    if !(group.min_session_timeout_ms..=group.max_session_timeout_ms)
        .contains(&request.session_timeout_ms)
    {
        return refuse(kafka_protocol::ResponseError::InvalidSessionTimeout.code());
    }
    if let Err(e) = broker.groups.ensure_topic(broker).await {
        tracing::warn!(error = %e.message, "cannot create the offsets topic");
        return refuse(kafka_protocol::ResponseError::CoordinatorNotAvailable.code());
    }
    let join = JoinRequest {
        request_id: 0,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout; Kafka uses the session timeout.
        rebalance_timeout_ms: if version == 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata.clone(),
            })
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let answer = broker.groups.join(&group_id, join).await;
    JoinGroupResponse::default()
        .with_error_code(answer.error.map_or(0, |e| e.code()))
        .with_generation_id(answer.generation_id)
        .with_protocol_type(answer.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(answer.protocol_name.map(StrBytes::from_string))
        .with_leader(StrBytes::from_string(answer.leader_id))
        .with_skip_assignment(answer.skip_assignment)
        .with_member_id(StrBytes::from_string(answer.member_id))
        .with_members(
            answer
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}

/// Names the group keeps go into `__consumer_offsets` as Kafka's 2-byte-length strings.
fn check_short_strings(request: &JoinGroupRequest) -> Result<(), kafka_protocol::ResponseError> {
    let fits = |s: &str| s.len() <= i16::MAX as usize;
    let ok = fits(&request.member_id)
        && request.group_instance_id.as_deref().is_none_or(fits)
        && fits(&request.protocol_type)
        && request.protocols.iter().all(|p| fits(&p.name));
    if ok {
        Ok(())
    } else {
        Err(kafka_protocol::ResponseError::InvalidRequest)
    }
}
