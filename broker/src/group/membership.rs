//! The classic consumer-group membership protocol as a state machine (Kafka's
//! `GroupCoordinator` and `GroupMetadata`, classic protocol, KIP-394 member ids, KIP-345
//! static members).
//!
//! One [`Group`] per group id. The coordinator actor owns the I/O: it calls
//! [`Group::step`] with the current time and one [`Input`], and carries out every
//! [`Output`]:
//!
//! - `Join`, `Sync`, `Heartbeat`, `Leave`, `OffsetCommit` answer the request of that
//!   `request_id`. JoinGroup and SyncGroup requests may be parked: their answer comes out of
//!   a later step (another member's request, a `Tick`, a `PersistCompleted`). Every request
//!   gets exactly one answer, unless the group is dropped first.
//! - `Persist` asks the coordinator to write the group's metadata record to
//!   `__consumer_offsets` and then to call `step` with `PersistCompleted` for that
//!   `store_id` (with the append error already mapped to the error clients should see, as
//!   Kafka's `GroupMetadataManager.storeGroup` maps it). An assignment reaches members only
//!   after its record is durable.
//!
//! Time only moves through `now_ms`; call `step(now, Input::Tick)` at
//! [`Group::next_deadline_ms`] (or more often). No clock, randomness or threads: member ids
//! are derived from the client id, an epoch given at construction and a counter.
//!
//! What the coordinator does itself, as Kafka does outside `GroupMetadata`: the group id
//! and coordinator checks, answering JoinGroup with a non-empty member id for a group that
//! does not exist with UNKNOWN_MEMBER_ID (a fresh `Group` answers the same for every
//! well-formed request), OffsetCommit with a generation >= 0 for a missing group with
//! ILLEGAL_GENERATION, JoinGroup v0's rebalance timeout (the session timeout), and shaping
//! responses per version (LeaveGroup v0-v2 report the single member's error at the top
//! level).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;

/// The coordinator's handle on one request, echoed in the answer.
pub type RequestId = u64;
/// Names one `Persist` output so its completion can be matched.
pub type StoreId = u64;

/// The generation of a response that carries none (errors).
pub const NO_GENERATION: i32 = -1;
/// The member id of a member that has none yet.
pub const UNKNOWN_MEMBER_ID: &str = "";
/// Kafka's `NewMemberJoinTimeoutMs`: a new member's JoinGroup is parked at most this long.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i32 = 5 * 60 * 1000;

/// Broker settings for classic groups, with Kafka's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.max.size`: members a group accepts.
    pub max_size: usize,
    /// `group.initial.rebalance.delay.ms`: how long an empty group's first rebalance waits
    /// for more members.
    pub initial_rebalance_delay_ms: i32,
    /// How long a new member's JoinGroup may stay parked before the member is dropped.
    pub new_member_join_timeout_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            // Kafka's default is Int.MaxValue: no bound beyond what i32 can count.
            max_size: i32::MAX as usize,
            initial_rebalance_delay_ms: 3_000,
            new_member_join_timeout_ms: NEW_MEMBER_JOIN_TIMEOUT_MS,
        }
    }
}

/// Kafka's classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    fn may_follow(self, previous: GroupState) -> bool {
        use GroupState::*;
        match self {
            PreparingRebalance => matches!(previous, Stable | CompletingRebalance | Empty),
            CompletingRebalance => previous == PreparingRebalance,
            Stable => previous == CompletingRebalance,
            Empty => previous == PreparingRebalance,
            Dead => true,
        }
    }
}

/// One protocol a member supports (an assignor, for consumers) and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub request_id: RequestId,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: an empty member id first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a rejoining static leader of a stable group is told to skip assigning.
    pub supports_skip_assignment: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub request_id: RequestId,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    /// SyncGroup v5+.
    pub protocol_type: Option<String>,
    /// SyncGroup v5+.
    pub protocol_name: Option<String>,
    /// The leader's assignment (empty from followers); a repeated member id keeps the last.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub request_id: RequestId,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    /// Empty to remove a static member by its instance id alone (the admin path).
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// LeaveGroup; v0-v2 carry one member with no instance id, v3+ a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveRequest {
    pub request_id: RequestId,
    pub members: Vec<LeavingMember>,
}

/// The membership part of a (non-transactional) OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub request_id: RequestId,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Join(JoinRequest),
    Sync(SyncRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveRequest),
    OffsetCommit(OffsetCommitRequest),
    /// The record of a `Persist` output was written (`error: None`) or not.
    PersistCompleted {
        store_id: StoreId,
        error: Option<ResponseError>,
    },
    /// This broker stops coordinating the group: parked requests get NOT_COORDINATOR and the
    /// group becomes Dead.
    Unload,
    /// Time passed: expire sessions, pending members, rebalance and sync deadlines.
    Tick,
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: Option<ResponseError>,
    pub member_id: String,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// Empty when there is none.
    pub leader_id: String,
    pub skip_assignment: bool,
    /// Every member's metadata for the selected protocol, for the leader only.
    pub members: Vec<JoinMember>,
}

