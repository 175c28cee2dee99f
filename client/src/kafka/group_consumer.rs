//! The group consumer: a member of a classic consumer group (Kafka's "consumer" protocol
//! type). It finds the group's coordinator, joins (JoinGroup, then SyncGroup with the
//! leader's assignment), heartbeats from a background task, starts each assigned partition
//! at the group's committed offset (or per `auto_offset_reset`), and commits positions
//! with its generation and member id.
//!
//! Rebalances are eager (the range and round-robin assignors): before rejoining, a member
//! commits (with auto commit) and gives up every partition. Joining is driven by `poll`;
//! JoinGroup and SyncGroup, which the coordinator parks until the whole group arrives, run
//! in their own task, so `poll` still returns at its timeout and the next `poll` goes on.
//!
//! Bounds: one coordinator connection with its in-flight window; one heartbeat in flight and
//! one JoinGroup or SyncGroup awaited at a time; records come only from `poll`, at most
//! `fetch_max_bytes` at a time. No OS threads, time only through `tokio::time`, so it runs
//! under madsim as well.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Request, StrBytes};
use runnel_protocol::kafka::{validate_topic_name, ResponseError};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::cluster::{Cluster, TopicPartition};
use super::conn::{Connection, ConnectionConfig};
use super::consumer::{Consumer, ConsumerConfig, ConsumerRecord};
use super::consumer_member::{Action, ConsumerMember, TopicIdPartition};
use super::coordinator::{
    self, is_retriable_at_coordinator, needs_new_coordinator, str_bytes, Committer,
};
use super::error::{check, KafkaError};
use super::group::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, Assignor,
    Member, Subscription, CONSUMER_PROTOCOL_TYPE,
};

/// Settings of a group consumer, with Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    /// Fetching, and `auto_offset_reset` for partitions the group never committed.
    pub consumer: ConsumerConfig,
    /// `group.id`
    pub group_id: String,
    /// `group.instance.id`: makes this a static member (KIP-345), which keeps its
    /// partitions across restarts within the session timeout and does not leave on close.
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms`: without a heartbeat for this long, the coordinator drops us.
    pub session_timeout_ms: i32,
    /// `heartbeat.interval.ms`
    pub heartbeat_interval_ms: u64,
    /// `max.poll.interval.ms`: the rebalance timeout, and how long the application may go
    /// between polls before this member leaves the group so the rest can move on.
    pub max_poll_interval_ms: i32,
    /// `enable.auto.commit`: commit positions every `auto_commit_interval_ms` from `poll`,
    /// before rebalances and on `close`.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`
    pub auto_commit_interval_ms: u64,
    /// `partition.assignment.strategy`, in order of preference (classic groups).
    pub assignors: Vec<Assignor>,
    /// `group.protocol`: classic (JoinGroup/SyncGroup) or consumer (KIP-848).
    pub group_protocol: GroupProtocol,
}

/// Kafka's `group.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    /// JoinGroup, SyncGroup and Heartbeat; the leader member assigns.
    Classic,
    /// KIP-848's ConsumerGroupHeartbeat; the coordinator assigns, and partitions move one
    /// by one (revoked before they are given to another member).
    Consumer,
}

impl GroupProtocol {
    pub fn parse(s: &str) -> Result<GroupProtocol, KafkaError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "classic" => Ok(GroupProtocol::Classic),
            "consumer" => Ok(GroupProtocol::Consumer),
            other => Err(KafkaError::Config(format!(
                "group.protocol {other:?} is not classic or consumer"
            ))),
        }
    }
}

impl GroupConsumerConfig {
    pub fn new(consumer: ConsumerConfig, group_id: impl Into<String>) -> Self {
        GroupConsumerConfig {
            consumer,
            group_id: group_id.into(),
            group_instance_id: None,
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            max_poll_interval_ms: 300_000,
            enable_auto_commit: true,
            auto_commit_interval_ms: 5_000,
            assignors: vec![Assignor::Range, Assignor::RoundRobin],
            group_protocol: GroupProtocol::Classic,
        }
    }

    fn validate(&self) -> Result<(), KafkaError> {
        let bad = |s: String| Err(KafkaError::Config(s));
        if self.group_id.is_empty() {
            return bad("group.id is empty; name the consumer group".into());
        }
        if self.assignors.is_empty() {
            return bad("partition.assignment.strategy is empty; use range or roundrobin".into());
        }
        if self.heartbeat_interval_ms == 0
            || self.heartbeat_interval_ms >= self.session_timeout_ms.max(0) as u64
        {
            return bad(format!(
                "heartbeat.interval.ms ({}) must be above 0 and below session.timeout.ms ({})",
                self.heartbeat_interval_ms, self.session_timeout_ms
            ));
        }
        if self.max_poll_interval_ms <= 0 {
            return bad("max.poll.interval.ms must be above 0".into());
        }
        if self.instance_id_is_empty() {
            return bad("group.instance.id is empty; leave it unset for a dynamic member".into());
        }
        Ok(())
    }

    fn instance_id_is_empty(&self) -> bool {
        self.group_instance_id.as_deref() == Some("")
    }
}

/// What the heartbeat task and the application's calls share about group membership.
struct Membership {
    /// "" until the coordinator gives one.
    member_id: String,
    /// -1 while not in a generation of the group.
    generation_id: i32,
    /// The group must be (re)joined before the next fetch.
    rejoin: bool,
    /// Why, for the log.
    rejoin_reason: &'static str,
    /// `None` until found, and again when it moved or the connection failed.
    coordinator: Option<Connection>,
    last_poll: Instant,
    closed: bool,
    /// An error the heartbeat saw that the application must hear (fenced instance id).
    fatal: Option<KafkaError>,
    /// KIP-848: the member's side of the protocol (`None` in classic groups).
    member: Option<ConsumerMember>,
    /// KIP-848: partitions to give up and to take, for the next `poll` to carry out.
    reconcile: Option<(Vec<TopicIdPartition>, Vec<TopicIdPartition>)>,
    /// KIP-848: the member was fenced; drop every partition without committing.
    lose_all: bool,
    /// KIP-848: the member left because `poll` was not called within max.poll.interval.ms;
    /// it rejoins at the next `poll`.
    left_for_poll: bool,
}

impl Membership {
    fn request_rejoin(&mut self, reason: &'static str) {
        self.rejoin = true;
        self.rejoin_reason = reason;
    }

