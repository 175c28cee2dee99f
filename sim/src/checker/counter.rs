//! The counter checker: what clients were told against what the servers hold at the end.
//!
//! An increment acknowledged by a server must be in that server's final log (else it is
//! a lost write); nothing may be in a log that no client sent there (invented), and no id
//! may appear twice (duplicate). Failed increments must not appear; indeterminate ones
//! may or may not.

use std::collections::{BTreeMap, BTreeSet};

use super::Anomaly;
use crate::history::{Op, OpType};

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
