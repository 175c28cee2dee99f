//! Task actors: each source or sink task runs in its own supervised actor, which moves
//! records between the task and Kafka through our client and commits offsets every
//! `offset.flush.interval.ms` and when it stops.
//!
//! An error the task returns (or a conversion or delivery failure) makes the task FAILED
//! with its trace and stops the actor; a panic is caught by the actor's supervisor, which
//! gives up at once (`RestartPolicy::never`) and reports FAILED too. Either way only this
//! task stops: the worker lives on and can restart it.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use runnel_actors::{Actor, ActorError, Addr, Context, Handler, Message, RestartPolicy};
use runnel_client::kafka::records::parse_compression;
use runnel_client::kafka::{
    Acks, ClientConfig, ConsumerConfig, ConsumerRecord, DeliveryFuture, GroupConsumer,
    GroupConsumerConfig, GroupProtocol, OffsetReset, Producer, ProducerConfig, ProducerRecord,
    TopicPartition,
};

use crate::api::{
    AnyConnector, PluginDesc, SinkTask, SinkTaskContext, SourceTask, SourceTaskContext,
    SOURCE_IDLE_BACKOFF_MS,
};
use crate::config::{get_bool, get_int, get_list, with_prefix, Config};
use crate::converter::{converter_for, Converter};
use crate::data::{ConnectRecord, Header, JsonMap, SinkRecord};
use crate::entities::TaskId;
use crate::error::ConnectError;
use crate::offsets::ConnectorOffsets;
use crate::settings::Shared;
use crate::transforms::TransformChain;

/// Connector and task states, by Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Unassigned,
    Running,
    Paused,
    Stopped,
    Failed,
    Restarting,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Unassigned => "UNASSIGNED",
            State::Running => "RUNNING",
            State::Paused => "PAUSED",
            State::Stopped => "STOPPED",
            State::Failed => "FAILED",
            State::Restarting => "RESTARTING",
        }
    }
}

/// A task's status as the task reports it; ignored when from an older incarnation.
pub(crate) struct TaskStatusChanged {
    pub id: TaskId,
    pub generation: u64,
    pub state: State,
    pub trace: Option<String>,
}

/// Where tasks report their status and the topics they use (Kafka's
/// `TaskStatus.Listener`); the worker is one.
#[async_trait::async_trait]
pub(crate) trait TaskListener: Send + Sync + 'static {
    async fn status_changed(&self, change: TaskStatusChanged);
    async fn topic_used(&self, task: TaskId, topic: String);
}

/// Bound on a task actor's mailbox: its own poll and commit ticks plus the worker's
/// pause, resume and stop.
pub const TASK_MAILBOX: usize = 16;
/// How long one sink poll waits for records, so pause and stop are heard soon.
pub const SINK_POLL_MS: u64 = 500;

/// What the worker hands a task actor.
#[derive(Clone)]
pub(crate) struct TaskSpec {
    pub id: TaskId,
    pub generation: u64,
    pub connector_config: Config,
    pub task_config: Config,
    pub plugin: PluginDesc,
    pub start_paused: bool,
}

/// The worker's handle on a running task.
#[derive(Clone)]
pub(crate) enum TaskHandle {
    Source(Addr<SourceTaskActor>),
    Sink(Addr<SinkTaskActor>),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Poll;
impl Message for Poll {
    type Reply = ();
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct CommitTick;
impl Message for CommitTick {
    type Reply = ();
}

/// Pause (`true`) or resume (`false`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SetPaused(pub bool);
impl Message for SetPaused {
    type Reply = ();
}

/// Commit what was delivered, stop the task and the actor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StopTask;
impl Message for StopTask {
    type Reply = ();
}

impl TaskHandle {
    pub async fn set_paused(&self, paused: bool) {
        let sent = match self {
            TaskHandle::Source(a) => a.tell(SetPaused(paused)).await,
            TaskHandle::Sink(a) => a.tell(SetPaused(paused)).await,
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "task gone before pause or resume");
        }
    }

