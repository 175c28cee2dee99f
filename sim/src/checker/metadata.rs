//! The metadata checker: what clients were told about topic creations and deletions,
//! against every broker's Metadata once the faults healed.
//!
//! Committed metadata is linearizable when every broker that caught up shows the same
//! topics, every acknowledged creation is there unless its deletion was acknowledged or
//! may have happened, every acknowledged deletion is gone, nothing refused for sure is
//! there, and nothing is there that no client created.

use std::collections::{BTreeMap, BTreeSet};

use super::Anomaly;
use crate::history::{Op, OpType};

/// What clients were told about one topic (`Invoke`: asked, no answer recorded).
#[derive(Default)]
struct Told {
    create: Option<OpType>,
    delete: Option<OpType>,
}

/// Reads the metadata history: `create` and `delete` with `{"id"}`, and the final reads
/// `{"server", "topics": [id, ...]}`.
pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let mut told: BTreeMap<u64, Told> = BTreeMap::new();
    let mut finals: BTreeMap<u64, Option<BTreeSet<u64>>> = BTreeMap::new();
    for op in ops {
        let field = |name: &str| op.value.get(name).and_then(serde_json::Value::as_u64);
        match (op.f.as_str(), op.op_type) {
            ("create", outcome) => {
                if let Some(id) = field("id") {
                    told.entry(id).or_default().create = Some(outcome);
                }
            }
            ("delete", outcome) => {
                if let Some(id) = field("id") {
                    told.entry(id).or_default().delete = Some(outcome);
                }
            }
            ("final-read", OpType::Ok) => {
                let topics = op.value.get("topics").and_then(|t| t.as_array());
                if let (Some(server), Some(topics)) = (field("server"), topics) {
                    let ids = topics
                        .iter()
                        .filter_map(serde_json::Value::as_u64)
                        .collect();
                    finals.insert(server, Some(ids));
                }
            }
            ("final-read", _) => {
                if let Some(server) = field("server") {
                    finals.entry(server).or_insert(None);
                }
            }
            _ => {}
        }
    }
    let mut anomalies = Vec::new();
    let mut read: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (&server, topics) in &finals {
        match topics {
            None => anomalies.push(Anomaly::Unreadable { server }),
            Some(topics) => {
                read.insert(server, topics.clone());
            }
        }
    }
    let seen: BTreeSet<u64> = read.values().flatten().copied().collect();
    for &id in &seen {
        let (present_on, absent_on): (Vec<u64>, Vec<u64>) =
            read.keys().partition(|server| read[server].contains(&id));
        if !absent_on.is_empty() {
            anomalies.push(Anomaly::MetadataDiverged {
                id,
                present_on,
                absent_on,
            });
        }
    }
    for (&server, topics) in &read {
        for &id in topics {
            match told.get(&id) {
                None => anomalies.push(Anomaly::Invented { id, server }),
                Some(t) if t.create == Some(OpType::Fail) => {
                    anomalies.push(Anomaly::FailedButPresent { id, server })
                }
                Some(t) if t.delete == Some(OpType::Ok) => {
                    anomalies.push(Anomaly::DeletedButPresent { id, server })
                }
                Some(_) => {}
            }
        }
        for (&id, t) in &told {
            // A deletion still in flight (its completion never recorded) may have happened.
            let kept =
                t.create == Some(OpType::Ok) && matches!(t.delete, None | Some(OpType::Fail));
            if kept && !topics.contains(&id) {
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

    fn op(f: &str, op_type: OpType, value: serde_json::Value) -> Op {
        Op {
            index: 0,
            time_ns: 0,
            process: "p".into(),
            op_type,
            f: f.into(),
            value,
        }
    }

    fn final_read(server: u64, topics: &[u64]) -> Op {
        op(
            "final-read",
            OpType::Ok,
            json!({ "server": server, "topics": topics }),
        )
    }

    #[test]
    fn a_clean_history_passes_and_each_broken_one_is_named() {
        let history = vec![
            op("create", OpType::Invoke, json!({ "id": 1 })),
            op("create", OpType::Ok, json!({ "id": 1 })),
            op("create", OpType::Invoke, json!({ "id": 2 })),
            op("create", OpType::Ok, json!({ "id": 2 })),
            op("delete", OpType::Invoke, json!({ "id": 2 })),
            op("delete", OpType::Ok, json!({ "id": 2 })),
            op("create", OpType::Invoke, json!({ "id": 3 })),
            op("create", OpType::Unknown, json!({ "id": 3 })),
            op("create", OpType::Invoke, json!({ "id": 4 })),
            op("create", OpType::Fail, json!({ "id": 4 })),
        ];
        let with = |finals: Vec<Op>| {
            let mut ops = history.clone();
            ops.extend(finals);
            check(&ops)
        };
        assert!(with(vec![final_read(1, &[1, 3]), final_read(2, &[1, 3])]).is_empty());
        assert!(
            with(vec![final_read(1, &[1]), final_read(2, &[1])]).is_empty(),
            "3 may not be"
        );
        assert_eq!(
            with(vec![final_read(1, &[]), final_read(2, &[])]),
            vec![
                Anomaly::LostWrite { id: 1, server: 1 },
                Anomaly::LostWrite { id: 1, server: 2 }
            ]
        );
        assert_eq!(
            with(vec![final_read(1, &[1, 2])]),
            vec![Anomaly::DeletedButPresent { id: 2, server: 1 }]
        );
        assert_eq!(
            with(vec![final_read(1, &[1, 4])]),
            vec![Anomaly::FailedButPresent { id: 4, server: 1 }]
        );
        assert_eq!(
            with(vec![final_read(1, &[1, 9])]),
            vec![Anomaly::Invented { id: 9, server: 1 }]
        );
        assert_eq!(
            with(vec![final_read(1, &[1, 3]), final_read(2, &[1])]),
            vec![Anomaly::MetadataDiverged {
                id: 3,
                present_on: vec![1],
                absent_on: vec![2]
            }]
        );
    }
}
