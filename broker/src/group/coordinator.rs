//! The group coordinator: one shard per partition of `__consumer_offsets`, each owning the
//! groups that hash to its partition, their committed offsets, and the state machines that
//! run their membership ([`super::membership::Group`]).
//!
//! Each shard is an actor of the shared shard runtime ([`crate::coordinator`]): every input
//! to a shard's groups runs as a job on it, in mailbox order, and every change is appended
//! to the shard's partition before it is acknowledged. A request the membership protocol
//! parks (JoinGroup, SyncGroup) leaves a oneshot waiter behind and ends its job; a later
//! input answers it. A shard replays its partition when it starts (and restarts), so
//! neither a broker restart nor a crashed shard loses a group or a committed offset.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use runnel_actors::Node;
use runnel_protocol::batch::build;
use runnel_protocol::batch::RecordBatch;
use runnel_storage::log::LogError;
use tokio::sync::oneshot;

use super::consumer_group::{
    self, ConsumerGroup, ConsumerGroupConfig, ConsumerGroupDescription, ConsumerGroupRecord,
    ConsumerGroupState, ConsumerHeartbeatRequest, ConsumerHeartbeatResponse, TopicInfo,
    TopicsImage,
};
use super::membership::{
    Group, GroupState, Input, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, MemberRecord,
    OffsetCommitRequest, Output, RequestId, SyncRequest, SyncResponse,
};
use super::records::{
    decode_group, decode_key, decode_offset, encode_group, encode_key, encode_offset,
    CommittedOffset, OffsetsKey,
};
use crate::coordinator::{BoxFuture, ShardRuntime, ShardState, ShardUnavailable};
use crate::metadata::MetadataImage;
use crate::partition::{AppendOutcome, PartitionError};
use crate::{now_ms, ApiError, Broker, MAX_CONNECTIONS};

/// The internal topic that holds groups and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offset.metadata.max.bytes` default: longer commit metadata is refused.
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;
/// Requests parked in one shard at once; a connection parks at most one, so this is
/// reached only by clients that reconnect faster than rebalances finish.
const MAX_PARKED_PER_SHARD: usize = MAX_CONNECTIONS;
/// Bytes read from a shard's partition per step while loading it.
const LOAD_READ_BYTES: usize = 4 << 20;

/// The partition of `__consumer_offsets` that owns `group_id`: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions`, so a group lands where Kafka would put it.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0);
    let hash = group_id.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    (hash & 0x7fff_ffff) % partitions
}

/// Group ids of the membership APIs: not empty, and short enough for Kafka's record keys.
/// A shard coordinates its groups on the broker that serves its partition; before
/// `__consumer_offsets` exists, every broker takes the request (and creates it).
/// Once it exists, the shard's partition must also be open here (the publisher opens it
/// just after the topic is created), or the shard's writes would have nowhere to go.
fn coordinates_here(broker: &Broker, index: i32) -> bool {
    let image = broker.image();
    match image.topics.get(OFFSETS_TOPIC) {
        Some(topic) => {
            image.leader_of(topic, index) == Some(broker.config.node_id)
                && broker.partition(OFFSETS_TOPIC, index).is_some()
        }
        None => true,
    }
}

pub fn check_group_id(group_id: &str) -> Result<(), ResponseError> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    check_offsets_group_id(group_id)
}

/// Group ids of the offset APIs, which Kafka lets be empty.
pub fn check_offsets_group_id(group_id: &str) -> Result<(), ResponseError> {
    if group_id.len() > i16::MAX as usize {
        return Err(ResponseError::InvalidGroupId);
    }
    Ok(())
}

/// One group as its shard keeps it: classic or KIP-848 membership (never both), or none
/// for a group that only has committed offsets (consumers that assign partitions
/// themselves).
#[derive(Debug, Default)]
pub struct GroupEntry {
    pub classic: Option<Group>,
    pub consumer: Option<ConsumerGroup>,
    /// The topics the consumer group was last told about.
    seen_topics: Option<Arc<TopicsImage>>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl GroupEntry {
    fn is_empty(&self) -> bool {
        let classic_empty = self
            .classic
            .as_ref()
            .is_none_or(|g| g.state() == GroupState::Empty);
        let consumer_empty = self
            .consumer
            .as_ref()
            .is_none_or(|g| g.state() == ConsumerGroupState::Empty);
        classic_empty && consumer_empty
    }
}

/// An answer to a parked request, from either protocol's state machine.
#[derive(Debug)]
enum Answer {
    Classic(Output),
    Consumer(ConsumerHeartbeatResponse),
}

/// What DescribeGroups and ListGroups report of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol_name: String,
    /// "classic" or "consumer" (ListGroups v5).
    pub group_type: &'static str,
    pub members: Vec<MemberRecord>,
}

/// One shard's groups: the state its actor owns (see [`crate::coordinator`]).
struct Shard {
    index: i32,
    groups: BTreeMap<String, GroupEntry>,
    /// Parked requests, answered by a later step; at most `MAX_PARKED_PER_SHARD`.
    waiters: HashMap<RequestId, oneshot::Sender<Answer>>,
}

impl ShardState for Shard {
    type Context = Broker;

    async fn load(broker: &Broker, index: i32) -> Result<Shard, String> {
        let mut shard = Shard {
            index,
            groups: BTreeMap::new(),
            waiters: HashMap::new(),
        };
        broker
            .groups
            .load_shard(broker, &mut shard)
            .await
            .map_err(|e| e.to_string())?;
        broker.groups.note_groups(&shard);
        Ok(shard)
    }
}

pub struct GroupCoordinator {
    partitions: i32,
    /// The shard actors, started once the broker exists (they hold it weakly).
    shards: OnceLock<ShardRuntime<Shard>>,
    /// The topics KIP-848 groups assign, rebuilt when the metadata image changes.
    topics: std::sync::Mutex<Option<(Arc<MetadataImage>, Arc<TopicsImage>)>>,
    next_request_id: AtomicU64,
    /// Member ids embed this, so that ids differ across restarts and group incarnations.
    next_member_id_epoch: AtomicU64,
    /// Per shard: it holds a group or a parked request, so its timers need stepping. Group
    /// timers skip the others instead of sending each of 50 shards a job 10 times a second.
    has_groups: Box<[AtomicBool]>,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupCoordinator({} shards)", self.partitions)
    }
}

