//! Runnel's storage layer.
//!
//! Start from [`disk::Disk`]: every file operation of the log goes through it, so the same
//! code runs on a real file system ([`disk::RealDisk`]) or on an in-memory disk that models
//! crashes, torn writes and injected faults ([`disk::MemDisk`]). Under `--cfg madsim`,
//! [`disk::SimDisks`] plugs one `MemDisk` per simulated node into the simulator, and a
//! killed node loses exactly what it never made durable.
//!
//! The partition log ([`log::PartitionLog`]: segments, indexes, recovery, retention,
//! compaction) builds on this trait; the broker owns one per partition.

pub mod disk;
pub mod fuzzing;
pub mod log;
mod topic_partition;

pub use topic_partition::TopicPartition;