    /// Applies what a coordinator error means to membership; true if it was a group error.
    fn absorb_error(&mut self, e: &KafkaError) -> bool {
        if needs_new_coordinator(e) {
            self.coordinator = None;
            return true;
        }
        match e.code() {
            Some(ResponseError::RebalanceInProgress) => {
                self.request_rejoin("the group is rebalancing");
            }
            Some(ResponseError::UnknownMemberId) => {
                self.member_id.clear();
                self.generation_id = -1;
                self.request_rejoin("the coordinator no longer knows this member");
            }
            Some(ResponseError::IllegalGeneration) => {
                self.generation_id = -1;
                self.request_rejoin("the group moved to a newer generation");
            }
            Some(ResponseError::FencedInstanceId) => {
                self.generation_id = -1;
                self.fatal = Some(e.clone());
            }
            _ => return false,
        }
        true
    }
}

struct Shared {
    membership: Mutex<Membership>,
    /// Wakes the KIP-848 heartbeat early (to join, acknowledge or leave). Its own `Arc`,
    /// so the heartbeat task can wait on it without keeping `Shared` alive.
    wake: Arc<Notify>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Membership> {
        // Every update leaves the membership consistent, so a panic elsewhere cannot
        // leave it half-written.
        self.membership.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A consumer in a consumer group. Not shared: `poll` and `commit` take `&mut self`.
pub struct GroupConsumer {
    consumer: Consumer,
    config: GroupConsumerConfig,
    /// Sorted, without duplicates.
    subscription: Vec<String>,
    shared: Arc<Shared>,
    /// The coordinator connection's settings: JoinGroup may wait a whole rebalance.
    coordinator_connection: ConnectionConfig,
    /// The JoinGroup or SyncGroup in flight, if any.
    pending: Option<PendingCall>,
    /// KIP-848: the id of each topic the consumer was given partitions of, as the
    /// coordinator named it (metadata caches expire; these must not).
    topic_ids: BTreeMap<String, u128>,
    /// Partitions whose committed offsets are still to be read before fetching.
    needs_committed: bool,
    next_auto_commit: Instant,
    /// As leader: the partition counts the assignment used, and when they were checked;
    /// a change (added partitions, a created topic) makes the leader rebalance.
    leader_view: Option<(BTreeMap<String, i32>, Instant)>,
}

impl GroupConsumer {
    pub async fn new(config: GroupConsumerConfig) -> Result<GroupConsumer, KafkaError> {
        config.validate()?;
        let cluster = Cluster::connect(config.consumer.client.clone()).await?;
        Self::with_cluster(config, cluster)
    }

    pub fn with_cluster(
        config: GroupConsumerConfig,
        cluster: Cluster,
    ) -> Result<GroupConsumer, KafkaError> {
        config.validate()?;
        let mut coordinator_connection = config.consumer.client.connection.clone();
        // Kafka's JoinGroup request timeout: the rebalance timeout plus a margin.
        coordinator_connection.request_timeout_ms = coordinator_connection
            .request_timeout_ms
            .max(config.max_poll_interval_ms as u64 + 5_000);
        let shared = Arc::new(Shared {
            membership: Mutex::new(Membership {
                member_id: String::new(),
                generation_id: -1,
                rejoin: true,
                rejoin_reason: "not joined yet",
                coordinator: None,
                last_poll: Instant::now(),
                closed: false,
                fatal: None,
                member: (config.group_protocol == GroupProtocol::Consumer).then(|| {
                    ConsumerMember::new(
                        &config.group_id,
                        config.group_instance_id.clone(),
                        config.max_poll_interval_ms,
                    )
                }),
                reconcile: None,
                lose_all: false,
                left_for_poll: false,
            }),
            wake: Arc::new(Notify::new()),
        });
        let settings = HeartbeatSettings {
            group_id: config.group_id.clone(),
            retry_backoff: Duration::from_millis(config.consumer.client.retry_backoff_ms.max(1)),
            group_instance_id: config.group_instance_id.clone(),
            interval: Duration::from_millis(config.heartbeat_interval_ms),
            request_timeout: Duration::from_millis(
                config.consumer.client.connection.request_timeout_ms,
            ),
            max_poll_interval: Duration::from_millis(config.max_poll_interval_ms as u64),
        };
        match config.group_protocol {
            GroupProtocol::Classic => {
                tokio::spawn(heartbeat_loop(Arc::downgrade(&shared), settings));
            }
            GroupProtocol::Consumer => {
                tokio::spawn(consumer_heartbeat_loop(
                    Arc::downgrade(&shared),
                    shared.wake.clone(),
                    settings,
                ));
            }
        }
        Ok(GroupConsumer {
            consumer: Consumer::with_cluster(config.consumer.clone(), cluster),
            next_auto_commit: Instant::now()
                + Duration::from_millis(config.auto_commit_interval_ms),
            config,
            subscription: Vec::new(),
            shared,
            coordinator_connection,
            pending: None,
            topic_ids: BTreeMap::new(),
            needs_committed: false,
            leader_view: None,
        })
    }

    pub fn cluster(&self) -> &Cluster {
        self.consumer.cluster()
    }

    pub fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// Subscribes to `topics`, replacing the previous subscription; the group rebalances
    /// at the next `poll` if it changed.
    pub fn subscribe<S: AsRef<str>>(&mut self, topics: &[S]) -> Result<(), KafkaError> {
        let mut wanted: Vec<String> = topics.iter().map(|t| t.as_ref().to_string()).collect();
        for t in &wanted {
            validate_topic_name(t).map_err(|e| KafkaError::Config(e.to_string()))?;
        }
        wanted.sort();
        wanted.dedup();
        if wanted != self.subscription {
            self.subscription = wanted;
            // A join in flight carries the old subscription: start over.
            self.pending = None;
            if let Some(member) = &mut self.shared.lock().member {
                member.subscribe(&self.subscription);
            }
            self.shared.wake.notify_one();
            self.shared
                .lock()
                .request_rejoin("the subscription changed");
        }
        Ok(())
    }

    pub fn subscription(&self) -> &[String] {
        &self.subscription
    }

    /// The partitions this member owns in the current generation.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer.assignment()
    }

    /// The member id the coordinator gave ("" before joining).
    pub fn member_id(&self) -> String {
        self.shared.lock().member_id.clone()
    }

    /// The group generation this member is in, or -1.
    pub fn generation_id(&self) -> i32 {
        self.shared.lock().generation_id
    }

    /// The next offset `poll` reads from `tp`, if known yet.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.consumer.position(tp)
    }

