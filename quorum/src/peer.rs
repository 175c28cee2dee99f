//! One voter of the quorum as an actor: its mailbox orders ticks, messages from the other
//! voters and proposals; after each, it takes raft-rs's Ready and does its I/O in the
//! order Raft needs (send what may go before the write, write the hard state and entries,
//! send what waited for them, apply what is committed).
//!
//! The actor opens its [`RaftLog`] in `started`, so a restart after a failure (a disk
//! error fails the actor) recovers from disk like a process restart does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType, Message as RaftMessage};
use raft::{RawNode, StateRole};
use runnel_actors::transport::{FromPeer, RemoteMessage, Transport};
use runnel_actors::{
    Actor, ActorError, Addr, AskError, Context, Handler, Message, Node, RestartPolicy,
};
use runnel_storage::disk::Disk;
use tokio::sync::oneshot;

use crate::log::RaftLog;
use crate::QuorumError;

/// Mailbox bound: ticks, peer messages and proposals queue here.
pub const MAILBOX_CAPACITY: usize = 1024;
/// How long the transport waits for the actor to take a peer's message.
const PEER_MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// A voter's settings. The defaults follow KRaft's: an election timeout of about a second
/// (`controller.quorum.election.timeout.ms`), heartbeats several times within it.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: u64,
    /// Every voter's node id, this one included.
    pub voters: Vec<u64>,
    /// Where the log and `quorum-state` live.
    pub dir: PathBuf,
    pub tick_ms: u64,
    /// Ticks without a leader before an election (raft-rs randomises within [n, 2n)).
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Proposals waiting for their commit; more are refused as busy.
    pub max_pending_proposals: usize,
}

impl QuorumConfig {
    pub fn new(node_id: u64, voters: Vec<u64>, dir: PathBuf) -> Self {
        QuorumConfig {
            node_id,
            voters,
            dir,
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_pending_proposals: 1024,
        }
    }

    fn raft_config(&self, applied: u64) -> raft::Config {
        raft::Config {
            id: self.node_id,
            election_tick: self.election_ticks,
            heartbeat_tick: self.heartbeat_ticks,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            // A partitioned voter does not raise the term on its return (pre-vote), and a
            // leader that lost its quorum steps down (check-quorum).
            pre_vote: true,
            check_quorum: true,
            ..Default::default()
        }
    }
}

/// An entry the quorum committed, in log order, delivered once per life of the actor (a
/// restarted voter applies its log again from the start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub index: u64,
    pub term: u64,
    pub data: Bytes,
}

/// Where committed entries go: the metadata image, or a test's record.
pub type Apply = Arc<dyn Fn(Committed) + Send + Sync>;

/// Why a proposal was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("node {node_id} is not the quorum's leader (leader: {leader:?}); send it there")]
    NotLeader { node_id: u64, leader: Option<u64> },
    #[error("{pending} proposals are waiting for their commit already; try again shortly")]
    Busy { pending: usize },
    #[error("the proposal at index {index} was replaced by another leader's entry")]
    Superseded { index: u64 },
    #[error("the proposal is empty: an empty entry is the leader's own no-op")]
    Empty,
    #[error("the quorum peer is not running: {0}")]
    Stopped(String),
    #[error("the proposal was not committed within {timeout_ms} ms; it may still be")]
    Timeout { timeout_ms: u64 },
}

/// A voter's view, for status commands and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node_id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub is_leader: bool,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    /// The leader has applied an entry of its own term, so it has applied every entry
    /// committed before it led: what it decides from its state is up to date.
    pub leader_ready: bool,
    /// Each voter's id and the last index it is known to hold: the leader's progress
    /// tracker on the leader, this voter's own log elsewhere.
    pub progress: Vec<(u64, u64)>,
}

/// A Raft message between voters, in raft-rs's own protobuf encoding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RaftFrame {
    #[prost(bytes = "bytes", tag = "1")]
    pub payload: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RaftAck {}

impl RemoteMessage for RaftFrame {
    const SERVICE: &'static str = "quorum.raft";
    type Reply = RaftAck;
}

/// The address of a running voter.
#[derive(Clone)]
pub struct QuorumHandle {
    addr: Addr<QuorumPeer>,
    node_id: u64,
    /// The leader this voter last knew of (0: none), for readers that cannot wait.
    leader: Arc<AtomicU64>,
}

