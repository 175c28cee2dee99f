//! The quorum workload: `servers` voters of the controller quorum (runnel-quorum's raft-rs
//! peer, its log on each server's simulated disk) over the node transport; clients propose
//! unique values to random voters and follow leader hints; a nemesis; then, once the
//! faults heal and the voters settle, every voter's committed log is read.
//! [`crate::checker::quorum`] judges the history.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use prost::Message as _;
use runnel_actors::transport::{ServiceError, Transport};
use runnel_actors::Node;
use runnel_quorum::{ProposeError, QuorumConfig, QuorumHandle};
use runnel_storage::disk::{Disk, SimDisks};
use serde_json::json;
use tokio::time::Instant;

use crate::checker;
use crate::harness::{
    addr_of, client_node, node_with_transport, report, Clock, Nemesis, RunReport, SimOptions,
    CHECKER_ID,
};
use crate::history::{History, OpType};

/// A proposal waits this long for its commit; then its outcome is unknown.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Leader hints a client follows before it gives a proposal up.
const MAX_HOPS: usize = 3;
/// After healing: time for an election and for followers to catch up.
const SETTLE: Duration = Duration::from_secs(10);
const FINAL_READ_ATTEMPTS: u32 = 20;
const PROPOSE_SERVICE: &str = "quorum-workload.propose";
const READ_SERVICE: &str = "quorum-workload.read";

#[derive(Clone, PartialEq, prost::Message)]
struct ProposeRequest {
    #[prost(uint64, tag = "1")]
    value: u64,
}

