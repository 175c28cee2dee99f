//! The Kafka workload through the real `runnel-sim` binary: one broker crashed on the
//! simulated disk while producers and consumers run, judged by Jepsen's Kafka anomalies.
#![cfg(madsim)]

mod support;

use support::{sim, sweep_count};

#[test]
fn flushing_every_batch_loses_nothing_through_crashes_and_disk_faults() {
    let (code, out) = sim(&[
        "sweep",
        "--seeds",
        "0..100",
        "--workload",
        "kafka",
        "--policy",
        "fsync-before-ack",
        "--faults",
        "kill,disk,clog-node",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(sweep_count(&out, "failed"), 0, "{out}");
}

#[test]
fn the_default_flush_policy_loses_the_unsynced_tail_and_the_checker_names_it() {
    let (code, out) = sim(&[
        "sweep",
        "--seeds",
        "0..50",
        "--workload",
        "kafka",
        "--policy",
        "ack-before-fsync",
        "--faults",
        "kill",
    ]);
    assert_eq!(code, 1, "lost writes fail the sweep: {out}");
    let lossy = sweep_count(&out, "with");
    assert!(
        lossy >= 15,
        "only {lossy} of 50 seeds lost acknowledged writes: {out}"
    );
}

#[test]
fn every_acknowledged_write_missing_at_the_end_is_reported_lost_and_nothing_else_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let history_path = dir.path().join("h.jsonl");
    let mut lossy_runs = 0;
    for seed in 0..10u64 {
        let (_, out) = sim(&[
            "run",
            "--seed",
            &seed.to_string(),
            "--workload",
            "kafka",
            "--policy",
            "ack-before-fsync",
            "--faults",
            "kill",
            "--history",
            history_path.to_str().expect("utf-8 path"),
        ]);
        let reported: u64 = out
            .lines()
            .find_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("lost_writes="))
            })
            .expect("lost_writes= in the output")
            .parse()
            .expect("a count");
        // Recount from the raw history: acknowledged sends absent from the final reads.
        let history = std::fs::read_to_string(&history_path).expect("history written");
        let mut acked = std::collections::BTreeSet::new();
        let mut final_values = std::collections::BTreeSet::new();
        for line in history.lines() {
            let op: serde_json::Value = serde_json::from_str(line).expect("json line");
            let value = &op["value"];
            match (op["f"].as_str(), op["type"].as_str()) {
                (Some("send"), Some("ok")) => {
                    acked.insert(value["value"].as_u64().expect("value"));
                }
                (Some("final-read"), Some("ok")) => {
                    for pair in value["records"].as_array().expect("records") {
                        final_values.insert(pair[1].as_u64().expect("value"));
                    }
                }
                _ => {}
            }
        }
        let missing = acked.difference(&final_values).count() as u64;
        assert_eq!(reported, missing, "seed {seed}: {out}");
        if missing > 0 {
            lossy_runs += 1;
            assert!(
                history.contains("\"f\":\"kill\""),
                "losses only come from crashes"
            );
        }
    }
    assert!(
        lossy_runs > 0,
        "no seed of ten lost anything: the test proves nothing"
    );
}

#[test]
fn without_faults_nothing_is_lost_even_without_fsync() {
    let (code, out) = sim(&[
        "sweep",
        "--seeds",
        "0..10",
        "--workload",
        "kafka",
        "--policy",
        "ack-before-fsync",
        "--faults",
        "none",
    ]);
    assert_eq!(code, 0, "{out}");
}
