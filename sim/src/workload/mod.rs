//! The workloads, one file each: what the clients do, on which cluster, and which checker
//! judges the history. Each is an `async fn run(SimOptions) -> RunReport` that runs inside
//! the simulator, built on the harness (`crate::harness`) and, for the broker, the wire
//! client (`crate::wire`).
//!
//! - [`counter`]: the durable counter on `servers` nodes over the node transport;
//! - [`kafka`]: producers and consumers by assignment against one broker;
//! - [`group`]: a producer and the members of one consumer group against one broker;
//! - [`quorum`]: proposers against the controller quorum's voters (raft-rs on our log);
//! - [`metadata`]: topic creations and deletions through a cluster of real brokers whose
//!   controller quorum they form.
//!
//! The Kafka and group workloads share the broker and its final read ([`broker`]) and the
//! producer ([`producer`]).

mod broker;
pub(crate) mod counter;
pub(crate) mod group;
pub(crate) mod kafka;
pub(crate) mod metadata;
mod producer;
pub(crate) mod quorum;
