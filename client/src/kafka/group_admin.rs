//! The admin client's consumer-group calls: list, describe and delete groups, and read,
//! set and delete their committed offsets.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest, GroupId,
    ListGroupsRequest, OffsetDeleteRequest,
};
use runnel_protocol::kafka::{topic_name, ResponseError};
use tokio::time::Instant;

use super::admin::Admin;
use super::cluster::{BrokerInfo, TopicPartition};
use super::conn::Connection;
use super::coordinator::{
    self, is_retriable_at_coordinator, needs_new_coordinator, str_bytes, CommittedOffset, Committer,
};
use super::error::{check, KafkaError};
use super::group::{decode_assignment, CONSUMER_PROTOCOL_TYPE};

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    /// "consumer" for consumer groups, "connect" for Connect workers, ...
    pub protocol_type: String,
    /// Empty, PreparingRebalance, CompletingRebalance, Stable, Dead (ListGroups v4+).
    pub state: Option<String>,
    /// classic or consumer (ListGroups v5+).
    pub group_type: Option<String>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    /// The protocol the group chose: the assignor, for consumer groups.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's partitions, when it is a consumer and its assignment can be read.
    pub assignment: Vec<TopicPartition>,
}

impl Admin {
    /// The broker that coordinates `group`.
    pub async fn find_coordinator(&self, group: &str) -> Result<BrokerInfo, KafkaError> {
        coordinator::find_coordinator(self.cluster(), group).await
    }

