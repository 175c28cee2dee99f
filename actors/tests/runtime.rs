//! The actor runtime on real tokio: messages, backpressure, timers, supervision, shutdown.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runnel_actors::{
    Actor, ActorError, AskError, Context, Handler, MailboxError, Message, Node, RestartPolicy,
    ShutdownReason,
};
use tokio::sync::Notify;

const PATIENCE: Duration = Duration::from_secs(10);

/// Counts messages; can be told to block, panic or fail.
struct Probe {
    count: u64,
    starts: Arc<AtomicU32>,
    stops: Arc<AtomicU32>,
    ticks: Arc<AtomicUsize>,
    gate: Arc<Notify>,
}

impl Actor for Probe {
    async fn started(&mut self, _ctx: &mut Context<Self>) -> Result<(), ActorError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn stopped(&mut self) {
        self.stops.fetch_add(1, Ordering::SeqCst);
    }
}

struct Add(u64);
impl Message for Add {
    type Reply = u64;
}
impl Handler<Add> for Probe {
    async fn handle(&mut self, msg: Add, _ctx: &mut Context<Self>) -> u64 {
        self.count += msg.0;
        self.count
    }
}

/// Blocks the actor until the gate opens.
struct Block;
impl Message for Block {
    type Reply = ();
}
impl Handler<Block> for Probe {
    async fn handle(&mut self, _msg: Block, _ctx: &mut Context<Self>) {
        self.gate.notified().await;
    }
}

struct Panic;
impl Message for Panic {
    type Reply = ();
}
impl Handler<Panic> for Probe {
    async fn handle(&mut self, _msg: Panic, _ctx: &mut Context<Self>) {
        panic!("probe told to panic");
    }
}

struct Fail;
impl Message for Fail {
    type Reply = ();
}
impl Handler<Fail> for Probe {
    async fn handle(&mut self, _msg: Fail, ctx: &mut Context<Self>) {
        ctx.fail("probe told to fail");
    }
}

