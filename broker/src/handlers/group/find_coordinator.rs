//! FindCoordinator: where a group's coordinator is (this broker, which owns every partition
//! of `__consumer_offsets`; the topic is created on first use, as in Kafka). Batched keys
//! from v4. Transactions are not served yet: their keys get COORDINATOR_NOT_AVAILABLE.
//!
//! librdkafka also reads this API's presence as "the broker knows LZ4" (FindCoordinator v0
//! arrived with Kafka 0.8.2, as LZ4 did); without it, it silently sends LZ4 batches
//! uncompressed.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::group::coordinator::{check_group_id, OFFSETS_TOPIC};
use crate::{ApiError, Broker};

const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

struct Found {
    node_id: i32,
    host: String,
    port: i32,
}

async fn find(broker: &Broker, key: &str, key_type: i8) -> Result<Found, ApiError> {
    match key_type {
        GROUP_KEY => {
            check_group_id(key).map_err(|_| {
                ApiError::new(
                    ResponseError::InvalidRequest,
                    "a group id must not be empty",
                )
            })?;
            broker
                .groups
                .ensure_topic(broker)
                .await
                .map_err(|e| ApiError::new(ResponseError::CoordinatorNotAvailable, e.message))?;
            let index = broker.groups.partition_for(key);
            let image = broker.image();
            let leader = image
                .topics
                .get(OFFSETS_TOPIC)
                .and_then(|t| image.leader_of(t, index))
                .and_then(|id| image.brokers.get(&id));
            match leader {
                Some(b) if b.id == broker.config.node_id => {
                    let (host, port) = broker.advertised();
                    Ok(Found {
                        node_id: b.id,
                        host: host.to_string(),
                        port: i32::from(port),
                    })
                }
                Some(b) => Ok(Found {
                    node_id: b.id,
                    host: b.host.clone(),
                    port: i32::from(b.port),
                }),
                None => Err(ApiError::new(
                    ResponseError::CoordinatorNotAvailable,
                    format!("{OFFSETS_TOPIC}-{index}, where this group lives, has no live broker right now; retry"),
                )),
            }
        }
        TRANSACTION_KEY => Err(ApiError::new(
            ResponseError::CoordinatorNotAvailable,
            "transactions are not supported by this Runnel version yet",
        )),
        other => Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("unknown coordinator key type {other}"),
        )),
    }
}

pub async fn handle(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            let coordinator = match find(broker, &key, request.key_type).await {
                Ok(found) => Coordinator::default()
                    .with_node_id(BrokerId(found.node_id))
                    .with_host(StrBytes::from_string(found.host))
                    .with_port(found.port),
                Err(e) => Coordinator::default()
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            };
            coordinators.push(coordinator.with_key(key));
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let key_type = if version >= 1 {
        request.key_type
    } else {
        GROUP_KEY
    };
    match find(broker, &request.key, key_type).await {
        Ok(found) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(found.node_id))
            .with_host(StrBytes::from_string(found.host))
            .with_port(found.port),
        Err(e) => {
            let response = FindCoordinatorResponse::default()
                .with_error_code(e.code.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1);
            // The error message is in the response from v1.
            if version >= 1 {
                response.with_error_message(Some(StrBytes::from_string(e.message)))
            } else {
                response
            }
        }
    }
}
