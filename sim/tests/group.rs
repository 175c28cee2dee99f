//! The consumer-group workload through the real `runnel-sim` binary: members of one group
//! (our client's `GroupConsumer`) crash, leave and return while the broker is crashed and
//! cut off; judged on ownership, commits and at-least-once processing.
#![cfg(madsim)]

mod support;

use std::collections::BTreeMap;

use support::{sim, sweep_count};

#[test]
fn without_faults_the_group_hands_partitions_over_and_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let history_path = dir.path().join("h.jsonl");
    let mut protocols = std::collections::BTreeSet::new();
    for seed in 0..6u64 {
        let (code, out) = sim(&[
            "run",
            "--seed",
            &seed.to_string(),
            "--workload",
            "group",
            "--faults",
            "none",
            "--history",
            history_path.to_str().expect("utf-8 path"),
        ]);
        assert_eq!(code, 0, "seed {seed}: {out}");
        let history = std::fs::read_to_string(&history_path).expect("history written");
        let ops: Vec<serde_json::Value> = history
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        let count = |f: &str| ops.iter().filter(|op| op["f"] == f).count();
        protocols.extend(
            ops.iter()
                .filter(|op| op["f"] == "group-protocol")
                .filter_map(|op| op["value"]["consumer"].as_bool()),
        );
        assert!(
            count("crash") + count("leave") >= 2,
            "seed {seed}: members come and go"
        );
        // Generations (member epochs under KIP-848) the members saw: several happened.
        let generations: std::collections::BTreeSet<i64> = ops
            .iter()
            .filter(|op| op["f"] == "assigned" || op["f"] == "owned")
            .filter_map(|op| op["value"]["generation"].as_i64())
            .collect();
        assert!(
            generations.len() >= 2,
            "seed {seed}: generations {generations:?}"
        );
        // After the members settled, the group committed every record it was sent.
        let mut ends: BTreeMap<i64, i64> = BTreeMap::new();
        let mut committed: BTreeMap<String, i64> = BTreeMap::new();
        for op in &ops {
            if op["f"] == "final-read" && op["type"] == "ok" {
                let end = op["value"]["records"]
                    .as_array()
                    .and_then(|r| r.last())
                    .and_then(|pair| pair[0].as_i64())
                    .map_or(0, |o| o + 1);
                ends.insert(op["value"]["partition"].as_i64().expect("partition"), end);
            }
            if op["f"] == "final-committed" && op["type"] == "ok" {
                for (p, o) in op["value"]["offsets"].as_object().expect("offsets") {
                    committed.insert(p.clone(), o.as_i64().expect("offset"));
                }
            }
        }
        assert_eq!(ends.len(), 4, "seed {seed}: four partitions read");
        for (p, end) in ends {
            assert!(end > 0, "seed {seed}: partition {p} got records");
            assert_eq!(
                committed.get(&p.to_string()).copied(),
                Some(end),
                "seed {seed}: partition {p} committed to its end"
            );
        }
    }
    assert_eq!(protocols.len(), 2, "both protocols ran: {protocols:?}");
}

#[test]
fn crashing_members_and_a_faulty_broker_break_no_group_guarantee() {
    let (code, out) = sim(&["sweep", "--seeds", "0..150", "--workload", "group"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(sweep_count(&out, "failed"), 0, "{out}");
}
