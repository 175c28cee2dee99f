use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use proptest::prelude::*;
use uuid::Uuid;

use super::consumer_group::*;

const SESSION_MS: i32 = 45_000;
const REBALANCE_MS: i32 = 30_000;

fn topic_id(name: &str) -> Uuid {
    // Stable ids per name, as the controller would give them.
    let n = name.bytes().fold(7u128, |h, b| h * 31 + u128::from(b));
    Uuid::from_u128(n)
}

fn image(topics: &[(&str, i32)]) -> Arc<TopicsImage> {
    Arc::new(
        topics
            .iter()
            .map(|(name, count)| {
                (
                    name.to_string(),
                    TopicInfo {
                        topic_id: topic_id(name),
                        partition_count: *count,
                    },
                )
            })
            .collect(),
    )
}

fn tp(topic: &str, partitions: &[i32]) -> Vec<TopicPartitions> {
    vec![TopicPartitions {
        topic_id: topic_id(topic),
        partitions: partitions.to_vec(),
    }]
}

/// (topic id, partition) pairs.
type Partitions = BTreeSet<(Uuid, i32)>;

fn partitions_of(assignment: &[TopicPartitions]) -> BTreeSet<(Uuid, i32)> {
    assignment
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
        .collect()
}

fn flat(assignment: &Assignment) -> BTreeSet<(Uuid, i32)> {
    assignment
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
        .collect()
}

/// Checks what the group must never do, from the outside: a partition in two members'
/// current assignments (assigned or still being revoked).
fn check_exclusive(group: &ConsumerGroup) {
    let mut held = BTreeSet::new();
    for id in group.member_ids() {
        let mine = flat(group.assigned(id).expect("a member"));
        let revoking = flat(group.pending_revocation(id).expect("a member"));
        for p in mine.iter().chain(&revoking) {
            assert!(held.insert(*p), "{p:?} is held twice");
        }
    }
}

/// Drives one group; every request gets a fresh id. Writes complete at once unless
/// `hold_writes` is set.
struct Harness {
    group: ConsumerGroup,
    config: ConsumerGroupConfig,
    topics: Arc<TopicsImage>,
    now_ms: i64,
    next_request: RequestId,
    hold_writes: bool,
    held: Vec<StoreId>,
    records: Vec<ConsumerGroupRecord>,
    /// Records written and not completed yet, by store id.
    written: BTreeMap<StoreId, ConsumerGroupRecord>,
    /// What a new coordinator would load: the last completed record.
    durable: Option<ConsumerGroupRecord>,
    durable_store: Option<StoreId>,
    /// Counts coordinator failovers; the member id epoch of each new load.
    load: u64,
}

impl Harness {
    fn new(topics: &[(&str, i32)]) -> Self {
        Harness::with_config(ConsumerGroupConfig::default(), topics)
    }

    fn with_config(config: ConsumerGroupConfig, topics: &[(&str, i32)]) -> Self {
        let mut h = Harness {
            group: ConsumerGroup::new("g", config.clone(), 7, 0),
            config,
            topics: image(&[]),
            now_ms: 0,
            next_request: 0,
            hold_writes: false,
            held: Vec::new(),
            records: Vec::new(),
            written: BTreeMap::new(),
            durable: None,
            durable_store: None,
            load: 7,
        };
        let answers = h.step(Input::MetadataChanged(image(topics)));
        assert!(answers.is_empty());
        h
    }

    /// Steps the group, completes writes (unless held) and returns the answers.
    fn step(&mut self, input: Input) -> Vec<(RequestId, ConsumerHeartbeatResponse)> {
        let mut answers = Vec::new();
        let mut inputs = vec![input];
        while let Some(input) = inputs.pop() {
            match &input {
                Input::PersistCompleted {
                    store_id,
                    error: None,
                } => {
                    if let Some(record) = self.written.remove(store_id) {
                        // Snapshots: the latest one written is what a reload reads.
                        if self.durable_store.is_none_or(|d| d < *store_id) {
                            self.durable = Some(record);
                            self.durable_store = Some(*store_id);
                        }
                    }
                }
                Input::MetadataChanged(topics) => self.topics = topics.clone(),
                _ => {}
            }
            let outputs = self.group.step(self.now_ms, input);
            self.take(outputs, &mut answers, &mut inputs);
            check_exclusive(&self.group);
        }
        answers
    }

    fn take(
        &mut self,
        outputs: Vec<Output>,
        answers: &mut Vec<(RequestId, ConsumerHeartbeatResponse)>,
        inputs: &mut Vec<Input>,
    ) {
        for output in outputs {
            match output {
                Output::Heartbeat {
                    request_id,
                    response,
                } => answers.push((request_id, response)),
                Output::Persist { store_id, record } => {
                    assert_eq!(record, self.group.record());
                    self.records.push(record.clone());
                    self.written.insert(store_id, record);
                    if self.hold_writes {
                        self.held.push(store_id);
                    } else {
                        inputs.push(Input::PersistCompleted {
                            store_id,
                            error: None,
                        });
                    }
                }
            }
        }
    }

    /// The coordinator moves: this one unloads the group (writes under way are lost), a
    /// new one loads the last completed record.
    fn failover(&mut self) -> Vec<(RequestId, ConsumerHeartbeatResponse)> {
        let mut answers = self.step(Input::Unload);
        self.held.clear();
        self.written.clear();
        self.durable_store = None;
        self.load += 1;
        let (group, outputs) = match self.durable.clone() {
            Some(record) => ConsumerGroup::from_record(
                "g",
                self.config.clone(),
                self.load,
                self.now_ms,
                self.topics.clone(),
                record,
            )
            .expect("a record the group wrote loads"),
            None => {
                let mut group =
                    ConsumerGroup::new("g", self.config.clone(), self.load, self.now_ms);
                let outputs = group.step(self.now_ms, Input::MetadataChanged(self.topics.clone()));
                (group, outputs)
            }
        };
        self.group = group;
        check_exclusive(&self.group);
        let mut inputs = Vec::new();
        self.take(outputs, &mut answers, &mut inputs);
        for input in inputs {
            answers.extend(self.step(input));
        }
        answers
    }

    fn request(&mut self, member_id: &str, member_epoch: i32) -> ConsumerHeartbeatRequest {
        self.next_request += 1;
        ConsumerHeartbeatRequest {
            request_id: self.next_request,
            group_id: "g".to_string(),
            member_id: member_id.to_string(),
            member_epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: -1,
            subscribed_topic_names: None,
            subscribed_topic_regex: None,
            server_assignor: None,
            topic_partitions: None,
            client_id: "client".to_string(),
            client_host: "/127.0.0.1".to_string(),
        }
    }

    fn join_request(&mut self, member_id: &str, topics: &[&str]) -> ConsumerHeartbeatRequest {
        let mut request = self.request(member_id, 0);
        request.rebalance_timeout_ms = REBALANCE_MS;
        request.subscribed_topic_names = Some(topics.iter().map(|t| t.to_string()).collect());
        request.topic_partitions = Some(Vec::new());
        request
    }

    /// Sends one request and returns its answer (which must come out of this step).
    fn send(&mut self, request: ConsumerHeartbeatRequest) -> ConsumerHeartbeatResponse {
        let request_id = request.request_id;
        let mut answers = self.step(Input::Heartbeat(request));
        assert_eq!(answers.len(), 1, "one answer: {answers:?}");
        let (id, response) = answers.pop().expect("an answer");
        assert_eq!(id, request_id);
        response
    }

    fn join(&mut self, member_id: &str, topics: &[&str]) -> ConsumerHeartbeatResponse {
        let request = self.join_request(member_id, topics);
        let response = self.send(request);
        assert_eq!(response.error, None, "{response:?}");
        response
    }

