//! What one seed produced, and its summary line `seed=S ops=N anomalies=K history=SHA256`.

use std::time::Duration;

#[cfg(madsim)]
use madsim::rand::{thread_rng, Rng};

#[cfg(madsim)]
use super::{Clock, SimOptions};
use crate::checker::Anomaly;
#[cfg(madsim)]
use crate::history::{sha256_hex, to_json_lines, Op, OpType};

/// What one seed produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub seed: u64,
    /// Client operations invoked (final reads included).
    pub ops: u64,
    pub anomalies: Vec<Anomaly>,
    pub history_sha256: String,
    /// The history as JSON lines.
    pub history: String,
    pub simulated: Duration,
    /// Faults injected.
    pub faults_injected: u64,
    /// A draw from the simulator's RNG after the run: any divergence in the sequence of
    /// random choices during the run changes it.
    pub rng_fingerprint: u64,
}

impl RunReport {
    pub fn summary(&self) -> String {
        format!(
            "seed={} ops={} anomalies={} history={}",
            self.seed,
            self.ops,
            self.anomalies.len(),
            self.history_sha256
        )
    }

    pub fn lost_writes(&self) -> usize {
        self.anomalies
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Anomaly::LostWrite { .. } | Anomaly::KafkaLostWrite { .. }
                )
            })
            .count()
    }
}

/// The run's report: its history as JSON lines and their hash, counts, and a last draw
/// from the simulator's RNG (which any divergence during the run changes).
#[cfg(madsim)]
pub(crate) fn report(
    opts: &SimOptions,
    ops: &[Op],
    anomalies: Vec<Anomaly>,
    clock: &Clock,
    faults_injected: u64,
) -> RunReport {
    let lines = to_json_lines(ops);
    let client_ops = ops
        .iter()
        .filter(|op| op.op_type == OpType::Invoke && op.process != "nemesis")
        .count() as u64;
    RunReport {
        seed: opts.seed,
        ops: client_ops,
        anomalies,
        history_sha256: sha256_hex(&lines),
        history: lines,
        simulated: clock.elapsed(),
        faults_injected,
        rng_fingerprint: thread_rng().gen(),
    }
}
