//! The Kafka and group workloads.

pub(crate) mod group;
pub(crate) mod kafka;
