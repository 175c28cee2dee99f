//! The harness: the runner, the cluster and the nemesis.

mod nemesis;

pub(crate) use nemesis::{addr_of, report, Clock, Nemesis, CHECKER_ID, CLIENT_ID_BASE};
pub use nemesis::{run_seed, simulate};