    /// A heartbeat reporting what the member owns.
    fn beat(
        &mut self,
        member_id: &str,
        member_epoch: i32,
        owned: &[TopicPartitions],
    ) -> ConsumerHeartbeatResponse {
        let mut request = self.request(member_id, member_epoch);
        request.topic_partitions = Some(owned.to_vec());
        self.send(request)
    }

    fn advance(&mut self, ms: i64) -> Vec<(RequestId, ConsumerHeartbeatResponse)> {
        self.now_ms += ms;
        self.step(Input::Tick)
    }
}

#[test]
fn first_member_joins_and_gets_everything() {
    let mut h = Harness::new(&[("t", 6)]);
    assert_eq!(h.group.state(), ConsumerGroupState::Empty);
    let response = h.join("", &["t"]);
    let member_id = response.member_id.clone().expect("a member id");
    assert_eq!(member_id, "client-7-1", "generated from the client id");
    assert_eq!(response.member_epoch, 1);
    assert_eq!(response.heartbeat_interval_ms, 5_000);
    assert_eq!(response.assignment, Some(tp("t", &[0, 1, 2, 3, 4, 5])));
    assert_eq!(h.group.group_epoch(), 1);
    assert_eq!(h.group.assignment_epoch(), 1);
    assert_eq!(h.group.state(), ConsumerGroupState::Stable);
    assert_eq!(h.records.len(), 1);

    // A plain heartbeat changes nothing: no write, no assignment in the answer.
    let response = h.beat(&member_id, 1, &tp("t", &[0, 1, 2, 3, 4, 5]));
    assert_eq!(response.error, None);
    assert_eq!(response.member_epoch, 1);
    assert_eq!(response.assignment, None);
    assert_eq!(h.records.len(), 1);
}

#[test]
fn client_generated_member_id_is_kept() {
    let mut h = Harness::new(&[("t", 1)]);
    let response = h.join("5a5b1e2c-client-made", &["t"]);
    assert_eq!(response.member_id.as_deref(), Some("5a5b1e2c-client-made"));
}

#[test]
fn answer_waits_for_its_write() {
    let mut h = Harness::new(&[("t", 2)]);
    h.hold_writes = true;
    let request = h.join_request("a", &["t"]);
    let request_id = request.request_id;
    assert!(h.step(Input::Heartbeat(request)).is_empty(), "parked");
    let store_id = h.held.pop().expect("a write");
    let answers = h.step(Input::PersistCompleted {
        store_id,
        error: None,
    });
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, request_id);
    assert_eq!(answers[0].1.member_epoch, 1);

    // A failed write answers with the coordinator's error.
    let request = h.join_request("b", &["t"]);
    assert!(h.step(Input::Heartbeat(request)).is_empty());
    let store_id = h.held.pop().expect("a write");
    let answers = h.step(Input::PersistCompleted {
        store_id,
        error: Some(ResponseError::NotCoordinator),
    });
    assert_eq!(answers[0].1.error, Some(ResponseError::NotCoordinator));
}

#[test]
fn answers_wait_for_every_earlier_write() {
    let mut h = Harness::new(&[("t", 2)]);
    h.hold_writes = true;
    let request = h.join_request("a", &["t"]);
    let first = request.request_id;
    assert!(h.step(Input::Heartbeat(request)).is_empty());
    let request = h.join_request("b", &["t"]);
    let second = request.request_id;
    assert!(h.step(Input::Heartbeat(request)).is_empty());
    let held = std::mem::take(&mut h.held);
    assert_eq!(held.len(), 2);
    // The later write completes first: nothing is answered yet.
    assert!(h
        .step(Input::PersistCompleted {
            store_id: held[1],
            error: None,
        })
        .is_empty());
    let answers = h.step(Input::PersistCompleted {
        store_id: held[0],
        error: None,
    });
    let ids: Vec<RequestId> = answers.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![first, second]);
    // A heartbeat while a write is under way waits for it too.
    let request = h.join_request("c", &["t"]);
    assert!(h.step(Input::Heartbeat(request)).is_empty());
    let mut plain = h.request("a", 1);
    plain.topic_partitions = Some(Vec::new());
    assert!(h.step(Input::Heartbeat(plain)).is_empty());
    let held = std::mem::take(&mut h.held);
    let mut answers = Vec::new();
    for store_id in held {
        answers.extend(h.step(Input::PersistCompleted {
            store_id,
            error: None,
        }));
    }
    assert_eq!(answers.len(), 2);
}

#[test]
fn unload_answers_parked_requests() {
    let mut h = Harness::new(&[("t", 2)]);
    h.hold_writes = true;
    let request = h.join_request("a", &["t"]);
    assert!(h.step(Input::Heartbeat(request)).is_empty());
    let answers = h.step(Input::Unload);
    assert_eq!(answers[0].1.error, Some(ResponseError::NotCoordinator));
    assert_eq!(h.group.state(), ConsumerGroupState::Dead);
    assert_eq!(h.group.next_deadline_ms(), None);
    let request = h.join_request("b", &["t"]);
    let response = h.send(request);
    assert_eq!(response.error, Some(ResponseError::NotCoordinator));
}

/// Two members split six partitions: the second gets its half only after the first
/// revoked it.
fn two_members(h: &mut Harness) -> (Partitions, Partitions) {
    let a = h.join("a", &["t"]);
    assert_eq!(a.member_epoch, 1);

    let b = h.join("b", &["t"]);
    assert_eq!(h.group.group_epoch(), 2);
    // Everything b should get is still a's: b is at epoch 2 with nothing yet.
    assert_eq!(b.member_epoch, 2);
    assert_eq!(b.assignment, Some(Vec::new()));
    assert_eq!(
        h.group.member_state("b"),
        Some(MemberState::UnreleasedPartitions)
    );
    assert_eq!(h.group.state(), ConsumerGroupState::Reconciling);

    // a is asked to give up half, at its old epoch.
    let a = h.beat("a", 1, &tp("t", &[0, 1, 2, 3, 4, 5]));
    assert_eq!(a.member_epoch, 1);
    let a_kept = partitions_of(&a.assignment.clone().expect("a smaller assignment"));
    assert_eq!(a_kept.len(), 3);
    assert_eq!(
        h.group.member_state("a"),
        Some(MemberState::UnrevokedPartitions)
    );

    // Until a says it let them go, b gets nothing.
    let b = h.beat("b", 2, &[]);
    assert_eq!(b.assignment, None);
    assert!(h.group.assigned("b").expect("b").is_empty());

    // a revoked: it moves to epoch 2.
    let owned: Vec<TopicPartitions> =
        tp("t", &a_kept.iter().map(|(_, p)| *p).collect::<Vec<i32>>());
    let a = h.beat("a", 1, &owned);
    assert_eq!(a.member_epoch, 2);
    assert_eq!(a.assignment, None, "its assignment did not change");
    assert_eq!(h.group.member_state("a"), Some(MemberState::Stable));

    // Now b gets the rest.
    let b = h.beat("b", 2, &[]);
    let b_got = partitions_of(&b.assignment.expect("b's half"));
    assert_eq!(b_got.len(), 3);
    assert!(b_got.is_disjoint(&a_kept));
    assert_eq!(h.group.state(), ConsumerGroupState::Stable);
    (a_kept, b_got)
}

fn owned(parts: &BTreeSet<(Uuid, i32)>) -> Vec<TopicPartitions> {
    let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
    for (t, p) in parts {
        by_topic.entry(*t).or_default().push(*p);
    }
    by_topic
        .into_iter()
        .map(|(topic_id, partitions)| TopicPartitions {
            topic_id,
            partitions,
        })
        .collect()
}