    /// Reads `tp` (an assigned partition) from `offset` next.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), KafkaError> {
        self.consumer.seek(tp, offset)
    }

    fn check_open(&self) -> Result<(), KafkaError> {
        if self.shared.lock().closed {
            return Err(KafkaError::Closed);
        }
        Ok(())
    }

    /// Joins or rejoins the group when needed, then fetches records of the assigned
    /// partitions, waiting up to `timeout` for some (empty while a rebalance is under way).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, KafkaError> {
        self.check_open()?;
        if self.subscription.is_empty() {
            return Err(KafkaError::Config(
                "this consumer subscribes to no topic; call subscribe first".into(),
            ));
        }
        let deadline = Instant::now() + timeout;
        {
            let mut m = self.shared.lock();
            m.last_poll = Instant::now();
            if std::mem::take(&mut m.left_for_poll) {
                // Back after too long a pause: the member rejoins now.
                self.shared.wake.notify_one();
            }
        }
        self.maybe_auto_commit().await;
        let chunk_limit = Duration::from_millis(self.config.heartbeat_interval_ms);
        loop {
            if !self.ensure_active(deadline).await? {
                return Ok(Vec::new());
            }
            self.maybe_check_partitions().await;
            // Fetch in slices no longer than a heartbeat interval, so a rebalance the
            // heartbeat learned about is joined soon.
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(chunk_limit);
            let records = self.consumer.poll(slice).await?;
            self.shared.lock().last_poll = Instant::now();
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Commits the position of every assigned partition (the offset after the last record
    /// `poll` returned), and waits for the coordinator's answer.
    pub async fn commit(&mut self) -> Result<(), KafkaError> {
        let offsets = self.positions();
        self.commit_offsets(&offsets).await
    }

    fn positions(&self) -> BTreeMap<TopicPartition, i64> {
        self.consumer
            .assignment()
            .into_iter()
            .filter_map(|tp| self.consumer.position(&tp).map(|p| (tp, p)))
            .collect()
    }

    /// Commits `offsets` (each the next offset to read) with this member's generation.
    /// Fails when the group rebalanced since; the next `poll` rejoins.
    pub async fn commit_offsets(
        &mut self,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), KafkaError> {
        self.check_open()?;
        if offsets.is_empty() {
            return Ok(());
        }
        let client = &self.config.consumer.client;
        let deadline = Instant::now() + Duration::from_millis(client.connection.request_timeout_ms);
        let backoff = Duration::from_millis(client.retry_backoff_ms.max(1));
        loop {
            let (conn, generation_id, member_id) = {
                let m = self.shared.lock();
                if m.generation_id < 0 {
                    return Err(KafkaError::broker(
                        ResponseError::RebalanceInProgress,
                        format!("commit offsets of group {:?}", self.config.group_id),
                        Some("this consumer is not in a generation of the group (it is joining or was removed); poll to rejoin, then commit again"),
                    ));
                }
                (m.coordinator.clone(), m.generation_id, m.member_id.clone())
            };
            let outcome = match conn {
                Some(conn) => {
                    let committer = Committer {
                        generation_id,
                        member_id: &member_id,
                        group_instance_id: self.config.group_instance_id.as_deref(),
                    };
                    let group = &self.config.group_id;
                    match coordinator::commit_offsets(&conn, group, &committer, offsets).await {
                        // Partitions fail alike (a rebalance, a moved coordinator): the
                        // first error stands for all.
                        Ok(results) => match results.into_values().find_map(Result::err) {
                            None => return Ok(()),
                            Some(e) => e,
                        },
                        Err(e) => e,
                    }
                }
                None => match self.find_coordinator().await {
                    Ok(()) => continue,
                    Err(e) => e,
                },
            };
            let e = outcome;
            let group_error = {
                let mut m = self.shared.lock();
                // A heartbeat may have moved the membership on meanwhile; apply only to ours.
                if m.generation_id == generation_id {
                    m.absorb_error(&e)
                } else {
                    false
                }
            };
            if is_retriable_at_coordinator(&e) && Instant::now() + backoff < deadline {
                tracing::debug!(error = %e, "commit failed; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
            if group_error {
                tracing::debug!(group = %self.config.group_id, error = %e, "commit failed: the group rebalanced");
            }
            return Err(e);
        }
    }

    async fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit || Instant::now() < self.next_auto_commit {
            return;
        }
        self.next_auto_commit =
            Instant::now() + Duration::from_millis(self.config.auto_commit_interval_ms);
        self.auto_commit("interval").await;
    }

    async fn auto_commit(&mut self, why: &str) {
        let active = {
            let m = self.shared.lock();
            m.generation_id >= 0 && !m.closed
        };
        if !active || self.needs_committed {
            return;
        }
        if let Err(e) = self.commit().await {
            tracing::warn!(group = %self.config.group_id, why, error = %e, "auto commit failed");
        }
    }

    /// Leaves the group (a dynamic member; a static one stays until its session times out,
    /// as Kafka's do), after committing with auto commit. The consumer cannot be used after.
    pub async fn close(&mut self) -> Result<(), KafkaError> {
        if self.shared.lock().closed {
            return Ok(());
        }
        if self.config.enable_auto_commit {
            self.auto_commit("close").await;
        }
        self.pending = None;
        if self.config.group_protocol == GroupProtocol::Consumer {
            return self.leave_consumer_group().await;
        }
        let (conn, member_id, generation_id) = {
            let mut m = self.shared.lock();
            m.closed = true;
            let taken = (m.coordinator.take(), m.member_id.clone(), m.generation_id);
            m.generation_id = -1;
            taken
        };
        self.consumer.assign([]);
        match conn {
            Some(conn)
                if self.config.group_instance_id.is_none()
                    && !member_id.is_empty()
                    && generation_id >= 0 =>
            {
                leave_group(
                    &conn,
                    &self.config.group_id,
                    &member_id,
                    "the consumer closed",
                )
                .await
            }
            _ => Ok(()),
        }
    }

    async fn find_coordinator(&self) -> Result<(), KafkaError> {
        let found = coordinator::find_coordinator(self.cluster(), &self.config.group_id).await?;
        let conn = coordinator::connect(
            self.cluster(),
            &found,
            Some(self.coordinator_connection.clone()),
        )
        .await?;
        tracing::debug!(group = %self.config.group_id, coordinator = found.node_id, "found the group coordinator");
        self.shared.lock().coordinator = Some(conn);
        Ok(())
    }

    /// KIP-848: finds the coordinator, and carries out what the heartbeats asked for.
    /// Joining itself is the heartbeat task's.
    async fn ensure_member(&mut self, deadline: Instant) -> Result<bool, KafkaError> {
        let backoff = Duration::from_millis(self.config.consumer.client.retry_backoff_ms.max(1));
        loop {
            let (has_coordinator, lose_all, reconcile) = {
                let mut m = self.shared.lock();
                if let Some(e) = m.fatal.take() {
                    return Err(e);
                }
                let lose_all = std::mem::take(&mut m.lose_all);
                (m.coordinator.is_some(), lose_all, m.reconcile.take())
            };
            if lose_all {
                // Fenced: the partitions may be another member's already; no commit.
                self.consumer.assign([]);
                self.member_reconciled();
                continue;
            }
            let step = if !has_coordinator {
                let found = self.find_coordinator().await;
                if found.is_ok() {
                    self.shared.wake.notify_one();
                }
                found
            } else if let Some((revoke, assign)) = reconcile {
                self.reconcile(revoke, assign).await
            } else {
                return Ok(true);
            };
            if let Err(e) = step {
                if needs_new_coordinator(&e) {
                    self.shared.lock().coordinator = None;
                }
                if !is_retriable_at_coordinator(&e) && !e.is_retriable() {
                    return Err(e);
                }
                if Instant::now() + backoff >= deadline {
                    return Ok(false);
                }
                tokio::time::sleep(backoff).await;
            }
        }
    }

    /// KIP-848: gives up `revoke` (committing them first with auto commit), takes `assign`
    /// from their committed offsets, and tells the member, whose next heartbeat
    /// acknowledges.
    async fn reconcile(
        &mut self,
        revoke: Vec<TopicIdPartition>,
        assign: Vec<TopicIdPartition>,
    ) -> Result<(), KafkaError> {
        let names = self.topic_names(revoke.iter().chain(&assign)).await?;
        let named = |ids: &[TopicIdPartition]| -> Vec<TopicPartition> {
            ids.iter()
                .filter_map(|(id, p)| names.get(id).map(|t| TopicPartition::new(t.clone(), *p)))
                .collect()
        };
        let (revoked, added) = (named(&revoke), named(&assign));
        for (id, _) in &assign {
            if let Some(name) = names.get(id) {
                self.topic_ids.insert(name.clone(), *id);
            }
        }
        if !revoked.is_empty() && self.config.enable_auto_commit {
            let offsets: BTreeMap<TopicPartition, i64> = self
                .positions()
                .into_iter()
                .filter(|(tp, _)| revoked.contains(tp))
                .collect();
            if let Err(e) = self.commit_offsets(&offsets).await {
                tracing::warn!(group = %self.config.group_id, error = %e, "commit before revoking failed");
            }
        }
        let mut now: Vec<TopicPartition> = self
            .consumer
            .assignment()
            .into_iter()
            .filter(|tp| !revoked.contains(tp))
            .collect();
        let kept = now.clone();
        now.extend(added.iter().cloned());
        self.consumer.assign(now);
        if !added.is_empty() {
            let conn = self.shared.lock().coordinator.clone();
            if let Some(conn) = conn {
                match coordinator::fetch_offsets(&conn, &self.config.group_id, Some(&added)).await {
                    Ok(committed) => {
                        for (tp, c) in committed {
                            if added.contains(&tp) {
                                self.consumer.seek(&tp, c.offset)?;
                            }
                        }
                    }
                    Err(e) => {
                        // Not taken after all: asked again with the next answer.
                        self.consumer.assign(kept);
                        self.member_reconciled();
                        return Err(e);
                    }
                }
            }
        }
        tracing::debug!(group = %self.config.group_id, ?revoked, ?added, "reconciled");
        self.member_reconciled();
        Ok(())
    }

    /// Tells the member what the consumer owns now, and wakes the heartbeat to say so.
    fn member_reconciled(&mut self) {
        let owned: BTreeSet<TopicIdPartition> = self
            .consumer
            .assignment()
            .iter()
            .filter_map(|tp| self.topic_ids.get(&tp.topic).map(|id| (*id, tp.partition)))
            .collect();
        let mut m = self.shared.lock();
        let actions = match &mut m.member {
            Some(member) => member.reconciled(owned),
            None => Vec::new(),
        };
        apply_member_actions(&mut m, actions);
        drop(m);
        self.shared.wake.notify_one();
    }

    /// Topic names of the ids in `partitions`, from metadata of every topic if needed.
    async fn topic_names<'a>(
        &self,
        partitions: impl Iterator<Item = &'a TopicIdPartition>,
    ) -> Result<BTreeMap<u128, String>, KafkaError> {
        let wanted: BTreeSet<u128> = partitions.map(|(id, _)| *id).collect();
        let mut names = BTreeMap::new();
        for topic in &self.subscription {
            if let Some(t) = self.cluster().cached_topic(topic) {
                names.insert(t.topic_id, t.name.clone());
            }
        }
        if !wanted.iter().all(|id| names.contains_key(id)) {
            let metadata = self.cluster().metadata(None, false).await?;
            for t in metadata.topics {
                names.insert(t.topic_id, t.name);
            }
        }
        Ok(names)
    }

    /// KIP-848: the leave heartbeat (epoch -1, or -2 for a static member), after a last
    /// auto commit.
    async fn leave_consumer_group(&mut self) -> Result<(), KafkaError> {
        let (conn, request) = {
            let mut m = self.shared.lock();
            m.closed = true;
            let conn = m.coordinator.take();
            let request = m.member.as_mut().and_then(|member| {
                (member.member_epoch() > 0).then(|| {
                    member.leave();
                    member.request()
                })
            });
            m.generation_id = -1;
            (conn, request)
        };
        self.consumer.assign([]);
        let (Some(conn), Some(request)) = (conn, request) else {
            return Ok(());
        };
        let response = conn.call(|_| request).await?;
        check(
            response.error_code,
            || format!("leave consumer group {:?}", self.config.group_id),
            response.error_message.as_ref().map(|m| m.as_str()),
        )
    }

    fn is_active(&self) -> bool {
        let m = self.shared.lock();
        m.coordinator.is_some() && !m.rejoin && !self.needs_committed
    }

    /// Makes this a member of the current generation with its committed offsets read.
    /// Ok(false) when `deadline` passed first on retriable errors.
    async fn ensure_active(&mut self, deadline: Instant) -> Result<bool, KafkaError> {
        if self.config.group_protocol == GroupProtocol::Consumer {
            return self.ensure_member(deadline).await;
        }
        let backoff = Duration::from_millis(self.config.consumer.client.retry_backoff_ms.max(1));
        loop {
            let (has_coordinator, rejoin) = {
                let mut m = self.shared.lock();
                if let Some(e) = m.fatal.take() {
                    return Err(e);
                }
                (m.coordinator.is_some(), m.rejoin)
            };
            let step = if !has_coordinator {
                self.find_coordinator().await
            } else if rejoin {
                if self.pending.is_none() && self.config.enable_auto_commit {
                    // Before giving the partitions up, as Kafka's onJoinPrepare does.
                    self.auto_commit("rebalance").await;
                }
                self.join_and_sync(deadline).await
            } else if self.needs_committed {
                self.start_at_committed().await
            } else {
                return Ok(true);
            };
            // Each step makes progress that is kept; the next poll goes on from it.
            if step.is_ok() && Instant::now() >= deadline && !self.is_active() {
                return Ok(false);
            }
            if let Err(e) = step {
                self.shared.lock().absorb_error(&e);
                if !is_retriable_at_coordinator(&e) && !e.is_retriable() {
                    return Err(e);
                }
                tracing::debug!(group = %self.config.group_id, error = %e, "joining the group: retrying");
                if Instant::now() + backoff >= deadline {
                    return Ok(false);
                }
                tokio::time::sleep(backoff).await;
            }
        }
    }

    /// Drives one JoinGroup and SyncGroup round until `deadline`. Ok(()) also when the
    /// round is still in flight at the deadline (the next call goes on waiting for it), or
    /// must be repeated (a member id to join with, a rebalance that started meanwhile).
    async fn join_and_sync(&mut self, deadline: Instant) -> Result<(), KafkaError> {
        if self.pending.is_none() {
            self.start_join()?;
        }
        match self.pending.take() {
            None => Ok(()),
            Some(PendingCall::Join(mut answer)) => match wait(&mut answer, deadline).await {
                None => {
                    self.pending = Some(PendingCall::Join(answer));
                    Ok(())
                }
                Some(joined) => self.on_joined(joined?).await,
            },
            Some(PendingCall::Sync {
                mut answer,
                member_id,
                generation_id,
            }) => match wait(&mut answer, deadline).await {
                None => {
                    self.pending = Some(PendingCall::Sync {
                        answer,
                        member_id,
                        generation_id,
                    });
                    Ok(())
                }
                Some(synced) => self.on_synced(synced?, member_id, generation_id),
            },
        }
    }

    /// Gives up the partitions (eager rebalancing) and sends JoinGroup.
    fn start_join(&mut self) -> Result<(), KafkaError> {
        let (reason, conn, member_id) = {
            let mut m = self.shared.lock();
            let Some(conn) = m.coordinator.clone() else {
                return Ok(());
            };
            m.generation_id = -1;
            (m.rejoin_reason, conn, m.member_id.clone())
        };
        if self.config.group_instance_id.is_some() && version_lacks_static(&conn) {
            return Err(KafkaError::Config(format!(
                "the coordinator at {} does not know static members (JoinGroup v5); unset group.instance.id",
                conn.addr()
            )));
        }
        tracing::debug!(group = %self.config.group_id, reason, "joining the group");
        self.consumer.assign([]);
        self.leader_view = None;
        let metadata = encode_subscription(&Subscription {
            topics: self.subscription.clone(),
            ..Default::default()
        });
        let config = self.config.clone();
        self.pending = Some(PendingCall::Join(spawn_call(conn, move |version| {
            join_group_request(version, &config, &member_id, &metadata, reason)
        })));
        Ok(())
    }

    async fn on_joined(&mut self, joined: JoinGroupResponse) -> Result<(), KafkaError> {
        let group = self.config.group_id.clone();
        let instance = self.config.group_instance_id.clone();
        match ResponseError::try_from_code(joined.error_code) {
            None => {}
            Some(ResponseError::MemberIdRequired) => {
                // KIP-394: join again with the member id the coordinator chose.
                self.shared.lock().member_id = joined.member_id.to_string();
                return Ok(());
            }
            Some(ResponseError::UnknownMemberId) => {
                self.shared.lock().member_id.clear();
                return Ok(());
            }
            Some(code) => {
                if code == ResponseError::GroupMaxSizeReached && instance.is_none() {
                    self.shared.lock().member_id.clear();
                }
                return Err(KafkaError::broker(
                    code,
                    format!("join group {group:?}"),
                    None,
                ));
            }
        }
        let member_id = joined.member_id.to_string();
        let generation_id = joined.generation_id;
        // Kept even if SyncGroup fails, so the next JoinGroup is this member's (the
        // generation stays -1 until SyncGroup answers, so heartbeats wait).
        self.shared.lock().member_id = member_id.clone();
        let protocol = joined
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let assignments = if joined.leader.as_str() == member_id && !joined.skip_assignment {
            self.lead(&joined, &protocol).await?
        } else {
            Vec::new()
        };
        let Some(conn) = self.shared.lock().coordinator.clone() else {
            return Ok(());
        };
        let sync_member_id = member_id.clone();
        let answer = spawn_call(conn, move |version| {
            let request = SyncGroupRequest::default()
                .with_group_id(GroupId(str_bytes(&group)))
                .with_generation_id(generation_id)
                .with_member_id(str_bytes(&sync_member_id))
                .with_assignments(assignments);
            let request = if version >= 3 {
                request.with_group_instance_id(instance.as_deref().map(str_bytes))
            } else {
                request
            };
            if version >= 5 {
                request
                    .with_protocol_type(Some(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE)))
                    .with_protocol_name(Some(str_bytes(&protocol)))
            } else {
                request
            }
        });
        self.pending = Some(PendingCall::Sync {
            answer,
            member_id,
            generation_id,
        });
        Ok(())
    }

    fn on_synced(
        &mut self,
        synced: SyncGroupResponse,
        member_id: String,
        generation_id: i32,
    ) -> Result<(), KafkaError> {
        let group = &self.config.group_id;
        if let Err(e) = check(synced.error_code, || format!("sync group {group:?}"), None) {
            let mut m = self.shared.lock();
            m.member_id = member_id;
            m.generation_id = generation_id;
            let handled = m.absorb_error(&e);
            m.generation_id = -1;
            if handled && !needs_new_coordinator(&e) && m.fatal.is_none() {
                // Rejoin at once: the group moved on while this member synced.
                return Ok(());
            }
            return Err(e);
        }
        let assigned = decode_assignment(&synced.assignment).map_err(|e| KafkaError::Protocol {
            addr: "the group coordinator".into(),
            reason: e.to_string(),
        })?;
        let (mine, foreign): (Vec<TopicPartition>, Vec<TopicPartition>) = assigned
            .into_iter()
            .partition(|tp| self.subscription.binary_search(&tp.topic).is_ok());
        if !foreign.is_empty() {
            tracing::warn!(group = %group, ?foreign, "assigned partitions of topics not subscribed; ignoring them");
        }
        tracing::debug!(group = %group, generation_id, member_id = %member_id, assignment = ?mine, "joined the group");
        self.consumer.assign(mine);
        self.needs_committed = true;
        let mut m = self.shared.lock();
        // Published together: heartbeats start with this generation, and a rebalance they
        // learn of from now on asks for the next rejoin.
        m.member_id = member_id;
        m.generation_id = generation_id;
        m.rejoin = false;
        m.last_poll = Instant::now();
        Ok(())
    }

    /// As leader: reads every member's subscription, learns partition counts, assigns.
    async fn lead(
        &mut self,
        joined: &JoinGroupResponse,
        protocol: &str,
    ) -> Result<Vec<SyncGroupRequestAssignment>, KafkaError> {
        let assignor = Assignor::parse(protocol).ok_or_else(|| {
            KafkaError::Config(format!(
                "the group chose assignor {protocol:?}, which this client does not implement"
            ))
        })?;
        let members: Vec<Member> = joined
            .members
            .iter()
            .map(|m| Member {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                subscription: decode_subscription(&m.metadata).unwrap_or_else(|e| {
                    tracing::warn!(member = %m.member_id.as_str(), error = %e, "unreadable subscription; assigning it nothing");
                    Subscription::default()
                }),
            })
            .collect();
        let mut topics: Vec<String> = members
            .iter()
            .flat_map(|m| m.subscription.topics.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        let counts = self.partition_counts(&topics).await?;
        let plan = assignor.assign(&members, &counts);
        tracing::debug!(group = %self.config.group_id, assignor = assignor.name(), ?plan, "assigned partitions as leader");
        self.leader_view = Some((counts, Instant::now()));
        Ok(plan
            .into_iter()
            .map(|(member_id, partitions)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(str_bytes(&member_id))
                    .with_assignment(encode_assignment(&partitions))
            })
            .collect())
    }

    /// Partition counts of the topics that exist among `topics`.
    async fn partition_counts(
        &self,
        topics: &[String],
    ) -> Result<BTreeMap<String, i32>, KafkaError> {
        if topics.is_empty() {
            return Ok(BTreeMap::new());
        }
        let metadata = self.cluster().metadata(Some(topics), false).await?;
        Ok(metadata
            .topics
            .iter()
            .filter(|t| !t.partitions.is_empty())
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect())
    }

    /// As leader, every `metadata_max_age_ms`: rebalance when partition counts changed.
    async fn maybe_check_partitions(&mut self) {
        let max_age = Duration::from_millis(self.config.consumer.client.metadata_max_age_ms);
        let Some((counts, checked)) = &self.leader_view else {
            return;
        };
        if checked.elapsed() < max_age {
            return;
        }
        let topics: Vec<String> = self.subscription.clone();
        let old = counts.clone();
        match self.partition_counts(&topics).await {
            Ok(now) => {
                // Other members' topics are not watched here; ours are what changes most.
                let changed = topics.iter().any(|t| old.get(t) != now.get(t));
                if changed {
                    self.shared
                        .lock()
                        .request_rejoin("subscribed topics' partitions changed");
                }
                self.leader_view = Some((old, Instant::now()));
            }
            Err(e) => tracing::debug!(error = %e, "partition check failed"),
        }
    }

    /// Positions every assigned partition at the group's committed offset; partitions
    /// without one start per `auto_offset_reset`.
    async fn start_at_committed(&mut self) -> Result<(), KafkaError> {
        let assigned = self.consumer.assignment();
        if assigned.is_empty() {
            self.needs_committed = false;
            return Ok(());
        }
        let conn = match self.shared.lock().coordinator.clone() {
            Some(conn) => conn,
            None => return Ok(()),
        };
        let committed =
            coordinator::fetch_offsets(&conn, &self.config.group_id, Some(&assigned)).await?;
        for (tp, c) in committed {
            if assigned.contains(&tp) {
                self.consumer.seek(&tp, c.offset)?;
            }
        }
        self.needs_committed = false;
        Ok(())
    }
}

