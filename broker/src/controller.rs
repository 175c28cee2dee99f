//! The controller, as in KRaft: the node that leads the quorum is the active controller.
//! It alone decides metadata changes, checking each [`ControllerCommand`] against its
//! image, and proposes the records that make it to the quorum; it answers once they are
//! committed and applied. Every other node forwards commands to it over the node
//! transport (as Kafka's brokers forward admin requests), so a client may send CreateTopics
//! to any broker.
//!
//! The active controller also keeps the brokers' sessions: a broker that registers is
//! fenced until it has caught up and heartbeats; one that misses
//! `broker.session.timeout.ms` is fenced again and stops leading its partitions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use prost::Message as _;
use runnel_actors::transport::{RemoteMessage, ServiceError, Transport, TransportError};
use runnel_quorum::{ProposeError, QuorumHandle, QuorumStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::metadata::{
    encode_entry, new_topic_id, BrokerImage, MetadataImage, MetadataRecord, TopicImage,
    PRODUCER_ID_BLOCK_SIZE,
};
use crate::{now_ms, ApiError, Broker};

/// How long a proposal may wait for its commit before the client is told to retry.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new leader waits to have applied its own term's first entry.
const READY_WAIT: Duration = Duration::from_secs(2);
const READY_POLL: Duration = Duration::from_millis(5);
/// How long a quorum status question may take.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// A metadata change (or a question only the active controller can answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControllerCommand {
    CreateTopic {
        name: String,
        partitions: i32,
        replication_factor: i16,
        /// Chosen by the client (CreateTopics' assignments) instead of placed.
        replicas: Option<Vec<Vec<i32>>>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
        replicas: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    },
    /// Replaces the topic's overrides, if they are still `expected` (else the asker
    /// computed the change from a stale image, and retries).
    SetTopicConfigs {
        name: String,
        expected: BTreeMap<String, String>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    },
    /// A block of producer ids for the asking broker to hand out.
    AllocateProducerIds,
    RegisterBroker {
        broker_id: i32,
        incarnation_id: Uuid,
        host: String,
        port: u16,
        rack: Option<String>,
    },
    BrokerHeartbeat {
        broker_id: i32,
        epoch: i64,
        /// How far the broker has applied the metadata log.
        metadata_offset: u64,
        /// A controlled shutdown: fence it now, so clients move off it before it exits.
        shutting_down: bool,
    },
    DescribeQuorum,
}

/// What the active controller answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum ControllerAnswer {
    Done,
    Topic {
        id: Uuid,
        partitions: i32,
        replication_factor: i16,
    },
    ProducerIds {
        start: i64,
        end: i64,
    },
    Registered {
        epoch: i64,
    },
    Heartbeat {
        fenced: bool,
    },
    Quorum(QuorumDescription),
}

/// The quorum as its leader sees it, for DescribeQuorum and `runnel cluster status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuorumDescription {
    pub leader_id: u64,
    pub leader_epoch: u64,
    pub high_watermark: u64,
    /// Each voter's id and the last index it is known to hold.
    pub voters: Vec<(u64, u64)>,
}

/// An answer and the metadata offset it was applied at (the asker waits to reach it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    pub answer: ControllerAnswer,
    pub offset: u64,
}

/// A refusal, with the Kafka error code the client sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refused {
    pub code: i16,
    pub message: String,
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        Refused {
            code: e.code.code(),
            message: e.message,
        }
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        let code =
            ResponseError::try_from_code(r.code).unwrap_or(ResponseError::UnknownServerError);
        ApiError::new(code, r.message)
    }
}

/// A command forwarded to the active controller, as JSON.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ControllerRequest {
    #[prost(bytes = "bytes", tag = "1")]
    pub json: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ControllerResponse {
    #[prost(bytes = "bytes", tag = "1")]
    pub json: Bytes,
}

impl RemoteMessage for ControllerRequest {
    const SERVICE: &'static str = "controller";
    type Reply = ControllerResponse;
}

pub type Outcome = Result<Answered, Refused>;

