//! A worker's membership in its `connect` group over the classic group protocol:
//! FindCoordinator, JoinGroup (parked by the coordinator until every member rejoined),
//! SyncGroup, Heartbeat and LeaveGroup, through our client's connections (Kafka's
//! `WorkerCoordinator` without the assignment, which the herder makes).

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use runnel_client::kafka::conn::Connection;
use runnel_client::kafka::coordinator::find_coordinator;
use runnel_client::kafka::error::ResponseError;
use runnel_client::kafka::{Cluster, KafkaError};

use super::protocol::PROTOCOL_TYPE;

/// Bound on the members a JoinGroup answer may name that the leader will assign to.
pub const MAX_MEMBERS: usize = 10_000;

/// The group settings, by Kafka's names.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// `group.id`
    pub group_id: String,
    /// `session.timeout.ms`
    pub session_timeout_ms: i32,
    /// `rebalance.timeout.ms`
    pub rebalance_timeout_ms: i32,
    /// `heartbeat.interval.ms`
    pub heartbeat_interval_ms: u64,
}

/// A JoinGroup's outcome.
#[derive(Debug, Clone)]
pub struct Joined {
    pub generation: i32,
    pub member_id: String,
    pub leader_id: String,
    pub protocol: String,
    /// Every member's metadata, given to the leader only.
    pub members: Vec<(String, Vec<u8>)>,
}

/// The group membership of one worker.
pub struct Member {
    cluster: Cluster,
    config: MemberConfig,
    conn: Option<Connection>,
    pub member_id: String,
    pub generation: i32,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn broker_error(code: i16, what: &str) -> Result<(), KafkaError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(e) => Err(KafkaError::broker(e, what.to_string(), None)),
    }
}

impl Member {
    pub fn new(cluster: Cluster, config: MemberConfig) -> Member {
        assert!(config.heartbeat_interval_ms > 0);
        Member {
            cluster,
            config,
            conn: None,
            member_id: String::new(),
            generation: -1,
        }
    }

