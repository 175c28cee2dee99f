//! The node transport: typed messages between actors on different nodes.
//!
//! Each node listens on one TCP address and keeps one outbound connection per peer. A
//! request travels on the sender's outbound connection and its response comes back on the
//! same connection, matched by correlation id. Frames are prost messages with a length
//! prefix ([`runnel_protocol::node`]).
//!
//! Bounds, and what happens at each:
//! - outbound queue per peer (`outbound_queue_capacity`): when full, `request` and `tell`
//!   fail at once with [`TransportError::QueueFull`] rather than block the caller, so a
//!   slow or dead peer never stalls an actor; callers retry or give up.
//! - requests in flight per peer (`max_in_flight_per_peer`): past it, `TooManyInFlight`.
//! - inbound requests being served per connection (`max_inbound_in_flight_per_connection`):
//!   past it the connection stops reading, which pushes back through TCP.
//! - frame size: [`runnel_protocol::node::MAX_FRAME_SIZE_BYTES`]; a larger length prefix
//!   closes the connection.
//!
//! A peer is declared down when its connection closes or nothing (not even a `Pong`) has
//! come back for `peer_dead_after`; its pending requests fail with `PeerDown`, subscribers
//! get [`PeerEvent::Down`], and the link reconnects with capped exponential backoff.

mod framed;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use runnel_protocol::node::{Frame, FrameError, FrameKind};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::actor::{Addr, BoxFuture, Handler, Message};
use crate::node::Node;
use framed::{write_frame, FrameReader};

/// Node ids are chosen by the operator (or the simulator) and unique in a cluster.
pub type NodeId = u64;

#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub node_id: NodeId,
    pub listen_addr: SocketAddr,
    pub peers: BTreeMap<NodeId, SocketAddr>,
    pub outbound_queue_capacity: usize,
    pub max_in_flight_per_peer: usize,
    pub max_inbound_in_flight_per_connection: usize,
    pub connect_timeout: Duration,
    pub reconnect_backoff_initial: Duration,
    pub reconnect_backoff_max: Duration,
    pub heartbeat_interval: Duration,
    pub peer_dead_after: Duration,
    /// How long a new inbound connection may take to say who it is.
    pub hello_timeout: Duration,
}

impl TransportConfig {
    pub fn new(node_id: NodeId, listen_addr: SocketAddr) -> Self {
        TransportConfig {
            node_id,
            listen_addr,
            peers: BTreeMap::new(),
            outbound_queue_capacity: 1024,
            max_in_flight_per_peer: 4096,
            max_inbound_in_flight_per_connection: 256,
            connect_timeout: Duration::from_secs(1),
            reconnect_backoff_initial: Duration::from_millis(10),
            reconnect_backoff_max: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(250),
            peer_dead_after: Duration::from_secs(1),
            hello_timeout: Duration::from_secs(5),
        }
    }

    pub fn with_peer(mut self, node_id: NodeId, addr: SocketAddr) -> Self {
        self.peers.insert(node_id, addr);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("node {peer} is not a known peer of this node")]
    UnknownPeer { peer: NodeId },
    #[error("no service named {service:?} on node {node}")]
    UnknownService { node: NodeId, service: String },
    #[error("the outbound queue to node {peer} is full ({capacity} frames); the peer is slow or down, retry later")]
    QueueFull { peer: NodeId, capacity: usize },
    #[error("{limit} requests to node {peer} are already in flight; retry later")]
    TooManyInFlight { peer: NodeId, limit: usize },
    #[error("node {peer} did not answer within {timeout_ms} ms")]
    Timeout { peer: NodeId, timeout_ms: u64 },
    #[error("the connection to node {peer} was lost: {reason}")]
    PeerDown { peer: NodeId, reason: String },
    #[error("node {peer} could not handle the request: {message}")]
    Remote { peer: NodeId, message: String },
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the transport is shutting down")]
    Shutdown,
}

/// Connectivity news for the actors that care ([`Transport::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    Up { peer: NodeId },
    Down { peer: NodeId, reason: String },
}

/// Capacity of the peer-event channel; a subscriber that falls further behind skips the
/// oldest events and is told so by `RecvError::Lagged`.
pub const PEER_EVENT_CAPACITY: usize = 1024;

/// Why a service could not answer; its message travels back to the asker, who sees it
/// as [`TransportError::Remote`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(pub String);

type ServiceResult = Result<Bytes, ServiceError>;

/// Handles requests for one named service: payload in, reply payload or reason out.
pub trait Service: Send + Sync + 'static {
    fn call(&self, from_node: NodeId, payload: Bytes) -> BoxFuture<'static, ServiceResult>;
}