/// A JoinGroup or SyncGroup in flight. The coordinator parks both until the rest of the
/// group arrives, so they run in their own task and outlive a `poll` that returns at its
/// timeout; otherwise two members polled in turn by one task would wait on each other.
enum PendingCall {
    Join(oneshot::Receiver<Result<JoinGroupResponse, KafkaError>>),
    Sync {
        answer: oneshot::Receiver<Result<SyncGroupResponse, KafkaError>>,
        member_id: String,
        generation_id: i32,
    },
}

/// Sends a request from its own task; the answer (or the failure) arrives on the receiver.
fn spawn_call<R>(
    conn: Connection,
    build: impl FnOnce(i16) -> R + Send + 'static,
) -> oneshot::Receiver<Result<R::Response, KafkaError>>
where
    R: Request + Send + Sync + 'static,
    R::Response: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(conn.call(build).await);
    });
    rx
}

/// The answer of a pending call, or `None` when `deadline` came first.
async fn wait<T>(
    answer: &mut oneshot::Receiver<Result<T, KafkaError>>,
    deadline: Instant,
) -> Option<Result<T, KafkaError>> {
    match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), answer).await {
        Err(_) => None,
        Ok(Ok(result)) => Some(result),
        Ok(Err(_)) => Some(Err(KafkaError::Disconnected {
            addr: "the group coordinator".into(),
            reason: "the request's task ended without an answer".into(),
        })),
    }
}