#[test]
fn two_members_split_six_partitions() {
    let mut h = Harness::new(&[("t", 6)]);
    two_members(&mut h);
}

#[test]
fn third_member_gets_partitions_only_after_they_are_revoked() {
    let mut h = Harness::new(&[("t", 6)]);
    let (a_parts, b_parts) = two_members(&mut h);
    let c = h.join("c", &["t"]);
    assert_eq!(c.member_epoch, 3);
    assert_eq!(c.assignment, Some(Vec::new()));

    // a revokes one, b not yet.
    let a = h.beat("a", 2, &owned(&a_parts));
    let a_now = partitions_of(&a.assignment.expect("a shrinks"));
    assert_eq!(a_now.len(), 2);
    let a = h.beat("a", 2, &owned(&a_now));
    assert_eq!(a.member_epoch, 3);
    let b = h.beat("b", 2, &owned(&b_parts));
    let b_now = partitions_of(&b.assignment.expect("b shrinks"));
    assert_eq!(b_now.len(), 2);

    // c gets a's released partition only; b's is still held.
    let c = h.beat("c", 3, &[]);
    let c_now = partitions_of(&c.assignment.expect("c gets one"));
    assert_eq!(c_now.len(), 1);
    assert!(c_now.is_subset(&a_parts));
    assert_eq!(
        h.group.member_state("c"),
        Some(MemberState::UnreleasedPartitions)
    );

    let b = h.beat("b", 2, &owned(&b_now));
    assert_eq!(b.member_epoch, 3);
    let c = h.beat("c", 3, &owned(&c_now));
    let c_now = partitions_of(&c.assignment.expect("c gets the other"));
    assert_eq!(c_now.len(), 2);
    assert_eq!(h.group.state(), ConsumerGroupState::Stable);
    for id in ["a", "b", "c"] {
        assert_eq!(h.group.member_epoch(id), Some(3));
        assert_eq!(flat(h.group.assigned(id).expect("member")).len(), 2);
    }
}

#[test]
fn member_leaves_and_the_other_takes_over() {
    let mut h = Harness::new(&[("t", 6)]);
    let (a_parts, _) = two_members(&mut h);
    let leave = h_request_leave(&mut h, "b", -1, None);
    let response = h.send(leave);
    assert_eq!(response.error, None);
    assert_eq!(response.member_epoch, -1);
    assert_eq!(response.member_id.as_deref(), Some("b"));
    assert!(!h.group.has_member("b"));
    assert_eq!(h.group.group_epoch(), 3);
    let a = h.beat("a", 2, &owned(&a_parts));
    assert_eq!(a.member_epoch, 3);
    assert_eq!(partitions_of(&a.assignment.expect("all")).len(), 6);

    // The last member leaves: the group is empty and keeps its epoch.
    let leave = h_request_leave(&mut h, "a", -1, None);
    let response = h.send(leave);
    assert_eq!(response.error, None);
    assert_eq!(h.group.state(), ConsumerGroupState::Empty);
    assert_eq!(h.group.group_epoch(), 4);
    let leave = h_request_leave(&mut h, "a", -1, None);
    let response = h.send(leave);
    assert_eq!(response.error, Some(ResponseError::UnknownMemberId));
}

fn h_request_leave(
    h: &mut Harness,
    member_id: &str,
    epoch: i32,
    instance_id: Option<&str>,
) -> ConsumerHeartbeatRequest {
    let mut request = h.request(member_id, epoch);
    request.instance_id = instance_id.map(str::to_string);
    request
}

#[test]
fn session_expiry_removes_a_silent_member() {
    let mut h = Harness::new(&[("t", 6)]);
    let (a_parts, _) = two_members(&mut h);
    let deadline = h.group.next_deadline_ms().expect("sessions run");
    assert_eq!(deadline, h.now_ms + i64::from(SESSION_MS));
    h.now_ms += 40_000;
    h.beat("a", 2, &owned(&a_parts));
    // b's session ends 45 s after its last heartbeat.
    assert!(h.advance(4_999).is_empty());
    assert!(h.group.has_member("b"));
    h.advance(1);
    assert!(!h.group.has_member("b"));
    assert_eq!(h.group.group_epoch(), 3);
    let a = h.beat("a", 2, &owned(&a_parts));
    assert_eq!(partitions_of(&a.assignment.expect("all")).len(), 6);
    // b comes back: unknown, it must rejoin.
    let b = h.beat("b", 2, &[]);
    assert_eq!(b.error, Some(ResponseError::UnknownMemberId));
    assert_eq!(b.member_id, None);
}

#[test]
fn member_that_does_not_revoke_in_time_is_removed() {
    let mut h = Harness::new(&[("t", 6)]);
    h.join("a", &["t"]);
    h.join("b", &["t"]);
    let a = h.beat("a", 1, &tp("t", &[0, 1, 2, 3, 4, 5]));
    assert!(a.assignment.is_some());
    assert_eq!(
        h.group.member_state("a"),
        Some(MemberState::UnrevokedPartitions)
    );
    // a keeps heartbeating but keeps owning everything.
    for _ in 0..5 {
        h.now_ms += 5_000;
        let a = h.beat("a", 1, &tp("t", &[0, 1, 2, 3, 4, 5]));
        assert_eq!(a.error, None);
        h.beat("b", 2, &[]);
    }
    assert!(h.group.has_member("a"));
    h.advance(5_000);
    assert!(!h.group.has_member("a"), "fenced at the rebalance timeout");
    let b = h.beat("b", 2, &[]);
    assert_eq!(b.member_epoch, 3);
    assert_eq!(partitions_of(&b.assignment.expect("all")).len(), 6);
}

#[test]
fn epochs_are_fenced() {
    let mut h = Harness::new(&[("t", 6)]);
    let (a_parts, _) = two_members(&mut h);
    // Ahead of the coordinator.
    let a = h.beat("a", 3, &owned(&a_parts));
    assert_eq!(a.error, Some(ResponseError::FencedMemberEpoch));
    // Behind, and not its previous epoch with a subset.
    let a = h.beat("a", 1, &tp("t", &[0, 1, 2, 3, 4, 5]));
    assert_eq!(a.error, Some(ResponseError::FencedMemberEpoch));
    // Its previous epoch with a subset of its partitions: the bump's answer was lost.
    let a = h.beat("a", 1, &owned(&a_parts));
    assert_eq!(a.error, None);
    assert_eq!(a.member_epoch, 2);
    // Unknown member.
    let x = h.beat("x", 2, &[]);
    assert_eq!(x.error, Some(ResponseError::UnknownMemberId));
    // A fenced member rejoins with epoch 0 under the same id and gets its partitions back.
    let a = h.join("a", &["t"]);
    assert_eq!(a.member_epoch, 2);
    assert_eq!(partitions_of(&a.assignment.expect("full")), a_parts);
    assert_eq!(h.group.group_epoch(), 2, "nothing changed for the group");
}