impl<F, Fut> Service for F
where
    F: Fn(NodeId, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ServiceResult> + Send + 'static,
{
    fn call(&self, from_node: NodeId, payload: Bytes) -> BoxFuture<'static, ServiceResult> {
        Box::pin(self(from_node, payload))
    }
}

/// A prost message that one node sends to an actor on another.
pub trait RemoteMessage: prost::Message + Default + Send + 'static {
    /// The service name it is registered and addressed under.
    const SERVICE: &'static str;
    type Reply: prost::Message + Default + Send + 'static;
}

/// A remote message as the receiving actor sees it.
#[derive(Debug)]
pub struct FromPeer<M> {
    pub from_node: NodeId,
    pub msg: M,
}

impl<M: RemoteMessage> Message for FromPeer<M> {
    type Reply = M::Reply;
}

type Pending = Arc<Mutex<BTreeMap<u64, oneshot::Sender<Result<Bytes, TransportError>>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections here only insert and remove map entries: never left half-done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Link {
    queue: mpsc::Sender<Frame>,
    pending: Pending,
}

struct Inner {
    config: TransportConfig,
    local_addr: SocketAddr,
    services: RwLock<BTreeMap<String, Arc<dyn Service>>>,
    links: BTreeMap<NodeId, Link>,
    events: broadcast::Sender<PeerEvent>,
    next_correlation_id: AtomicU64,
}

/// One node's end of the transport. Cheap to clone; it lives until its node shuts down.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Transport(node {} at {})",
            self.inner.config.node_id, self.inner.local_addr
        )
    }
}

impl Transport {
    /// Binds the listener and starts one link per configured peer, as tasks of `node`.
    pub async fn start(node: &Node, config: TransportConfig) -> Result<Transport, TransportError> {
        assert!(config.outbound_queue_capacity > 0 && config.max_in_flight_per_peer > 0);
        assert!(config.max_inbound_in_flight_per_connection > 0);
        assert!(config.heartbeat_interval < config.peer_dead_after);
        let listener = TcpListener::bind(config.listen_addr).await?;
        let local_addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(PEER_EVENT_CAPACITY);
        let mut links = BTreeMap::new();
        let mut link_tasks = Vec::new();
        for (&peer, &addr) in config.peers.iter().filter(|(id, _)| **id != config.node_id) {
            let (queue, queue_rx) = mpsc::channel(config.outbound_queue_capacity);
            let pending: Pending = Arc::default();
            link_tasks.push(PeerLink {
                peer,
                addr,
                config: config.clone(),
                queue_rx,
                pending: pending.clone(),
                events: events.clone(),
            });
            links.insert(peer, Link { queue, pending });
        }
        let transport = Transport {
            inner: Arc::new(Inner {
                config,
                local_addr,
                services: RwLock::new(BTreeMap::new()),
                links,
                events,
                next_correlation_id: AtomicU64::new(1),
            }),
        };
        for link in link_tasks {
            node.spawn_task(link.run());
        }
        node.spawn_task(accept_loop(listener, node.clone(), transport.inner.clone()));
        Ok(transport)
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// The address actually bound (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.events.subscribe()
    }

