//! The KIP-848 "consumer" group protocol (ConsumerGroupHeartbeat, API key 68) as a state
//! machine, following Kafka's `GroupMetadataManager.consumerGroupHeartbeat`,
//! `modern.consumer.ConsumerGroup` and `CurrentAssignmentBuilder`.
//!
//! One [`ConsumerGroup`] per group id. The coordinator actor owns the I/O: it calls
//! [`ConsumerGroup::step`] with the current time and one [`Input`], and carries out every
//! [`Output`]:
//!
//! - `Heartbeat` answers the request of that `request_id`. Every request gets exactly one
//!   answer, unless the group is dropped first. A successful answer is parked until the
//!   group's state it reveals is durable: it comes out of the `PersistCompleted` step of
//!   the last `Persist` issued before it (Kafka answers after its writes are committed).
//!   Errors are answered at once: they change nothing. Parked answers are bounded by the
//!   requests the coordinator has in flight, and `Persist`s by the writes it has under way.
//! - `Persist` asks the coordinator to write the record to `__consumer_offsets` and then
//!   to call `step` with `PersistCompleted` for that `store_id`, with the append error
//!   already mapped to the error clients should see. Each record is a snapshot of the whole
//!   group, so a later record supersedes every earlier one (Kafka writes finer-grained
//!   records: member subscriptions, target assignment entries, current assignments, epochs).
//!
//! Time only moves through `now_ms`; call `step(now, Input::Tick)` at
//! [`ConsumerGroup::next_deadline_ms`] (or more often). Topic metadata arrives through
//! `Input::MetadataChanged`. No clock, randomness or threads: member ids the coordinator
//! hands out are derived from the client id, an epoch given at construction and a counter.
//!
//! How it works: every change of membership, of a member's subscription or of the
//! subscribed topics' metadata bumps the group epoch, and the target assignment is
//! recomputed at once for the new epoch (so the group is never seen in Kafka's transient
//! "Assigning" state). Each member then moves towards its target on its own heartbeats:
//! first it is asked to give up what it must lose (UNREVOKED_PARTITIONS, at its old epoch),
//! then it gets what it should gain, but only the partitions no other member still holds
//! (UNRELEASED_PARTITIONS until they are all free); it takes the target epoch once nothing
//! is left to revoke. So a partition is never in two members' current assignments.
//!
//! A member subscribes by topic names, by a regular expression (KIP-848's server-side
//! regex, RE2 syntax, matched against whole names, never against internal `__` topics), or
//! both: its subscription is the union. Each distinct pattern is compiled once and matched
//! against every new topics image in the same step (Kafka resolves regexes in the
//! background and at most every few seconds; doing it with the image keeps the state
//! machine deterministic and the group never stale).
//!
//! What the coordinator does itself, as Kafka does outside `ConsumerGroup`: routing by
//! group id and the NOT_COORDINATOR checks, GROUP_ID_NOT_FOUND for a heartbeat with a
//! non-zero epoch (leaves included) to a group that does not exist, refusing a group id
//! that belongs to a classic group (this does not convert between protocols), and
//! authorized operations in ConsumerGroupDescribe. A failed write is answered with its
//! error but not undone in memory (Kafka reverts to a snapshot): the next record, a whole
//! snapshot, repairs it, and a coordinator that lost the log's leadership sends `Unload`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use super::assignor::{Assignment, Assignor, MemberSubscription};
pub use super::membership::{RequestId, StoreId};

/// The epoch a member sends to join (or rejoin after being fenced).
pub const JOIN_GROUP_MEMBER_EPOCH: i32 = 0;
/// The epoch a member sends to leave for good.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// The epoch a static member sends to leave for a while, keeping its partitions.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;
/// ListGroups' protocol type and group type of these groups.
pub const PROTOCOL_TYPE: &str = "consumer";
pub const GROUP_TYPE: &str = "consumer";
/// The longest `subscribed_topic_regex` accepted, in bytes: patterns are kept in memory
/// and in every group record, so they are bounded like everything else.
pub const MAX_REGEX_LEN: usize = 4096;
/// The most memory one compiled regex may take (`RegexBuilder::size_limit`): a short
/// pattern such as `\w{1000}` can otherwise expand to megabytes.
pub const MAX_REGEX_COMPILED_BYTES: usize = 1 << 20;

/// Broker settings for consumer groups, with Kafka's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms`: a member that does not heartbeat for this
    /// long is removed.
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: told to members in every answer.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`: members a group accepts.
    pub max_size: usize,
    /// `group.consumer.assignors`: the assignors members may name; the first is the
    /// default.
    pub assignors: Vec<Assignor>,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            // Kafka's default is Int.MaxValue: no bound beyond what i32 can count.
            max_size: i32::MAX as usize,
            assignors: vec![Assignor::Uniform, Assignor::Range],
        }
    }
}

/// A topic as the metadata image knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub topic_id: Uuid,
    pub partition_count: i32,
}

/// Topic name -> id and size: what the group needs of the cluster metadata.
pub type TopicsImage = BTreeMap<String, TopicInfo>;

/// Partitions of one topic, as requests, responses and records carry them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPartitions {
    pub topic_id: Uuid,
    pub partitions: Vec<i32>,
}

/// ConsumerGroupHeartbeat, as the coordinator decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHeartbeatRequest {
    pub request_id: RequestId,
    pub group_id: String,
    /// Empty on a v0 join: the group then generates one. v1 clients generate their own.
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1 when unchanged.
    pub rebalance_timeout_ms: i32,
    /// None when unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// None when unchanged, `Some("")` to drop the regex, else the pattern (RE2 syntax,
    /// matched against whole topic names).
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns; None when unchanged.
    pub topic_partitions: Option<Vec<TopicPartitions>>,
    /// From the request header.
    pub client_id: String,
    /// The client's address, as the connection saw it.
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHeartbeatResponse {
    pub error: Option<ResponseError>,
    pub error_message: Option<String>,
    /// None with an error.
    pub member_id: Option<String>,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's whole assignment, sent only when it changed or the request was a full
    /// one (a join, or every field set); None means "keep what you have".
    pub assignment: Option<Vec<TopicPartitions>>,
}

impl ConsumerHeartbeatResponse {
    fn error(error: ResponseError, message: impl Into<String>) -> Self {
        ConsumerHeartbeatResponse {
            error: Some(error),
            error_message: Some(message.into()),
            member_id: None,
            member_epoch: 0,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }
}

// Each input is built once and moved into `step`: boxing the request would only add an
// allocation per heartbeat.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Heartbeat(ConsumerHeartbeatRequest),
    /// The cluster's topics changed (or this is the first image the group sees). Sending
    /// an unchanged image is harmless.
    MetadataChanged(Arc<TopicsImage>),
    /// The record of a `Persist` output was written (`error: None`) or not.
    PersistCompleted {
        store_id: StoreId,
        error: Option<ResponseError>,
    },
    /// This broker stops coordinating the group: parked answers get NOT_COORDINATOR and
    /// the group becomes Dead.
    Unload,
    /// Time passed: expire sessions and rebalance timeouts.
    Tick,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Heartbeat {
        request_id: RequestId,
        response: ConsumerHeartbeatResponse,
    },
    /// Write `record` as the group's state, then step `PersistCompleted { store_id }`.
    Persist {
        store_id: StoreId,
        record: ConsumerGroupRecord,
    },
}

/// Kafka's `ConsumerGroup.ConsumerGroupState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConsumerGroupState {
    Empty,
    /// The group epoch is ahead of the target assignment's. Never observed here: the
    /// target is computed in the same step as the bump.
    Assigning,
    /// Some member has not reached the target assignment yet.
    Reconciling,
    Stable,
    Dead,
}