    /// Asks the task to stop and waits up to `timeout` for it.
    pub async fn stop(&self, timeout: Duration) {
        let stopped = match self {
            TaskHandle::Source(a) => a.ask(StopTask, timeout).await,
            TaskHandle::Sink(a) => a.ask(StopTask, timeout).await,
        };
        if let Err(e) = stopped {
            tracing::debug!(error = %e, "task did not stop cleanly");
        }
    }
}

/// Runs connector code, turning a panic into an error with its message.
async fn guarded<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, ConnectError>>,
) -> Result<T, ConnectError> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(ConnectError::Task(format!(
            "{what} panicked: {}",
            panic_text(&*panic)
        ))),
    }
}

pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Starts a task actor under supervision, allowed to fail alone.
pub(crate) fn spawn_task(
    shared: &Arc<Shared>,
    listener: Arc<dyn TaskListener>,
    spec: TaskSpec,
) -> TaskHandle {
    let name = format!("connect-task-{}-g{}", spec.id, spec.generation);
    let report_to = listener.clone();
    let (id, generation) = (spec.id.clone(), spec.generation);
    // A panic the actor did not catch itself still ends as FAILED with its message.
    let give_up = move |error: String| {
        let msg = TaskStatusChanged {
            id,
            generation,
            state: State::Failed,
            trace: Some(format!("runnel_connect task actor failed: {error}")),
        };
        tokio::spawn(async move {
            report_to.status_changed(msg).await;
        });
    };
    let node = shared.node.clone();
    let shared = shared.clone();
    match (spec.plugin.factory)() {
        AnyConnector::Source(_) => TaskHandle::Source(node.spawn_or_give_up(
            name,
            TASK_MAILBOX,
            RestartPolicy::never(),
            move || SourceTaskActor::new(shared.clone(), listener.clone(), spec.clone()),
            give_up,
        )),
        AnyConnector::Sink(_) => TaskHandle::Sink(node.spawn_or_give_up(
            name,
            TASK_MAILBOX,
            RestartPolicy::never(),
            move || SinkTaskActor::new(shared.clone(), listener.clone(), spec.clone()),
            give_up,
        )),
    }
}

/// A connector's key and value converters.
type Converters = (Box<dyn Converter>, Box<dyn Converter>);

/// The converters of a connector: its own `key.converter` (with its `key.converter.*`
/// settings) or else the worker's.
fn converters(shared: &Shared, connector: &Config) -> Result<Converters, ConnectError> {
    let pick = |which: &str| -> Result<Box<dyn Converter>, ConnectError> {
        let key = format!("{which}.converter");
        let prefix = format!("{key}.");
        match connector.get(&key) {
            Some(class) => converter_for(class, &with_prefix(connector, &prefix)),
            None => {
                let worker = &shared.config.properties;
                let class = shared.config.converter_class(which);
                converter_for(&class, &with_prefix(worker, &prefix))
            }
        }
    };
    Ok((pick("key")?, pick("value")?))
}

/// Kafka's error handling settings of a connector: `errors.tolerance` (`none` fails the
/// task at the first bad record; `all` skips records whose conversion or transformation
/// fails), `errors.log.enable`, and for sinks `errors.deadletterqueue.topic.name` (skipped
/// records go there as they came, with `__connect.errors.*` headers when
/// `errors.deadletterqueue.context.headers.enable` is true).
#[derive(Debug, Clone, Default)]
struct ErrorPolicy {
    tolerate_all: bool,
    log: bool,
    dead_letter_topic: Option<String>,
    context_headers: bool,
}

impl ErrorPolicy {
    fn from_config(config: &Config) -> Result<ErrorPolicy, ConnectError> {
        let tolerate_all = match config.get("errors.tolerance").map(|t| t.trim().to_ascii_lowercase()) {
            None => false,
            Some(t) if t == "none" => false,
            Some(t) if t == "all" => true,
            Some(t) => {
                return Err(ConnectError::Config(format!(
                    "Invalid value {t} for configuration errors.tolerance: String must be one of: none, all"
                )))
            }
        };
        Ok(ErrorPolicy {
            tolerate_all,
            log: get_bool(config, "errors.log.enable", false)?,
            dead_letter_topic: config
                .get("errors.deadletterqueue.topic.name")
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            context_headers: get_bool(
                config,
                "errors.deadletterqueue.context.headers.enable",
                false,
            )?,
        })
    }

