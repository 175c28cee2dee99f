//! The controller quorum: cluster metadata as a log replicated by Raft, as in Kafka's
//! KRaft. Consensus is TiKV's raft-rs, a pure state machine; this crate gives it its I/O.
//!
//! Start from [`QuorumHandle::spawn`], which runs a [`peer::QuorumPeer`] actor on a node
//! and serves the other voters' messages over the node transport; [`log::RaftLog`] keeps
//! its log on Runnel's own storage log and its term and vote in a checkpoint.

pub mod log;
pub mod peer;

use std::path::PathBuf;

pub use peer::{
    Apply, Committed, ProposeError, QuorumConfig, QuorumHandle, QuorumStatus, RaftFrame,
};

/// Why a voter cannot go on; its actor fails and its supervisor reopens the log.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error(transparent)]
    Disk(#[from] runnel_storage::disk::DiskError),
    #[error(transparent)]
    Log(#[from] runnel_storage::log::LogError),
    #[error("the quorum log in {dir} is damaged: {reason}")]
    Corrupt { dir: PathBuf, reason: String },
    #[error("term {term} does not fit a record batch's leader epoch")]
    TermTooLarge { term: u64 },
    #[error("a Raft entry could not be encoded: {0}")]
    Batch(#[from] runnel_protocol::batch::build::BuildError),
    #[error("a Raft entry could not be decoded: {0}")]
    Records(#[from] runnel_protocol::records::RecordsError),
    #[error("a Raft entry batch could not be parsed: {0}")]
    BatchParse(#[from] runnel_protocol::batch::BatchError),
    #[error("raft-rs sent a snapshot, and this quorum neither takes nor makes snapshots yet")]
    SnapshotUnsupported,
}