impl ConsumerGroupState {
    /// The name ConsumerGroupDescribe and ListGroups report (Kafka's `toString`).
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
            ConsumerGroupState::Dead => "Dead",
        }
    }
}

/// Kafka's `MemberState`: where a member is on its way to the target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// Has all of its target that it can have, at the target epoch (or waits to be
    /// reconciled towards a newer one).
    Stable,
    /// Must give up `pending_revocation` before it moves on; stays at its epoch.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

/// A member in the group record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Vec<String>,
    /// Absent in records written before regex subscriptions existed.
    #[serde(default)]
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub state: MemberState,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub assigned: Vec<TopicPartitions>,
    pub pending_revocation: Vec<TopicPartitions>,
    pub target: Vec<TopicPartitions>,
}

/// What `__consumer_offsets` keeps of a consumer group: a snapshot of all of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroupRecord {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// The subscribed topics the target assignment was computed from.
    pub subscription_metadata: BTreeMap<String, TopicInfo>,
    pub members: Vec<MemberRecord>,
}

/// Partitions of one topic for ConsumerGroupDescribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedTopicPartitions {
    pub topic_id: Uuid,
    pub topic_name: String,
    pub partitions: Vec<i32>,
}

/// A member as ConsumerGroupDescribe v0/v1 shows it (`member_type` is 1, "consumer", for
/// all of them: classic members are not supported in these groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    /// Topics the current metadata does not know are left out, as Kafka does.
    pub assignment: Vec<DescribedTopicPartitions>,
    pub target_assignment: Vec<DescribedTopicPartitions>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    pub group_id: String,
    pub state: ConsumerGroupState,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor_name: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    member_id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    subscribed_topic_names: BTreeSet<String>,
    /// Never `Some("")`: an empty pattern means no regex. Its compiled form and matches
    /// are in the group's `regexes`.
    subscribed_topic_regex: Option<String>,
    server_assignor: Option<Assignor>,
    state: MemberState,
    member_epoch: i32,
    /// The epoch before the last bump: a heartbeat with it is accepted once, in case the
    /// answer that carried the bump was lost.
    previous_member_epoch: i32,
    /// The partitions the member may consume (its current assignment).
    assigned: Assignment,
    /// Partitions it was asked to give up and may still be consuming.
    pending_revocation: Assignment,
    /// When the member is removed unless it heartbeats.
    session_deadline_ms: i64,
    /// While in UNREVOKED_PARTITIONS: when it is removed unless it revokes.
    rebalance_deadline_ms: Option<i64>,
}

impl Member {
    fn new(member_id: String, request: &ConsumerHeartbeatRequest, now_ms: i64) -> Self {
        Member {
            member_id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 0,
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            state: MemberState::Stable,
            member_epoch: JOIN_GROUP_MEMBER_EPOCH,
            previous_member_epoch: JOIN_GROUP_MEMBER_EPOCH,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline_ms: now_ms,
            rebalance_deadline_ms: None,
        }
        .updated_by(request)
    }

    /// Kafka's `maybeUpdate*`: what the request sets, the member takes.
    fn updated_by(mut self, request: &ConsumerHeartbeatRequest) -> Self {
        if let Some(instance_id) = &request.instance_id {
            self.instance_id = Some(instance_id.clone());
        }
        if let Some(rack_id) = &request.rack_id {
            self.rack_id = Some(rack_id.clone());
        }
        if request.rebalance_timeout_ms != -1 {
            self.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if let Some(names) = &request.subscribed_topic_names {
            self.subscribed_topic_names = names.iter().cloned().collect();
        }
        if let Some(regex) = &request.subscribed_topic_regex {
            // Validated and compiled before; "" clears it, as in Kafka.
            self.subscribed_topic_regex = (!regex.is_empty()).then(|| regex.clone());
        }
        if let Some(name) = &request.server_assignor {
            // Validated before: only configured assignors get here.
            self.server_assignor = Assignor::from_name(name);
        }
        self.client_id = request.client_id.clone();
        self.client_host = request.client_host.clone();
        self
    }

    /// What makes the member's part of the group subscription: a change bumps the epoch.
    fn same_subscription(&self, other: &Member) -> bool {
        self.subscribed_topic_names == other.subscribed_topic_names
            && self.subscribed_topic_regex == other.subscribed_topic_regex
    }

    fn is_reconciled_to(&self, epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == epoch
    }

    /// Everything but the deadlines: what the record keeps.
    fn same_record(&self, other: &Member) -> bool {
        Member {
            session_deadline_ms: 0,
            rebalance_deadline_ms: None,
            ..self.clone()
        } == Member {
            session_deadline_ms: 0,
            rebalance_deadline_ms: None,
            ..other.clone()
        }
    }
}

/// A successful answer waiting for its record to be durable.
#[derive(Debug, Clone)]
struct Parked {
    request_id: RequestId,
    response: ConsumerHeartbeatResponse,
}

/// A `Persist` whose answers are not released yet.
#[derive(Debug, Clone, Default)]
struct Store {
    /// Some once `PersistCompleted` came, with its error.
    completed: Option<Option<ResponseError>>,
    parked: Vec<Parked>,
}

/// A subscription regex in use by at least one member: compiled once, and the topics of
/// the current image it matches, refreshed with every new image.
#[derive(Debug, Clone)]
struct ResolvedRegex {
    regex: Regex,
    matches: BTreeSet<String>,
}

impl ResolvedRegex {
    fn new(regex: Regex, topics: &TopicsImage) -> Self {
        let mut resolved = ResolvedRegex {
            regex,
            matches: BTreeSet::new(),
        };
        resolved.rematch(topics);
        resolved
    }

