//! Heartbeat: a classic member shows it is alive and learns of rebalances.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::group::coordinator::check_group_id;
use crate::Broker;

pub async fn handle(
    broker: &Broker,
    request: HeartbeatRequest,
    _version: i16,
) -> HeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let error = match check_group_id(&group_id) {
        Err(error) => Some(error),
        Ok(()) => {
            broker
                .groups
                .heartbeat(
                    &group_id,
                    request.member_id.to_string(),
                    request.group_instance_id.map(|s| s.to_string()),
                    request.generation_id,
                )
                .await
        }
    };
    HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code()))
}