impl JoinResponse {
    fn error(member_id: &str, error: ResponseError) -> Self {
        JoinResponse {
            error: Some(error),
            member_id: member_id.to_string(),
            generation_id: NO_GENERATION,
            protocol_type: None,
            protocol_name: None,
            leader_id: String::new(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(error: ResponseError) -> Self {
        SyncResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMemberResponse {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub error: Option<ResponseError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResponse {
    pub error: Option<ResponseError>,
    /// One per leaving member, in request order (empty with a top-level error).
    pub members: Vec<LeaveMemberResponse>,
}

/// A member in the group metadata record (Kafka's `GroupMetadataValue.MemberMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// What `__consumer_offsets` keeps of a group's membership (Kafka's `GroupMetadataValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub protocol_type: Option<String>,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Join {
        request_id: RequestId,
        response: JoinResponse,
    },
    Sync {
        request_id: RequestId,
        response: SyncResponse,
    },
    Heartbeat {
        request_id: RequestId,
        error: Option<ResponseError>,
    },
    Leave {
        request_id: RequestId,
        response: LeaveResponse,
    },
    OffsetCommit {
        request_id: RequestId,
        result: Result<(), ResponseError>,
    },
    /// Write `record` as the group's metadata, then step `PersistCompleted { store_id }`.
    Persist {
        store_id: StoreId,
        record: GroupRecord,
    },
}

#[derive(Debug, Clone)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    session_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<Protocol>,
    assignment: Bytes,
    /// The generation `assignment` was given in; None while it has none.
    assignment_generation_id: Option<i32>,
    /// A parked JoinGroup.
    awaiting_join: Option<RequestId>,
    /// A parked SyncGroup.
    awaiting_sync: Option<RequestId>,
    /// Joined and not yet through a completed join phase (Kafka's `isNew`).
    is_new: bool,
    /// When the member expires unless it shows life; None while nothing is scheduled.
    heartbeat_deadline_ms: Option<i64>,
}

impl Member {
    fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .expect("every member supports the group's protocol")
    }

    /// Kafka's `vote`: the member's most preferred protocol among the candidates.
    fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> &'a str {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|name| candidates.contains(name))
            .expect("every member supports a candidate protocol")
    }

    /// Kafka's `hasSatisfiedHeartbeat` (its flag is false between reschedules): a member
    /// with a parked request is alive, unless it is new and its join has waited too long.
    fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinTimer {
    /// Kafka's `DelayedJoin`: completes once every member rejoined, or at the deadline.
    Rebalance { deadline_ms: i64 },
    /// Kafka's `InitialDelayedJoin`: an empty group's first rebalance waits for more
    /// members, in steps of the configured delay, up to the rebalance timeout.
    InitialDelay {
        deadline_ms: i64,
        delay_ms: i32,
        remaining_ms: i32,
    },
}

impl JoinTimer {
    fn deadline_ms(self) -> i64 {
        match self {
            JoinTimer::Rebalance { deadline_ms } | JoinTimer::InitialDelay { deadline_ms, .. } => {
                deadline_ms
            }
        }
    }
}

/// Kafka's `DelayedSync`: members of a generation must sync before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SyncTimer {
    generation_id: i32,
    deadline_ms: i64,
}

/// What to do when a `Persist` completes.
#[derive(Debug, Clone)]
enum Store {
    /// The leader's assignment for `generation_id`.
    Assignment {
        generation_id: i32,
        assignment: BTreeMap<String, Bytes>,
    },
    /// The group became Empty; failures are ignored, as in Kafka.
    Emptied,
    /// A static member rejoined a Stable group under a new member id.
    StaticMember {
        request_id: RequestId,
        generation_id: i32,
        group_instance_id: String,
        old_member_id: String,
        new_member_id: String,
        old_protocols: Vec<Protocol>,
        old_rebalance_timeout_ms: i32,
        old_session_timeout_ms: i32,
        leader_before: Option<String>,
        supports_skip_assignment: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Join,
    Sync,
    Heartbeat,
    Pending,
}

/// One classic consumer group. Start with [`Group::new`] (or [`Group::from_record`] when
/// loading `__consumer_offsets`) and drive it with [`Group::step`].
#[derive(Debug, Clone)]
pub struct Group {
    group_id: String,
    config: GroupConfig,
    /// Makes member ids unique across `Group` values for the same group id (one per load).
    member_id_epoch: u64,
    next_member_sequence: u64,
    state: GroupState,
    state_since_ms: i64,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    generation_id: i32,
    leader_id: Option<String>,
    /// Ordered by id so that leader choice and iteration are deterministic.
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED -> when they expire.
    pending_members: BTreeMap<String, i64>,
    /// Members of this generation that have not sent SyncGroup yet.
    pending_sync: BTreeSet<String>,
    /// A member joined during the first rebalance's initial delay.
    new_member_added: bool,
    join_timer: Option<JoinTimer>,
    sync_timer: Option<SyncTimer>,
    next_store_id: StoreId,
    stores: BTreeMap<StoreId, Store>,
    now_ms: i64,
    outputs: Vec<Output>,
}

impl Group {
    /// A group with no members and no history. `member_id_epoch` must differ between
    /// `Group` values for the same group id (the coordinator's load epoch, for instance), so
    /// that a member id is never handed out twice.
    pub fn new(group_id: &str, config: GroupConfig, member_id_epoch: u64, now_ms: i64) -> Self {
        assert!(config.min_session_timeout_ms <= config.max_session_timeout_ms);
        assert!(config.initial_rebalance_delay_ms >= 0);
        assert!(config.new_member_join_timeout_ms > 0);
        Group {
            group_id: group_id.to_string(),
            config,
            member_id_epoch,
            next_member_sequence: 0,
            state: GroupState::Empty,
            state_since_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
            next_store_id: 0,
            stores: BTreeMap::new(),
            now_ms,
            outputs: Vec::new(),
        }
    }

    /// The group as `__consumer_offsets` last recorded it: Stable with its members (each
    /// now on session probation), or Empty. Like Kafka's `onGroupLoaded`, a group over
    /// `max_size` starts rebalancing at once. Returns the rebalance's outputs, if any.
    pub fn from_record(
        group_id: &str,
        config: GroupConfig,
        member_id_epoch: u64,
        now_ms: i64,
        record: GroupRecord,
    ) -> Result<(Self, Vec<Output>), String> {
        let mut group = Group::new(group_id, config, member_id_epoch, now_ms);
        if record.generation_id < 0 {
            return Err(format!("negative generation {}", record.generation_id));
        }
        group.generation_id = record.generation_id;
        group.protocol_type = record.protocol_type.clone();
        group.state_since_ms = record.current_state_timestamp_ms;
        if record.members.is_empty() {
            return Ok((group, Vec::new()));
        }
        let (Some(protocol_type), Some(protocol_name)) =
            (record.protocol_type, record.protocol_name)
        else {
            return Err("members but no protocol type or name".to_string());
        };
        for m in record.members {
            if group.members.contains_key(&m.member_id) {
                return Err(format!("member {} appears twice", m.member_id));
            }
            if let Some(instance) = &m.group_instance_id {
                if group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone())
                    .is_some()
                {
                    return Err(format!("group.instance.id {instance} appears twice"));
                }
            }
            let member = Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                protocol_type: protocol_type.clone(),
                protocols: vec![Protocol {
                    name: protocol_name.clone(),
                    metadata: m.subscription,
                }],
                assignment: m.assignment,
                assignment_generation_id: Some(record.generation_id),
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                heartbeat_deadline_ms: None,
            };
            group.members.insert(m.member_id, member);
        }
        match record.leader_id {
            Some(leader) if group.members.contains_key(&leader) => group.leader_id = Some(leader),
            other => return Err(format!("leader {other:?} is not a member")),
        }
        group.protocol_name = Some(protocol_name);
        group.state = GroupState::Stable;
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in &ids {
            group.schedule_heartbeat(id);
        }
        if group.members.len() > group.config.max_size {
            group.prepare_rebalance();
        }
        group.check_invariants();
        let outputs = std::mem::take(&mut group.outputs);
        Ok((group, outputs))
    }