    /// Registers (or replaces) the handler of a service name.
    pub fn register(&self, service: &str, handler: impl Service) {
        self.inner
            .services
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.to_string(), Arc::new(handler));
    }

    /// Serves `M` by asking the actor at `addr`, which sees it as [`FromPeer<M>`].
    pub fn serve<A, M>(&self, addr: Addr<A>, ask_timeout: Duration)
    where
        A: Handler<FromPeer<M>>,
        M: RemoteMessage,
    {
        self.register(M::SERVICE, move |from_node, payload: Bytes| {
            let addr = addr.clone();
            async move {
                let msg = M::decode(payload)
                    .map_err(|e| ServiceError(format!("malformed {} request: {e}", M::SERVICE)))?;
                let reply = addr
                    .ask(FromPeer { from_node, msg }, ask_timeout)
                    .await
                    .map_err(|e| ServiceError(e.to_string()))?;
                Ok(Bytes::from(reply.encode_to_vec()))
            }
        });
    }

    /// Sends a typed request and decodes its typed reply.
    pub async fn ask<M: RemoteMessage>(
        &self,
        peer: NodeId,
        msg: &M,
        timeout: Duration,
    ) -> Result<M::Reply, TransportError> {
        let payload = Bytes::from(msg.encode_to_vec());
        let reply = self.request(peer, M::SERVICE, payload, timeout).await?;
        M::Reply::decode(reply).map_err(|e| {
            TransportError::Frame(FrameError::Malformed(format!(
                "reply to {}: {e}",
                M::SERVICE
            )))
        })
    }

    /// Sends a typed message and expects no reply.
    pub fn tell<M: RemoteMessage>(&self, peer: NodeId, msg: &M) -> Result<(), TransportError> {
        let mut frame = Frame::new(FrameKind::OneWay, 0, self.node_id());
        frame.service = M::SERVICE.to_string();
        frame.payload = Bytes::from(msg.encode_to_vec());
        if peer == self.node_id() {
            let service = self.service(M::SERVICE)?;
            tokio::spawn(service.call(peer, frame.payload));
            return Ok(());
        }
        let link = self.link(peer)?;
        self.enqueue(peer, link, frame)
    }

    /// Sends raw bytes to a service on `peer` and waits up to `timeout` for the reply.
    pub async fn request(
        &self,
        peer: NodeId,
        service: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        let timeout_error = || TransportError::Timeout {
            peer,
            timeout_ms: timeout.as_millis() as u64,
        };
        if peer == self.node_id() {
            let call = self.service(service)?.call(peer, payload);
            return match tokio::time::timeout(timeout, call).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(ServiceError(message))) => Err(TransportError::Remote { peer, message }),
                Err(_) => Err(timeout_error()),
            };
        }
        let link = self.link(peer)?;
        let correlation_id = self
            .inner
            .next_correlation_id
            .fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut pending = lock(&link.pending);
            let limit = self.inner.config.max_in_flight_per_peer;
            if pending.len() >= limit {
                return Err(TransportError::TooManyInFlight { peer, limit });
            }
            pending.insert(correlation_id, reply_tx);
        }
        let mut frame = Frame::new(FrameKind::Request, correlation_id, self.node_id());
        frame.service = service.to_string();
        frame.payload = payload;
        if let Err(e) = self.enqueue(peer, link, frame) {
            lock(&link.pending).remove(&correlation_id);
            return Err(e);
        }
        match tokio::time::timeout(timeout, reply_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(TransportError::Shutdown),
            Err(_) => {
                lock(&link.pending).remove(&correlation_id);
                Err(timeout_error())
            }
        }
    }

    fn link(&self, peer: NodeId) -> Result<&Link, TransportError> {
        self.inner
            .links
            .get(&peer)
            .ok_or(TransportError::UnknownPeer { peer })
    }

    fn service(&self, service: &str) -> Result<Arc<dyn Service>, TransportError> {
        self.inner.service(service)
    }

    fn enqueue(&self, peer: NodeId, link: &Link, frame: Frame) -> Result<(), TransportError> {
        link.queue.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TransportError::QueueFull {
                peer,
                capacity: self.inner.config.outbound_queue_capacity,
            },
            mpsc::error::TrySendError::Closed(_) => TransportError::Shutdown,
        })
    }
}

impl Inner {
    fn service(&self, service: &str) -> Result<Arc<dyn Service>, TransportError> {
        self.services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .cloned()
            .ok_or_else(|| TransportError::UnknownService {
                node: self.config.node_id,
                service: service.to_string(),
            })
    }
}

/// The outbound half towards one peer: connects, sends, matches replies, watches liveness.
struct PeerLink {
    peer: NodeId,
    addr: SocketAddr,
    config: TransportConfig,
    queue_rx: mpsc::Receiver<Frame>,
    pending: Pending,
    events: broadcast::Sender<PeerEvent>,
}

