//! The counter workload: `servers` nodes running the durable counter service
//! ([`crate::counter`]) over the node transport, clients sending unique increments to
//! random servers, a nemesis, then a final read of every server's log after the faults
//! heal. [`crate::checker::counter`] judges the history.

use std::sync::Arc;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use runnel_actors::transport::Transport;
use runnel_actors::{Node, RestartPolicy};
use runnel_storage::disk::{Disk, SimDisks};
use serde_json::json;
use tokio::time::Instant;

use crate::checker;
use crate::counter::service::{CounterService, IncrementRequest, ReadRequest, SyncPolicy};
use crate::counter::{CounterClient, Outcome};
use crate::harness::{
    addr_of, client_node, node_with_transport, report, Clock, Nemesis, Policy, RunReport,
    SimOptions, CHECKER_ID,
};
use crate::history::{History, OpType};

const CLIENT_TIMEOUT: Duration = Duration::from_millis(500);
const FINAL_READ_ATTEMPTS: u32 = 20;

pub(crate) async fn run(opts: SimOptions) -> RunReport {
    let clock = Arc::new(Clock::new());
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
        let (id, node) = client_node(&handle, c);
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
    let anomalies = checker::counter::check(&ops);
    report(&opts, &ops, anomalies, &clock, nemesis.injected)
}

/// A server node's life; madsim calls it again after every restart.
async fn run_server(id: u64, policy: SyncPolicy) {
    let (node, transport) = node_with_transport(format!("server-{id}"), id, &[]).await;
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
    node_with_transport(format!("client-{node_id}"), node_id, server_ids).await
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
