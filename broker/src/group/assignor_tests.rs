use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use uuid::Uuid;

use super::assignor::*;

fn topic(n: u8) -> Uuid {
    Uuid::from_u128(0x1000 + u128::from(n))
}

fn member_id(n: u8) -> String {
    format!("m{n}")
}

fn subscription(topics: &[u8]) -> MemberSubscription {
    MemberSubscription {
        topic_ids: topics.iter().map(|&t| topic(t)).collect(),
        instance_id: None,
    }
}

fn assignment(list: &[(u8, &[i32])]) -> Assignment {
    list.iter()
        .map(|(t, ps)| (topic(*t), ps.iter().copied().collect()))
        .collect()
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// Every partition of a subscribed, existing topic goes to exactly one subscriber, and
/// nothing else is assigned.
fn check_complete(
    members: &BTreeMap<String, MemberSubscription>,
    partition_counts: &BTreeMap<Uuid, i32>,
    result: &BTreeMap<String, Assignment>,
) {
    assert!(result.keys().eq(members.keys()));
    let mut seen: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for (id, a) in result {
        for (t, ps) in a {
            assert!(!ps.is_empty(), "no empty topic entries");
            assert!(
                members[id].topic_ids.contains(t),
                "{id} does not subscribe to {t}"
            );
            for &p in ps {
                assert!((0..partition_counts[t]).contains(&p));
                assert!(seen.insert((*t, p)), "{t}-{p} assigned twice");
            }
        }
    }
    for (t, &n) in partition_counts {
        if members.values().any(|s| s.topic_ids.contains(t)) {
            for p in 0..n {
                assert!(seen.contains(&(*t, p)), "{t}-{p} unassigned");
            }
        }
    }
}

/// Uniform's balance: a member never holds two more than a member that could take one of
/// its partitions; so members with the same subscriptions differ by at most one.
fn check_balanced(
    members: &BTreeMap<String, MemberSubscription>,
    result: &BTreeMap<String, Assignment>,
) {
    for (a, aa) in result {
        for (b, ba) in result {
            let movable = aa.keys().any(|t| members[b].topic_ids.contains(t));
            if movable {
                assert!(
                    count(aa) <= count(ba) + 1,
                    "{a} holds {} and {b} only {}: {result:?}",
                    count(aa),
                    count(ba)
                );
            }
            if members[a].topic_ids == members[b].topic_ids {
                assert!(count(aa).abs_diff(count(ba)) <= 1);
            }
        }
    }
}

#[test]
fn uniform_splits_six_partitions_between_two() {
    let members: BTreeMap<String, MemberSubscription> = [
        (member_id(1), subscription(&[1])),
        (member_id(2), subscription(&[1])),
    ]
    .into();
    let counts = [(topic(1), 6)].into();
    let result = Assignor::Uniform.assign(&members, &counts, &BTreeMap::new());
    // Free partitions go one by one to the least loaded member.
    assert_eq!(result[&member_id(1)], assignment(&[(1, &[0, 2, 4])]));
    assert_eq!(result[&member_id(2)], assignment(&[(1, &[1, 3, 5])]));
}

#[test]
fn uniform_third_member_takes_from_both_and_moves_nothing_else() {
    let mut members: BTreeMap<String, MemberSubscription> = [
        (member_id(1), subscription(&[1])),
        (member_id(2), subscription(&[1])),
    ]
    .into();
    let counts = [(topic(1), 6)].into();
    let before = Assignor::Uniform.assign(&members, &counts, &BTreeMap::new());
    members.insert(member_id(3), subscription(&[1]));
    let after = Assignor::Uniform.assign(&members, &counts, &before);
    check_complete(&members, &counts, &after);
    for id in [member_id(1), member_id(2)] {
        assert_eq!(count(&after[&id]), 2);
        assert!(after[&id][&topic(1)].is_subset(&before[&id][&topic(1)]));
    }
    assert_eq!(count(&after[&member_id(3)]), 2);
}

#[test]
fn uniform_subscription_to_missing_topic_gets_nothing() {
    let members: BTreeMap<String, MemberSubscription> =
        [(member_id(1), subscription(&[1, 9]))].into();
    let counts = [(topic(1), 2)].into();
    let result = Assignor::Uniform.assign(&members, &counts, &BTreeMap::new());
    assert_eq!(result[&member_id(1)], assignment(&[(1, &[0, 1])]));
}

#[test]
fn range_gives_contiguous_ranges_in_member_order() {
    let members: BTreeMap<String, MemberSubscription> = [
        (member_id(1), subscription(&[1, 2])),
        (member_id(2), subscription(&[1, 2])),
    ]
    .into();
    let counts = [(topic(1), 3), (topic(2), 3)].into();
    let result = Assignor::Range.assign(&members, &counts, &BTreeMap::new());
    assert_eq!(
        result[&member_id(1)],
        assignment(&[(1, &[0, 1]), (2, &[0, 1])])
    );
    assert_eq!(result[&member_id(2)], assignment(&[(1, &[2]), (2, &[2])]));
}

#[test]
fn range_orders_static_members_by_instance_id() {
    let mut a = subscription(&[1]);
    a.instance_id = Some("z".to_string());
    let mut b = subscription(&[1]);
    b.instance_id = Some("a".to_string());
    let members: BTreeMap<String, MemberSubscription> =
        [(member_id(1), a), (member_id(2), b)].into();
    let counts = [(topic(1), 2)].into();
    let result = Assignor::Range.assign(&members, &counts, &BTreeMap::new());
    assert_eq!(result[&member_id(2)], assignment(&[(1, &[0])]));
    assert_eq!(result[&member_id(1)], assignment(&[(1, &[1])]));
}

#[test]
fn assignor_names_round_trip() {
    for a in [Assignor::Uniform, Assignor::Range] {
        assert_eq!(Assignor::from_name(a.name()), Some(a));
    }
    assert_eq!(Assignor::from_name("sticky"), None);
}

/// Topics 0..4 (topic 4 never exists), members m0.. with subscriptions, and an arbitrary
/// "current" assignment that may name gone members, foreign topics, partitions out of
/// range and partitions twice.
#[allow(clippy::type_complexity)]
fn scenario(
    homogeneous: bool,
) -> impl Strategy<
    Value = (
        BTreeMap<String, MemberSubscription>,
        BTreeMap<Uuid, i32>,
        BTreeMap<String, Assignment>,
    ),
> {
    let counts = proptest::collection::vec(0i32..9, 4);
    let subs = proptest::collection::vec(proptest::collection::btree_set(0u8..5, 0..4), 0..7);
    let current = proptest::collection::vec((0u8..9, 0u8..5, 0i32..10), 0..40);
    (counts, subs, current).prop_map(move |(counts, subs, current)| {
        let partition_counts: BTreeMap<Uuid, i32> =
            (0u8..).zip(counts).map(|(t, n)| (topic(t), n)).collect();
        let first = subs.first().cloned().unwrap_or_default();
        let members: BTreeMap<String, MemberSubscription> = (0u8..)
            .zip(subs)
            .map(|(i, s)| {
                let s = if homogeneous { first.clone() } else { s };
                let topics: Vec<u8> = s.into_iter().collect();
                (member_id(i), subscription(&topics))
            })
            .collect();
        let mut assignments: BTreeMap<String, Assignment> = BTreeMap::new();
        for (m, t, p) in current {
            assignments
                .entry(member_id(m))
                .or_default()
                .entry(topic(t))
                .or_default()
                .insert(p);
        }
        (members, partition_counts, assignments)
    })
}

/// The current assignment's partitions that may stay where they are: owner present and
/// subscribed, partition exists, first claim wins (as the assignor keeps them).
fn keepable(
    members: &BTreeMap<String, MemberSubscription>,
    counts: &BTreeMap<Uuid, i32>,
    current: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, BTreeSet<(Uuid, i32)>> {
    let mut taken = BTreeSet::new();
    let mut result: BTreeMap<String, BTreeSet<(Uuid, i32)>> = BTreeMap::new();
    for (id, a) in current {
        let Some(s) = members.get(id) else { continue };
        for (t, ps) in a {
            let Some(&n) = counts.get(t) else { continue };
            if !s.topic_ids.contains(t) {
                continue;
            }
            for &p in ps {
                if (0..n).contains(&p) && taken.insert((*t, p)) {
                    result.entry(id.clone()).or_default().insert((*t, p));
                }
            }
        }
    }
    result
}

fn flat(a: &Assignment) -> BTreeSet<(Uuid, i32)> {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
        .collect()
}

proptest! {
    #[test]
    fn uniform_is_complete_balanced_and_a_fixpoint((members, counts, current) in scenario(false)) {
        let result = Assignor::Uniform.assign(&members, &counts, &current);
        check_complete(&members, &counts, &result);
        check_balanced(&members, &result);
        let again = Assignor::Uniform.assign(&members, &counts, &result);
        prop_assert_eq!(&again, &result, "a balanced assignment is kept as it is");
    }

    #[test]
    fn uniform_homogeneous_moves_only_what_balance_needs(
        (members, counts, current) in scenario(true)
    ) {
        let result = Assignor::Uniform.assign(&members, &counts, &current);
        check_complete(&members, &counts, &result);
        check_balanced(&members, &result);
        let keep = keepable(&members, &counts, &current);
        for (id, kept_before) in &keep {
            let now = flat(&result[id]);
            let stayed = kept_before.intersection(&now).count();
            // It loses partitions only if it ends with fewer than it could keep.
            prop_assert!(
                stayed >= kept_before.len().min(now.len()),
                "{} kept {} of {} and holds {}", id, stayed, kept_before.len(), now.len()
            );
        }
    }

    #[test]
    fn range_is_complete_and_balanced_per_topic((members, counts, current) in scenario(false)) {
        let result = Assignor::Range.assign(&members, &counts, &current);
        check_complete(&members, &counts, &result);
        for t in counts.keys() {
            let sizes: Vec<usize> = members
                .iter()
                .filter(|(_, s)| s.topic_ids.contains(t))
                .map(|(id, _)| result[id].get(t).map_or(0, BTreeSet::len))
                .collect();
            if let (Some(min), Some(max)) = (sizes.iter().min(), sizes.iter().max()) {
                prop_assert!(max - min <= 1);
            }
            for a in result.values() {
                if let Some(ps) = a.get(t) {
                    let (lo, hi) = (ps.first().copied(), ps.last().copied());
                    if let (Some(lo), Some(hi)) = (lo, hi) {
                        prop_assert_eq!(usize::try_from(hi - lo + 1).ok(), Some(ps.len()), "contiguous");
                    }
                }
            }
        }
    }
}