impl QuorumHandle {
    /// Starts the voter on `node` and serves its peers' messages on `transport`.
    pub fn spawn(
        node: &Node,
        transport: &Transport,
        disk: Arc<dyn Disk>,
        config: QuorumConfig,
        apply: Apply,
    ) -> QuorumHandle {
        assert!(
            config.voters.contains(&config.node_id),
            "a voter is one of the voters"
        );
        let node_id = config.node_id;
        let transport_for_peer = transport.clone();
        let leader = Arc::new(AtomicU64::new(0));
        let leader_for_peer = leader.clone();
        let addr = node.spawn(
            format!("quorum-{node_id}"),
            MAILBOX_CAPACITY,
            RestartPolicy::default(),
            move || {
                QuorumPeer::new(
                    config.clone(),
                    disk.clone(),
                    transport_for_peer.clone(),
                    apply.clone(),
                    leader_for_peer.clone(),
                )
            },
        );
        transport.serve::<QuorumPeer, RaftFrame>(addr.clone(), PEER_MESSAGE_TIMEOUT);
        QuorumHandle {
            addr,
            node_id,
            leader,
        }
    }

    /// The leader as this voter last knew it, without asking the actor.
    pub fn known_leader(&self) -> Option<u64> {
        Some(self.leader.load(Ordering::Relaxed)).filter(|&id| id != raft::INVALID_ID)
    }

    /// Proposes `data` and waits until the quorum commits it: answers its index.
    pub async fn propose(&self, data: Bytes, timeout: Duration) -> Result<u64, ProposeError> {
        let timeout_ms = timeout.as_millis() as u64;
        let ticket = self
            .addr
            .ask(Propose(data), timeout)
            .await
            .map_err(|e| self.stopped(e))??;
        match tokio::time::timeout(timeout, ticket).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ProposeError::Stopped("the peer restarted".into())),
            Err(_) => Err(ProposeError::Timeout { timeout_ms }),
        }
    }

    pub async fn status(&self, timeout: Duration) -> Result<QuorumStatus, ProposeError> {
        self.addr
            .ask(GetStatus, timeout)
            .await
            .map_err(|e| self.stopped(e))?
            .ok_or_else(|| ProposeError::Stopped(format!("node {} is starting", self.node_id)))
    }

    fn stopped(&self, error: AskError) -> ProposeError {
        ProposeError::Stopped(error.to_string())
    }
}

pub struct QuorumPeer {
    config: QuorumConfig,
    disk: Arc<dyn Disk>,
    transport: Transport,
    apply: Apply,
    leader: Arc<AtomicU64>,
    /// Opened in `started`; `None` only before.
    raft: Option<RawNode<RaftLog>>,
    applied_index: u64,
    /// raft-rs's term and role when the election timeout was last drawn.
    drawn_at: Option<(u64, StateRole)>,
    /// Proposals by the index and term they were appended at, waiting for their commit.
    pending: BTreeMap<u64, (u64, oneshot::Sender<Result<u64, ProposeError>>)>,
}

impl QuorumPeer {
    fn new(
        config: QuorumConfig,
        disk: Arc<dyn Disk>,
        transport: Transport,
        apply: Apply,
        leader: Arc<AtomicU64>,
    ) -> Self {
        QuorumPeer {
            config,
            disk,
            transport,
            apply,
            leader,
            raft: None,
            applied_index: 0,
            drawn_at: None,
            pending: BTreeMap::new(),
        }
    }

    fn raft(&mut self) -> &mut RawNode<RaftLog> {
        self.raft.as_mut().expect("opened in started")
    }

    /// Does a Ready's I/O, as often as raft-rs has one.
    async fn drive(&mut self) -> Result<(), QuorumError> {
        while self.raft().has_ready() {
            let mut ready = self.raft().ready();
            // A leader may send before its own write: followers' acks count its write later.
            self.send(ready.take_messages());
            if !ready.snapshot().is_empty() {
                return Err(QuorumError::SnapshotUnsupported);
            }
            self.apply_entries(ready.take_committed_entries());
            let hard_state = ready.hs().cloned();
            let entries = ready.take_entries();
            self.raft()
                .mut_store()
                .persist(hard_state.as_ref(), &entries)
                .await?;
            self.send(ready.take_persisted_messages());
            let mut light = self.raft().advance(ready);
            if let Some(commit) = light.commit_index() {
                self.raft().mut_store().set_commit(commit);
            }
            self.send(light.take_messages());
            self.apply_entries(light.take_committed_entries());
            self.raft().advance_apply();
        }
        Ok(())
    }

