//! Actors, their addresses and their context.
//!
//! An actor is a struct that owns its state; messages reach it one at a time through a
//! bounded mailbox, so its handlers need no locks. `tell` waits for room in the mailbox
//! (backpressure); `try_tell` refuses when it is full; `ask` waits for the reply with a
//! timeout.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::node::Node;

/// Why an actor could not start or must be restarted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ActorError(pub String);

impl ActorError {
    pub fn new(reason: impl Into<String>) -> Self {
        ActorError(reason.into())
    }
}

/// State plus behaviour, restarted from its factory by its supervisor when it fails.
pub trait Actor: Send + Sized + 'static {
    /// Runs before the first message of every (re)start; an error counts as a failure.
    fn started(
        &mut self,
        _ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), ActorError>> + Send {
        async { Ok(()) }
    }

    /// Runs when the actor stops, fails or its node shuts down.
    fn stopped(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// A message and the type of its reply.
pub trait Message: Send + 'static {
    type Reply: Send + 'static;
}

/// How an actor handles one kind of message.
pub trait Handler<M: Message>: Actor {
    fn handle(&mut self, msg: M, ctx: &mut Context<Self>) -> impl Future<Output = M::Reply> + Send;
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A message in a mailbox, with the way back to whoever asked.
pub(crate) trait Envelope<A: Actor>: Send {
    fn deliver<'a>(self: Box<Self>, actor: &'a mut A, ctx: &'a mut Context<A>)
        -> BoxFuture<'a, ()>;
}

struct MessageEnvelope<M: Message> {
    msg: M,
    reply: Option<oneshot::Sender<M::Reply>>,
}

impl<A, M> Envelope<A> for MessageEnvelope<M>
where
    A: Handler<M>,
    M: Message,
{
    fn deliver<'a>(
        self: Box<Self>,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let reply = actor.handle(self.msg, ctx).await;
            if let Some(tx) = self.reply {
                // The asker may have timed out and gone; that is its business.
                let _ = tx.send(reply);
            }
        })
    }
}

pub(crate) type Mailbox<A> = mpsc::Sender<Box<dyn Envelope<A>>>;
pub(crate) type MailboxReceiver<A> = mpsc::Receiver<Box<dyn Envelope<A>>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxError {
    #[error("the mailbox of actor {actor} is full ({capacity} messages); try again later")]
    Full { actor: Arc<str>, capacity: usize },
    #[error("actor {actor} has stopped")]
    Closed { actor: Arc<str> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    #[error("actor {actor} did not answer within {timeout_ms} ms")]
    Timeout { actor: Arc<str>, timeout_ms: u64 },
    #[error("actor {actor} has stopped")]
    Closed { actor: Arc<str> },
    #[error("actor {actor} stopped or failed before answering")]
    Dropped { actor: Arc<str> },
}

/// Where to send an actor messages. Cheap to clone; the actor stops once every `Addr` is gone.
pub struct Addr<A: Actor> {
    tx: Mailbox<A>,
    name: Arc<str>,
}

impl<A: Actor> Clone for Addr<A> {
    fn clone(&self) -> Self {
        Addr {
            tx: self.tx.clone(),
            name: self.name.clone(),
        }
    }
}

impl<A: Actor> std::fmt::Debug for Addr<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Addr({})", self.name)
    }
}

impl<A: Actor> Addr<A> {
    pub(crate) fn new(tx: Mailbox<A>, name: Arc<str>) -> Self {
        Addr { tx, name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// False once the actor has stopped for good.
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Sends without waiting for a reply; waits while the mailbox is full.
    pub async fn tell<M>(&self, msg: M) -> Result<(), MailboxError>
    where
        A: Handler<M>,
        M: Message,
    {
        let envelope: Box<dyn Envelope<A>> = Box::new(MessageEnvelope { msg, reply: None });
        self.tx.send(envelope).await.map_err(|_| self.closed())
    }

    /// Sends without waiting at all; refuses when the mailbox is full.
    pub fn try_tell<M>(&self, msg: M) -> Result<(), MailboxError>
    where
        A: Handler<M>,
        M: Message,
    {
        let envelope: Box<dyn Envelope<A>> = Box::new(MessageEnvelope { msg, reply: None });
        self.tx.try_send(envelope).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => MailboxError::Full {
                actor: self.name.clone(),
                capacity: self.tx.max_capacity(),
            },
            mpsc::error::TrySendError::Closed(_) => self.closed(),
        })
    }