#[test]
fn static_member_comes_back_to_its_partitions() {
    let mut h = Harness::new(&[("t", 6)]);
    let mut request = h.join_request("s1", &["t"]);
    request.instance_id = Some("instance-a".to_string());
    assert_eq!(h.send(request).error, None);
    h.join("b", &["t"]);
    let s = h.beat("s1", 1, &tp("t", &[0, 1, 2, 3, 4, 5]));
    let s_parts = partitions_of(&s.assignment.expect("shrinks"));
    h.beat("s1", 1, &owned(&s_parts));
    let b = h.beat("b", 2, &[]);
    let b_parts = partitions_of(&b.assignment.expect("b's half"));
    assert_eq!(h.group.state(), ConsumerGroupState::Stable);
    let epoch = h.group.group_epoch();

    // Temporary leave: it keeps its partitions, nobody else gets them.
    let leave = h_request_leave(&mut h, "s1", -2, Some("instance-a"));
    let response = h.send(leave);
    assert_eq!(response.error, None);
    assert_eq!(response.member_epoch, -2);
    assert_eq!(h.group.group_epoch(), epoch, "no rebalance");
    assert_eq!(h.group.member_epoch("s1"), Some(-2));
    let b = h.beat("b", 2, &owned(&b_parts));
    assert_eq!(b.assignment, None);

    // Another process with the same instance id cannot join while s1 is live...
    let mut request = h.join_request("s1-bis", &["t"]);
    request.instance_id = Some("instance-b".to_string());
    h.send(request); // a different instance is fine
    let mut request = h.join_request("s2", &["t"]);
    request.instance_id = Some("instance-b".to_string());
    assert_eq!(
        h.send(request).error,
        Some(ResponseError::UnreleasedInstanceId)
    );

    // ...but the restarted instance-a does, under a new member id, and gets its partitions.
    let epoch = h.group.group_epoch();
    let mut request = h.join_request("s1-new", &["t"]);
    request.instance_id = Some("instance-a".to_string());
    let response = h.send(request);
    assert_eq!(response.error, None);
    assert_eq!(h.group.group_epoch(), epoch, "no rebalance");
    assert!(!h.group.has_member("s1"));
    assert_eq!(h.group.static_member_id("instance-a"), Some("s1-new"));
    let got = partitions_of(&response.assignment.expect("full"));
    assert!(got.is_subset(&s_parts));
    assert_eq!(flat(h.group.assigned("s1-new").expect("member")), got);

    // The old id is fenced by the new one.
    let mut request = h.request("s1", 2);
    request.instance_id = Some("instance-a".to_string());
    assert_eq!(h.send(request).error, Some(ResponseError::FencedInstanceId));
}

#[test]
fn static_member_may_come_back_under_the_same_member_id() {
    let mut h = Harness::new(&[("t", 4)]);
    let mut request = h.join_request("s1", &["t"]);
    request.instance_id = Some("i".to_string());
    h.send(request);
    h.join("b", &["t"]);
    let s = h.beat("s1", 1, &tp("t", &[0, 1, 2, 3]));
    let s_parts = partitions_of(&s.assignment.expect("shrinks"));
    let s = h.beat("s1", 1, &owned(&s_parts));
    assert_eq!(s.member_epoch, 2);
    let leave = h_request_leave(&mut h, "s1", -2, Some("i"));
    h.send(leave);
    let epoch = h.group.group_epoch();
    let mut request = h.join_request("s1", &["t"]);
    request.instance_id = Some("i".to_string());
    let s = h.send(request);
    assert_eq!(s.error, None);
    assert_eq!(s.member_epoch, 2);
    assert_eq!(partitions_of(&s.assignment.expect("full")), s_parts);
    assert_eq!(h.group.group_epoch(), epoch, "no rebalance");
}

#[test]
fn static_member_away_too_long_is_removed() {
    let mut h = Harness::new(&[("t", 2)]);
    let mut request = h.join_request("s1", &["t"]);
    request.instance_id = Some("i".to_string());
    h.send(request);
    let leave = h_request_leave(&mut h, "s1", -2, Some("i"));
    h.send(leave);
    h.advance(i64::from(SESSION_MS));
    assert!(!h.group.has_member("s1"));
    assert_eq!(h.group.static_member_id("i"), None);
    // Now the instance id rejoins as a new member.
    let mut request = h.join_request("s1-new", &["t"]);
    request.instance_id = Some("i".to_string());
    let response = h.send(request);
    assert_eq!(response.error, None);
    assert_eq!(partitions_of(&response.assignment.expect("full")).len(), 2);
}

#[test]
fn requests_are_validated() {
    let mut h = Harness::with_config(
        ConsumerGroupConfig {
            max_size: 1,
            ..ConsumerGroupConfig::default()
        },
        &[("t", 2)],
    );
    // A join needs names or a regex (either may be empty).
    let mut request = h.join_request("a", &["t"]);
    request.subscribed_topic_names = None;
    let response = h.send(request);
    assert_eq!(response.error, Some(ResponseError::InvalidRequest));
    assert_eq!(
        response.error_message.as_deref(),
        Some(
            "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when \
             (re-)joining."
        )
    );
    let mut request = h.join_request("a", &["t"]);
    request.rebalance_timeout_ms = -1;
    assert_eq!(h.send(request).error, Some(ResponseError::InvalidRequest));
    let mut request = h.join_request("a", &["t"]);
    request.topic_partitions = Some(tp("t", &[0]));
    assert_eq!(h.send(request).error, Some(ResponseError::InvalidRequest));
    let mut request = h.join_request("a", &["t"]);
    request.subscribed_topic_regex = Some("t(".to_string());
    assert_eq!(
        h.send(request).error,
        Some(ResponseError::InvalidRegularExpression)
    );
    let request = h.request("", 3);
    assert_eq!(h.send(request).error, Some(ResponseError::InvalidRequest));
    let request = h.request("a", -3);
    assert_eq!(h.send(request).error, Some(ResponseError::InvalidRequest));
    let mut request = h.request("a", -2);
    request.instance_id = None;
    assert_eq!(h.send(request).error, Some(ResponseError::InvalidRequest));
    let mut request = h.join_request("a", &["t"]);
    request.server_assignor = Some("sticky".to_string());
    let response = h.send(request);
    assert_eq!(response.error, Some(ResponseError::UnsupportedAssignor));
    assert!(response
        .error_message
        .expect("a message")
        .contains("uniform, range"));
    // An empty regex means none: librdkafka sends one with every list subscription.
    let mut request = h.join_request("a", &["t"]);
    request.subscribed_topic_regex = Some(String::new());
    assert_eq!(h.send(request).error, None);
    let request = h.join_request("b", &["t"]);
    assert_eq!(
        h.send(request).error,
        Some(ResponseError::GroupMaxSizeReached)
    );
    assert_eq!(h.records.len(), 1, "refused requests write nothing");
}

#[test]
fn topics_that_appear_later_are_assigned() {
    let mut h = Harness::new(&[("t", 2)]);
    let a = h.join("a", &["t", "later"]);
    assert_eq!(partitions_of(&a.assignment.expect("full")).len(), 2);
    assert_eq!(h.group.group_epoch(), 1);
    // An unrelated topic changes nothing.
    h.step(Input::MetadataChanged(image(&[("t", 2), ("other", 3)])));
    assert_eq!(h.group.group_epoch(), 1);
    h.step(Input::MetadataChanged(image(&[("t", 2), ("later", 3)])));
    assert_eq!(h.group.group_epoch(), 2);
    let a = h.beat("a", 1, &tp("t", &[0, 1]));
    assert_eq!(a.member_epoch, 2);
    assert_eq!(partitions_of(&a.assignment.expect("grew")).len(), 5);
    // The topic is deleted: its partitions are taken back.
    h.step(Input::MetadataChanged(image(&[("later", 3)])));
    assert_eq!(h.group.group_epoch(), 3);
    let mut all = tp("t", &[0, 1]);
    all.extend(tp("later", &[0, 1, 2]));
    let a = h.beat("a", 2, &all);
    assert_eq!(a.assignment, Some(tp("later", &[0, 1, 2])));
    assert_eq!(a.member_epoch, 2, "revoking first");
    let a = h.beat("a", 2, &tp("later", &[0, 1, 2]));
    assert_eq!(a.member_epoch, 3);
}

