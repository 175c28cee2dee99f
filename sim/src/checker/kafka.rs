//! The Kafka workload's checker: the anomalies of Jepsen's Kafka workload.
//!
//! The history holds `send` operations (invoke `{"partition", "value"}`, ok adds
//! `"offset"`), `poll` completions (`{"records": {"P": [[offset, value], ...]}}`, plus
//! `{"reset": true}` on the invoke when the consumer lost its position) and one
//! `final-read` per partition (`{"partition", "records"}`) after faults healed.
//!
//! - lost write: acknowledged, and missing from the final read of its partition; where
//!   that read failed, Jepsen's rule: never read, though an offset at or above it was;
//! - unseen: acknowledged, never read, above every offset read, and no final read;
//! - duplicate: one value read at two offsets;
//! - inconsistent offsets: two values read at one offset;
//! - non-monotonic send: a producer's acknowledged offsets in a partition go backwards;
//! - non-monotonic poll: a consumer's successive polls of a partition go backwards;
//! - poll skip: a consumer's successive polls of a partition jump over offsets that hold
//!   records.

use std::collections::{BTreeMap, BTreeSet};

use super::Anomaly;
use crate::history::{Op, OpType};

type Records = Vec<(i64, u64)>;

fn records(value: &serde_json::Value) -> Records {
    value
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|pair| Some((pair.get(0)?.as_i64()?, pair.get(1)?.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    // (partition, offset, value) of every acknowledged send.
    let mut acked: Vec<(i32, i64, u64)> = Vec::new();
    let mut send_order: BTreeMap<(String, i32), Vec<i64>> = BTreeMap::new();
    let mut polls: BTreeMap<(String, i32), Vec<Records>> = BTreeMap::new();
    // Everything read, by anyone: partition -> offset -> values.
    let mut seen: BTreeMap<i32, BTreeMap<i64, BTreeSet<u64>>> = BTreeMap::new();
    let mut finals: BTreeMap<i32, BTreeSet<u64>> = BTreeMap::new();
    let mut note = |partition: i32, list: &Records| {
        for &(offset, value) in list {
            seen.entry(partition)
                .or_default()
                .entry(offset)
                .or_default()
                .insert(value);
        }
    };
    for op in ops {
        let int = |name: &str| op.value.get(name).and_then(serde_json::Value::as_i64);
        match (op.f.as_str(), op.op_type) {
            ("send", OpType::Ok) => {
                if let (Some(p), Some(o), Some(v)) = (int("partition"), int("offset"), int("value"))
                {
                    acked.push((p as i32, o, v as u64));
                    send_order
                        .entry((op.process.clone(), p as i32))
                        .or_default()
                        .push(o);
                }
            }
            ("poll", OpType::Ok) => {
                if let Some(map) = op.value.get("records").and_then(|r| r.as_object()) {
                    for (p, list) in map {
                        let Ok(p) = p.parse::<i32>() else { continue };
                        let list = records(list);
                        note(p, &list);
                        polls.entry((op.process.clone(), p)).or_default().push(list);
                    }
                }
            }
            ("final-read", OpType::Ok) => {
                if let Some(p) = int("partition") {
                    let list = records(op.value.get("records").unwrap_or(&serde_json::Value::Null));
                    note(p as i32, &list);
                    finals.insert(p as i32, list.iter().map(|(_, v)| *v).collect());
                }
            }
            _ => {}
        }
    }

    let read_values: BTreeMap<u64, BTreeSet<(i32, i64)>> = {
        let mut map: BTreeMap<u64, BTreeSet<(i32, i64)>> = BTreeMap::new();
        for (&p, offsets) in &seen {
            for (&o, values) in offsets {
                for &v in values {
                    map.entry(v).or_default().insert((p, o));
                }
            }
        }
        map
    };
    for (&p, offsets) in &seen {
        for (&o, values) in offsets {
            if values.len() > 1 {
                anomalies.push(Anomaly::InconsistentOffsets {
                    partition: p,
                    offset: o,
                    values: values.iter().copied().collect(),
                });
            }
        }
    }
    for (&value, places) in &read_values {
        if places.len() > 1 {
            anomalies.push(Anomaly::KafkaDuplicate {
                value,
                places: places.iter().copied().collect(),
            });
        }
    }
    for &(partition, offset, value) in &acked {
        if let Some(last_read) = finals.get(&partition) {
            if !last_read.contains(&value) {
                anomalies.push(Anomaly::KafkaLostWrite {
                    partition,
                    offset,
                    value,
                });
            }
            continue;
        }
        if read_values.contains_key(&value) {
            continue;
        }
        let highest_read = seen
            .get(&partition)
            .and_then(|o| o.keys().next_back().copied())
            .unwrap_or(-1);
        if offset <= highest_read {
            anomalies.push(Anomaly::KafkaLostWrite {
                partition,
                offset,
                value,
            });
        } else {
            anomalies.push(Anomaly::Unseen {
                partition,
                offset,
                value,
            });
        }
    }
    for ((process, partition), offsets) in &send_order {
        for pair in offsets.windows(2) {
            if pair[1] <= pair[0] {
                anomalies.push(Anomaly::NonMonotonicSend {
                    process: process.clone(),
                    partition: *partition,
                    from: pair[0],
                    to: pair[1],
                });
            }
        }
    }
    for ((process, partition), list) in &polls {
        let mut last: Option<i64> = None;
        for poll in list {
            for &(offset, _) in poll {
                if let Some(prev) = last {
                    if offset <= prev {
                        anomalies.push(Anomaly::NonMonotonicPoll {
                            process: process.clone(),
                            partition: *partition,
                            from: prev,
                            to: offset,
                        });
                    } else if offset > prev + 1 {
                        let skipped: Vec<i64> = seen
                            .get(partition)
                            .map(|o| o.range(prev + 1..offset).map(|(k, _)| *k).collect())
                            .unwrap_or_default();
                        if !skipped.is_empty() {
                            anomalies.push(Anomaly::PollSkip {
                                process: process.clone(),
                                partition: *partition,
                                from: prev,
                                to: offset,
                                skipped,
                            });
                        }
                    }
                }
                last = Some(offset);
            }
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::history::History;

    fn history(entries: &[(&str, OpType, &str, serde_json::Value)]) -> Vec<Op> {
        let h = History::new();
        for (i, (process, op_type, f, value)) in entries.iter().enumerate() {
            h.record(i as u64, *process, *op_type, f, value.clone());
        }
        h.ops()
    }

    #[test]
    fn a_clean_history_has_no_anomalies() {
        let ops = history(&[
            (
                "0",
                OpType::Ok,
                "send",
                json!({"partition": 0, "value": 1, "offset": 0}),
            ),
            (
                "0",
                OpType::Ok,
                "send",
                json!({"partition": 0, "value": 2, "offset": 1}),
            ),
            ("1", OpType::Ok, "poll", json!({"records": {"0": [[0, 1]]}})),
            ("1", OpType::Ok, "poll", json!({"records": {"0": [[1, 2]]}})),
            (
                "checker",
                OpType::Ok,
                "final-read",
                json!({"partition": 0, "records": [[0, 1], [1, 2]]}),
            ),
        ]);
        assert_eq!(check(&ops), vec![]);
    }

    #[test]
    fn each_anomaly_is_found() {
        let ops = history(&[
            // Acked at offset 1, then the broker lost it and gave offset 1 to value 3.
            (
                "0",
                OpType::Ok,
                "send",
                json!({"partition": 0, "value": 1, "offset": 0}),
            ),
            (
                "0",
                OpType::Ok,
                "send",
                json!({"partition": 0, "value": 2, "offset": 1}),
            ),
            (
                "0",
                OpType::Ok,
                "send",
                json!({"partition": 0, "value": 3, "offset": 1}),
            ),
            (
                "1",
                OpType::Ok,
                "poll",
                json!({"records": {"0": [[0, 1], [1, 2]]}}),
            ),
            ("1", OpType::Ok, "poll", json!({"records": {"0": [[1, 3]]}})),
            (
                "2",
                OpType::Ok,
                "poll",
                json!({"records": {"0": [[0, 1], [2, 4]]}}),
            ),
            (
                "0",
                OpType::Ok,
                "send",
                json!({"partition": 0, "value": 9, "offset": 1}),
            ),
            (
                "0",
                OpType::Ok,
                "send",
                json!({"partition": 1, "value": 8, "offset": 7}),
            ),
            (
                "checker",
                OpType::Ok,
                "final-read",
                json!({"partition": 0, "records": [[0, 1], [1, 3], [2, 4], [3, 1]]}),
            ),
        ]);
        let found = check(&ops);
        let has = |f: &dyn Fn(&Anomaly) -> bool| found.iter().any(f);
        assert!(
            has(&|a| matches!(a, Anomaly::InconsistentOffsets { offset: 1, .. })),
            "{found:?}"
        );
        assert!(has(&|a| matches!(
            a,
            Anomaly::KafkaDuplicate { value: 1, .. }
        )));
        assert!(has(&|a| matches!(
            a,
            Anomaly::KafkaLostWrite {
                value: 9,
                offset: 1,
                ..
            }
        )));
        assert!(has(&|a| matches!(a, Anomaly::Unseen { value: 8, .. })));
        assert!(has(&|a| matches!(
            a,
            Anomaly::NonMonotonicSend { from: 1, to: 1, .. }
        )));
        assert!(has(&|a| matches!(
            a,
            Anomaly::NonMonotonicPoll { from: 1, to: 1, .. }
        )));
        assert!(has(
            &|a| matches!(a, Anomaly::PollSkip { skipped, .. } if skipped == &vec![1])
        ));
        assert!(
            has(&|a| matches!(a, Anomaly::KafkaLostWrite { value: 2, .. })),
            "read once, then gone from the final read: lost"
        );
        assert!(!has(&|a| matches!(
            a,
            Anomaly::KafkaLostWrite { value: 3, .. }
        )));
    }
}