    /// Whether the task goes on past `error` (the record is skipped).
    fn tolerates(&self, task: &TaskId, error: &ConnectError) -> bool {
        if !self.tolerate_all || !matches!(error, ConnectError::Data(_) | ConnectError::Config(_)) {
            return false;
        }
        if self.log {
            tracing::error!(%task, %error, "error in a record, skipped (errors.tolerance=all)");
        }
        true
    }
}

/// What both kinds of task actor share: identity, reporting and failing.
struct TaskCore {
    shared: Arc<Shared>,
    listener: Arc<dyn TaskListener>,
    spec: TaskSpec,
    paused: bool,
    poll_scheduled: bool,
    done: bool,
}

impl TaskCore {
    async fn report(&self, state: State, trace: Option<String>) {
        let msg = TaskStatusChanged {
            id: self.spec.id.clone(),
            generation: self.spec.generation,
            state,
            trace,
        };
        self.listener.status_changed(msg).await;
    }

    async fn topic_used(&self, topic: &str) {
        self.listener
            .topic_used(self.spec.id.clone(), topic.to_string())
            .await;
    }

    fn client(&self) -> ClientConfig {
        ClientConfig::new(&self.shared.config.bootstrap_servers).with_client_id(&format!(
            "connector-{}-{}",
            self.spec.id.connector, self.spec.id.task
        ))
    }
}

/// A source task: poll, convert, produce, wait for acknowledgements, then remember the
/// records' source offsets until the next commit.
pub(crate) struct SourceTaskActor {
    core: TaskCore,
    task: Option<Box<dyn SourceTask>>,
    producer: Option<Producer>,
    converters: Option<Converters>,
    transforms: TransformChain,
    errors: ErrorPolicy,
    /// Delivered but not yet committed: partition JSON text to (partition, offset).
    pending: BTreeMap<String, (JsonMap, JsonMap)>,
    topics: std::collections::BTreeSet<String>,
}

impl SourceTaskActor {
    fn new(shared: Arc<Shared>, listener: Arc<dyn TaskListener>, spec: TaskSpec) -> Self {
        SourceTaskActor {
            core: TaskCore {
                shared,
                listener,
                paused: spec.start_paused,
                spec,
                poll_scheduled: false,
                done: false,
            },
            task: None,
            producer: None,
            converters: None,
            transforms: TransformChain::default(),
            errors: ErrorPolicy::default(),
            pending: BTreeMap::new(),
            topics: Default::default(),
        }
    }

    async fn start(&mut self) -> Result<(), ConnectError> {
        let shared = self.core.shared.clone();
        let spec = &self.core.spec;
        self.converters = Some(converters(&shared, &spec.connector_config)?);
        self.transforms = TransformChain::from_config(&spec.connector_config)?;
        self.errors = ErrorPolicy::from_config(&spec.connector_config)?;
        let AnyConnector::Source(connector) = (spec.plugin.factory)() else {
            return Err(ConnectError::Task(format!(
                "{} is not a source connector",
                spec.plugin.class
            )));
        };
        let mut task = connector.create_task();
        let context = SourceTaskContext {
            offsets: Arc::new(ConnectorOffsets {
                store: shared.offsets.clone(),
                connector: spec.id.connector.clone(),
            }),
            disk: shared.disk.clone(),
        };
        let config = spec.task_config.clone();
        guarded("start", task.start(context, &config)).await?;
        self.task = Some(task);
        let producer = producer_config(self.core.client(), &shared.config.properties)?;
        self.producer = Some(Producer::new(producer).await?);
        Ok(())
    }

