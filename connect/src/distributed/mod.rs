//! Kafka Connect's distributed mode: workers sharing a `group.id` form a group of
//! protocol type `connect`, the leader assigns connectors and tasks with the incremental
//! cooperative protocols (KIP-415), and connector configs, source offsets and statuses
//! live in compacted topics in Apache Kafka's own record formats.
//!
//! Modules, each using only those before it: [`protocol`] (the group protocol's bytes),
//! [`assignor`] (the leader's assignment, a pure state machine), [`records`] (the config
//! and status topics' records and the state they build), [`log`] (one internal topic:
//! created if missing, read to its end, written with acks=all), [`member`] (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup), [`config`] (the worker's settings), [`herder`] (the
//! actor that ties them together; `herder/requests.rs` has its REST operations and
//! `herder/membership.rs` the member loop).
//!
//! Where we differ from Kafka's worker: task configs are written to the config topic by
//! the worker that runs the connector, not forwarded to the leader (there is no KIP-507
//! request signing, so the `sessioned` protocol is offered by name but no session key is
//! written or checked); Kafka's eager protocol (`default`) is not offered; exactly-once
//! source support (KIP-618) and zombie fencing are not built.

pub mod assignor;
pub mod config;
pub mod herder;
pub mod log;
pub mod member;
pub mod protocol;
pub mod records;
