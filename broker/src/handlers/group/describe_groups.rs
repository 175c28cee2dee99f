//! DescribeGroups: state, protocol and members of each group. A group that does not exist
//! is reported Dead (v0-v5) or GROUP_ID_NOT_FOUND (v6+), as Kafka does.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::Broker;

pub async fn handle(
    broker: &Broker,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    let include_operations = request.include_authorized_operations;
    for group_id in request.groups {
        let described = match broker.groups.describe(&group_id).await {
            Err(code) => DescribedGroup::default()
                .with_error_code(code.code())
                .with_authorized_operations(i32::MIN),
            Ok(None) => {
                let response = DescribedGroup::default()
                    .with_group_state(StrBytes::from_static_str("Dead"))
                    .with_authorized_operations(i32::MIN);
                if version >= 6 {
                    response
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "group {} not found",
                            &*group_id
                        ))))
                } else {
                    response
                }
            }
            Ok(Some(summary)) => {
                // As Kafka: the protocol and the members' metadata and assignments only
                // for a Stable group; mid-rebalance they are not settled.
                let stable = summary.state == "Stable";
                DescribedGroup::default()
                    .with_group_state(StrBytes::from_string(summary.state))
                    .with_protocol_type(StrBytes::from_string(summary.protocol_type))
                    .with_protocol_data(StrBytes::from_string(if stable {
                        summary.protocol_name
                    } else {
                        String::new()
                    }))
                    .with_authorized_operations(if include_operations {
                        crate::handlers::admin::authorized_operations::GROUP
                    } else {
                        i32::MIN
                    })
                    .with_members(
                        summary
                            .members
                            .into_iter()
                            .map(|m| {
                                let member = DescribedGroupMember::default()
                                    .with_member_id(StrBytes::from_string(m.member_id))
                                    .with_client_id(StrBytes::from_string(m.client_id))
                                    .with_client_host(StrBytes::from_string(m.client_host))
                                    .with_member_metadata(if stable {
                                        m.subscription
                                    } else {
                                        Default::default()
                                    })
                                    .with_member_assignment(if stable {
                                        m.assignment
                                    } else {
                                        Default::default()
                                    });
                                if version >= 4 {
                                    member.with_group_instance_id(
                                        m.group_instance_id.map(StrBytes::from_string),
                                    )
                                } else {
                                    member
                                }
                            })
                            .collect(),
                    )
            }
        };
        groups.push(described.with_group_id(group_id));
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
