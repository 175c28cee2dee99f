//! The "consumer" protocol of classic consumer groups, without I/O: subscription and
//! assignment metadata as Kafka's `ConsumerProtocol` writes them (an i16 version, then the
//! struct at that version), and the range and round-robin assignors the group leader runs.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use runnel_protocol::kafka::topic_name;

use super::cluster::TopicPartition;

/// The protocol type every consumer (Java, librdkafka, ours) joins classic groups with.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The newest `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` version we
/// write and read; newer versions only append fields, so they are read as this one, as
/// Kafka's `ConsumerProtocol.checkSubscriptionVersion` does.
pub const CONSUMER_PROTOCOL_VERSION: i16 = 3;

/// Subscription or assignment metadata that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed consumer protocol {what}: {reason}")]
pub struct ProtocolDataError {
    what: &'static str,
    reason: String,
}

/// What a member tells the leader in JoinGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Sorted, without duplicates.
    pub topics: Vec<String>,
    /// What the member owned in `generation_id` (for sticky assignors; informative here).
    pub owned_partitions: Vec<TopicPartition>,
    pub generation_id: i32,
    pub rack_id: Option<String>,
    pub user_data: Option<Bytes>,
}

/// The protocol metadata of JoinGroup for `subscription`.
pub fn encode_subscription(subscription: &Subscription) -> Bytes {
    let message = ConsumerProtocolSubscription::default()
        .with_topics(subscription.topics.iter().map(|t| str_bytes(t)).collect())
        .with_user_data(subscription.user_data.clone())
        .with_owned_partitions(
            group_by_topic(&subscription.owned_partitions)
                .into_iter()
                .map(|(topic, partitions)| {
                    OwnedTopic::default()
                        .with_topic(topic_name(topic))
                        .with_partitions(partitions)
                })
                .collect(),
        )
        .with_generation_id(subscription.generation_id)
        .with_rack_id(subscription.rack_id.as_deref().map(str_bytes));
    encode_versioned(&message)
}

/// Reads a member's JoinGroup metadata (any version from 0).
pub fn decode_subscription(data: &[u8]) -> Result<Subscription, ProtocolDataError> {
    let message: ConsumerProtocolSubscription = decode_versioned(data, "subscription")?;
    let mut topics: Vec<String> = message
        .topics
        .iter()
        .map(|t| t.as_str().to_string())
        .collect();
    topics.sort();
    topics.dedup();
    let owned_partitions = message
        .owned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.topic.as_str(), *p))
        })
        .collect();
    Ok(Subscription {
        topics,
        owned_partitions,
        generation_id: message.generation_id,
        rack_id: message.rack_id.map(|r| r.as_str().to_string()),
        user_data: message.user_data,
    })
}

/// The assignment bytes of SyncGroup for `partitions`.
pub fn encode_assignment(partitions: &[TopicPartition]) -> Bytes {
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(
        group_by_topic(partitions)
            .into_iter()
            .map(|(topic, partitions)| {
                AssignedTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(partitions)
            })
            .collect(),
    );
    encode_versioned(&message)
}

/// Reads SyncGroup's assignment. Empty bytes are an empty assignment: coordinators send
/// them to a member the leader left out.
pub fn decode_assignment(data: &[u8]) -> Result<Vec<TopicPartition>, ProtocolDataError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let message: ConsumerProtocolAssignment = decode_versioned(data, "assignment")?;
    let mut partitions: Vec<TopicPartition> = message
        .assigned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.topic.as_str(), *p))
        })
        .collect();
    partitions.sort();
    partitions.dedup();
    Ok(partitions)
}

fn encode_versioned<M: Encodable>(message: &M) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    // Only a string or array over i16/i32 lengths can fail to encode; topic names are
    // validated short strings and partition lists are bounded by the cluster's partitions.
    message
        .encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .expect("consumer protocol metadata of valid topic names encodes");
    buf.freeze()
}