fn version_lacks_static(conn: &Connection) -> bool {
    conn.version(super::error::ApiKey::JoinGroup)
        .is_ok_and(|v| v < 5)
}

fn join_group_request(
    version: i16,
    config: &GroupConsumerConfig,
    member_id: &str,
    metadata: &bytes::Bytes,
    reason: &str,
) -> JoinGroupRequest {
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(str_bytes(&config.group_id)))
        .with_session_timeout_ms(config.session_timeout_ms)
        .with_rebalance_timeout_ms(config.max_poll_interval_ms)
        .with_member_id(str_bytes(member_id))
        .with_protocol_type(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE))
        .with_protocols(
            config
                .assignors
                .iter()
                .map(|a| {
                    JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str(a.name()))
                        .with_metadata(metadata.clone())
                })
                .collect(),
        );
    let request = if version >= 5 {
        request.with_group_instance_id(config.group_instance_id.as_deref().map(str_bytes))
    } else {
        request
    };
    if version >= 8 {
        request.with_reason(Some(str_bytes(reason)))
    } else {
        request
    }
}

async fn leave_group(
    conn: &Connection,
    group: &str,
    member_id: &str,
    reason: &str,
) -> Result<(), KafkaError> {
    let response = conn
        .call(|version| {
            let request = LeaveGroupRequest::default().with_group_id(GroupId(str_bytes(group)));
            if version >= 3 {
                let member = MemberIdentity::default().with_member_id(str_bytes(member_id));
                let member = if version >= 5 {
                    member.with_reason(Some(str_bytes(reason)))
                } else {
                    member
                };
                request.with_members(vec![member])
            } else {
                request.with_member_id(str_bytes(member_id))
            }
        })
        .await?;
    let context = || format!("leave group {group:?}");
    check(response.error_code, context, None)?;
    for m in response.members {
        check(m.error_code, context, None)?;
    }
    Ok(())
}

