//! The quorum checker: what proposers were told against every voter's committed log at
//! the end.
//!
//! Raft's State Machine Safety: no two voters (nor one voter twice) commit different
//! values at one index. Each
//! acknowledged proposal is at the index it was acknowledged with; nothing is committed
//! that no client proposed, nothing twice, and nothing that was refused. After the faults
//! heal, every voter catches up to the longest log.

use std::collections::{BTreeMap, BTreeSet};

use super::Anomaly;
use crate::history::{Op, OpType};

/// Reads the quorum history: `propose` invocations carry `{"value"}`, completions
/// `{"value", "index"}`, and the final reads `{"server", "log": [[index, value], ...]}`.
pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let mut proposed: BTreeSet<u64> = BTreeSet::new();
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut failed: BTreeSet<u64> = BTreeSet::new();
    let mut finals: BTreeMap<u64, Option<BTreeMap<u64, u64>>> = BTreeMap::new();
    // One voter applying two values at one index within a life.
    let mut conflicts = Vec::new();
    for op in ops {
        let field = |name: &str| op.value.get(name).and_then(serde_json::Value::as_u64);
        match (op.f.as_str(), op.op_type) {
            ("propose", OpType::Invoke) => proposed.extend(field("value")),
            ("propose", OpType::Ok) => {
                if let (Some(value), Some(index)) = (field("value"), field("index")) {
                    acked.insert(value, index);
                }
            }
            ("propose", OpType::Fail) => failed.extend(field("value")),
            ("apply-conflict", _) => {
                let values = op.value.get("values").and_then(|v| v.as_array());
                if let (Some(index), Some(values)) = (field("index"), values) {
                    conflicts.push(Anomaly::Divergence {
                        index,
                        values: values
                            .iter()
                            .filter_map(serde_json::Value::as_u64)
                            .collect(),
                    });
                }
            }
            ("final-read", OpType::Ok) => {
                if let Some(server) = field("server") {
                    finals.insert(server, Some(log_of(&op.value)));
                }
            }
            ("final-read", OpType::Unknown) => {
                if let Some(server) = field("server") {
                    finals.entry(server).or_insert(None);
                }
            }
            _ => {}
        }
    }
    let mut anomalies = conflicts;
    let mut agreed: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (&server, log) in &finals {
        match log {
            None => anomalies.push(Anomaly::Unreadable { server }),
            Some(log) => {
                for (&index, &value) in log {
                    agreed.entry(index).or_default().insert(value);
                }
            }
        }
    }
    for (&index, values) in &agreed {
        if values.len() > 1 {
            anomalies.push(Anomaly::Divergence {
                index,
                values: values.iter().copied().collect(),
            });
        }
    }
    let at = |index: u64| agreed.get(&index).and_then(|v| v.first().copied());
    for (&value, &index) in &acked {
        if at(index) != Some(value) {
            anomalies.push(Anomaly::Misplaced {
                value,
                index,
                found: at(index),
            });
        }
    }
    let mut places: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (&index, values) in &agreed {
        for &value in values {
            places.entry(value).or_default().push(index);
        }
    }
    for (&value, indexes) in &places {
        if !proposed.contains(&value) {
            anomalies.push(Anomaly::Invented {
                id: value,
                server: 0,
            });
        }
        if indexes.len() > 1 {
            anomalies.push(Anomaly::Duplicate {
                id: value,
                server: 0,
            });
        }
        if failed.contains(&value) {
            anomalies.push(Anomaly::FailedButPresent {
                id: value,
                server: 0,
            });
        }
    }
    let longest = agreed.keys().next_back().copied().unwrap_or(0);
    for (&server, log) in &finals {
        if let Some(log) = log {
            let last_index = log.keys().next_back().copied().unwrap_or(0);
            if last_index < longest {
                anomalies.push(Anomaly::NotConverged {
                    server,
                    last_index,
                    longest,
                });
            }
        }
    }
    anomalies
}

fn log_of(value: &serde_json::Value) -> BTreeMap<u64, u64> {
    value
        .get("log")
        .and_then(|l| l.as_array())
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| Some((p.get(0)?.as_u64()?, p.get(1)?.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::history::History;

    fn history(ops: &[(&str, OpType, serde_json::Value)]) -> Vec<Op> {
        let h = History::new();
        for (i, (f, t, v)) in ops.iter().enumerate() {
            h.record(i as u64, "p", *t, f, v.clone());
        }
        h.ops()
    }

    fn final_read(server: u64, log: &[(u64, u64)]) -> (&'static str, OpType, serde_json::Value) {
        let log: Vec<_> = log.iter().map(|(i, v)| json!([i, v])).collect();
        (
            "final-read",
            OpType::Ok,
            json!({ "server": server, "log": log }),
        )
    }

    #[test]
    fn an_agreed_log_holding_every_acknowledged_value_is_clean() {
        let ops = history(&[
            ("propose", OpType::Invoke, json!({ "value": 7 })),
            ("propose", OpType::Ok, json!({ "value": 7, "index": 2 })),
            ("propose", OpType::Invoke, json!({ "value": 8 })),
            ("propose", OpType::Unknown, json!({ "value": 8 })),
            final_read(1, &[(2, 7), (3, 8)]),
            final_read(2, &[(2, 7), (3, 8)]),
        ]);
        assert_eq!(check(&ops), vec![]);
    }

    #[test]
    fn divergence_misplacement_and_lagging_voters_are_named() {
        let ops = history(&[
            ("propose", OpType::Invoke, json!({ "value": 7 })),
            ("propose", OpType::Ok, json!({ "value": 7, "index": 2 })),
            ("propose", OpType::Invoke, json!({ "value": 9 })),
            ("propose", OpType::Fail, json!({ "value": 9 })),
            final_read(1, &[(2, 9), (3, 5)]),
            final_read(2, &[(2, 7)]),
        ]);
        let anomalies = check(&ops);
        assert!(anomalies.contains(&Anomaly::Divergence {
            index: 2,
            values: vec![7, 9]
        }));
        assert!(anomalies.contains(&Anomaly::FailedButPresent { id: 9, server: 0 }));
        assert!(anomalies.contains(&Anomaly::Invented { id: 5, server: 0 }));
        assert!(anomalies.contains(&Anomaly::NotConverged {
            server: 2,
            last_index: 2,
            longest: 3
        }));
    }

    #[test]
    fn an_acknowledged_value_missing_from_its_index_is_misplaced() {
        let ops = history(&[
            ("propose", OpType::Invoke, json!({ "value": 7 })),
            ("propose", OpType::Ok, json!({ "value": 7, "index": 4 })),
            final_read(1, &[(1, 3)]),
        ]);
        assert!(check(&ops).contains(&Anomaly::Misplaced {
            value: 7,
            index: 4,
            found: None
        }));
    }
}
