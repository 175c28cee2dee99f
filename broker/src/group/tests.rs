use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use proptest::prelude::*;

use super::membership::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 20_000;

fn range(metadata: &str) -> Vec<Protocol> {
    protocols(&[("range", metadata)])
}

fn protocols(list: &[(&str, &str)]) -> Vec<Protocol> {
    list.iter()
        .map(|(name, metadata)| Protocol {
            name: name.to_string(),
            metadata: Bytes::from(metadata.to_string()),
        })
        .collect()
}

/// Drives one group; every request gets a fresh id.
struct Harness {
    group: Group,
    now_ms: i64,
    next_request: RequestId,
}

impl Harness {
    fn new() -> Self {
        Harness::with_config(GroupConfig::default())
    }

    fn with_config(config: GroupConfig) -> Self {
        Harness {
            group: Group::new("g", config, 7, 0),
            now_ms: 0,
            next_request: 0,
        }
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        self.next_request
    }

    fn step(&mut self, input: Input) -> Vec<Output> {
        self.group.step(self.now_ms, input)
    }

    fn join_request(
        &mut self,
        member_id: &str,
        client_id: &str,
        protocols: Vec<Protocol>,
    ) -> JoinRequest {
        JoinRequest {
            request_id: self.request_id(),
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: client_id.to_string(),
            client_host: "/127.0.0.1".to_string(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".to_string(),
            protocols,
            require_known_member_id: false,
            supports_skip_assignment: false,
        }
    }

    /// JoinGroup v3-style (no MEMBER_ID_REQUIRED round trip); returns the request id.
    fn join(
        &mut self,
        member_id: &str,
        client_id: &str,
        protocols: Vec<Protocol>,
    ) -> (RequestId, Vec<Output>) {
        let request = self.join_request(member_id, client_id, protocols);
        let id = request.request_id;
        (id, self.step(Input::Join(request)))
    }

    fn join_static(
        &mut self,
        member_id: &str,
        instance: &str,
        protocols: Vec<Protocol>,
        skip: bool,
    ) -> (RequestId, Vec<Output>) {
        let mut request = self.join_request(member_id, instance, protocols);
        request.group_instance_id = Some(instance.to_string());
        request.supports_skip_assignment = skip;
        let id = request.request_id;
        (id, self.step(Input::Join(request)))
    }

    fn sync(
        &mut self,
        member_id: &str,
        generation_id: i32,
        assignments: &[(&str, &str)],
    ) -> (RequestId, Vec<Output>) {
        self.sync_full(member_id, None, generation_id, None, None, assignments)
    }

    fn sync_full(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: &[(&str, &str)],
    ) -> (RequestId, Vec<Output>) {
        let request = SyncRequest {
            request_id: self.request_id(),
            member_id: member_id.to_string(),
            group_instance_id: instance.map(str::to_string),
            generation_id,
            protocol_type: protocol_type.map(str::to_string),
            protocol_name: protocol_name.map(str::to_string),
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        };
        let id = request.request_id;
        (id, self.step(Input::Sync(request)))
    }

    fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
    ) -> Option<ResponseError> {
        let request_id = self.request_id();
        let outputs = self.step(Input::Heartbeat(HeartbeatRequest {
            request_id,
            member_id: member_id.to_string(),
            group_instance_id: instance.map(str::to_string),
            generation_id,
        }));
        match outputs.as_slice() {
            [Output::Heartbeat {
                request_id: r,
                error,
            }] if *r == request_id => *error,
            other => panic!("a heartbeat answer, not {other:?}"),
        }
    }

    fn leave(&mut self, members: &[(&str, Option<&str>)]) -> LeaveResponse {
        let request_id = self.request_id();
        let outputs = self.step(Input::Leave(LeaveRequest {
            request_id,
            members: members
                .iter()
                .map(|(m, i)| LeavingMember {
                    member_id: m.to_string(),
                    group_instance_id: i.map(str::to_string),
                })
                .collect(),
        }));
        outputs
            .into_iter()
            .find_map(|o| match o {
                Output::Leave {
                    request_id: r,
                    response,
                } if r == request_id => Some(response),
                _ => None,
            })
            .expect("a leave answer")
    }

    fn commit(&mut self, member_id: &str, generation_id: i32) -> Result<(), ResponseError> {
        let request_id = self.request_id();
        let outputs = self.step(Input::OffsetCommit(OffsetCommitRequest {
            request_id,
            member_id: member_id.to_string(),
            group_instance_id: None,
            generation_id,
        }));
        match outputs.as_slice() {
            [Output::OffsetCommit { result, .. }] => *result,
            other => panic!("a commit answer, not {other:?}"),
        }
    }

    /// Moves time to `now_ms` as the coordinator's timer would: a tick at every deadline
    /// on the way, then one at `now_ms`.
    fn tick_to(&mut self, now_ms: i64) -> Vec<Output> {
        let mut outputs = Vec::new();
        while let Some(deadline_ms) = self.group.next_deadline_ms().filter(|d| *d < now_ms) {
            self.now_ms = self.now_ms.max(deadline_ms);
            outputs.extend(self.step(Input::Tick));
        }
        self.now_ms = now_ms;
        outputs.extend(self.step(Input::Tick));
        outputs
    }

    /// Completes every `Persist` in `outputs` successfully and returns what follows.
    fn persist_all(&mut self, outputs: &[Output]) -> Vec<Output> {
        let mut after = Vec::new();
        for output in outputs {
            if let Output::Persist { store_id, .. } = output {
                after.extend(self.step(Input::PersistCompleted {
                    store_id: *store_id,
                    error: None,
                }));
            }
        }
        after
    }

    /// Members a, b, c (in that join order) in a Stable generation 1; returns their ids.
    fn stable_three(&mut self) -> Vec<String> {
        let mut ids = Vec::new();
        for client in ["a", "b", "c"] {
            let (_, outputs) = self.join("", client, range(client));
            assert!(
                outputs.is_empty(),
                "parked during the initial delay: {outputs:?}"
            );
        }
        let outputs = self.tick_to(6_000);
        for output in &outputs {
            let Output::Join { response, .. } = output else {
                panic!("{output:?}")
            };
            assert_eq!(response.error, None);
            ids.push(response.member_id.clone());
        }
        assert_eq!(ids.len(), 3);
        let leader = self.group.leader_id().expect("a leader").to_string();
        for id in &ids {
            if *id != leader {
                let (_, outputs) = self.sync(id, 1, &[]);
                assert!(outputs.is_empty());
            }
        }
        let assignments: Vec<(String, String)> = ids
            .iter()
            .map(|id| (id.clone(), format!("1:{id}")))
            .collect();
        let refs: Vec<(&str, &str)> = assignments
            .iter()
            .map(|(m, a)| (m.as_str(), a.as_str()))
            .collect();
        let (_, outputs) = self.sync(&leader, 1, &refs);
        let after = self.persist_all(&outputs);
        assert_eq!(after.len(), 3);
        assert_eq!(self.group.state(), GroupState::Stable);
        ids
    }
}