#[test]
fn describe_and_assignor_choice() {
    let mut h = Harness::new(&[("t", 4)]);
    let mut request = h.join_request("a", &["t"]);
    request.server_assignor = Some("range".to_string());
    request.rack_id = Some("rack-1".to_string());
    request.instance_id = Some("a-1".to_string());
    h.send(request);
    let d = h.group.describe();
    assert_eq!(d.group_id, "g");
    assert_eq!(d.state.name(), "Stable");
    assert_eq!(d.assignor_name, "range");
    assert_eq!((d.group_epoch, d.assignment_epoch), (1, 1));
    let m = &d.members[0];
    assert_eq!(m.member_id, "a");
    assert_eq!(m.instance_id.as_deref(), Some("a-1"));
    assert_eq!(m.rack_id.as_deref(), Some("rack-1"));
    assert_eq!(m.client_id, "client");
    assert_eq!(m.client_host, "/127.0.0.1");
    assert_eq!(m.subscribed_topic_names, vec!["t".to_string()]);
    assert_eq!(m.assignment, m.target_assignment);
    assert_eq!(m.assignment[0].topic_name, "t");
    assert_eq!(m.assignment[0].partitions, vec![0, 1, 2, 3]);
    h.join("b", &["t"]);
    assert_eq!(h.group.state().name(), "Reconciling");
    assert_eq!(ConsumerGroupState::Empty.name(), "Empty");
    assert_eq!((PROTOCOL_TYPE, GROUP_TYPE), ("consumer", "consumer"));
    // Range orders a by its instance id "a-1", before "b": it gets 0-1.
    assert_eq!(
        flat(h.group.target_assignment("a").expect("target")),
        partitions_of(&tp("t", &[0, 1]))
    );
}

