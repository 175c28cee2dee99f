//! What every workload runs on: the options of a run, the simulated cluster (a fresh
//! runtime per seed, node addresses, the clock), the nemesis, and the report with its
//! summary line. The harness knows no workload; `crate::run_seed` picks one.
//!
//! The options and the report compile everywhere; the rest needs madsim.

#[cfg(madsim)]
mod cluster;
#[cfg(madsim)]
mod nemesis;
mod options;
mod report;

#[cfg(madsim)]
pub use cluster::simulate;
#[cfg(madsim)]
pub(crate) use cluster::{
    addr_of, client_node, node_with_transport, run_in_simulator, Clock, CHECKER_ID,
};
#[cfg(madsim)]
pub(crate) use nemesis::Nemesis;
pub use options::{Fault, Policy, SimOptions, Workload};
#[cfg(madsim)]
pub(crate) use report::report;
pub use report::RunReport;
