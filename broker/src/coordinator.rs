//! The one shard runtime under every coordinator, in the shape of Kafka's
//! `coordinator-common`: a shard per partition of an internal topic, each an actor that
//! loads its state from that partition and then handles every input to it, one at a
//! time, in mailbox order. Jobs write to the partition before they answer, so what a
//! shard acknowledges survives a restart. The group coordinator runs on it
//! ([`crate::group::coordinator`]); a transaction coordinator will too. The controller is
//! one shard over the metadata log.
//!
//! A shard whose job panics is restarted by its supervisor and loads its state again from
//! its partition; requests it had parked see their answer dropped and retry. A shard
//! that keeps failing stops alone, and its jobs answer [`ShardUnavailable`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::time::Duration;

use runnel_actors::{Actor, ActorError, Addr, Context, Handler, Message, Node, RestartPolicy};
use tokio::sync::oneshot;

/// Inputs waiting for one shard; a full mailbox makes the next request wait.
pub const SHARD_MAILBOX_CAPACITY: usize = 4096;
/// A shard failing this often within a minute stops for good.
const SHARD_RESTART_POLICY: RestartPolicy = RestartPolicy {
    max_restarts: 5,
    window: Duration::from_secs(60),
    initial_backoff: Duration::from_millis(10),
    max_backoff: Duration::from_secs(1),
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one shard owns, and how it is rebuilt from its partition.
pub trait ShardState: Sized + Send + 'static {
    /// What jobs and loading see besides the shard (the broker).
    type Context: Send + Sync + 'static;

    /// Builds shard `index`'s state from its partition: at start and after a failure.
    fn load(
        context: &Self::Context,
        index: i32,
    ) -> impl Future<Output = Result<Self, String>> + Send;
}

/// The shard could not run a job: it failed in the middle of it, or stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("coordinator shard {index} is not available; retry, it reloads from its partition")]
pub struct ShardUnavailable {
    pub index: i32,
}

type Job<S> =
    Box<dyn for<'a> FnOnce(&'a <S as ShardState>::Context, &'a mut S) -> BoxFuture<'a, ()> + Send>;

struct Run<S: ShardState>(Job<S>);

impl<S: ShardState> Message for Run<S> {
    type Reply = ();
}

struct ShardActor<S: ShardState> {
    index: i32,
    context: Weak<S::Context>,
    /// Set by `started`; every job runs after it.
    state: Option<S>,
    /// Fault injection: the chance that a job panics the shard before it runs.
    crash_probability: f64,
}

impl<S: ShardState> Actor for ShardActor<S> {
    async fn started(&mut self, _ctx: &mut Context<Self>) -> Result<(), ActorError> {
        if self.state.is_some() {
            // Handed over already loaded (see `ShardRuntime::start_loaded`).
            return Ok(());
        }
        let context = self
            .context
            .upgrade()
            .ok_or_else(|| ActorError::new("the broker is gone"))?;
        let state = S::load(&context, self.index)
            .await
            .map_err(|e| ActorError::new(format!("loading shard {} failed: {e}", self.index)))?;
        self.state = Some(state);
        Ok(())
    }
}

impl<S: ShardState> Handler<Run<S>> for ShardActor<S> {
    async fn handle(&mut self, Run(job): Run<S>, ctx: &mut Context<Self>) {
        let Some(context) = self.context.upgrade() else {
            ctx.stop();
            return;
        };
        let state = self.state.as_mut().expect("started loads the state first");
        if crate::faults::should_crash(self.crash_probability) {
            panic!(
                "coordinator shard {} crashed by fault injection",
                self.index
            );
        }
        job(&context, state).await;
    }
}

/// The shards of one coordinator.
pub struct ShardRuntime<S: ShardState> {
    shards: Vec<Addr<ShardActor<S>>>,
}

impl<S: ShardState> ShardRuntime<S> {
    /// Starts `partitions` shards named `{name}-{index}` on `node`; each loads its state
    /// before its first job. `crash_probability` is a fault-injection knob (0 off).
    pub fn start(
        node: &Node,
        name: &str,
        partitions: i32,
        context: Weak<S::Context>,
        crash_probability: f64,
    ) -> Self {
        let loaded = (0..partitions).map(|_| None).collect();
        Self::start_loaded(node, name, context, crash_probability, loaded)
    }

    /// [`ShardRuntime::start`] with one shard per entry of `loaded`; a shard given its
    /// state starts from it (its owner loaded it already), and loads only after a failure.
    pub fn start_loaded(
        node: &Node,
        name: &str,
        context: Weak<S::Context>,
        crash_probability: f64,
        loaded: Vec<Option<S>>,
    ) -> Self {
        assert!(!loaded.is_empty(), "a coordinator has at least one shard");
        let shards = loaded
            .into_iter()
            .enumerate()
            .map(|(index, first)| {
                let index = i32::try_from(index).expect("shards are counted in an i32");
                let context = context.clone();
                let mut first = first;
                node.spawn_or_give_up(
                    format!("{name}-{index}"),
                    SHARD_MAILBOX_CAPACITY,
                    SHARD_RESTART_POLICY,
                    move || ShardActor::<S> {
                        index,
                        context: context.clone(),
                        state: first.take(),
                        crash_probability,
                    },
                    move |error| {
                        tracing::error!(shard = index, %error, "coordinator shard stopped; its groups answer NOT_COORDINATOR until the broker restarts");
                    },
                )
            })
            .collect();
        ShardRuntime { shards }
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Runs `job` on shard `index`, after every input queued before it, and answers what
    /// it returns.
    pub async fn run<R, F>(&self, index: i32, job: F) -> Result<R, ShardUnavailable>
    where
        R: Send + 'static,
        F: for<'a> FnOnce(&'a S::Context, &'a mut S) -> BoxFuture<'a, R> + Send + 'static,
    {
        let shard = usize::try_from(index)
            .ok()
            .and_then(|i| self.shards.get(i))
            .ok_or(ShardUnavailable { index })?;
        let (tx, rx) = oneshot::channel();
        let job: Job<S> = Box::new(move |context, state| {
            Box::pin(async move {
                // The asker may have gone; the job's effects stand either way.
                let _ = tx.send(job(context, state).await);
            })
        });
        shard
            .tell(Run(job))
            .await
            .map_err(|_| ShardUnavailable { index })?;
        rx.await.map_err(|_| ShardUnavailable { index })
    }
}
