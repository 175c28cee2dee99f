//! Talking to a group coordinator: finding it (FindCoordinator), and the OffsetCommit and
//! OffsetFetch requests that both the admin client and the group consumer send, shaped per
//! version.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::kafka::{topic_name, ResponseError};

use super::cluster::{BrokerInfo, Cluster, TopicPartition};
use super::conn::{Connection, ConnectionConfig};
use super::error::{check, KafkaError};

/// FindCoordinator's key type for consumer groups.
pub const GROUP_KEY_TYPE: i8 = 0;

/// A committed offset as OffsetFetch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group reads.
    pub offset: i64,
    /// The leader epoch of the record before `offset`, when the committer knew it.
    pub leader_epoch: Option<i32>,
    pub metadata: Option<String>,
}

/// Whether `e` means the coordinator moved or is unreachable: find it again and retry.
pub fn needs_new_coordinator(e: &KafkaError) -> bool {
    match e {
        KafkaError::Connect { .. }
        | KafkaError::Disconnected { .. }
        | KafkaError::Timeout { .. } => true,
        KafkaError::Broker { code, .. } => matches!(
            code,
            ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable
        ),
        _ => false,
    }
}

/// Whether `e` is worth retrying at a coordinator (found anew when it moved).
pub fn is_retriable_at_coordinator(e: &KafkaError) -> bool {
    needs_new_coordinator(e)
        || matches!(
            e.code(),
            Some(ResponseError::CoordinatorLoadInProgress | ResponseError::UnstableOffsetCommit)
        )
}

/// Asks any broker which broker coordinates `group`.
pub async fn find_coordinator(cluster: &Cluster, group: &str) -> Result<BrokerInfo, KafkaError> {
    let conn = cluster.any_connection().await?;
    let response = conn
        .call(|version| {
            let request = FindCoordinatorRequest::default().with_key_type(GROUP_KEY_TYPE);
            if version >= 4 {
                request.with_coordinator_keys(vec![str_bytes(group)])
            } else {
                request.with_key(str_bytes(group))
            }
        })
        .await?;
    let context = || format!("find the coordinator of group {group:?}");
    let (error_code, message, node_id, host, port) = if response.coordinators.is_empty() {
        (
            response.error_code,
            response.error_message,
            response.node_id.0,
            response.host,
            response.port,
        )
    } else {
        let c = response
            .coordinators
            .into_iter()
            .find(|c| c.key.as_str() == group)
            .ok_or_else(|| KafkaError::Protocol {
                addr: conn.addr().to_string(),
                reason: format!("FindCoordinator did not answer for group {group:?}"),
            })?;
        (c.error_code, c.error_message, c.node_id.0, c.host, c.port)
    };
    check(error_code, context, message.as_ref().map(|m| m.as_str()))?;
    if node_id < 0 || port <= 0 || port > i32::from(u16::MAX) {
        return Err(KafkaError::broker(
            ResponseError::CoordinatorNotAvailable,
            context(),
            Some(&format!("it named node {node_id} at {host}:{port}")),
        ));
    }
    Ok(BrokerInfo {
        node_id,
        host: host.as_str().to_string(),
        port,
        rack: None,
    })
}

/// A connection to `coordinator`: the cluster's own to that broker when `config` is
/// `None`, else a separate one with `config` (the group consumer's, whose JoinGroup may
/// stay parked for a whole rebalance timeout).
pub async fn connect(
    cluster: &Cluster,
    coordinator: &BrokerInfo,
    config: Option<ConnectionConfig>,
) -> Result<Connection, KafkaError> {
    match config {
        Some(config) => Connection::connect(&coordinator.addr(), config).await,
        None => match cluster.connection(coordinator.node_id).await {
            Ok(conn) => Ok(conn),
            // A coordinator the metadata does not list yet is reached at its own address.
            Err(_) => {
                Connection::connect(&coordinator.addr(), cluster.config().connection.clone()).await
            }
        },
    }
}

/// Who commits: a group member, or an admin (generation -1, no member id), which Kafka
/// accepts only while the group has no members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committer<'a> {
    pub generation_id: i32,
    pub member_id: &'a str,
    pub group_instance_id: Option<&'a str>,
}

impl Committer<'_> {
    pub const ADMIN: Committer<'static> = Committer {
        generation_id: -1,
        member_id: "",
        group_instance_id: None,
    };
}

/// Commits `offsets` of `group` at the coordinator `conn`; one result per partition.
pub async fn commit_offsets(
    conn: &Connection,
    group: &str,
    committer: &Committer<'_>,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<BTreeMap<TopicPartition, Result<(), KafkaError>>, KafkaError> {
    let response: OffsetCommitResponse = conn
        .call(|version| offset_commit_request(version, group, committer, offsets))
        .await?;
    let mut results = BTreeMap::new();
    for topic in response.topics {
        for p in topic.partitions {
            let tp = TopicPartition::new(topic.name.as_str(), p.partition_index);
            let result = check(
                p.error_code,
                || format!("commit offsets of group {group:?} for {tp}"),
                None,
            );
            results.insert(tp, result);
        }
    }
    for tp in offsets.keys() {
        if !results.contains_key(tp) {
            results.insert(
                tp.clone(),
                Err(KafkaError::Protocol {
                    addr: conn.addr().to_string(),
                    reason: format!("OffsetCommit did not answer for {tp}"),
                }),
            );
        }
    }
    Ok(results)
}

