//! [`CounterClient`] speaks to the durable counter service over the node transport and
//! classifies every outcome the way a checker needs (ok, failed, or unknown).

use std::time::Duration;

use super::service::{IncrementRequest, IncrementStatus, ReadRequest};
use runnel_actors::transport::{NodeId, Transport, TransportError};

/// What a client can honestly say about an operation it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// It happened, and this is the answer.
    Ok(T),
    /// It definitely did not happen.
    Failed(String),
    /// It may or may not have happened (timeout, lost connection, fsync error).
    Unknown(String),
}

/// A client of the counter service on one or more server nodes.
#[derive(Debug, Clone)]
pub struct CounterClient {
    transport: Transport,
    timeout: Duration,
}

impl CounterClient {
    pub fn new(transport: Transport, timeout: Duration) -> Self {
        CounterClient { transport, timeout }
    }

    /// Adds the increment `id` on `server`; the answer is the counter's new value.
    pub async fn increment(&self, server: NodeId, id: u64) -> Outcome<u64> {
        match self
            .transport
            .ask(server, &IncrementRequest { id }, self.timeout)
            .await
        {
            Ok(reply) => match IncrementStatus::try_from(reply.status) {
                Ok(IncrementStatus::Ok) => Outcome::Ok(reply.value),
                Ok(IncrementStatus::Failed) => Outcome::Failed(reply.error),
                _ => Outcome::Unknown(reply.error),
            },
            Err(e) => classify(e),
        }
    }

    /// Every increment id in `server`'s log, in log order.
    pub async fn read(&self, server: NodeId) -> Outcome<Vec<u64>> {
        match self
            .transport
            .ask(server, &ReadRequest {}, self.timeout)
            .await
        {
            Ok(reply) => Outcome::Ok(reply.ids),
            Err(e) => classify(e),
        }
    }
}

/// Errors raised before the request left this node are definite failures; once it may
/// have reached the server, only "unknown" is honest.
fn classify<T>(e: TransportError) -> Outcome<T> {
    match e {
        TransportError::UnknownPeer { .. }
        | TransportError::QueueFull { .. }
        | TransportError::TooManyInFlight { .. }
        | TransportError::UnknownService { .. }
        | TransportError::Shutdown => Outcome::Failed(e.to_string()),
        _ => Outcome::Unknown(e.to_string()),
    }
}
