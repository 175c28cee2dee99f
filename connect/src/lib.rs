//! Runnel's Kafka Connect runtime. A worker runs each connector and each task in its own
//! supervised actor on our Kafka client; a failing task becomes FAILED with its trace and
//! can be restarted, and never takes the worker down. [`rest::handle`] is Kafka's REST
//! API over a [`worker::Herder`]; [`http`] serves it.
//!
//! Two modes, as Kafka's:
//! - standalone ([`worker::Herder::start`], Kafka's `connect-standalone.sh`): one worker,
//!   its offsets in `offset.storage.file.filename`;
//! - distributed ([`worker::Herder::start_distributed`], `connect-distributed.sh`; see
//!   [`distributed`]): workers sharing a `group.id` form a group of protocol type
//!   `connect` (the `sessioned` and `compatible` protocols, KIP-415's incremental
//!   cooperative rebalancing with `scheduled.rebalance.max.delay.ms`), the leader assigns
//!   connectors and tasks, and configs, source offsets and statuses live in the compacted
//!   `config.storage.topic`, `offset.storage.topic` and `status.storage.topic` in Apache
//!   Kafka's own record formats: Kafka's worker takes over the topics ours wrote and the
//!   reverse (`cli/tests/connect_kafka.rs`). Any worker answers the REST API; writes are
//!   forwarded to the leader, with Kafka's 409 while the group rebalances.
//!
//! Start from [`worker::WorkerConfig`] or [`distributed::config::DistributedConfig`]
//! (Kafka's worker settings); write connectors with the traits in [`api`] (see [`file`]
//! for Kafka's file connectors); [`converter`] has Kafka's String, Json and ByteArray
//! converters, [`transforms`] its single message transforms and predicates.

pub mod api;
pub mod config;
pub mod converter;
pub mod data;
pub mod distributed;
pub mod entities;
pub mod error;
pub mod file;
pub mod http;
pub mod offsets;
pub mod rest;
mod settings;
mod task;
pub mod transforms;
pub mod validate;
pub mod worker;

pub use error::ConnectError;

/// The version the REST API and the plugins report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
