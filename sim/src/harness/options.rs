//! What a run is: the seed, the workload, the cluster's size, the durability policy and the
//! faults, and the command line that replays it.

use std::time::Duration;

/// When a write is made durable: the counter's fsync policy, and for the Kafka workload
/// `log.flush.interval.messages=1` (fsync-before-ack) or a flush timer (ack-before-fsync).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    FsyncBeforeAck,
    AckBeforeFsync,
}

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Durable counter increments over the node transport, on `servers` nodes.
    Counter,
    /// Kafka producers and consumers against one broker (Jepsen's Kafka anomalies).
    Kafka,
    /// A producer and the members of one consumer group that crash, leave and return,
    /// against one broker: ownership, commits and at-least-once processing.
    Group,
    /// Proposers against `servers` voters of the controller quorum (raft-rs on our log):
    /// Raft's agreement and every acknowledged commit kept.
    Quorum,
    /// Topic creations and deletions through `servers` real brokers that form the
    /// controller quorum: every broker ends with the same topics, as clients were told.
    Metadata,
}

/// Which faults the nemesis may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Fault {
    /// Kill a server (losing its unsynced writes), then restart it.
    Kill,
    /// Cut a node off the network in both directions.
    ClogNode,
    /// Cut one direction of one link.
    ClogLink,
    /// Split the cluster into two sides that cannot talk.
    Partition,
    /// Clog servers one by one, then unclog them in another order.
    Swizzle,
    /// Fail fsyncs, flip bits on reads or fill the disk of a server, sometimes with a
    /// restart while the fault lasts.
    Disk,
    /// For a while, give the broker's partition and coordinator actors a seeded chance
    /// to panic in each change they handle, so supervisors restart them and they recover
    /// from their logs.
    ActorCrash,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::Kill,
        Fault::ClogNode,
        Fault::ClogLink,
        Fault::Partition,
        Fault::Swizzle,
        Fault::Disk,
        Fault::ActorCrash,
    ];
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    pub workload: Workload,
    pub servers: u64,
    pub clients: u64,
    /// Simulated time the workload and nemesis run before healing and the final read.
    pub duration: Duration,
    pub policy: Policy,
    /// How often ack-before-fsync syncs in the background.
    pub flush_interval: Duration,
    pub faults: Vec<Fault>,
}

impl SimOptions {
    pub fn new(seed: u64) -> Self {
        SimOptions {
            seed,
            workload: Workload::Counter,
            servers: 3,
            clients: 3,
            duration: Duration::from_secs(20),
            policy: Policy::FsyncBeforeAck,
            flush_interval: Duration::from_millis(1000),
            faults: Fault::ALL.to_vec(),
        }
    }

    /// The `runnel-sim` arguments that replay this exact run.
    pub fn to_args(&self) -> Vec<String> {
        let name = |v: Option<clap::builder::PossibleValue>| {
            v.map_or_else(String::new, |v| v.get_name().to_string())
        };
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|f| name(clap::ValueEnum::to_possible_value(f)))
            .collect();
        vec![
            "run".into(),
            "--seed".into(),
            self.seed.to_string(),
            "--workload".into(),
            name(clap::ValueEnum::to_possible_value(&self.workload)),
            "--servers".into(),
            self.servers.to_string(),
            "--clients".into(),
            self.clients.to_string(),
            "--duration-secs".into(),
            self.duration.as_secs().to_string(),
            "--policy".into(),
            name(clap::ValueEnum::to_possible_value(&self.policy)),
            "--flush-interval-ms".into(),
            self.flush_interval.as_millis().to_string(),
            "--faults".into(),
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(",")
            },
        ]
    }

    /// The command line that replays this exact run.
    pub fn replay_command(&self) -> String {
        format!("ci/sim {}", self.to_args().join(" "))
    }
}
