//! One simulated run: servers, clients, nemesis, heal, final read, check.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle, Runtime};
use madsim::task::NodeId;
use runnel_actors::transport::{Transport, TransportConfig};
use runnel_actors::{Node, RestartPolicy};
use runnel_storage::disk::{Disk, DiskFaults, SimDisks};
use serde_json::json;
use tokio::time::Instant;

use crate::counter::service::{CounterService, IncrementRequest, ReadRequest, SyncPolicy};
use crate::counter::{CounterClient, Outcome};
use crate::history::{sha256_hex, to_json_lines, History, OpType};
use crate::{checker, Fault, Policy, RunReport, SimOptions, Workload};

const PORT: u16 = 7000;
/// Client node ids start here; server ids are 1..=servers.
pub(crate) const CLIENT_ID_BASE: u64 = 100;
pub(crate) const CHECKER_ID: u64 = 99;
const CLIENT_TIMEOUT: Duration = Duration::from_millis(500);
const FINAL_READ_ATTEMPTS: u32 = 20;

/// Simulated addresses, in a documentation range (TEST-NET-1): no real packet is sent.
pub(crate) fn addr_of(id: u64) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, id as u8)), PORT)
}

/// Runs `future` as the supervisor of a fresh simulator with Runnel's disk plugin, on the
/// calling thread. For tests that build their own nodes.
pub fn simulate<F: std::future::Future>(seed: u64, future: F) -> F::Output {
    let runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.add_simulator::<SimDisks>();
    runtime.block_on(future)
}

