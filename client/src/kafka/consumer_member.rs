//! A member of a KIP-848 consumer group (`group.protocol=consumer`), as a state machine
//! without I/O, after Kafka's `ConsumerMembershipManager`: it says what the next
//! ConsumerGroupHeartbeat carries, reads each answer, and tells the application which
//! partitions to give up and to take (revoking before acknowledging).
//!
//! The I/O layer sends [`ConsumerMember::request`] every [`ConsumerMember::heartbeat_interval_ms`]
//! (and at once when [`ConsumerMember::wants_heartbeat_now`]), feeds the answer to
//! [`ConsumerMember::on_response`] (or a transport failure to [`ConsumerMember::on_error`]),
//! carries out the returned [`Action`]s and calls [`ConsumerMember::reconciled`] when the
//! application owns what a `Reconcile` asked for. Partitions are named by topic id, as the
//! protocol does; mapping ids to names is the I/O layer's job (Metadata v10+).
//!
//! [`super::GroupConsumer`] runs it with `group_protocol = consumer`. It uses version 0,
//! where the coordinator chooses member ids (version 1 wants a client-chosen UUID, which
//! needs the simulator's seeded randomness).

use std::collections::BTreeSet;

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use runnel_protocol::kafka::{topic_name, ResponseError};

use super::error::KafkaError;

/// The epoch a member joins with, and rejoins with after being fenced.
pub const JOIN_EPOCH: i32 = 0;
/// The epoch a dynamic member leaves with.
pub const LEAVE_EPOCH: i32 = -1;
/// The epoch a static member leaves with for a while, keeping its partitions.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// A topic id's 128 bits (`Uuid::as_u128`): the protocol crate does not re-export its
/// `Uuid` type, and this crate does not depend on `uuid` itself.
pub type TopicId = u128;

/// A partition by topic id, as ConsumerGroupHeartbeat names them.
pub type TopicIdPartition = (TopicId, i32);

/// Builds a protocol struct that starts with a topic id followed by a compact partition
/// list (both heartbeat directions), by decoding it: the only way to make its `Uuid`
/// without naming the type.
fn with_topic_id<M: Decodable>(id: TopicId) -> M {
    let mut raw = id.to_be_bytes().to_vec();
    // An empty compact array (length + 1), then no tagged fields.
    raw.extend_from_slice(&[1, 0]);
    M::decode(&mut Bytes::from(raw), 0).expect("a fixed, well-formed encoding decodes")
}

/// What the application must do after an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Stop fetching `revoke` and commit what was consumed of them (with auto commit),
    /// then start fetching `assign` from their committed offsets, then call `reconciled`.
    Reconcile {
        revoke: Vec<TopicIdPartition>,
        assign: Vec<TopicIdPartition>,
    },
    /// The member was fenced or forgotten: drop every partition without committing (another
    /// member may own them now); the member rejoins with the next heartbeat.
    LoseAll,
    /// The coordinator moved or is unreachable: find it again, then heartbeat.
    Rediscover,
    /// Nothing will work until the application changes something.
    Fatal(KafkaError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Heartbeating (joining while the epoch is 0).
    Active,
    /// A `Reconcile` was handed out and `reconciled` not called yet.
    Reconciling,
    /// A leave heartbeat is the next (or last) request.
    Leaving,
    Left,
    Failed,
}

/// One member's side of the protocol.
#[derive(Debug, Clone)]
pub struct ConsumerMember {
    group_id: String,
    instance_id: Option<String>,
    rebalance_timeout_ms: i32,
    /// "" until the coordinator names this member.
    member_id: String,
    member_epoch: i32,
    /// Sorted, without duplicates.
    subscription: Vec<String>,
    /// The subscription goes out with the next heartbeat (on join, and after a change).
    send_subscription: bool,
    /// What the application owns.
    owned: BTreeSet<TopicIdPartition>,
    /// `owned` goes out with the next heartbeat (on join, and to acknowledge a reconcile).
    send_owned: bool,
    /// The newest assignment the coordinator sent; reconciled towards when not owned.
    target: Option<BTreeSet<TopicIdPartition>>,
    heartbeat_interval_ms: i32,
    state: State,
}