struct Stop;
impl Message for Stop {
    type Reply = ();
}
impl Handler<Stop> for Probe {
    async fn handle(&mut self, _msg: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[derive(Clone)]
struct Tick;
impl Message for Tick {
    type Reply = ();
}
impl Handler<Tick> for Probe {
    async fn handle(&mut self, _msg: Tick, _ctx: &mut Context<Self>) {
        self.ticks.fetch_add(1, Ordering::SeqCst);
    }
}

enum Schedule {
    Later(Duration),
    LaterThenCancel(Duration),
    Every(Duration),
}
impl Message for Schedule {
    type Reply = ();
}
impl Handler<Schedule> for Probe {
    async fn handle(&mut self, msg: Schedule, ctx: &mut Context<Self>) {
        match msg {
            Schedule::Later(d) => {
                ctx.notify_later(d, Tick);
            }
            Schedule::LaterThenCancel(d) => {
                let id = ctx.notify_later(d, Tick);
                ctx.cancel_timer(id);
            }
            Schedule::Every(d) => {
                ctx.notify_interval(d, Tick);
            }
        }
    }
}

#[derive(Default, Clone)]
struct Probes {
    starts: Arc<AtomicU32>,
    stops: Arc<AtomicU32>,
    ticks: Arc<AtomicUsize>,
    gate: Arc<Notify>,
}

impl Probes {
    fn spawn(
        &self,
        node: &Node,
        capacity: usize,
        policy: RestartPolicy,
    ) -> runnel_actors::Addr<Probe> {
        let p = self.clone();
        node.spawn("probe", capacity, policy, move || p.probe())
    }

    /// A fresh probe that reports to these counters.
    fn probe(&self) -> Probe {
        Probe {
            count: 0,
            starts: self.starts.clone(),
            stops: self.stops.clone(),
            ticks: self.ticks.clone(),
            gate: self.gate.clone(),
        }
    }
}

/// Waits for `node` to stop because an actor failed, and says which, how often and why.
async fn failure(node: &Node) -> (String, u32, String) {
    let reason = tokio::time::timeout(PATIENCE, node.stopped())
        .await
        .expect("node stops");
    match reason {
        ShutdownReason::ActorFailed {
            actor,
            failures,
            error,
        } => (actor, failures, error),
        other => panic!("unexpected reason {other:?}"),
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn ask_and_tell_reach_the_actor_in_order() {
    let node = Node::new("test");
    let addr = Probes::default().spawn(&node, 16, RestartPolicy::default());
    addr.tell(Add(2)).await.expect("tell");
    addr.try_tell(Add(3)).expect("try_tell");
    assert_eq!(addr.ask(Add(5), PATIENCE).await.expect("ask"), 10);
}

#[tokio::test]
async fn a_full_mailbox_pushes_back() {
    let node = Node::new("test");
    let probes = Probes::default();
    let addr = probes.spawn(&node, 1, RestartPolicy::default());
    addr.tell(Block)
        .await
        .expect("the actor takes Block and waits");
    eventually("the actor to take Block", || addr.try_tell(Add(1)).is_ok()).await;
    // The actor is blocked and its one slot is taken.
    assert!(matches!(
        addr.try_tell(Add(1)),
        Err(MailboxError::Full { capacity: 1, .. })
    ));
    let tell = addr.tell(Add(1));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), tell)
            .await
            .is_err(),
        "tell waits while full"
    );
    assert!(matches!(
        addr.ask(Add(1), Duration::from_millis(50)).await,
        Err(AskError::Timeout { timeout_ms: 50, .. })
    ));
    probes.gate.notify_one();
    assert_eq!(addr.ask(Add(0), PATIENCE).await.expect("drains"), 1);
}

#[tokio::test]
async fn timers_fire_repeat_and_cancel() {
    let node = Node::new("test");
    let probes = Probes::default();
    let addr = probes.spawn(&node, 16, RestartPolicy::default());

    addr.ask(
        Schedule::LaterThenCancel(Duration::from_millis(20)),
        PATIENCE,
    )
    .await
    .expect("ask");
    addr.ask(Schedule::Later(Duration::from_millis(20)), PATIENCE)
        .await
        .expect("ask");
    eventually("the one-shot timer", || {
        probes.ticks.load(Ordering::SeqCst) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        probes.ticks.load(Ordering::SeqCst),
        1,
        "the cancelled timer never fires"
    );

    addr.ask(Schedule::Every(Duration::from_millis(5)), PATIENCE)
        .await
        .expect("ask");
    eventually("the interval to repeat", || {
        probes.ticks.load(Ordering::SeqCst) >= 4
    })
    .await;

    addr.ask(Stop, PATIENCE).await.expect("ask");
    eventually("the stop", || probes.stops.load(Ordering::SeqCst) == 1).await;
    let after_stop = probes.ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        probes.ticks.load(Ordering::SeqCst),
        after_stop,
        "a stopped actor's timers are cancelled"
    );
    assert!(!addr.is_alive());
    assert!(matches!(
        addr.tell(Add(1)).await,
        Err(MailboxError::Closed { .. })
    ));
}

#[tokio::test]
async fn a_panicking_actor_restarts_with_fresh_state_at_the_same_address() {
    let node = Node::new("test");
    let probes = Probes::default();
    let addr = probes.spawn(&node, 16, RestartPolicy::default());
    assert_eq!(addr.ask(Add(41), PATIENCE).await.expect("ask"), 41);
    assert!(matches!(
        addr.ask(Panic, PATIENCE).await,
        Err(AskError::Dropped { .. })
    ));
    assert_eq!(
        addr.ask(Add(1), PATIENCE).await.expect("restarted"),
        1,
        "state is rebuilt by the factory"
    );
    addr.ask(Fail, PATIENCE)
        .await
        .expect("fail replies, then the actor restarts");
    assert_eq!(addr.ask(Add(2), PATIENCE).await.expect("restarted"), 2);
    assert_eq!(probes.starts.load(Ordering::SeqCst), 3);
    assert_eq!(
        probes.stops.load(Ordering::SeqCst),
        2,
        "stopped runs after each failure"
    );
    assert!(!node.is_shutting_down());
}

#[tokio::test]
async fn failing_past_the_limit_shuts_the_node_down_and_says_why() {
    let node = Node::new("test");
    let probes = Probes::default();
    let policy = RestartPolicy {
        max_restarts: 2,
        window: Duration::from_secs(60),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
    };
    let addr = probes.spawn(&node, 16, policy);
    for _ in 0..3 {
        let _ = addr.ask(Panic, PATIENCE).await;
    }
    let (actor, failures, error) = failure(&node).await;
    assert_eq!(actor, "probe");
    assert_eq!(failures, 3);
    assert!(error.contains("probe told to panic"), "{error}");
    assert_eq!(probes.starts.load(Ordering::SeqCst), 3);
    assert!(matches!(
        addr.ask(Add(1), PATIENCE).await,
        Err(AskError::Closed { .. })
    ));
}

#[tokio::test]
async fn shutdown_stops_every_actor_and_task_gracefully() {
    let node = Node::new("test");
    let probes = Probes::default();
    let a = probes.spawn(&node, 16, RestartPolicy::default());
    let b = probes.spawn(&node, 16, RestartPolicy::default());
    let task_ended = Arc::new(AtomicU32::new(0));
    let flag = task_ended.clone();
    node.spawn_task(async move {
        struct OnDrop(Arc<AtomicU32>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let _guard = OnDrop(flag);
        std::future::pending::<()>().await;
    });
    a.ask(Add(1), PATIENCE).await.expect("ask");
    b.ask(Add(1), PATIENCE).await.expect("ask");
    node.shutdown(ShutdownReason::Requested);
    node.shutdown(ShutdownReason::ActorFailed {
        actor: "late".into(),
        failures: 1,
        error: "ignored".into(),
    });
    let reason = tokio::time::timeout(PATIENCE, node.stopped())
        .await
        .expect("stops");
    assert_eq!(reason, ShutdownReason::Requested, "the first reason wins");
    assert_eq!(probes.stops.load(Ordering::SeqCst), 2);
    assert_eq!(task_ended.load(Ordering::SeqCst), 1);
    assert!(!a.is_alive() && !b.is_alive());
}

#[tokio::test]
async fn an_actor_stops_when_its_last_address_is_dropped() {
    let node = Node::new("test");
    let probes = Probes::default();
    let addr = probes.spawn(&node, 4, RestartPolicy::default());
    addr.ask(Add(1), PATIENCE).await.expect("ask");
    drop(addr);
    eventually("the actor to stop", || {
        probes.stops.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(probes.starts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_supervised_task_restarts_after_a_panic_and_gives_up_past_its_policy() {
    let node = Node::new("test");
    let lives = Arc::new(AtomicU32::new(0));
    let counted = lives.clone();
    let policy = RestartPolicy {
        max_restarts: 3,
        window: Duration::from_secs(60),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
    };
    // Every life panics: three restarts, then the fourth failure shuts the node down.
    node.spawn_supervised("listener", policy, move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            panic!("accept loop told to panic");
        }
    });
    let (actor, failures, error) = failure(&node).await;
    assert_eq!((actor.as_str(), failures), ("listener", 4));
    assert!(error.contains("accept loop told to panic"), "{error}");
    assert_eq!(lives.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_supervised_task_lives_on_after_one_panic_and_ends_with_the_node() {
    let node = Node::new("test");
    let lives = Arc::new(AtomicU32::new(0));
    let counted = lives.clone();
    node.spawn_supervised("listener", RestartPolicy::default(), move || {
        let life = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if life == 0 {
                panic!("first life panics");
            }
            std::future::pending::<()>().await;
        }
    });
    eventually("the second life", || lives.load(Ordering::SeqCst) == 2).await;
    assert!(!node.is_shutting_down());
    node.shutdown(ShutdownReason::Requested);
    let reason = tokio::time::timeout(PATIENCE, node.stopped())
        .await
        .expect("the pending task is dropped at shutdown");
    assert_eq!(reason, ShutdownReason::Requested);
    assert_eq!(lives.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_actor_that_may_fail_alone_gives_up_without_stopping_the_node() {
    let node = Node::new("test");
    let probes = Probes::default();
    let policy = RestartPolicy {
        max_restarts: 1,
        window: Duration::from_secs(60),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
    };
    let (told, heard) = tokio::sync::oneshot::channel();
    let p = probes.clone();
    let addr = node.spawn_or_give_up(
        "alone",
        16,
        policy,
        move || p.probe(),
        move |error| {
            let _ = told.send(error);
        },
    );
    let _ = addr.ask(Panic, PATIENCE).await;
    let _ = addr.ask(Panic, PATIENCE).await;
    let error = tokio::time::timeout(PATIENCE, heard)
        .await
        .expect("gives up in time")
        .expect("hears the last error");
    assert!(error.contains("probe told to panic"), "{error}");
    assert!(!node.is_shutting_down(), "the node goes on");
    assert!(matches!(
        addr.ask(Add(1), PATIENCE).await,
        Err(AskError::Closed { .. })
    ));
    assert_eq!(probes.starts.load(Ordering::SeqCst), 2);
}
