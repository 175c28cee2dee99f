//! The simulated cluster every workload builds on: a fresh madsim runtime with Runnel's
//! disk plugin per seed, the addresses of its nodes, and the clock of the run's history.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use madsim::runtime::Runtime;
use runnel_actors::transport::{Transport, TransportConfig};
use runnel_actors::Node;
use runnel_storage::disk::SimDisks;
use tokio::time::Instant;

use super::{RunReport, SimOptions};

const PORT: u16 = 7000;
/// Client node ids start here; server ids are 1..=servers.
pub(crate) const CLIENT_ID_BASE: u64 = 100;
pub(crate) const CHECKER_ID: u64 = 99;

/// Simulated addresses, in a documentation range (TEST-NET-1): no real packet is sent.
pub(crate) fn addr_of(id: u64) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, id as u8)), PORT)
}

/// Client `c`'s simulated node, at the address of node id `CLIENT_ID_BASE + c`.
pub(crate) fn client_node(
    handle: &madsim::runtime::Handle,
    c: u64,
) -> (u64, madsim::runtime::NodeHandle) {
    let id = CLIENT_ID_BASE + c;
    let node = handle
        .create_node()
        .name(format!("client-{c}"))
        .ip(addr_of(id).ip())
        .build();
    (id, node)
}

/// A node named `name` with its transport on `node_id`'s address, knowing `peers`.
pub(crate) async fn node_with_transport(
    name: String,
    node_id: u64,
    peers: &[u64],
) -> (Node, Transport) {
    let node = Node::new(name);
    let mut config = TransportConfig::new(node_id, addr_of(node_id));
    for &peer in peers.iter().filter(|&&p| p != node_id) {
        config = config.with_peer(peer, addr_of(peer));
    }
    let transport = Transport::start(&node, config)
        .await
        .expect("the simulated address is free (after a kill too)");
    (node, transport)
}

/// Runs `future` as the supervisor of a fresh simulator with Runnel's disk plugin, on the
/// calling thread. For tests that build their own nodes.
pub fn simulate<F: Future>(seed: u64, future: F) -> F::Output {
    let runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.add_simulator::<SimDisks>();
    runtime.block_on(future)
}

/// Runs `workload` for one seed on a fresh simulator, on a fresh thread (the simulator
/// fakes the clock of the thread it runs on). A panic in the run is re-raised here.
pub(crate) fn run_in_simulator<W, F>(opts: &SimOptions, workload: W) -> RunReport
where
    W: FnOnce(SimOptions) -> F + Send + 'static,
    F: Future<Output = RunReport>,
{
    let opts = opts.clone();
    let run_thread = std::thread::spawn(move || {
        let runtime = Runtime::with_seed_and_config(opts.seed, madsim::Config::default());
        runtime.add_simulator::<SimDisks>();
        runtime.block_on(workload(opts))
    });
    match run_thread.join() {
        Ok(report) => report,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Simulated time since the run started: the timestamps of its history.
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
