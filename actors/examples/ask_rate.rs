//! Ask round trips per second on real tokio, against a raw loopback TCP ping-pong of the
//! same shape measured in the same run.
//!
//! cargo run --release -p runnel-actors --example ask_rate

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use runnel_actors::bench::{local_asks, remote_asks, spawn_echo, RemotePing};
use runnel_actors::transport::{Transport, TransportConfig};
use runnel_actors::{Node, ShutdownReason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const COUNT: u64 = 50_000;

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

async fn raw_loopback_round_trips(count: u64) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = [0u8; 32];
        while s.read_exact(&mut buf).await.is_ok() {
            if s.write_all(&buf).await.is_err() {
                return;
            }
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let mut buf = [7u8; 32];
    let start = Instant::now();
    for _ in 0..count {
        c.write_all(&buf).await.expect("write");
        c.read_exact(&mut buf).await.expect("read");
    }
    rate(count, start.elapsed())
}

#[tokio::main]
async fn main() {
    let node = Node::new("bench");
    let echo = spawn_echo(&node);
    let start = Instant::now();
    local_asks(&echo, COUNT).await;
    let local = rate(COUNT, start.elapsed());

    let server = Transport::start(
        &node,
        TransportConfig::new(1, SocketAddr::from(([127, 0, 0, 1], 0))),
    )
    .await
    .expect("bind");
    server.serve::<_, RemotePing>(echo, Duration::from_secs(10));
    let client = Transport::start(
        &node,
        TransportConfig::new(2, SocketAddr::from(([127, 0, 0, 1], 0)))
            .with_peer(1, server.local_addr()),
    )
    .await
    .expect("bind");
    remote_asks(&client, 1, 100).await;
    let start = Instant::now();
    remote_asks(&client, 1, COUNT).await;
    let remote = rate(COUNT, start.elapsed());
    let raw = raw_loopback_round_trips(COUNT).await;

    println!("local actor ask:        {local:>10.0} round trips/s");
    println!("transport ask loopback: {remote:>10.0} round trips/s");
    println!("raw TCP ping-pong:      {raw:>10.0} round trips/s (baseline)");
    println!("transport / raw:        {:>10.2}x", remote / raw);
    node.shutdown(ShutdownReason::Requested);
    node.stopped().await;
}