    /// Sends and waits for the reply; `timeout` covers waiting for room and for the answer.
    pub async fn ask<M>(&self, msg: M, timeout: Duration) -> Result<M::Reply, AskError>
    where
        A: Handler<M>,
        M: Message,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let envelope: Box<dyn Envelope<A>> = Box::new(MessageEnvelope {
            msg,
            reply: Some(reply_tx),
        });
        let exchange = async {
            self.tx.send(envelope).await.map_err(|_| AskError::Closed {
                actor: self.name.clone(),
            })?;
            reply_rx.await.map_err(|_| AskError::Dropped {
                actor: self.name.clone(),
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(AskError::Timeout {
                actor: self.name.clone(),
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }

    fn closed(&self) -> MailboxError {
        MailboxError::Closed {
            actor: self.name.clone(),
        }
    }
}

/// Identifies a timer so it can be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerId(u64);

/// Bound on live timers per actor: a runaway `notify_later` loop fails loudly instead of
/// growing without limit.
pub const MAX_TIMERS_PER_ACTOR: usize = 4096;

/// How the current handler asked the actor to end.
#[derive(Debug)]
pub(crate) enum StopRequest {
    Stop,
    Fail(String),
}

/// What an actor sees of itself and its node while it handles a message.
pub struct Context<A: Actor> {
    weak: mpsc::WeakSender<Box<dyn Envelope<A>>>,
    name: Arc<str>,
    node: Node,
    stop: Option<StopRequest>,
    timers: BTreeMap<TimerId, JoinHandle<()>>,
    next_timer: u64,
}

impl<A: Actor> Context<A> {
    pub(crate) fn new(
        weak: mpsc::WeakSender<Box<dyn Envelope<A>>>,
        name: Arc<str>,
        node: Node,
    ) -> Self {
        Context {
            weak,
            name,
            node,
            stop: None,
            timers: BTreeMap::new(),
            next_timer: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node this actor runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// This actor's own address, while anyone else still holds one.
    pub fn addr(&self) -> Option<Addr<A>> {
        self.weak
            .upgrade()
            .map(|tx| Addr::new(tx, self.name.clone()))
    }

    /// Stops the actor after this message; it is not restarted.
    pub fn stop(&mut self) {
        self.stop.get_or_insert(StopRequest::Stop);
    }

    /// Fails the actor after this message; its supervisor restarts it from its factory.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.stop = Some(StopRequest::Fail(reason.into()));
    }

    pub(crate) fn take_stop(&mut self) -> Option<StopRequest> {
        self.stop.take()
    }

    /// Delivers `msg` to this actor after `delay`.
    pub fn notify_later<M>(&mut self, delay: Duration, msg: M) -> TimerId
    where
        A: Handler<M>,
        M: Message,
    {
        let weak = self.weak.clone();
        let name = self.name.clone();
        self.add_timer(async move {
            tokio::time::sleep(delay).await;
            if let Some(tx) = weak.upgrade() {
                let _ = Addr::new(tx, name).tell(msg).await;
            }
        })
    }

    /// Delivers a clone of `msg` every `period`, the first after one period.
    pub fn notify_interval<M>(&mut self, period: Duration, msg: M) -> TimerId
    where
        A: Handler<M>,
        M: Message + Clone,
    {
        assert!(!period.is_zero(), "a timer period must be positive");
        let weak = self.weak.clone();
        let name = self.name.clone();
        self.add_timer(async move {
            let start = tokio::time::Instant::now() + period;
            let mut ticks = tokio::time::interval_at(start, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(tx) = weak.upgrade() else { return };
                // A full mailbox delays the next tick: the timer never piles up messages.
                if Addr::new(tx, name.clone()).tell(msg.clone()).await.is_err() {
                    return;
                }
            }
        })
    }

    pub fn cancel_timer(&mut self, id: TimerId) {
        if let Some(handle) = self.timers.remove(&id) {
            handle.abort();
        }
    }

    fn add_timer(&mut self, task: impl Future<Output = ()> + Send + 'static) -> TimerId {
        if self.timers.len() >= MAX_TIMERS_PER_ACTOR {
            self.timers.retain(|_, handle| !handle.is_finished());
        }
        assert!(
            self.timers.len() < MAX_TIMERS_PER_ACTOR,
            "actor {} holds {MAX_TIMERS_PER_ACTOR} live timers",
            self.name
        );
        let id = TimerId(self.next_timer);
        self.next_timer += 1;
        self.timers.insert(id, tokio::spawn(task));
        id
    }

    pub(crate) fn cancel_all_timers(&mut self) {
        for (_, handle) in std::mem::take(&mut self.timers) {
            handle.abort();
        }
    }
}

impl<A: Actor> Drop for Context<A> {
    fn drop(&mut self) {
        self.cancel_all_timers();
    }
}
