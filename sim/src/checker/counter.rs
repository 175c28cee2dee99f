//! The counter checker: what clients were told against what the servers hold at the end.
//!
//! An increment acknowledged by a server must be in that server's final log (else it is
//! a lost write); nothing may be in a log that no client sent there (invented), and no id
//! may appear twice (duplicate). Failed increments must not appear; indeterminate ones
//! may or may not.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::history::{Op, OpType};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anomaly {
    /// Acknowledged, then missing from the final read of its server.
    LostWrite {
        id: u64,
        server: u64,
    },
    /// Present in a log although no client sent it to that server.
    Invented {
        id: u64,
        server: u64,
    },
    /// Reported as definitely failed, yet present.
    FailedButPresent {
        id: u64,
        server: u64,
    },
    Duplicate {
        id: u64,
        server: u64,
    },
    /// The final read of this server never succeeded.
    Unreadable {
        server: u64,
    },
    /// Kafka workload: acknowledged, at or below the highest offset read, never read.
    KafkaLostWrite {
        partition: i32,
        offset: i64,
        value: u64,
    },
    /// Kafka workload: acknowledged and never read, beyond every offset read.
    Unseen {
        partition: i32,
        offset: i64,
        value: u64,
    },
    /// Kafka workload: one value read at several (partition, offset) places.
    KafkaDuplicate {
        value: u64,
        places: Vec<(i32, i64)>,
    },
    /// Kafka workload: several values read at one offset.
    InconsistentOffsets {
        partition: i32,
        offset: i64,
        values: Vec<u64>,
    },
    NonMonotonicSend {
        process: String,
        partition: i32,
        from: i64,
        to: i64,
    },
    NonMonotonicPoll {
        process: String,
        partition: i32,
        from: i64,
        to: i64,
    },
    PollSkip {
        process: String,
        partition: i32,
        from: i64,
        to: i64,
        skipped: Vec<i64>,
    },
    /// Group workload: two members owned one partition in the same generation.
    SplitOwnership {
        generation: i32,
        partition: i32,
        members: Vec<String>,
    },
    /// Group workload: a committed offset moved backwards: acknowledged (or read at the
    /// end) below one acknowledged before.
    CommitBackwards {
        partition: i32,
        from: i64,
        to: i64,
    },
    /// Group workload: below the group's committed offset, yet no member processed it.
    CommittedUnprocessed {
        partition: i32,
        offset: i64,
        value: u64,
    },
}

/// Reads the counter history: `incr` invocations carry `{"id", "server"}`, and the final
/// `read` completions carry `{"server", "ids"}`.
pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let mut sent_to: BTreeMap<u64, u64> = BTreeMap::new();
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut failed: BTreeSet<u64> = BTreeSet::new();
    let mut finals: BTreeMap<u64, Option<Vec<u64>>> = BTreeMap::new();
    for op in ops {
        let field = |name: &str| op.value.get(name).and_then(serde_json::Value::as_u64);
        match (op.f.as_str(), op.op_type) {
            ("incr", OpType::Invoke) => {
                if let (Some(id), Some(server)) = (field("id"), field("server")) {
                    sent_to.insert(id, server);
                }
            }
            ("incr", OpType::Ok) => {
                acked.extend(field("id"));
            }
            ("incr", OpType::Fail) => {
                failed.extend(field("id"));
            }
            ("final-read", OpType::Ok) => {
                let ids = op.value.get("ids").and_then(|v| v.as_array()).map(|a| {
                    a.iter()
                        .filter_map(serde_json::Value::as_u64)
                        .collect::<Vec<_>>()
                });
                if let Some(server) = field("server") {
                    finals.insert(server, ids);
                }
            }
            ("final-read", OpType::Fail | OpType::Unknown) => {
                if let Some(server) = field("server") {
                    finals.entry(server).or_insert(None);
                }
            }
            _ => {}
        }
    }

    let mut anomalies = Vec::new();
    let mut present: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (&server, ids) in &finals {
        let Some(ids) = ids else {
            anomalies.push(Anomaly::Unreadable { server });
            continue;
        };
        let seen = present.entry(server).or_default();
        for &id in ids {
            if !seen.insert(id) {
                anomalies.push(Anomaly::Duplicate { id, server });
            }
            if sent_to.get(&id) != Some(&server) {
                anomalies.push(Anomaly::Invented { id, server });
            } else if failed.contains(&id) {
                anomalies.push(Anomaly::FailedButPresent { id, server });
            }
        }
    }
    for &id in &acked {
        let server = sent_to[&id];
        if let Some(seen) = present.get(&server) {
            if !seen.contains(&id) {
                anomalies.push(Anomaly::LostWrite { id, server });
            }
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(op_type: OpType, f: &str, value: serde_json::Value) -> Op {
        Op {
            index: 0,
            time_ns: 0,
            process: "0".into(),
            op_type,
            f: f.into(),
            value,
        }
    }

    #[test]
    fn a_clean_history_has_no_anomalies() {
        let ops = vec![
            op(OpType::Invoke, "incr", json!({"id": 1, "server": 1})),
            op(OpType::Ok, "incr", json!({"id": 1, "server": 1})),
            op(OpType::Invoke, "incr", json!({"id": 2, "server": 1})),
            op(OpType::Unknown, "incr", json!({"id": 2, "server": 1})),
            op(OpType::Ok, "final-read", json!({"server": 1, "ids": [1]})),
        ];
        assert_eq!(check(&ops), vec![]);
    }

    #[test]
    fn every_anomaly_is_named() {
        let ops = vec![
            op(OpType::Invoke, "incr", json!({"id": 1, "server": 1})),
            op(OpType::Ok, "incr", json!({"id": 1, "server": 1})),
            op(OpType::Invoke, "incr", json!({"id": 2, "server": 1})),
            op(OpType::Fail, "incr", json!({"id": 2, "server": 1})),
            op(OpType::Invoke, "incr", json!({"id": 3, "server": 2})),
            op(OpType::Ok, "incr", json!({"id": 3, "server": 2})),
            op(
                OpType::Ok,
                "final-read",
                json!({"server": 1, "ids": [2, 9, 2]}),
            ),
            op(OpType::Unknown, "final-read", json!({"server": 2})),
        ];
        let anomalies = check(&ops);
        assert!(anomalies.contains(&Anomaly::LostWrite { id: 1, server: 1 }));
        assert!(anomalies.contains(&Anomaly::FailedButPresent { id: 2, server: 1 }));
        assert!(anomalies.contains(&Anomaly::Duplicate { id: 2, server: 1 }));
        assert!(anomalies.contains(&Anomaly::Invented { id: 9, server: 1 }));
        assert!(anomalies.contains(&Anomaly::Unreadable { server: 2 }));
        assert!(
            !anomalies
                .iter()
                .any(|a| matches!(a, Anomaly::LostWrite { id: 3, .. })),
            "server 2 was unreadable, not lossy"
        );
    }
}
