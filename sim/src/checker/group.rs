//! The group workload's checker.
//!
//! The history holds, besides the producer's `send`s and the final reads of the Kafka
//! workload: `assigned` infos (`{"member", "generation", "partitions"}`, whenever a
//! classic member sees a new generation or assignment; KIP-848 members note theirs as
//! `owned`, which is not judged: a member epoch is not a group-wide snapshot), `poll` completions (`{"member", "generation",
//! "records": {"P": [[offset, value], ...]}}`: the records processed), `commit` invocations
//! and completions (`{"offsets": {"P": next offset}}`), and one `final-committed`
//! (`{"offsets"}`) read from the broker after everything settled.
//!
//! - the data anomalies of [`super::kafka`] (lost write, duplicate, inconsistent
//!   offsets, ...), except the per-consumer order checks: in a group a partition moves
//!   between members and is read again from the committed offset, at least once;
//! - split ownership: two members own one partition in the same generation;
//! - commit backwards: an acknowledged commit below one acknowledged before it was sent,
//!   or a final committed offset below an acknowledged one;
//! - committed unprocessed: a record below the final committed offset that no member
//!   processed (polled before committing): at-least-once processing lost it.

use std::collections::{BTreeMap, BTreeSet};

use super::Anomaly;
use crate::history::{Op, OpType};

