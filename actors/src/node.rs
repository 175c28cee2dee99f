//! A node: the actors and tasks of one process (or one simulated machine), their
//! supervision, and a shutdown that every one of them hears.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::actor::{Actor, Addr, Context, MailboxReceiver, StopRequest};

/// Bound on actors and background tasks one node tracks.
pub const MAX_TASKS_PER_NODE: usize = 1 << 20;

/// How a supervisor treats an actor that fails (a handler panics, `started` errors, or
/// the actor calls `Context::fail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// More failures than this within `window` shut the node down.
    pub max_restarts: u32,
    pub window: Duration,
    /// Wait before the first restart; doubles with each failure in the window.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 5,
            window: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RestartPolicy {
    /// The first failure shuts the node down.
    pub fn never() -> Self {
        RestartPolicy {
            max_restarts: 0,
            ..Default::default()
        }
    }
}

/// Why a node stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownReason {
    /// Someone asked (Ctrl-C, a test, the simulator).
    Requested,
    /// An actor kept failing past its restart policy.
    ActorFailed {
        actor: String,
        failures: u32,
        error: String,
    },
}

impl std::fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShutdownReason::Requested => write!(f, "shutdown requested"),
            ShutdownReason::ActorFailed {
                actor,
                failures,
                error,
            } => write!(
                f,
                "actor {actor} failed {failures} times within its restart window; last error: {error}"
            ),
        }
    }
}

struct NodeInner {
    name: String,
    shutdown: watch::Sender<Option<ShutdownReason>>,
    tasks: Mutex<Tasks>,
}

/// Handles of running tasks; finished ones are pruned whenever the list doubles.
#[derive(Default)]
struct Tasks {
    handles: Vec<JoinHandle<()>>,
    prune_at_len: usize,
}

/// A handle to a node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.inner.name)
    }
}