#[test]
fn offset_commits_check_the_member_epoch() {
    let mut h = Harness::new(&[("t", 2)]);
    assert_eq!(h.group.validate_offset_commit("", -1), Ok(()));
    h.join("a", &["t"]);
    assert_eq!(h.group.validate_offset_commit("a", 1), Ok(()));
    assert_eq!(
        h.group.validate_offset_commit("a", 0),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        h.group.validate_offset_commit("x", 1),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn offset_fetches_check_the_member_epoch() {
    let mut h = Harness::new(&[("t", 2)]);
    h.join("a", &["t"]);
    assert_eq!(h.group.validate_offset_fetch(None, -1), Ok(()));
    assert_eq!(
        h.group.validate_offset_fetch(None, 1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(h.group.validate_offset_fetch(Some("a"), 1), Ok(()));
    assert_eq!(
        h.group.validate_offset_fetch(Some("a"), 2),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        h.group.validate_offset_fetch(Some("x"), 1),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn only_an_empty_group_is_deleted() {
    let mut h = Harness::new(&[("t", 2)]);
    h.join("a", &["t"]);
    assert_eq!(h.group.delete(), Err(ResponseError::NonEmptyGroup));
    h.hold_writes = true;
    let leave = h_request_leave(&mut h, "a", -1, None);
    assert!(h.step(Input::Heartbeat(leave)).is_empty());
    assert_eq!(h.group.delete(), Ok(()));
    assert_eq!(h.group.state(), ConsumerGroupState::Dead);
    assert_eq!(h.group.delete(), Err(ResponseError::GroupIdNotFound));
    // The leave's write completes: its answer still goes out.
    let store_id = h.held.pop().expect("the leave's write");
    let answers = h.step(Input::PersistCompleted {
        store_id,
        error: None,
    });
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].1.error, None);
    let request = h.join_request("b", &["t"]);
    assert_eq!(h.send(request).error, Some(ResponseError::NotCoordinator));
    assert!(h.records.len() == 2, "a dead group writes nothing");
}

#[test]
fn a_record_restores_the_group() {
    let mut h = Harness::new(&[("t", 6)]);
    two_members(&mut h);
    let c = h.join("c", &["t"]);
    assert_eq!(c.member_epoch, 3);
    h.beat("a", 2, &[]); // a reconciles part of the way
    let record = h.records.last().expect("written").clone();
    let json = serde_json::to_string(&record).expect("serializes");
    let back: ConsumerGroupRecord = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, record);
    let (restored, outputs) = ConsumerGroup::from_record(
        "g",
        ConsumerGroupConfig::default(),
        8,
        1_000_000,
        image(&[("t", 6)]),
        back,
    )
    .expect("a consistent record");
    assert!(outputs.is_empty(), "same topics: no bump");
    assert_eq!(restored.record(), record);
    assert_eq!(restored.state(), h.group.state());
    assert_eq!(
        restored.next_deadline_ms(),
        Some(1_000_000 + i64::from(SESSION_MS)),
        "fresh sessions"
    );

    // The topic grew while the group was not loaded: a new epoch at once.
    let (restored, outputs) = ConsumerGroup::from_record(
        "g",
        ConsumerGroupConfig::default(),
        8,
        0,
        image(&[("t", 9)]),
        record.clone(),
    )
    .expect("a consistent record");
    assert_eq!(restored.group_epoch(), record.group_epoch + 1);
    assert!(matches!(outputs.as_slice(), [Output::Persist { .. }]));

    // Records that break the group's rules are refused, not trusted.
    let mut bad = record.clone();
    let first = bad.members[0].assigned.clone();
    bad.members[1].assigned = first;
    assert!(ConsumerGroup::from_record(
        "g",
        ConsumerGroupConfig::default(),
        8,
        0,
        image(&[("t", 6)]),
        bad
    )
    .is_err());
}

// ---- regex subscriptions ----

fn regex_join_request(h: &mut Harness, member_id: &str, regex: &str) -> ConsumerHeartbeatRequest {
    let mut request = h.join_request(member_id, &[]);
    request.subscribed_topic_names = None;
    request.subscribed_topic_regex = Some(regex.to_string());
    request
}

fn topics_of(assignment: &[TopicPartitions]) -> BTreeSet<Uuid> {
    assignment.iter().map(|t| t.topic_id).collect()
}

fn ids(names: &[&str]) -> BTreeSet<Uuid> {
    names.iter().map(|n| topic_id(n)).collect()
}

#[test]
fn regex_member_gets_only_matching_topics() {
    let mut h = Harness::new(&[
        ("orders-eu", 2),
        ("orders-us", 3),
        ("payments", 4),
        // Kafka matches whole names: "orders-.*" must not take these.
        ("old-orders-eu", 1),
        ("xorders-eu", 1),
    ]);
    let request = regex_join_request(&mut h, "a", "orders-.*");
    let a = h.send(request);
    assert_eq!(a.error, None, "{a:?}");
    assert_eq!(a.member_epoch, 1);
    let assignment = a.assignment.expect("a full answer");
    assert_eq!(topics_of(&assignment), ids(&["orders-eu", "orders-us"]));
    assert_eq!(partitions_of(&assignment).len(), 5);
    let d = h.group.describe();
    assert_eq!(
        d.members[0].subscribed_topic_regex.as_deref(),
        Some("orders-.*")
    );
    assert!(d.members[0].subscribed_topic_names.is_empty());
    // A heartbeat repeating the same regex changes nothing.
    let mut request = h.request("a", 1);
    request.subscribed_topic_regex = Some("orders-.*".to_string());
    let a = h.send(request);
    assert_eq!((a.error, a.member_epoch, a.assignment), (None, 1, None));
    assert_eq!(h.group.group_epoch(), 1);
    assert_eq!(h.records.len(), 1);
}

#[test]
fn a_matching_topic_created_later_is_assigned() {
    let mut h = Harness::new(&[("logs-a", 2), ("other", 2)]);
    let request = regex_join_request(&mut h, "a", "logs-[a-z]+");
    let a = h.send(request);
    assert_eq!(
        partitions_of(&a.assignment.expect("full")),
        partitions_of(&tp("logs-a", &[0, 1]))
    );
    // A topic the regex does not match changes nothing.
    h.step(Input::MetadataChanged(image(&[
        ("logs-a", 2),
        ("other", 2),
        ("logs-1", 2),
    ])));
    assert_eq!(h.group.group_epoch(), 1);
    h.step(Input::MetadataChanged(image(&[
        ("logs-a", 2),
        ("other", 2),
        ("logs-1", 2),
        ("logs-b", 3),
    ])));
    assert_eq!(
        h.group.group_epoch(),
        2,
        "a new matching topic bumps the epoch"
    );
    let a = h.beat("a", 1, &tp("logs-a", &[0, 1]));
    assert_eq!(a.member_epoch, 2);
    let assignment = a.assignment.expect("grew");
    assert_eq!(topics_of(&assignment), ids(&["logs-a", "logs-b"]));
    assert_eq!(partitions_of(&assignment).len(), 5);
    // The topic is deleted: it is taken back.
    h.step(Input::MetadataChanged(image(&[
        ("logs-a", 2),
        ("other", 2),
    ])));
    assert_eq!(h.group.group_epoch(), 3);
    let mut owned = tp("logs-a", &[0, 1]);
    owned.extend(tp("logs-b", &[0, 1, 2]));
    let a = h.beat("a", 2, &owned);
    assert_eq!(a.assignment, Some(tp("logs-a", &[0, 1])));
    let a = h.beat("a", 2, &tp("logs-a", &[0, 1]));
    assert_eq!(a.member_epoch, 3);
}

#[test]
fn an_empty_regex_clears_it() {
    let mut h = Harness::new(&[("t1", 2), ("t2", 2), ("u", 1)]);
    let mut request = regex_join_request(&mut h, "a", "t[0-9]");
    request.subscribed_topic_names = Some(vec!["u".to_string()]);
    let a = h.send(request);
    assert_eq!(
        topics_of(&a.assignment.expect("full")),
        ids(&["t1", "t2", "u"])
    );
    // None leaves the regex as it is.
    let mut owned = tp("t1", &[0, 1]);
    owned.extend(tp("t2", &[0, 1]));
    owned.extend(tp("u", &[0]));
    let a = h.beat("a", 1, &owned);
    assert_eq!((a.member_epoch, a.assignment), (1, None));
    // "" drops it, as in Kafka: the names stay.
    let mut request = h.request("a", 1);
    request.subscribed_topic_regex = Some(String::new());
    request.topic_partitions = Some(owned);
    let a = h.send(request);
    assert_eq!(h.group.group_epoch(), 2);
    assert_eq!(a.assignment, Some(tp("u", &[0])), "revoking t1 and t2");
    assert_eq!(a.member_epoch, 1);
    let a = h.beat("a", 1, &tp("u", &[0]));
    assert_eq!(a.member_epoch, 2);
    let d = h.group.describe();
    assert_eq!(d.members[0].subscribed_topic_regex, None);
    assert_eq!(d.members[0].subscribed_topic_names, vec!["u".to_string()]);
    assert_eq!(h.group.record().members[0].subscribed_topic_regex, None);
}

#[test]
fn changing_the_regex_reassigns() {
    let mut h = Harness::new(&[("a1", 1), ("b1", 1)]);
    let request = regex_join_request(&mut h, "m", "a.");
    let m = h.send(request);
    assert_eq!(m.assignment, Some(tp("a1", &[0])));
    let mut request = h.request("m", 1);
    request.subscribed_topic_regex = Some("b.".to_string());
    request.topic_partitions = Some(tp("a1", &[0]));
    let m = h.send(request);
    assert_eq!(h.group.group_epoch(), 2);
    assert_eq!(m.assignment, Some(Vec::new()), "a1 is revoked first");
    let m = h.beat("m", 1, &[]);
    assert_eq!((m.member_epoch, m.assignment), (2, Some(tp("b1", &[0]))));
}

#[test]
fn an_invalid_regex_is_refused_and_changes_nothing() {
    let mut h = Harness::new(&[("t", 2)]);
    let request = regex_join_request(&mut h, "a", "t.*");
    h.send(request);
    let before = h.group.record();
    let records = h.records.len();
    let too_long = "a".repeat(MAX_REGEX_LEN + 1);
    // `\w` is every Unicode word character: a thousand of them do not fit in 1 MiB.
    let too_big = r"\w{1000}{1000}".to_string();
    for pattern in [
        "t(",
        "[z-a]",
        "a)|(b",
        "(?x)t#",
        too_long.as_str(),
        too_big.as_str(),
    ] {
        let mut request = h.request("a", 1);
        request.subscribed_topic_regex = Some(pattern.to_string());
        let response = h.send(request);
        assert_eq!(
            response.error,
            Some(ResponseError::InvalidRegularExpression),
            "{pattern:?}"
        );
        let message = response.error_message.expect("a message");
        assert!(
            message.contains("not a valid regular expression"),
            "{message}"
        );
        // A join too: no member is created.
        let request = regex_join_request(&mut h, "b", pattern);
        let response = h.send(request);
        assert_eq!(
            response.error,
            Some(ResponseError::InvalidRegularExpression)
        );
    }
    assert_eq!(h.group.record(), before);
    assert_eq!(h.records.len(), records);
    assert_eq!(h.group.member_count(), 1);
    // The longest pattern allowed is accepted.
    let mut request = h.request("a", 1);
    request.subscribed_topic_regex = Some("a".repeat(MAX_REGEX_LEN));
    assert_eq!(h.send(request).error, None);
}

#[test]
fn internal_topics_never_match() {
    let mut h = Harness::new(&[
        ("__consumer_offsets", 50),
        ("__transaction_state", 3),
        ("t", 1),
    ]);
    let request = regex_join_request(&mut h, "a", ".*");
    let a = h.send(request);
    assert_eq!(a.assignment, Some(tp("t", &[0])));
    let request = regex_join_request(&mut h, "b", "__.*");
    let b = h.send(request);
    assert_eq!(b.assignment, Some(Vec::new()));
    h.step(Input::MetadataChanged(image(&[
        ("__consumer_offsets", 50),
        ("__transaction_state", 3),
        ("__other", 2),
        ("t", 1),
    ])));
    assert_eq!(
        h.group.group_epoch(),
        2,
        "b joined; __other changes nothing"
    );
}

#[test]
fn members_with_one_regex_share_it_and_split_the_topics() {
    let mut h = Harness::new(&[("t1", 2), ("t2", 2)]);
    let request = regex_join_request(&mut h, "a", "t.");
    h.send(request);
    let request = regex_join_request(&mut h, "b", "t.");
    let b = h.send(request);
    assert_eq!(b.error, None);
    let targets: BTreeSet<(Uuid, i32)> = ["a", "b"]
        .iter()
        .flat_map(|m| flat(h.group.target_assignment(m).expect("a target")))
        .collect();
    assert_eq!(targets.len(), 4);
    assert_eq!(flat(h.group.target_assignment("b").expect("b")).len(), 2);
    // One leaves: the other keeps the regex (its compiled form is shared).
    let leave = h_request_leave(&mut h, "a", -1, None);
    h.send(leave);
    h.step(Input::MetadataChanged(image(&[
        ("t1", 2),
        ("t2", 2),
        ("t3", 2),
    ])));
    assert_eq!(flat(h.group.target_assignment("b").expect("b")).len(), 6);
}

#[test]
fn names_and_regex_combine() {
    let mut h = Harness::new(&[("a1", 1), ("a2", 1), ("b", 1), ("c", 1)]);
    let mut request = regex_join_request(&mut h, "m", "a[0-9]");
    // "a1" both by name and by regex: subscribed once.
    request.subscribed_topic_names = Some(vec!["b".to_string(), "a1".to_string()]);
    let m = h.send(request);
    assert_eq!(
        topics_of(&m.assignment.expect("full")),
        ids(&["a1", "a2", "b"])
    );
    assert_eq!(h.group.record().subscription_metadata.len(), 3);
}

#[test]
fn a_join_with_only_a_regex_or_empty_names_is_accepted() {
    let mut h = Harness::new(&[("t", 1)]);
    // Kafka 4.0: empty names join with no topics.
    let a = h.join("a", &[]);
    assert_eq!(a.assignment, Some(Vec::new()));
    let request = regex_join_request(&mut h, "b", "");
    let b = h.send(request);
    assert_eq!((b.error, b.assignment), (None, Some(Vec::new())));
}

#[test]
fn the_regex_survives_a_record() {
    let mut h = Harness::new(&[("r1", 2), ("r2", 2), ("s", 1)]);
    let mut request = regex_join_request(&mut h, "a", "r.");
    request.subscribed_topic_names = Some(vec!["s".to_string()]);
    h.send(request);
    let request = regex_join_request(&mut h, "b", "r.");
    h.send(request);
    let record = h.records.last().expect("written").clone();
    assert!(record
        .members
        .iter()
        .all(|m| m.subscribed_topic_regex.as_deref() == Some("r.")));
    let json = serde_json::to_string(&record).expect("serializes");
    let back: ConsumerGroupRecord = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, record);
    let (mut restored, outputs) = ConsumerGroup::from_record(
        "g",
        ConsumerGroupConfig::default(),
        8,
        0,
        image(&[("r1", 2), ("r2", 2), ("s", 1)]),
        back,
    )
    .expect("a consistent record");
    assert!(outputs.is_empty(), "same topics: no bump");
    assert_eq!(restored.record(), record);
    assert_eq!(
        restored.describe().members[1]
            .subscribed_topic_regex
            .as_deref(),
        Some("r.")
    );
    // The restored group still resolves the regex: a new matching topic is a new epoch.
    let outputs = restored.step(
        0,
        Input::MetadataChanged(image(&[("r1", 2), ("r2", 2), ("r3", 2), ("s", 1)])),
    );
    assert_eq!(restored.group_epoch(), record.group_epoch + 1);
    assert!(matches!(outputs.as_slice(), [Output::Persist { .. }]));
    // A matching topic created while the group was not loaded: a new epoch at once.
    let (restored, outputs) = ConsumerGroup::from_record(
        "g",
        ConsumerGroupConfig::default(),
        8,
        0,
        image(&[("r1", 2), ("r2", 2), ("r9", 1), ("s", 1)]),
        record.clone(),
    )
    .expect("a consistent record");
    assert_eq!(restored.group_epoch(), record.group_epoch + 1);
    assert!(matches!(outputs.as_slice(), [Output::Persist { .. }]));

    // Records from before regex subscriptions (no field) still load.
    let mut old = serde_json::to_value(&record).expect("a value");
    for member in old["members"].as_array_mut().expect("members") {
        member
            .as_object_mut()
            .expect("an object")
            .remove("subscribed_topic_regex");
    }
    let old: ConsumerGroupRecord = serde_json::from_value(old).expect("an old record loads");
    assert!(old
        .members
        .iter()
        .all(|m| m.subscribed_topic_regex.is_none()));
    // A record with a pattern that does not compile is refused, not trusted.
    let mut bad = record.clone();
    bad.members[0].subscribed_topic_regex = Some("r(".to_string());
    assert!(ConsumerGroup::from_record(
        "g",
        ConsumerGroupConfig::default(),
        8,
        0,
        image(&[("r1", 2)]),
        bad
    )
    .is_err());
}

// ---- random runs ----

/// A client as the group sees it through its answers.
#[derive(Debug, Clone, Default)]
struct Client {
    member_id: String,
    instance_id: Option<String>,
    epoch: i32,
    joined: bool,
    in_flight: Option<RequestId>,
    owned: BTreeSet<(Uuid, i32)>,
    /// Taken away by the group but still being consumed until the client reports.
    revoking: BTreeSet<(Uuid, i32)>,
    topics: Vec<String>,
    /// "" for none.
    regex: String,
    restarts: u32,
}

#[derive(Debug, Clone)]
enum Action {
    /// Heartbeat (or join) of client `n`, reporting owned partitions or not.
    Beat {
        client: usize,
        report_owned: bool,
    },
    Leave {
        client: usize,
        temporary: bool,
    },
    /// Names by bit mask, and one of `REGEXES`.
    Subscribe {
        client: usize,
        topics: u8,
        regex: usize,
    },
    Advance {
        ms: i64,
    },
    Topics {
        counts: [i32; 3],
    },
    /// Completes every held write, in order or (as a test of the ordering) last first.
    CompleteWrites {
        reversed: bool,
    },
    /// Another broker takes over the group from its last completed record.
    Failover,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => (0usize..5, any::<bool>()).prop_map(|(client, report_owned)| Action::Beat {
            client,
            report_owned
        }),
        1 => (0usize..5, any::<bool>()).prop_map(|(client, temporary)| Action::Leave {
            client,
            temporary
        }),
        1 => (0usize..5, 0u8..8, 0..REGEXES.len()).prop_map(|(client, topics, regex)| {
            Action::Subscribe { client, topics, regex }
        }),
        2 => (1i64..40_000).prop_map(|ms| Action::Advance { ms }),
        1 => proptest::array::uniform3(0i32..5).prop_map(|counts| Action::Topics { counts }),
        2 => any::<bool>().prop_map(|reversed| Action::CompleteWrites { reversed }),
        1 => Just(Action::Failover),
    ]
}

const TOPICS: [&str; 3] = ["x", "y", "z"];
/// An internal topic is in every image: no regex may take it.
const INTERNAL: &str = "__consumer_offsets";
/// "" is no regex; ".*" would match the internal topic if it were allowed to.
const REGEXES: [&str; 4] = ["", ".*", "[yz]", "x|z"];

struct Run {
    h: Harness,
    clients: Vec<Client>,
    /// request id -> client.
    requests: BTreeMap<RequestId, usize>,
}

impl Run {
    fn new() -> Self {
        let mut h = Harness::new(&[("x", 4), ("y", 2), (INTERNAL, 3)]);
        h.hold_writes = true;
        let clients = (0..5)
            .map(|i| Client {
                member_id: format!("c{i}"),
                // Clients 3 and 4 are static.
                instance_id: (i >= 3).then(|| format!("instance-{i}")),
                topics: vec!["x".to_string(), "y".to_string()],
                ..Client::default()
            })
            .collect();
        Run {
            h,
            clients,
            requests: BTreeMap::new(),
        }
    }

    fn deliver(&mut self, answers: Vec<(RequestId, ConsumerHeartbeatResponse)>) {
        for (request_id, response) in answers {
            let n = self
                .requests
                .remove(&request_id)
                .expect("an answer per request");
            let client = &mut self.clients[n];
            assert_eq!(client.in_flight, Some(request_id));
            client.in_flight = None;
            match (response.error, response.member_epoch) {
                (Some(_), _) => {
                    // Fenced, unknown, refused or not written: drop everything, rejoin.
                    client.joined = false;
                    client.owned.clear();
                    client.revoking.clear();
                }
                (None, epoch) if epoch < 0 => {
                    client.joined = false;
                    client.owned.clear();
                    client.revoking.clear();
                }
                (None, epoch) => {
                    client.joined = true;
                    client.epoch = epoch;
                    client.member_id = response.member_id.expect("a member id");
                    if let Some(assignment) = response.assignment {
                        // Gains are consumed at once; losses until the client next
                        // reports what it owns.
                        let new = partitions_of(&assignment);
                        let lost: Vec<(Uuid, i32)> =
                            client.owned.difference(&new).copied().collect();
                        client.revoking.extend(lost);
                        client.revoking.retain(|p| !new.contains(p));
                        client.owned = new;
                    }
                }
            }
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Beat {
                client: n,
                report_owned,
            } => {
                if self.clients[n].in_flight.is_some() {
                    return;
                }
                let client = self.clients[n].clone();
                let mut request = if client.joined {
                    let mut r = self.h.request(&client.member_id, client.epoch);
                    if report_owned {
                        // Done revoking: it says what it still owns.
                        self.clients[n].revoking.clear();
                        let owned: Vec<(Uuid, i32)> = client.owned.iter().copied().collect();
                        let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
                        for (t, p) in owned {
                            by_topic.entry(t).or_default().push(p);
                        }
                        r.topic_partitions = Some(
                            by_topic
                                .into_iter()
                                .map(|(topic_id, partitions)| TopicPartitions {
                                    topic_id,
                                    partitions,
                                })
                                .collect(),
                        );
                    }
                    r
                } else {
                    let topics: Vec<&str> = client.topics.iter().map(String::as_str).collect();
                    self.h.join_request(&client.member_id, &topics)
                };
                request.instance_id = client.instance_id.clone();
                request.subscribed_topic_names = Some(client.topics.clone());
                // Sent with every heartbeat, as librdkafka does ("" with names only).
                request.subscribed_topic_regex = Some(client.regex.clone());
                self.send(n, request);
            }
            Action::Leave {
                client: n,
                temporary,
            } => {
                let client = self.clients[n].clone();
                if !client.joined || client.in_flight.is_some() {
                    return;
                }
                let temporary = temporary && client.instance_id.is_some();
                let epoch = if temporary { -2 } else { -1 };
                let mut request = self.h.request(&client.member_id, epoch);
                request.instance_id = client.instance_id.clone();
                self.send(n, request);
                // A static member that left for a while comes back as a new process.
                let client = &mut self.clients[n];
                client.owned.clear();
                client.revoking.clear();
                if temporary {
                    client.restarts += 1;
                    client.member_id = format!("c{n}-r{}", client.restarts);
                    client.joined = false;
                }
            }
            Action::Subscribe {
                client: n,
                topics,
                regex,
            } => {
                self.clients[n].regex = REGEXES[regex].to_string();
                self.clients[n].topics = (0..3)
                    .filter(|i| topics & (1 << i) != 0)
                    .map(|i| TOPICS[i].to_string())
                    .collect();
            }
            Action::Advance { ms } => {
                let answers = self.h.advance(ms);
                self.deliver(answers);
            }
            Action::Topics { counts } => {
                let topics: Vec<(&str, i32)> = TOPICS
                    .iter()
                    .zip(counts)
                    .filter(|(_, n)| *n > 0)
                    .map(|(t, n)| (*t, n))
                    .chain([(INTERNAL, 3)])
                    .collect();
                let answers = self.h.step(Input::MetadataChanged(image(&topics)));
                self.deliver(answers);
            }
            Action::Failover => {
                let answers = self.h.failover();
                self.deliver(answers);
            }
            Action::CompleteWrites { reversed } => {
                let mut held = std::mem::take(&mut self.h.held);
                if reversed {
                    held.reverse();
                }
                for store_id in held {
                    let answers = self.h.step(Input::PersistCompleted {
                        store_id,
                        error: None,
                    });
                    self.deliver(answers);
                }
            }
        }
        self.check();
    }

    fn send(&mut self, n: usize, request: ConsumerHeartbeatRequest) {
        let request_id = request.request_id;
        self.requests.insert(request_id, n);
        self.clients[n].in_flight = Some(request_id);
        let answers = self.h.step(Input::Heartbeat(request));
        self.deliver(answers);
    }

    /// What a client consumes is held for it by the group: so no two clients the group
    /// still counts as members consume one partition.
    fn check(&self) {
        let g = &self.h.group;
        for client in &self.clients {
            if !client.joined || !g.has_member(&client.member_id) {
                continue;
            }
            let mut held = flat(g.assigned(&client.member_id).expect("member"));
            held.extend(flat(
                g.pending_revocation(&client.member_id).expect("member"),
            ));
            let consuming: BTreeSet<(Uuid, i32)> =
                client.owned.union(&client.revoking).copied().collect();
            assert!(
                consuming.is_subset(&held),
                "{} consumes {:?} but the group holds {:?} for it",
                client.member_id,
                consuming,
                held
            );
        }
        let state = g.state();
        assert_ne!(state, ConsumerGroupState::Assigning);
        assert_eq!(state == ConsumerGroupState::Empty, g.member_count() == 0);
    }

    /// Everyone heartbeats until nothing changes: the group must settle. Time passes so
    /// that members no client speaks for any more (a static member whose temporary leave
    /// was lost in a failover, say) expire; live ones heartbeat well within their session.
    fn settle(&mut self) {
        for _ in 0..20 {
            self.apply(Action::CompleteWrites { reversed: false });
            for n in 0..self.clients.len() {
                self.apply(Action::Beat {
                    client: n,
                    report_owned: true,
                });
            }
            self.apply(Action::CompleteWrites { reversed: false });
            self.apply(Action::Advance { ms: 10_000 });
        }
        for _ in 0..3 {
            self.apply(Action::CompleteWrites { reversed: false });
            for n in 0..self.clients.len() {
                self.apply(Action::Beat {
                    client: n,
                    report_owned: true,
                });
            }
        }
        self.apply(Action::CompleteWrites { reversed: false });
        let g = &self.h.group;
        assert_eq!(g.state(), ConsumerGroupState::Stable, "{:?}", g.describe());
        // Settled: current = target for everyone, and the target covers every subscribed
        // partition that exists.
        let mut targeted = BTreeSet::new();
        for id in g.member_ids() {
            assert_eq!(g.assigned(id), g.target_assignment(id));
            targeted.extend(flat(g.target_assignment(id).expect("member")));
        }
        // Every client is a member again, with its latest subscription: the targets
        // cover exactly the partitions of what they subscribe to by name or by regex.
        let mut subscribed: BTreeSet<&str> = BTreeSet::new();
        for client in &self.clients {
            subscribed.extend(client.topics.iter().map(String::as_str));
            // What each of `REGEXES` matches, spelled out (never the internal topic).
            let matched: &[&str] = match client.regex.as_str() {
                "" => &[],
                ".*" => &TOPICS,
                "[yz]" => &["y", "z"],
                "x|z" => &["x", "z"],
                other => unreachable!("regex {other} is not one of REGEXES"),
            };
            subscribed.extend(matched);
        }
        let expected: BTreeSet<(Uuid, i32)> = self
            .h
            .topics
            .iter()
            .filter(|(name, _)| subscribed.contains(name.as_str()))
            .flat_map(|(_, info)| (0..info.partition_count).map(|p| (info.topic_id, p)))
            .collect();
        assert_eq!(targeted, expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_runs_keep_partitions_exclusive(actions in proptest::collection::vec(action(), 1..80)) {
        let mut run = Run::new();
        for action in actions {
            run.apply(action);
        }
        run.settle();
    }
}