pub fn encode_outcome(outcome: &Outcome) -> Bytes {
    Bytes::from(serde_json::to_vec(outcome).expect("controller outcomes serialize"))
}

pub fn decode_outcome(json: &[u8]) -> Outcome {
    serde_json::from_slice(json).unwrap_or_else(|e| {
        Err(Refused {
            code: ResponseError::UnknownServerError.code(),
            message: format!("the active controller's answer could not be read: {e}"),
        })
    })
}

fn not_controller(message: impl Into<String>) -> ApiError {
    ApiError::new(ResponseError::NotController, message)
}

/// Why a proposal failed, as the client should hear it. Only a proposal that was surely
/// not appended, or surely replaced, is NOT_CONTROLLER (which is retried); one that may
/// still commit is REQUEST_TIMED_OUT, for the client to judge.
pub fn propose_error(e: ProposeError) -> ApiError {
    match e {
        ProposeError::NotLeader { .. } | ProposeError::Superseded { .. } => {
            not_controller(e.to_string())
        }
        ProposeError::Busy { .. } => {
            ApiError::new(ResponseError::ThrottlingQuotaExceeded, e.to_string())
        }
        ProposeError::Timeout { .. } | ProposeError::Stopped(_) | ProposeError::Empty => {
            ApiError::new(ResponseError::RequestTimedOut, e.to_string())
        }
    }
}

/// The active controller's state on a node: the sessions it keeps for the brokers. It is
/// rebuilt empty whenever the node starts to lead (every broker gets a fresh session).
pub(crate) struct Controller {
    quorum: QuorumHandle,
    /// The term these sessions were started in.
    term: u64,
    /// Broker id to (epoch, last heartbeat in ms).
    sessions: HashMap<i32, (i64, i64)>,
}

impl Controller {
    pub(crate) fn new(quorum: QuorumHandle) -> Controller {
        Controller {
            quorum,
            term: 0,
            sessions: HashMap::new(),
        }
    }

