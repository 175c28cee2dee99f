//! The nemesis: kills and restarts servers, clogs nodes and links, partitions the
//! cluster, swizzles, and switches on disk faults, every choice drawn from the seed; each
//! fault is recorded in the history, and everything heals before the final read.

use std::sync::Arc;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use madsim::task::NodeId;
use runnel_storage::disk::{DiskFaults, SimDisks};
use serde_json::json;
use tokio::time::Instant;

use super::{Clock, Fault};
use crate::history::{History, OpType};

pub(crate) struct Nemesis {
    handle: Handle,
    net: Arc<NetSim>,
    /// Transport node id and madsim node id, of servers and of clients.
    servers: Vec<(u64, NodeId)>,
    clients: Vec<(u64, NodeId)>,
    history: History,
    clock: Arc<Clock>,
    pub(crate) injected: u64,
}

fn pause_ms(lo: u64, hi: u64) -> Duration {
    Duration::from_millis(thread_rng().gen_range(lo..hi))
}

impl Nemesis {
    pub(crate) fn new(
        servers: Vec<(u64, NodeId)>,
        clients: Vec<(u64, NodeId)>,
        history: History,
        clock: Arc<Clock>,
    ) -> Self {
        Nemesis {
            handle: Handle::current(),
            net: NetSim::current(),
            servers,
            clients,
            history,
            clock,
            injected: 0,
        }
    }

    /// Injects `faults` until `stop_at`, then heals everything.
    pub(crate) async fn run_then_heal(&mut self, faults: &[Fault], stop_at: Instant) {
        if !faults.is_empty() {
            self.run(faults, stop_at).await;
        }
        tokio::time::sleep_until(stop_at).await;
        self.heal_all();
    }

    pub(crate) fn record(&mut self, f: &str, value: serde_json::Value) {
        self.history
            .record(self.clock.now_ns(), "nemesis", OpType::Info, f, value);
    }

    fn pick_server(&self) -> (u64, NodeId) {
        self.servers[thread_rng().gen_range(0..self.servers.len())]
    }

    async fn run(&mut self, faults: &[Fault], stop_at: Instant) {
        loop {
            tokio::time::sleep(pause_ms(300, 1500)).await;
            if Instant::now() >= stop_at {
                return;
            }
            let fault = faults[thread_rng().gen_range(0..faults.len())];
            self.injected += 1;
            match fault {
                Fault::Kill => self.kill_restart().await,
                Fault::ClogNode => {
                    let (server, node) = self.pick_server();
                    self.record("clog-node", json!({ "server": server }));
                    self.net.clog_node(node);
                    tokio::time::sleep(pause_ms(200, 3000)).await;
                    self.net.unclog_node(node);
                    self.record("unclog-node", json!({ "server": server }));
                }
                Fault::ClogLink => {
                    let nodes = self.everyone();
                    let (a, node_a) = nodes[thread_rng().gen_range(0..nodes.len())];
                    let (b, node_b) = nodes[thread_rng().gen_range(0..nodes.len())];
                    if a == b {
                        continue;
                    }
                    self.record("clog-link", json!({ "from": a, "to": b }));
                    self.net.clog_link(node_a, node_b);
                    tokio::time::sleep(pause_ms(200, 3000)).await;
                    self.net.unclog_link(node_a, node_b);
                    self.record("unclog-link", json!({ "from": a, "to": b }));
                }
                Fault::Partition => {
                    let mut nodes = self.everyone();
                    shuffle(&mut nodes);
                    let cut = thread_rng().gen_range(1..nodes.len());
                    let (left, right) = nodes.split_at(cut);
                    let names =
                        |side: &[(u64, NodeId)]| side.iter().map(|(s, _)| *s).collect::<Vec<_>>();
                    self.record(
                        "partition",
                        json!({ "left": names(left), "right": names(right) }),
                    );
                    self.clog_between(left, right, true);
                    tokio::time::sleep(pause_ms(500, 3000)).await;
                    self.clog_between(left, right, false);
                    self.record("heal-partition", json!({}));
                }
                Fault::Swizzle => {
                    let mut order = self.servers.clone();
                    shuffle(&mut order);
                    for &(server, node) in &order {
                        self.record("swizzle-clog", json!({ "server": server }));
                        self.net.clog_node(node);
                        tokio::time::sleep(pause_ms(50, 400)).await;
                    }
                    shuffle(&mut order);
                    for &(server, node) in &order {
                        self.net.unclog_node(node);
                        self.record("swizzle-unclog", json!({ "server": server }));
                        tokio::time::sleep(pause_ms(50, 400)).await;
                    }
                }
                Fault::Disk => {
                    let (server, node) = self.pick_server();
                    let faults = match thread_rng().gen_range(0..3) {
                        0 => DiskFaults {
                            fsync_fails: true,
                            ..Default::default()
                        },
                        1 => DiskFaults {
                            read_flip_probability: 0.5,
                            ..Default::default()
                        },
                        _ => DiskFaults {
                            full: true,
                            ..Default::default()
                        },
                    };
                    self.record(
                        "disk-fault",
                        json!({ "server": server, "faults": format!("{faults:?}") }),
                    );
                    SimDisks::set_faults(node, faults);
                    tokio::time::sleep(pause_ms(200, 2000)).await;
                    if thread_rng().gen_bool(0.5) {
                        self.record("kill", json!({ "server": server }));
                        self.handle.kill(node);
                        tokio::time::sleep(pause_ms(100, 1000)).await;
                        self.handle.restart(node);
                        self.record("restart", json!({ "server": server }));
                        tokio::time::sleep(pause_ms(100, 1000)).await;
                    }
                    SimDisks::set_faults(node, DiskFaults::default());
                    self.record("disk-heal", json!({ "server": server }));
                }
                Fault::ActorCrash => {
                    let probability = [0.002, 0.01][thread_rng().gen_range(0..2)];
                    self.record("actor-crash", json!({ "probability": probability }));
                    runnel_broker::faults::set_actor_crash_probability(probability);
                    tokio::time::sleep(pause_ms(200, 2000)).await;
                    runnel_broker::faults::set_actor_crash_probability(0.0);
                    self.record("actor-crash-end", json!({}));
                }
            }
        }
    }

    /// Servers and clients: the nodes a network fault can separate.
    fn everyone(&self) -> Vec<(u64, NodeId)> {
        self.servers.iter().chain(&self.clients).copied().collect()
    }

    fn clog_between(&self, left: &[(u64, NodeId)], right: &[(u64, NodeId)], clog: bool) {
        for &(_, l) in left {
            for &(_, r) in right {
                if clog {
                    self.net.clog_link(l, r);
                    self.net.clog_link(r, l);
                } else {
                    self.net.unclog_link(l, r);
                    self.net.unclog_link(r, l);
                }
            }
        }
    }

    async fn kill_restart(&mut self) {
        let (server, node) = self.pick_server();
        self.record("kill", json!({ "server": server }));
        self.handle.kill(node);
        tokio::time::sleep(pause_ms(100, 2000)).await;
        self.handle.restart(node);
        self.record("restart", json!({ "server": server }));
    }

    fn heal_all(&mut self) {
        let nodes = self.everyone();
        for &(_, node) in &nodes {
            self.net.unclog_node(node);
            for &(_, other) in &nodes {
                self.net.unclog_link(node, other);
            }
        }
        for &(_, node) in &self.servers {
            SimDisks::set_faults(node, DiskFaults::default());
        }
        runnel_broker::faults::set_actor_crash_probability(0.0);
        self.record("heal-all", json!({}));
    }
}

fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = thread_rng().gen_range(0..=i);
        items.swap(i, j);
    }
}
