//! The checkers: each reads a workload's history and names what clients were told that the
//! system did not keep. One file per workload; [`Anomaly`] is what they all report.
//!
//! - [`counter`]: the durable counter (lost, invented, duplicate, failed-but-present ids);
//! - [`kafka`]: Jepsen's Kafka anomalies over producers and consumers by assignment;
//! - [`group`]: the Kafka data anomalies plus ownership, commits and at-least-once
//!   processing of one consumer group;
//! - [`quorum`]: the controller quorum's committed logs (Raft's agreement, and every
//!   acknowledged proposal where it was acknowledged);
//! - [`metadata`]: topics created and deleted through real brokers, against every
//!   broker's Metadata at the end.

pub mod counter;
pub mod group;
pub mod kafka;
pub mod metadata;
pub mod quorum;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anomaly {
    /// Acknowledged, then missing from the final read of its server.
    LostWrite {
        id: u64,
        server: u64,
    },
    /// Present in a log although no client sent it to that server.
    Invented {
        id: u64,
        server: u64,
    },
    /// Reported as definitely failed, yet present.
    FailedButPresent {
        id: u64,
        server: u64,
    },
    Duplicate {
        id: u64,
        server: u64,
    },
    /// The final read of this server never succeeded.
    Unreadable {
        server: u64,
    },
    /// Kafka workload: acknowledged, at or below the highest offset read, never read.
    KafkaLostWrite {
        partition: i32,
        offset: i64,
        value: u64,
    },
    /// Kafka workload: acknowledged and never read, beyond every offset read.
    Unseen {
        partition: i32,
        offset: i64,
        value: u64,
    },
    /// Kafka workload: one value read at several (partition, offset) places.
    KafkaDuplicate {
        value: u64,
        places: Vec<(i32, i64)>,
    },
    /// Kafka workload: several values read at one offset.
    InconsistentOffsets {
        partition: i32,
        offset: i64,
        values: Vec<u64>,
    },
    NonMonotonicSend {
        process: String,
        partition: i32,
        from: i64,
        to: i64,
    },
    NonMonotonicPoll {
        process: String,
        partition: i32,
        from: i64,
        to: i64,
    },
    PollSkip {
        process: String,
        partition: i32,
        from: i64,
        to: i64,
        skipped: Vec<i64>,
    },
    /// Group workload: two members owned one partition in the same generation.
    SplitOwnership {
        generation: i32,
        partition: i32,
        members: Vec<String>,
    },
    /// Group workload: a committed offset moved backwards: acknowledged (or read at the
    /// end) below one acknowledged before.
    CommitBackwards {
        partition: i32,
        from: i64,
        to: i64,
    },
    /// Group workload: below the group's committed offset, yet no member processed it.
    CommittedUnprocessed {
        partition: i32,
        offset: i64,
        value: u64,
    },
    /// Quorum workload: voters committed different values at one index.
    Divergence {
        index: u64,
        values: Vec<u64>,
    },
    /// Quorum workload: acknowledged as committed at `index`, but another value (or none)
    /// is there in the voters' logs.
    Misplaced {
        value: u64,
        index: u64,
        found: Option<u64>,
    },
    /// Quorum workload: after healing, a voter's committed log stayed shorter.
    NotConverged {
        server: u64,
        last_index: u64,
        longest: u64,
    },
    /// Metadata workload: after healing, brokers disagree on whether a topic exists.
    MetadataDiverged {
        id: u64,
        present_on: Vec<u64>,
        absent_on: Vec<u64>,
    },
    /// Metadata workload: its deletion was acknowledged, yet the topic is there.
    DeletedButPresent {
        id: u64,
        server: u64,
    },
}
