//! Server-side assignors of the KIP-848 consumer group protocol (Kafka's `UniformAssignor`
//! and `RangeAssignor` in `org.apache.kafka.coordinator.group.assignor`), as pure
//! functions: members' subscriptions, topic sizes and the current target assignment in,
//! the next target assignment out.
//!
//! Both are deterministic: the same input gives the same output on every broker, so a
//! coordinator that takes over a group computes what its predecessor would have. They
//! keep Kafka's promises (Uniform: balanced and sticky; Range: per-topic ranges, aligned
//! across equally sized topics) but not its exact algorithms, so for one input Kafka may
//! choose a different, equally good assignment. Neither is rack-aware yet.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions per topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// What an assignor needs to know of a member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSubscription {
    /// Topic ids of the member's subscribed topics that exist.
    pub topic_ids: BTreeSet<Uuid>,
    /// Range orders members by instance id when there is one, so that a static member
    /// that comes back under a new member id gets the same ranges.
    pub instance_id: Option<String>,
}

/// The assignors a consumer group may name in `ServerAssignor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Assignor {
    /// Balanced and sticky over all subscribed partitions (Kafka's default).
    Uniform,
    /// Each topic's partitions in contiguous ranges, members ordered by id.
    Range,
}

impl Assignor {
    /// The name clients send in `ServerAssignor` and ConsumerGroupDescribe reports.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "uniform" => Some(Assignor::Uniform),
            "range" => Some(Assignor::Range),
            _ => None,
        }
    }

    /// The target assignment of every member (members with nothing get an empty entry).
    /// `partition_counts` maps topic id to its partition count; a subscribed topic that is
    /// missing there gets no partitions assigned. `current` is the previous target
    /// assignment, which Uniform keeps where balance allows.
    pub fn assign(
        self,
        members: &BTreeMap<String, MemberSubscription>,
        partition_counts: &BTreeMap<Uuid, i32>,
        current: &BTreeMap<String, Assignment>,
    ) -> BTreeMap<String, Assignment> {
        let result = match self {
            Assignor::Uniform => uniform(members, partition_counts, current),
            Assignor::Range => range(members, partition_counts),
        };
        debug_assert!(result.keys().eq(members.keys()));
        result
    }
}

/// Balanced: among members with the same subscriptions, partition counts differ by at most
/// one (more generally, a member never holds two more partitions than a member that
/// subscribes to the topic of one of them). Sticky: a partition stays with its current
/// owner unless that owner left, unsubscribed, or holds too many for balance.
fn uniform(
    members: &BTreeMap<String, MemberSubscription>,
    partition_counts: &BTreeMap<Uuid, i32>,
    current: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    // Members by index, in member id order: ties go to the smaller id.
    let index: BTreeMap<&str, usize> = members.keys().map(String::as_str).zip(0..).collect();
    let mut state = Uniform {
        assignments: vec![Assignment::new(); members.len()],
        counts: vec![0; members.len()],
    };
    // Subscribers of each existing topic, for finding who may take a partition.
    let mut subscribers: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
    for (member, subscription) in members.values().enumerate() {
        for topic_id in &subscription.topic_ids {
            if partition_counts.get(topic_id).is_some_and(|&n| n > 0) {
                subscribers.entry(*topic_id).or_default().push(member);
            }
        }
    }

    // 1. Keep every partition whose owner is still here and still subscribes to it.
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for (member_id, assignment) in current {
        let Some(&member) = index.get(member_id.as_str()) else {
            continue;
        };
        let subscription = &members[member_id];
        for (topic_id, partitions) in assignment {
            let Some(&count) = partition_counts.get(topic_id) else {
                continue;
            };
            if !subscription.topic_ids.contains(topic_id) {
                continue;
            }
            for &partition in partitions {
                // A partition can only be kept once (the input may come from a record).
                if (0..count).contains(&partition) && taken.insert((*topic_id, partition)) {
                    state.add(member, *topic_id, partition);
                }
            }
        }
    }

    // 2. Give each free partition to its least loaded subscriber. Topics with fewer
    //    subscribers go first: they have fewer places to go.
    let mut topics: Vec<(&Uuid, &Vec<usize>)> = subscribers.iter().collect();
    topics.sort_by_key(|(topic_id, subs)| (subs.len(), **topic_id));
    for (topic_id, subs) in &topics {
        for partition in 0..partition_counts[*topic_id] {
            if !taken.contains(&(**topic_id, partition)) {
                let receiver = state.least_loaded(subs);
                state.add(receiver, **topic_id, partition);
            }
        }
    }

    // 3. Move partitions from a member to a subscriber holding at least two fewer, until no
    //    such pair is left. Each move lowers the sum of squared counts, so this ends; the
    //    most loaded donors give first, which keeps the moves few (with equal
    //    subscriptions, a member that gives never receives).
    let mut donors: Vec<usize> = (0..members.len()).collect();
    loop {
        donors.sort_by_key(|&m| (std::cmp::Reverse(state.counts[m]), m));
        let mut best: Option<(usize, usize, usize, Uuid)> = None;
        for &donor in &donors {
            let donor_count = state.counts[donor];
            if donor_count < 2 {
                break;
            }
            for topic_id in state.assignments[donor].keys() {
                let receiver = state.least_loaded(&subscribers[topic_id]);
                let receiver_count = state.counts[receiver];
                if receiver_count + 2 <= donor_count
                    && best.is_none_or(|(n, r, _, _)| (receiver_count, receiver) < (n, r))
                {
                    best = Some((receiver_count, receiver, donor, *topic_id));
                }
            }
            if best.is_some() {
                break;
            }
        }
        let Some((_, receiver, donor, topic_id)) = best else {
            break;
        };
        let partition = state.take_last(donor, topic_id);
        state.add(receiver, topic_id, partition);
    }

    members.keys().cloned().zip(state.assignments).collect()
}