impl PeerLink {
    async fn run(mut self) {
        let mut backoff = self.config.reconnect_backoff_initial;
        loop {
            let connected =
                tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(self.addr))
                    .await;
            let stream = match connected {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(peer = self.peer, error = %e, "connect failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.reconnect_backoff_max);
                    continue;
                }
                Err(_) => {
                    tracing::debug!(peer = self.peer, "connect timed out");
                    backoff = (backoff * 2).min(self.config.reconnect_backoff_max);
                    continue;
                }
            };
            backoff = self.config.reconnect_backoff_initial;
            let reason = self.converse(stream).await;
            let Some(reason) = reason else { return };
            tracing::debug!(peer = self.peer, %reason, "peer down");
            let failed = std::mem::take(&mut *lock(&self.pending));
            for (_, reply) in failed {
                let _ = reply.send(Err(TransportError::PeerDown {
                    peer: self.peer,
                    reason: reason.clone(),
                }));
            }
            let _ = self.events.send(PeerEvent::Down {
                peer: self.peer,
                reason,
            });
            tokio::time::sleep(backoff).await;
        }
    }

    /// Talks on one connection until it fails (`Some(reason)`) or the transport is gone (`None`).
    async fn converse(&mut self, stream: TcpStream) -> Option<String> {
        let (reader, mut writer) = tokio::io::split(stream);
        let hello = Frame::new(FrameKind::Hello, 0, self.config.node_id);
        if let Err(e) = write_frame(&mut writer, &hello).await {
            return Some(format!("hello failed: {e}"));
        }
        let _ = self.events.send(PeerEvent::Up { peer: self.peer });
        let mut reader = FrameReader::new(reader);
        let mut last_heard = Instant::now();
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_ping_id = 0u64;
        loop {
            tokio::select! {
                biased;
                frame = reader.next() => match frame {
                    Ok(Some(frame)) => {
                        last_heard = Instant::now();
                        self.on_reply(frame);
                    }
                    Ok(None) => return Some("connection closed by the peer".into()),
                    Err(e) => return Some(e.to_string()),
                },
                frame = self.queue_rx.recv() => {
                    let frame = frame?;
                    let abandoned = frame.kind() == FrameKind::Request
                        && !lock(&self.pending).contains_key(&frame.correlation_id);
                    if abandoned {
                        continue;
                    }
                    if let Err(e) = write_frame(&mut writer, &frame).await {
                        return Some(e.to_string());
                    }
                }
                _ = heartbeat.tick() => {
                    let silent = last_heard.elapsed();
                    if silent > self.config.peer_dead_after {
                        return Some(format!("no frame for {} ms", silent.as_millis()));
                    }
                    next_ping_id += 1;
                    let ping = Frame::new(FrameKind::Ping, next_ping_id, self.config.node_id);
                    if let Err(e) = write_frame(&mut writer, &ping).await {
                        return Some(e.to_string());
                    }
                }
            }
        }
    }

    fn on_reply(&self, frame: Frame) {
        let result = match frame.kind() {
            FrameKind::Response => Ok(frame.payload),
            FrameKind::Error => Err(TransportError::Remote {
                peer: self.peer,
                message: String::from_utf8_lossy(&frame.payload).into_owned(),
            }),
            FrameKind::Pong => return,
            other => {
                tracing::warn!(
                    peer = self.peer,
                    ?other,
                    "unexpected frame on an outbound connection"
                );
                return;
            }
        };
        // A reply whose asker timed out finds no entry; it is dropped.
        if let Some(reply) = lock(&self.pending).remove(&frame.correlation_id) {
            let _ = reply.send(result);
        }
    }
}

async fn accept_loop(listener: TcpListener, node: Node, inner: Arc<Inner>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                node.spawn_task(serve_connection(
                    stream,
                    remote,
                    node.clone(),
                    inner.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The inbound half: answers requests that arrive on one accepted connection.
async fn serve_connection(stream: TcpStream, remote: SocketAddr, node: Node, inner: Arc<Inner>) {
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = FrameReader::new(reader);
    let hello = tokio::time::timeout(inner.config.hello_timeout, reader.next()).await;
    let from_node = match hello {
        Ok(Ok(Some(frame))) if frame.kind() == FrameKind::Hello => frame.from_node,
        _ => {
            tracing::debug!(%remote, "connection closed: no hello");
            return;
        }
    };
    let in_flight = inner.config.max_inbound_in_flight_per_connection;
    let (replies, mut replies_rx) = mpsc::channel::<Frame>(in_flight);
    node.spawn_task(async move {
        while let Some(frame) = replies_rx.recv().await {
            if write_frame(&mut writer, &frame).await.is_err() {
                return;
            }
        }
    });
    let permits = Arc::new(Semaphore::new(in_flight));
    let local_node = inner.config.node_id;
    loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%remote, from_node, error = %e, "closing connection");
                return;
            }
        };
        match frame.kind() {
            FrameKind::Ping => {
                let pong = Frame::new(FrameKind::Pong, frame.correlation_id, local_node);
                if replies.send(pong).await.is_err() {
                    return;
                }
            }
            FrameKind::Request | FrameKind::OneWay => {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let replies = replies.clone();
                let service = inner.service(&frame.service);
                let one_way = frame.kind() == FrameKind::OneWay;
                node.spawn_task(async move {
                    let result = match service {
                        Ok(service) => service.call(from_node, frame.payload).await,
                        Err(e) => Err(ServiceError(e.to_string())),
                    };
                    drop(permit);
                    if one_way {
                        return;
                    }
                    let mut reply = match result {
                        Ok(payload) => {
                            let mut reply =
                                Frame::new(FrameKind::Response, frame.correlation_id, local_node);
                            reply.payload = payload;
                            reply
                        }
                        Err(ServiceError(message)) => {
                            let mut reply =
                                Frame::new(FrameKind::Error, frame.correlation_id, local_node);
                            reply.payload = Bytes::from(message.into_bytes());
                            reply
                        }
                    };
                    reply.service = frame.service;
                    let _ = replies.send(reply).await;
                });
            }
            other => {
                tracing::warn!(%remote, from_node, ?other, "closing connection: unexpected frame");
                return;
            }
        }
    }
}