struct HeartbeatSettings {
    group_id: String,
    retry_backoff: Duration,
    group_instance_id: Option<String>,
    interval: Duration,
    request_timeout: Duration,
    max_poll_interval: Duration,
}

/// Heartbeats every interval while the member is in a generation; ends when the consumer
/// is dropped or closed. Errors only change the shared membership: the next `poll` acts.
async fn heartbeat_loop(shared: Weak<Shared>, settings: HeartbeatSettings) {
    loop {
        tokio::time::sleep(settings.interval).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (conn, generation_id, member_id, leave) = {
            let mut m = shared.lock();
            if m.closed {
                return;
            }
            let Some(conn) = m.coordinator.clone() else {
                continue;
            };
            // A pending rejoin keeps heartbeating (the session stays alive until the next
            // poll joins); a member outside any generation has nothing to heartbeat.
            if m.generation_id < 0 {
                continue;
            }
            let mut leave = false;
            if m.last_poll.elapsed() > settings.max_poll_interval {
                // As Kafka's consumer: an application stuck between polls must not hold
                // partitions; a dynamic member leaves, so the group reassigns them now.
                tracing::warn!(
                    group = %settings.group_id,
                    max_poll_interval_ms = settings.max_poll_interval.as_millis() as u64,
                    "no poll within max.poll.interval.ms; leaving the group"
                );
                leave = settings.group_instance_id.is_none();
                m.generation_id = -1;
                if leave {
                    m.member_id.clear();
                }
                m.request_rejoin("no poll within max.poll.interval.ms");
            }
            (conn, m.generation_id, m.member_id.clone(), leave)
        };
        if leave {
            let left = tokio::time::timeout(
                settings.request_timeout,
                leave_group(
                    &conn,
                    &settings.group_id,
                    &member_id,
                    "poll interval exceeded",
                ),
            )
            .await;
            if let Ok(Err(e)) = left {
                tracing::debug!(error = %e, "leave group failed");
            }
            continue;
        }
        if generation_id < 0 {
            continue;
        }
        let call = conn.call(|version| {
            let request = HeartbeatRequest::default()
                .with_group_id(GroupId(str_bytes(&settings.group_id)))
                .with_generation_id(generation_id)
                .with_member_id(str_bytes(&member_id));
            if version >= 3 {
                request.with_group_instance_id(settings.group_instance_id.as_deref().map(str_bytes))
            } else {
                request
            }
        });
        let error = match tokio::time::timeout(settings.request_timeout, call).await {
            Err(_) => Some(KafkaError::Timeout {
                api: super::error::ApiKey::Heartbeat,
                addr: conn.addr().to_string(),
                timeout_ms: settings.request_timeout.as_millis() as u64,
            }),
            Ok(Err(e)) => Some(e),
            Ok(Ok(response)) => check(
                response.error_code,
                || format!("heartbeat to group {:?}", settings.group_id),
                None,
            )
            .err(),
        };
        if let Some(e) = error {
            let mut m = shared.lock();
            // An answer about an older generation says nothing about the current one.
            if m.generation_id == generation_id && m.member_id == member_id {
                tracing::debug!(group = %settings.group_id, error = %e, "heartbeat");
                if !m.absorb_error(&e) {
                    tracing::warn!(group = %settings.group_id, error = %e, "heartbeat failed");
                }
            }
        }
    }
}