    /// One poll; how many records it produced.
    async fn poll_once(&mut self) -> Result<usize, ConnectError> {
        let task = self.task.as_mut().expect("started");
        let records = guarded("poll", task.poll()).await?;
        if records.is_empty() {
            return Ok(0);
        }
        let count = records.len();
        let producer = self.producer.as_ref().expect("started");
        let (key_conv, value_conv) = self.converters.as_ref().expect("started");
        let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(count);
        let mut offsets = Vec::with_capacity(count);
        for source in records {
            offsets.push((source.source_partition, source.source_offset));
            let converted = self.transforms.apply(source.record).and_then(|r| match r {
                None => Ok(None),
                Some(r) => {
                    let key = key_conv.serialize(&r.topic, r.key_schema.as_ref(), &r.key)?;
                    let value =
                        value_conv.serialize(&r.topic, r.value_schema.as_ref(), &r.value)?;
                    Ok(Some((r, key, value)))
                }
            });
            let (r, key, value) = match converted {
                Ok(Some(done)) => done,
                Ok(None) => continue,
                Err(e) if self.errors.tolerates(&self.core.spec.id, &e) => continue,
                Err(e) => return Err(e),
            };
            let out = ProducerRecord {
                topic: r.topic.clone(),
                partition: r.kafka_partition,
                key,
                value,
                headers: r
                    .headers
                    .iter()
                    .map(|h| (h.key.clone(), h.value.clone()))
                    .collect(),
                timestamp_ms: r.timestamp_ms,
            };
            if self.topics.insert(r.topic.clone()) {
                self.core.topic_used(&r.topic).await;
            }
            deliveries.push(producer.send(out).await?);
        }
        for delivery in deliveries {
            delivery.await?;
        }
        for (partition, offset) in offsets {
            let key = serde_json::Value::Object(partition.clone()).to_string();
            self.pending.insert(key, (partition, offset));
        }
        Ok(count)
    }

    async fn commit(&mut self) -> Result<(), ConnectError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.pending);
        self.core
            .shared
            .offsets
            .commit(&self.core.spec.id.connector, entries.into_values())
            .await?;
        if let Some(task) = self.task.as_mut() {
            guarded("commit", task.commit()).await?;
        }
        Ok(())
    }

    async fn fail(&mut self, ctx: &mut Context<Self>, error: ConnectError) {
        tracing::error!(task = %self.core.spec.id, %error, "task failed");
        self.core.done = true;
        self.core.report(State::Failed, Some(error.trace())).await;
        if let Some(mut task) = self.task.take() {
            let _ = AssertUnwindSafe(task.stop()).catch_unwind().await;
        }
        if let Some(p) = self.producer.take() {
            p.close().await;
        }
        ctx.stop();
    }

    fn schedule_poll(&mut self, ctx: &mut Context<Self>, delay_ms: u64) {
        if !self.core.poll_scheduled && !self.core.paused && !self.core.done {
            self.core.poll_scheduled = true;
            ctx.notify_later(Duration::from_millis(delay_ms), Poll);
        }
    }
}

impl Actor for SourceTaskActor {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        if let Err(e) = self.start().await {
            self.fail(ctx, e).await;
            return Ok(());
        }
        let state = if self.core.paused {
            State::Paused
        } else {
            State::Running
        };
        self.core.report(state, None).await;
        let every = Duration::from_millis(self.core.shared.config.offset_flush_interval_ms.max(1));
        ctx.notify_interval(every, CommitTick);
        self.schedule_poll(ctx, 0);
        Ok(())
    }
}

impl Handler<Poll> for SourceTaskActor {
    async fn handle(&mut self, _msg: Poll, ctx: &mut Context<Self>) {
        self.core.poll_scheduled = false;
        if self.core.paused || self.core.done {
            return;
        }
        match self.poll_once().await {
            Ok(0) => self.schedule_poll(ctx, SOURCE_IDLE_BACKOFF_MS),
            Ok(_) => self.schedule_poll(ctx, 0),
            Err(e) => self.fail(ctx, e).await,
        }
    }
}

impl Handler<CommitTick> for SourceTaskActor {
    async fn handle(&mut self, _msg: CommitTick, ctx: &mut Context<Self>) {
        if self.core.done {
            return;
        }
        if let Err(e) = self.commit().await {
            self.fail(ctx, e).await;
        }
    }
}

impl Handler<SetPaused> for SourceTaskActor {
    async fn handle(&mut self, msg: SetPaused, ctx: &mut Context<Self>) {
        if self.core.done || self.core.paused == msg.0 {
            return;
        }
        self.core.paused = msg.0;
        self.core
            .report(if msg.0 { State::Paused } else { State::Running }, None)
            .await;
        self.schedule_poll(ctx, 0);
    }
}

