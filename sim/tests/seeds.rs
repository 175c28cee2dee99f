//! The harness itself, through the real `runnel-sim` binary: exact replay, the two counter
//! policies, and the checker's ability to fail.
#![cfg(madsim)]

mod support;

use support::{sim, sweep_count};

fn summary(stdout: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with("seed="))
        .unwrap_or_else(|| panic!("no summary line in {stdout}"))
        .to_string()
}

#[test]
fn the_same_seed_replays_exactly_in_two_processes_and_seeds_differ() {
    let (code_a, a) = sim(&["run", "--seed", "42"]);
    let (code_b, b) = sim(&["run", "--seed", "42"]);
    let (_, c) = sim(&["run", "--seed", "43"]);
    assert_eq!((code_a, code_b), (0, 0), "{a}");
    assert_eq!(summary(&a), summary(&b));
    let hash = |s: &str| {
        summary(s)
            .rsplit("history=")
            .next()
            .expect("hash")
            .to_string()
    };
    assert_ne!(hash(&a), hash(&c), "another seed, another interleaving");
    let (code, check) = sim(&["run", "--seed", "44", "--check-determinism"]);
    assert_eq!(code, 0, "{check}");
    assert!(check.contains("identical histories"), "{check}");
}

#[test]
fn fsync_before_ack_loses_nothing_over_500_seeds_with_every_fault() {
    let (code, out) = sim(&["sweep", "--seeds", "0..500", "--policy", "fsync-before-ack"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(sweep_count(&out, "failed"), 0, "{out}");
}

#[test]
fn ack_before_fsync_loses_acknowledged_increments_on_a_clear_share_of_seeds() {
    let (code, out) = sim(&[
        "sweep",
        "--seeds",
        "0..100",
        "--policy",
        "ack-before-fsync",
        "--faults",
        "kill",
    ]);
    assert_eq!(code, 1, "lost writes fail the sweep: {out}");
    let lossy = sweep_count(&out, "with");
    assert!(lossy >= 30, "only {lossy} of 100 seeds lost writes: {out}");
    assert!(
        out.contains("replay: ci/sim run --seed"),
        "each failure names its replay command"
    );
}

#[test]
fn without_faults_even_ack_before_fsync_loses_nothing() {
    let (code, out) = sim(&[
        "sweep",
        "--seeds",
        "0..20",
        "--policy",
        "ack-before-fsync",
        "--faults",
        "none",
    ]);
    assert_eq!(code, 0, "{out}");
}