impl Node {
    pub fn new(name: impl Into<String>) -> Self {
        let (shutdown, _) = watch::channel(None);
        Node {
            inner: Arc::new(NodeInner {
                name: name.into(),
                shutdown,
                tasks: Mutex::new(Tasks::default()),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Starts an actor under supervision. `mailbox_capacity` bounds its queue; `factory`
    /// builds fresh state for the first start and for every restart, while the mailbox
    /// and every `Addr` stay the same.
    pub fn spawn<A, F>(
        &self,
        name: impl Into<String>,
        mailbox_capacity: usize,
        policy: RestartPolicy,
        factory: F,
    ) -> Addr<A>
    where
        A: Actor,
        F: FnMut() -> A + Send + 'static,
    {
        self.spawn_with_give_up(name, mailbox_capacity, policy, factory, None)
    }

    /// [`Node::spawn`] for an actor whose failure is its own: past its policy it stops for
    /// good and `give_up` hears its last error, while the node goes on (a partition that
    /// keeps failing goes offline alone).
    pub fn spawn_or_give_up<A, F>(
        &self,
        name: impl Into<String>,
        mailbox_capacity: usize,
        policy: RestartPolicy,
        factory: F,
        give_up: impl FnOnce(String) + Send + 'static,
    ) -> Addr<A>
    where
        A: Actor,
        F: FnMut() -> A + Send + 'static,
    {
        self.spawn_with_give_up(
            name,
            mailbox_capacity,
            policy,
            factory,
            Some(Box::new(give_up)),
        )
    }

    fn spawn_with_give_up<A, F>(
        &self,
        name: impl Into<String>,
        mailbox_capacity: usize,
        policy: RestartPolicy,
        factory: F,
        give_up: Option<GiveUp>,
    ) -> Addr<A>
    where
        A: Actor,
        F: FnMut() -> A + Send + 'static,
    {
        assert!(mailbox_capacity > 0, "a mailbox needs room for one message");
        let name: Arc<str> = Arc::from(name.into());
        let (tx, rx) = mpsc::channel(mailbox_capacity);
        let weak = tx.downgrade();
        let supervisor = Supervisor {
            name: name.clone(),
            node: self.clone(),
            factory,
            failures: Failures::new(policy),
            give_up,
        };
        self.track(tokio::spawn(supervisor.run(rx, weak)));
        Addr::new(tx, name)
    }

    /// Runs a long-lived task under supervision, as an actor without a mailbox (a listener's
    /// accept loop): a panic restarts it from `factory` with the policy's backoff, failing
    /// past the policy shuts the node down, and the node's shutdown drops it. A task that
    /// returns is done and not restarted.
    pub fn spawn_supervised<F, Fut>(
        &self,
        name: impl Into<String>,
        policy: RestartPolicy,
        mut factory: F,
    ) where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name: String = name.into();
        let node = self.clone();
        let mut shutdown = self.shutdown_signal();
        self.track(tokio::spawn(async move {
            let mut failures = Failures::new(policy);
            loop {
                let life = AssertUnwindSafe(factory()).catch_unwind();
                let panic = tokio::select! {
                    biased;
                    _ = shutdown.wait_for(Option::is_some) => return,
                    ended = life => match ended {
                        Ok(()) => return,
                        Err(panic) => panic_message(&*panic),
                    },
                };
                match failures.record() {
                    Err(count) => return escalate(&node, &name, count, panic),
                    Ok(delay) => {
                        let count = failures.times.len();
                        if !backoff(&mut shutdown, &name, count, &panic, delay).await {
                            return;
                        }
                    }
                }
            }
        }));
    }

    /// Runs a background task that is dropped when the node shuts down.
    pub fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut shutdown = self.shutdown_signal();
        self.track(tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(Option::is_some) => {}
                _ = task => {}
            }
        }));
    }

    fn track(&self, handle: JoinHandle<()>) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.handles.len() >= tasks.prune_at_len {
            tasks.handles.retain(|t| !t.is_finished());
            tasks.prune_at_len = (tasks.handles.len() * 2).max(1024);
        }
        assert!(
            tasks.handles.len() < MAX_TASKS_PER_NODE,
            "node {} runs {MAX_TASKS_PER_NODE} tasks",
            self.inner.name
        );
        tasks.handles.push(handle);
    }

    /// Asks every actor and task to stop. The first reason given is the one kept.
    pub fn shutdown(&self, reason: ShutdownReason) {
        self.inner.shutdown.send_if_modified(|current| {
            if current.is_none() {
                tracing::info!(node = %self.inner.name, %reason, "node shutting down");
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.borrow().is_some()
    }

    /// A receiver that sees `Some(reason)` once the node shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<Option<ShutdownReason>> {
        self.inner.shutdown.subscribe()
    }

    /// Waits for a shutdown, then for every actor to run its `stopped` hook and every
    /// task to end, and returns the reason.
    pub async fn stopped(&self) -> ShutdownReason {
        let mut signal = self.shutdown_signal();
        let reason = signal
            .wait_for(Option::is_some)
            .await
            .expect("the node owns the sender, so the channel outlives this borrow")
            .clone()
            .expect("waited for Some");
        loop {
            let tasks = std::mem::take(
                &mut self
                    .inner
                    .tasks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .handles,
            );
            if tasks.is_empty() {
                break;
            }
            for task in tasks {
                // A task that panicked outside any handler has nothing left to clean up.
                let _ = task.await;
            }
        }
        reason
    }
}

/// Why one life of an actor ended.
enum Exit {
    Stopped,
    MailboxClosed,
    Shutdown,
    Failed(String),
}

/// What an actor that is allowed to fail alone does when it gives up.
type GiveUp = Box<dyn FnOnce(String) + Send>;

struct Supervisor<F> {
    name: Arc<str>,
    node: Node,
    factory: F,
    failures: Failures,
    /// `None`: giving up shuts the node down.
    give_up: Option<GiveUp>,
}

/// One supervisor's recent failures and what its policy says about the next one.
struct Failures {
    policy: RestartPolicy,
    /// When recent failures happened, oldest first; only those within the window count.
    times: VecDeque<Instant>,
}

impl Failures {
    fn new(policy: RestartPolicy) -> Self {
        Failures {
            policy,
            times: VecDeque::new(),
        }
    }

    /// Counts a failure now: `Ok(backoff)` to restart after, or `Err(failures)` when the
    /// policy's limit is passed and the node must shut down.
    fn record(&mut self) -> Result<Duration, u32> {
        let now = Instant::now();
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.window)
        {
            self.times.pop_front();
        }
        self.times.push_back(now);
        let failures = self.times.len() as u32;
        if failures > self.policy.max_restarts {
            return Err(failures);
        }
        Ok(self
            .policy
            .initial_backoff
            .saturating_mul(1 << (failures - 1).min(16))
            .min(self.policy.max_backoff))
    }
}