    fn send(&mut self, messages: Vec<RaftMessage>) {
        for message in messages {
            let to = message.to;
            let sent = message
                .write_to_bytes()
                .map_err(|e| e.to_string())
                .and_then(|payload| {
                    self.transport
                        .tell(
                            to,
                            &RaftFrame {
                                payload: Bytes::from(payload),
                            },
                        )
                        .map_err(|e| e.to_string())
                });
            if let Err(reason) = sent {
                tracing::debug!(to, %reason, "raft message not sent");
                self.raft().report_unreachable(to);
            }
        }
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            assert_eq!(
                entry.index,
                self.applied_index + 1,
                "committed entries come in order"
            );
            self.applied_index = entry.index;
            let (index, term) = (entry.index, entry.term);
            match entry.get_entry_type() {
                // The quorum's membership is static for now: voters come from the config.
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {}
                EntryType::EntryNormal if entry.data.is_empty() => {}
                EntryType::EntryNormal => (self.apply)(Committed {
                    index,
                    term,
                    data: entry.data,
                }),
            }
            // After the apply: a proposer that hears its commit sees its entry applied.
            if let Some((proposed_term, reply)) = self.pending.remove(&index) {
                let answer = if proposed_term == term {
                    Ok(index)
                } else {
                    Err(ProposeError::Superseded { index })
                };
                let _ = reply.send(answer);
            }
        }
    }

    fn leader(&mut self) -> Option<u64> {
        let leader = self.raft().raft.leader_id;
        (leader != raft::INVALID_ID).then_some(leader)
    }

    /// raft-rs draws each election timeout from `rand::thread_rng`, which the simulator
    /// cannot seed (getrandom makes a raw system call). Whenever raft-rs has just drawn
    /// (its term or role changed), the peer draws again from our source, madsim's seeded
    /// one under simulation, from raft-rs's own range: a seed then replays its elections.
    fn redraw_election_timeout(&mut self) {
        let raft = &mut self.raft.as_mut().expect("opened in started").raft;
        let now = (raft.term, raft.state);
        if self.drawn_at == Some(now) {
            return;
        }
        self.drawn_at = Some(now);
        let (low, high) = (raft.election_timeout(), 2 * raft.election_timeout());
        raft.set_randomized_election_timeout(draw_between(low, high));
    }

    async fn after(&mut self, ctx: &mut Context<Self>) {
        self.redraw_election_timeout();
        if let Err(error) = self.drive().await {
            tracing::error!(node = self.config.node_id, %error, "quorum peer failed");
            ctx.fail(error.to_string());
        }
        let leader = self.raft().raft.leader_id;
        self.leader.store(leader, Ordering::Relaxed);
    }
}

impl Actor for QuorumPeer {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        let store = RaftLog::open(self.disk.clone(), &self.config.dir, &self.config.voters)
            .await
            .map_err(|e| ActorError::new(e.to_string()))?;
        let logger = slog::Logger::root(
            tracing_slog::TracingSlogDrain,
            slog::o!("raft_id" => self.config.node_id),
        );
        // Applied from the start: the state machine is rebuilt from the log on every life.
        let raft = RawNode::new(&self.config.raft_config(0), store, &logger)
            .map_err(|e| ActorError::new(format!("raft refused its state: {e}")))?;
        self.raft = Some(raft);
        self.applied_index = 0;
        self.drawn_at = None;
        self.redraw_election_timeout();
        ctx.notify_interval(Duration::from_millis(self.config.tick_ms), Tick);
        // A quorum of one need not wait out an election timeout to lead.
        if self.config.voters == [self.config.node_id] {
            self.raft()
                .campaign()
                .map_err(|e| ActorError::new(e.to_string()))?;
            self.after(ctx).await;
        }
        Ok(())
    }

    async fn stopped(&mut self) {
        self.leader.store(raft::INVALID_ID, Ordering::Relaxed);
        for (_, (_, reply)) in std::mem::take(&mut self.pending) {
            let _ = reply.send(Err(ProposeError::Stopped("the peer stopped".into())));
        }
    }
}