impl Handler<StopTask> for SourceTaskActor {
    async fn handle(&mut self, _msg: StopTask, ctx: &mut Context<Self>) {
        if !self.core.done {
            self.core.done = true;
            if let Err(e) = self.commit().await {
                tracing::warn!(task = %self.core.spec.id, error = %e, "offsets not committed on stop");
            }
            if let Some(mut task) = self.task.take() {
                let _ = AssertUnwindSafe(task.stop()).catch_unwind().await;
            }
            if let Some(p) = self.producer.take() {
                p.close().await;
            }
        }
        ctx.stop();
    }
}

/// A sink task: a member of the consumer group `connect-NAME`; polls, converts, puts, and
/// commits the offsets after the records `flush` made durable.
pub(crate) struct SinkTaskActor {
    core: TaskCore,
    task: Option<Box<dyn SinkTask>>,
    consumer: Option<GroupConsumer>,
    converters: Option<Converters>,
    transforms: TransformChain,
    errors: ErrorPolicy,
    /// Writes skipped records to the dead letter queue, when there is one.
    dead_letters: Option<Producer>,
    /// The next offset of each partition after what was put.
    positions: BTreeMap<TopicPartition, i64>,
    committed: BTreeMap<TopicPartition, i64>,
}

impl SinkTaskActor {
    fn new(shared: Arc<Shared>, listener: Arc<dyn TaskListener>, spec: TaskSpec) -> Self {
        SinkTaskActor {
            core: TaskCore {
                shared,
                listener,
                paused: spec.start_paused,
                spec,
                poll_scheduled: false,
                done: false,
            },
            task: None,
            consumer: None,
            converters: None,
            transforms: TransformChain::default(),
            errors: ErrorPolicy::default(),
            dead_letters: None,
            positions: BTreeMap::new(),
            committed: BTreeMap::new(),
        }
    }

    async fn start(&mut self) -> Result<(), ConnectError> {
        let shared = self.core.shared.clone();
        let spec = &self.core.spec;
        self.converters = Some(converters(&shared, &spec.connector_config)?);
        self.transforms = TransformChain::from_config(&spec.connector_config)?;
        self.errors = ErrorPolicy::from_config(&spec.connector_config)?;
        if self.errors.dead_letter_topic.is_some() {
            let producer = producer_config(self.core.client(), &shared.config.properties)?;
            self.dead_letters = Some(Producer::new(producer).await?);
        }
        let topics = get_list(&spec.connector_config, "topics");
        if topics.is_empty() {
            return Err(ConnectError::Config(
                "Must configure one of topics or topics.regex (Runnel reads topics only)".into(),
            ));
        }
        let AnyConnector::Sink(connector) = (spec.plugin.factory)() else {
            return Err(ConnectError::Task(format!(
                "{} is not a sink connector",
                spec.plugin.class
            )));
        };
        let mut task = connector.create_task();
        let config = spec.task_config.clone();
        guarded(
            "start",
            task.start(
                SinkTaskContext {
                    disk: shared.disk.clone(),
                },
                &config,
            ),
        )
        .await?;
        self.task = Some(task);
        let group = consumer_config(
            self.core.client(),
            &spec.id.connector,
            &shared.config.properties,
        )?;
        let mut consumer = GroupConsumer::new(group).await?;
        consumer.subscribe(&topics)?;
        self.consumer = Some(consumer);
        for topic in &topics {
            self.core.topic_used(topic).await;
        }
        Ok(())
    }

    fn convert(&self, r: ConsumerRecord) -> Result<Option<SinkRecord>, ConnectError> {
        let (key_conv, value_conv) = self.converters.as_ref().expect("started");
        let (key_schema, key) = key_conv.deserialize(&r.topic, r.key.as_deref())?;
        let (value_schema, value) = value_conv.deserialize(&r.topic, r.value.as_deref())?;
        let record = ConnectRecord {
            topic: r.topic,
            kafka_partition: Some(r.partition),
            key_schema,
            key,
            value_schema,
            value,
            timestamp_ms: Some(r.timestamp_ms),
            headers: r
                .headers
                .into_iter()
                .map(|(key, value): (String, Option<Bytes>)| Header { key, value })
                .collect(),
            kafka_offset: Some(r.offset),
        };
        Ok(self
            .transforms
            .apply(record)?
            .map(|record| SinkRecord { record }))
    }

