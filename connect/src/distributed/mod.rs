//! Kafka Connect's distributed mode: workers sharing a `group.id` form a group of
//! protocol type `connect`, the leader assigns connectors and tasks with the incremental
//! cooperative protocols (KIP-415), and connector configs, source offsets and statuses
//! live in compacted topics in Apache Kafka's own record formats.

pub mod assignor;
pub mod config;
pub mod herder;
pub mod log;
pub mod member;
pub mod protocol;
pub mod records;