    /// Waits until this node leads and has applied every entry committed before it did.
    async fn ready(&mut self) -> Result<QuorumStatus, ApiError> {
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        loop {
            let status = self
                .quorum
                .status(STATUS_TIMEOUT)
                .await
                .map_err(|e| not_controller(e.to_string()))?;
            if !status.is_leader {
                return Err(not_controller(match status.leader {
                    Some(leader) => format!("node {leader} is the active controller now"),
                    None => "no controller is active: an election is under way; retry".into(),
                }));
            }
            if status.leader_ready {
                if status.term != self.term {
                    self.term = status.term;
                    self.sessions.clear();
                }
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(not_controller(
                    "the newly elected controller is still catching up; retry",
                ));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Commits `records`, once they are checked to fit the image, and answers the index
    /// they were applied at.
    async fn commit(
        &mut self,
        broker: &Broker,
        records: Vec<MetadataRecord>,
    ) -> Result<u64, ApiError> {
        let mut check = (*broker.image()).clone();
        for record in &records {
            check
                .apply(check.offset + 1, record)
                .map_err(|e| ApiError::new(ResponseError::InvalidRequest, e.to_string()))?;
        }
        let index = self
            .quorum
            .propose(encode_entry(&records), COMMIT_TIMEOUT)
            .await
            .map_err(propose_error)?;
        if let Some(reason) = broker.metadata.refused_at(index) {
            // A change asked again after an earlier try timed out, which then committed.
            return Err(ApiError::new(
                ResponseError::RequestTimedOut,
                format!("the change was not applied ({reason}); an earlier try may have been"),
            ));
        }
        Ok(index)
    }

    /// Runs one command as the active controller.
    pub(crate) async fn execute(
        &mut self,
        broker: &Broker,
        command: ControllerCommand,
    ) -> Result<Answered, ApiError> {
        let status = self.ready().await?;
        let image = broker.image();
        match command {
            ControllerCommand::RegisterBroker {
                broker_id,
                incarnation_id,
                host,
                port,
                rack,
            } => {
                let mut records = Vec::new();
                if image.cluster_id.is_empty() {
                    records.push(MetadataRecord::Cluster {
                        cluster_id: broker.formatted_cluster_id(),
                    });
                }
                records.push(MetadataRecord::BrokerRegistered {
                    broker_id,
                    incarnation_id,
                    host,
                    port,
                    rack,
                });
                let offset = self.commit(broker, records).await?;
                self.sessions.insert(broker_id, (offset as i64, now_ms()));
                let answer = ControllerAnswer::Registered {
                    epoch: offset as i64,
                };
                Ok(Answered { answer, offset })
            }
            ControllerCommand::BrokerHeartbeat {
                broker_id,
                epoch,
                metadata_offset,
                shutting_down,
            } => {
                let Some(registered) = image.brokers.get(&broker_id).filter(|b| b.epoch == epoch)
                else {
                    return Err(ApiError::new(
                        ResponseError::StaleBrokerEpoch,
                        format!("broker {broker_id} is not registered with epoch {epoch}; register again"),
                    ));
                };
                self.sessions.insert(broker_id, (epoch, now_ms()));
                let mut answered = Answered {
                    answer: ControllerAnswer::Heartbeat {
                        fenced: registered.fenced,
                    },
                    offset: image.offset,
                };
                if let Some(change) = heartbeat_change(registered, metadata_offset, shutting_down) {
                    let fenced = matches!(change, MetadataRecord::BrokerFenced { .. });
                    answered.offset = self.commit(broker, vec![change]).await?;
                    answered.answer = ControllerAnswer::Heartbeat { fenced };
                }
                Ok(answered)
            }
            ControllerCommand::DescribeQuorum => Ok(Answered {
                answer: ControllerAnswer::Quorum(QuorumDescription {
                    leader_id: status.node_id,
                    leader_epoch: status.term,
                    high_watermark: status.commit_index,
                    voters: status.progress.clone(),
                }),
                offset: image.offset,
            }),
            change => {
                let (answer, records) = decide(broker, &image, change)?;
                let offset = if records.is_empty() {
                    image.offset
                } else {
                    self.commit(broker, records).await?
                };
                Ok(Answered { answer, offset })
            }
        }
    }

    /// Fences every live broker whose session expired; called on a timer.
    pub(crate) async fn expire_sessions(&mut self, broker: &Broker) -> Result<usize, ApiError> {
        let status = self
            .quorum
            .status(STATUS_TIMEOUT)
            .await
            .map_err(|e| not_controller(e.to_string()))?;
        if !status.leader_ready {
            return Ok(0);
        }
        let _ = self.ready().await?;
        let image = broker.image();
        let now = now_ms();
        let timeout_ms = broker.config.broker_session_timeout_ms as i64;
        let mut expired = Vec::new();
        for live in image.live_brokers() {
            let session = self.sessions.entry(live.id).or_insert((live.epoch, now));
            if session.0 != live.epoch {
                *session = (live.epoch, now);
            }
            if now - session.1 > timeout_ms {
                expired.push(MetadataRecord::BrokerFenced {
                    broker_id: live.id,
                    epoch: live.epoch,
                });
            }
        }
        let count = expired.len();
        if count > 0 {
            tracing::warn!(count, timeout_ms, "fencing brokers whose session expired");
            self.commit(broker, expired).await?;
        }
        Ok(count)
    }
}

/// What a change does to `image`: the answer, and the records that make it so.
fn decide(
    broker: &Broker,
    image: &MetadataImage,
    command: ControllerCommand,
) -> Result<(ControllerAnswer, Vec<MetadataRecord>), ApiError> {
    match command {
        ControllerCommand::CreateTopic {
            name,
            partitions,
            replication_factor,
            replicas,
            configs,
            validate_only,
        } => {
            check_new_name(image, &name)?;
            broker
                .config
                .topic_config(&configs)
                .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
            let replicas = match replicas {
                Some(given) => check_assignment(image, given)?,
                None => place(image, &name, 0, partitions, replication_factor)?,
            };
            let id = new_topic_id(&image.cluster_id, &name, image.offset as i64);
            let answer = ControllerAnswer::Topic {
                id,
                partitions,
                replication_factor: replicas.first().map_or(0, |r| r.len() as i16),
            };
            if validate_only {
                return Ok((answer, Vec::new()));
            }
            let record = MetadataRecord::TopicCreated {
                name,
                topic_id: id,
                partitions,
                configs,
                replicas,
            };
            Ok((answer, vec![record]))
        }
        ControllerCommand::DeleteTopic { name } => {
            let topic = existing(image, &name)?;
            let answer = ControllerAnswer::Topic {
                id: topic.id,
                partitions: topic.partitions,
                replication_factor: topic.replicas_of(0).len() as i16,
            };
            Ok((answer, vec![MetadataRecord::TopicDeleted { name }]))
        }
        ControllerCommand::CreatePartitions {
            name,
            count,
            replicas,
            validate_only,
        } => {
            let topic = existing(image, &name)?;
            if count <= topic.partitions {
                return Err(ApiError::new(
                    ResponseError::InvalidPartitions,
                    format!(
                        "topic '{name}' has {} partitions; the new count must be larger, and {count} is not",
                        topic.partitions
                    ),
                ));
            }
            let factor = topic.replicas_of(0).len() as i16;
            let replicas = match replicas {
                Some(given) => check_assignment(image, given)?,
                None => place(
                    image,
                    &name,
                    topic.partitions,
                    count - topic.partitions,
                    factor,
                )?,
            };
            if validate_only {
                return Ok((ControllerAnswer::Done, Vec::new()));
            }
            let record = MetadataRecord::PartitionsCreated {
                name,
                partitions: count,
                replicas,
            };
            Ok((ControllerAnswer::Done, vec![record]))
        }
        ControllerCommand::SetTopicConfigs {
            name,
            expected,
            configs,
            validate_only,
        } => {
            let topic = existing(image, &name)?;
            if topic.configs != expected {
                return Err(ApiError::new(
                    ResponseError::ConcurrentTransactions,
                    format!("topic '{name}''s configs changed meanwhile; retry"),
                ));
            }
            broker
                .config
                .topic_config(&configs)
                .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
            if validate_only || configs == topic.configs {
                return Ok((ControllerAnswer::Done, Vec::new()));
            }
            let record = MetadataRecord::TopicConfigsChanged { name, configs };
            Ok((ControllerAnswer::Done, vec![record]))
        }
        ControllerCommand::AllocateProducerIds => {
            let start = image.next_producer_id;
            let end = start + PRODUCER_ID_BLOCK_SIZE;
            let record = MetadataRecord::ProducerIdsAllocated { next: end };
            Ok((ControllerAnswer::ProducerIds { start, end }, vec![record]))
        }
        ControllerCommand::RegisterBroker { .. }
        | ControllerCommand::BrokerHeartbeat { .. }
        | ControllerCommand::DescribeQuorum => {
            unreachable!("execute answers these itself")
        }
    }
}

/// A heartbeat unfences a caught-up broker, fences one shutting down, else changes nothing.
fn heartbeat_change(
    registered: &BrokerImage,
    metadata_offset: u64,
    shutting_down: bool,
) -> Option<MetadataRecord> {
    let (broker_id, epoch) = (registered.id, registered.epoch);
    if shutting_down {
        return (!registered.fenced).then_some(MetadataRecord::BrokerFenced { broker_id, epoch });
    }
    let caught_up = metadata_offset as i64 >= epoch;
    (registered.fenced && caught_up).then_some(MetadataRecord::BrokerUnfenced { broker_id, epoch })
}

fn existing<'a>(image: &'a MetadataImage, name: &str) -> Result<&'a TopicImage, ApiError> {
    image.topics.get(name).ok_or_else(|| {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        )
    })
}

