//! The broker's life on a node, ordered as tokio's mini-redis orders a server's.
//!
//! [`BrokerServer::start`] puts everything the broker runs under the node's supervision:
//! the Kafka listener's accept loop (restarted if it panics), one task per connection,
//! and the periodic work of [`crate::housekeeping`] as actors on timers.
//! [`BrokerServer::shutdown`] stops in order: ask the controller to fence this broker
//! (a controlled shutdown), stop accepting, let the requests being
//! handled finish within a bounded wait, stop the timers (so the coordinators see no more
//! input), flush every partition, then shut the node down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use runnel_actors::{Addr, Node, RestartPolicy, ShutdownReason};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::housekeeping::{self, GroupTimers, LogHousekeeper};
use crate::partition::PartitionError;
use crate::{connection, Broker, MAX_CONNECTIONS};

/// How long the shutdown waits for connections to finish the request they are handling
/// (a parked JoinGroup can wait for minutes; it is cut off here).
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 5_000;
/// After a failed accept (out of descriptors, say), wait this long before the next one.
const ACCEPT_BACKOFF_MS: u64 = 100;

/// A running broker: its listener, connections and timers on one node.
pub struct BrokerServer {
    node: Node,
    broker: Arc<Broker>,
    /// Set once: connections finish their current request and close; accepting stops.
    draining: watch::Sender<bool>,
    connections: Arc<Semaphore>,
    group_timers: Addr<GroupTimers>,
    log_housekeeper: Addr<LogHousekeeper>,
}

/// What an ordered shutdown did, for the line the server prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Connections still open when the grace period ended, dropped mid-request.
    pub connections_cut: usize,
    pub partitions_flushed: usize,
    pub elapsed_ms: u64,
}

impl BrokerServer {
    /// Starts serving `listener` and the broker's periodic work under `node`.
    pub fn start(node: &Node, broker: Arc<Broker>, listener: TcpListener) -> BrokerServer {
        let (draining, _) = watch::channel(false);
        let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let listener = Arc::new(listener);
        {
            let (node2, broker, connections) = (node.clone(), broker.clone(), connections.clone());
            let draining = draining.subscribe();
            node.spawn_supervised("kafka-listener", RestartPolicy::default(), move || {
                accept_loop(
                    node2.clone(),
                    broker.clone(),
                    listener.clone(),
                    connections.clone(),
                    draining.clone(),
                )
            });
        }
        let timers_broker = broker.clone();
        let group_timers = node.spawn(
            "group-timers",
            housekeeping::MAILBOX_CAPACITY,
            RestartPolicy::default(),
            move || GroupTimers::new(timers_broker.clone()),
        );
        let logs_broker = broker.clone();
        let log_housekeeper = node.spawn(
            "log-housekeeper",
            housekeeping::MAILBOX_CAPACITY,
            RestartPolicy::default(),
            move || LogHousekeeper::new(logs_broker.clone()),
        );
        BrokerServer {
            node: node.clone(),
            broker,
            draining,
            connections,
            group_timers,
            log_housekeeper,
        }
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        MAX_CONNECTIONS - self.connections.available_permits()
    }

    /// The ordered shutdown; the node is shut down with `Requested` at its end, also
    /// when flushing fails.
    pub async fn shutdown(self, grace: Duration) -> Result<Stopped, PartitionError> {
        let started = Instant::now();
        // Fenced first, so clients learn to go elsewhere while this broker still answers.
        self.broker.controlled_shutdown().await;
        let _ = self.draining.send(true);
        let all = u32::try_from(MAX_CONNECTIONS).expect("MAX_CONNECTIONS fits a u32");
        let drained = tokio::time::timeout(grace, self.connections.acquire_many(all)).await;
        let connections_cut = match drained {
            Ok(_) => 0,
            Err(_) => MAX_CONNECTIONS - self.connections.available_permits(),
        };
        if connections_cut > 0 {
            tracing::warn!(
                connections_cut,
                grace_ms = grace.as_millis() as u64,
                "connections still busy after the grace period are cut"
            );
        }
        // A timer mid-tick finishes that tick first: the mailbox orders Stop after it.
        let _ = self.group_timers.ask(housekeeping::Stop, grace).await;
        let _ = self.log_housekeeper.ask(housekeeping::Stop, grace).await;
        let flushed = self.broker.flush_all().await;
        self.node.shutdown(ShutdownReason::Requested);
        let partitions_flushed = flushed?;
        Ok(Stopped {
            connections_cut,
            partitions_flushed,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// Accepts clients until draining starts; each connection runs as a task of the node.
async fn accept_loop(
    node: Node,
    broker: Arc<Broker>,
    listener: Arc<TcpListener>,
    slots: Arc<Semaphore>,
    mut draining: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            biased;
            _ = draining.wait_for(|d| *d) => return,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            biased;
            _ = draining.wait_for(|d| *d) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
                continue;
            }
        };
        let (broker, draining) = (broker.clone(), draining.clone());
        node.spawn_task(async move {
            connection::run(broker, stream, peer, draining).await;
            drop(permit);
        });
    }
}