fn join_responses(outputs: &[Output]) -> BTreeMap<RequestId, JoinResponse> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Join {
                request_id,
                response,
            } => Some((*request_id, response.clone())),
            _ => None,
        })
        .collect()
}

fn sync_responses(outputs: &[Output]) -> BTreeMap<RequestId, SyncResponse> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Sync {
                request_id,
                response,
            } => Some((*request_id, response.clone())),
            _ => None,
        })
        .collect()
}

fn only_join(outputs: &[Output]) -> JoinResponse {
    match outputs {
        [Output::Join { response, .. }] => response.clone(),
        other => panic!("one join answer, not {other:?}"),
    }
}

fn only_sync(outputs: &[Output]) -> SyncResponse {
    match outputs {
        [Output::Sync { response, .. }] => response.clone(),
        other => panic!("one sync answer, not {other:?}"),
    }
}

#[test]
fn an_unknown_member_first_gets_an_id_then_joins_with_it() {
    let mut h = Harness::new();
    let mut request = h.join_request("", "client", range("m"));
    request.require_known_member_id = true;
    let response = only_join(&h.step(Input::Join(request)));
    assert_eq!(response.error, Some(ResponseError::MemberIdRequired));
    assert_eq!(response.member_id, "client-7-1");
    assert_eq!(response.generation_id, NO_GENERATION);
    assert_eq!(h.group.state(), GroupState::Empty);
    assert_eq!(h.group.member_count(), 0);

    let mut request = h.join_request(&response.member_id, "client", range("m"));
    request.require_known_member_id = true;
    assert!(h.step(Input::Join(request)).is_empty());
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert!(
        h.tick_to(2_999).is_empty(),
        "the initial delay holds the first rebalance"
    );
    let response = only_join(&h.tick_to(3_000));
    assert_eq!(response.error, None);
    assert_eq!(response.member_id, "client-7-1");
    assert_eq!(response.generation_id, 1);
    assert_eq!(response.leader_id, "client-7-1");
    assert_eq!(response.protocol_name.as_deref(), Some("range"));
    assert_eq!(response.members.len(), 1);
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
}

#[test]
fn a_pending_member_that_does_not_rejoin_within_its_session_is_forgotten() {
    let mut h = Harness::new();
    let mut request = h.join_request("", "client", range("m"));
    request.require_known_member_id = true;
    let member_id = only_join(&h.step(Input::Join(request))).member_id;
    assert_eq!(h.group.next_deadline_ms(), Some(i64::from(SESSION_MS)));
    h.tick_to(i64::from(SESSION_MS));
    let (_, outputs) = h.join(&member_id, "client", range("m"));
    assert_eq!(
        only_join(&outputs).error,
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn member_ids_are_deterministic_and_unique() {
    let mut a = Harness::new();
    let mut b = Harness::new();
    for h in [&mut a, &mut b] {
        for _ in 0..3 {
            let mut request = h.join_request("", "c", range("m"));
            request.require_known_member_id = true;
            h.step(Input::Join(request));
        }
    }
    let ids = |h: &mut Harness| {
        let mut request = h.join_request("", "c", range("m"));
        request.require_known_member_id = true;
        only_join(&h.step(Input::Join(request))).member_id
    };
    let (x, y) = (ids(&mut a), ids(&mut b));
    assert_eq!(x, y);
    assert_eq!(x, "c-7-4");
}

#[test]
fn three_members_get_one_leader_which_alone_sees_all_metadata() {
    let mut h = Harness::new();
    let mut requests = Vec::new();
    for client in ["a", "b", "c"] {
        let (id, outputs) = h.join("", client, range(&format!("meta-{client}")));
        assert!(outputs.is_empty());
        requests.push(id);
    }
    let responses = join_responses(&h.tick_to(6_000));
    assert_eq!(responses.len(), 3);
    let leader = &responses[&requests[0]];
    assert_eq!(leader.leader_id, leader.member_id, "the first joiner leads");
    assert_eq!(leader.generation_id, 1);
    let mut seen: Vec<(String, Bytes)> = leader
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.metadata.clone()))
        .collect();
    seen.sort();
    let mut expected: Vec<(String, Bytes)> = responses
        .values()
        .map(|r| {
            let client = r.member_id.split('-').next().expect("a prefix").to_string();
            (r.member_id.clone(), Bytes::from(format!("meta-{client}")))
        })
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    for request in &requests[1..] {
        let follower = &responses[request];
        assert_eq!(follower.error, None);
        assert!(follower.members.is_empty(), "followers get no metadata");
        assert_eq!(follower.leader_id, leader.member_id);
        assert_eq!(follower.generation_id, 1);
    }
}

#[test]
fn sync_delivers_the_leaders_assignment_once_it_is_stored() {
    let mut h = Harness::new();
    let mut ids = Vec::new();
    for client in ["a", "b", "c"] {
        h.join("", client, range(client));
    }
    for output in h.tick_to(6_000) {
        let Output::Join { response, .. } = output else {
            panic!()
        };
        ids.push(response.member_id);
    }
    let (leader, b, c) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    assert_eq!(h.group.leader_id(), Some(leader.as_str()));

    let (b_request, outputs) = h.sync(&b, 1, &[]);
    assert!(outputs.is_empty(), "a follower waits for the leader");
    let (c_request, _) = h.sync(&c, 1, &[]);
    // c is left out of the assignment: it gets an empty one.
    let (leader_request, outputs) = h.sync(&leader, 1, &[(&leader, "p0"), (&b, "p1")]);
    let [Output::Persist { store_id, record }] = outputs.as_slice() else {
        panic!("the assignment is persisted first: {outputs:?}")
    };
    assert_eq!(record.generation_id, 1);
    assert_eq!(record.members.len(), 3);
    assert_eq!(record.leader_id.as_deref(), Some(leader.as_str()));
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);

    let outputs = h.step(Input::PersistCompleted {
        store_id: *store_id,
        error: None,
    });
    let syncs = sync_responses(&outputs);
    assert_eq!(syncs[&leader_request].assignment, Bytes::from("p0"));
    assert_eq!(syncs[&b_request].assignment, Bytes::from("p1"));
    assert_eq!(syncs[&c_request].assignment, Bytes::new());
    assert!(syncs
        .values()
        .all(|s| s.error.is_none() && s.protocol_name.as_deref() == Some("range")));
    assert_eq!(h.group.state(), GroupState::Stable);

    // A late SyncGroup in Stable gets the stored assignment at once.
    let (_, outputs) = h.sync(&b, 1, &[]);
    assert_eq!(only_sync(&outputs).assignment, Bytes::from("p1"));
}