fn check_new_name(image: &MetadataImage, name: &str) -> Result<(), ApiError> {
    if image.topics.contains_key(name) {
        return Err(ApiError::new(
            ResponseError::TopicAlreadyExists,
            format!("topic '{name}' already exists"),
        ));
    }
    // Kafka's metric names turn '.' into '_', so "a.b" and "a_b" may not both exist.
    let collides = |other: &str| other.replace('.', "_") == name.replace('.', "_");
    if let Some(other) = image.topics.keys().find(|other| collides(other)) {
        return Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!(
                "topic '{name}' collides with the existing topic '{other}' ('.' and '_' count as the same); choose another name"
            ),
        ));
    }
    Ok(())
}

/// Replicas given by the client: every broker named must be registered, one replica each
/// (a partition keeps one replica until replication is built).
fn check_assignment(
    image: &MetadataImage,
    given: Vec<Vec<i32>>,
) -> Result<Vec<Vec<i32>>, ApiError> {
    for replicas in &given {
        if replicas.len() != 1 {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "each partition takes exactly one replica in this version of Runnel (replication is not built yet), not {}",
                    replicas.len()
                ),
            ));
        }
        if let Some(unknown) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
            let known: Vec<i32> = image.brokers.keys().copied().collect();
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                format!("broker {unknown} is not registered; the brokers are {known:?}"),
            ));
        }
    }
    Ok(given)
}

