//! Runnel's Rust client: a pure-Rust async Kafka client on the same runtime as the server
//! (real tokio, or madsim under `--cfg madsim`), used by the CLI, the simulator's workloads,
//! Connect and Streams. It speaks the Kafka protocol, so it works against any Kafka broker.
//!
//! Start from [`kafka::Producer`] (batching, partitioning, idempotence, compression),
//! [`kafka::Consumer`] (assigned partitions, seek, poll), [`kafka::GroupConsumer`] (a
//! consumer-group member: subscribe, poll, commit) and [`kafka::Admin`] (topics, partitions,
//! configs, offsets, consumer groups); all take a [`kafka::ClientConfig`] with the
//! bootstrap servers.

pub mod kafka;