/// Runs one seed on a fresh simulator, on a fresh thread (the simulator fakes the clock of
/// the thread it runs on). A panic in the run is re-raised here.
///
/// Run one seed per process when runs must replay exactly: madsim 0.2.34 keeps some
/// process-wide state (its task ids), and a second seed in the same process was seen to
/// diverge from the same seed run alone. `runnel-sim sweep` does so.
pub fn run_seed(opts: &SimOptions) -> RunReport {
    let opts = opts.clone();
    let run_thread = std::thread::spawn(move || {
        let runtime = Runtime::with_seed_and_config(opts.seed, madsim::Config::default());
        runtime.add_simulator::<SimDisks>();
        match opts.workload {
            Workload::Counter => runtime.block_on(run(opts)),
            Workload::Kafka => runtime.block_on(crate::workload::kafka::run(opts)),
            Workload::Group => runtime.block_on(crate::workload::group::run(opts)),
        }
    });
    match run_thread.join() {
        Ok(report) => report,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

pub(crate) struct Clock {
    start: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            start: Instant::now(),
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

async fn run(opts: SimOptions) -> RunReport {
    let clock = Arc::new(Clock {
        start: Instant::now(),
    });
    let history = History::new();
    let handle = Handle::current();
    let server_ids: Vec<u64> = (1..=opts.servers).collect();

    let mut servers: Vec<(u64, NodeHandle)> = Vec::new();
    for &id in &server_ids {
        let policy = match opts.policy {
            Policy::FsyncBeforeAck => SyncPolicy::FsyncBeforeAck,
            Policy::AckBeforeFsync => SyncPolicy::AckBeforeFsync {
                flush_interval: opts.flush_interval,
            },
        };
        let node = handle
            .create_node()
            .name(format!("server-{id}"))
            .ip(addr_of(id).ip())
            .init(move || run_server(id, policy))
            .build();
        servers.push((id, node));
    }

    let stop_at = Instant::now() + opts.duration;
    let mut clients = Vec::new();
    let mut client_nodes: Vec<(u64, NodeHandle)> = Vec::new();
    for c in 0..opts.clients {
        let id = CLIENT_ID_BASE + c;
        let node = handle
            .create_node()
            .name(format!("client-{c}"))
            .ip(addr_of(id).ip())
            .build();
        let (history, clock, server_ids) = (history.clone(), clock.clone(), server_ids.clone());
        clients.push(node.spawn(run_client(id, c, server_ids, history, clock, stop_at)));
        client_nodes.push((id, node));
    }

    let mut nemesis = Nemesis::new(
        servers.iter().map(|(id, n)| (*id, n.id())).collect(),
        client_nodes.iter().map(|(id, n)| (*id, n.id())).collect(),
        history.clone(),
        clock.clone(),
    );
    nemesis.run_then_heal(&opts.faults, stop_at).await;
    for client in clients {
        client.await.expect("client tasks do not panic");
    }
    // Give background flushes their chance: a healed cluster must converge.
    tokio::time::sleep(opts.flush_interval * 2).await;

    let checker_node = handle
        .create_node()
        .name("checker")
        .ip(addr_of(CHECKER_ID).ip())
        .build();
    for &(id, ref server) in &servers {
        let (history, clock) = (history.clone(), clock.clone());
        let server_node = server.id();
        let read = checker_node.spawn(final_read(
            id,
            history.clone(),
            clock.clone(),
            server_ids.clone(),
        ));
        if !read.await.expect("final read does not panic") {
            // The node may have shut itself down (an actor failed past its limit):
            // restart it as an operator would, and read once more.
            nemesis.record("restart-for-final-read", json!({ "server": id }));
            handle.kill(server_node);
            handle.restart(server_node);
            let read = checker_node.spawn(final_read(
                id,
                history.clone(),
                clock.clone(),
                server_ids.clone(),
            ));
            read.await.expect("final read does not panic");
        }
    }

    let ops = history.ops();
    let anomalies = checker::check(&ops);
    report(&opts, &ops, anomalies, &clock, nemesis.injected)
}

/// The run's report: its history as JSON lines and their hash, counts, and a last draw
/// from the simulator's RNG (which any divergence during the run changes).
pub(crate) fn report(
    opts: &SimOptions,
    ops: &[crate::history::Op],
    anomalies: Vec<checker::Anomaly>,
    clock: &Clock,
    faults_injected: u64,
) -> RunReport {
    let lines = to_json_lines(ops);
    let client_ops = ops
        .iter()
        .filter(|op| op.op_type == OpType::Invoke && op.process != "nemesis")
        .count() as u64;
    RunReport {
        seed: opts.seed,
        ops: client_ops,
        anomalies,
        history_sha256: sha256_hex(&lines),
        history: lines,
        simulated: clock.elapsed(),
        faults_injected,
        rng_fingerprint: thread_rng().gen(),
    }
}

/// A server node's life; madsim calls it again after every restart.
async fn run_server(id: u64, policy: SyncPolicy) {
    let node = Node::new(format!("server-{id}"));
    let transport = Transport::start(&node, TransportConfig::new(id, addr_of(id)))
        .await
        .expect("the simulated address is free after a kill");
    let disk: Arc<dyn Disk> = Arc::new(SimDisks::current());
    let counter = node.spawn("counter", 1024, RestartPolicy::default(), move || {
        CounterService::new(disk.clone(), "/data/counter", policy)
    });
    transport.serve::<_, IncrementRequest>(counter.clone(), Duration::from_secs(1));
    transport.serve::<_, ReadRequest>(counter, Duration::from_secs(1));
    let reason = node.stopped().await;
    tracing::warn!(server = id, %reason, "server node stopped");
    // A madsim node's init future must stay pending; the node is down until restarted.
    std::future::pending::<()>().await;
}

async fn client_transport(node_id: u64, server_ids: &[u64]) -> (Node, Transport) {
    let node = Node::new(format!("client-{node_id}"));
    let mut config = TransportConfig::new(node_id, addr_of(node_id));
    for &s in server_ids {
        config = config.with_peer(s, addr_of(s));
    }
    let transport = Transport::start(&node, config)
        .await
        .expect("client address is free");
    (node, transport)
}

async fn run_client(
    node_id: u64,
    process: u64,
    server_ids: Vec<u64>,
    history: History,
    clock: Arc<Clock>,
    stop_at: Instant,
) {
    let (node, transport) = client_transport(node_id, &server_ids).await;
    let client = CounterClient::new(transport, CLIENT_TIMEOUT);
    let process = process.to_string();
    let mut seq = 0u64;
    while Instant::now() < stop_at {
        seq += 1;
        let id = (node_id << 32) | seq;
        let server = server_ids[thread_rng().gen_range(0..server_ids.len())];
        let value = json!({ "id": id, "server": server });
        history.record(
            clock.now_ns(),
            process.clone(),
            OpType::Invoke,
            "incr",
            value.clone(),
        );
        let (op_type, value) = match client.increment(server, id).await {
            Outcome::Ok(count) => (
                OpType::Ok,
                json!({ "id": id, "server": server, "count": count }),
            ),
            Outcome::Failed(error) => (
                OpType::Fail,
                json!({ "id": id, "server": server, "error": error }),
            ),
            Outcome::Unknown(error) => (
                OpType::Unknown,
                json!({ "id": id, "server": server, "error": error }),
            ),
        };
        history.record(clock.now_ns(), process.clone(), op_type, "incr", value);
        let think_ms = thread_rng().gen_range(5..50);
        tokio::time::sleep(Duration::from_millis(think_ms)).await;
    }
    node.shutdown(runnel_actors::ShutdownReason::Requested);
}

/// Reads one server's whole log, retrying while it recovers; true if a read succeeded.
async fn final_read(
    server: u64,
    history: History,
    clock: Arc<Clock>,
    server_ids: Vec<u64>,
) -> bool {
    let (node, transport) = client_transport(CHECKER_ID, &server_ids).await;
    let client = CounterClient::new(transport, Duration::from_secs(1));
    let process = "checker";
    history.record(
        clock.now_ns(),
        process,
        OpType::Invoke,
        "final-read",
        json!({ "server": server }),
    );
    let mut last_error = String::new();
    let mut ok = false;
    for _ in 0..FINAL_READ_ATTEMPTS {
        match client.read(server).await {
            Outcome::Ok(ids) => {
                history.record(
                    clock.now_ns(),
                    process,
                    OpType::Ok,
                    "final-read",
                    json!({ "server": server, "ids": ids }),
                );
                ok = true;
                break;
            }
            Outcome::Failed(e) | Outcome::Unknown(e) => last_error = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !ok {
        history.record(
            clock.now_ns(),
            process,
            OpType::Unknown,
            "final-read",
            json!({ "server": server, "error": last_error }),
        );
    }
    node.shutdown(runnel_actors::ShutdownReason::Requested);
    node.stopped().await;
    ok
}

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
        self.record("heal-all", json!({}));
    }
}

fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = thread_rng().gen_range(0..=i);
        items.swap(i, j);
    }
}
