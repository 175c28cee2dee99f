//! The checkers, one per workload.

mod counter;
pub mod group;
pub mod kafka;

pub use counter::*;