    fn rematch(&mut self, topics: &TopicsImage) {
        // Internal topics (`__consumer_offsets`, `__transaction_state`, ...) are never
        // subscribed by pattern, as in Kafka.
        self.matches = topics
            .keys()
            .filter(|name| !name.starts_with("__") && self.regex.is_match(name))
            .cloned()
            .collect();
    }
}

/// Compiles a subscription pattern so that it matches whole topic names only (Kafka uses
/// RE2/J's `matches()`), within the size bounds.
fn compile_regex(pattern: &str) -> Result<Regex, Refusal> {
    let refuse = |why: String| {
        Err((
            ResponseError::InvalidRegularExpression,
            format!("SubscribedTopicRegex is not a valid regular expression: {why}"),
        ))
    };
    if pattern.len() > MAX_REGEX_LEN {
        return refuse(format!(
            "it is {} bytes long, more than the {MAX_REGEX_LEN} allowed.",
            pattern.len()
        ));
    }
    let build = |pattern: &str| {
        RegexBuilder::new(pattern)
            .size_limit(MAX_REGEX_COMPILED_BYTES)
            .build()
    };
    // The pattern alone first: wrapped in `^(?:...)$`, an invalid one such as `a)|(b`
    // could compile into something else. A pattern valid alone means the same wrapped.
    if let Err(error) = build(pattern) {
        return refuse(error.to_string());
    }
    match build(&format!("^(?:{pattern})$")) {
        Ok(regex) => Ok(regex),
        // Only a pattern ending inside an `(?x)` comment gets here.
        Err(error) => refuse(error.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Session,
    Rebalance,
}

/// One consumer group. Start with [`ConsumerGroup::new`] (or
/// [`ConsumerGroup::from_record`] when loading `__consumer_offsets`) and drive it with
/// [`ConsumerGroup::step`].
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    group_id: String,
    config: ConsumerGroupConfig,
    /// Makes generated member ids unique across `ConsumerGroup` values of one group id.
    member_id_epoch: u64,
    next_member_sequence: u64,
    dead: bool,
    group_epoch: i32,
    /// The epoch `target` was computed for.
    assignment_epoch: i32,
    topics: Arc<TopicsImage>,
    /// The subscribed topics that exist: a change bumps the group epoch.
    subscription_metadata: BTreeMap<String, TopicInfo>,
    /// Pattern -> compiled regex and matches, for exactly the patterns members have:
    /// members with the same pattern share one, and a pattern is compiled once, not on
    /// every heartbeat. At most one entry per member.
    regexes: BTreeMap<String, ResolvedRegex>,
    /// Ordered by id so that iteration (and so every decision) is deterministic.
    members: BTreeMap<String, Member>,
    /// instance id -> member id.
    static_members: BTreeMap<String, String>,
    /// Every member's target assignment (an entry per member).
    target: BTreeMap<String, Assignment>,
    next_store_id: StoreId,
    /// Persists whose answers are not released yet: not completed, or completed after
    /// an earlier one that is not.
    stores: BTreeMap<StoreId, Store>,
    /// The state changed in this step: a record must be written.
    dirty: bool,
    /// Successful answers of this step, parked or sent at its end.
    answers: Vec<Parked>,
    now_ms: i64,
    outputs: Vec<Output>,
}

impl ConsumerGroup {
    /// A group with no members and no history. `member_id_epoch` must differ between
    /// `ConsumerGroup` values for the same group id (the coordinator's load epoch, for
    /// instance), so that a generated member id is never handed out twice. Until the first
    /// `MetadataChanged` the group knows no topics.
    pub fn new(
        group_id: &str,
        config: ConsumerGroupConfig,
        member_id_epoch: u64,
        now_ms: i64,
    ) -> Self {
        assert!(config.session_timeout_ms > 0);
        assert!(config.heartbeat_interval_ms > 0);
        assert!(!config.assignors.is_empty(), "a default assignor");
        ConsumerGroup {
            group_id: group_id.to_string(),
            config,
            member_id_epoch,
            next_member_sequence: 0,
            dead: false,
            group_epoch: 0,
            assignment_epoch: 0,
            topics: Arc::new(TopicsImage::new()),
            subscription_metadata: BTreeMap::new(),
            regexes: BTreeMap::new(),
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            target: BTreeMap::new(),
            next_store_id: 0,
            stores: BTreeMap::new(),
            dirty: false,
            answers: Vec::new(),
            now_ms,
            outputs: Vec::new(),
        }
    }

    /// The group as `__consumer_offsets` last recorded it. Every member gets a fresh
    /// session (and, if it has partitions to revoke, a fresh rebalance timeout). If the
    /// topics changed since the record was written, the group epoch is bumped at once:
    /// the returned outputs then hold a `Persist`.
    pub fn from_record(
        group_id: &str,
        config: ConsumerGroupConfig,
        member_id_epoch: u64,
        now_ms: i64,
        topics: Arc<TopicsImage>,
        record: ConsumerGroupRecord,
    ) -> Result<(Self, Vec<Output>), String> {
        let mut group = ConsumerGroup::new(group_id, config, member_id_epoch, now_ms);
        if record.group_epoch < 0 || record.assignment_epoch < 0 {
            return Err("negative epoch".to_string());
        }
        if record.assignment_epoch > record.group_epoch {
            return Err(format!(
                "assignment epoch {} is ahead of group epoch {}",
                record.assignment_epoch, record.group_epoch
            ));
        }
        group.group_epoch = record.group_epoch;
        group.assignment_epoch = record.assignment_epoch;
        group.subscription_metadata = record.subscription_metadata;
        let mut owned: BTreeSet<(Uuid, i32)> = BTreeSet::new();
        for m in record.members {
            if group.members.contains_key(&m.member_id) || m.member_id.is_empty() {
                return Err(format!("member id {:?} is empty or repeated", m.member_id));
            }
            if let Some(instance) = &m.instance_id {
                if group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone())
                    .is_some()
                {
                    return Err(format!("instance id {instance} appears twice"));
                }
            }
            let assigned = from_wire(&m.assigned);
            let pending_revocation = from_wire(&m.pending_revocation);
            for (topic_id, partitions) in assigned.iter().chain(&pending_revocation) {
                for &partition in partitions {
                    if !owned.insert((*topic_id, partition)) {
                        return Err(format!(
                            "partition {topic_id}-{partition} is held twice (member {})",
                            m.member_id
                        ));
                    }
                }
            }
            let live = m.member_epoch >= 0;
            if m.member_epoch > record.assignment_epoch
                || !(live || m.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH)
            {
                return Err(format!(
                    "member {} has epoch {}",
                    m.member_id, m.member_epoch
                ));
            }
            let unrevoked = m.state == MemberState::UnrevokedPartitions;
            if unrevoked == pending_revocation.is_empty() || m.rebalance_timeout_ms < 0 {
                return Err(format!("member {} is inconsistent", m.member_id));
            }
            let server_assignor = match &m.server_assignor {
                None => None,
                Some(name) => Some(
                    Assignor::from_name(name).ok_or_else(|| format!("unknown assignor {name}"))?,
                ),
            };
            let subscribed_topic_regex = m.subscribed_topic_regex.filter(|r| !r.is_empty());
            if let Some(pattern) = &subscribed_topic_regex {
                if !group.regexes.contains_key(pattern) {
                    let regex = compile_regex(pattern)
                        .map_err(|(_, message)| format!("member {}: {message}", m.member_id))?;
                    // Matched against the image below, once it is in place.
                    let resolved = ResolvedRegex::new(regex, &TopicsImage::new());
                    group.regexes.insert(pattern.clone(), resolved);
                }
            }
            group
                .target
                .insert(m.member_id.clone(), from_wire(&m.target));
            let member = Member {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id,
                rack_id: m.rack_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                subscribed_topic_names: m.subscribed_topic_names.into_iter().collect(),
                subscribed_topic_regex,
                server_assignor,
                state: m.state,
                member_epoch: m.member_epoch,
                previous_member_epoch: m.previous_member_epoch,
                assigned,
                pending_revocation,
                session_deadline_ms: deadline_after(now_ms, group.config.session_timeout_ms),
                rebalance_deadline_ms: unrevoked
                    .then(|| deadline_after(now_ms, m.rebalance_timeout_ms)),
            };
            group.members.insert(m.member_id, member);
        }
        let mut targeted: BTreeSet<(Uuid, i32)> = BTreeSet::new();
        for assignment in group.target.values() {
            for (topic_id, partitions) in assignment {
                for &partition in partitions {
                    if !targeted.insert((*topic_id, partition)) {
                        return Err(format!(
                            "partition {topic_id}-{partition} is targeted twice"
                        ));
                    }
                }
            }
        }
        group.topics = topics;
        group.rematch_regexes();
        if group.assignment_epoch < group.group_epoch {
            group.compute_target();
            group.dirty = true;
        }
        group.refresh_subscription_metadata();
        group.finish_step();
        let outputs = std::mem::take(&mut group.outputs);
        Ok((group, outputs))
    }

    /// Handles one input at `now_ms` and returns what the coordinator must do.
    pub fn step(&mut self, now_ms: i64, input: Input) -> Vec<Output> {
        // A clock step backwards must not move deadlines back or fire them twice.
        self.now_ms = self.now_ms.max(now_ms);
        match input {
            Input::Heartbeat(request) if self.dead => self.answer_error(
                request.request_id,
                ResponseError::NotCoordinator,
                "The group is no longer coordinated here.",
            ),
            Input::Heartbeat(request) => self.heartbeat(request),
            Input::MetadataChanged(topics) => {
                let same_image = Arc::ptr_eq(&self.topics, &topics);
                self.topics = topics;
                if !self.dead {
                    if !same_image {
                        self.rematch_regexes();
                    }
                    self.refresh_subscription_metadata();
                }
            }
            Input::PersistCompleted { store_id, error } => self.persist_completed(store_id, error),
            Input::Unload => self.unload(),
            Input::Tick => self.tick(),
        }
        self.finish_step();
        std::mem::take(&mut self.outputs)
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// Kafka's `maybeUpdateGroupState`, computed.
    pub fn state(&self) -> ConsumerGroupState {
        if self.dead {
            ConsumerGroupState::Dead
        } else if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| !m.is_reconciled_to(self.assignment_epoch))
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    pub fn member_epoch(&self, member_id: &str) -> Option<i32> {
        self.members.get(member_id).map(|m| m.member_epoch)
    }

    pub fn member_state(&self, member_id: &str) -> Option<MemberState> {
        self.members.get(member_id).map(|m| m.state)
    }

    pub fn static_member_id(&self, instance_id: &str) -> Option<&str> {
        self.static_members.get(instance_id).map(String::as_str)
    }

    /// The partitions the member may consume now.
    pub fn assigned(&self, member_id: &str) -> Option<&Assignment> {
        self.members.get(member_id).map(|m| &m.assigned)
    }

    /// The partitions the member was asked to give up and may still consume.
    pub fn pending_revocation(&self, member_id: &str) -> Option<&Assignment> {
        self.members.get(member_id).map(|m| &m.pending_revocation)
    }

    pub fn target_assignment(&self, member_id: &str) -> Option<&Assignment> {
        self.target.get(member_id)
    }

    /// The assignor the next target assignment will be computed with: the one most
    /// members name (ties to the first by name), else the configured default.
    pub fn assignor(&self) -> Assignor {
        let mut votes: BTreeMap<Assignor, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(assignor) = member.server_assignor {
                *votes.entry(assignor).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(assignor, _)| assignor)
            .unwrap_or(self.config.assignors[0])
    }

    /// ConsumerGroupDescribe's view, topic names from the last metadata image.
    pub fn describe(&self) -> ConsumerGroupDescription {
        let names: BTreeMap<Uuid, &str> = self
            .topics
            .iter()
            .map(|(name, info)| (info.topic_id, name.as_str()))
            .collect();
        let described = |assignment: &Assignment| -> Vec<DescribedTopicPartitions> {
            assignment
                .iter()
                .filter_map(|(topic_id, partitions)| {
                    names.get(topic_id).map(|name| DescribedTopicPartitions {
                        topic_id: *topic_id,
                        topic_name: name.to_string(),
                        partitions: partitions.iter().copied().collect(),
                    })
                })
                .collect()
        };
        let empty = Assignment::new();
        ConsumerGroupDescription {
            group_id: self.group_id.clone(),
            state: self.state(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor_name: self.assignor().name().to_string(),
            members: self
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.member_epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
                    subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                    assignment: described(&m.assigned),
                    target_assignment: described(self.target.get(&m.member_id).unwrap_or(&empty)),
                })
                .collect(),
        }
    }

    /// Kafka's `ConsumerGroup.validateOffsetCommit` for members of this protocol
    /// (OffsetCommit v9+ carries the member epoch as its generation id). A negative epoch
    /// to an empty group is an admin client or a consumer without group management.
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        if self.dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if member.member_epoch != member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Kafka's `ConsumerGroup.validateOffsetFetch` (OffsetFetch v9+): a fetch without a
    /// member id (None) and with a negative epoch is an admin client's and always passes.
    pub fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        if self.dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let member_id = match member_id {
            None if member_epoch < 0 => return Ok(()),
            None => return Err(ResponseError::UnknownMemberId),
            Some(member_id) => member_id,
        };
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if member.member_epoch != member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// DeleteGroups: only an Empty group can go; it becomes Dead. The coordinator writes
    /// the group's tombstone (and drops its offsets) itself.
    pub fn delete(&mut self) -> Result<(), ResponseError> {
        match self.state() {
            ConsumerGroupState::Empty => {
                // Writes under way still complete and release their answers (a last
                // member's leave); nothing new is written.
                self.dead = true;
                Ok(())
            }
            ConsumerGroupState::Dead => Err(ResponseError::GroupIdNotFound),
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }

    /// The earliest time a `Tick` has work to do.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.next_due().map(|(deadline_ms, _, _)| deadline_ms)
    }

    /// The record describing the group now (what the last `Persist` carried, or will).
    pub fn record(&self) -> ConsumerGroupRecord {
        let empty = Assignment::new();
        ConsumerGroupRecord {
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            subscription_metadata: self.subscription_metadata.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberRecord {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
                    subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                    server_assignor: m.server_assignor.map(|a| a.name().to_string()),
                    state: m.state,
                    member_epoch: m.member_epoch,
                    previous_member_epoch: m.previous_member_epoch,
                    assigned: to_wire(&m.assigned),
                    pending_revocation: to_wire(&m.pending_revocation),
                    target: to_wire(self.target.get(&m.member_id).unwrap_or(&empty)),
                })
                .collect(),
        }
    }

