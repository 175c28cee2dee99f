//! The node transport over real loopback TCP.
#![cfg(not(madsim))]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use runnel_actors::transport::{PeerEvent, Transport, TransportConfig, TransportError};
use runnel_actors::{Node, RestartPolicy, ShutdownReason};
use runnel_sim::counter::service::{
    CounterService, IncrementRequest, IncrementStatus, ReadRequest, SyncPolicy,
};
use runnel_storage::disk::RealDisk;

const PATIENCE: Duration = Duration::from_secs(10);

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A node serving a counter from `dir`, listening on `addr`.
async fn counter_node(id: u64, addr: SocketAddr, dir: &std::path::Path) -> (Node, Transport) {
    let node = Node::new(format!("node-{id}"));
    let transport = Transport::start(&node, TransportConfig::new(id, addr))
        .await
        .expect("bind");
    let dir = dir.to_path_buf();
    let counter = node.spawn("counter", 64, RestartPolicy::default(), move || {
        CounterService::new(
            Arc::new(RealDisk::new()),
            dir.clone(),
            SyncPolicy::FsyncBeforeAck,
        )
    });
    transport.serve::<_, IncrementRequest>(counter.clone(), PATIENCE);
    transport.serve::<_, ReadRequest>(counter, PATIENCE);
    (node, transport)
}

async fn next_event(events: &mut tokio::sync::broadcast::Receiver<PeerEvent>) -> PeerEvent {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("an event arrives")
        .expect("no lag in a test")
}

#[tokio::test]
async fn typed_requests_cross_nodes_and_survive_a_peer_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, server_transport) = counter_node(1, loopback(0), tmp.path()).await;
    let server_addr = server_transport.local_addr();

    let client_node = Node::new("client");
    // Default heartbeats: a closed connection is noticed at once, without them.
    let config = TransportConfig::new(2, loopback(0)).with_peer(1, server_addr);
    let client = Transport::start(&client_node, config).await.expect("bind");
    let mut events = client.subscribe();
    assert_eq!(next_event(&mut events).await, PeerEvent::Up { peer: 1 });

    for id in 1..=10 {
        let reply = client
            .ask(1, &IncrementRequest { id }, PATIENCE)
            .await
            .expect("increment");
        assert_eq!(reply.status, IncrementStatus::Ok as i32);
        assert_eq!(reply.value, id);
    }
    let read = client
        .ask(1, &ReadRequest {}, PATIENCE)
        .await
        .expect("read");
    assert_eq!(read.ids, (1..=10).collect::<Vec<_>>());

    // Errors come back as errors, not hangs.
    let unknown = client
        .request(1, "no.such.service", bytes::Bytes::new(), PATIENCE)
        .await;
    assert!(
        matches!(unknown, Err(TransportError::Remote { peer: 1, ref message }) if message.contains("no.such.service")),
        "{unknown:?}"
    );
    assert!(matches!(
        client.ask(9, &ReadRequest {}, PATIENCE).await,
        Err(TransportError::UnknownPeer { peer: 9 })
    ));

    // Kill the server: the client sees it go down and requests fail instead of hanging.
    server.shutdown(ShutdownReason::Requested);
    server.stopped().await;
    drop(server_transport);
    assert!(matches!(
        next_event(&mut events).await,
        PeerEvent::Down { peer: 1, .. }
    ));
    let while_down = client
        .ask(1, &ReadRequest {}, Duration::from_millis(100))
        .await;
    assert!(while_down.is_err());

    // Restart it on the same port from the same directory: the link reconnects by itself
    // and the fsynced increments are still there.
    let (server, _server_transport) = counter_node(1, server_addr, tmp.path()).await;
    loop {
        if next_event(&mut events).await == (PeerEvent::Up { peer: 1 }) {
            break;
        }
    }
    let read = client
        .ask(1, &ReadRequest {}, PATIENCE)
        .await
        .expect("read after restart");
    assert_eq!(read.ids, (1..=10).collect::<Vec<_>>());
    server.shutdown(ShutdownReason::Requested);
    client_node.shutdown(ShutdownReason::Requested);
}

#[tokio::test]
async fn a_node_can_ask_its_own_services() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (node, transport) = counter_node(1, loopback(0), tmp.path()).await;
    let reply = transport
        .ask(1, &IncrementRequest { id: 5 }, PATIENCE)
        .await
        .expect("local");
    assert_eq!(reply.value, 1);
    node.shutdown(ShutdownReason::Requested);
}

#[tokio::test]
async fn garbage_on_the_wire_closes_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().expect("tempdir");
    let (node, transport) = counter_node(1, loopback(0), tmp.path()).await;
    // A length prefix far over the limit, after a valid hello.
    let mut raw = tokio::net::TcpStream::connect(transport.local_addr())
        .await
        .expect("connect");
    let hello = runnel_protocol::node::Frame::new(runnel_protocol::node::FrameKind::Hello, 0, 77);
    raw.write_all(&runnel_protocol::node::encode_frame(&hello).expect("encode"))
        .await
        .expect("write");
    raw.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
    raw.flush().await.expect("flush");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(PATIENCE, raw.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(
        n, 0,
        "the broker closes a connection that announces an oversized frame"
    );

    // The node still serves well-behaved peers.
    let client_node = Node::new("client");
    let client = Transport::start(
        &client_node,
        TransportConfig::new(2, loopback(0)).with_peer(1, transport.local_addr()),
    )
    .await
    .expect("bind");
    let reply = client
        .ask(1, &IncrementRequest { id: 1 }, PATIENCE)
        .await
        .expect("served");
    assert_eq!(reply.status, IncrementStatus::Ok as i32);
    node.shutdown(ShutdownReason::Requested);
    client_node.shutdown(ShutdownReason::Requested);
}

#[tokio::test]
async fn a_one_way_tell_reaches_the_remote_actor() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, server_transport) = counter_node(1, loopback(0), tmp.path()).await;
    let client_node = Node::new("client");
    let config = TransportConfig::new(2, loopback(0)).with_peer(1, server_transport.local_addr());
    let client = Transport::start(&client_node, config).await.expect("bind");
    client
        .tell(1, &IncrementRequest { id: 77 })
        .expect("queued");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let read = client
            .ask(1, &ReadRequest {}, PATIENCE)
            .await
            .expect("read");
        if read.ids == vec![77] {
            break;
        }
        assert!(
            read.ids.is_empty(),
            "only the told increment: {:?}",
            read.ids
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tell never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.shutdown(ShutdownReason::Requested);
    client_node.shutdown(ShutdownReason::Requested);
}