impl ConsumerMember {
    pub fn new(group_id: &str, instance_id: Option<String>, rebalance_timeout_ms: i32) -> Self {
        ConsumerMember {
            group_id: group_id.to_string(),
            instance_id,
            rebalance_timeout_ms,
            member_id: String::new(),
            member_epoch: JOIN_EPOCH,
            subscription: Vec::new(),
            send_subscription: true,
            owned: BTreeSet::new(),
            send_owned: true,
            target: None,
            // Until the coordinator says; Kafka's default group.consumer.heartbeat.interval.ms.
            heartbeat_interval_ms: 5_000,
            state: State::Active,
        }
    }

    /// A member with the same group, instance id, timeout and subscription, that has not
    /// joined yet (to rejoin after leaving).
    pub fn restarted(&self) -> ConsumerMember {
        let mut fresh = ConsumerMember::new(
            &self.group_id,
            self.instance_id.clone(),
            self.rebalance_timeout_ms,
        );
        fresh.subscribe(&self.subscription);
        fresh
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The epoch commits carry (OffsetCommit v9's generation_id_or_member_epoch).
    pub fn member_epoch(&self) -> i32 {
        self.member_epoch
    }

    pub fn heartbeat_interval_ms(&self) -> i32 {
        self.heartbeat_interval_ms
    }

    pub fn owned(&self) -> &BTreeSet<TopicIdPartition> {
        &self.owned
    }

    pub fn has_left(&self) -> bool {
        self.state == State::Left
    }

    /// Left, or failed for good: no more heartbeats.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Left | State::Failed)
    }

    /// Whether the next heartbeat should go now rather than at the interval: to join, to
    /// acknowledge a reconcile, to carry a new subscription, or to leave.
    pub fn wants_heartbeat_now(&self) -> bool {
        match self.state {
            State::Active => {
                self.member_epoch == JOIN_EPOCH || self.send_owned || self.send_subscription
            }
            State::Leaving => true,
            State::Reconciling | State::Left | State::Failed => false,
        }
    }

    /// Replaces the subscription; the next heartbeat carries it.
    pub fn subscribe(&mut self, topics: &[String]) {
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        if topics != self.subscription {
            self.subscription = topics;
            self.send_subscription = true;
        }
    }

    /// Asks to leave: the next request carries the leave epoch.
    pub fn leave(&mut self) {
        if !matches!(self.state, State::Left | State::Failed) {
            self.state = State::Leaving;
        }
    }

    /// The next ConsumerGroupHeartbeat. Fields that did not change since they were last
    /// sent are left null, as the protocol allows; a join carries everything.
    pub fn request(&mut self) -> ConsumerGroupHeartbeatRequest {
        let joining = self.member_epoch == JOIN_EPOCH;
        let epoch = match self.state {
            State::Leaving if self.instance_id.is_some() => STATIC_LEAVE_EPOCH,
            State::Leaving => LEAVE_EPOCH,
            _ => self.member_epoch,
        };
        let mut request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group_id)))
            .with_member_id(str_bytes(&self.member_id))
            .with_member_epoch(epoch)
            .with_instance_id(self.instance_id.as_deref().map(str_bytes))
            .with_rebalance_timeout_ms(if joining {
                self.rebalance_timeout_ms
            } else {
                -1
            });
        if joining || self.send_subscription {
            request = request.with_subscribed_topic_names(Some(
                self.subscription.iter().map(|t| topic_name(t)).collect(),
            ));
            self.send_subscription = false;
        }
        if joining || self.send_owned {
            request = request.with_topic_partitions(Some(by_topic(&self.owned)));
            self.send_owned = false;
        }
        request
    }

    /// Reads an answer.
    pub fn on_response(&mut self, response: &ConsumerGroupHeartbeatResponse) -> Vec<Action> {
        if let Some(code) = ResponseError::try_from_code(response.error_code) {
            let e = KafkaError::broker(
                code,
                format!("heartbeat to consumer group {:?}", self.group_id),
                response.error_message.as_ref().map(|m| m.as_str()),
            );
            return self.on_error(&e);
        }
        if self.state == State::Leaving {
            self.state = State::Left;
            self.owned.clear();
            self.target = None;
            return Vec::new();
        }
        if let Some(id) = &response.member_id {
            self.member_id = id.to_string();
        }
        self.member_epoch = response.member_epoch;
        if response.heartbeat_interval_ms > 0 {
            self.heartbeat_interval_ms = response.heartbeat_interval_ms;
        }
        if let Some(assignment) = &response.assignment {
            let target: BTreeSet<TopicIdPartition> = assignment
                .topic_partitions
                .iter()
                .flat_map(|t| {
                    let id = t.topic_id.as_u128();
                    t.partitions.iter().map(move |p| (id, *p))
                })
                .collect();
            self.target = Some(target);
        }
        self.next_reconcile()
    }

    /// Reads a failure: an error code, or a request that never got an answer.
    pub fn on_error(&mut self, e: &KafkaError) -> Vec<Action> {
        if self.state == State::Leaving {
            // Leaving is best effort: the session timeout removes the member anyway.
            self.state = State::Left;
            return Vec::new();
        }
        match e {
            KafkaError::Connect { .. }
            | KafkaError::Disconnected { .. }
            | KafkaError::Timeout { .. } => return vec![Action::Rediscover],
            _ => {}
        }
        match e.code() {
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                vec![Action::Rediscover]
            }
            // Try again at the next interval.
            Some(ResponseError::CoordinatorLoadInProgress) => Vec::new(),
            Some(ResponseError::FencedMemberEpoch) => self.lose_all(false),
            Some(ResponseError::UnknownMemberId) => self.lose_all(true),
            _ => {
                self.state = State::Failed;
                vec![Action::Fatal(e.clone())]
            }
        }
    }

    /// The application owns `owned` now (after a `Reconcile` or `LoseAll`); the next
    /// heartbeat acknowledges it. Returns the next reconcile if the target moved meanwhile.
    pub fn reconciled(&mut self, owned: BTreeSet<TopicIdPartition>) -> Vec<Action> {
        self.owned = owned;
        self.send_owned = true;
        if self.state == State::Reconciling {
            self.state = State::Active;
        }
        self.next_reconcile()
    }

    fn next_reconcile(&mut self) -> Vec<Action> {
        if self.state != State::Active {
            return Vec::new();
        }
        let Some(target) = &self.target else {
            return Vec::new();
        };
        if *target == self.owned {
            return Vec::new();
        }
        self.state = State::Reconciling;
        vec![Action::Reconcile {
            revoke: self.owned.difference(target).copied().collect(),
            assign: target.difference(&self.owned).copied().collect(),
        }]
    }

    fn lose_all(&mut self, forget_id: bool) -> Vec<Action> {
        if forget_id {
            self.member_id.clear();
        }
        self.member_epoch = JOIN_EPOCH;
        self.owned.clear();
        self.target = None;
        self.send_owned = true;
        self.send_subscription = true;
        self.state = State::Active;
        vec![Action::LoseAll]
    }
}