    // ---- ConsumerGroupHeartbeat ----

    fn heartbeat(&mut self, request: ConsumerHeartbeatRequest) {
        let compiled = match self.validate_request(&request) {
            Ok(compiled) => compiled,
            Err((error, message)) => {
                self.answer_error(request.request_id, error, message);
                return;
            }
        };
        let result = match request.member_epoch {
            LEAVE_GROUP_MEMBER_EPOCH | LEAVE_GROUP_STATIC_MEMBER_EPOCH => self.leave(&request),
            _ => self.join_or_heartbeat(&request, compiled),
        };
        if let Err((error, message)) = result {
            self.answer_error(request.request_id, error, message);
        }
    }

    /// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`. A regex the group does not
    /// have compiled yet is compiled here (INVALID_REGULAR_EXPRESSION if it cannot be) and
    /// returned, so that the heartbeat can take it without compiling it again.
    fn validate_request(
        &self,
        request: &ConsumerHeartbeatRequest,
    ) -> Result<Option<Regex>, Refusal> {
        let invalid = |message: &str| Err((ResponseError::InvalidRequest, message.to_string()));
        if request.group_id.is_empty() {
            return invalid("GroupId can't be empty.");
        }
        if request.group_id != self.group_id {
            return invalid("The request was routed to another group.");
        }
        if request.instance_id.as_deref() == Some("") {
            return invalid("InstanceId can't be empty.");
        }
        if request.rack_id.as_deref() == Some("") {
            return invalid("RackId can't be empty.");
        }
        if request.rebalance_timeout_ms < -1 {
            return invalid("RebalanceTimeoutMs can't be negative.");
        }
        match request.member_epoch {
            epoch if epoch > 0 || epoch == LEAVE_GROUP_MEMBER_EPOCH => {
                if request.member_id.is_empty() {
                    return invalid("MemberId can't be empty.");
                }
            }
            JOIN_GROUP_MEMBER_EPOCH => {
                if request.rebalance_timeout_ms == -1 {
                    return invalid("RebalanceTimeoutMs must be provided in first request.");
                }
                if request
                    .topic_partitions
                    .as_ref()
                    .is_none_or(|p| !p.is_empty())
                {
                    return invalid("TopicPartitions must be empty when (re-)joining.");
                }
                // An empty list of names or an empty regex joins with no topics (Kafka 4.0).
                if request.subscribed_topic_names.is_none()
                    && request.subscribed_topic_regex.is_none()
                {
                    return invalid(
                        "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null \
                         when (re-)joining.",
                    );
                }
            }
            LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
                if request.member_id.is_empty() {
                    return invalid("MemberId can't be empty.");
                }
                if request.instance_id.is_none() {
                    return invalid("InstanceId can't be null.");
                }
            }
            _ => return invalid("MemberEpoch is invalid."),
        }
        if let Some(name) = &request.server_assignor {
            let known =
                Assignor::from_name(name).is_some_and(|a| self.config.assignors.contains(&a));
            if !known {
                let supported: Vec<&str> = self.config.assignors.iter().map(|a| a.name()).collect();
                return Err((
                    ResponseError::UnsupportedAssignor,
                    format!(
                        "ServerAssignor {name} is not supported. Supported assignors: {}.",
                        supported.join(", ")
                    ),
                ));
            }
        }
        // An empty regex is how clients say "no regex" (the Java and librdkafka consumers
        // send it with a list subscription); it clears one the member had.
        match request.subscribed_topic_regex.as_deref() {
            None | Some("") => Ok(None),
            Some(pattern) if self.regexes.contains_key(pattern) => Ok(None),
            Some(pattern) => compile_regex(pattern).map(Some),
        }
    }

    /// Kafka's `consumerGroupHeartbeat`: find or create the member, take the request's
    /// changes, bump the group epoch if its subscription changed, reconcile it.
    /// `compiled` is the request's regex if the group did not have it yet.
    fn join_or_heartbeat(
        &mut self,
        request: &ConsumerHeartbeatRequest,
        compiled: Option<Regex>,
    ) -> Result<(), Refusal> {
        let joining = request.member_epoch == JOIN_GROUP_MEMBER_EPOCH;
        let replaces_static = request
            .instance_id
            .as_ref()
            .is_some_and(|i| self.static_members.contains_key(i));
        if self.members.len() >= self.config.max_size
            && !self.members.contains_key(&request.member_id)
            && !replaces_static
        {
            return Err((
                ResponseError::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    self.config.max_size
                ),
            ));
        }
        let member_id = if request.member_id.is_empty() {
            self.generate_member_id(&request.client_id)
        } else {
            request.member_id.clone()
        };
        let owned = request.topic_partitions.as_deref().map(from_wire);
        let old = self.find_member(&member_id, request, owned.as_ref())?;
        let mut updated = match &old {
            Some(member) => member.clone().updated_by(request),
            None => Member::new(member_id.clone(), request, self.now_ms),
        };
        if joining {
            // A member that rejoins (after a fence, or a static member coming back) has
            // dropped its partitions; it gets back what is still its own below.
            updated.member_epoch = JOIN_GROUP_MEMBER_EPOCH;
            updated.previous_member_epoch = JOIN_GROUP_MEMBER_EPOCH;
        }
        updated.session_deadline_ms = deadline_after(self.now_ms, self.config.session_timeout_ms);
        let subscription_changed = old.as_ref().is_none_or(|m| !m.same_subscription(&updated));
        if old.as_ref().is_none_or(|m| !m.same_record(&updated)) {
            self.dirty = true;
        }
        let assigned_before = old.as_ref().map(|m| m.assigned.clone());
        if let (Some(pattern), Some(regex)) = (&updated.subscribed_topic_regex, compiled) {
            let resolved = ResolvedRegex::new(regex, &self.topics);
            self.regexes.insert(pattern.clone(), resolved);
        }
        let regex_before = old.and_then(|m| m.subscribed_topic_regex);
        self.put_member(updated);
        if let Some(pattern) = regex_before {
            self.forget_regex_if_unused(&pattern);
        }
        if subscription_changed {
            self.bump_group_epoch();
        }
        self.reconcile(&member_id, owned.as_ref());

        let member = &self.members[&member_id];
        let full_request = joining
            || (request.rebalance_timeout_ms != -1
                && (request.subscribed_topic_names.is_some()
                    || request.subscribed_topic_regex.is_some())
                && request.topic_partitions.is_some());
        let changed = assigned_before.as_ref() != Some(&member.assigned);
        let response = ConsumerHeartbeatResponse {
            error: None,
            error_message: None,
            member_id: Some(member_id.clone()),
            member_epoch: member.member_epoch,
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            assignment: (full_request || changed).then(|| to_wire(&member.assigned)),
        };
        self.answers.push(Parked {
            request_id: request.request_id,
            response,
        });
        Ok(())
    }

    /// The member the request speaks for as it is now (None: a new one), after Kafka's
    /// member and epoch checks. A static member coming back under a new member id takes
    /// over the old member here: its partitions and target move to the new id.
    fn find_member(
        &mut self,
        member_id: &str,
        request: &ConsumerHeartbeatRequest,
        owned: Option<&Assignment>,
    ) -> Result<Option<Member>, Refusal> {
        let joining = request.member_epoch == JOIN_GROUP_MEMBER_EPOCH;
        let Some(instance_id) = &request.instance_id else {
            return match self.members.get(member_id) {
                None if joining => Ok(None),
                None => Err(unknown_member(member_id)),
                Some(member) => {
                    check_epoch(member, request.member_epoch, owned)?;
                    Ok(Some(member.clone()))
                }
            };
        };
        let Some(holder_id) = self.static_members.get(instance_id).cloned() else {
            if !joining {
                return Err((
                    ResponseError::UnknownMemberId,
                    format!("Instance id {instance_id} is unknown."),
                ));
            }
            // A dynamic member may become static by rejoining with an instance id.
            return Ok(self.members.get(member_id).cloned());
        };
        if holder_id == member_id {
            let member = &self.members[&holder_id];
            check_epoch(member, request.member_epoch, owned)?;
            return Ok(Some(member.clone()));
        }
        if !joining {
            return Err((
                ResponseError::FencedInstanceId,
                format!(
                    "Static member {member_id} with instance id {instance_id} was fenced by \
                     member {holder_id}."
                ),
            ));
        }
        let holder = &self.members[&holder_id];
        if holder.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            return Err((
                ResponseError::UnreleasedInstanceId,
                format!(
                    "Static member {member_id} with instance id {instance_id} cannot join the \
                     group because the instance id is owned by member {holder_id}."
                ),
            ));
        }
        if self.members.contains_key(member_id) {
            return Err((
                ResponseError::InvalidRequest,
                format!("Member id {member_id} is used by another member."),
            ));
        }
        // Kafka's `replaceMember`: the new id inherits everything, at epoch 0.
        let mut old = self
            .members
            .remove(&holder_id)
            .expect("the holder is a member");
        let target = self.target.remove(&holder_id).unwrap_or_default();
        old.member_id = member_id.to_string();
        old.member_epoch = JOIN_GROUP_MEMBER_EPOCH;
        old.previous_member_epoch = JOIN_GROUP_MEMBER_EPOCH;
        self.static_members
            .insert(instance_id.clone(), member_id.to_string());
        self.target.insert(member_id.to_string(), target);
        self.members.insert(member_id.to_string(), old.clone());
        self.dirty = true;
        Ok(Some(old))
    }

    /// Kafka's `consumerGroupLeave`: -1 leaves for good, -2 (static members) for a while.
    fn leave(&mut self, request: &ConsumerHeartbeatRequest) -> Result<(), Refusal> {
        let member_id = match &request.instance_id {
            None => {
                if !self.members.contains_key(&request.member_id) {
                    return Err(unknown_member(&request.member_id));
                }
                request.member_id.clone()
            }
            Some(instance_id) => {
                let Some(holder_id) = self.static_members.get(instance_id).cloned() else {
                    return Err((
                        ResponseError::UnknownMemberId,
                        format!("Instance id {instance_id} is unknown."),
                    ));
                };
                if holder_id != request.member_id {
                    return Err((
                        ResponseError::FencedInstanceId,
                        format!(
                            "Static member {} with instance id {instance_id} was fenced by \
                             member {holder_id}.",
                            request.member_id
                        ),
                    ));
                }
                holder_id
            }
        };
        if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            // It keeps its partitions (no one else gets them) until it comes back or its
            // session runs out; what it was giving up is free at once.
            let member = self.members.get_mut(&member_id).expect("a member");
            member.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
            member.pending_revocation.clear();
            member.state = MemberState::Stable;
            member.rebalance_deadline_ms = None;
            self.dirty = true;
        } else {
            self.remove_member(&member_id);
        }
        self.answers.push(Parked {
            request_id: request.request_id,
            response: ConsumerHeartbeatResponse {
                error: None,
                error_message: None,
                member_id: Some(member_id),
                member_epoch: request.member_epoch,
                heartbeat_interval_ms: 0,
                assignment: None,
            },
        });
        Ok(())
    }

    // ---- membership and assignment ----

    fn put_member(&mut self, member: Member) {
        let instance_before = self
            .members
            .get(&member.member_id)
            .and_then(|m| m.instance_id.clone());
        if let Some(before) = instance_before {
            if member.instance_id.as_ref() != Some(&before) {
                self.static_members.remove(&before);
            }
        }
        if let Some(instance_id) = &member.instance_id {
            let previous = self
                .static_members
                .insert(instance_id.clone(), member.member_id.clone());
            assert!(
                previous.is_none_or(|id| id == member.member_id),
                "an instance id is held by one member"
            );
        }
        self.target.entry(member.member_id.clone()).or_default();
        self.members.insert(member.member_id.clone(), member);
    }

    /// Kafka's `consumerGroupFenceMember`: the member is gone with its partitions, and the
    /// group moves to a new epoch without it.
    fn remove_member(&mut self, member_id: &str) {
        let member = self.members.remove(member_id).expect("removing a member");
        if let Some(instance_id) = &member.instance_id {
            let holder = self.static_members.remove(instance_id);
            assert_eq!(holder.as_deref(), Some(member_id));
        }
        self.target.remove(member_id);
        if let Some(pattern) = &member.subscribed_topic_regex {
            self.forget_regex_if_unused(pattern);
        }
        self.bump_group_epoch();
    }

    /// Drops a compiled regex once no member has its pattern any more.
    fn forget_regex_if_unused(&mut self, pattern: &str) {
        let used = self
            .members
            .values()
            .any(|m| m.subscribed_topic_regex.as_deref() == Some(pattern));
        if !used {
            self.regexes.remove(pattern);
        }
    }

    /// Matches every regex against the current image (a new one, or the first one).
    fn rematch_regexes(&mut self) {
        for resolved in self.regexes.values_mut() {
            resolved.rematch(&self.topics);
        }
    }

    /// The member's subscription: its names and the topics its regex matches now.
    fn subscribed_topics<'a>(&'a self, member: &'a Member) -> impl Iterator<Item = &'a String> {
        let matched = member
            .subscribed_topic_regex
            .as_ref()
            .and_then(|pattern| self.regexes.get(pattern))
            .into_iter()
            .flat_map(|resolved| &resolved.matches);
        member.subscribed_topic_names.iter().chain(matched)
    }

    fn bump_group_epoch(&mut self) {
        self.group_epoch = self
            .group_epoch
            .checked_add(1)
            .expect("a group epoch does not run out in practice");
        self.subscription_metadata = self.compute_subscription_metadata();
        self.compute_target();
        self.dirty = true;
    }

    /// The subscribed topics changed in the image: a new epoch (Kafka notices on the next
    /// heartbeat after its metadata refresh interval; here it happens with the image).
    fn refresh_subscription_metadata(&mut self) {
        if self.compute_subscription_metadata() != self.subscription_metadata {
            self.bump_group_epoch();
        }
    }

    fn compute_subscription_metadata(&self) -> BTreeMap<String, TopicInfo> {
        let names: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| self.subscribed_topics(m))
            .collect();
        names
            .into_iter()
            .filter_map(|name| self.topics.get(name).map(|info| (name.clone(), *info)))
            .collect()
    }

    /// Kafka's `TargetAssignmentBuilder`: the assignor's answer for the group epoch.
    fn compute_target(&mut self) {
        let members: BTreeMap<String, MemberSubscription> = self
            .members
            .values()
            .map(|m| {
                let topic_ids = self
                    .subscribed_topics(m)
                    .filter_map(|name| self.subscription_metadata.get(name))
                    .map(|info| info.topic_id)
                    .collect();
                let subscription = MemberSubscription {
                    topic_ids,
                    instance_id: m.instance_id.clone(),
                };
                (m.member_id.clone(), subscription)
            })
            .collect();
        let partition_counts: BTreeMap<Uuid, i32> = self
            .subscription_metadata
            .values()
            .map(|info| (info.topic_id, info.partition_count))
            .collect();
        self.target = self
            .assignor()
            .assign(&members, &partition_counts, &self.target);
        self.assignment_epoch = self.group_epoch;
    }

    /// Kafka's `CurrentAssignmentBuilder.build`: move the member towards its target as far
    /// as the partitions it still owns (`owned`, None when it did not say) and the other
    /// members' partitions allow.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>) {
        let target_epoch = self.assignment_epoch;
        let member = &self.members[member_id];
        if member.is_reconciled_to(target_epoch) {
            return;
        }
        let next = match member.state {
            MemberState::Stable | MemberState::UnreleasedPartitions => {
                self.next_assignment(member, member.member_epoch)
            }
            MemberState::UnrevokedPartitions => {
                if owns_any(owned, &member.pending_revocation) {
                    return;
                }
                self.next_assignment(member, member.member_epoch + 1)
            }
        };
        let mut next = self.next_assignment_checked(next, owned);
        if next.same_record(member) {
            return;
        }
        // Kafka's `updateMemberEpoch`: every change moves the epoch it came from along.
        next.previous_member_epoch = member.member_epoch;
        next.rebalance_deadline_ms = if next.state == MemberState::UnrevokedPartitions {
            Some(deadline_after(self.now_ms, next.rebalance_timeout_ms))
        } else {
            None
        };
        self.members.insert(member_id.to_string(), next);
        self.dirty = true;
    }

    /// Kafka's `computeNextAssignment`, before the check of what the member still owns.
    fn next_assignment(&self, member: &Member, member_epoch: i32) -> NextAssignment {
        let empty = Assignment::new();
        let target = self.target.get(&member.member_id).unwrap_or(&empty);
        let held_by_others = self.held_by_others(&member.member_id);
        let mut assigned = Assignment::new();
        let mut revoke = Assignment::new();
        let mut gain = Assignment::new();
        let mut unreleased = false;
        let topics: BTreeSet<&Uuid> = target.keys().chain(member.assigned.keys()).collect();
        for topic_id in topics {
            let wanted = target.get(topic_id).unwrap_or(&EMPTY_SET);
            let current = member.assigned.get(topic_id).unwrap_or(&EMPTY_SET);
            let kept: BTreeSet<i32> = current.intersection(wanted).copied().collect();
            let lost: BTreeSet<i32> = current.difference(&kept).copied().collect();
            let mut new: BTreeSet<i32> = wanted.difference(&kept).copied().collect();
            let before = new.len();
            new.retain(|p| !held_by_others.contains(&(*topic_id, *p)));
            unreleased |= new.len() != before;
            if !kept.is_empty() {
                assigned.insert(*topic_id, kept);
            }
            if !lost.is_empty() {
                revoke.insert(*topic_id, lost);
            }
            if !new.is_empty() {
                gain.insert(*topic_id, new);
            }
        }
        NextAssignment {
            member: member.clone(),
            member_epoch,
            assigned,
            revoke,
            gain,
            unreleased,
        }
    }

    /// The rest of `computeNextAssignment`: revoke first if the member may still own what
    /// it loses, else take the target epoch with whatever is free of the gains.
    fn next_assignment_checked(&self, next: NextAssignment, owned: Option<&Assignment>) -> Member {
        let NextAssignment {
            mut member,
            member_epoch,
            mut assigned,
            revoke,
            gain,
            unreleased,
        } = next;
        if !revoke.is_empty() && owns_any(owned, &revoke) {
            member.state = MemberState::UnrevokedPartitions;
            member.member_epoch = member_epoch;
            member.assigned = assigned;
            member.pending_revocation = revoke;
            return member;
        }
        for (topic_id, partitions) in gain {
            assigned.entry(topic_id).or_default().extend(partitions);
        }
        member.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        member.member_epoch = self.assignment_epoch;
        member.assigned = assigned;
        member.pending_revocation = Assignment::new();
        member
    }

    /// Partitions other members hold (assigned or still being revoked): not free yet.
    fn held_by_others(&self, member_id: &str) -> BTreeSet<(Uuid, i32)> {
        let mut held = BTreeSet::new();
        for member in self.members.values() {
            if member.member_id == member_id {
                continue;
            }
            for (topic_id, partitions) in member.assigned.iter().chain(&member.pending_revocation) {
                held.extend(partitions.iter().map(|p| (*topic_id, *p)));
            }
        }
        held
    }

    fn generate_member_id(&mut self, client_id: &str) -> String {
        loop {
            self.next_member_sequence += 1;
            let id = format!(
                "{client_id}-{}-{}",
                self.member_id_epoch, self.next_member_sequence
            );
            // A client may have picked this very id itself (v1 clients choose theirs).
            if !self.members.contains_key(&id) {
                return id;
            }
        }
    }

    // ---- persistence and answers ----

    /// Writes the record if the step changed the group, then sends or parks its answers.
    fn finish_step(&mut self) {
        if self.dirty && !self.dead {
            self.dirty = false;
            let store_id = self.next_store_id;
            self.next_store_id += 1;
            self.stores.insert(store_id, Store::default());
            let record = self.record();
            self.outputs.push(Output::Persist { store_id, record });
        }
        self.dirty = false;
        let answers = std::mem::take(&mut self.answers);
        // An answer may show state of any write still under way: wait for the last one.
        match self.stores.values_mut().next_back() {
            Some(store) => store.parked.extend(answers),
            None => {
                for Parked {
                    request_id,
                    response,
                } in answers
                {
                    self.outputs.push(Output::Heartbeat {
                        request_id,
                        response,
                    });
                }
            }
        }
        self.check_invariants();
    }

    fn persist_completed(&mut self, store_id: StoreId, error: Option<ResponseError>) {
        match self.stores.get_mut(&store_id) {
            Some(store) if store.completed.is_none() => store.completed = Some(error),
            // Unknown or already completed: nothing more waits on it.
            _ => return,
        }
        // Writes to one partition complete in order; should they be reported out of
        // order, an answer still waits for every write before its own.
        while let Some(entry) = self.stores.first_entry() {
            let Some(error) = entry.get().completed else {
                break;
            };
            let store = entry.remove();
            // The in-memory group stays as it is either way: the next record is a whole
            // snapshot and repairs what this one failed to write. A coordinator that
            // lost the log's leadership unloads the group anyway.
            for Parked {
                request_id,
                response,
            } in store.parked
            {
                let response = match error {
                    None => response,
                    Some(error) => ConsumerHeartbeatResponse::error(
                        error,
                        "The group's state could not be written.",
                    ),
                };
                self.outputs.push(Output::Heartbeat {
                    request_id,
                    response,
                });
            }
        }
    }

    fn unload(&mut self) {
        if self.dead {
            return;
        }
        self.dead = true;
        let stores = std::mem::take(&mut self.stores);
        for store in stores.into_values() {
            for Parked { request_id, .. } in store.parked {
                self.answer_error(
                    request_id,
                    ResponseError::NotCoordinator,
                    "The group is no longer coordinated here.",
                );
            }
        }
        for member in self.members.values_mut() {
            member.rebalance_deadline_ms = None;
        }
    }

    fn answer_error(
        &mut self,
        request_id: RequestId,
        error: ResponseError,
        message: impl Into<String>,
    ) {
        self.outputs.push(Output::Heartbeat {
            request_id,
            response: ConsumerHeartbeatResponse::error(error, message),
        });
    }

    // ---- time ----

    fn next_due(&self) -> Option<(i64, Due, String)> {
        if self.dead {
            return None;
        }
        self.members
            .values()
            .flat_map(|m| {
                let session = Some((m.session_deadline_ms, Due::Session, m.member_id.clone()));
                let rebalance = m
                    .rebalance_deadline_ms
                    .map(|d| (d, Due::Rebalance, m.member_id.clone()));
                session.into_iter().chain(rebalance)
            })
            .min()
    }

    fn tick(&mut self) {
        // Each firing removes a member, so this ends within the member count.
        while let Some((deadline_ms, _, member_id)) = self.next_due() {
            if deadline_ms > self.now_ms {
                break;
            }
            // Session or rebalance timeout: either way the member is fenced.
            self.remove_member(&member_id);
        }
    }

    fn check_invariants(&self) {
        assert!(self.assignment_epoch <= self.group_epoch);
        if !self.dead {
            assert_eq!(
                self.assignment_epoch, self.group_epoch,
                "the target is computed with every bump"
            );
        }
        assert!(
            self.target.keys().eq(self.members.keys()),
            "a target per member"
        );
        for (instance_id, member_id) in &self.static_members {
            assert_eq!(
                self.members[member_id].instance_id.as_ref(),
                Some(instance_id)
            );
        }
        let patterns: BTreeSet<&String> = self
            .members
            .values()
            .filter_map(|m| m.subscribed_topic_regex.as_ref())
            .collect();
        assert!(
            patterns.iter().copied().eq(self.regexes.keys()),
            "a compiled regex for exactly the patterns members have"
        );
        let mut held: BTreeSet<(Uuid, i32)> = BTreeSet::new();
        for (member_id, member) in &self.members {
            assert_ne!(member.subscribed_topic_regex.as_deref(), Some(""));
            assert_eq!(&member.member_id, member_id);
            if let Some(instance_id) = &member.instance_id {
                assert_eq!(self.static_members.get(instance_id), Some(member_id));
            }
            assert!(
                member.member_epoch <= self.assignment_epoch,
                "no member is ahead of the target"
            );
            assert!(
                member.member_epoch >= 0 || member.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH
            );
            let unrevoked = member.state == MemberState::UnrevokedPartitions;
            assert_eq!(unrevoked, !member.pending_revocation.is_empty());
            if !self.dead {
                assert_eq!(unrevoked, member.rebalance_deadline_ms.is_some());
            }
            for (topic_id, partitions) in member.assigned.iter().chain(&member.pending_revocation) {
                assert!(!partitions.is_empty(), "no empty topic entries");
                for &partition in partitions {
                    assert!(
                        held.insert((*topic_id, partition)),
                        "partition {topic_id}-{partition} is in two current assignments"
                    );
                }
            }
        }
        let mut targeted: BTreeSet<(Uuid, i32)> = BTreeSet::new();
        for assignment in self.target.values() {
            for (topic_id, partitions) in assignment {
                for &partition in partitions {
                    assert!(targeted.insert((*topic_id, partition)), "targeted once");
                }
            }
        }
    }
}