/// Uniform's working state, members by index.
struct Uniform {
    assignments: Vec<Assignment>,
    counts: Vec<usize>,
}

impl Uniform {
    fn least_loaded(&self, candidates: &[usize]) -> usize {
        candidates
            .iter()
            .copied()
            .min_by_key(|&m| (self.counts[m], m))
            .expect("a topic with partitions to place has a subscriber")
    }

    fn add(&mut self, member: usize, topic_id: Uuid, partition: i32) {
        let inserted = self.assignments[member]
            .entry(topic_id)
            .or_default()
            .insert(partition);
        assert!(inserted, "a partition is assigned once");
        self.counts[member] += 1;
    }

    fn take_last(&mut self, member: usize, topic_id: Uuid) -> i32 {
        let assignment = &mut self.assignments[member];
        let partitions = assignment
            .get_mut(&topic_id)
            .expect("the member holds the topic");
        let partition = partitions.pop_last().expect("held topics are not empty");
        if partitions.is_empty() {
            assignment.remove(&topic_id);
        }
        self.counts[member] -= 1;
        partition
    }
}

/// For each topic, its subscribers ordered by instance id (else member id) get contiguous
/// ranges; the first `partitions % subscribers` get one more. When every member subscribes
/// to the same equally sized topics, a member gets the same partition numbers of each.
fn range(
    members: &BTreeMap<String, MemberSubscription>,
    partition_counts: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = members
        .keys()
        .map(|id| (id.clone(), Assignment::new()))
        .collect();
    for (topic_id, &count) in partition_counts {
        if count <= 0 {
            continue;
        }
        let mut subscribers: Vec<(&str, &str)> = members
            .iter()
            .filter(|(_, s)| s.topic_ids.contains(topic_id))
            .map(|(id, s)| (s.instance_id.as_deref().unwrap_or(id), id.as_str()))
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        subscribers.sort();
        let n = i32::try_from(subscribers.len()).unwrap_or(i32::MAX);
        let (quota, extra) = (count / n, count % n);
        let mut next = 0;
        for (index, (_, member_id)) in (0..).zip(subscribers) {
            let size = quota + i32::from(index < extra);
            if size > 0 {
                let assignment = result.get_mut(member_id).expect("a member");
                assignment.insert(*topic_id, (next..next + size).collect());
            }
            next += size;
        }
        assert_eq!(next, count, "every partition of the topic is placed");
    }
    result
}
