//! InitProducerId: a producer id and epoch for an idempotent producer.
//!
//! Transactions come later, so a transactional id is refused. A producer that already has
//! an id may ask for the next epoch of it (KIP-360), to reset its sequences.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::Broker;

pub async fn handle(
    broker: &Broker,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let failed = |code: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request.transactional_id.is_some() {
        tracing::info!(
            "refusing InitProducerId with a transactional id: transactions are not supported yet"
        );
        return failed(ResponseError::TransactionalIdAuthorizationFailed);
    }
    if request.producer_id.0 >= 0 {
        // Bump the epoch; when it would overflow, start over with a fresh id as Kafka does.
        if request.producer_epoch >= 0 && request.producer_epoch < i16::MAX - 1 {
            return InitProducerIdResponse::default()
                .with_producer_id(request.producer_id)
                .with_producer_epoch(request.producer_epoch + 1);
        }
    }
    match broker.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e.message, "cannot allocate a producer id");
            failed(ResponseError::CoordinatorNotAvailable)
        }
    }
}
