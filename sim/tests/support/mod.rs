//! Running the real `runnel-sim` binary from tests, and reading its output.

use std::process::Command;

/// Runs `runnel-sim` with `args`; returns its exit code and standard output.
pub fn sim(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_runnel-sim"))
        .args(args)
        .env_remove("MADSIM_TEST_CHECK_DETERMINISM")
        .output()
        .expect("runnel-sim starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code().unwrap_or(-1), stdout)
}

/// The count printed before `label` on the sweep's summary line (`..., 3 failed, ...`).
pub fn sweep_count(stdout: &str, label: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("sweep:"))
        .expect("sweep summary");
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| w.starts_with(label))
        .unwrap_or_else(|| panic!("{label} in {line}"));
    words[i - 1].trim_end_matches(',').parse().expect("a count")
}