/// Spreads `count` new partitions (from `first`) over the live brokers round-robin, so
/// leaders balance; brokers alternate racks when `broker.rack` is set, as Kafka's
/// rack-aware placement does. The start is drawn from the topic name, so topics do not
/// all begin on the same broker.
pub fn place(
    image: &MetadataImage,
    topic: &str,
    first: i32,
    count: i32,
    replication_factor: i16,
) -> Result<Vec<Vec<i32>>, ApiError> {
    let live = rack_alternated(image);
    if replication_factor < 1 {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!("replication factor must be at least 1, not {replication_factor}"),
        ));
    }
    if replication_factor as usize > live.len() {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {replication_factor} is larger than the {} live brokers; use at most {}",
                live.len(),
                live.len()
            ),
        ));
    }
    if replication_factor > 1 {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!("replication factor {replication_factor} is not served yet: this version of Runnel keeps one replica per partition (replication is built next); use 1"),
        ));
    }
    let start = topic
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    Ok((0..count)
        .map(|i| vec![live[(start + (first + i) as usize) % live.len()]])
        .collect())
}

/// Live broker ids, ordered so that consecutive ones are on different racks where possible.
fn rack_alternated(image: &MetadataImage) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for broker in image.live_brokers() {
        by_rack
            .entry(broker.rack.as_deref())
            .or_default()
            .push(broker.id);
    }
    let mut racks: Vec<std::collections::VecDeque<i32>> =
        by_rack.into_values().map(Into::into).collect();
    let mut ordered = Vec::new();
    while racks.iter().any(|r| !r.is_empty()) {
        for rack in &mut racks {
            if let Some(id) = rack.pop_front() {
                ordered.push(id);
            }
        }
    }
    ordered
}

/// How long a forwarded change may take, commit included.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// A question changes nothing, so one unanswered soon is asked again (of a new leader).
const QUESTION_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the commands other nodes forward to this one's controller.
pub(crate) fn serve(broker: &Arc<Broker>) {
    let weak = Arc::downgrade(broker);
    broker.transport.register(
        ControllerRequest::SERVICE,
        move |_from_node, payload: Bytes| {
            let weak = weak.clone();
            async move {
                let broker = weak
                    .upgrade()
                    .ok_or_else(|| ServiceError("the broker is stopping".into()))?;
                let request = ControllerRequest::decode(payload)
                    .map_err(|e| ServiceError(format!("malformed controller request: {e}")))?;
                let outcome = match serde_json::from_slice::<ControllerCommand>(&request.json) {
                    Ok(command) => broker
                        .run_on_controller(command)
                        .await
                        .map_err(Refused::from),
                    Err(e) => Err(Refused {
                        code: ResponseError::InvalidRequest.code(),
                        message: format!("not a controller command: {e}"),
                    }),
                };
                let reply = ControllerResponse {
                    json: encode_outcome(&outcome),
                };
                Ok(Bytes::from(reply.encode_to_vec()))
            }
        },
    );
}