/// An error to answer and the sentence that goes with it.
type Refusal = (ResponseError, String);

static EMPTY_SET: BTreeSet<i32> = BTreeSet::new();

/// A member's next state before the owned-partitions check.
struct NextAssignment {
    member: Member,
    member_epoch: i32,
    /// Current ∩ target.
    assigned: Assignment,
    /// Current − target.
    revoke: Assignment,
    /// Target − current, free partitions only.
    gain: Assignment,
    /// Some of target − current is still held by others.
    unreleased: bool,
}

fn unknown_member(member_id: &str) -> Refusal {
    (
        ResponseError::UnknownMemberId,
        format!("Member {member_id} is not a member of the group."),
    )
}

/// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`, with KAFKA-19233: epoch 0 always
/// rejoins. The previous epoch is accepted if the member owns no more than it is assigned,
/// in case the answer that bumped its epoch was lost.
fn check_epoch(member: &Member, received: i32, owned: Option<&Assignment>) -> Result<(), Refusal> {
    if received == JOIN_GROUP_MEMBER_EPOCH {
        return Ok(());
    }
    let fenced = if received > member.member_epoch {
        true
    } else if received < member.member_epoch {
        received != member.previous_member_epoch || !is_subset(owned, &member.assigned)
    } else {
        false
    };
    if fenced {
        return Err((
            ResponseError::FencedMemberEpoch,
            format!(
                "The member epoch {received} does not match the coordinator's {}. The member \
                 must abandon all its partitions and rejoin.",
                member.member_epoch
            ),
        ));
    }
    Ok(())
}