#[test]
fn a_failed_store_fails_every_waiting_sync_and_rebalances() {
    let mut h = Harness::new();
    let (_, _) = h.join("", "a", range("a"));
    let (_, _) = h.join("", "b", range("b"));
    let ids: Vec<String> = join_responses(&h.tick_to(6_000))
        .into_values()
        .map(|r| r.member_id)
        .collect();
    let leader = h.group.leader_id().expect("leader").to_string();
    let follower = ids
        .iter()
        .find(|id| **id != leader)
        .expect("a follower")
        .clone();
    let (follower_request, _) = h.sync(&follower, 1, &[]);
    let (_, outputs) = h.sync(&leader, 1, &[]);
    let [Output::Persist { store_id, .. }] = outputs.as_slice() else {
        panic!()
    };
    let outputs = h.step(Input::PersistCompleted {
        store_id: *store_id,
        error: Some(ResponseError::NotCoordinator),
    });
    let syncs = sync_responses(&outputs);
    assert_eq!(syncs.len(), 2);
    assert_eq!(
        syncs[&follower_request].error,
        Some(ResponseError::NotCoordinator)
    );
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
}

#[test]
fn sync_errors_are_kafkas() {
    let mut h = Harness::new();
    let ids = h.stable_three();
    let a = ids[0].clone();
    let (_, o) = h.sync("nobody", 1, &[]);
    assert_eq!(only_sync(&o).error, Some(ResponseError::UnknownMemberId));
    let (_, o) = h.sync(&a, 2, &[]);
    assert_eq!(only_sync(&o).error, Some(ResponseError::IllegalGeneration));
    let (_, o) = h.sync_full(&a, None, 1, Some("connect"), None, &[]);
    assert_eq!(
        only_sync(&o).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let (_, o) = h.sync_full(&a, None, 1, Some("consumer"), Some("roundrobin"), &[]);
    assert_eq!(
        only_sync(&o).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let (_, o) = h.sync_full(&a, None, 1, Some("consumer"), Some("range"), &[]);
    assert_eq!(only_sync(&o).error, None);
    // A new member starts a rebalance: syncs of the old generation must rejoin.
    h.join("", "d", range("d"));
    let (_, o) = h.sync(&a, 1, &[]);
    assert_eq!(
        only_sync(&o).error,
        Some(ResponseError::RebalanceInProgress)
    );
}

#[test]
fn heartbeat_errors_are_kafkas() {
    let mut h = Harness::new();
    let ids = h.stable_three();
    let a = ids[0].clone();
    assert_eq!(h.heartbeat(&a, None, 1), None);
    assert_eq!(
        h.heartbeat("nobody", None, 1),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        h.heartbeat(&a, None, 0),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        h.heartbeat(&a, Some("unknown-instance"), 1),
        Some(ResponseError::UnknownMemberId)
    );
    h.join("", "d", range("d"));
    assert_eq!(
        h.heartbeat(&a, None, 1),
        Some(ResponseError::RebalanceInProgress)
    );
}

#[test]
fn a_static_member_with_a_stale_id_is_fenced() {
    let mut h = Harness::new();
    let (_, _) = h.join_static("", "i1", range("m"), false);
    let id = only_join(&h.tick_to(3_000)).member_id;
    let (_, o) = h.sync_full(&id, Some("i1"), 1, None, None, &[]);
    h.persist_all(&o);
    assert_eq!(h.heartbeat(&id, Some("i1"), 1), None);
    assert_eq!(
        h.heartbeat("i1-7-999", Some("i1"), 1),
        Some(ResponseError::FencedInstanceId)
    );
    let (_, o) = h.join_static("i1-7-999", "i1", range("m"), false);
    assert_eq!(only_join(&o).error, Some(ResponseError::FencedInstanceId));
}

#[test]
fn a_member_whose_session_expires_is_removed_and_the_group_rebalances() {
    let mut h = Harness::new();
    let ids = h.stable_three();
    let (a, b, c) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    // Generation 1 began at t=6000: sessions run to 16000 unless renewed.
    h.now_ms = 9_000;
    assert_eq!(h.heartbeat(&a, None, 1), None);
    assert_eq!(h.heartbeat(&b, None, 1), None);
    let outputs = h.tick_to(15_999);
    assert!(outputs.is_empty());
    assert!(h.group.has_member(&c));
    h.tick_to(16_000);
    assert!(!h.group.has_member(&c), "c missed its session");
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat(&a, None, 1),
        Some(ResponseError::RebalanceInProgress)
    );
    let (_, o) = h.join(&a, "a", range("a"));
    assert!(o.is_empty());
    let (_, o) = h.join(&b, "b", range("b"));
    let responses = join_responses(&o);
    assert_eq!(
        responses.len(),
        2,
        "everyone rejoined: the join phase ends at once"
    );
    assert!(responses
        .values()
        .all(|r| r.generation_id == 2 && r.error.is_none()));
}

#[test]
fn a_leave_triggers_a_rebalance_without_the_member() {
    let mut h = Harness::new();
    let ids = h.stable_three();
    let response = h.leave(&[(&ids[2], None), ("nobody", None)]);
    assert_eq!(response.error, None);
    assert_eq!(response.members[0].error, None);
    assert_eq!(
        response.members[1].error,
        Some(ResponseError::UnknownMemberId)
    );
    assert!(!h.group.has_member(&ids[2]));
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    h.join(&ids[0], "a", range("a"));
    let o = h.join(&ids[1], "b", range("b")).1;
    assert_eq!(join_responses(&o).len(), 2);
    assert_eq!(h.group.generation_id(), 2);
    assert_eq!(h.group.member_count(), 2);
}

#[test]
fn when_the_last_member_leaves_the_group_becomes_empty_and_is_persisted() {
    let mut h = Harness::new();
    h.join("", "a", range("a"));
    let id = only_join(&h.tick_to(3_000)).member_id;
    // Nobody is left to wait for: the join phase ends within the leave.
    let outputs = h.step(Input::Leave(LeaveRequest {
        request_id: 99,
        members: vec![LeavingMember {
            member_id: id,
            group_instance_id: None,
        }],
    }));
    let [Output::Persist { record, .. }, Output::Leave { .. }] = outputs.as_slice() else {
        panic!("{outputs:?}")
    };
    assert!(record.members.is_empty());
    assert_eq!(record.generation_id, 2);
    assert_eq!(h.group.state(), GroupState::Empty);
    assert_eq!(h.group.generation_id(), 2);
    // The next member waits out the initial delay again.
    h.join("", "b", range("b"));
    assert!(h.tick_to(5_999).is_empty());
    assert_eq!(only_join(&h.tick_to(6_000)).generation_id, 3);
}

#[test]
fn leaving_pending_and_static_members() {
    let mut h = Harness::new();
    let mut request = h.join_request("", "p", range("m"));
    request.require_known_member_id = true;
    let pending = only_join(&h.step(Input::Join(request))).member_id;
    let response = h.leave(&[(&pending, None)]);
    assert_eq!(response.members[0].error, None);
    let (_, o) = h.join(&pending, "p", range("m"));
    assert_eq!(only_join(&o).error, Some(ResponseError::UnknownMemberId));

    let (_, _) = h.join_static("", "i1", range("m"), false);
    let id = only_join(&h.tick_to(3_000)).member_id;
    let response = h.leave(&[("someone-else", Some("i1"))]);
    assert_eq!(
        response.members[0].error,
        Some(ResponseError::FencedInstanceId)
    );
    assert!(h.group.has_member(&id));
    let response = h.leave(&[("", Some("nope"))]);
    assert_eq!(
        response.members[0].error,
        Some(ResponseError::UnknownMemberId)
    );
    // By instance id alone, as the admin client removes static members.
    let response = h.leave(&[("", Some("i1"))]);
    assert_eq!(response.members[0].error, None);
    assert!(!h.group.has_member(&id));
}

#[test]
fn a_static_member_restarting_within_its_session_keeps_its_assignment_without_a_rebalance() {
    let mut h = Harness::new();
    let (_, _) = h.join_static("", "i1", range("s"), false);
    let (_, _) = h.join("", "d", range("d"));
    let responses = join_responses(&h.tick_to(6_000));
    let ids: Vec<String> = responses.values().map(|r| r.member_id.clone()).collect();
    let (s, d) = (ids[0].clone(), ids[1].clone());
    assert_eq!(h.group.leader_id(), Some(s.as_str()));
    h.sync(&d, 1, &[]);
    let (_, o) = h.sync_full(&s, Some("i1"), 1, None, None, &[(&s, "ps"), (&d, "pd")]);
    h.persist_all(&o);
    assert_eq!(h.group.state(), GroupState::Stable);

    // The static member restarts: it knows only its instance id.
    h.now_ms = 8_000;
    let (request_id, outputs) = h.join_static("", "i1", range("s"), false);
    let [Output::Persist { store_id, record }] = outputs.as_slice() else {
        panic!("{outputs:?}")
    };
    let new_id = h.group.static_member_id("i1").expect("mapped").to_string();
    assert_ne!(new_id, s);
    assert!(record
        .members
        .iter()
        .any(|m| m.member_id == new_id && m.assignment == "ps"));
    assert_eq!(h.group.state(), GroupState::Stable, "no rebalance");
    let outputs = h.step(Input::PersistCompleted {
        store_id: *store_id,
        error: None,
    });
    let response = &join_responses(&outputs)[&request_id];
    assert_eq!(response.error, None);
    assert_eq!(response.member_id, new_id);
    assert_eq!(response.generation_id, 1);
    assert_eq!(
        response.leader_id, s,
        "the old leader id keeps a pre-v9 leader from assigning"
    );
    assert!(response.members.is_empty());
    let (_, o) = h.sync_full(&new_id, Some("i1"), 1, None, None, &[]);
    assert_eq!(only_sync(&o).assignment, Bytes::from("ps"));
    assert_eq!(h.group.generation_id(), 1);
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(
        h.heartbeat(&s, Some("i1"), 1),
        Some(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        h.heartbeat(&s, None, 1),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(h.heartbeat(&new_id, Some("i1"), 1), None);
    assert_eq!(h.heartbeat(&d, None, 1), None);
}

#[test]
fn a_restarted_static_leader_on_v9_is_told_to_skip_assignment() {
    let mut h = Harness::new();
    let (_, _) = h.join_static("", "i1", range("s"), true);
    let s = only_join(&h.tick_to(3_000)).member_id;
    let (_, o) = h.sync_full(&s, Some("i1"), 1, None, None, &[(&s, "ps")]);
    h.persist_all(&o);
    let (request_id, outputs) = h.join_static("", "i1", range("s"), true);
    let outputs = h.persist_all(&outputs);
    let response = &join_responses(&outputs)[&request_id];
    assert!(response.skip_assignment);
    assert_eq!(response.leader_id, response.member_id);
    assert_eq!(response.members.len(), 1);
}

#[test]
fn a_failed_store_reverts_a_static_member_replacement() {
    let mut h = Harness::new();
    let (_, _) = h.join_static("", "i1", range("s"), false);
    let s = only_join(&h.tick_to(3_000)).member_id;
    let (_, o) = h.sync_full(&s, Some("i1"), 1, None, None, &[(&s, "ps")]);
    h.persist_all(&o);
    let (request_id, outputs) = h.join_static("", "i1", range("s"), false);
    let [Output::Persist { store_id, .. }] = outputs.as_slice() else {
        panic!()
    };
    let outputs = h.step(Input::PersistCompleted {
        store_id: *store_id,
        error: Some(ResponseError::NotCoordinator),
    });
    let response = &join_responses(&outputs)[&request_id];
    assert_eq!(response.error, Some(ResponseError::NotCoordinator));
    assert_eq!(response.member_id, UNKNOWN_MEMBER_ID);
    assert_eq!(h.group.static_member_id("i1"), Some(s.as_str()));
    assert_eq!(h.heartbeat(&s, Some("i1"), 1), None);
}

#[test]
fn a_static_member_changing_the_selected_protocol_triggers_a_rebalance() {
    let mut h = Harness::new();
    let (_, _) = h.join_static(
        "",
        "i1",
        protocols(&[("range", "r"), ("roundrobin", "rr")]),
        false,
    );
    let s = only_join(&h.tick_to(3_000)).member_id;
    let (_, o) = h.sync_full(&s, Some("i1"), 1, None, None, &[(&s, "ps")]);
    h.persist_all(&o);
    assert_eq!(h.group.protocol_name(), Some("range"));
    let (_, outputs) = h.join_static(
        "",
        "i1",
        protocols(&[("roundrobin", "rr"), ("range", "r")]),
        false,
    );
    assert!(outputs.iter().all(|o| !matches!(o, Output::Persist { .. })));
    // The only member rejoined, so the rebalance completes at once with the new choice.
    let response = only_join(&outputs);
    assert_eq!(response.generation_id, 2);
    assert_eq!(response.protocol_name.as_deref(), Some("roundrobin"));
}

#[test]
fn the_rebalance_timeout_evicts_a_member_that_does_not_rejoin() {
    let mut h = Harness::new();
    let ids = h.stable_three();
    let (a, b, c) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    assert_eq!(h.group.leader_id(), Some(a.as_str()));
    h.now_ms = 7_000;
    // The leader rejoining starts a rebalance (that is how it reacts to metadata changes).
    let (a_join, o) = h.join(&a, "a", range("a"));
    assert!(o.is_empty());
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    let (b_join, _) = h.join(&b, "b", range("b"));
    // c keeps heartbeating but never rejoins.
    for t in [10_000, 14_000, 18_000, 22_000, 26_000] {
        h.now_ms = t;
        assert_eq!(
            h.heartbeat(&c, None, 1),
            Some(ResponseError::RebalanceInProgress)
        );
    }
    assert!(h.tick_to(26_999).is_empty());
    let responses = join_responses(&h.tick_to(27_000));
    assert_eq!(responses.len(), 2);
    assert!(!h.group.has_member(&c));
    assert_eq!(responses[&a_join].members.len(), 2);
    assert_eq!(responses[&b_join].generation_id, 2);
    assert_eq!(
        h.heartbeat(&c, None, 1),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_member_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let mut h = Harness::new();
    h.join("", "a", range("a"));
    h.join("", "b", range("b"));
    let ids: Vec<String> = join_responses(&h.tick_to(6_000))
        .into_values()
        .map(|r| r.member_id)
        .collect();
    let leader = h.group.leader_id().expect("leader").to_string();
    let follower = ids
        .iter()
        .find(|i| **i != leader)
        .expect("follower")
        .clone();
    let (_, o) = h.sync(&leader, 1, &[]);
    h.persist_all(&o);
    assert_eq!(h.group.state(), GroupState::Stable);
    // Both stay alive; only the follower never syncs.
    for t in [12_000, 18_000, 24_000] {
        h.now_ms = t;
        assert_eq!(h.heartbeat(&leader, None, 1), None);
        assert_eq!(h.heartbeat(&follower, None, 1), None);
    }
    assert!(h.group.has_member(&follower));
    h.tick_to(6_000 + i64::from(REBALANCE_MS));
    assert!(!h.group.has_member(&follower));
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
}

#[test]
fn protocol_selection_takes_a_common_protocol_by_votes() {
    let mut h = Harness::new();
    h.join(
        "",
        "a",
        protocols(&[("range", "a"), ("roundrobin", "a"), ("sticky", "a")]),
    );
    h.join("", "b", protocols(&[("roundrobin", "b"), ("range", "b")]));
    h.join(
        "",
        "c",
        protocols(&[("sticky", "c"), ("range", "c"), ("roundrobin", "c")]),
    );
    // sticky is not supported by b; among range and roundrobin: a votes range, b roundrobin,
    // c range.
    let responses = join_responses(&h.tick_to(6_000));
    assert!(responses
        .values()
        .all(|r| r.protocol_name.as_deref() == Some("range")));
    let leader = responses
        .values()
        .find(|r| !r.members.is_empty())
        .expect("leader");
    assert!(
        leader.members.iter().all(|m| m.metadata.len() == 1),
        "metadata of the chosen protocol"
    );

    // A joiner that shares no protocol with every member, or another protocol type, is refused.
    let (_, o) = h.join("", "d", protocols(&[("sticky", "d")]));
    assert_eq!(
        only_join(&o).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let mut request = h.join_request("", "e", range("e"));
    request.protocol_type = "connect".to_string();
    assert_eq!(
        only_join(&h.step(Input::Join(request))).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let (_, o) = h.join("", "f", Vec::new());
    assert_eq!(
        only_join(&o).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
}

#[test]
fn an_empty_group_refuses_an_empty_protocol_list_or_type() {
    let mut h = Harness::new();
    let (_, o) = h.join("", "a", Vec::new());
    assert_eq!(
        only_join(&o).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let mut request = h.join_request("", "a", range("a"));
    request.protocol_type = String::new();
    assert_eq!(
        only_join(&h.step(Input::Join(request))).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
}

#[test]
fn session_timeouts_outside_the_brokers_bounds_are_refused() {
    let mut h = Harness::new();
    for timeout_ms in [5_999, 1_800_001] {
        let mut request = h.join_request("", "a", range("a"));
        request.session_timeout_ms = timeout_ms;
        let response = only_join(&h.step(Input::Join(request)));
        assert_eq!(response.error, Some(ResponseError::InvalidSessionTimeout));
    }
    for timeout_ms in [6_000, 1_800_000] {
        let mut request = h.join_request("", "a", range("a"));
        request.session_timeout_ms = timeout_ms;
        assert!(h.step(Input::Join(request)).is_empty());
    }
}

#[test]
fn group_max_size_turns_away_extra_members() {
    let mut h = Harness::with_config(GroupConfig {
        max_size: 2,
        ..GroupConfig::default()
    });
    h.join("", "a", range("a"));
    h.join("", "b", range("b"));
    let (_, o) = h.join("", "c", range("c"));
    let response = only_join(&o);
    assert_eq!(response.error, Some(ResponseError::GroupMaxSizeReached));
    assert_eq!(response.member_id, UNKNOWN_MEMBER_ID);
    assert_eq!(join_responses(&h.tick_to(6_000)).len(), 2);
    let (_, o) = h.join("", "c", range("c"));
    assert_eq!(
        only_join(&o).error,
        Some(ResponseError::GroupMaxSizeReached)
    );
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
}

#[test]
fn the_initial_delay_grows_while_members_keep_arriving() {
    let mut h = Harness::new();
    h.join("", "a", range("a"));
    h.now_ms = 2_000;
    h.join("", "b", range("b"));
    assert!(
        h.tick_to(3_000).is_empty(),
        "b arrived during the delay: wait one more"
    );
    assert!(h.tick_to(5_999).is_empty());
    assert_eq!(join_responses(&h.tick_to(6_000)).len(), 2);
}

#[test]
fn a_follower_rejoining_unchanged_in_a_stable_group_gets_the_generation_back() {
    let mut h = Harness::new();
    let ids = h.stable_three();
    let (_, o) = h.join(&ids[1], "b", range("b"));
    let response = only_join(&o);
    assert_eq!(response.error, None);
    assert_eq!(response.generation_id, 1);
    assert_eq!(h.group.state(), GroupState::Stable);
    // Changed metadata does rebalance.
    let (_, o) = h.join(&ids[1], "b", range("b2"));
    assert!(o.is_empty());
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
}

#[test]
fn offset_commits_are_checked_against_the_generation() {
    let mut h = Harness::new();
    assert_eq!(
        h.commit("", -1),
        Ok(()),
        "an empty group takes commits without membership"
    );
    let ids = h.stable_three();
    assert_eq!(h.commit(&ids[0], 1), Ok(()));
    assert_eq!(h.commit(&ids[0], 0), Err(ResponseError::IllegalGeneration));
    assert_eq!(h.commit("nobody", 1), Err(ResponseError::UnknownMemberId));
    assert_eq!(h.commit("", -1), Err(ResponseError::UnknownMemberId));
    assert_eq!(h.group.validate_generation("", -1, None, true), Ok(()));
    h.join(&ids[0], "a", range("a"));
    assert_eq!(
        h.commit(&ids[1], 1),
        Ok(()),
        "commits go on while preparing"
    );
    h.join(&ids[1], "b", range("b"));
    h.join(&ids[2], "c", range("c"));
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
    assert_eq!(
        h.commit(&ids[1], 2),
        Err(ResponseError::RebalanceInProgress)
    );
}

#[test]
fn unloading_answers_parked_requests_with_not_coordinator() {
    let mut h = Harness::new();
    let (request_id, _) = h.join("", "a", range("a"));
    let outputs = h.step(Input::Unload);
    let response = &join_responses(&outputs)[&request_id];
    assert_eq!(response.error, Some(ResponseError::NotCoordinator));
    assert_eq!(h.group.state(), GroupState::Dead);
    let (_, o) = h.join("", "a", range("a"));
    assert_eq!(
        only_join(&o).error,
        Some(ResponseError::CoordinatorNotAvailable)
    );
    assert_eq!(
        h.heartbeat("x", None, 1),
        Some(ResponseError::CoordinatorNotAvailable)
    );
    assert_eq!(
        h.leave(&[("x", None)]).error,
        Some(ResponseError::CoordinatorNotAvailable)
    );
}

#[test]
fn a_group_reloaded_from_its_record_is_stable_with_the_same_assignment() {
    let mut h = Harness::new();
    h.join("", "a", range("a"));
    h.join_static("", "i1", range("s"), false);
    let ids: Vec<String> = join_responses(&h.tick_to(6_000))
        .into_values()
        .map(|r| r.member_id)
        .collect();
    let leader = h.group.leader_id().expect("leader").to_string();
    let (_, o) = h.sync(&leader, 1, &[(&ids[0], "p0"), (&ids[1], "p1")]);
    let [Output::Persist { record, .. }] = o.as_slice() else {
        panic!()
    };
    let record = record.clone();
    h.persist_all(&o);
    let (group, outputs) =
        Group::from_record("g", GroupConfig::default(), 8, 50_000, record).expect("a valid record");
    assert!(outputs.is_empty());
    assert_eq!(group.state(), GroupState::Stable);
    assert_eq!(group.generation_id(), 1);
    assert_eq!(group.leader_id(), Some(leader.as_str()));
    assert_eq!(
        group.assignment(&ids[1]).expect("member").0,
        Bytes::from("p1")
    );
    assert_eq!(group.static_member_id("i1"), Some(ids[1].as_str()));
    assert_eq!(
        group.next_deadline_ms(),
        Some(50_000 + i64::from(SESSION_MS))
    );
}

#[test]
fn a_member_may_rejoin_before_its_parked_join_is_answered() {
    let mut h = Harness::new();
    let (first, _) = h.join("", "a", range("a"));
    let id = h.group.member_ids().next().expect("a member").to_string();
    let (second, o) = h.join(&id, "a", range("a"));
    let superseded = only_join(&o);
    assert_eq!(superseded.error, Some(ResponseError::RebalanceInProgress));
    assert!(join_responses(&o).contains_key(&first));
    let responses = join_responses(&h.tick_to(3_000));
    assert_eq!(responses[&second].error, None);
}

#[test]
fn a_new_member_parked_longer_than_the_join_timeout_is_dropped() {
    let mut h = Harness::new();
    let mut request = h.join_request("", "a", range("a"));
    request.rebalance_timeout_ms = 600_000;
    h.step(Input::Join(request));
    let a = only_join(&h.tick_to(3_000)).member_id;
    let (_, o) = h.sync(&a, 1, &[]);
    h.persist_all(&o);
    // b joins; a never rejoins but stays alive, so the join phase may last 10 minutes.
    h.now_ms = 4_000;
    let (b_join, o) = h.join("", "b", range("b"));
    assert!(o.is_empty());
    let mut t = 4_000;
    let mut outputs = Vec::new();
    while t < 4_000 + i64::from(NEW_MEMBER_JOIN_TIMEOUT_MS) {
        t += 5_000;
        outputs.extend(h.tick_to(t));
        assert_eq!(
            h.heartbeat(&a, None, 1),
            Some(ResponseError::RebalanceInProgress)
        );
    }
    let response = &join_responses(&outputs)[&b_join];
    assert_eq!(response.error, Some(ResponseError::UnknownMemberId));
    assert_eq!(h.group.member_count(), 1);
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
}

#[test]
fn a_static_member_named_by_member_id_alone_leaves_as_in_kafka() {
    // Kafka's broker checks the instance id only when the request carries one; static
    // clients simply do not send LeaveGroup when they close.
    let mut h = Harness::new();
    let (_, _) = h.join_static("", "i1", range("m"), false);
    let id = only_join(&h.tick_to(3_000)).member_id;
    let response = h.leave(&[(&id, None)]);
    assert_eq!(response.members[0].error, None);
    assert!(!h.group.has_member(&id));
    assert_eq!(h.group.static_member_id("i1"), None);
}

// ---- property test: random members against Kafka's invariants ----

#[derive(Debug, Clone)]
enum Action {
    Join {
        client: usize,
        variant: usize,
    },
    Sync {
        client: usize,
    },
    Heartbeat {
        client: usize,
    },
    Leave {
        client: usize,
    },
    Commit {
        client: usize,
    },
    Restart {
        client: usize,
    },
    Persist {
        ok: bool,
    },
    Tick {
        advance_ms: i64,
    },
    /// Every client behaves for a round: joins, waits out the join phase, syncs.
    Converge,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..4usize, prop_oneof![6 => Just(0usize), 1 => Just(1), 2 => Just(2), 1 => Just(3)])
            .prop_map(|(client, variant)| Action::Join { client, variant }),
        5 => (0..4usize).prop_map(|client| Action::Sync { client }),
        4 => (0..4usize).prop_map(|client| Action::Heartbeat { client }),
        1 => (0..4usize).prop_map(|client| Action::Leave { client }),
        1 => (0..4usize).prop_map(|client| Action::Commit { client }),
        1 => (0..4usize).prop_map(|client| Action::Restart { client }),
        4 => Just(Action::Persist { ok: true }),
        1 => Just(Action::Persist { ok: false }),
        4 => (0..4_000i64).prop_map(|advance_ms| Action::Tick { advance_ms }),
        1 => (0..30_000i64).prop_map(|advance_ms| Action::Tick { advance_ms }),
        2 => Just(Action::Converge),
    ]
}

/// One simulated consumer; client 3 is static.
#[derive(Debug, Clone, Default)]
struct Client {
    member_id: String,
    generation_id: i32,
    /// The members this client must assign to, when it leads the generation.
    leads: Option<Vec<String>>,
}

struct Sent {
    client: usize,
    kind: &'static str,
    member_id: String,
    /// False once the client restarted: answers are no longer acted on.
    live: bool,
}

struct Model {
    h: Harness,
    clients: Vec<Client>,
    open: BTreeMap<RequestId, Sent>,
    answered: BTreeSet<RequestId>,
    stores: Vec<StoreId>,
    /// (generation, member id) -> client told it holds that id in that generation.
    holders: BTreeMap<(i32, String), usize>,
    /// When each member id last had an answer that renews its session.
    last_contact_ms: BTreeMap<String, i64>,
    max_generation: i32,
}

fn variant_protocols(variant: usize) -> Vec<Protocol> {
    match variant {
        0 => protocols(&[("range", "x")]),
        1 => protocols(&[("range", "y")]),
        2 => protocols(&[("roundrobin", "x"), ("range", "x")]),
        _ => protocols(&[("roundrobin", "z")]),
    }
}

fn instance(client: usize) -> Option<String> {
    (client == 3).then(|| "static-3".to_string())
}

fn request_id_of(input: &Input) -> RequestId {
    match input {
        Input::Join(r) => r.request_id,
        Input::Sync(r) => r.request_id,
        Input::Heartbeat(r) => r.request_id,
        Input::Leave(r) => r.request_id,
        Input::OffsetCommit(r) => r.request_id,
        other => panic!("not a request: {other:?}"),
    }
}

impl Model {
    fn new() -> Self {
        Model {
            h: Harness::new(),
            clients: vec![Client::default(); 4],
            open: BTreeMap::new(),
            answered: BTreeSet::new(),
            stores: Vec::new(),
            holders: BTreeMap::new(),
            last_contact_ms: BTreeMap::new(),
            max_generation: 0,
        }
    }

    fn send(&mut self, client: usize, kind: &'static str, input: Input) {
        let request_id = request_id_of(&input);
        let member_id = self.clients[client].member_id.clone();
        let sent = Sent {
            client,
            kind,
            member_id,
            live: true,
        };
        assert!(self.open.insert(request_id, sent).is_none());
        let outputs = self.h.step(input);
        self.absorb(outputs, Some(request_id));
    }

    fn run(&mut self, action: Action) {
        match action {
            Action::Join { client, variant } => {
                let c = &self.clients[client];
                let mut request = self.h.join_request(
                    &c.member_id,
                    &format!("c{client}"),
                    variant_protocols(variant),
                );
                request.group_instance_id = instance(client);
                request.require_known_member_id = client % 2 == 0;
                request.session_timeout_ms = 6_000 + 2_000 * client as i32;
                request.rebalance_timeout_ms = 5_000 + 5_000 * client as i32;
                self.send(client, "join", Input::Join(request));
            }
            Action::Sync { client } => {
                let c = self.clients[client].clone();
                let assignments = c
                    .leads
                    .iter()
                    .flatten()
                    .map(|m| (m.clone(), Bytes::from(format!("{}:{m}", c.generation_id))))
                    .collect();
                let request = SyncRequest {
                    request_id: self.h.request_id(),
                    member_id: c.member_id.clone(),
                    group_instance_id: instance(client),
                    generation_id: c.generation_id,
                    protocol_type: Some("consumer".to_string()),
                    protocol_name: None,
                    assignments,
                };
                self.send(client, "sync", Input::Sync(request));
            }
            Action::Heartbeat { client } => {
                let c = self.clients[client].clone();
                let request = HeartbeatRequest {
                    request_id: self.h.request_id(),
                    member_id: c.member_id,
                    group_instance_id: instance(client),
                    generation_id: c.generation_id,
                };
                self.send(client, "heartbeat", Input::Heartbeat(request));
            }
            Action::Leave { client } => {
                let c = self.clients[client].clone();
                let request = LeaveRequest {
                    request_id: self.h.request_id(),
                    members: vec![LeavingMember {
                        member_id: c.member_id,
                        group_instance_id: instance(client),
                    }],
                };
                self.send(client, "leave", Input::Leave(request));
                self.clients[client] = Client::default();
            }
            Action::Commit { client } => {
                let c = self.clients[client].clone();
                let request = OffsetCommitRequest {
                    request_id: self.h.request_id(),
                    member_id: c.member_id,
                    group_instance_id: instance(client),
                    generation_id: c.generation_id,
                };
                self.send(client, "commit", Input::OffsetCommit(request));
            }
            Action::Restart { client } => {
                // A new incarnation forgets its member id (a static member keeps its
                // instance id); the old incarnation's answers are not acted on.
                for sent in self.open.values_mut().filter(|s| s.client == client) {
                    sent.live = false;
                }
                self.clients[client] = Client::default();
            }
            Action::Persist { ok } => {
                if !self.stores.is_empty() {
                    let store_id = self.stores.remove(0);
                    let error = (!ok).then_some(ResponseError::NotCoordinator);
                    let outputs = self.h.step(Input::PersistCompleted { store_id, error });
                    if !ok {
                        // A reverted static replacement renews the old id's session.
                        self.touch_all_members();
                    }
                    self.absorb(outputs, None);
                }
            }
            Action::Converge => {
                for _ in 0..2 {
                    for client in 0..self.clients.len() {
                        let waiting = self.open.values().any(|s| s.live && s.client == client);
                        if !waiting && self.h.group.state() != GroupState::Stable {
                            self.run(Action::Join { client, variant: 0 });
                        }
                    }
                }
                if let Some(deadline_ms) = self.h.group.next_deadline_ms() {
                    if self.h.group.state() == GroupState::PreparingRebalance {
                        self.run(Action::Tick {
                            advance_ms: (deadline_ms - self.h.now_ms).max(0),
                        });
                    }
                }
                for client in 0..self.clients.len() {
                    self.run(Action::Sync { client });
                }
                while !self.stores.is_empty() {
                    self.run(Action::Persist { ok: true });
                }
            }
            Action::Tick { advance_ms } => {
                let now_ms = self.h.now_ms + advance_ms;
                let outputs = self.h.tick_to(now_ms);
                self.absorb(outputs, None);
                self.check_sessions();
            }
        }
        self.check();
    }

    fn touch_all_members(&mut self) {
        let now_ms = self.h.now_ms;
        for id in self.h.group.member_ids() {
            self.last_contact_ms.insert(id.to_string(), now_ms);
        }
    }

    /// Acts on a step's outputs; `current` is the request that step handled, if any.
    fn absorb(&mut self, outputs: Vec<Output>, current: Option<RequestId>) {
        let now_ms = self.h.now_ms;
        if self.h.group.generation_id() > self.max_generation {
            // A completed join phase renews every member's session, rejoined or not.
            self.touch_all_members();
        }
        for output in outputs {
            let request_id = match &output {
                Output::Persist { store_id, .. } => {
                    self.stores.push(*store_id);
                    continue;
                }
                Output::Join { request_id, .. }
                | Output::Sync { request_id, .. }
                | Output::Heartbeat { request_id, .. }
                | Output::Leave { request_id, .. }
                | Output::OffsetCommit { request_id, .. } => *request_id,
            };
            assert!(
                self.answered.insert(request_id),
                "request {request_id} answered twice"
            );
            let sent = self
                .open
                .remove(&request_id)
                .expect("an answer to a request sent");
            let parked = current != Some(request_id);
            let renews = match &output {
                Output::Join { response, .. } => response.error.is_none(),
                Output::Sync { response, .. } => response.error.is_none() || parked,
                Output::Heartbeat { error, .. } => {
                    matches!(error, None | Some(ResponseError::RebalanceInProgress))
                }
                Output::OffsetCommit { result, .. } => result.is_ok(),
                _ => false,
            };
            if renews {
                let member_id = match &output {
                    Output::Join { response, .. } => response.member_id.clone(),
                    _ => sent.member_id.clone(),
                };
                self.last_contact_ms.insert(member_id, now_ms);
            }
            if !sent.live {
                continue;
            }
            let client = sent.client;
            let kind = sent.kind;
            let c = &mut self.clients[client];
            match output {
                Output::Join { response, .. } => {
                    assert_eq!(kind, "join");
                    match response.error {
                        None => {
                            let previous = self.holders.insert(
                                (response.generation_id, response.member_id.clone()),
                                client,
                            );
                            assert!(
                                previous.is_none_or(|p| p == client),
                                "two clients hold {} in generation {}",
                                response.member_id,
                                response.generation_id
                            );
                            c.member_id = response.member_id.clone();
                            c.generation_id = response.generation_id;
                            c.leads = (response.leader_id == response.member_id
                                && !response.skip_assignment)
                                .then(|| {
                                    response
                                        .members
                                        .iter()
                                        .map(|m| m.member_id.clone())
                                        .collect()
                                });
                        }
                        Some(ResponseError::MemberIdRequired) => c.member_id = response.member_id,
                        Some(ResponseError::UnknownMemberId | ResponseError::FencedInstanceId) => {
                            *c = Client::default();
                        }
                        Some(_) => {}
                    }
                }
                Output::Sync { response, .. } => {
                    assert_eq!(kind, "sync");
                    if response.error.is_none() {
                        let expected = format!("{}:", c.generation_id);
                        assert!(
                            response.assignment.is_empty()
                                || response.assignment.starts_with(expected.as_bytes()),
                            "an assignment from another generation: {:?}",
                            response.assignment
                        );
                    } else if matches!(
                        response.error,
                        Some(ResponseError::UnknownMemberId | ResponseError::FencedInstanceId)
                    ) {
                        *c = Client::default();
                    }
                }
                Output::Heartbeat { error, .. } => {
                    assert_eq!(kind, "heartbeat");
                    if matches!(
                        error,
                        Some(ResponseError::UnknownMemberId | ResponseError::FencedInstanceId)
                    ) {
                        *c = Client::default();
                    }
                }
                Output::OffsetCommit { .. } => assert_eq!(kind, "commit"),
                Output::Leave { .. } => assert_eq!(kind, "leave"),
                Output::Persist { .. } => unreachable!(),
            }
        }
    }

    fn check(&mut self) {
        let group = &self.h.group;
        let generation_id = group.generation_id();
        assert!(
            generation_id >= self.max_generation,
            "generations never decrease"
        );
        self.max_generation = generation_id;
        if let Some(leader) = group.leader_id() {
            assert!(group.has_member(leader), "the leader is a member");
        }
        if group.state() == GroupState::Stable {
            for member_id in group.member_ids() {
                let (assignment, from) = group.assignment(member_id).expect("a member");
                assert_eq!(
                    from,
                    Some(generation_id),
                    "{member_id} holds an old assignment"
                );
                let prefix = format!("{generation_id}:");
                assert!(assignment.is_empty() || assignment.starts_with(prefix.as_bytes()));
            }
        }
    }

    /// After a tick, a Stable group holds no member that has been silent past its session.
    fn check_sessions(&self) {
        let group = &self.h.group;
        if group.state() != GroupState::Stable {
            return;
        }
        for member_id in group.member_ids() {
            if group.is_awaiting(member_id) {
                continue;
            }
            let session_ms = i64::from(group.session_timeout_ms(member_id).expect("a member"));
            let last_ms = self.last_contact_ms.get(member_id).copied().unwrap_or(0);
            assert!(
                self.h.now_ms - last_ms < session_ms,
                "{member_id} silent since {last_ms}, now {}, session {session_ms}",
                self.h.now_ms
            );
        }
    }

    /// Every request is answered once the stores complete and time runs out.
    fn drain(&mut self) {
        for _ in 0..4 {
            while !self.stores.is_empty() {
                self.run(Action::Persist { ok: true });
            }
            self.run(Action::Tick {
                advance_ms: 3_600_000,
            });
        }
        let unanswered: Vec<RequestId> = (1..=self.h.next_request)
            .filter(|id| !self.answered.contains(id))
            .collect();
        assert!(unanswered.is_empty(), "never answered: {unanswered:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_members_keep_kafkas_invariants(actions in proptest::collection::vec(action(), 1..120)) {
        let mut model = Model::new();
        for action in actions {
            model.run(action);
        }
        model.drain();
    }
}

/// Found by ci/differential against Kafka 4.1: the last member leaves while another client
/// still holds a MEMBER_ID_REQUIRED id it never joined with. Kafka's rebalance timer (the
/// members' largest timeout, 0 with none left) fires at once and the group is Empty; the
/// pending id must not hold the group in PreparingRebalance until a later tick.
#[test]
fn the_last_member_leaving_empties_the_group_despite_a_pending_member() {
    let mut h = Harness::new();
    let mut pending = h.join_request("", "other", range("m"));
    pending.require_known_member_id = true;
    let pending = only_join(&h.step(Input::Join(pending)));
    assert_eq!(pending.error, Some(ResponseError::MemberIdRequired));

    let (_, _) = h.join("", "client", range("m"));
    let joined = only_join(&h.tick_to(3_000));
    assert_eq!(joined.error, None);
    let member = joined.member_id.clone();
    let (_, outputs) = h.sync(&member, joined.generation_id, &[(&member, "a")]);
    assert_eq!(only_sync(&h.persist_all(&outputs)).error, None);
    assert_eq!(h.group.state(), GroupState::Stable);

    let response = h.leave(&[(&member, None)]);
    assert_eq!(response.error, None);
    assert_eq!(h.group.state(), GroupState::Empty);
}