/// What a shard's partition says, record by record, the last record of a key winning.
#[derive(Default)]
struct Replayed {
    offsets: BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>,
    classic: BTreeMap<String, Bytes>,
    consumer: BTreeMap<String, Bytes>,
    /// Records this broker cannot read, left out.
    skipped: usize,
}

impl Replayed {
    fn apply(&mut self, key: Option<&[u8]>, value: Option<Bytes>) {
        let key = match key.map(decode_key) {
            Some(Ok(key)) => key,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "skipping a record of __consumer_offsets");
                self.skipped += 1;
                return;
            }
            None => {
                self.skipped += 1;
                return;
            }
        };
        match key {
            OffsetsKey::Offset {
                group_id,
                topic,
                partition,
            } => {
                let group = self.offsets.entry(group_id).or_default();
                match value.as_deref().map(decode_offset) {
                    None => {
                        group.remove(&(topic, partition));
                    }
                    Some(Ok(committed)) => {
                        group.insert((topic, partition), committed);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "skipping a record of __consumer_offsets");
                        self.skipped += 1;
                    }
                }
            }
            OffsetsKey::ClassicGroup { group_id } => last_wins(&mut self.classic, group_id, value),
            OffsetsKey::ConsumerGroup { group_id } => {
                last_wins(&mut self.consumer, group_id, value)
            }
        }
    }
}

/// A value replaces the group's record; a tombstone removes it.
fn last_wins(records: &mut BTreeMap<String, Bytes>, group_id: String, value: Option<Bytes>) {
    match value {
        Some(value) => records.insert(group_id, value),
        None => records.remove(&group_id),
    };
}

fn storage_error(e: &PartitionError, for_offsets: bool) -> ResponseError {
    // Kafka's mapping of append errors in GroupMetadataManager.storeGroup/storeOffsets.
    match e {
        PartitionError::Log(LogError::BatchTooLarge { .. }) if for_offsets => {
            ResponseError::InvalidCommitOffsetSize
        }
        PartitionError::Log(LogError::BatchTooLarge { .. }) => ResponseError::UnknownServerError,
        _ => ResponseError::NotCoordinator,
    }
}