fn offsets(value: &serde_json::Value) -> BTreeMap<i32, i64> {
    value
        .get("offsets")
        .and_then(serde_json::Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(p, o)| Some((p.parse().ok()?, o.as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn check(ops: &[Op], partitions: i32) -> Vec<Anomaly> {
    let mut anomalies: Vec<Anomaly> = super::kafka::check(ops)
        .into_iter()
        .filter(|a| {
            !matches!(
                a,
                Anomaly::NonMonotonicPoll { .. } | Anomaly::PollSkip { .. }
            )
        })
        .collect();
    // (generation, partition) -> members that owned it.
    let mut owners: BTreeMap<(i32, i32), BTreeSet<String>> = BTreeMap::new();
    // The highest acknowledged commit per partition, so far in the history.
    let mut acked: BTreeMap<i32, i64> = BTreeMap::new();
    // Per process: the acknowledged floor when its outstanding commit was sent.
    let mut floor_at_invoke: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    let mut processed: BTreeSet<(i32, i64, u64)> = BTreeSet::new();
    let mut finals: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    let mut final_committed: Option<BTreeMap<i32, i64>> = None;
    for op in ops {
        match (op.f.as_str(), op.op_type) {
            ("assigned", OpType::Info) => {
                let member = op.value["member"].as_str().unwrap_or_default().to_string();
                let generation = op.value["generation"].as_i64().unwrap_or(-1) as i32;
                for p in op.value["partitions"].as_array().into_iter().flatten() {
                    if let Some(p) = p.as_i64() {
                        owners
                            .entry((generation, p as i32))
                            .or_default()
                            .insert(member.clone());
                    }
                }
            }
            ("poll", OpType::Ok) => {
                for (p, list) in op.value["records"].as_object().into_iter().flatten() {
                    let Ok(p) = p.parse::<i32>() else { continue };
                    for pair in list.as_array().into_iter().flatten() {
                        if let (Some(o), Some(v)) = (pair[0].as_i64(), pair[1].as_u64()) {
                            processed.insert((p, o, v));
                        }
                    }
                }
            }
            ("commit", OpType::Invoke) => {
                floor_at_invoke.insert(op.process.clone(), acked.clone());
            }
            ("commit", OpType::Ok) => {
                let floor = floor_at_invoke.remove(&op.process).unwrap_or_default();
                for (p, o) in offsets(&op.value) {
                    if let Some(&before) = floor.get(&p) {
                        if o < before {
                            anomalies.push(Anomaly::CommitBackwards {
                                partition: p,
                                from: before,
                                to: o,
                            });
                        }
                    }
                    let best = acked.entry(p).or_insert(o);
                    *best = (*best).max(o);
                }
            }
            ("commit", _) => {
                floor_at_invoke.remove(&op.process);
            }
            ("final-read", OpType::Ok) => {
                let p = op.value["partition"].as_i64().unwrap_or(-1) as i32;
                let records = op.value["records"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|pair| Some((pair[0].as_i64()?, pair[1].as_u64()?)))
                    .collect();
                finals.insert(p, records);
            }
            ("final-committed", OpType::Ok) => final_committed = Some(offsets(&op.value)),
            _ => {}
        }
    }
    for ((generation, partition), members) in owners {
        if members.len() > 1 {
            anomalies.push(Anomaly::SplitOwnership {
                generation,
                partition,
                members: members.into_iter().collect(),
            });
        }
    }
    if let Some(committed) = final_committed {
        for partition in 0..partitions {
            let end = committed.get(&partition).copied().unwrap_or(0);
            if let Some(&best) = acked.get(&partition) {
                if end < best {
                    anomalies.push(Anomaly::CommitBackwards {
                        partition,
                        from: best,
                        to: end,
                    });
                }
            }
            for &(offset, value) in finals.get(&partition).into_iter().flatten() {
                if offset < end && !processed.contains(&(partition, offset, value)) {
                    anomalies.push(Anomaly::CommittedUnprocessed {
                        partition,
                        offset,
                        value,
                    });
                }
            }
        }
    }
    anomalies
}

/// The final committed offset and the final log end of each partition, for tests that
/// expect the group to have caught up.
pub fn progress(ops: &[Op]) -> BTreeMap<i32, (i64, i64)> {
    let mut out: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for op in ops {
        match (op.f.as_str(), op.op_type) {
            ("final-read", OpType::Ok) => {
                let p = op.value["partition"].as_i64().unwrap_or(-1) as i32;
                let end = op.value["records"]
                    .as_array()
                    .and_then(|r| r.last())
                    .and_then(|pair| pair[0].as_i64())
                    .map_or(0, |o| o + 1);
                out.entry(p).or_default().1 = end;
            }
            ("final-committed", OpType::Ok) => {
                for (p, o) in offsets(&op.value) {
                    out.entry(p).or_default().0 = o;
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn op(process: &str, op_type: OpType, f: &str, value: serde_json::Value) -> Op {
        Op {
            index: 0,
            time_ns: 0,
            process: process.to_string(),
            op_type,
            f: f.to_string(),
            value,
        }
    }

    #[test]
    fn each_group_anomaly_is_found() {
        let ops = vec![
            op(
                "1",
                OpType::Info,
                "assigned",
                json!({"member": "a", "generation": 3, "partitions": [0, 1]}),
            ),
            op(
                "2",
                OpType::Info,
                "assigned",
                json!({"member": "b", "generation": 3, "partitions": [1]}),
            ),
            op(
                "1",
                OpType::Ok,
                "poll",
                json!({"records": {"0": [[0, 10], [1, 11]]}}),
            ),
            op("1", OpType::Invoke, "commit", json!({"offsets": {"0": 2}})),
            op("1", OpType::Ok, "commit", json!({"offsets": {"0": 2}})),
            op("2", OpType::Invoke, "commit", json!({"offsets": {"0": 1}})),
            op("2", OpType::Ok, "commit", json!({"offsets": {"0": 1}})),
            op(
                "checker",
                OpType::Ok,
                "final-read",
                json!({"partition": 0, "records": [[0, 10], [1, 11], [2, 12]]}),
            ),
            op(
                "checker",
                OpType::Ok,
                "final-committed",
                json!({"offsets": {"0": 3}}),
            ),
        ];
        let anomalies = check(&ops, 1);
        assert!(anomalies.contains(&Anomaly::SplitOwnership {
            generation: 3,
            partition: 1,
            members: vec!["a".into(), "b".into()],
        }));
        assert!(anomalies.contains(&Anomaly::CommitBackwards {
            partition: 0,
            from: 2,
            to: 1
        }));
        assert!(anomalies.contains(&Anomaly::CommittedUnprocessed {
            partition: 0,
            offset: 2,
            value: 12
        }));
        assert_eq!(anomalies.len(), 3, "{anomalies:?}");
    }

    #[test]
    fn a_clean_history_has_no_anomaly() {
        let ops = vec![
            op(
                "1",
                OpType::Info,
                "assigned",
                json!({"member": "a", "generation": 3, "partitions": [0]}),
            ),
            op(
                "2",
                OpType::Info,
                "assigned",
                json!({"member": "a", "generation": 4, "partitions": [0]}),
            ),
            op(
                "1",
                OpType::Ok,
                "poll",
                json!({"records": {"0": [[0, 10], [1, 11]]}}),
            ),
            // Read again after a rebalance: at least once, not an anomaly.
            op(
                "2",
                OpType::Ok,
                "poll",
                json!({"records": {"0": [[0, 10]]}}),
            ),
            op("1", OpType::Invoke, "commit", json!({"offsets": {"0": 2}})),
            op("1", OpType::Ok, "commit", json!({"offsets": {"0": 2}})),
            op(
                "checker",
                OpType::Ok,
                "final-read",
                json!({"partition": 0, "records": [[0, 10], [1, 11], [2, 12]]}),
            ),
            op(
                "checker",
                OpType::Ok,
                "final-committed",
                json!({"offsets": {"0": 2}}),
            ),
        ];
        assert_eq!(check(&ops, 1), Vec::new());
        assert_eq!(progress(&ops)[&0], (2, 3));
    }
}
