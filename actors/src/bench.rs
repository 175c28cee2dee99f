//! Measurements shared by the real-tokio example (`examples/ask_rate.rs`) and
//! `runnel-sim bench`, so both runtimes time the same code.

use std::time::Duration;

use crate::actor::{Actor, Context, Handler, Message};
use crate::transport::{FromPeer, RemoteMessage, Transport};
use crate::{Addr, Node, RestartPolicy};

/// Answers every ping with its own number.
pub struct Echo;

impl Actor for Echo {}

pub struct Ping(pub u64);

impl Message for Ping {
    type Reply = u64;
}

impl Handler<Ping> for Echo {
    async fn handle(&mut self, msg: Ping, _ctx: &mut Context<Self>) -> u64 {
        msg.0
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RemotePing {
    #[prost(uint64, tag = "1")]
    pub n: u64,
}

impl RemoteMessage for RemotePing {
    const SERVICE: &'static str = "bench.ping";
    type Reply = RemotePing;
}

impl Handler<FromPeer<RemotePing>> for Echo {
    async fn handle(&mut self, msg: FromPeer<RemotePing>, _ctx: &mut Context<Self>) -> RemotePing {
        msg.msg
    }
}

pub fn spawn_echo(node: &Node) -> Addr<Echo> {
    node.spawn("echo", 1024, RestartPolicy::default(), || Echo)
}

/// `count` sequential asks to a local actor; returns asks per second of `clock` time.
pub async fn local_asks(addr: &Addr<Echo>, count: u64) -> u64 {
    for n in 0..count {
        let reply = addr
            .ask(Ping(n), Duration::from_secs(10))
            .await
            .expect("echo answers");
        assert_eq!(reply, n);
    }
    count
}

/// `count` sequential asks to `peer` over the transport.
pub async fn remote_asks(transport: &Transport, peer: u64, count: u64) -> u64 {
    for n in 0..count {
        let reply = transport
            .ask(peer, &RemotePing { n }, Duration::from_secs(10))
            .await
            .expect("the peer answers");
        assert_eq!(reply.n, n);
    }
    count
}
