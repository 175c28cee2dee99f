//! The history of a run: every client operation's invocation and completion, and every
//! fault, in simulated time, as JSON lines. Its SHA-256 names the run.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    /// Indeterminate: the operation may or may not have happened.
    Unknown,
    /// Not a client operation: a fault or a heal, recorded by the nemesis.
    Info,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    pub index: u64,
    /// Simulated nanoseconds since the run began.
    pub time_ns: u64,
    /// A client number, or `"nemesis"`.
    pub process: String,
    #[serde(rename = "type")]
    pub op_type: OpType,
    pub f: String,
    pub value: serde_json::Value,
}

/// A shared, append-only history. All simulated nodes run on one thread, so a mutex
/// here is never contended; it only satisfies `Send`.
#[derive(Debug, Clone, Default)]
pub struct History {
    ops: Arc<Mutex<Vec<Op>>>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(
        &self,
        time_ns: u64,
        process: impl Into<String>,
        op_type: OpType,
        f: &str,
        value: serde_json::Value,
    ) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        let index = ops.len() as u64;
        ops.push(Op {
            index,
            time_ns,
            process: process.into(),
            op_type,
            f: f.to_string(),
            value,
        });
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The history as JSON lines, one operation per line.
pub fn to_json_lines(ops: &[Op]) -> String {
    let mut out = String::new();
    for op in ops {
        out.push_str(&serde_json::to_string(op).expect("history values are plain JSON"));
        out.push('\n');
    }
    out
}

pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_hash_follow_the_recorded_order() {
        let h = History::new();
        h.record(5, "0", OpType::Invoke, "incr", serde_json::json!({"id": 1}));
        h.record(9, "0", OpType::Ok, "incr", serde_json::json!({"id": 1}));
        let lines = to_json_lines(&h.ops());
        assert_eq!(
            lines.lines().next(),
            Some(
                r#"{"index":0,"time_ns":5,"process":"0","type":"invoke","f":"incr","value":{"id":1}}"#
            )
        );
        let other = History::new();
        other.record(5, "0", OpType::Invoke, "incr", serde_json::json!({"id": 1}));
        other.record(10, "0", OpType::Ok, "incr", serde_json::json!({"id": 1}));
        assert_ne!(sha256_hex(&lines), sha256_hex(&to_json_lines(&other.ops())));
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