    async fn poll_once(&mut self) -> Result<(), ConnectError> {
        let consumer = self.consumer.as_mut().expect("started");
        let records = consumer.poll(Duration::from_millis(SINK_POLL_MS)).await?;
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::with_capacity(records.len());
        let mut moved = Vec::with_capacity(records.len());
        for r in records {
            moved.push((
                TopicPartition::new(r.topic.clone(), r.partition),
                r.offset + 1,
            ));
            match self.convert(r.clone()) {
                Ok(Some(s)) => batch.push(s),
                Ok(None) => {}
                Err(e) if self.errors.tolerates(&self.core.spec.id, &e) => {
                    let id = &self.core.spec.id;
                    Self::dead_letter(self.dead_letters.as_ref(), &self.errors, id, r, &e).await?;
                }
                Err(e) => return Err(e),
            }
        }
        let task = self.task.as_mut().expect("started");
        guarded("put", task.put(batch)).await?;
        for (tp, next) in moved {
            self.positions.insert(tp, next);
        }
        Ok(())
    }

    /// Sends a skipped record, as it came, to the dead letter queue (if configured) and
    /// waits for it: a record is never skipped without being kept there.
    async fn dead_letter(
        producer: Option<&Producer>,
        errors: &ErrorPolicy,
        id: &TaskId,
        r: ConsumerRecord,
        error: &ConnectError,
    ) -> Result<(), ConnectError> {
        let (Some(producer), Some(topic)) = (producer, &errors.dead_letter_topic) else {
            return Ok(());
        };
        let mut headers = r.headers.clone();
        if errors.context_headers {
            let context = [
                ("__connect.errors.topic", r.topic.clone()),
                ("__connect.errors.partition", r.partition.to_string()),
                ("__connect.errors.offset", r.offset.to_string()),
                ("__connect.errors.connector.name", id.connector.clone()),
                ("__connect.errors.task.id", id.task.to_string()),
                ("__connect.errors.exception.message", error.to_string()),
            ];
            headers.extend(
                context
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), Some(Bytes::from(v)))),
            );
        }
        let record = ProducerRecord {
            topic: topic.clone(),
            partition: None,
            key: r.key,
            value: r.value,
            headers,
            timestamp_ms: Some(r.timestamp_ms),
        };
        producer.send(record).await?.await?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), ConnectError> {
        let changed: BTreeMap<TopicPartition, i64> = self
            .positions
            .iter()
            .filter(|(tp, o)| self.committed.get(*tp) != Some(*o))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let task = self.task.as_mut().expect("started");
        guarded("flush", task.flush()).await?;
        let consumer = self.consumer.as_mut().expect("started");
        match consumer.commit_offsets(&changed).await {
            Ok(()) => self.committed.extend(changed),
            // A rebalance or a moved coordinator: the next commit tries again, as Kafka's.
            Err(e) => {
                tracing::warn!(task = %self.core.spec.id, error = %e, "offset commit failed; retrying at the next flush")
            }
        }
        Ok(())
    }

    async fn close(&mut self) {
        if let Some(mut task) = self.task.take() {
            let _ = AssertUnwindSafe(task.stop()).catch_unwind().await;
        }
        if let Some(mut consumer) = self.consumer.take() {
            let _ = consumer.close().await;
        }
        if let Some(p) = self.dead_letters.take() {
            p.close().await;
        }
    }

    async fn fail(&mut self, ctx: &mut Context<Self>, error: ConnectError) {
        tracing::error!(task = %self.core.spec.id, %error, "task failed");
        self.core.done = true;
        self.core.report(State::Failed, Some(error.trace())).await;
        self.close().await;
        ctx.stop();
    }

    fn schedule_poll(&mut self, ctx: &mut Context<Self>) {
        if !self.core.poll_scheduled && !self.core.paused && !self.core.done {
            self.core.poll_scheduled = true;
            ctx.notify_later(Duration::ZERO, Poll);
        }
    }
}