/// `outcome`: 0 committed at `index`; 1 not the leader (`leader` is the hint, 0 none);
/// 2 refused for sure; 3 unknown (it may still commit).
#[derive(Clone, PartialEq, prost::Message)]
struct ProposeReply {
    #[prost(uint32, tag = "1")]
    outcome: u32,
    #[prost(uint64, tag = "2")]
    index: u64,
    #[prost(uint64, tag = "3")]
    leader: u64,
    #[prost(string, tag = "4")]
    error: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReadReply {
    #[prost(uint64, repeated, tag = "1")]
    indexes: Vec<u64>,
    #[prost(uint64, repeated, tag = "2")]
    values: Vec<u64>,
}

pub(crate) async fn run(opts: SimOptions) -> RunReport {
    let clock = Arc::new(Clock::new());
    let history = History::new();
    let handle = Handle::current();
    let server_ids: Vec<u64> = (1..=opts.servers).collect();

    let mut servers: Vec<(u64, NodeHandle)> = Vec::new();
    for &id in &server_ids {
        let voters = server_ids.clone();
        let node = handle
            .create_node()
            .name(format!("voter-{id}"))
            .ip(addr_of(id).ip())
            .init({
                let (history, clock) = (history.clone(), clock.clone());
                move || run_server(id, voters.clone(), history.clone(), clock.clone())
            })
            .build();
        servers.push((id, node));
    }

    let stop_at = Instant::now() + opts.duration;
    let mut clients = Vec::new();
    let mut client_nodes: Vec<(u64, NodeHandle)> = Vec::new();
    for c in 0..opts.clients {
        let (id, node) = client_node(&handle, c);
        let (history, clock, server_ids) = (history.clone(), clock.clone(), server_ids.clone());
        clients.push(node.spawn(run_client(id, server_ids, history, clock, stop_at)));
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
    tokio::time::sleep(SETTLE).await;

    let checker_node = handle
        .create_node()
        .name("checker")
        .ip(addr_of(CHECKER_ID).ip())
        .build();
    // An operator restarts every voter whose node shut itself down (an actor failed past
    // its restart policy, as repeated disk faults make it), then lets the quorum settle:
    // a lone voter cannot learn what was committed.
    let probe = checker_node.spawn(probe_all(server_ids.clone()));
    let reachable = probe.await.expect("the probe does not panic");
    let mut restarted = false;
    for (&(id, ref server), up) in servers.iter().zip(reachable) {
        if !up {
            nemesis.record("restart-for-final-read", json!({ "server": id }));
            handle.kill(server.id());
            handle.restart(server.id());
            restarted = true;
        }
    }
    if restarted {
        tokio::time::sleep(SETTLE).await;
    }
    for &id in &server_ids {
        let read = checker_node.spawn(final_read(
            id,
            history.clone(),
            clock.clone(),
            server_ids.clone(),
        ));
        read.await.expect("final read does not panic");
    }

    let ops = history.ops();
    let anomalies = checker::quorum::check(&ops);
    report(&opts, &ops, anomalies, &clock, nemesis.injected)
}

/// A voter's life; madsim calls it again after every restart, with memory lost and the
/// disk as the last fsync left it.
async fn run_server(id: u64, voters: Vec<u64>, history: History, clock: Arc<Clock>) {
    let (node, transport) = node_with_transport(format!("voter-{id}"), id, &voters).await;
    let disk: Arc<dyn Disk> = Arc::new(SimDisks::current());
    // What this life applied, index to value: the final read's answer.
    let applied: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
    let sink = applied.clone();
    let quorum = QuorumHandle::spawn(
        &node,
        &transport,
        disk,
        QuorumConfig::new(id, voters, PathBuf::from("/data/quorum")),
        Arc::new(move |committed| {
            let value = <[u8; 8]>::try_from(&committed.data[..]).map(u64::from_be_bytes);
            let value = value.expect("the workload proposes 8-byte values");
            let mut applied = sink.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(before) = applied.insert(committed.index, value) {
                if before != value {
                    history.record(
                        clock.now_ns(),
                        format!("voter-{id}"),
                        OpType::Info,
                        "apply-conflict",
                        json!({ "server": id, "index": committed.index, "values": [before, value] }),
                    );
                }
            }
        }),
    );
    transport.register(PROPOSE_SERVICE, move |_from, payload: Bytes| {
        let quorum = quorum.clone();
        async move {
            let request = ProposeRequest::decode(payload)
                .map_err(|e| ServiceError(format!("malformed proposal: {e}")))?;
            let data = Bytes::copy_from_slice(&request.value.to_be_bytes());
            let reply = match quorum.propose(data, PROPOSE_TIMEOUT).await {
                Ok(index) => ProposeReply {
                    index,
                    ..Default::default()
                },
                Err(ProposeError::NotLeader { leader, .. }) => ProposeReply {
                    outcome: 1,
                    leader: leader.unwrap_or(0),
                    ..Default::default()
                },
                Err(e @ (ProposeError::Busy { .. } | ProposeError::Superseded { .. })) => {
                    ProposeReply {
                        outcome: 2,
                        error: e.to_string(),
                        ..Default::default()
                    }
                }
                Err(e) => ProposeReply {
                    outcome: 3,
                    error: e.to_string(),
                    ..Default::default()
                },
            };
            Ok(Bytes::from(reply.encode_to_vec()))
        }
    });
    transport.register(READ_SERVICE, move |_from, _payload: Bytes| {
        let applied = applied.clone();
        async move {
            let applied = applied.lock().unwrap_or_else(|p| p.into_inner());
            let reply = ReadReply {
                indexes: applied.keys().copied().collect(),
                values: applied.values().copied().collect(),
            };
            Ok(Bytes::from(reply.encode_to_vec()))
        }
    });
    let reason = node.stopped().await;
    tracing::warn!(server = id, %reason, "voter node stopped");
    // A madsim node's init future must stay pending; the node is down until restarted.
    std::future::pending::<()>().await;
}

async fn client_transport(node_id: u64, server_ids: &[u64]) -> (Node, Transport) {
    node_with_transport(format!("client-{node_id}"), node_id, server_ids).await
}

async fn run_client(
    node_id: u64,
    server_ids: Vec<u64>,
    history: History,
    clock: Arc<Clock>,
    stop_at: Instant,
) {
    let (node, transport) = client_transport(node_id, &server_ids).await;
    let process = format!("client-{node_id}");
    let mut seq = 0u64;
    while Instant::now() < stop_at {
        seq += 1;
        let value = (node_id << 32) | seq;
        history.record(
            clock.now_ns(),
            process.clone(),
            OpType::Invoke,
            "propose",
            json!({ "value": value }),
        );
        let (op_type, outcome) = propose(&transport, &server_ids, value).await;
        history.record(clock.now_ns(), process.clone(), op_type, "propose", outcome);
        let think_ms = thread_rng().gen_range(5..50);
        tokio::time::sleep(Duration::from_millis(think_ms)).await;
    }
    node.shutdown(runnel_actors::ShutdownReason::Requested);
}

/// One proposal, following leader hints: its outcome for the history.
async fn propose(
    transport: &Transport,
    server_ids: &[u64],
    value: u64,
) -> (OpType, serde_json::Value) {
    let payload = Bytes::from(ProposeRequest { value }.encode_to_vec());
    let mut server = server_ids[thread_rng().gen_range(0..server_ids.len())];
    for _ in 0..MAX_HOPS {
        let reply = transport
            .request(
                server,
                PROPOSE_SERVICE,
                payload.clone(),
                PROPOSE_TIMEOUT * 2,
            )
            .await
            .map_err(|e| e.to_string())
            .and_then(|b| ProposeReply::decode(b).map_err(|e| e.to_string()));
        match reply {
            Ok(r) if r.outcome == 0 => {
                return (
                    OpType::Ok,
                    json!({ "value": value, "index": r.index, "server": server }),
                )
            }
            Ok(r) if r.outcome == 1 => {
                server = if r.leader != 0 {
                    r.leader
                } else {
                    server_ids[thread_rng().gen_range(0..server_ids.len())]
                };
            }
            Ok(r) if r.outcome == 2 => {
                return (OpType::Fail, json!({ "value": value, "error": r.error }))
            }
            Ok(r) => return (OpType::Unknown, json!({ "value": value, "error": r.error })),
            Err(error) => return (OpType::Unknown, json!({ "value": value, "error": error })),
        }
    }
    // Never appended anywhere: every voter asked said it was not the leader.
    (
        OpType::Fail,
        json!({ "value": value, "error": "no leader found" }),
    )
}

async fn read_log(transport: &Transport, server: u64) -> Result<ReadReply, String> {
    let reply = transport
        .request(server, READ_SERVICE, Bytes::new(), Duration::from_secs(1))
        .await
        .map_err(|e| e.to_string())?;
    ReadReply::decode(reply).map_err(|e| e.to_string())
}

/// Whether each voter answers a read within a few attempts.
async fn probe_all(server_ids: Vec<u64>) -> Vec<bool> {
    let (node, transport) = client_transport(CHECKER_ID, &server_ids).await;
    let mut reachable = Vec::new();
    for &server in &server_ids {
        let mut up = false;
        for _ in 0..3 {
            if read_log(&transport, server).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        reachable.push(up);
    }
    node.shutdown(runnel_actors::ShutdownReason::Requested);
    node.stopped().await;
    reachable
}

/// Reads one voter's committed log into the history, retrying while it recovers.
async fn final_read(server: u64, history: History, clock: Arc<Clock>, server_ids: Vec<u64>) {
    let (node, transport) = client_transport(CHECKER_ID, &server_ids).await;
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
        match read_log(&transport, server).await {
            Ok(read) => {
                let log: Vec<_> = read
                    .indexes
                    .iter()
                    .zip(&read.values)
                    .map(|(i, v)| json!([i, v]))
                    .collect();
                history.record(
                    clock.now_ns(),
                    process,
                    OpType::Ok,
                    "final-read",
                    json!({ "server": server, "log": log }),
                );
                ok = true;
                break;
            }
            Err(e) => last_error = e,
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
}