/// Records what the KIP-848 member asked for, for the next `poll` (or the heartbeat) to do.
fn apply_member_actions(m: &mut Membership, actions: Vec<Action>) {
    if let Some(member) = &m.member {
        m.member_id = member.member_id().to_string();
        m.generation_id = member.member_epoch();
    }
    for action in actions {
        match action {
            Action::Reconcile { revoke, assign } => m.reconcile = Some((revoke, assign)),
            Action::LoseAll => {
                m.reconcile = None;
                m.lose_all = true;
            }
            Action::Rediscover => m.coordinator = None,
            Action::Fatal(e) => m.fatal = Some(e),
        }
    }
}

/// KIP-848: the heartbeat is the protocol. Heartbeats every interval the coordinator
/// gives, at once when the member wants to (join, acknowledge, new subscription), and hands
/// what answers ask for to the next `poll`. Ends when the consumer is dropped or closed.
async fn consumer_heartbeat_loop(
    shared: Weak<Shared>,
    wake: Arc<Notify>,
    settings: HeartbeatSettings,
) {
    let mut interval = settings.interval;
    loop {
        let now = match shared.upgrade() {
            Some(shared) => shared
                .lock()
                .member
                .as_ref()
                .is_some_and(|m| m.wants_heartbeat_now()),
            None => return,
        };
        if !now {
            tokio::select! {
                biased;
                _ = wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let next = {
            let mut guard = shared.lock();
            let m = &mut *guard;
            if m.closed {
                return;
            }
            let Some(member) = &mut m.member else {
                return;
            };
            if member.is_done() {
                return;
            }
            if m.left_for_poll {
                None
            } else {
                if member.member_epoch() > 0 && m.last_poll.elapsed() > settings.max_poll_interval {
                    // As Kafka's consumer: an application stuck between polls must not
                    // hold partitions; the member leaves and rejoins at the next poll.
                    tracing::warn!(
                        group = %settings.group_id,
                        max_poll_interval_ms = settings.max_poll_interval.as_millis() as u64,
                        "no poll within max.poll.interval.ms; leaving the group"
                    );
                    member.leave();
                    m.left_for_poll = true;
                }
                m.coordinator.clone().map(|conn| (conn, member.request()))
            }
        };
        let Some((conn, request)) = next else {
            drop(shared);
            // The next poll finds the coordinator and wakes this task.
            tokio::select! {
                biased;
                _ = wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
            continue;
        };
        let outcome = tokio::time::timeout(settings.request_timeout, conn.call(|_| request)).await;
        let failed = !matches!(&outcome, Ok(Ok(r)) if r.error_code == 0);
        {
            let mut guard = shared.lock();
            let m = &mut *guard;
            if m.closed {
                return;
            }
            let Some(member) = &mut m.member else {
                return;
            };
            let actions = match outcome {
                Ok(Ok(response)) => member.on_response(&response),
                Ok(Err(e)) => member.on_error(&e),
                Err(_) => member.on_error(&KafkaError::Timeout {
                    api: super::error::ApiKey::ConsumerGroupHeartbeat,
                    addr: conn.addr().to_string(),
                    timeout_ms: settings.request_timeout.as_millis() as u64,
                }),
            };
            interval = Duration::from_millis(member.heartbeat_interval_ms().max(1) as u64);
            if member.has_left() && m.left_for_poll {
                // A new member for the rejoin; the partitions are given up unconsumed.
                *member = member.restarted();
                m.reconcile = None;
                m.lose_all = true;
            }
            if !actions.is_empty() {
                tracing::debug!(group = %settings.group_id, ?actions, "consumer group heartbeat");
            }
            apply_member_actions(m, actions);
        }
        drop(shared);
        if failed {
            // A member that wants to heartbeat at once (joining) must not hammer a
            // coordinator that keeps failing.
            tokio::time::sleep(settings.retry_backoff).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::ClientConfig;

    fn member() -> Membership {
        Membership {
            member_id: "m-1".into(),
            generation_id: 4,
            rejoin: false,
            rejoin_reason: "",
            coordinator: None,
            last_poll: Instant::now(),
            closed: false,
            fatal: None,
            member: None,
            reconcile: None,
            lose_all: false,
            left_for_poll: false,
        }
    }

    fn broker(code: ResponseError) -> KafkaError {
        KafkaError::broker(code, "heartbeat", None)
    }

    #[test]
    fn a_rebalance_keeps_the_member_and_generation_until_the_rejoin() {
        let mut m = member();
        assert!(m.absorb_error(&broker(ResponseError::RebalanceInProgress)));
        assert!(m.rejoin);
        assert_eq!((m.member_id.as_str(), m.generation_id), ("m-1", 4));
    }

    #[test]
    fn an_unknown_member_starts_over_and_an_old_generation_keeps_its_id() {
        let mut m = member();
        assert!(m.absorb_error(&broker(ResponseError::UnknownMemberId)));
        assert!(m.rejoin);
        assert_eq!((m.member_id.as_str(), m.generation_id), ("", -1));
        let mut m = member();
        assert!(m.absorb_error(&broker(ResponseError::IllegalGeneration)));
        assert!(m.rejoin);
        assert_eq!((m.member_id.as_str(), m.generation_id), ("m-1", -1));
    }

    #[test]
    fn a_moved_coordinator_is_found_again_without_rejoining() {
        for e in [
            broker(ResponseError::NotCoordinator),
            broker(ResponseError::CoordinatorNotAvailable),
            KafkaError::Disconnected {
                addr: "a:1".into(),
                reason: "reset".into(),
            },
        ] {
            let mut m = member();
            assert!(m.absorb_error(&e));
            assert!(m.coordinator.is_none());
            assert!(!m.rejoin, "{e}");
            assert_eq!(m.generation_id, 4);
        }
    }

    #[test]
    fn a_fenced_static_member_is_told_and_other_errors_change_nothing() {
        let mut m = member();
        assert!(m.absorb_error(&broker(ResponseError::FencedInstanceId)));
        assert!(m.fatal.is_some());
        let mut m = member();
        assert!(!m.absorb_error(&broker(ResponseError::GroupAuthorizationFailed)));
        assert!(!m.rejoin);
        assert_eq!(m.generation_id, 4);
    }

    #[test]
    fn configs_that_cannot_work_are_refused() {
        let base = GroupConsumerConfig::new(ConsumerConfig::new(ClientConfig::new("a:1")), "g");
        assert!(base.validate().is_ok());
        let mut c = base.clone();
        c.group_id.clear();
        assert!(c.validate().is_err());
        let mut c = base.clone();
        c.heartbeat_interval_ms = c.session_timeout_ms as u64;
        assert!(c.validate().is_err());
        let mut c = base.clone();
        c.assignors.clear();
        assert!(c.validate().is_err());
        let mut c = base;
        c.group_instance_id = Some(String::new());
        assert!(c.validate().is_err());
    }

    #[test]
    fn join_group_fields_follow_the_version() {
        let mut config =
            GroupConsumerConfig::new(ConsumerConfig::new(ClientConfig::new("a:1")), "g");
        config.group_instance_id = Some("i".into());
        let metadata = encode_subscription(&Subscription {
            topics: vec!["t".into()],
            ..Default::default()
        });
        for version in 2..=9 {
            let request = join_group_request(version, &config, "m", &metadata, "why");
            let mut buf = bytes::BytesMut::new();
            kafka_protocol::protocol::Encodable::encode(&request, &mut buf, version)
                .expect("encodes");
            assert_eq!(request.protocols.len(), 2);
            assert_eq!(request.protocols[0].name.as_str(), "range");
            assert_eq!(
                request.group_instance_id.is_some(),
                version >= 5,
                "v{version}"
            );
        }
    }
}
