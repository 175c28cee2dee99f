//! Partition data: produce, fetch, and the offsets of partitions.

pub mod delete_records;
pub mod fetch;
pub mod list_offsets;
pub mod offset_for_leader_epoch;
pub mod produce;