/// A number in `[low, high)`.
#[cfg(madsim)]
fn draw_between(low: usize, high: usize) -> usize {
    use madsim::rand::Rng;
    madsim::rand::thread_rng().gen_range(low..high)
}

#[cfg(not(madsim))]
fn draw_between(low: usize, high: usize) -> usize {
    use rand::Rng;
    rand::thread_rng().gen_range(low..high)
}

#[derive(Clone)]
struct Tick;

impl Message for Tick {
    type Reply = ();
}

impl Handler<Tick> for QuorumPeer {
    async fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        self.raft().tick();
        self.after(ctx).await;
    }
}

impl Handler<FromPeer<RaftFrame>> for QuorumPeer {
    async fn handle(&mut self, msg: FromPeer<RaftFrame>, ctx: &mut Context<Self>) -> RaftAck {
        match RaftMessage::parse_from_bytes(&msg.msg.payload) {
            Ok(message) if message.from == msg.from_node && message.to == self.config.node_id => {
                if let Err(error) = self.raft().step(message) {
                    tracing::debug!(from = msg.from_node, %error, "raft message refused");
                }
                self.after(ctx).await;
            }
            Ok(message) => tracing::warn!(
                from = msg.from_node,
                claimed_from = message.from,
                to = message.to,
                "dropping a raft message not addressed from its sender to this node"
            ),
            Err(error) => {
                tracing::warn!(from = msg.from_node, %error, "dropping a malformed raft message")
            }
        }
        RaftAck {}
    }
}

type Ticket = oneshot::Receiver<Result<u64, ProposeError>>;

struct Propose(Bytes);

impl Message for Propose {
    type Reply = Result<Ticket, ProposeError>;
}

impl Handler<Propose> for QuorumPeer {
    async fn handle(
        &mut self,
        msg: Propose,
        ctx: &mut Context<Self>,
    ) -> Result<Ticket, ProposeError> {
        if msg.0.is_empty() {
            return Err(ProposeError::Empty);
        }
        if self.raft().raft.state != StateRole::Leader {
            return Err(ProposeError::NotLeader {
                node_id: self.config.node_id,
                leader: self.leader(),
            });
        }
        if self.pending.len() >= self.config.max_pending_proposals {
            return Err(ProposeError::Busy {
                pending: self.pending.len(),
            });
        }
        let raft = self.raft();
        raft.propose(Vec::new(), msg.0.to_vec())
            .map_err(|_| ProposeError::NotLeader {
                node_id: self.config.node_id,
                leader: None,
            })?;
        let raft = self.raft();
        let (index, term) = (raft.raft.raft_log.last_index(), raft.raft.term);
        let (reply, ticket) = oneshot::channel();
        self.pending.insert(index, (term, reply));
        self.after(ctx).await;
        Ok(ticket)
    }
}

struct GetStatus;

impl Message for GetStatus {
    type Reply = Option<QuorumStatus>;
}

impl Handler<GetStatus> for QuorumPeer {
    async fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Option<QuorumStatus> {
        let raft = self.raft.as_ref()?;
        let leader = raft.raft.leader_id;
        let is_leader = raft.raft.state == StateRole::Leader;
        let applied_term = raft.raft.raft_log.term(self.applied_index).unwrap_or(0);
        Some(QuorumStatus {
            leader_ready: is_leader && applied_term == raft.raft.term,
            progress: if is_leader {
                let mut voters: Vec<(u64, u64)> = raft
                    .raft
                    .prs()
                    .iter()
                    .map(|(id, p)| (*id, p.matched))
                    .collect();
                voters.sort_unstable();
                voters
            } else {
                vec![(self.config.node_id, raft.store().last_index())]
            },
            node_id: self.config.node_id,
            leader: (leader != raft::INVALID_ID).then_some(leader),
            term: raft.raft.term,
            is_leader,
            commit_index: raft.raft.raft_log.committed,
            applied_index: self.applied_index,
            last_index: raft.store().last_index(),
        })
    }
}