fn decode_versioned<M: Decodable>(data: &[u8], what: &'static str) -> Result<M, ProtocolDataError> {
    let error = |reason: String| ProtocolDataError { what, reason };
    let mut buf = Bytes::copy_from_slice(data);
    if buf.remaining() < 2 {
        return Err(error(format!("{} bytes, no version", data.len())));
    }
    let version = buf.get_i16();
    if version < 0 {
        return Err(error(format!("version {version}")));
    }
    M::decode(&mut buf, version.min(CONSUMER_PROTOCOL_VERSION)).map_err(|e| error(format!("{e:#}")))
}

fn group_by_topic(partitions: &[TopicPartition]) -> BTreeMap<&str, Vec<i32>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    for list in by_topic.values_mut() {
        list.sort_unstable();
        list.dedup();
    }
    by_topic
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A group member as the leader's assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub subscription: Subscription,
}

/// Kafka's member order for assignors (`MemberInfo.compareTo`): static members first, by
/// instance id, then dynamic members by member id. Every client sorts alike, so a group
/// led by any of them assigns the same way.
fn member_order(a: &Member, b: &Member) -> std::cmp::Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

/// The partition assignment strategies this client can run as leader (Kafka's
/// `partition.assignment.strategy`). Both are eager: every member gives up all its
/// partitions before a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka's `RangeAssignor`: per topic, consecutive partition ranges.
    Range,
    /// Kafka's `RoundRobinAssignor`: all partitions dealt out in turn.
    RoundRobin,
}

impl Assignor {
    /// The protocol name in JoinGroup, shared with Java and librdkafka.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    pub fn parse(name: &str) -> Option<Assignor> {
        match name.trim().to_ascii_lowercase().as_str() {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }

    /// Assigns the partitions of subscribed topics; `partitions_per_topic` holds the
    /// partition count of each topic that exists (others are left out). Every member gets
    /// an entry, possibly empty; each partition goes to exactly one subscribed member.
    pub fn assign(
        self,
        members: &[Member],
        partitions_per_topic: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let mut sorted: Vec<&Member> = members.iter().collect();
        sorted.sort_by(|a, b| member_order(a, b));
        let mut assignment: BTreeMap<String, Vec<TopicPartition>> = members
            .iter()
            .map(|m| (m.member_id.clone(), Vec::new()))
            .collect();
        match self {
            Assignor::Range => range(&sorted, partitions_per_topic, &mut assignment),
            Assignor::RoundRobin => round_robin(&sorted, partitions_per_topic, &mut assignment),
        }
        for partitions in assignment.values_mut() {
            partitions.sort();
        }
        debug_assert!(
            {
                let all: Vec<&TopicPartition> = assignment.values().flatten().collect();
                all.len() == all.iter().collect::<BTreeSet<_>>().len()
            },
            "a partition was assigned twice"
        );
        assignment
    }
}

fn subscribers<'m>(sorted: &[&'m Member], topic: &str) -> Vec<&'m Member> {
    sorted
        .iter()
        .filter(|m| m.subscription.topics.iter().any(|t| t == topic))
        .copied()
        .collect()
}

fn subscribed_topics(sorted: &[&Member]) -> BTreeSet<String> {
    sorted
        .iter()
        .flat_map(|m| m.subscription.topics.iter().cloned())
        .collect()
}

fn range(
    sorted: &[&Member],
    partitions_per_topic: &BTreeMap<String, i32>,
    assignment: &mut BTreeMap<String, Vec<TopicPartition>>,
) {
    for topic in subscribed_topics(sorted) {
        let Some(&count) = partitions_per_topic.get(&topic) else {
            continue;
        };
        let members = subscribers(sorted, &topic);
        if members.is_empty() || count <= 0 {
            continue;
        }
        let n = members.len() as i32;
        let per_member = count / n;
        let with_extra = count % n;
        for (i, member) in members.iter().enumerate() {
            let i = i as i32;
            let start = per_member * i + i.min(with_extra);
            let length = per_member + i32::from(i < with_extra);
            assignment
                .entry(member.member_id.clone())
                .or_default()
                .extend((start..start + length).map(|p| TopicPartition::new(topic.clone(), p)));
        }
    }
}

