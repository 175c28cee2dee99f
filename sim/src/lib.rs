//! Runnel's deterministic simulator: one seed fixes a whole run of the real broker and
//! actor code on madsim's simulated clock and network and on our simulated disk, with a
//! nemesis injecting faults, and a checker judging what the clients saw.
//!
//! Start from [`SimOptions`] (seed, [`Workload`], cluster size, [`Policy`], [`Fault`]s)
//! and [`run_seed`] (built with `--cfg madsim`), which returns a [`RunReport`] whose
//! summary line is `seed=S ops=N anomalies=K history=SHA256`; [`simulate`] runs a test's
//! own nodes on the same simulator.
//!
//! The layers, each using only those above it:
//! - [`history`]: the operations clients invoked and what came back;
//! - [`checker`]: one checker per workload, and the [`checker::Anomaly`] they report;
//! - `harness`: options, the simulated cluster (runtime, addresses, clock), the nemesis,
//!   the report;
//! - [`counter`]: the durable counter service and its client, which the counter workload
//!   runs; `wire`: the raw Kafka client the broker workloads use;
//! - `workload`: one module per workload (counter, kafka, group, quorum, metadata);
//! - [`run_seed`], here: the dispatch from a [`Workload`] to its module.
//!
//! The history, checkers, options and report compile everywhere; the rest needs madsim.

pub mod checker;
pub mod counter;
mod harness;
pub mod history;
#[cfg(madsim)]
mod wire;
#[cfg(madsim)]
mod workload;

#[cfg(madsim)]
pub use harness::simulate;
pub use harness::{Fault, Policy, RunReport, SimOptions, Workload};

/// Runs one seed of `opts.workload` on a fresh simulator; see [`SimOptions::replay_command`]
/// for the command that replays it.
///
/// Run one seed per process when runs must replay exactly: madsim 0.2.34 keeps some
/// process-wide state (its task ids), and a second seed in the same process was seen to
/// diverge from the same seed run alone. `runnel-sim sweep` does so.
#[cfg(madsim)]
pub fn run_seed(opts: &SimOptions) -> RunReport {
    match opts.workload {
        Workload::Counter => harness::run_in_simulator(opts, workload::counter::run),
        Workload::Kafka => harness::run_in_simulator(opts, workload::kafka::run),
        Workload::Group => harness::run_in_simulator(opts, workload::group::run),
        Workload::Quorum => harness::run_in_simulator(opts, workload::quorum::run),
        Workload::Metadata => harness::run_in_simulator(opts, workload::metadata::run),
    }
}
