//! The node transport under madsim's simulated network: partitions and restarts.
#![cfg(madsim)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use runnel_actors::transport::{PeerEvent, Transport, TransportConfig, TransportError};
use runnel_actors::{Node, RestartPolicy};
use runnel_sim::counter::service::{CounterService, IncrementRequest, ReadRequest, SyncPolicy};
use runnel_storage::disk::{Disk, SimDisks};
use tokio::sync::broadcast;

const ASK_TIMEOUT: Duration = Duration::from_millis(300);

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, last], 7000))
}

async fn serve_counter() {
    let node = Node::new("server");
    let transport = Transport::start(&node, TransportConfig::new(1, addr(1)))
        .await
        .expect("bind");
    let disk: Arc<dyn Disk> = Arc::new(SimDisks::current());
    let counter = node.spawn("counter", 64, RestartPolicy::default(), move || {
        CounterService::new(disk.clone(), "/data", SyncPolicy::FsyncBeforeAck)
    });
    transport.serve::<_, IncrementRequest>(counter.clone(), Duration::from_secs(1));
    transport.serve::<_, ReadRequest>(counter, Duration::from_secs(1));
    node.stopped().await;
    std::future::pending::<()>().await;
}

/// A server node running the counter, and an empty client node.
fn server_and_client() -> (NodeHandle, NodeHandle) {
    let handle = Handle::current();
    let server = handle
        .create_node()
        .name("server")
        .ip(addr(1).ip())
        .init(serve_counter)
        .build();
    let client = handle.create_node().name("client").ip(addr(2).ip()).build();
    (server, client)
}

/// The client's transport (it must run on the client node) and its peer events.
async fn client_transport() -> (Node, Transport, broadcast::Receiver<PeerEvent>) {
    let node = Node::new("client");
    let config = TransportConfig::new(2, addr(2)).with_peer(1, addr(1));
    let transport = Transport::start(&node, config).await.expect("bind");
    let events = transport.subscribe();
    (node, transport, events)
}

/// Retries `attempt` every 100 ms until it succeeds or `tries` run out; the last result.
async fn retry<T, F: Future<Output = Result<T, TransportError>>>(
    tries: u32,
    mut attempt: impl FnMut() -> F,
) -> Result<T, TransportError> {
    let mut result = attempt().await;
    for _ in 1..tries {
        if result.is_ok() {
            break;
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
        result = attempt().await;
    }
    result
}

/// True if an event `wanted` accepts arrives within `within`.
async fn wait_for(
    events: &mut broadcast::Receiver<PeerEvent>,
    within: Duration,
    wanted: impl Fn(&PeerEvent) -> bool,
) -> bool {
    let found = async {
        loop {
            if let Ok(event) = events.recv().await {
                if wanted(&event) {
                    return;
                }
            }
        }
    };
    madsim::time::timeout(within, found).await.is_ok()
}

#[test]
fn a_clogged_link_times_out_asks_and_traffic_resumes_after_heal() {
    for seed in 0..5 {
        runnel_sim::simulate(seed, clogged_link());
    }
}

async fn clogged_link() {
    let (server, client) = server_and_client();
    let net = NetSim::current();
    let (server_id, client_id) = (server.id(), client.id());
    client
        .spawn(async move {
            let (_node, transport, mut events) = client_transport().await;
            let ask = |id| {
                let transport = transport.clone();
                async move {
                    transport
                        .ask(1, &IncrementRequest { id }, ASK_TIMEOUT)
                        .await
                }
            };
            let first = retry(20, || ask(1)).await;
            assert!(first.is_ok(), "the server starts: {first:?}");

            net.clog_link(client_id, server_id);
            let during = ask(2).await;
            assert!(
                matches!(
                    during,
                    Err(TransportError::Timeout { .. } | TransportError::PeerDown { .. })
                ),
                "{during:?}"
            );
            let down = |e: &PeerEvent| matches!(e, PeerEvent::Down { peer: 1, .. });
            assert!(
                wait_for(&mut events, Duration::from_secs(3), down).await,
                "a silent peer is reported down"
            );

            net.unclog_link(client_id, server_id);
            let after = retry(50, || ask(3)).await;
            assert!(after.is_ok(), "traffic resumes after the heal: {after:?}");
        })
        .await
        .expect("client task");
}

#[test]
fn a_killed_and_restarted_peer_is_reconnected_with_its_durable_state() {
    for seed in 0..5 {
        runnel_sim::simulate(seed, killed_peer());
    }
}

async fn killed_peer() {
    let (server, client) = server_and_client();
    let server_id = server.id();
    let handle = Handle::current();
    client
        .spawn(async move {
            let (_node, transport, mut events) = client_transport().await;
            let mut acked = Vec::new();
            for id in 1..=20u64 {
                if transport
                    .ask(1, &IncrementRequest { id }, ASK_TIMEOUT)
                    .await
                    .is_ok()
                {
                    acked.push(id);
                }
            }
            assert!(!acked.is_empty());

            handle.kill(server_id);
            let down = |e: &PeerEvent| matches!(e, PeerEvent::Down { peer: 1, .. });
            assert!(
                wait_for(&mut events, Duration::from_secs(5), down).await,
                "the kill is noticed"
            );
            assert!(transport
                .ask(1, &ReadRequest {}, ASK_TIMEOUT)
                .await
                .is_err());

            handle.restart(server_id);
            let up = |e: &PeerEvent| *e == PeerEvent::Up { peer: 1 };
            assert!(
                wait_for(&mut events, Duration::from_secs(10), up).await,
                "the link reconnects after the restart"
            );
            let read = retry(20, || transport.ask(1, &ReadRequest {}, ASK_TIMEOUT)).await;
            let ids = read.expect("read after restart").ids;
            for id in &acked {
                assert!(
                    ids.contains(id),
                    "acknowledged increment {id} survived the kill"
                );
            }
        })
        .await
        .expect("client task");
}