/// Says why the supervised `name` gave up and shuts the node down with that reason.
fn escalate(node: &Node, name: &str, failures: u32, error: String) {
    tracing::error!(actor = %name, failures, %error, "failed past its restart limit");
    node.shutdown(ShutdownReason::ActorFailed {
        actor: name.to_string(),
        failures,
        error,
    });
}

/// Waits out a restart backoff; false if the node shut down meanwhile.
async fn backoff(
    shutdown: &mut watch::Receiver<Option<ShutdownReason>>,
    name: &str,
    failures: usize,
    error: &str,
    backoff: Duration,
) -> bool {
    tracing::warn!(actor = %name, failures, %error, backoff_ms = backoff.as_millis() as u64, "failed; restarting");
    tokio::select! {
        biased;
        _ = shutdown.wait_for(Option::is_some) => false,
        _ = tokio::time::sleep(backoff) => true,
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

impl<F> Supervisor<F> {
    async fn run<A>(
        mut self,
        mut rx: MailboxReceiver<A>,
        weak: mpsc::WeakSender<Box<dyn crate::actor::Envelope<A>>>,
    ) where
        A: Actor,
        F: FnMut() -> A + Send + 'static,
    {
        let mut shutdown = self.node.shutdown_signal();
        loop {
            let mut actor = (self.factory)();
            let mut ctx = Context::new(weak.clone(), self.name.clone(), self.node.clone());
            let exit = Self::live(&mut actor, &mut ctx, &mut rx, &mut shutdown).await;
            ctx.cancel_all_timers();
            if let Err(panic) = AssertUnwindSafe(actor.stopped()).catch_unwind().await {
                tracing::warn!(actor = %self.name, error = panic_message(&*panic), "stopped hook failed");
            }
            let Exit::Failed(error) = exit else { break };
            match self.failures.record() {
                Err(failures) => {
                    match self.give_up.take() {
                        Some(give_up) => {
                            tracing::error!(actor = %self.name, failures, %error, "failed past its restart limit; stopped for good");
                            give_up(error);
                        }
                        None => escalate(&self.node, &self.name, failures, error),
                    }
                    break;
                }
                Ok(delay) => {
                    let failures = self.failures.times.len();
                    if !backoff(&mut shutdown, &self.name, failures, &error, delay).await {
                        break;
                    }
                }
            }
        }
        // Refuse new messages; queued asks see their reply sender dropped.
        rx.close();
        while rx.try_recv().is_ok() {}
    }

    async fn live<A: Actor>(
        actor: &mut A,
        ctx: &mut Context<A>,
        rx: &mut MailboxReceiver<A>,
        shutdown: &mut watch::Receiver<Option<ShutdownReason>>,
    ) -> Exit {
        match AssertUnwindSafe(actor.started(ctx)).catch_unwind().await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Exit::Failed(format!("start failed: {e}")),
            Err(panic) => return Exit::Failed(panic_message(&*panic)),
        }
        if let Some(exit) = Self::requested_exit(ctx) {
            return exit;
        }
        loop {
            let envelope = tokio::select! {
                biased;
                _ = shutdown.wait_for(Option::is_some) => return Exit::Shutdown,
                envelope = rx.recv() => match envelope {
                    Some(envelope) => envelope,
                    None => return Exit::MailboxClosed,
                },
            };
            if let Err(panic) = AssertUnwindSafe(envelope.deliver(actor, ctx))
                .catch_unwind()
                .await
            {
                return Exit::Failed(panic_message(&*panic));
            }
            if let Some(exit) = Self::requested_exit(ctx) {
                return exit;
            }
        }
    }

    fn requested_exit<A: Actor>(ctx: &mut Context<A>) -> Option<Exit> {
        ctx.take_stop().map(|request| match request {
            StopRequest::Stop => Exit::Stopped,
            StopRequest::Fail(reason) => Exit::Failed(reason),
        })
    }
}
