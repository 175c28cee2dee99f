//! Consumer groups.
//!
//! [`coordinator::GroupCoordinator`] is what the broker's handlers call: one shard per
//! partition of `__consumer_offsets` ([`records`] is that topic's format).
//!
//! [`membership::Group`] is the classic protocol's membership (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, the generation check of OffsetCommit) as a state machine with no
//! I/O, following Kafka's `GroupCoordinator`/`GroupMetadata`. Start there: a coordinator
//! actor feeds it requests and `Tick`s through `Group::step` and carries out the outputs
//! (responses to parked requests, group metadata to write to `__consumer_offsets`).
//!
//! [`consumer_group::ConsumerGroup`] is the same for the KIP-848 consumer protocol
//! (ConsumerGroupHeartbeat), with its server-side assignors in [`assignor`].

pub mod assignor;
pub mod consumer_group;
pub mod coordinator;
pub mod membership;
pub mod records;

#[cfg(test)]
mod assignor_tests;
#[cfg(test)]
mod consumer_group_tests;
#[cfg(test)]
mod tests;