/// A source task's producer: Kafka's worker defaults, then the worker's `producer.*`
/// settings (`acks`, `linger.ms`, `batch.size`, `compression.type`, `enable.idempotence`).
fn producer_config(client: ClientConfig, worker: &Config) -> Result<ProducerConfig, ConnectError> {
    let settings = with_prefix(worker, "producer.");
    let mut p = ProducerConfig::new(client);
    p.linger_ms = get_int(&settings, "linger.ms", 1)?.max(0) as u64;
    p.batch_size_bytes =
        get_int(&settings, "batch.size", p.batch_size_bytes as i64)?.max(1) as usize;
    if let Some(acks) = settings.get("acks") {
        p.acks = Acks::parse(acks)?;
        p.enable_idempotence = p.acks == Acks::All;
    }
    p.enable_idempotence = get_bool(&settings, "enable.idempotence", p.enable_idempotence)?;
    if let Some(c) = settings.get("compression.type") {
        p.compression = parse_compression(c)?;
    }
    Ok(p)
}

/// A sink task's group consumer: Kafka's sink defaults (earliest, no auto commit), then
/// the worker's `consumer.*` settings (`session.timeout.ms`, `heartbeat.interval.ms`,
/// `max.poll.interval.ms`, `auto.offset.reset`, `group.protocol`).
fn consumer_config(
    client: ClientConfig,
    connector: &str,
    worker: &Config,
) -> Result<GroupConsumerConfig, ConnectError> {
    let settings = with_prefix(worker, "consumer.");
    let mut consumer = ConsumerConfig::new(client);
    consumer.auto_offset_reset = match settings.get("auto.offset.reset") {
        Some(r) => OffsetReset::parse(r)?,
        None => OffsetReset::Earliest,
    };
    let mut group = GroupConsumerConfig::new(consumer, sink_group(connector));
    group.enable_auto_commit = false;
    group.session_timeout_ms = get_int(
        &settings,
        "session.timeout.ms",
        group.session_timeout_ms.into(),
    )? as i32;
    group.heartbeat_interval_ms = get_int(
        &settings,
        "heartbeat.interval.ms",
        group.heartbeat_interval_ms as i64,
    )?
    .max(1) as u64;
    group.max_poll_interval_ms = get_int(
        &settings,
        "max.poll.interval.ms",
        group.max_poll_interval_ms.into(),
    )? as i32;
    if let Some(p) = settings.get("group.protocol") {
        group.group_protocol = GroupProtocol::parse(p)?;
    }
    Ok(group)
}

/// The consumer group of a sink connector's tasks, as Kafka names it.
pub fn sink_group(connector: &str) -> String {
    format!("connect-{connector}")
}

impl Actor for SinkTaskActor {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        if let Err(e) = self.start().await {
            self.fail(ctx, e).await;
            return Ok(());
        }
        let state = if self.core.paused {
            State::Paused
        } else {
            State::Running
        };
        self.core.report(state, None).await;
        let every = Duration::from_millis(self.core.shared.config.offset_flush_interval_ms.max(1));
        ctx.notify_interval(every, CommitTick);
        self.schedule_poll(ctx);
        Ok(())
    }
}

impl Handler<Poll> for SinkTaskActor {
    async fn handle(&mut self, _msg: Poll, ctx: &mut Context<Self>) {
        self.core.poll_scheduled = false;
        if self.core.paused || self.core.done {
            return;
        }
        match self.poll_once().await {
            Ok(()) => self.schedule_poll(ctx),
            Err(e) => self.fail(ctx, e).await,
        }
    }
}

impl Handler<CommitTick> for SinkTaskActor {
    async fn handle(&mut self, _msg: CommitTick, ctx: &mut Context<Self>) {
        if self.core.done {
            return;
        }
        if let Err(e) = self.commit().await {
            self.fail(ctx, e).await;
        }
    }
}

impl Handler<SetPaused> for SinkTaskActor {
    async fn handle(&mut self, msg: SetPaused, ctx: &mut Context<Self>) {
        if self.core.done || self.core.paused == msg.0 {
            return;
        }
        self.core.paused = msg.0;
        self.core
            .report(if msg.0 { State::Paused } else { State::Running }, None)
            .await;
        self.schedule_poll(ctx);
    }
}

impl Handler<StopTask> for SinkTaskActor {
    async fn handle(&mut self, _msg: StopTask, ctx: &mut Context<Self>) {
        if !self.core.done {
            self.core.done = true;
            if let Err(e) = self.commit().await {
                tracing::warn!(task = %self.core.spec.id, error = %e, "offsets not committed on stop");
            }
            self.close().await;
        }
        ctx.stop();
    }
}