fn round_robin(
    sorted: &[&Member],
    partitions_per_topic: &BTreeMap<String, i32>,
    assignment: &mut BTreeMap<String, Vec<TopicPartition>>,
) {
    if sorted.is_empty() {
        return;
    }
    let mut next = 0usize;
    for topic in subscribed_topics(sorted) {
        let Some(&count) = partitions_per_topic.get(&topic) else {
            continue;
        };
        for partition in 0..count.max(0) {
            // Someone subscribes to `topic` (it came from a subscription), so this ends
            // within one turn around the members.
            let mut skipped = 0;
            while !sorted[next % sorted.len()]
                .subscription
                .topics
                .contains(&topic)
            {
                next += 1;
                skipped += 1;
                assert!(skipped <= sorted.len(), "nobody subscribes to {topic}");
            }
            let member = sorted[next % sorted.len()];
            next += 1;
            assignment
                .entry(member.member_id.clone())
                .or_default()
                .push(TopicPartition::new(topic.clone(), partition));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> Member {
        Member {
            member_id: id.to_string(),
            group_instance_id: None,
            subscription: Subscription {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            },
        }
    }

    fn tps(list: &[(&str, i32)]) -> Vec<TopicPartition> {
        list.iter()
            .map(|(t, p)| TopicPartition::new(*t, *p))
            .collect()
    }

    fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn range_gives_the_first_members_one_extra_partition_per_topic() {
        // Kafka's RangeAssignor javadoc example: C0 gets t0p0, t0p1, t1p0, t1p1.
        let members = [member("c1", &["t0", "t1"]), member("c0", &["t0", "t1"])];
        let got = Assignor::Range.assign(&members, &counts(&[("t0", 3), ("t1", 3)]));
        assert_eq!(
            got["c0"],
            tps(&[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)])
        );
        assert_eq!(got["c1"], tps(&[("t0", 2), ("t1", 2)]));
    }

    #[test]
    fn range_only_assigns_topics_to_their_subscribers_and_skips_unknown_topics() {
        let members = [
            member("a", &["t0"]),
            member("b", &["t0", "t1", "missing"]),
            member("c", &[]),
        ];
        let got = Assignor::Range.assign(&members, &counts(&[("t0", 4), ("t1", 2)]));
        assert_eq!(got["a"], tps(&[("t0", 0), ("t0", 1)]));
        assert_eq!(got["b"], tps(&[("t0", 2), ("t0", 3), ("t1", 0), ("t1", 1)]));
        assert_eq!(got["c"], vec![], "every member gets an entry");
    }

    #[test]
    fn more_members_than_partitions_leaves_the_last_members_empty() {
        let members = [
            member("a", &["t"]),
            member("b", &["t"]),
            member("c", &["t"]),
        ];
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let got = assignor.assign(&members, &counts(&[("t", 2)]));
            assert_eq!(got["a"], tps(&[("t", 0)]), "{assignor:?}");
            assert_eq!(got["b"], tps(&[("t", 1)]), "{assignor:?}");
            assert!(got["c"].is_empty(), "{assignor:?}");
        }
    }

    #[test]
    fn static_members_sort_before_dynamic_ones_by_instance_id() {
        let mut s1 = member("zzz", &["t"]);
        s1.group_instance_id = Some("instance-1".into());
        let mut s0 = member("yyy", &["t"]);
        s0.group_instance_id = Some("instance-0".into());
        let members = [member("aaa", &["t"]), s1, s0];
        let got = Assignor::Range.assign(&members, &counts(&[("t", 3)]));
        assert_eq!(got["yyy"], tps(&[("t", 0)]));
        assert_eq!(got["zzz"], tps(&[("t", 1)]));
        assert_eq!(got["aaa"], tps(&[("t", 2)]));
    }

    #[test]
    fn round_robin_deals_partitions_across_topics_in_turn() {
        // Kafka's RoundRobinAssignor javadoc example (members subscribed to t0..t2 differently).
        let members = [
            member("c0", &["t0"]),
            member("c1", &["t0", "t1"]),
            member("c2", &["t0", "t1", "t2"]),
        ];
        let got =
            Assignor::RoundRobin.assign(&members, &counts(&[("t0", 1), ("t1", 2), ("t2", 3)]));
        assert_eq!(got["c0"], tps(&[("t0", 0)]));
        assert_eq!(got["c1"], tps(&[("t1", 0)]));
        assert_eq!(
            got["c2"],
            tps(&[("t1", 1), ("t2", 0), ("t2", 1), ("t2", 2)])
        );
    }

    #[test]
    fn every_partition_is_assigned_exactly_once() {
        for n_members in 1..6 {
            let members: Vec<Member> = (0..n_members)
                .map(|i| member(&format!("m{i}"), &["a", "b", "c"]))
                .collect();
            let topics = counts(&[("a", 7), ("b", 1), ("c", 12)]);
            for assignor in [Assignor::Range, Assignor::RoundRobin] {
                let got = assignor.assign(&members, &topics);
                let all: Vec<TopicPartition> = got.values().flatten().cloned().collect();
                let unique: BTreeSet<TopicPartition> = all.iter().cloned().collect();
                assert_eq!(all.len(), 20, "{assignor:?} with {n_members}");
                assert_eq!(unique.len(), 20, "{assignor:?} with {n_members}");
                let sizes: Vec<usize> = got.values().map(Vec::len).collect();
                if assignor == Assignor::RoundRobin {
                    let spread =
                        sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0);
                    assert!(spread <= 1, "round robin is balanced: {sizes:?}");
                }
            }
        }
    }

    #[test]
    fn subscription_round_trips_with_its_version_prefix() {
        let subscription = Subscription {
            topics: vec!["a".into(), "b".into()],
            owned_partitions: tps(&[("a", 0), ("a", 2), ("b", 1)]),
            generation_id: 7,
            rack_id: Some("rack-1".into()),
            user_data: Some(Bytes::from_static(b"u")),
        };
        let bytes = encode_subscription(&subscription);
        assert_eq!(&bytes[..2], &CONSUMER_PROTOCOL_VERSION.to_be_bytes());
        assert_eq!(decode_subscription(&bytes), Ok(subscription));
    }

    #[test]
    fn subscription_v0_as_old_clients_write_it_decodes() {
        // Version 0, topics ["t"], null user data: what kafka-python and old Java send.
        let bytes = [0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff];
        let got = decode_subscription(&bytes).expect("decodes");
        assert_eq!(got.topics, vec!["t".to_string()]);
        assert_eq!(got.generation_id, -1);
        assert!(got.owned_partitions.is_empty());
    }

    #[test]
    fn a_newer_version_is_read_as_the_newest_we_know() {
        let mut bytes = encode_subscription(&Subscription {
            topics: vec!["t".into()],
            ..Default::default()
        })
        .to_vec();
        bytes[..2].copy_from_slice(&9i16.to_be_bytes());
        bytes.extend_from_slice(b"fields of version 9");
        assert_eq!(
            decode_subscription(&bytes).expect("decodes").topics,
            vec!["t".to_string()]
        );
    }

    #[test]
    fn assignment_round_trips_and_empty_bytes_are_no_partitions() {
        let partitions = tps(&[("a", 0), ("a", 3), ("b", 1)]);
        let bytes = encode_assignment(&partitions);
        assert_eq!(&bytes[..2], &CONSUMER_PROTOCOL_VERSION.to_be_bytes());
        assert_eq!(decode_assignment(&bytes), Ok(partitions));
        assert_eq!(decode_assignment(&[]), Ok(vec![]));
    }

    #[test]
    fn malformed_metadata_is_an_error_not_a_panic() {
        assert!(decode_subscription(&[0]).is_err());
        assert!(decode_subscription(&[0xff, 0xff, 0, 0]).is_err());
        assert!(decode_subscription(&[0, 1, 0, 0, 0, 5, 0]).is_err());
        assert!(decode_assignment(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_err());
    }
}