    /// The coordinator's connection, found anew when lost. Its request timeout covers a
    /// JoinGroup parked for a whole rebalance.
    async fn coordinator(&mut self) -> Result<Connection, KafkaError> {
        if let Some(c) = self.conn.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let broker = find_coordinator(&self.cluster, &self.config.group_id).await?;
        let mut settings = self.cluster.config().connection.clone();
        settings.request_timeout_ms = settings
            .request_timeout_ms
            .max(self.config.rebalance_timeout_ms.max(0) as u64 + 5_000);
        let conn = Connection::connect(&broker.addr(), settings).await?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the coordinator after an error that says it moved or is unreachable.
    pub fn lose_coordinator(&mut self) {
        self.conn = None;
    }

    /// Joins with `protocols` (name and metadata, in preference order).
    pub async fn join(&mut self, protocols: &[(&str, Vec<u8>)]) -> Result<Joined, KafkaError> {
        // KIP-394: the first JoinGroup is answered with a member id to join again with.
        for _ in 0..2 {
            let conn = self.coordinator().await?;
            let member_id = self.member_id.clone();
            let cfg = self.config.clone();
            let response = conn
                .call(|version| {
                    let request = JoinGroupRequest::default()
                        .with_group_id(GroupId(str_bytes(&cfg.group_id)))
                        .with_session_timeout_ms(cfg.session_timeout_ms)
                        .with_rebalance_timeout_ms(cfg.rebalance_timeout_ms)
                        .with_member_id(str_bytes(&member_id))
                        .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
                        .with_protocols(
                            protocols
                                .iter()
                                .map(|(name, metadata)| {
                                    JoinGroupRequestProtocol::default()
                                        .with_name(str_bytes(name))
                                        .with_metadata(bytes::Bytes::from(metadata.clone()))
                                })
                                .collect(),
                        );
                    if version >= 8 {
                        request.with_reason(Some(StrBytes::from_static_str("rebalance")))
                    } else {
                        request
                    }
                })
                .await?;
            match ResponseError::try_from_code(response.error_code) {
                Some(ResponseError::MemberIdRequired) => {
                    self.member_id = response.member_id.to_string();
                    continue;
                }
                Some(ResponseError::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                _ => {}
            }
            broker_error(response.error_code, "join the connect group")?;
            self.member_id = response.member_id.to_string();
            self.generation = response.generation_id;
            if response.members.len() > MAX_MEMBERS {
                return Err(KafkaError::Protocol {
                    addr: conn.addr().to_string(),
                    reason: format!("{} members in one group", response.members.len()),
                });
            }
            return Ok(Joined {
                generation: response.generation_id,
                member_id: self.member_id.clone(),
                leader_id: response.leader.to_string(),
                protocol: response
                    .protocol_name
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                members: response
                    .members
                    .into_iter()
                    .map(|m| (m.member_id.to_string(), m.metadata.to_vec()))
                    .collect(),
            });
        }
        Err(KafkaError::broker(
            ResponseError::UnknownMemberId,
            "join the connect group",
            Some("the coordinator kept refusing the member id"),
        ))
    }

    /// SyncGroup: the leader hands in every member's assignment; all get their own.
    pub async fn sync(
        &mut self,
        protocol: &str,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<u8>, KafkaError> {
        let conn = self.coordinator().await?;
        let (group, member, generation) = (
            self.config.group_id.clone(),
            self.member_id.clone(),
            self.generation,
        );
        let response = conn
            .call(|version| {
                let request = SyncGroupRequest::default()
                    .with_group_id(GroupId(str_bytes(&group)))
                    .with_generation_id(generation)
                    .with_member_id(str_bytes(&member))
                    .with_assignments(
                        assignments
                            .into_iter()
                            .map(|(m, a)| {
                                SyncGroupRequestAssignment::default()
                                    .with_member_id(str_bytes(&m))
                                    .with_assignment(bytes::Bytes::from(a))
                            })
                            .collect(),
                    );
                if version >= 5 {
                    request
                        .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
                        .with_protocol_name(Some(str_bytes(protocol)))
                } else {
                    request
                }
            })
            .await?;
        broker_error(response.error_code, "sync the connect group")?;
        Ok(response.assignment.to_vec())
    }

    /// One heartbeat; REBALANCE_IN_PROGRESS and the generation errors come back as errors
    /// for the caller to rejoin on.
    pub async fn heartbeat(&mut self) -> Result<(), KafkaError> {
        let conn = self.coordinator().await?;
        let (group, member, generation) = (
            self.config.group_id.clone(),
            self.member_id.clone(),
            self.generation,
        );
        let response = conn
            .call(|_| {
                HeartbeatRequest::default()
                    .with_group_id(GroupId(str_bytes(&group)))
                    .with_generation_id(generation)
                    .with_member_id(str_bytes(&member))
            })
            .await?;
        broker_error(response.error_code, "heartbeat to the connect group")
    }

    /// Leaves the group, so the others rebalance without waiting for the session timeout.
    pub async fn leave(&mut self) -> Result<(), KafkaError> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let conn = self.coordinator().await?;
        let (group, member) = (self.config.group_id.clone(), self.member_id.clone());
        let response = conn
            .call(|version| {
                let request =
                    LeaveGroupRequest::default().with_group_id(GroupId(str_bytes(&group)));
                if version >= 3 {
                    request.with_members(vec![
                        MemberIdentity::default().with_member_id(str_bytes(&member))
                    ])
                } else {
                    request.with_member_id(str_bytes(&member))
                }
            })
            .await?;
        self.member_id.clear();
        self.generation = -1;
        broker_error(response.error_code, "leave the connect group")
    }

    pub fn heartbeat_interval_ms(&self) -> u64 {
        self.config.heartbeat_interval_ms
    }
}
