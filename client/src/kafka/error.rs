//! What can go wrong talking to Kafka brokers, as sentences that say what to do.

pub use runnel_protocol::kafka::{ApiKey, ResponseError};

/// An error from the Kafka client. Cloneable, so one failed batch can fail every record in it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot reach {addr}: {reason}. Is a broker running? Start one with `runnel server`, or point --bootstrap-server at one")]
    Connect { addr: String, reason: String },
    #[error("lost the connection to {addr} ({reason}); a request in flight may or may not have been applied")]
    Disconnected { addr: String, reason: String },
    #[error("{api:?} request to {addr} got no answer within {timeout_ms} ms; the broker may be overloaded or unreachable (raise the request timeout if it is just slow)")]
    Timeout {
        api: ApiKey,
        addr: String,
        timeout_ms: u64,
    },
    #[error("the broker at {addr} serves {api:?} versions {broker_min}..={broker_max}, but this client speaks {client_min}..={client_max}; upgrade the broker or the client")]
    UnsupportedVersion {
        api: ApiKey,
        addr: String,
        broker_min: i16,
        broker_max: i16,
        client_min: i16,
        client_max: i16,
    },
    #[error("the broker at {addr} does not serve {api:?} at all")]
    UnsupportedApi { api: ApiKey, addr: String },
    #[error("{context}: {}", describe(*.code, .message.as_deref()))]
    Broker {
        code: ResponseError,
        context: String,
        message: Option<String>,
    },
    #[error("the broker at {addr} sent a response this client cannot read: {reason}")]
    Protocol { addr: String, reason: String },
    #[error(
        "topic {topic:?} does not exist; create it with `runnel topics create --topic {topic}`"
    )]
    UnknownTopic { topic: String },
    #[error("topic {topic:?} has {partitions} partitions, so partition {partition} does not exist; add partitions with `runnel topics alter --topic {topic} --partitions N`")]
    UnknownPartition {
        topic: String,
        partition: i32,
        partitions: usize,
    },
    #[error("{0}")]
    Config(String),
    #[error("record of {size_bytes} bytes is larger than the {max_bytes}-byte limit; raise max_request_bytes or send smaller records")]
    RecordTooLarge { size_bytes: usize, max_bytes: usize },
    #[error(
        "delivery of a record to {topic}-{partition} timed out after {timeout_ms} ms: {last_error}"
    )]
    DeliveryTimeout {
        topic: String,
        partition: i32,
        timeout_ms: u64,
        last_error: String,
    },
    #[error("the producer was closed before this record was sent")]
    Closed,
    #[error("offset {offset} of {topic}-{partition} is out of range and auto.offset.reset is none; seek to a valid offset or reset to earliest or latest")]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        offset: i64,
    },
    #[error("cannot decode records of {topic}-{partition}: {reason}")]
    CorruptRecords {
        topic: String,
        partition: i32,
        reason: String,
    },
}

impl KafkaError {
    /// A broker error for `context` ("create topic \"t\"") with the broker's own message.
    pub fn broker(code: ResponseError, context: impl Into<String>, message: Option<&str>) -> Self {
        KafkaError::Broker {
            code,
            context: context.into(),
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        }
    }

    /// The Kafka error code when a broker answered with one.
    pub fn code(&self) -> Option<ResponseError> {
        match self {
            KafkaError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again (after refreshing metadata) can succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            KafkaError::Connect { .. }
            | KafkaError::Disconnected { .. }
            | KafkaError::Timeout { .. } => true,
            KafkaError::Broker { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// Whether cached metadata (leaders, partition counts) is probably stale.
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            KafkaError::Connect { .. } | KafkaError::Disconnected { .. } => true,
            KafkaError::Broker { code, .. } => matches!(
                code,
                ResponseError::NotLeaderOrFollower
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::NotController
                    | ResponseError::BrokerNotAvailable
                    | ResponseError::ReplicaNotAvailable
            ),
            _ => false,
        }
    }
}

/// Turns a response's error code into a result.
pub(crate) fn check(
    code: i16,
    context: impl FnOnce() -> String,
    message: Option<&str>,
) -> Result<(), KafkaError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(e) => Err(KafkaError::broker(e, context(), message)),
    }
}