fn offset_commit_request(
    version: i16,
    group: &str,
    committer: &Committer<'_>,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> OffsetCommitRequest {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, offset) in offsets {
        by_topic.entry(&tp.topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(*offset)
                .with_committed_metadata(Some(StrBytes::from_static_str(""))),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_generation_id_or_member_epoch(committer.generation_id)
        .with_member_id(str_bytes(committer.member_id))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    // The instance id is in the request from v7; older brokers know no static members.
    if version >= 7 {
        request.with_group_instance_id(committer.group_instance_id.map(str_bytes))
    } else {
        request
    }
}

/// The committed offsets of `group`: of `partitions`, or of every partition it committed
/// when `None`. Partitions without a committed offset are left out.
pub async fn fetch_offsets(
    conn: &Connection,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, CommittedOffset>, KafkaError> {
    let response: OffsetFetchResponse = conn
        .call(|version| offset_fetch_request(version, group, partitions))
        .await?;
    let context = || format!("fetch committed offsets of group {group:?}");
    let mut found = BTreeMap::new();
    let mut add = |tp: TopicPartition,
                   code: i16,
                   offset: i64,
                   epoch: i32,
                   metadata: Option<StrBytes>|
     -> Result<(), KafkaError> {
        check(code, || format!("fetch the committed offset of {tp}"), None)?;
        if offset >= 0 {
            found.insert(
                tp,
                CommittedOffset {
                    offset,
                    leader_epoch: (epoch >= 0).then_some(epoch),
                    metadata: metadata.map(|m| m.as_str().to_string()),
                },
            );
        }
        Ok(())
    };
    if response.groups.is_empty() {
        check(response.error_code, context, None)?;
        for t in response.topics {
            for p in t.partitions {
                let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                add(
                    tp,
                    p.error_code,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.metadata,
                )?;
            }
        }
    } else {
        let g = response
            .groups
            .into_iter()
            .find(|g| g.group_id.as_str() == group)
            .ok_or_else(|| KafkaError::Protocol {
                addr: conn.addr().to_string(),
                reason: format!("OffsetFetch did not answer for group {group:?}"),
            })?;
        check(g.error_code, context, None)?;
        for t in g.topics {
            for p in t.partitions {
                let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                add(
                    tp,
                    p.error_code,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.metadata,
                )?;
            }
        }
    }
    Ok(found)
}

fn offset_fetch_request(
    version: i16,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> OffsetFetchRequest {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions.unwrap_or_default() {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    if version >= 8 {
        let topics = partitions.map(|_| {
            by_topic
                .iter()
                .map(|(name, indexes)| {
                    OffsetFetchRequestTopics::default()
                        .with_name(topic_name(name))
                        .with_partition_indexes(indexes.clone())
                })
                .collect()
        });
        OffsetFetchRequest::default()
            .with_topics(Some(Vec::new()))
            .with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_topics(topics)])
    } else {
        let topics = partitions.map(|_| {
            by_topic
                .iter()
                .map(|(name, indexes)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(name))
                        .with_partition_indexes(indexes.clone())
                })
                .collect()
        });
        OffsetFetchRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_topics(topics)
    }
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable};

    fn offsets() -> BTreeMap<TopicPartition, i64> {
        [
            (TopicPartition::new("a", 0), 5),
            (TopicPartition::new("a", 1), 7),
            (TopicPartition::new("b", 0), 0),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn offset_commit_encodes_at_every_version_we_send() {
        let member = Committer {
            generation_id: 3,
            member_id: "m-1",
            group_instance_id: Some("i-1"),
        };
        for version in 2..=9 {
            for committer in [&member, &Committer::ADMIN] {
                let request = offset_commit_request(version, "g", committer, &offsets());
                let mut buf = BytesMut::new();
                request.encode(&mut buf, version).expect("encodes");
                let back =
                    OffsetCommitRequest::decode(&mut buf.freeze(), version).expect("decodes");
                assert_eq!(back.group_id.as_str(), "g");
                assert_eq!(back.generation_id_or_member_epoch, committer.generation_id);
                assert_eq!(back.member_id.as_str(), committer.member_id);
                assert_eq!(back.topics.len(), 2);
                assert_eq!(back.topics[0].partitions[1].committed_offset, 7);
                let instance = back.group_instance_id.as_ref().map(|s| s.as_str());
                let expected = if version >= 7 {
                    committer.group_instance_id
                } else {
                    None
                };
                assert_eq!(instance, expected, "v{version}");
            }
        }
    }

    #[test]
    fn offset_fetch_encodes_some_or_all_partitions_at_every_version_we_send() {
        let some: Vec<TopicPartition> = offsets().into_keys().collect();
        for version in 1..=9 {
            for partitions in [Some(&some[..]), None] {
                if version < 2 && partitions.is_none() {
                    continue; // "all partitions" arrived in v2
                }
                let request = offset_fetch_request(version, "g", partitions);
                let mut buf = BytesMut::new();
                request.encode(&mut buf, version).expect("encodes");
                let back = OffsetFetchRequest::decode(&mut buf.freeze(), version).expect("decodes");
                let (group, count) = if version >= 8 {
                    let g = &back.groups[0];
                    (
                        g.group_id.as_str().to_string(),
                        g.topics.as_ref().map(Vec::len),
                    )
                } else {
                    (
                        back.group_id.as_str().to_string(),
                        back.topics.as_ref().map(Vec::len),
                    )
                };
                assert_eq!(group, "g");
                assert_eq!(count, partitions.map(|_| 2), "v{version}");
            }
        }
    }
}