    /// Handles one input at `now_ms` and returns what the coordinator must do.
    pub fn step(&mut self, now_ms: i64, input: Input) -> Vec<Output> {
        // A clock step backwards must not move deadlines back or fire them twice.
        self.now_ms = self.now_ms.max(now_ms);
        match input {
            Input::Join(request) => self.join(request),
            Input::Sync(request) => self.sync(request),
            Input::Heartbeat(request) => self.heartbeat(request),
            Input::Leave(request) => self.leave(request),
            Input::OffsetCommit(request) => self.offset_commit(request),
            Input::PersistCompleted { store_id, error } => self.persist_completed(store_id, error),
            Input::Unload => self.unload(),
            Input::Tick => self.tick(),
        }
        self.check_invariants();
        std::mem::take(&mut self.outputs)
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    /// When the group entered its current state.
    pub fn state_since_ms(&self) -> i64 {
        self.state_since_ms
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader_id(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }

    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    /// The member's current assignment and the generation it was given in.
    pub fn assignment(&self, member_id: &str) -> Option<(Bytes, Option<i32>)> {
        self.members
            .get(member_id)
            .map(|m| (m.assignment.clone(), m.assignment_generation_id))
    }

    pub fn static_member_id(&self, group_instance_id: &str) -> Option<&str> {
        self.static_members
            .get(group_instance_id)
            .map(String::as_str)
    }

    /// Whether the member has a JoinGroup or SyncGroup parked.
    pub fn is_awaiting(&self, member_id: &str) -> bool {
        self.members
            .get(member_id)
            .is_some_and(|m| m.awaiting_join.is_some() || m.awaiting_sync.is_some())
    }

    pub fn session_timeout_ms(&self, member_id: &str) -> Option<i32> {
        self.members.get(member_id).map(|m| m.session_timeout_ms)
    }

    /// Every member as DescribeGroups reports it: its metadata for the selected protocol
    /// (empty while none is selected) and its current assignment (empty during a rebalance).
    pub fn describe_members(&self) -> Vec<MemberRecord> {
        let rebalancing = matches!(
            self.state,
            GroupState::PreparingRebalance | GroupState::CompletingRebalance
        );
        self.members
            .values()
            .map(|m| MemberRecord {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: match &self.protocol_name {
                    Some(p) if m.supports(p) => m.metadata(p),
                    _ => Bytes::new(),
                },
                assignment: if rebalancing {
                    Bytes::new()
                } else {
                    m.assignment.clone()
                },
            })
            .collect()
    }

    /// The earliest time a `Tick` has work to do.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.next_due().map(|(deadline_ms, _, _)| deadline_ms)
    }

    /// Kafka's `validateOffsetCommit`: may this member commit offsets for this generation?
    /// `transactional` is TxnOffsetCommit, which older clients send without a member id.
    pub fn validate_generation(
        &self,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
        transactional: bool,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            Err(ResponseError::CoordinatorNotAvailable)
        } else if generation_id < 0 && self.state == GroupState::Empty {
            // Admin clients and consumers without group management commit to empty groups.
            Ok(())
        } else if generation_id >= 0
            || member_id != UNKNOWN_MEMBER_ID
            || group_instance_id.is_some()
        {
            self.validate_current_member(member_id, group_instance_id)?;
            if generation_id != self.generation_id {
                return Err(ResponseError::IllegalGeneration);
            }
            Ok(())
        } else if !transactional && self.state != GroupState::Empty {
            Err(ResponseError::UnknownMemberId)
        } else {
            Ok(())
        }
    }

