//! FindCoordinator: consumer groups and transactions are not served yet, so every key gets
//! COORDINATOR_NOT_AVAILABLE, which clients treat as "try again later".
//!
//! The API is served anyway because librdkafka enables LZ4 only for brokers that list it
//! (FindCoordinator v0 marks Kafka 0.8.2, where LZ4 arrived); without it, librdkafka
//! silently sends LZ4 batches uncompressed.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

const NOT_YET: &str =
    "consumer groups and transactions are not supported by this Runnel version yet";

pub fn handle(request: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let code = ResponseError::CoordinatorNotAvailable.code();
    let message = || Some(StrBytes::from_static_str(NOT_YET));
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(code)
                    .with_error_message(message())
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(BrokerId(-1))
        .with_port(-1);
    // The error message is in the response from v1.
    if version >= 1 {
        response.with_error_message(message())
    } else {
        response
    }
}