    /// Runs `op` against the coordinator of `group`, finding it again and retrying while
    /// it moves or loads, for at most one request timeout.
    async fn at_coordinator<T, F, Fut>(&self, group: &str, mut op: F) -> Result<T, KafkaError>
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = Result<T, KafkaError>>,
    {
        let config = self.cluster().config();
        let deadline = Instant::now() + Duration::from_millis(config.connection.request_timeout_ms);
        let backoff = Duration::from_millis(config.retry_backoff_ms.max(1));
        loop {
            let attempt = async {
                let found = self.find_coordinator(group).await?;
                let conn = coordinator::connect(self.cluster(), &found, None).await?;
                op(conn).await
            };
            match attempt.await {
                Err(e)
                    if is_retriable_at_coordinator(&e) && Instant::now() + backoff < deadline =>
                {
                    // The next round asks FindCoordinator again, so a moved coordinator is found.
                    tracing::debug!(group, error = %e, "coordinator call failed; retrying");
                    tokio::time::sleep(backoff).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// Every group of every broker, sorted by id; with `states`, only groups in one of
    /// them (Kafka's state names, compared ignoring case).
    pub async fn list_groups(&self, states: &[String]) -> Result<Vec<ListedGroup>, KafkaError> {
        let metadata = self.cluster().metadata(Some(&[]), false).await?;
        let mut groups: BTreeMap<String, ListedGroup> = BTreeMap::new();
        for broker in &metadata.brokers {
            let conn = self.cluster().connection(broker.node_id).await?;
            let mut filtered_by_broker = false;
            let response = conn
                .call(|version| {
                    if version >= 4 {
                        filtered_by_broker = true;
                        ListGroupsRequest::default()
                            .with_states_filter(states.iter().map(|s| str_bytes(s)).collect())
                    } else {
                        ListGroupsRequest::default()
                    }
                })
                .await?;
            check(
                response.error_code,
                || format!("list groups of broker {}", broker.node_id),
                None,
            )?;
            for g in response.groups {
                let state = (!g.group_state.is_empty()).then(|| g.group_state.to_string());
                if !states.is_empty() && !filtered_by_broker {
                    // A broker before ListGroups v4 cannot filter; without states, keep none.
                    let keep = state
                        .as_deref()
                        .is_some_and(|s| states.iter().any(|w| w.eq_ignore_ascii_case(s)));
                    if !keep {
                        continue;
                    }
                }
                let id = g.group_id.as_str().to_string();
                groups.insert(
                    id.clone(),
                    ListedGroup {
                        group_id: id,
                        protocol_type: g.protocol_type.to_string(),
                        state,
                        group_type: (!g.group_type.is_empty()).then(|| g.group_type.to_string()),
                    },
                );
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Describes one group: state, chosen protocol (the assignor), members and their
    /// assignments; classic groups through DescribeGroups, KIP-848 consumer groups through
    /// ConsumerGroupDescribe. A group that does not exist is GROUP_ID_NOT_FOUND (or, from
    /// brokers before DescribeGroups v6, state "Dead" with no members).
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, KafkaError> {
        match self.describe_classic_group(group).await {
            Err(e) if e.code() == Some(ResponseError::GroupIdNotFound) => {
                match self.describe_consumer_group(group).await {
                    // A broker without KIP-848 groups: the classic answer stands.
                    Err(
                        KafkaError::UnsupportedApi { .. } | KafkaError::UnsupportedVersion { .. },
                    ) => Err(e),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// A KIP-848 consumer group, through ConsumerGroupDescribe.
    async fn describe_consumer_group(&self, group: &str) -> Result<GroupDescription, KafkaError> {
        self.at_coordinator(group, |conn| async move {
            let response = conn
                .call(|_| {
                    ConsumerGroupDescribeRequest::default()
                        .with_group_ids(vec![GroupId(str_bytes(group))])
                })
                .await?;
            let described = response
                .groups
                .into_iter()
                .find(|g| g.group_id.as_str() == group)
                .ok_or_else(|| KafkaError::Protocol {
                    addr: conn.addr().to_string(),
                    reason: format!("ConsumerGroupDescribe did not answer for group {group:?}"),
                })?;
            check(
                described.error_code,
                || format!("describe group {group:?}"),
                described.error_message.as_ref().map(|m| m.as_str()),
            )?;
            let members = described
                .members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.instance_id.map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: m
                        .assignment
                        .topic_partitions
                        .iter()
                        .flat_map(|t| {
                            t.partitions
                                .iter()
                                .map(|p| TopicPartition::new(t.topic_name.as_str(), *p))
                        })
                        .collect(),
                })
                .collect();
            Ok(GroupDescription {
                group_id: group.to_string(),
                state: described.group_state.to_string(),
                protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
                protocol: described.assignor_name.to_string(),
                members,
            })
        })
        .await
    }

    async fn describe_classic_group(&self, group: &str) -> Result<GroupDescription, KafkaError> {
        self.at_coordinator(group, |conn| async move {
            let response = conn
                .call(|_| {
                    DescribeGroupsRequest::default()
                        .with_groups(vec![GroupId(str_bytes(group))])
                })
                .await?;
            let described = response
                .groups
                .into_iter()
                .find(|g| g.group_id.as_str() == group)
                .ok_or_else(|| KafkaError::Protocol {
                    addr: conn.addr().to_string(),
                    reason: format!("DescribeGroups did not answer for group {group:?}"),
                })?;
            check(
                described.error_code,
                || format!("describe group {group:?}"),
                described.error_message.as_ref().map(|m| m.as_str()),
            )?;
            let is_consumer = described.protocol_type.as_str() == CONSUMER_PROTOCOL_TYPE;
            let members = described
                .members
                .into_iter()
                .map(|m| {
                    let assignment = if is_consumer {
                        decode_assignment(&m.member_assignment).unwrap_or_else(|e| {
                            tracing::debug!(error = %e, member = %m.member_id.as_str(), "unreadable assignment");
                            Vec::new()
                        })
                    } else {
                        Vec::new()
                    };
                    MemberDescription {
                        member_id: m.member_id.to_string(),
                        group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                        client_id: m.client_id.to_string(),
                        client_host: m.client_host.to_string(),
                        assignment,
                    }
                })
                .collect();
            Ok(GroupDescription {
                group_id: group.to_string(),
                state: described.group_state.to_string(),
                protocol_type: described.protocol_type.to_string(),
                protocol: described.protocol_data.to_string(),
                members,
            })
        })
        .await
    }

    /// Describes several groups, each at its own coordinator.
    pub async fn describe_groups(
        &self,
        groups: &[String],
    ) -> Vec<(String, Result<GroupDescription, KafkaError>)> {
        let calls = groups
            .iter()
            .map(|g| async move { (g.clone(), self.describe_group(g).await) });
        futures::future::join_all(calls).await
    }

    /// Deletes groups with no members, and their committed offsets; one result per group.
    pub async fn delete_groups(&self, groups: &[String]) -> Vec<(String, Result<(), KafkaError>)> {
        let calls = groups.iter().map(|g| async move {
            let result = self
                .at_coordinator(g, |conn| async move {
                    let response = conn
                        .call(|_| {
                            DeleteGroupsRequest::default()
                                .with_groups_names(vec![GroupId(str_bytes(g))])
                        })
                        .await?;
                    let r = response
                        .results
                        .into_iter()
                        .find(|r| r.group_id.as_str() == g)
                        .ok_or_else(|| KafkaError::Protocol {
                            addr: conn.addr().to_string(),
                            reason: format!("DeleteGroups did not answer for group {g:?}"),
                        })?;
                    check(r.error_code, || format!("delete group {g:?}"), None)
                })
                .await;
            (g.clone(), result)
        });
        futures::future::join_all(calls).await
    }

    /// The committed offsets of `group`: of `partitions`, or of all it committed when
    /// `None`. Partitions without a committed offset are left out.
    pub async fn list_group_offsets(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<BTreeMap<TopicPartition, CommittedOffset>, KafkaError> {
        self.at_coordinator(group, |conn| async move {
            coordinator::fetch_offsets(&conn, group, partitions).await
        })
        .await
    }

    /// Commits offsets for `group` as an admin (generation -1, no member id), which Kafka
    /// accepts only while the group has no members; one result per partition.
    pub async fn commit_group_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, Result<(), KafkaError>>, KafkaError> {
        self.at_coordinator(group, |conn| async move {
            let results =
                coordinator::commit_offsets(&conn, group, &Committer::ADMIN, offsets).await?;
            // A coordinator that moved refuses every partition alike: retry them all.
            if let Some(Err(e)) = results.values().find(|r| r.is_err()) {
                if needs_new_coordinator(e) {
                    return Err(e.clone());
                }
            }
            Ok(results)
        })
        .await
    }

    /// Deletes committed offsets of `group` (OffsetDelete); refused per partition while
    /// the group is subscribed to its topic. One result per partition.
    pub async fn delete_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Result<(), KafkaError>>, KafkaError> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        let by_topic = &by_topic;
        self.at_coordinator(group, |conn| async move {
            let response = conn
                .call(|_| {
                    OffsetDeleteRequest::default()
                        .with_group_id(GroupId(str_bytes(group)))
                        .with_topics(
                            by_topic
                                .iter()
                                .map(|(name, indexes)| {
                                    OffsetDeleteRequestTopic::default()
                                        .with_name(topic_name(name))
                                        .with_partitions(
                                            indexes
                                                .iter()
                                                .map(|p| {
                                                    OffsetDeleteRequestPartition::default()
                                                        .with_partition_index(*p)
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .await?;
            check(
                response.error_code,
                || format!("delete committed offsets of group {group:?}"),
                None,
            )?;
            let mut results = BTreeMap::new();
            for t in response.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                    let result = check(
                        p.error_code,
                        || format!("delete the committed offset of group {group:?} for {tp}"),
                        None,
                    );
                    results.insert(tp, result);
                }
            }
            Ok(results)
        })
        .await
    }
}