/// Sends `command` to the active controller on node `leader`.
pub(crate) async fn forward(
    transport: &Transport,
    leader: u64,
    command: &ControllerCommand,
) -> Result<Answered, ApiError> {
    let request = ControllerRequest {
        json: Bytes::from(serde_json::to_vec(command).expect("commands serialize")),
    };
    let question = matches!(command, ControllerCommand::DescribeQuorum);
    let timeout = if question {
        QUESTION_TIMEOUT
    } else {
        FORWARD_TIMEOUT
    };
    match transport.ask(leader, &request, timeout).await {
        Ok(reply) => decode_outcome(&reply.json).map_err(ApiError::from),
        Err(e) if question => Err(not_controller(format!(
            "the active controller, node {leader}, did not answer: {e}"
        ))),
        // Sent, perhaps applied: only the client can decide to try again.
        Err(e @ (TransportError::Timeout { .. } | TransportError::PeerDown { .. })) => {
            Err(ApiError::new(
                ResponseError::RequestTimedOut,
                format!("the active controller, node {leader}, did not answer ({e}); the change may or may not have been made"),
            ))
        }
        // Not sent: the leader may have just failed, and the next one is tried.
        Err(e) => Err(not_controller(format!(
            "the active controller, node {leader}, cannot be reached: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(brokers: &[(i32, Option<&str>, bool)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (id, rack, fenced) in brokers {
            image.brokers.insert(
                *id,
                BrokerImage {
                    id: *id,
                    epoch: 1,
                    incarnation_id: Uuid::nil(),
                    host: "h".into(),
                    port: 9092,
                    rack: rack.map(str::to_string),
                    fenced: *fenced,
                },
            );
        }
        image
    }

    #[test]
    fn placement_spreads_partitions_over_live_brokers_only() {
        let image = image_with(&[(1, None, false), (2, None, false), (3, None, true)]);
        let placed = place(&image, "t", 0, 6, 1).expect("placed");
        let mut counts = BTreeMap::new();
        for replicas in &placed {
            *counts.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(
            counts,
            BTreeMap::from([(1, 3), (2, 3)]),
            "fenced broker 3 gets none"
        );
    }

    #[test]
    fn placement_alternates_racks() {
        let image = image_with(&[
            (1, Some("a"), false),
            (2, Some("a"), false),
            (3, Some("b"), false),
            (4, Some("b"), false),
        ]);
        assert_eq!(rack_alternated(&image), vec![1, 3, 2, 4]);
    }

    #[test]
    fn a_replication_factor_past_the_live_brokers_is_refused_with_the_count() {
        let image = image_with(&[(1, None, false), (2, None, true)]);
        let refused = place(&image, "t", 0, 1, 2).expect_err("refused");
        assert_eq!(refused.code, ResponseError::InvalidReplicationFactor);
        assert!(
            refused.message.contains("1 live brokers"),
            "{}",
            refused.message
        );
        let none = image_with(&[]);
        assert!(place(&none, "t", 0, 1, 1).is_err(), "no live broker at all");
    }

    #[test]
    fn heartbeats_unfence_only_caught_up_brokers_and_fence_on_shutdown() {
        let image = image_with(&[(1, None, true)]);
        let fenced = &image.brokers[&1];
        assert_eq!(
            heartbeat_change(fenced, 0, false),
            None,
            "behind its registration"
        );
        assert_eq!(
            heartbeat_change(fenced, 1, false),
            Some(MetadataRecord::BrokerUnfenced {
                broker_id: 1,
                epoch: 1
            })
        );
        let live = image_with(&[(1, None, false)]);
        assert_eq!(heartbeat_change(&live.brokers[&1], 9, false), None);
        assert_eq!(
            heartbeat_change(&live.brokers[&1], 9, true),
            Some(MetadataRecord::BrokerFenced {
                broker_id: 1,
                epoch: 1
            })
        );
    }
}