impl GroupCoordinator {
    /// A coordinator for `partitions` partitions of `__consumer_offsets`; its shards run
    /// once [`GroupCoordinator::start`] is called.
    pub fn new(partitions: i32, started_ms: i64) -> Self {
        assert!(partitions > 0);
        GroupCoordinator {
            partitions,
            shards: OnceLock::new(),
            topics: std::sync::Mutex::new(None),
            next_request_id: AtomicU64::new(0),
            next_member_id_epoch: AtomicU64::new(started_ms.max(0) as u64 * 1000),
            has_groups: (0..partitions).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Records whether `shard` needs its timers stepped; after every job on it.
    fn note_groups(&self, shard: &Shard) {
        let busy = !shard.groups.is_empty() || !shard.waiters.is_empty();
        if let Some(flag) = usize::try_from(shard.index)
            .ok()
            .and_then(|i| self.has_groups.get(i))
        {
            flag.store(busy, Ordering::Relaxed);
        }
    }

    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Starts one shard actor per partition on `node`; each replays its partition before
    /// its first input. Call once, after the broker is built.
    pub fn start(&self, node: &Node, broker: &Arc<Broker>) {
        let runtime = ShardRuntime::start(
            node,
            "group-coordinator",
            self.partitions,
            Arc::downgrade(broker),
            broker.config.fault_actor_crash_probability,
        );
        assert!(
            self.shards.set(runtime).is_ok(),
            "the group coordinator starts once"
        );
    }

    /// Waits until every shard has replayed its partition (a broker start).
    pub async fn loaded(&self) -> Result<(), ShardUnavailable> {
        for index in 0..self.partitions {
            self.runtime().run(index, |_, _| Box::pin(async {})).await?;
        }
        Ok(())
    }

    /// Fault injection: the shard that owns `group_id` panics, as a bug would make it; its
    /// supervisor restarts it and it reloads its groups from its partition.
    pub async fn inject_crash(&self, group_id: &str) {
        let crashed = self
            .on_shard(group_id, |_, shard| {
                Box::pin(async move {
                    panic!(
                        "coordinator shard {} crashed by fault injection",
                        shard.index
                    )
                })
            })
            .await;
        debug_assert!(crashed.is_err(), "the job panicked");
    }

    fn runtime(&self) -> &ShardRuntime<Shard> {
        self.shards
            .get()
            .expect("the broker starts the coordinator before it serves")
    }

    /// Runs `job` on the shard that owns `group_id`, in order with every other input to
    /// it; NOT_COORDINATOR if the shard failed meanwhile, so the client retries.
    async fn on_shard<R, F>(&self, group_id: &str, job: F) -> Result<R, ResponseError>
    where
        R: Send + 'static,
        F: for<'a> FnOnce(&'a Broker, &'a mut Shard) -> BoxFuture<'a, R> + Send + 'static,
    {
        self.runtime()
            .run(self.partition_for(group_id), move |broker, shard| {
                Box::pin(async move {
                    if !coordinates_here(broker, shard.index) {
                        return None;
                    }
                    let answer = job(broker, shard).await;
                    broker.groups.note_groups(shard);
                    Some(answer)
                })
            })
            .await
            .ok()
            .flatten()
            .ok_or(ResponseError::NotCoordinator)
    }

    pub fn partition_for(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.partitions())
    }

    fn member_id_epoch(&self) -> u64 {
        self.next_member_id_epoch.fetch_add(1, Ordering::Relaxed)
    }

    /// The cluster's topics as KIP-848 assignors see them (internal topics left out).
    fn topics(&self, broker: &Broker) -> Arc<TopicsImage> {
        let image = broker.image();
        let mut cache = self.topics.lock().expect("topics lock");
        if let Some((seen, topics)) = cache.as_ref() {
            if Arc::ptr_eq(seen, &image) {
                return topics.clone();
            }
        }
        let topics: Arc<TopicsImage> = Arc::new(
            image
                .topics
                .values()
                .filter(|t| t.name != OFFSETS_TOPIC)
                .map(|t| {
                    let info = TopicInfo {
                        topic_id: t.id,
                        partition_count: t.partitions,
                    };
                    (t.name.clone(), info)
                })
                .collect(),
        );
        *cache = Some((image, topics.clone()));
        topics
    }

    fn consumer_config(broker: &Broker) -> ConsumerGroupConfig {
        ConsumerGroupConfig {
            session_timeout_ms: broker.config.group_consumer_session_timeout_ms,
            heartbeat_interval_ms: broker.config.group_consumer_heartbeat_interval_ms,
            max_size: broker.config.group_consumer_max_size,
            ..ConsumerGroupConfig::default()
        }
    }

    /// Creates `__consumer_offsets` if it does not exist yet, as Kafka does on the first
    /// FindCoordinator for a group.
    pub async fn ensure_topic(&self, broker: &Broker) -> Result<(), ApiError> {
        if broker.image().topics.contains_key(OFFSETS_TOPIC) {
            return Ok(());
        }
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), (100 << 20).to_string()),
            ("compression.type".to_string(), "producer".to_string()),
        ]);
        match broker
            .create_topic(OFFSETS_TOPIC, self.partitions(), 1, None, configs, false)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == ResponseError::TopicAlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn load_shard(&self, broker: &Broker, shard: &mut Shard) -> Result<(), LogError> {
        let Some(partition) = broker.partition(OFFSETS_TOPIC, shard.index) else {
            return Ok(());
        };
        let mut replayed = Replayed::default();
        {
            let state = partition.view().await;
            let mut offset = state.log.log_start_offset();
            while offset < state.log.log_end_offset() {
                let batches = state.log.read_batches(offset, LOAD_READ_BYTES).await?;
                if batches.is_empty() {
                    break;
                }
                for batch in batches {
                    offset = batch.last_offset() + 1;
                    if batch.is_control() {
                        continue;
                    }
                    match batch.records() {
                        Ok(records) => {
                            for record in records {
                                replayed.apply(record.key.as_deref(), record.value);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(partition = shard.index, error = %e, "skipping an unreadable batch in __consumer_offsets");
                            replayed.skipped += 1;
                        }
                    }
                }
            }
        }
        let Replayed {
            offsets,
            classic,
            consumer,
            mut skipped,
        } = replayed;
        let now = now_ms();
        for (group_id, group_offsets) in offsets {
            if !group_offsets.is_empty() {
                shard.groups.entry(group_id).or_default().offsets = group_offsets;
            }
        }
        let mut outputs = Vec::new();
        for (group_id, value) in classic {
            let record = match decode_group(&value) {
                Ok(record) => record,
                Err(e) => {
                    tracing::warn!(group = %group_id, error = %e, "skipping an unreadable group");
                    skipped += 1;
                    continue;
                }
            };
            match Group::from_record(
                &group_id,
                broker.config.group.clone(),
                self.member_id_epoch(),
                now,
                record,
            ) {
                Ok((group, first)) => {
                    shard.groups.entry(group_id.clone()).or_default().classic = Some(group);
                    outputs.push((group_id, first));
                }
                Err(e) => {
                    tracing::warn!(group = %group_id, error = %e, "skipping an inconsistent group");
                    skipped += 1;
                }
            }
        }
        let topics = self.topics(broker);
        let mut consumer_outputs = Vec::new();
        for (group_id, value) in consumer {
            let record: ConsumerGroupRecord = match serde_json::from_slice(&value) {
                Ok(record) => record,
                Err(e) => {
                    tracing::warn!(group = %group_id, error = %e, "skipping an unreadable consumer group");
                    skipped += 1;
                    continue;
                }
            };
            if shard
                .groups
                .get(&group_id)
                .is_some_and(|e| e.classic.is_some())
            {
                tracing::warn!(group = %group_id, "a group recorded under both protocols; keeping the classic one");
                skipped += 1;
                continue;
            }
            match ConsumerGroup::from_record(
                &group_id,
                Self::consumer_config(broker),
                self.member_id_epoch(),
                now,
                topics.clone(),
                record,
            ) {
                Ok((group, first)) => {
                    let entry = shard.groups.entry(group_id.clone()).or_default();
                    entry.consumer = Some(group);
                    entry.seen_topics = Some(topics.clone());
                    consumer_outputs.push((group_id, first));
                }
                Err(e) => {
                    tracing::warn!(group = %group_id, error = %e, "skipping an inconsistent consumer group");
                    skipped += 1;
                }
            }
        }
        for (group_id, first) in outputs {
            self.carry_out(broker, shard, &group_id, first).await;
        }
        for (group_id, first) in consumer_outputs {
            self.carry_out_consumer(broker, shard, &group_id, first)
                .await;
        }
        if skipped > 0 {
            tracing::warn!(
                partition = shard.index,
                skipped,
                "__consumer_offsets held records this broker cannot read"
            );
        }
        tracing::debug!(
            partition = shard.index,
            groups = shard.groups.len(),
            "group coordinator loaded"
        );
        Ok(())
    }

    /// Appends records (a value of None is a tombstone) to the shard's partition.
    async fn write(
        broker: &Broker,
        shard: &Shard,
        records: &[(Bytes, Option<Bytes>)],
    ) -> Result<(), PartitionError> {
        assert!(!records.is_empty());
        let partition = broker
            .partition(OFFSETS_TOPIC, shard.index)
            .ok_or_else(|| {
                PartitionError::Log(LogError::Corrupt(format!(
                    "{OFFSETS_TOPIC}-{} does not exist",
                    shard.index
                )))
            })?;
        let now = now_ms();
        let built: Vec<build::Record<'_>> = records
            .iter()
            .map(|(key, value)| build::Record {
                key: Some(key),
                value: value.as_deref(),
                timestamp_delta: 0,
            })
            .collect();
        let batch: RecordBatch = build::batch(now, &built);
        match partition.append(vec![batch], 0, now).await? {
            AppendOutcome::Appended { .. } => {}
            other => unreachable!("a batch without a producer id is always appended: {other:?}"),
        }
        Ok(())
    }

    /// Carries out a group's outputs: persists records (stepping the group with each
    /// completion) and hands answers to their waiters.
    async fn carry_out(
        &self,
        broker: &Broker,
        shard: &mut Shard,
        group_id: &str,
        outputs: Vec<Output>,
    ) {
        let mut queue: VecDeque<Output> = outputs.into();
        while let Some(output) = queue.pop_front() {
            let request_id = match &output {
                Output::Persist { store_id, record } => {
                    let key = encode_key(&OffsetsKey::ClassicGroup {
                        group_id: group_id.to_string(),
                    });
                    let written = Self::write(broker, shard, &[(key, Some(encode_group(record)))])
                        .await
                        .map_err(|e| storage_error(&e, false));
                    let Some(group) = shard
                        .groups
                        .get_mut(group_id)
                        .and_then(|e| e.classic.as_mut())
                    else {
                        continue;
                    };
                    queue.extend(group.step(
                        now_ms(),
                        Input::PersistCompleted {
                            store_id: *store_id,
                            error: written.err(),
                        },
                    ));
                    continue;
                }
                Output::Join { request_id, .. }
                | Output::Sync { request_id, .. }
                | Output::Heartbeat { request_id, .. }
                | Output::Leave { request_id, .. }
                | Output::OffsetCommit { request_id, .. } => *request_id,
            };
            if let Some(waiter) = shard.waiters.remove(&request_id) {
                // The client may have gone; its answer then has nowhere to go.
                let _ = waiter.send(Answer::Classic(output));
            }
        }
    }

    /// `carry_out` for a KIP-848 group.
    async fn carry_out_consumer(
        &self,
        broker: &Broker,
        shard: &mut Shard,
        group_id: &str,
        outputs: Vec<consumer_group::Output>,
    ) {
        let mut queue: VecDeque<consumer_group::Output> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                consumer_group::Output::Persist { store_id, record } => {
                    let key = encode_key(&OffsetsKey::ConsumerGroup {
                        group_id: group_id.to_string(),
                    });
                    let value =
                        serde_json::to_vec(&record).expect("a group record serializes to JSON");
                    let written = Self::write(broker, shard, &[(key, Some(Bytes::from(value)))])
                        .await
                        .map_err(|e| storage_error(&e, false));
                    let Some(group) = shard
                        .groups
                        .get_mut(group_id)
                        .and_then(|e| e.consumer.as_mut())
                    else {
                        continue;
                    };
                    queue.extend(group.step(
                        now_ms(),
                        consumer_group::Input::PersistCompleted {
                            store_id,
                            error: written.err(),
                        },
                    ));
                }
                consumer_group::Output::Heartbeat {
                    request_id,
                    response,
                } => {
                    if let Some(waiter) = shard.waiters.remove(&request_id) {
                        let _ = waiter.send(Answer::Consumer(response));
                    }
                }
            }
        }
    }

    /// Tells a consumer group about changed topics (a new topic it subscribes to, more
    /// partitions, a deletion).
    async fn refresh_topics(
        &self,
        broker: &Broker,
        shard: &mut Shard,
        group_id: &str,
        topics: &Arc<TopicsImage>,
    ) {
        let Some(entry) = shard.groups.get_mut(group_id) else {
            return;
        };
        let Some(group) = entry.consumer.as_mut() else {
            return;
        };
        if entry
            .seen_topics
            .as_ref()
            .is_some_and(|seen| Arc::ptr_eq(seen, topics))
        {
            return;
        }
        entry.seen_topics = Some(topics.clone());
        let outputs = group.step(
            now_ms(),
            consumer_group::Input::MetadataChanged(topics.clone()),
        );
        self.carry_out_consumer(broker, shard, group_id, outputs)
            .await;
    }

    /// ConsumerGroupHeartbeat (KIP-848): joins, heartbeats, acknowledges revocations and
    /// leaves. The answer waits until the group's new state is durable.
    pub async fn consumer_heartbeat(
        &self,
        broker: &Broker,
        request: ConsumerHeartbeatRequest,
    ) -> ConsumerHeartbeatResponse {
        let refuse = |error: ResponseError, message: String| ConsumerHeartbeatResponse {
            error: Some(error),
            error_message: Some(message),
            member_id: None,
            member_epoch: 0,
            heartbeat_interval_ms: 0,
            assignment: None,
        };
        let group_id = request.group_id.clone();
        let topics = self.topics(broker);
        let (tx, rx) = oneshot::channel();
        let parked = self
            .on_shard(&group_id.clone(), move |broker, shard| {
                Box::pin(async move {
                    broker
                        .groups
                        .park_consumer_heartbeat(broker, shard, group_id, topics, request, tx)
                        .await
                })
            })
            .await;
        match parked {
            Ok(Ok(())) => {}
            Ok(Err(refused)) => return refused,
            Err(error) => return refuse(error, "the coordinator shard failed".to_string()),
        }
        match rx.await {
            Ok(Answer::Consumer(response)) => response,
            Ok(other) => unreachable!("a consumer heartbeat is answered by one: {other:?}"),
            Err(_) => refuse(
                ResponseError::NotCoordinator,
                "the group was unloaded".to_string(),
            ),
        }
    }

    /// The part of a consumer heartbeat that runs on its shard: steps the group and
    /// leaves `tx` to be answered when the group's new state is durable.
    async fn park_consumer_heartbeat(
        &self,
        broker: &Broker,
        shard: &mut Shard,
        group_id: String,
        topics: Arc<TopicsImage>,
        request: ConsumerHeartbeatRequest,
        tx: oneshot::Sender<Answer>,
    ) -> Result<(), ConsumerHeartbeatResponse> {
        let refuse = |error: ResponseError, message: String| ConsumerHeartbeatResponse {
            error: Some(error),
            error_message: Some(message),
            member_id: None,
            member_epoch: 0,
            heartbeat_interval_ms: 0,
            assignment: None,
        };
        {
            let entry = shard.groups.get(&group_id);
            if let Some(classic) = entry.and_then(|e| e.classic.as_ref()) {
                if classic.state() != GroupState::Empty {
                    return Err(refuse(
                        ResponseError::GroupIdNotFound,
                        format!("group {group_id} is a classic group with members; it cannot use the consumer protocol until it is empty"),
                    ));
                }
            }
            if entry.and_then(|e| e.consumer.as_ref()).is_none() {
                if request.member_epoch != consumer_group::JOIN_GROUP_MEMBER_EPOCH {
                    return Err(refuse(
                        ResponseError::GroupIdNotFound,
                        format!("group {group_id} does not exist"),
                    ));
                }
                if entry.is_some_and(|e| e.classic.is_some()) {
                    // An empty classic group becomes a consumer group; its offsets stay.
                    let key = encode_key(&OffsetsKey::ClassicGroup {
                        group_id: group_id.clone(),
                    });
                    if let Err(e) = Self::write(broker, shard, &[(key, None)]).await {
                        let error = storage_error(&e, false);
                        return Err(refuse(error, e.to_string()));
                    }
                }
                let group = ConsumerGroup::new(
                    &group_id,
                    Self::consumer_config(broker),
                    self.member_id_epoch(),
                    now_ms(),
                );
                let entry = shard.groups.entry(group_id.clone()).or_default();
                entry.classic = None;
                entry.consumer = Some(group);
                entry.seen_topics = None;
            }
            self.refresh_topics(broker, shard, &group_id, &topics).await;
            shard.waiters.retain(|_, waiter| !waiter.is_closed());
            if shard.waiters.len() >= MAX_PARKED_PER_SHARD {
                return Err(refuse(
                    ResponseError::CoordinatorNotAvailable,
                    "too many requests are waiting on this coordinator".to_string(),
                ));
            }
            let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
            shard.waiters.insert(request_id, tx);
            let group = shard
                .groups
                .get_mut(&group_id)
                .and_then(|e| e.consumer.as_mut())
                .expect("made above");
            let outputs = group.step(
                now_ms(),
                consumer_group::Input::Heartbeat(ConsumerHeartbeatRequest {
                    request_id,
                    ..request
                }),
            );
            self.carry_out_consumer(broker, shard, &group_id, outputs)
                .await;
        }
        Ok(())
    }

    /// ConsumerGroupDescribe: a KIP-848 group, or GROUP_ID_NOT_FOUND (also for classic
    /// groups, which clients then describe with DescribeGroups).
    pub async fn describe_consumer(
        &self,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, ResponseError> {
        let id = group_id.to_string();
        self.on_shard(group_id, move |_, shard| {
            Box::pin(async move {
                shard
                    .groups
                    .get(&id)
                    .and_then(|e| e.consumer.as_ref())
                    .map(ConsumerGroup::describe)
                    .ok_or(ResponseError::GroupIdNotFound)
            })
        })
        .await?
    }

    /// OffsetFetch v9+ names the member asking; members of KIP-848 groups are checked.
    pub async fn validate_offset_fetch(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        let (id, member_id) = (group_id.to_string(), member_id.map(str::to_string));
        self.on_shard(group_id, move |_, shard| {
            Box::pin(async move {
                match shard.groups.get(&id).and_then(|e| e.consumer.as_ref()) {
                    Some(group) => group.validate_offset_fetch(member_id.as_deref(), member_epoch),
                    None => Ok(()),
                }
            })
        })
        .await?
    }

    /// Steps a classic group with a request and waits for its answer, which may come from
    /// a later step. `create` makes the group if it does not exist; otherwise a missing
    /// group is UNKNOWN_MEMBER_ID, as in Kafka. A consumer-protocol group refuses classic
    /// requests with INCONSISTENT_GROUP_PROTOCOL.
    async fn ask_classic(
        &self,
        group_id: &str,
        create: bool,
        input: impl FnOnce(RequestId) -> Input + Send + 'static,
    ) -> Result<Output, ResponseError> {
        let (tx, rx) = oneshot::channel();
        let id = group_id.to_string();
        self.on_shard(group_id, move |broker, shard| {
            Box::pin(async move {
                broker
                    .groups
                    .park_classic(broker, shard, &id, create, input, tx)
                    .await
            })
        })
        .await??;
        // A dropped waiter means the group was unloaded or deleted with the request parked.
        match rx.await {
            Ok(Answer::Classic(output)) => Ok(output),
            Ok(other) => {
                unreachable!("a classic request is answered by a classic group: {other:?}")
            }
            Err(_) => Err(ResponseError::NotCoordinator),
        }
    }

    /// The part of a classic request that runs on its shard: steps the group and leaves
    /// `tx` to be answered, now or by a later step.
    async fn park_classic(
        &self,
        broker: &Broker,
        shard: &mut Shard,
        group_id: &str,
        create: bool,
        input: impl FnOnce(RequestId) -> Input,
        tx: oneshot::Sender<Answer>,
    ) -> Result<(), ResponseError> {
        {
            if shard
                .groups
                .get(group_id)
                .is_some_and(|e| e.consumer.is_some())
            {
                // Kafka: classic members cannot join a consumer-protocol group.
                return Err(ResponseError::InconsistentGroupProtocol);
            }
            let exists = shard
                .groups
                .get(group_id)
                .is_some_and(|e| e.classic.is_some());
            if !exists {
                if !create {
                    return Err(ResponseError::UnknownMemberId);
                }
                let group = Group::new(
                    group_id,
                    broker.config.group.clone(),
                    self.member_id_epoch(),
                    now_ms(),
                );
                shard
                    .groups
                    .entry(group_id.to_string())
                    .or_default()
                    .classic = Some(group);
            }
            // Answers for clients that went away are dropped here, keeping the bound honest.
            shard.waiters.retain(|_, waiter| !waiter.is_closed());
            if shard.waiters.len() >= MAX_PARKED_PER_SHARD {
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
            shard.waiters.insert(request_id, tx);
            let group = shard
                .groups
                .get_mut(group_id)
                .and_then(|e| e.classic.as_mut())
                .expect("made above");
            let outputs = group.step(now_ms(), input(request_id));
            self.carry_out(broker, shard, group_id, outputs).await;
        }
        Ok(())
    }

    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinResponse {
        let member_id = request.member_id.clone();
        // Kafka: a non-empty member id for a group that does not exist is unknown.
        let create = member_id.is_empty();
        let answer = self
            .ask_classic(group_id, create, move |request_id| {
                Input::Join(JoinRequest {
                    request_id,
                    ..request
                })
            })
            .await;
        match answer {
            Ok(Output::Join { response, .. }) => response,
            Ok(other) => unreachable!("a join is answered by a join: {other:?}"),
            Err(error) => error_join(&member_id, error),
        }
    }

    pub async fn sync(&self, group_id: &str, request: SyncRequest) -> SyncResponse {
        match self
            .ask_classic(group_id, false, move |request_id| {
                Input::Sync(SyncRequest {
                    request_id,
                    ..request
                })
            })
            .await
        {
            Ok(Output::Sync { response, .. }) => response,
            Ok(other) => unreachable!("a sync is answered by a sync: {other:?}"),
            Err(error) => SyncResponse {
                error: Some(error),
                protocol_type: None,
                protocol_name: None,
                assignment: Bytes::new(),
            },
        }
    }

    pub async fn heartbeat(
        &self,
        group_id: &str,
        member_id: String,
        group_instance_id: Option<String>,
        generation_id: i32,
    ) -> Option<ResponseError> {
        match self
            .ask_classic(group_id, false, move |request_id| {
                Input::Heartbeat(super::membership::HeartbeatRequest {
                    request_id,
                    member_id,
                    group_instance_id,
                    generation_id,
                })
            })
            .await
        {
            Ok(Output::Heartbeat { error, .. }) => error,
            Ok(other) => unreachable!("a heartbeat is answered by a heartbeat: {other:?}"),
            Err(error) => Some(error),
        }
    }

    pub async fn leave(&self, group_id: &str, request: LeaveRequest) -> LeaveResponse {
        match self
            .ask_classic(group_id, false, move |request_id| {
                Input::Leave(LeaveRequest {
                    request_id,
                    ..request
                })
            })
            .await
        {
            Ok(Output::Leave { response, .. }) => response,
            Ok(other) => unreachable!("a leave is answered by a leave: {other:?}"),
            Err(error) => LeaveResponse {
                error: Some(error),
                members: Vec::new(),
            },
        }
    }

    /// OffsetCommit for one group: checks the member's generation, then makes the offsets
    /// durable in one batch. Returns the group-level error, or one result per offset.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        member: OffsetCommitRequest,
        offsets: Vec<((String, i32), CommittedOffset)>,
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        let id = group_id.to_string();
        self.on_shard(group_id, move |broker, shard| {
            Box::pin(async move {
                broker
                    .groups
                    .commit_on_shard(broker, shard, &id, member, offsets)
                    .await
            })
        })
        .await?
    }

    async fn commit_on_shard(
        &self,
        broker: &Broker,
        shard: &mut Shard,
        group_id: &str,
        member: OffsetCommitRequest,
        offsets: Vec<((String, i32), CommittedOffset)>,
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        let generation_check = match shard.groups.get_mut(group_id) {
            Some(GroupEntry {
                consumer: Some(group),
                ..
            }) => group.validate_offset_commit(&member.member_id, member.generation_id),
            Some(GroupEntry {
                classic: Some(group),
                ..
            }) => {
                let outputs = group.step(now_ms(), Input::OffsetCommit(member.clone()));
                match outputs.as_slice() {
                    [Output::OffsetCommit { result, .. }] => *result,
                    other => unreachable!("a commit is answered at once: {other:?}"),
                }
            }
            // Kafka: only a commit without a generation may create a group.
            _ if member.generation_id >= 0 => Err(ResponseError::IllegalGeneration),
            _ => Ok(()),
        };
        generation_check?;
        let mut results = Vec::with_capacity(offsets.len());
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        let image = broker.image();
        for ((topic, partition), committed) in offsets {
            let known = image
                .topics
                .get(&topic)
                .is_some_and(|t| (0..t.partitions).contains(&partition));
            let result = if committed.metadata.len() > OFFSET_METADATA_MAX_BYTES {
                Err(ResponseError::OffsetMetadataTooLarge)
            } else if !known {
                Err(ResponseError::UnknownTopicOrPartition)
            } else {
                let key = encode_key(&OffsetsKey::Offset {
                    group_id: group_id.to_string(),
                    topic: topic.clone(),
                    partition,
                });
                records.push((key, Some(encode_offset(&committed))));
                accepted.push((results.len(), (topic, partition), committed));
                Ok(())
            };
            results.push(result);
        }
        if !records.is_empty() {
            if let Err(e) = Self::write(broker, shard, &records).await {
                let error = storage_error(&e, true);
                for (index, _, _) in &accepted {
                    results[*index] = Err(error);
                }
                return Ok(results);
            }
            let entry = shard.groups.entry(group_id.to_string()).or_default();
            for (_, tp, committed) in accepted {
                entry.offsets.insert(tp, committed);
            }
        }
        Ok(results)
    }

    /// OffsetFetch for one group: the committed offsets of `partitions`, or of every
    /// partition with one when `partitions` is None.
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<((String, i32), Option<CommittedOffset>)>, ResponseError> {
        let id = group_id.to_string();
        self.on_shard(group_id, move |_, shard| {
            Box::pin(async move {
                let offsets = shard.groups.get(&id).map(|e| &e.offsets);
                match partitions {
                    Some(partitions) => partitions
                        .into_iter()
                        .map(|tp| {
                            let committed = offsets.and_then(|o| o.get(&tp)).cloned();
                            (tp, committed)
                        })
                        .collect(),
                    None => offsets
                        .into_iter()
                        .flatten()
                        .map(|(tp, c)| (tp.clone(), Some(c.clone())))
                        .collect(),
                }
            })
        })
        .await
    }

    /// OffsetDelete: forgets committed offsets of topics the group does not consume.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        let id = group_id.to_string();
        self.on_shard(group_id, move |broker, shard| {
            Box::pin(
                async move { Self::delete_offsets_on_shard(broker, shard, &id, partitions).await },
            )
        })
        .await?
    }

    async fn delete_offsets_on_shard(
        broker: &Broker,
        shard: &mut Shard,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        let Some(entry) = shard.groups.get(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        if let Some(group) = &entry.classic {
            if !entry.is_empty() && group.protocol_type() != Some("consumer") {
                return Err(ResponseError::NonEmptyGroup);
            }
        }
        let subscribed = subscribed_topics(entry);
        let mut results = Vec::with_capacity(partitions.len());
        let mut records = Vec::new();
        let mut removed = Vec::new();
        for (topic, partition) in partitions {
            let consumed = match &subscribed {
                Some(topics) => topics.contains(&topic),
                // Unreadable subscriptions: assume the worst.
                None => !entry.is_empty(),
            };
            if consumed {
                results.push(Err(ResponseError::GroupSubscribedToTopic));
                continue;
            }
            results.push(Ok(()));
            if entry.offsets.contains_key(&(topic.clone(), partition)) {
                records.push((
                    encode_key(&OffsetsKey::Offset {
                        group_id: group_id.to_string(),
                        topic: topic.clone(),
                        partition,
                    }),
                    None,
                ));
                removed.push((topic, partition));
            }
        }
        if !records.is_empty() {
            Self::write(broker, shard, &records)
                .await
                .map_err(|e| storage_error(&e, true))?;
            let entry = shard.groups.get_mut(group_id).expect("checked above");
            for tp in removed {
                entry.offsets.remove(&tp);
            }
        }
        Ok(results)
    }

    /// DeleteGroups for one group: an empty group and its offsets go.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        let id = group_id.to_string();
        self.on_shard(group_id, move |broker, shard| {
            Box::pin(async move {
                // Kafka expires a member at its session deadline; here group timers fire on
                // the housekeeping tick (GROUP_TICK_INTERVAL_MS), so a DeleteGroups sent just
                // after the deadline (librdkafka's 0081 waits exactly the session timeout
                // after closing its static members) would still find the member. Fire what is
                // due first.
                let now = now_ms();
                let due = shard
                    .groups
                    .get_mut(&id)
                    .and_then(|e| e.classic.as_mut())
                    .filter(|g| g.next_deadline_ms().is_some_and(|d| d <= now))
                    .map(|g| g.step(now, Input::Tick));
                if let Some(outputs) = due {
                    broker.groups.carry_out(broker, shard, &id, outputs).await;
                }
                let Some(entry) = shard.groups.get(&id) else {
                    return Err(ResponseError::GroupIdNotFound);
                };
                if !entry.is_empty() {
                    return Err(ResponseError::NonEmptyGroup);
                }
                broker.groups.remove_group(broker, shard, &id).await
            })
        })
        .await?
    }

    async fn remove_group(
        &self,
        broker: &Broker,
        shard: &mut Shard,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        let entry = shard.groups.get(group_id).expect("the caller found it");
        let mut records: Vec<(Bytes, Option<Bytes>)> = entry
            .offsets
            .keys()
            .map(|(topic, partition)| {
                let key = encode_key(&OffsetsKey::Offset {
                    group_id: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                });
                (key, None)
            })
            .collect();
        records.push((
            encode_key(&OffsetsKey::ClassicGroup {
                group_id: group_id.to_string(),
            }),
            None,
        ));
        records.push((
            encode_key(&OffsetsKey::ConsumerGroup {
                group_id: group_id.to_string(),
            }),
            None,
        ));
        Self::write(broker, shard, &records)
            .await
            .map_err(|e| storage_error(&e, false))?;
        let mut entry = shard.groups.remove(group_id).expect("the caller found it");
        if let Some(group) = entry.classic.as_mut() {
            group.delete().expect("only empty groups are removed");
        }
        if let Some(group) = entry.consumer.as_mut() {
            group.delete().expect("only empty groups are removed");
        }
        Ok(())
    }

    pub async fn describe(&self, group_id: &str) -> Result<Option<GroupSummary>, ResponseError> {
        let id = group_id.to_string();
        self.on_shard(group_id, move |_, shard| {
            Box::pin(async move {
                // As in Kafka, DescribeGroups describes classic groups only.
                shard
                    .groups
                    .get(&id)
                    .filter(|e| e.consumer.is_none())
                    .map(|e| summary(&id, e))
            })
        })
        .await
    }

    /// Every group of every shard; shards that are not available are left out.
    pub async fn list(&self) -> Vec<GroupSummary> {
        let mut all = Vec::new();
        for index in 0..self.partitions {
            let listed = self
                .runtime()
                .run(index, |_, shard: &mut Shard| {
                    Box::pin(async move {
                        shard
                            .groups
                            .iter()
                            .map(|(id, e)| summary(id, e))
                            .collect::<Vec<_>>()
                    })
                })
                .await;
            match listed {
                Ok(groups) => all.extend(groups),
                Err(e) => tracing::warn!(error = %e, "ListGroups leaves a shard out"),
            }
        }
        all
    }

    /// Fires membership timers due at `now`, and expires the offsets of groups that have
    /// been empty for `offsets.retention.minutes` when `expire_offsets` is set.
    pub async fn tick(&self, broker: &Broker, now: i64, expire_offsets: bool) {
        let topics = self.topics(broker);
        for index in 0..self.partitions {
            let idle = usize::try_from(index)
                .ok()
                .and_then(|i| self.has_groups.get(i))
                .is_some_and(|flag| !flag.load(Ordering::Relaxed));
            if idle {
                continue;
            }
            let topics = topics.clone();
            let ticked = self
                .runtime()
                .run(index, move |broker, shard| {
                    Box::pin(async move {
                        broker
                            .groups
                            .tick_shard(broker, shard, &topics, now, expire_offsets)
                            .await;
                        broker.groups.note_groups(shard);
                    })
                })
                .await;
            if let Err(e) = ticked {
                tracing::debug!(error = %e, "group timers skip a shard");
            }
        }
    }

    async fn tick_shard(
        &self,
        broker: &Broker,
        shard: &mut Shard,
        topics: &Arc<TopicsImage>,
        now: i64,
        expire_offsets: bool,
    ) {
        {
            let consumers: Vec<String> = shard
                .groups
                .iter()
                .filter(|(_, e)| e.consumer.is_some())
                .map(|(id, _)| id.clone())
                .collect();
            for group_id in consumers {
                self.refresh_topics(broker, shard, &group_id, topics).await;
                let group = shard
                    .groups
                    .get_mut(&group_id)
                    .and_then(|e| e.consumer.as_mut())
                    .expect("listed above");
                if group.next_deadline_ms().is_some_and(|d| d <= now) {
                    let outputs = group.step(now, consumer_group::Input::Tick);
                    self.carry_out_consumer(broker, shard, &group_id, outputs)
                        .await;
                }
            }
            let due: Vec<String> = shard
                .groups
                .iter()
                .filter(|(_, e)| {
                    e.classic
                        .as_ref()
                        .and_then(Group::next_deadline_ms)
                        .is_some_and(|deadline| deadline <= now)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for group_id in due {
                let group = shard
                    .groups
                    .get_mut(&group_id)
                    .and_then(|e| e.classic.as_mut())
                    .expect("listed above");
                let outputs = group.step(now, Input::Tick);
                self.carry_out(broker, shard, &group_id, outputs).await;
            }
            if expire_offsets {
                self.expire_offsets(broker, shard, now).await;
            }
        }
    }

    /// Kafka's offset expiration (KIP-211): the offsets of an empty group expire
    /// `offsets.retention.minutes` after it became empty; offsets of a group without
    /// membership, that long after their commit. A group left with nothing is removed.
    async fn expire_offsets(&self, broker: &Broker, shard: &mut Shard, now_ms: i64) {
        let retention_ms = broker.config.offsets_retention_ms;
        let expired: Vec<String> = shard
            .groups
            .iter()
            .filter(|(_, e)| {
                if !e.is_empty() {
                    return false;
                }
                match &e.classic {
                    Some(group) => group.state_since_ms().saturating_add(retention_ms) <= now_ms,
                    // Offsets-only and empty consumer groups: when their last commit is old.
                    None => e
                        .offsets
                        .values()
                        .all(|c| c.commit_timestamp_ms.saturating_add(retention_ms) <= now_ms),
                }
            })
            .map(|(id, _)| id.clone())
            .collect();
        for group_id in expired {
            tracing::info!(group = %group_id, "removing an empty group whose offsets expired");
            if let Err(error) = self.remove_group(broker, shard, &group_id).await {
                tracing::warn!(group = %group_id, ?error, "cannot expire the group's offsets");
            }
        }
    }
}

fn error_join(member_id: &str, error: ResponseError) -> JoinResponse {
    JoinResponse {
        error: Some(error),
        member_id: member_id.to_string(),
        generation_id: super::membership::NO_GENERATION,
        protocol_type: None,
        protocol_name: None,
        leader_id: String::new(),
        skip_assignment: false,
        members: Vec::new(),
    }
}

fn summary(group_id: &str, entry: &GroupEntry) -> GroupSummary {
    if let Some(group) = &entry.consumer {
        return GroupSummary {
            group_id: group_id.to_string(),
            state: group.state().name().to_string(),
            protocol_type: consumer_group::PROTOCOL_TYPE.to_string(),
            protocol_name: group.assignor().name().to_string(),
            group_type: consumer_group::GROUP_TYPE,
            members: Vec::new(),
        };
    }
    match &entry.classic {
        Some(group) => GroupSummary {
            group_id: group_id.to_string(),
            state: group.state().name().to_string(),
            protocol_type: group.protocol_type().unwrap_or("").to_string(),
            protocol_name: group.protocol_name().unwrap_or("").to_string(),
            group_type: "classic",
            members: group.describe_members(),
        },
        // Offsets only: Kafka reports such a group as Empty with no protocol.
        None => GroupSummary {
            group_id: group_id.to_string(),
            state: GroupState::Empty.name().to_string(),
            protocol_type: String::new(),
            protocol_name: String::new(),
            group_type: "classic",
            members: Vec::new(),
        },
    }
}

/// The topics a consumer group's members subscribe to; None if some subscription cannot
/// be read.
fn subscribed_topics(entry: &GroupEntry) -> Option<BTreeSet<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut topics = BTreeSet::new();
    if let Some(group) = &entry.consumer {
        for member in group.describe().members {
            topics.extend(member.subscribed_topic_names);
        }
        return Some(topics);
    }
    let Some(group) = &entry.classic else {
        return Some(topics);
    };
    for member in group.describe_members() {
        let mut bytes = member.subscription.clone();
        if bytes.len() < 2 {
            return None;
        }
        let version = i16::from_be_bytes([bytes[0], bytes[1]]);
        let _ = bytes.split_to(2);
        // Later versions than we know add fields at the end; read them as the newest.
        let version = version.clamp(0, 3);
        let subscription = ConsumerProtocolSubscription::decode(&mut bytes, version).ok()?;
        topics.extend(subscription.topics.iter().map(|t| t.to_string()));
    }
    Some(topics)
}