/// Whether the member reports owning any of `partitions` (not saying counts as owning).
fn owns_any(owned: Option<&Assignment>, partitions: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    owned.iter().any(|(topic_id, owned)| {
        partitions
            .get(topic_id)
            .is_some_and(|p| !p.is_disjoint(owned))
    })
}

fn is_subset(owned: Option<&Assignment>, assigned: &Assignment) -> bool {
    let Some(owned) = owned else {
        return false;
    };
    owned
        .iter()
        .all(|(topic_id, owned)| assigned.get(topic_id).is_some_and(|a| owned.is_subset(a)))
}

fn from_wire(topics: &[TopicPartitions]) -> Assignment {
    let mut assignment = Assignment::new();
    for topic in topics {
        if !topic.partitions.is_empty() {
            assignment
                .entry(topic.topic_id)
                .or_default()
                .extend(topic.partitions.iter().copied());
        }
    }
    assignment
}

fn to_wire(assignment: &Assignment) -> Vec<TopicPartitions> {
    assignment
        .iter()
        .map(|(topic_id, partitions)| TopicPartitions {
            topic_id: *topic_id,
            partitions: partitions.iter().copied().collect(),
        })
        .collect()
}

fn deadline_after(now_ms: i64, timeout_ms: i32) -> i64 {
    now_ms.saturating_add(i64::from(timeout_ms.max(1)))
}