fn by_topic(partitions: &BTreeSet<TopicIdPartition>) -> Vec<TopicPartitions> {
    let mut topics: Vec<TopicPartitions> = Vec::new();
    for (topic_id, partition) in partitions {
        match topics.last_mut() {
            Some(t) if t.topic_id.as_u128() == *topic_id => t.partitions.push(*partition),
            _ => topics.push(
                with_topic_id::<TopicPartitions>(*topic_id).with_partitions(vec![*partition]),
            ),
        }
    }
    topics
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_group_heartbeat_response::{
        Assignment, TopicPartitions as AssignedPartitions,
    };

    const T: TopicId = 1;
    const U: TopicId = 2;

    fn answer(
        member_id: &str,
        epoch: i32,
        assigned: Option<&[TopicIdPartition]>,
    ) -> ConsumerGroupHeartbeatResponse {
        let assignment = assigned.map(|parts| {
            let mut topics: Vec<AssignedPartitions> = Vec::new();
            for (id, p) in parts {
                match topics.iter_mut().find(|t| t.topic_id.as_u128() == *id) {
                    Some(t) => t.partitions.push(*p),
                    None => topics
                        .push(with_topic_id::<AssignedPartitions>(*id).with_partitions(vec![*p])),
                }
            }
            Assignment::default().with_topic_partitions(topics)
        });
        ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(member_id)))
            .with_member_epoch(epoch)
            .with_heartbeat_interval_ms(300)
            .with_assignment(assignment)
    }

    fn error(code: ResponseError) -> ConsumerGroupHeartbeatResponse {
        ConsumerGroupHeartbeatResponse::default().with_error_code(code.code())
    }

    fn set(parts: &[TopicIdPartition]) -> BTreeSet<TopicIdPartition> {
        parts.iter().copied().collect()
    }

    fn joined(parts: &[TopicIdPartition]) -> ConsumerMember {
        let mut m = ConsumerMember::new("g", None, 60_000);
        m.subscribe(&["t".into()]);
        m.request();
        let actions = m.on_response(&answer("m-1", 1, Some(parts)));
        assert_eq!(
            actions,
            vec![Action::Reconcile {
                revoke: vec![],
                assign: parts.to_vec()
            }]
        );
        assert!(m.reconciled(set(parts)).is_empty());
        m.request();
        m
    }

    #[test]
    fn a_join_carries_everything_and_later_heartbeats_only_changes() {
        let mut m = ConsumerMember::new("g", Some("i-1".into()), 60_000);
        m.subscribe(&["b".into(), "a".into(), "a".into()]);
        assert!(m.wants_heartbeat_now());
        let join = m.request();
        assert_eq!(join.member_epoch, JOIN_EPOCH);
        assert_eq!(join.member_id.as_str(), "");
        assert_eq!(join.rebalance_timeout_ms, 60_000);
        assert_eq!(join.instance_id.as_ref().map(|s| s.as_str()), Some("i-1"));
        let names: Vec<&str> = join
            .subscribed_topic_names
            .as_ref()
            .expect("names on join")
            .iter()
            .map(|n| n.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(join.topic_partitions, Some(vec![]));
        assert!(m.on_response(&answer("m-1", 3, None)).is_empty());
        assert_eq!((m.member_id(), m.member_epoch()), ("m-1", 3));
        assert_eq!(m.heartbeat_interval_ms(), 300);
        assert!(!m.wants_heartbeat_now());
        let next = m.request();
        assert_eq!(next.member_id.as_str(), "m-1");
        assert_eq!(next.member_epoch, 3);
        assert_eq!(next.rebalance_timeout_ms, -1);
        assert!(next.subscribed_topic_names.is_none());
        assert!(next.topic_partitions.is_none());
        m.subscribe(&["c".into()]);
        assert!(m.wants_heartbeat_now());
        assert!(m.request().subscribed_topic_names.is_some());
    }

    #[test]
    fn revokes_before_it_acknowledges_and_takes_only_what_it_is_given() {
        let mut m = joined(&[(T, 0), (T, 1), (U, 0)]);
        // The coordinator moves t-1 away and adds u-1.
        let actions = m.on_response(&answer("m-1", 2, Some(&[(T, 0), (U, 0), (U, 1)])));
        assert_eq!(
            actions,
            vec![Action::Reconcile {
                revoke: vec![(T, 1)],
                assign: vec![(U, 1)]
            }]
        );
        // Until the application has revoked, nothing is acknowledged.
        assert!(!m.wants_heartbeat_now());
        assert!(m.request().topic_partitions.is_none());
        assert!(m.reconciled(set(&[(T, 0), (U, 0), (U, 1)])).is_empty());
        assert!(m.wants_heartbeat_now());
        let ack = m.request();
        let reported: BTreeSet<TopicIdPartition> = ack
            .topic_partitions
            .expect("owned partitions acknowledged")
            .iter()
            .flat_map(|t| {
                let id = t.topic_id.as_u128();
                t.partitions.iter().map(move |p| (id, *p))
            })
            .collect();
        assert_eq!(reported, set(&[(T, 0), (U, 0), (U, 1)]));
    }

    #[test]
    fn a_newer_target_during_a_reconcile_comes_right_after_it() {
        let mut m = joined(&[(T, 0), (T, 1)]);
        let first = m.on_response(&answer("m-1", 2, Some(&[(T, 0)])));
        assert_eq!(first.len(), 1);
        // While revoking t-1, the target moves again: no second reconcile at once.
        assert!(m
            .on_response(&answer("m-1", 3, Some(&[])).clone())
            .is_empty());
        let next = m.reconciled(set(&[(T, 0)]));
        assert_eq!(
            next,
            vec![Action::Reconcile {
                revoke: vec![(T, 0)],
                assign: vec![]
            }]
        );
    }

    #[test]
    fn fenced_rejoins_with_its_id_and_unknown_starts_over_both_losing_everything() {
        let mut m = joined(&[(T, 0)]);
        assert_eq!(
            m.on_response(&error(ResponseError::FencedMemberEpoch)),
            vec![Action::LoseAll]
        );
        assert!(m.owned().is_empty());
        assert!(m.wants_heartbeat_now());
        let rejoin = m.request();
        assert_eq!(
            (rejoin.member_id.as_str(), rejoin.member_epoch),
            ("m-1", JOIN_EPOCH)
        );
        assert!(rejoin.subscribed_topic_names.is_some());

        let mut m = joined(&[(T, 0)]);
        assert_eq!(
            m.on_response(&error(ResponseError::UnknownMemberId)),
            vec![Action::LoseAll]
        );
        let rejoin = m.request();
        assert_eq!(
            (rejoin.member_id.as_str(), rejoin.member_epoch),
            ("", JOIN_EPOCH)
        );
    }

    #[test]
    fn coordinator_trouble_rediscovers_and_config_trouble_is_fatal() {
        let mut m = joined(&[(T, 0)]);
        assert_eq!(
            m.on_response(&error(ResponseError::NotCoordinator)),
            vec![Action::Rediscover]
        );
        assert_eq!(
            m.on_error(&KafkaError::Disconnected {
                addr: "a:1".into(),
                reason: "reset".into()
            }),
            vec![Action::Rediscover]
        );
        assert!(m
            .on_response(&error(ResponseError::CoordinatorLoadInProgress))
            .is_empty());
        assert_eq!(m.owned(), &set(&[(T, 0)]), "nothing lost on the way");
        let fatal = m.on_response(&error(ResponseError::UnsupportedAssignor));
        assert!(matches!(fatal.as_slice(), [Action::Fatal(_)]));
        assert!(!m.wants_heartbeat_now());
    }

    #[test]
    fn leaving_sends_the_leave_epoch_once() {
        let mut m = joined(&[(T, 0)]);
        m.leave();
        assert!(m.wants_heartbeat_now());
        assert_eq!(m.request().member_epoch, LEAVE_EPOCH);
        assert!(m.on_response(&answer("m-1", LEAVE_EPOCH, None)).is_empty());
        assert!(m.has_left());
        assert!(!m.wants_heartbeat_now());

        let mut s = ConsumerMember::new("g", Some("i".into()), 1_000);
        s.request();
        s.on_response(&answer("m-2", 1, None));
        s.leave();
        assert_eq!(s.request().member_epoch, STATIC_LEAVE_EPOCH);
    }

    #[test]
    fn requests_encode_at_version_0() {
        let mut m = joined(&[(T, 0), (T, 2), (U, 1)]);
        m.reconciled(set(&[(T, 0), (T, 2), (U, 1)]));
        let request = m.request();
        let mut buf = bytes::BytesMut::new();
        kafka_protocol::protocol::Encodable::encode(&request, &mut buf, 0).expect("encodes");
        let parts = request.topic_partitions.expect("owned");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].partitions, vec![0, 2]);
    }
}