    /// DeleteGroups: only an Empty group can go; it becomes Dead.
    pub fn delete(&mut self) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Empty => {
                self.transition_to(GroupState::Dead);
                self.pending_members.clear();
                Ok(())
            }
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }

    // ---- JoinGroup ----

    fn join(&mut self, mut request: JoinRequest) {
        dedup_protocols(&mut request.protocols);
        if request.session_timeout_ms < self.config.min_session_timeout_ms
            || request.session_timeout_ms > self.config.max_session_timeout_ms
        {
            self.answer_join(
                request.request_id,
                JoinResponse::error(&request.member_id, ResponseError::InvalidSessionTimeout),
            );
            return;
        }
        if !self.accept_joining_member(&request.member_id) {
            let removed = self.remove(&request.member_id);
            assert!(removed.is_none_or(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none()));
            self.answer_join(
                request.request_id,
                JoinResponse::error(UNKNOWN_MEMBER_ID, ResponseError::GroupMaxSizeReached),
            );
        } else if request.member_id == UNKNOWN_MEMBER_ID {
            self.join_new_member(request);
        } else {
            self.join_current_member(request);
        }
        if self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join();
        }
    }

    /// Kafka's `acceptJoiningMember`: room for the member under `max_size`?
    fn accept_joining_member(&self, member_id: &str) -> bool {
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            // Counting members that rejoined lets the last ones to rejoin be turned away
            // when the group is over its size (say max_size was lowered).
            GroupState::PreparingRebalance => {
                self.members
                    .get(member_id)
                    .is_some_and(|m| m.awaiting_join.is_some())
                    || self.awaiting_join_count() < self.config.max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < self.config.max_size
            }
        }
    }

    fn join_new_member(&mut self, request: JoinRequest) {
        if self.state == GroupState::Dead {
            self.answer_join(
                request.request_id,
                JoinResponse::error(UNKNOWN_MEMBER_ID, ResponseError::CoordinatorNotAvailable),
            );
            return;
        }
        if !self.supports_protocols(&request.protocol_type, &request.protocols) {
            self.answer_join(
                request.request_id,
                JoinResponse::error(UNKNOWN_MEMBER_ID, ResponseError::InconsistentGroupProtocol),
            );
            return;
        }
        let prefix = request
            .group_instance_id
            .clone()
            .unwrap_or_else(|| request.client_id.clone());
        let new_member_id = self.generate_member_id(&prefix);
        match request.group_instance_id.clone() {
            Some(instance) => match self.static_members.get(&instance).cloned() {
                Some(old_member_id) => self.update_static_member_and_rebalance(
                    &instance,
                    &old_member_id,
                    &new_member_id,
                    request,
                ),
                None => self.add_member_and_rebalance(new_member_id, request),
            },
            None if request.require_known_member_id => {
                let deadline_ms = deadline_after(self.now_ms, request.session_timeout_ms);
                let previous = self
                    .pending_members
                    .insert(new_member_id.clone(), deadline_ms);
                assert!(previous.is_none() && !self.members.contains_key(&new_member_id));
                self.answer_join(
                    request.request_id,
                    JoinResponse::error(&new_member_id, ResponseError::MemberIdRequired),
                );
            }
            None => self.add_member_and_rebalance(new_member_id, request),
        }
    }

    fn join_current_member(&mut self, request: JoinRequest) {
        let member_id = request.member_id.clone();
        if self.state == GroupState::Dead {
            self.answer_join(
                request.request_id,
                JoinResponse::error(&member_id, ResponseError::CoordinatorNotAvailable),
            );
            return;
        }
        if !self.supports_protocols(&request.protocol_type, &request.protocols) {
            self.answer_join(
                request.request_id,
                JoinResponse::error(&member_id, ResponseError::InconsistentGroupProtocol),
            );
            return;
        }
        if self.pending_members.contains_key(&member_id) {
            if request.group_instance_id.is_some() {
                // Pending ids are only handed to dynamic members; Kafka fails this request
                // with an IllegalStateException, which clients see as UNKNOWN_SERVER_ERROR.
                self.answer_join(
                    request.request_id,
                    JoinResponse::error(&member_id, ResponseError::UnknownServerError),
                );
                return;
            }
            self.add_member_and_rebalance(member_id, request);
            return;
        }
        if let Err(error) =
            self.validate_current_member(&member_id, request.group_instance_id.as_deref())
        {
            self.answer_join(request.request_id, JoinResponse::error(&member_id, error));
            return;
        }
        let member = &self.members[&member_id];
        let matches = member.matches(&request.protocols);
        let is_leader = self.is_leader(&member_id);
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(request),
            GroupState::CompletingRebalance if matches => {
                // It probably missed its JoinGroup response: send this generation's again.
                let members = if is_leader {
                    self.current_member_metadata()
                } else {
                    Vec::new()
                };
                let response = self.join_success(&member_id, members, false);
                self.answer_join(request.request_id, response);
            }
            GroupState::CompletingRebalance => self.update_member_and_rebalance(request),
            // The leader rejoining forces a rebalance: that is how it reacts to changes
            // (topic metadata) that do not change any member's metadata.
            GroupState::Stable if is_leader || !matches => {
                self.update_member_and_rebalance(request)
            }
            GroupState::Stable => {
                let response = self.join_success(&member_id, Vec::new(), false);
                self.answer_join(request.request_id, response);
            }
            GroupState::Empty | GroupState::Dead => self.answer_join(
                request.request_id,
                JoinResponse::error(&member_id, ResponseError::UnknownMemberId),
            ),
        }
    }

    fn add_member_and_rebalance(&mut self, member_id: String, request: JoinRequest) {
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            session_timeout_ms: request.session_timeout_ms,
            protocol_type: request.protocol_type,
            protocols: request.protocols,
            assignment: Bytes::new(),
            assignment_generation_id: None,
            awaiting_join: Some(request.request_id),
            awaiting_sync: None,
            is_new: true,
            heartbeat_deadline_ms: None,
        };
        if self.state == GroupState::PreparingRebalance && self.generation_id == 0 {
            self.new_member_added = true;
        }
        self.add(member);
        // A new member cannot heartbeat while its JoinGroup is parked, and a client that
        // gave up on it may retry under another id: bound how long it may wait.
        let timeout_ms = self.config.new_member_join_timeout_ms;
        self.schedule_heartbeat_in(&member_id, timeout_ms);
        self.maybe_prepare_rebalance();
    }

    fn add(&mut self, member: Member) {
        if let Some(instance) = &member.group_instance_id {
            let previous = self
                .static_members
                .insert(instance.clone(), member.member_id.clone());
            assert!(previous.is_none(), "a static member is added once");
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        assert_eq!(
            self.protocol_type.as_deref(),
            Some(member.protocol_type.as_str())
        );
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        self.pending_members.remove(&member.member_id);
        let previous = self.members.insert(member.member_id.clone(), member);
        assert!(previous.is_none(), "a member is added once");
    }

    /// Kafka's `GroupMetadata.remove`: no rebalance, no answers.
    fn remove(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.remove(member_id);
        if let Some(instance) = removed.as_ref().and_then(|m| m.group_instance_id.as_ref()) {
            self.static_members.remove(instance);
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_members.remove(member_id);
        self.pending_sync.remove(member_id);
        removed
    }

    /// Kafka's `updateMember`: new protocols and timeouts, and the parked JoinGroup is now
    /// `request_id`. Returns the JoinGroup that was parked before, if any.
    fn update_member(
        &mut self,
        member_id: &str,
        protocols: Vec<Protocol>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        request_id: Option<RequestId>,
    ) -> Option<RequestId> {
        let member = self.members.get_mut(member_id).expect("updating a member");
        member.protocols = protocols;
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        member.session_timeout_ms = session_timeout_ms;
        std::mem::replace(&mut member.awaiting_join, request_id)
    }

    fn update_member_and_rebalance(&mut self, request: JoinRequest) {
        let superseded = self.update_member(
            &request.member_id,
            request.protocols,
            request.rebalance_timeout_ms,
            request.session_timeout_ms,
            Some(request.request_id),
        );
        self.answer_superseded_join(superseded);
        self.maybe_prepare_rebalance();
    }

    /// Kafka drops a JoinGroup replaced by a newer one from the same member without an
    /// answer (its connection is usually gone); answering keeps "one answer per request".
    fn answer_superseded_join(&mut self, superseded: Option<RequestId>) {
        if let Some(request_id) = superseded {
            self.answer_join(
                request_id,
                JoinResponse::error(UNKNOWN_MEMBER_ID, ResponseError::RebalanceInProgress),
            );
        }
    }

    /// Kafka's `updateStaticMemberAndRebalance`: a static member rejoined with an empty
    /// member id (it restarted). It takes over under a new id; the old id is fenced.
    fn update_static_member_and_rebalance(
        &mut self,
        instance: &str,
        old_member_id: &str,
        new_member_id: &str,
        request: JoinRequest,
    ) {
        let leader_before = self.leader_id.clone();
        self.replace_static_member(instance, old_member_id, new_member_id);
        self.schedule_heartbeat(new_member_id);
        let member = &self.members[new_member_id];
        let old_protocols = member.protocols.clone();
        let old_rebalance_timeout_ms = member.rebalance_timeout_ms;
        let old_session_timeout_ms = member.session_timeout_ms;
        let superseded = self.update_member(
            new_member_id,
            request.protocols,
            request.rebalance_timeout_ms,
            request.session_timeout_ms,
            Some(request.request_id),
        );
        assert!(
            superseded.is_none(),
            "the replaced member's requests were fenced"
        );
        match self.state {
            GroupState::Stable => {
                if self.protocol_name.as_deref() == Some(self.select_protocol().as_str()) {
                    // Same protocol, so the current assignment still holds: no rebalance,
                    // only the new member id to persist before answering.
                    let record = self.record(|m| m.assignment.clone());
                    let store = Store::StaticMember {
                        request_id: request.request_id,
                        generation_id: self.generation_id,
                        group_instance_id: instance.to_string(),
                        old_member_id: old_member_id.to_string(),
                        new_member_id: new_member_id.to_string(),
                        old_protocols,
                        old_rebalance_timeout_ms,
                        old_session_timeout_ms,
                        leader_before,
                        supports_skip_assignment: request.supports_skip_assignment,
                    };
                    self.persist(record, store);
                } else {
                    self.maybe_prepare_rebalance();
                }
            }
            // The leader may already be assigning to the old member id: start over.
            GroupState::CompletingRebalance => self.prepare_rebalance(),
            GroupState::PreparingRebalance => {}
            GroupState::Empty | GroupState::Dead => {
                unreachable!("a group with a static member is neither Empty nor Dead")
            }
        }
    }

    /// Kafka's `replaceStaticMember`: the same member under `new_member_id`; whatever the
    /// old id has parked is answered FENCED_INSTANCE_ID.
    fn replace_static_member(&mut self, instance: &str, old_member_id: &str, new_member_id: &str) {
        let mut member = self
            .members
            .remove(old_member_id)
            .expect("replacing an existing member");
        assert_eq!(member.group_instance_id.as_deref(), Some(instance));
        if let Some(request_id) = member.awaiting_join.take() {
            self.answer_join(
                request_id,
                JoinResponse::error(old_member_id, ResponseError::FencedInstanceId),
            );
        }
        if let Some(request_id) = member.awaiting_sync.take() {
            self.answer_sync(
                request_id,
                SyncResponse::error(ResponseError::FencedInstanceId),
            );
        }
        member.member_id = new_member_id.to_string();
        let previous = self.members.insert(new_member_id.to_string(), member);
        assert!(previous.is_none());
        if self.is_leader(old_member_id) {
            self.leader_id = Some(new_member_id.to_string());
        }
        self.static_members
            .insert(instance.to_string(), new_member_id.to_string());
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty protocol list; else
    /// the type must match and one protocol must be supported by every member.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.values().all(|m| m.supports(&p.name)))
    }

    /// Kafka's `selectProtocol`: among the protocols every member supports, each member
    /// votes for its most preferred; most votes wins (a tie goes to the smaller name, where
    /// Kafka's choice depends on hash order).
    fn select_protocol(&self) -> String {
        assert!(!self.members.is_empty(), "an empty group has no protocol");
        let first = self.members.values().next().expect("non-empty");
        let candidates: BTreeSet<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            *votes.entry(member.vote(&candidates)).or_default() += 1;
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((name, count));
            }
        }
        best.expect("at least one vote").0.to_string()
    }

    fn generate_member_id(&mut self, prefix: &str) -> String {
        self.next_member_sequence += 1;
        format!(
            "{prefix}-{}-{}",
            self.member_id_epoch, self.next_member_sequence
        )
    }

    // ---- rebalancing ----

    fn maybe_prepare_rebalance(&mut self) {
        if GroupState::PreparingRebalance.may_follow(self.state) {
            self.prepare_rebalance();
        }
    }

    fn prepare_rebalance(&mut self) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_error(ResponseError::RebalanceInProgress);
        }
        self.pending_sync.clear();
        self.sync_timer = None;
        assert!(self.join_timer.is_none(), "one join phase at a time");
        let timer = if self.state == GroupState::Empty {
            let delay_ms = self.config.initial_rebalance_delay_ms;
            JoinTimer::InitialDelay {
                deadline_ms: deadline_after(self.now_ms, delay_ms),
                delay_ms,
                remaining_ms: (self.rebalance_timeout_ms() - delay_ms).max(0),
            }
        } else {
            JoinTimer::Rebalance {
                deadline_ms: deadline_after(self.now_ms, self.rebalance_timeout_ms()),
            }
        };
        self.transition_to(GroupState::PreparingRebalance);
        self.join_timer = Some(timer);
        self.maybe_complete_join();
    }

    /// The group's rebalance timeout: the largest of its members'.
    fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .fold(0, i32::max)
    }

    fn awaiting_join_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .count()
    }

    fn has_all_members_joined(&self) -> bool {
        self.members.values().all(|m| m.awaiting_join.is_some()) && self.pending_members.is_empty()
    }

    /// Kafka's `tryCompleteJoin`: the initial delay always runs its course. With no member
    /// left the rebalance timeout (the members' largest) is 0, and Kafka's timer fires at
    /// once: pending members (told MEMBER_ID_REQUIRED, not rejoined) do not hold it.
    fn maybe_complete_join(&mut self) {
        if self.state == GroupState::PreparingRebalance
            && matches!(self.join_timer, Some(JoinTimer::Rebalance { .. }))
            && (self.has_all_members_joined() || self.members.is_empty())
        {
            self.join_timer = None;
            self.complete_join();
        }
    }

    /// Kafka's `onCompleteJoin`: the join phase ends, by everyone rejoining or by the
    /// rebalance timeout.
    fn complete_join(&mut self) {
        assert_eq!(self.state, GroupState::PreparingRebalance);
        assert!(self.join_timer.is_none());
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in gone {
            let member = self.remove(&member_id).expect("a member");
            assert!(
                member.awaiting_sync.is_none(),
                "no SyncGroup waits during a join phase"
            );
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Only static members that have not rejoined are left: wait for them to rejoin
            // or for their sessions to expire.
            self.join_timer = Some(JoinTimer::Rebalance {
                deadline_ms: deadline_after(self.now_ms, self.rebalance_timeout_ms()),
            });
            return;
        }
        self.init_next_generation();
        if self.state == GroupState::Empty {
            let record = self.record(|_| Bytes::new());
            self.persist(record, Store::Emptied);
            return;
        }
        let leader_members = self.current_member_metadata();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in &ids {
            let members = if self.is_leader(member_id) {
                leader_members.clone()
            } else {
                Vec::new()
            };
            let response = self.join_success(member_id, members, false);
            let member = self.members.get_mut(member_id).expect("a member");
            // A static member that did not rejoin stays, unanswered; it must sync in time.
            if let Some(request_id) = member.awaiting_join.take() {
                self.answer_join(request_id, response);
            }
            self.schedule_heartbeat(member_id);
            self.members.get_mut(member_id).expect("a member").is_new = false;
            self.pending_sync.insert(member_id.clone());
        }
        self.sync_timer = Some(SyncTimer {
            generation_id: self.generation_id,
            deadline_ms: deadline_after(self.now_ms, self.rebalance_timeout_ms()),
        });
    }

    /// Kafka's `maybeElectNewJoinedLeader`: keep the leader if it rejoined, else take the
    /// first member (by id) that did. False if there is no leader or nobody rejoined.
    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        if self.members[&leader].awaiting_join.is_some() {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(joined) => {
                self.leader_id = Some(joined.member_id.clone());
                true
            }
            None => false,
        }
    }

    fn init_next_generation(&mut self) {
        self.generation_id = self
            .generation_id
            .checked_add(1)
            .expect("fewer than 2^31 generations");
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition_to(GroupState::Empty);
        } else {
            self.protocol_name = Some(self.select_protocol());
            self.transition_to(GroupState::CompletingRebalance);
        }
        self.pending_sync.clear();
    }

    fn current_member_metadata(&self) -> Vec<JoinMember> {
        assert!(matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable | GroupState::Empty
        ));
        let protocol = self.protocol_name.as_deref().expect("a selected protocol");
        self.members
            .values()
            .map(|m| JoinMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    fn join_success(&self, member_id: &str, members: Vec<JoinMember>, skip: bool) -> JoinResponse {
        JoinResponse {
            error: None,
            member_id: member_id.to_string(),
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone().unwrap_or_default(),
            skip_assignment: skip,
            members,
        }
    }

    fn transition_to(&mut self, state: GroupState) {
        assert!(
            state.may_follow(self.state),
            "group {}: {:?} cannot follow {:?}",
            self.group_id,
            state,
            self.state
        );
        self.state = state;
        self.state_since_ms = self.now_ms;
    }

    // ---- SyncGroup ----

    fn sync(&mut self, request: SyncRequest) {
        let member_id = request.member_id.clone();
        if let Err(error) = self.validate_sync(&request) {
            self.answer_sync(request.request_id, SyncResponse::error(error));
            return;
        }
        match self.state {
            GroupState::Empty => self.answer_sync(
                request.request_id,
                SyncResponse::error(ResponseError::UnknownMemberId),
            ),
            GroupState::PreparingRebalance => self.answer_sync(
                request.request_id,
                SyncResponse::error(ResponseError::RebalanceInProgress),
            ),
            GroupState::CompletingRebalance => {
                let member = self.members.get_mut(&member_id).expect("validated");
                if let Some(superseded) = member.awaiting_sync.replace(request.request_id) {
                    // As for JoinGroup: Kafka drops it unanswered; answering keeps the count.
                    self.answer_sync(
                        superseded,
                        SyncResponse::error(ResponseError::RebalanceInProgress),
                    );
                }
                self.remove_pending_sync(&member_id);
                if self.is_leader(&member_id) {
                    let mut assignment: BTreeMap<String, Bytes> =
                        request.assignments.into_iter().collect();
                    for id in self.members.keys() {
                        assignment.entry(id.clone()).or_default();
                    }
                    let record = self.record(|m| assignment[&m.member_id].clone());
                    let store = Store::Assignment {
                        generation_id: self.generation_id,
                        assignment,
                    };
                    self.persist(record, store);
                }
            }
            GroupState::Stable => {
                self.remove_pending_sync(&member_id);
                let assignment = self.members[&member_id].assignment.clone();
                let response = SyncResponse {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment,
                };
                self.answer_sync(request.request_id, response);
                self.schedule_heartbeat(&member_id);
            }
            GroupState::Dead => unreachable!("validate_sync refuses a Dead group"),
        }
    }

    fn validate_sync(&self, request: &SyncRequest) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        self.validate_current_member(&request.member_id, request.group_instance_id.as_deref())?;
        if request.generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        if request
            .protocol_type
            .as_ref()
            .is_some_and(|t| self.protocol_type.as_ref() != Some(t))
            || request
                .protocol_name
                .as_ref()
                .is_some_and(|n| self.protocol_name.as_ref() != Some(n))
        {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        Ok(())
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_timer = None;
        }
    }

    fn set_and_propagate_assignment(&mut self, assignment: &BTreeMap<String, Bytes>) {
        assert_eq!(self.state, GroupState::CompletingRebalance);
        let generation_id = self.generation_id;
        for member in self.members.values_mut() {
            member.assignment = assignment
                .get(&member.member_id)
                .cloned()
                .expect("the assignment covers every member of the generation");
            member.assignment_generation_id = Some(generation_id);
        }
        self.propagate_assignment(None);
    }

    fn reset_and_propagate_assignment_error(&mut self, error: ResponseError) {
        assert_eq!(self.state, GroupState::CompletingRebalance);
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
            member.assignment_generation_id = None;
        }
        self.propagate_assignment(Some(error));
    }

    fn propagate_assignment(&mut self, error: Option<ResponseError>) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in &ids {
            let member = self.members.get_mut(member_id).expect("a member");
            let Some(request_id) = member.awaiting_sync.take() else {
                continue;
            };
            let response = match error {
                None => SyncResponse {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                },
                Some(error) => SyncResponse::error(error),
            };
            self.answer_sync(request_id, response);
            // Its session may have lapsed while it waited; it starts afresh now.
            self.schedule_heartbeat(member_id);
        }
    }

    // ---- Heartbeat, LeaveGroup, OffsetCommit ----

    fn heartbeat(&mut self, request: HeartbeatRequest) {
        let error = self.heartbeat_error(&request);
        self.outputs.push(Output::Heartbeat {
            request_id: request.request_id,
            error,
        });
    }

    fn heartbeat_error(&mut self, request: &HeartbeatRequest) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(error) =
            self.validate_current_member(&request.member_id, request.group_instance_id.as_deref())
        {
            return Some(error);
        }
        if request.generation_id != self.generation_id {
            return Some(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty => Some(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.schedule_heartbeat(&request.member_id);
                None
            }
            GroupState::PreparingRebalance => {
                self.schedule_heartbeat(&request.member_id);
                Some(ResponseError::RebalanceInProgress)
            }
            GroupState::Dead => unreachable!("checked above"),
        }
    }

    fn leave(&mut self, request: LeaveRequest) {
        if self.state == GroupState::Dead {
            let response = LeaveResponse {
                error: Some(ResponseError::CoordinatorNotAvailable),
                members: Vec::new(),
            };
            self.outputs.push(Output::Leave {
                request_id: request.request_id,
                response,
            });
            return;
        }
        let mut members = Vec::with_capacity(request.members.len());
        for leaving in request.members {
            let error = self.leave_one(&leaving);
            members.push(LeaveMemberResponse {
                member_id: leaving.member_id,
                group_instance_id: leaving.group_instance_id,
                error,
            });
        }
        self.outputs.push(Output::Leave {
            request_id: request.request_id,
            response: LeaveResponse {
                error: None,
                members,
            },
        });
    }

    fn leave_one(&mut self, leaving: &LeavingMember) -> Option<ResponseError> {
        if leaving.member_id == UNKNOWN_MEMBER_ID {
            // Removal by group.instance.id alone (KIP-345's admin path).
            let current = leaving
                .group_instance_id
                .as_ref()
                .and_then(|instance| self.static_members.get(instance).cloned());
            return match current {
                Some(member_id) => {
                    self.remove_member_and_update_group(&member_id);
                    None
                }
                None => Some(ResponseError::UnknownMemberId),
            };
        }
        if self.pending_members.contains_key(&leaving.member_id) {
            self.remove(&leaving.member_id);
            if self.state == GroupState::PreparingRebalance {
                self.maybe_complete_join();
            }
            return None;
        }
        match self.validate_current_member(&leaving.member_id, leaving.group_instance_id.as_deref())
        {
            Ok(()) => {
                self.remove_member_and_update_group(&leaving.member_id);
                None
            }
            Err(error) => Some(error),
        }
    }

    fn offset_commit(&mut self, request: OffsetCommitRequest) {
        let result = self
            .validate_generation(
                &request.member_id,
                request.generation_id,
                request.group_instance_id.as_deref(),
                false,
            )
            .and_then(|()| match self.state {
                GroupState::Empty => Ok(()),
                // Commits go on during a rebalance; the heartbeat tells the member about it.
                GroupState::Stable | GroupState::PreparingRebalance => {
                    self.schedule_heartbeat(&request.member_id);
                    Ok(())
                }
                // It has this generation's JoinGroup answer but not its assignment yet.
                GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
                GroupState::Dead => unreachable!("validate_generation refuses a Dead group"),
            });
        self.outputs.push(Output::OffsetCommit {
            request_id: request.request_id,
            result,
        });
    }

    /// Kafka's `validateCurrentMember`: the instance id, if given, must map to this member
    /// id (else FENCED_INSTANCE_ID); the member must exist.
    fn validate_current_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = group_instance_id {
            return match self.static_members.get(instance) {
                Some(current) if current != member_id => Err(ResponseError::FencedInstanceId),
                Some(_) => Ok(()),
                None => Err(ResponseError::UnknownMemberId),
            };
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    /// Kafka's `removeMemberAndUpdateGroup`: a parked JoinGroup learns it is gone, and the
    /// group rebalances without it.
    fn remove_member_and_update_group(&mut self, member_id: &str) {
        let member = self.remove(member_id).expect("removing a member");
        if let Some(request_id) = member.awaiting_join {
            self.answer_join(
                request_id,
                JoinResponse::error(UNKNOWN_MEMBER_ID, ResponseError::UnknownMemberId),
            );
        }
        if let Some(request_id) = member.awaiting_sync {
            // Kafka leaves it unanswered; it can only be this member's other connection.
            self.answer_sync(
                request_id,
                SyncResponse::error(ResponseError::UnknownMemberId),
            );
        }
        match self.state {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => self.maybe_prepare_rebalance(),
            GroupState::PreparingRebalance => self.maybe_complete_join(),
        }
    }

    // ---- persistence ----

    fn persist(&mut self, record: GroupRecord, store: Store) {
        let store_id = self.next_store_id;
        self.next_store_id += 1;
        self.stores.insert(store_id, store);
        self.outputs.push(Output::Persist { store_id, record });
    }

    fn record(&self, assignment: impl Fn(&Member) -> Bytes) -> GroupRecord {
        let members = match self.protocol_name.as_deref() {
            None => {
                assert!(self.members.is_empty(), "members have a protocol");
                Vec::new()
            }
            Some(protocol) => self
                .members
                .values()
                .map(|m| MemberRecord {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(protocol),
                    assignment: assignment(m),
                })
                .collect(),
        };
        GroupRecord {
            protocol_type: self.protocol_type.clone(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_since_ms,
            members,
        }
    }

    fn persist_completed(&mut self, store_id: StoreId, error: Option<ResponseError>) {
        let Some(store) = self.stores.remove(&store_id) else {
            // Unknown or already completed: nothing waits on it.
            return;
        };
        match store {
            Store::Emptied => {}
            Store::Assignment {
                generation_id,
                assignment,
            } => {
                // The group may have moved on while the record was written.
                if self.state != GroupState::CompletingRebalance
                    || generation_id != self.generation_id
                {
                    return;
                }
                match error {
                    Some(error) => {
                        self.reset_and_propagate_assignment_error(error);
                        self.maybe_prepare_rebalance();
                    }
                    None => {
                        self.set_and_propagate_assignment(&assignment);
                        self.transition_to(GroupState::Stable);
                    }
                }
            }
            Store::StaticMember {
                request_id,
                generation_id,
                group_instance_id,
                old_member_id,
                new_member_id,
                old_protocols,
                old_rebalance_timeout_ms,
                old_session_timeout_ms,
                leader_before,
                supports_skip_assignment,
            } => {
                let still_parked = self
                    .members
                    .get(&new_member_id)
                    .is_some_and(|m| m.awaiting_join == Some(request_id));
                // Kafka reverts or answers whatever happened meanwhile; here only when the
                // member still waits on this very request in the same generation.
                if !still_parked || generation_id != self.generation_id {
                    return;
                }
                match error {
                    Some(error) => {
                        let parked = self.update_member(
                            &new_member_id,
                            old_protocols,
                            old_rebalance_timeout_ms,
                            old_session_timeout_ms,
                            None,
                        );
                        assert_eq!(parked, Some(request_id));
                        self.replace_static_member(
                            &group_instance_id,
                            &new_member_id,
                            &old_member_id,
                        );
                        self.schedule_heartbeat(&old_member_id);
                        let response = JoinResponse {
                            error: Some(error),
                            member_id: UNKNOWN_MEMBER_ID.to_string(),
                            generation_id: self.generation_id,
                            protocol_type: self.protocol_type.clone(),
                            protocol_name: self.protocol_name.clone(),
                            leader_id: leader_before.unwrap_or_default(),
                            skip_assignment: false,
                            members: Vec::new(),
                        };
                        self.answer_join(request_id, response);
                    }
                    // A rebalance started meanwhile: the parked join is part of it now.
                    None if self.state != GroupState::Stable => {}
                    None => {
                        let response = if supports_skip_assignment {
                            // v9+: the leader learns it leads but must not reassign.
                            let is_leader = self.is_leader(&new_member_id);
                            let members = if is_leader {
                                self.current_member_metadata()
                            } else {
                                Vec::new()
                            };
                            self.join_success(&new_member_id, members, is_leader)
                        } else {
                            // Older clients: name the old leader id so that a restarted
                            // leader does not assign (a Stable group would ignore it).
                            let mut response = self.join_success(&new_member_id, Vec::new(), false);
                            response.leader_id = leader_before.unwrap_or_default();
                            response
                        };
                        let member = self.members.get_mut(&new_member_id).expect("parked");
                        member.awaiting_join = None;
                        self.answer_join(request_id, response);
                        // Kafka would leave it without a session deadline if one lapsed
                        // while it waited; start one now.
                        self.schedule_heartbeat(&new_member_id);
                    }
                }
            }
        }
    }

    fn unload(&mut self) {
        if self.state == GroupState::Dead {
            return;
        }
        self.transition_to(GroupState::Dead);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in &ids {
            let member = self.members.get_mut(member_id).expect("a member");
            let join = member.awaiting_join.take();
            let sync = member.awaiting_sync.take();
            member.heartbeat_deadline_ms = None;
            if let Some(request_id) = join {
                self.answer_join(
                    request_id,
                    JoinResponse::error(member_id, ResponseError::NotCoordinator),
                );
            }
            if let Some(request_id) = sync {
                self.answer_sync(
                    request_id,
                    SyncResponse::error(ResponseError::NotCoordinator),
                );
            }
        }
        self.pending_members.clear();
        self.pending_sync.clear();
        self.join_timer = None;
        self.sync_timer = None;
        self.stores.clear();
    }

    // ---- time ----

    fn schedule_heartbeat(&mut self, member_id: &str) {
        let timeout_ms = self.members[member_id].session_timeout_ms;
        self.schedule_heartbeat_in(member_id, timeout_ms);
    }

    /// Kafka's `completeAndScheduleNextExpiration`: a member with a parked request is
    /// alive, so it gets no deadline until that request is answered.
    fn schedule_heartbeat_in(&mut self, member_id: &str, timeout_ms: i32) {
        let now_ms = self.now_ms;
        let member = self
            .members
            .get_mut(member_id)
            .expect("scheduling a member");
        member.heartbeat_deadline_ms = if member.has_satisfied_heartbeat() {
            None
        } else {
            Some(deadline_after(now_ms, timeout_ms))
        };
    }

    /// The earliest deadline, what it is for, and (heartbeat, pending) which member.
    fn next_due(&self) -> Option<(i64, Due, String)> {
        let join = self
            .join_timer
            .map(|t| (t.deadline_ms(), Due::Join, String::new()));
        let sync = self
            .sync_timer
            .map(|t| (t.deadline_ms, Due::Sync, String::new()));
        let heartbeat = self.members.values().filter_map(|m| {
            m.heartbeat_deadline_ms
                .map(|d| (d, Due::Heartbeat, m.member_id.clone()))
        });
        let pending = self
            .pending_members
            .iter()
            .map(|(id, d)| (*d, Due::Pending, id.clone()));
        join.into_iter()
            .chain(sync)
            .chain(heartbeat)
            .chain(pending)
            .min()
    }

    fn tick(&mut self) {
        // Deadlines set while firing lie after now (deadline_after), so each due timer fires
        // at most once per tick.
        let bound = self.members.len() + self.pending_members.len() + 2;
        let mut fired = 0;
        while let Some((deadline_ms, due, member_id)) = self.next_due() {
            if deadline_ms > self.now_ms {
                break;
            }
            fired += 1;
            assert!(fired <= bound, "a timer fired twice in one tick");
            match due {
                Due::Join => self.join_timer_expired(),
                Due::Sync => self.sync_timer_expired(),
                Due::Heartbeat => self.heartbeat_expired(&member_id),
                Due::Pending => {
                    // Kafka's pending-member expiration: it never rejoined with its id.
                    self.remove(&member_id);
                    if self.state == GroupState::PreparingRebalance {
                        self.maybe_complete_join();
                    }
                }
            }
        }
    }

    fn join_timer_expired(&mut self) {
        let timer = self.join_timer.take().expect("a join timer");
        match timer {
            JoinTimer::InitialDelay {
                delay_ms,
                remaining_ms,
                ..
            } if self.new_member_added && remaining_ms != 0 => {
                // Someone joined during the delay: wait another delay, within the timeout.
                self.new_member_added = false;
                let next_delay_ms = self.config.initial_rebalance_delay_ms.min(remaining_ms);
                self.join_timer = Some(JoinTimer::InitialDelay {
                    deadline_ms: deadline_after(self.now_ms, next_delay_ms),
                    delay_ms: next_delay_ms,
                    remaining_ms: (remaining_ms - delay_ms).max(0),
                });
            }
            _ => self.complete_join(),
        }
    }

    /// Kafka's `onExpirePendingSync`: members that never sent SyncGroup are removed.
    fn sync_timer_expired(&mut self) {
        let timer = self.sync_timer.take().expect("a sync timer");
        if timer.generation_id != self.generation_id
            || !matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            )
            || self.pending_sync.is_empty()
        {
            return;
        }
        let laggards: Vec<String> = std::mem::take(&mut self.pending_sync).into_iter().collect();
        for member_id in &laggards {
            if let Some(member) = self.remove(member_id) {
                assert!(member.awaiting_join.is_none() && member.awaiting_sync.is_none());
            }
        }
        self.prepare_rebalance();
    }

    /// Kafka's `onExpireHeartbeat`.
    fn heartbeat_expired(&mut self, member_id: &str) {
        let member = self
            .members
            .get_mut(member_id)
            .expect("a member with a deadline");
        if member.has_satisfied_heartbeat() {
            member.heartbeat_deadline_ms = None;
        } else {
            self.remove_member_and_update_group(member_id);
        }
    }

    // ---- helpers ----

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    fn answer_join(&mut self, request_id: RequestId, response: JoinResponse) {
        self.outputs.push(Output::Join {
            request_id,
            response,
        });
    }

    fn answer_sync(&mut self, request_id: RequestId, response: SyncResponse) {
        self.outputs.push(Output::Sync {
            request_id,
            response,
        });
    }

    fn check_invariants(&self) {
        assert_eq!(
            self.leader_id.is_some(),
            !self.members.is_empty(),
            "a group has a leader exactly when it has members"
        );
        if let Some(leader) = &self.leader_id {
            assert!(self.members.contains_key(leader), "the leader is a member");
        }
        for (instance, member_id) in &self.static_members {
            let member = &self.members[member_id];
            assert_eq!(member.group_instance_id.as_ref(), Some(instance));
        }
        for (member_id, member) in &self.members {
            assert_eq!(&member.member_id, member_id);
            assert!(!self.pending_members.contains_key(member_id));
            if let Some(instance) = &member.group_instance_id {
                assert_eq!(self.static_members.get(instance), Some(member_id));
            }
            if self.state != GroupState::Dead {
                assert!(
                    member.awaiting_join.is_some()
                        || member.awaiting_sync.is_some()
                        || member.heartbeat_deadline_ms.is_some(),
                    "a member that waits on nothing has a session deadline"
                );
            }
        }
        assert_eq!(
            self.join_timer.is_some(),
            self.state == GroupState::PreparingRebalance,
            "a join phase runs exactly in PreparingRebalance"
        );
        if self.sync_timer.is_some() {
            assert!(matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ));
        }
        match self.state {
            GroupState::Empty => {
                assert!(self.members.is_empty());
                assert!(self.protocol_name.is_none());
            }
            GroupState::PreparingRebalance => {
                assert!(self.members.values().all(|m| m.awaiting_sync.is_none()));
            }
            GroupState::CompletingRebalance => {
                assert!(self.generation_id > 0 && self.protocol_name.is_some());
                assert!(!self.members.is_empty());
                assert!(self.members.values().all(|m| m.awaiting_join.is_none()));
            }
            GroupState::Stable => {
                assert!(self.generation_id > 0 && self.protocol_name.is_some());
                assert!(!self.members.is_empty());
                for member in self.members.values() {
                    assert_eq!(
                        member.assignment_generation_id,
                        Some(self.generation_id),
                        "every member of a Stable group holds this generation's assignment"
                    );
                    assert!(member.awaiting_sync.is_none());
                }
            }
            GroupState::Dead => {}
        }
    }
}

/// `timeout_ms` after `now_ms`, but at least 1 ms later, so that a zero timeout cannot
/// make a timer fire again within the tick that set it.
fn deadline_after(now_ms: i64, timeout_ms: i32) -> i64 {
    now_ms.saturating_add(i64::from(timeout_ms.max(1)))
}

/// A protocol named twice counts once (the first), as Kafka's protocol set does.
fn dedup_protocols(protocols: &mut Vec<Protocol>) {
    let mut seen = BTreeSet::new();
    protocols.retain(|p| seen.insert(p.name.clone()));
}