/// The error's name, the broker's message, and what to do about it.
fn describe(code: ResponseError, message: Option<&str>) -> String {
    let mut s = format!("{code} (Kafka error {})", code.code());
    if let Some(m) = message {
        s.push_str(": ");
        s.push_str(m);
    }
    if let Some(hint) = hint(code) {
        s.push_str(". ");
        s.push_str(hint);
    }
    s
}

fn hint(code: ResponseError) -> Option<&'static str> {
    Some(match code {
        ResponseError::TopicAlreadyExists => "Pick another name, or delete it first with `runnel topics delete`",
        ResponseError::UnknownTopicOrPartition => "Check the name with `runnel topics list`, or create it with `runnel topics create`",
        ResponseError::InvalidPartitions => "Give a partition count of at least 1, larger than the current one when adding partitions",
        ResponseError::InvalidReplicationFactor => "Use a replication factor between 1 and the number of brokers",
        ResponseError::InvalidTopicException => "Topic names use ASCII letters, digits, '.', '_' and '-', at most 249 characters",
        ResponseError::InvalidConfig => "Check the config name and value (see `runnel topics describe`)",
        ResponseError::PolicyViolation => "The broker's policy refused it; ask its operator",
        ResponseError::NotEnoughReplicas | ResponseError::NotEnoughReplicasAfterAppend => "Fewer replicas are in sync than min.insync.replicas; wait for them to catch up or use fewer acks",
        ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge => "Send smaller records or raise the topic's max.message.bytes",
        ResponseError::OffsetOutOfRange => "Seek to an offset between the partition's earliest and latest offsets",
        ResponseError::ClusterAuthorizationFailed
        | ResponseError::TopicAuthorizationFailed
        | ResponseError::TransactionalIdAuthorizationFailed => "This client is not allowed to do that; check the broker's ACLs",
        ResponseError::UnsupportedVersion => "The broker is older than this client expects",
        ResponseError::UnsupportedCompressionType => "The broker or topic does not accept this compression; try --compression none",
        ResponseError::OutOfOrderSequenceNumber | ResponseError::UnknownProducerId | ResponseError::InvalidProducerEpoch | ResponseError::ProducerFenced => "The idempotent producer lost its state on the broker; create a new producer",
        ResponseError::RequestTimedOut => "The broker did not finish in time; retry, or raise the request timeout",
        ResponseError::NotController => "The controller moved; retry",
        ResponseError::LeaderNotAvailable | ResponseError::NotLeaderOrFollower => "Leadership is moving; retry in a moment",
        ResponseError::RebalanceInProgress => "The group is rebalancing; poll to rejoin, then commit again",
        ResponseError::IllegalGeneration | ResponseError::UnknownMemberId => "This consumer is no longer in the group's current generation (the group rebalanced, or dropped it after a missed session timeout); poll to rejoin, and expect records since the last commit to be read again",
        ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable | ResponseError::CoordinatorLoadInProgress => "The group coordinator is moving or loading; retry in a moment",
        ResponseError::NonEmptyGroup => "The group has active members; stop its consumers first",
        ResponseError::GroupIdNotFound => "Check the name with `runnel groups list`",
        ResponseError::GroupSubscribedToTopic => "The group's consumers still read that topic; stop them first",
        ResponseError::FencedInstanceId => "Another consumer uses the same group.instance.id; give each consumer its own",
        ResponseError::InconsistentGroupProtocol => "Members of one group need the same protocol type and at least one assignor in common",
        ResponseError::InvalidSessionTimeout => "Pick a session.timeout.ms between the broker's group.min.session.timeout.ms and group.max.session.timeout.ms",
        ResponseError::GroupMaxSizeReached => "The group has as many members as the broker's group.max.size allows",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_name_the_code_and_say_what_to_do() {
        let e = KafkaError::broker(
            ResponseError::TopicAlreadyExists,
            "create topic \"t\"",
            Some("Topic 't' already exists."),
        );
        let text = e.to_string();
        assert!(
            text.starts_with("create topic \"t\": TopicAlreadyExists (Kafka error 36)"),
            "{text}"
        );
        assert!(text.contains("runnel topics delete"), "{text}");
        assert!(!e.is_retriable());
        assert!(KafkaError::broker(ResponseError::NotLeaderOrFollower, "x", None).is_retriable());
        assert!(check(0, || unreachable!(), None).is_ok());
    }
}
