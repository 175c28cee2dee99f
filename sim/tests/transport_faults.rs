//! The node transport under madsim's simulated network: partitions and restarts.
#![cfg(madsim)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::Handle;
use runnel_actors::counter::{CounterService, IncrementRequest, ReadRequest, SyncPolicy};
use runnel_actors::transport::{PeerEvent, Transport, TransportConfig, TransportError};
use runnel_actors::{Node, RestartPolicy};
use runnel_storage::disk::{Disk, SimDisks};

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

#[test]
fn a_clogged_link_times_out_asks_and_traffic_resumes_after_heal() {
    for seed in 0..5 {
        runnel_sim::simulate(seed, clogged_link());
    }
}

async fn clogged_link() {
    let handle = Handle::current();
    let server = handle
        .create_node()
        .name("server")
        .ip(addr(1).ip())
        .init(serve_counter)
        .build();
    let client = handle.create_node().name("client").ip(addr(2).ip()).build();
    let net = NetSim::current();
    let (server_id, client_id) = (server.id(), client.id());
    client
        .spawn(async move {
            let node = Node::new("client");
            let config = TransportConfig::new(2, addr(2)).with_peer(1, addr(1));
            let transport = Transport::start(&node, config).await.expect("bind");
            let mut events = transport.subscribe();
            let ask = |id| {
                let transport = transport.clone();
                async move {
                    transport
                        .ask(1, &IncrementRequest { id }, Duration::from_millis(300))
                        .await
                }
            };
            // The server may still be starting: wait for the first success.
            let mut first = ask(1).await;
            for _ in 0..20 {
                if first.is_ok() {
                    break;
                }
                madsim::time::sleep(Duration::from_millis(100)).await;
                first = ask(1).await;
            }
            assert!(first.is_ok(), "{first:?}");

            net.clog_link(client_id, server_id);
            let during = ask(2).await;
            assert!(
                matches!(
                    during,
                    Err(TransportError::Timeout { .. } | TransportError::PeerDown { .. })
                ),
                "{during:?}"
            );
            // Long enough for the heartbeat to declare the peer down.
            madsim::time::sleep(Duration::from_secs(3)).await;
            let mut saw_down = false;
            while let Ok(event) = events.try_recv() {
                saw_down |= matches!(event, PeerEvent::Down { peer: 1, .. });
            }
            assert!(saw_down, "a silent peer is reported down");

            net.unclog_link(client_id, server_id);
            let mut after = ask(3).await;
            for _ in 0..50 {
                if after.is_ok() {
                    break;
                }
                madsim::time::sleep(Duration::from_millis(100)).await;
                after = ask(3).await;
            }
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
    let handle = Handle::current();
    let server = handle
        .create_node()
        .name("server")
        .ip(addr(1).ip())
        .init(serve_counter)
        .build();
    let client = handle.create_node().name("client").ip(addr(2).ip()).build();
    let server_id = server.id();
    let handle2 = handle.clone();
    client
        .spawn(async move {
            let node = Node::new("client");
            let config = TransportConfig::new(2, addr(2)).with_peer(1, addr(1));
            let transport = Transport::start(&node, config).await.expect("bind");
            let mut events = transport.subscribe();
            let timeout = Duration::from_millis(300);
            let mut acked = Vec::new();
            for id in 1..=20u64 {
                if transport
                    .ask(1, &IncrementRequest { id }, timeout)
                    .await
                    .is_ok()
                {
                    acked.push(id);
                }
            }
            assert!(!acked.is_empty());

            handle2.kill(server_id);
            let down = madsim::time::timeout(Duration::from_secs(5), async {
                loop {
                    if let Ok(PeerEvent::Down { peer: 1, .. }) = events.recv().await {
                        return;
                    }
                }
            })
            .await;
            assert!(down.is_ok(), "the kill is noticed");
            assert!(transport.ask(1, &ReadRequest {}, timeout).await.is_err());

            handle2.restart(server_id);
            let up = madsim::time::timeout(Duration::from_secs(10), async {
                loop {
                    if let Ok(PeerEvent::Up { peer: 1 }) = events.recv().await {
                        return;
                    }
                }
            })
            .await;
            assert!(up.is_ok(), "the link reconnects after the restart");
            let mut read = transport.ask(1, &ReadRequest {}, timeout).await;
            for _ in 0..20 {
                if read.is_ok() {
                    break;
                }
                madsim::time::sleep(Duration::from_millis(100)).await;
                read = transport.ask(1, &ReadRequest {}, timeout).await;
            }
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
