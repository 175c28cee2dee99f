//! The worker: one actor that owns every connector's configuration, target state and
//! status (Kafka's standalone herder), spawns a connector actor per connector and a task
//! actor per task, and answers the REST API through [`Herder`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use runnel_actors::{Actor, Addr, Context, Handler, Message, Node, RestartPolicy};
use runnel_client::kafka::error::ResponseError;
use runnel_client::kafka::{Admin, ClientConfig, TopicPartition};
use runnel_storage::disk::Disk;

use crate::api::{AnyConnector, ConnectorType, PluginDesc, Plugins};
use crate::config::{get_int, Config};
use crate::data::JsonMap;
use crate::distributed::config::DistributedConfig;
use crate::distributed::herder::DistributedWorker;
pub use crate::distributed::herder::Leadership;
use crate::entities::{
    ConfigInfos, ConnectorInfo, ConnectorOffset, ConnectorOffsets, ConnectorState,
    ConnectorStateInfo, TaskId, TaskInfo, TaskState,
};
use crate::error::ConnectError;
use crate::offsets::OffsetStore;
use crate::settings::Shared;
pub use crate::settings::{
    WorkerConfig, DEFAULT_LISTENERS, DEFAULT_OFFSET_FLUSH_INTERVAL_MS,
    DEFAULT_TASK_SHUTDOWN_TIMEOUT_MS,
};
pub use crate::task::State;
use crate::task::{
    panic_text, sink_group, spawn_task, TaskHandle, TaskListener, TaskSpec, TaskStatusChanged,
};
use crate::validate::validate_connector_config;

/// Bound on the worker's mailbox: REST calls and task status reports.
pub const WORKER_MAILBOX: usize = 1024;
/// How long a REST call waits for the worker (Kafka's request timeout is 90 s).
pub const REQUEST_TIMEOUT_MS: u64 = 90_000;

/// What a connector should be doing (Kafka's `TargetState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    Started,
    Paused,
    Stopped,
}

impl TargetState {
    /// `initial_state` of a create request: RUNNING, PAUSED or STOPPED.
    pub fn parse_initial(s: &str) -> Result<TargetState, ConnectError> {
        match s.trim().to_ascii_uppercase().as_str() {
            "RUNNING" => Ok(TargetState::Started),
            "PAUSED" => Ok(TargetState::Paused),
            "STOPPED" => Ok(TargetState::Stopped),
            other => Err(ConnectError::BadRequest(format!(
                "Invalid initial state {other}; use RUNNING, PAUSED or STOPPED"
            ))),
        }
    }
}

struct TaskEntry {
    config: Config,
    state: State,
    trace: Option<String>,
    generation: u64,
    handle: Option<TaskHandle>,
}

struct ConnectorEntry {
    config: Config,
    plugin: PluginDesc,
    target: TargetState,
    state: State,
    trace: Option<String>,
    actor: Option<Addr<ConnectorActor>>,
    tasks: Vec<TaskEntry>,
    topics: BTreeSet<String>,
}

/// Kafka's standalone herder as an actor.
pub struct Worker {
    shared: Arc<Shared>,
    connectors: BTreeMap<String, ConnectorEntry>,
    next_generation: u64,
}

impl Actor for Worker {}

macro_rules! message {
    ($t:ty => $r:ty) => {
        impl Message for $t {
            type Reply = $r;
        }
    };
}

pub(crate) struct Put {
    pub name: String,
    pub config: Config,
    pub allow_replace: bool,
    pub initial: Option<TargetState>,
}
message!(Put => Result<(bool, ConnectorInfo), ConnectError>);
pub(crate) struct Delete(pub String);
message!(Delete => Result<(), ConnectError>);
pub(crate) struct List;
message!(List => Vec<String>);
pub(crate) struct Info(pub String);
message!(Info => Result<ConnectorInfo, ConnectError>);
pub(crate) struct Status(pub String);
message!(Status => Result<ConnectorStateInfo, ConnectError>);
pub(crate) struct GetTaskStatus(pub String, pub u32);
message!(GetTaskStatus => Result<TaskState, ConnectError>);
pub(crate) struct Tasks(pub String);
message!(Tasks => Result<Vec<TaskInfo>, ConnectError>);
pub(crate) struct SetTarget(pub String, pub TargetState);
message!(SetTarget => Result<(), ConnectError>);
pub(crate) struct Restart {
    pub name: String,
    pub include_tasks: bool,
    pub only_failed: bool,
}
message!(Restart => Result<ConnectorStateInfo, ConnectError>);
pub(crate) struct RestartTask(pub String, pub u32);
message!(RestartTask => Result<(), ConnectError>);
pub(crate) struct Topics(pub String);
message!(Topics => Result<Vec<String>, ConnectError>);
/// The connector's type and config, for reading its offsets outside the worker.
pub(crate) struct OffsetsOf(pub String);
message!(OffsetsOf => Result<ConnectorType, ConnectError>);
pub(crate) struct StopAll;
message!(StopAll => ());
/// KIP-875: set or remove offsets (`Some`), or reset them all (`None`), of a stopped connector.
pub(crate) struct ModifyOffsets(pub String, pub Option<Vec<(JsonMap, Option<JsonMap>)>>);
message!(ModifyOffsets => Result<String, ConnectError>);
pub(crate) struct ResetTopics(pub String);
message!(ResetTopics => Result<(), ConnectError>);

pub(crate) struct StatusChanged(pub TaskStatusChanged);
message!(StatusChanged => ());
pub(crate) struct TopicUsed {
    pub task: TaskId,
    pub topic: String,
}
message!(TopicUsed => ());

/// A worker (standalone or distributed) hears its tasks through its mailbox.
#[async_trait::async_trait]
impl<W> TaskListener for Addr<W>
where
    W: Handler<StatusChanged> + Handler<TopicUsed>,
{
    async fn status_changed(&self, change: TaskStatusChanged) {
        if self.tell(StatusChanged(change)).await.is_err() {
            tracing::debug!("worker gone; a task status was not reported");
        }
    }

    async fn topic_used(&self, task: TaskId, topic: String) {
        let _ = self.tell(TopicUsed { task, topic }).await;
    }
}

/// Kafka's 404 for a connector no worker knows.
pub(crate) fn not_found(name: &str) -> ConnectError {
    ConnectError::NotFound(format!("Connector {name} not found"))
}

impl Worker {
    fn entry(&self, name: &str) -> Result<&ConnectorEntry, ConnectError> {
        self.connectors.get(name).ok_or_else(|| not_found(name))
    }

    fn info(&self, name: &str) -> Result<ConnectorInfo, ConnectError> {
        let e = self.entry(name)?;
        Ok(ConnectorInfo {
            name: name.to_string(),
            config: e.config.clone(),
            tasks: (0..e.tasks.len() as u32)
                .map(|task| TaskId {
                    connector: name.to_string(),
                    task,
                })
                .collect(),
            connector_type: e.plugin.connector_type.name().to_string(),
        })
    }

    fn status(&self, name: &str) -> Result<ConnectorStateInfo, ConnectError> {
        let e = self.entry(name)?;
        Ok(ConnectorStateInfo {
            name: name.to_string(),
            connector: ConnectorState {
                state: e.state.name().to_string(),
                worker_id: self.shared.worker_id.clone(),
                trace: e.trace.clone(),
                version: Some(e.plugin.version.clone()),
            },
            tasks: e
                .tasks
                .iter()
                .enumerate()
                .map(|(i, t)| TaskState {
                    id: i as u32,
                    state: t.state.name().to_string(),
                    worker_id: self.shared.worker_id.clone(),
                    trace: t.trace.clone(),
                    version: Some(e.plugin.version.clone()),
                })
                .collect(),
            connector_type: e.plugin.connector_type.name().to_string(),
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.shared.config.task_shutdown_timeout_ms)
    }

    /// Stops every task of the connector (committing their offsets) and forgets them.
    async fn stop_tasks(&mut self, name: &str) {
        let timeout = self.timeout();
        let handles: Vec<TaskHandle> = match self.connectors.get_mut(name) {
            Some(e) => e.tasks.iter_mut().filter_map(|t| t.handle.take()).collect(),
            None => return,
        };
        futures::future::join_all(handles.iter().map(|h| h.stop(timeout))).await;
    }

    async fn stop_connector(&mut self, name: &str) {
        self.stop_tasks(name).await;
        if let Some(actor) = self.connectors.get_mut(name).and_then(|e| e.actor.take()) {
            let _ = actor.ask(StopConnector, self.timeout()).await;
        }
    }

    /// Starts the connector and its tasks as its target state says.
    async fn start_connector(&mut self, name: &str, ctx: &mut Context<Self>) {
        self.start_connector_actor_only(name).await;
        let count = match self.connectors.get(name) {
            Some(e) if matches!(e.state, State::Running | State::Paused) => e.tasks.len(),
            _ => return,
        };
        for i in 0..count {
            self.start_task(name, i, ctx);
        }
    }

    fn start_task(&mut self, name: &str, index: usize, ctx: &mut Context<Self>) {
        let Some(me) = ctx.addr() else { return };
        self.next_generation += 1;
        let generation = self.next_generation;
        let e = self.connectors.get_mut(name).expect("caller checked");
        let paused = e.target == TargetState::Paused;
        let t = &mut e.tasks[index];
        t.generation = generation;
        t.state = State::Unassigned;
        t.trace = None;
        let spec = TaskSpec {
            id: TaskId {
                connector: name.to_string(),
                task: index as u32,
            },
            generation,
            connector_config: e.config.clone(),
            task_config: t.config.clone(),
            plugin: e.plugin.clone(),
            start_paused: paused,
        };
        t.handle = Some(spawn_task(&self.shared, Arc::new(me), spec));
    }

    async fn put(
        &mut self,
        msg: Put,
        ctx: &mut Context<Self>,
    ) -> Result<(bool, ConnectorInfo), ConnectError> {
        let plugin = validate_connector_config(&self.shared.plugins, &msg.name, &msg.config)?;
        let created = match self.connectors.contains_key(&msg.name) {
            true if !msg.allow_replace => {
                return Err(ConnectError::AlreadyExists(format!(
                    "Connector {} already exists",
                    msg.name
                )))
            }
            true => {
                self.stop_connector(&msg.name).await;
                false
            }
            false => true,
        };
        // A new config keeps the target state and the active topics, as in Kafka.
        let (target, topics) = match self.connectors.get(&msg.name) {
            Some(e) => (e.target, e.topics.clone()),
            None => (msg.initial.unwrap_or(TargetState::Started), BTreeSet::new()),
        };
        self.connectors.insert(
            msg.name.clone(),
            ConnectorEntry {
                config: msg.config,
                plugin,
                target,
                state: State::Unassigned,
                trace: None,
                actor: None,
                tasks: Vec::new(),
                topics,
            },
        );
        self.start_connector(&msg.name, ctx).await;
        Ok((created, self.info(&msg.name)?))
    }
}

impl ConnectorEntry {
    fn plugin_task_class(&self) -> String {
        (self.plugin.factory)().task_class()
    }
}

impl Handler<Put> for Worker {
    async fn handle(
        &mut self,
        msg: Put,
        ctx: &mut Context<Self>,
    ) -> Result<(bool, ConnectorInfo), ConnectError> {
        self.put(msg, ctx).await
    }
}

impl Handler<Delete> for Worker {
    async fn handle(&mut self, msg: Delete, _ctx: &mut Context<Self>) -> Result<(), ConnectError> {
        self.entry(&msg.0)?;
        self.stop_connector(&msg.0).await;
        self.connectors.remove(&msg.0);
        Ok(())
    }
}

impl Handler<List> for Worker {
    async fn handle(&mut self, _msg: List, _ctx: &mut Context<Self>) -> Vec<String> {
        self.connectors.keys().cloned().collect()
    }
}

impl Handler<Info> for Worker {
    async fn handle(
        &mut self,
        msg: Info,
        _ctx: &mut Context<Self>,
    ) -> Result<ConnectorInfo, ConnectError> {
        self.info(&msg.0)
    }
}

impl Handler<Status> for Worker {
    async fn handle(
        &mut self,
        msg: Status,
        _ctx: &mut Context<Self>,
    ) -> Result<ConnectorStateInfo, ConnectError> {
        // Kafka answers for an unknown connector with its status store's words here.
        self.status(&msg.0)
            .map_err(|_| ConnectError::NotFound(format!("No status found for connector {}", msg.0)))
    }
}

impl Handler<GetTaskStatus> for Worker {
    async fn handle(
        &mut self,
        msg: GetTaskStatus,
        _ctx: &mut Context<Self>,
    ) -> Result<TaskState, ConnectError> {
        let status = self.status(&msg.0)?;
        status
            .tasks
            .into_iter()
            .find(|t| t.id == msg.1)
            .ok_or_else(|| {
                ConnectError::NotFound(format!("No status found for task {}-{}", msg.0, msg.1))
            })
    }
}

impl Handler<Tasks> for Worker {
    async fn handle(
        &mut self,
        msg: Tasks,
        _ctx: &mut Context<Self>,
    ) -> Result<Vec<TaskInfo>, ConnectError> {
        let e = self.entry(&msg.0)?;
        Ok(e.tasks
            .iter()
            .enumerate()
            .map(|(i, t)| TaskInfo {
                id: TaskId {
                    connector: msg.0.clone(),
                    task: i as u32,
                },
                config: t.config.clone(),
            })
            .collect())
    }
}

impl Handler<SetTarget> for Worker {
    async fn handle(
        &mut self,
        msg: SetTarget,
        ctx: &mut Context<Self>,
    ) -> Result<(), ConnectError> {
        let SetTarget(name, target) = msg;
        let previous = {
            let e = self
                .connectors
                .get_mut(&name)
                .ok_or_else(|| not_found(&name))?;
            std::mem::replace(&mut e.target, target)
        };
        match (previous, target) {
            (a, b) if a == b => {}
            (_, TargetState::Stopped) => {
                self.stop_connector(&name).await;
                let e = self.connectors.get_mut(&name).expect("checked");
                e.state = State::Stopped;
                e.trace = None;
                e.tasks.clear();
            }
            (TargetState::Stopped, _) => self.start_connector(&name, ctx).await,
            (_, paused_or_started) => {
                let paused = paused_or_started == TargetState::Paused;
                let e = self.connectors.get_mut(&name).expect("checked");
                if e.state != State::Failed {
                    e.state = if paused {
                        State::Paused
                    } else {
                        State::Running
                    };
                }
                let handles: Vec<TaskHandle> =
                    e.tasks.iter().filter_map(|t| t.handle.clone()).collect();
                for h in handles {
                    h.set_paused(paused).await;
                }
            }
        }
        Ok(())
    }
}

impl Handler<Restart> for Worker {
    async fn handle(
        &mut self,
        msg: Restart,
        ctx: &mut Context<Self>,
    ) -> Result<ConnectorStateInfo, ConnectError> {
        let mut status = self.status(&msg.name)?;
        let restart_connector = !msg.only_failed || status.connector.state == State::Failed.name();
        let restart_task = |t: &TaskState| {
            msg.include_tasks && (!msg.only_failed || t.state == State::Failed.name())
        };
        let tasks: Vec<usize> = status
            .tasks
            .iter()
            .filter(|t| restart_task(t))
            .map(|t| t.id as usize)
            .collect();
        if restart_connector {
            status.connector.state = State::Restarting.name().into();
        }
        for t in &mut status.tasks {
            if restart_task(t) {
                t.state = State::Restarting.name().into();
            }
        }
        if restart_connector {
            let old_configs: Vec<Config> = self.connectors[&msg.name]
                .tasks
                .iter()
                .map(|t| t.config.clone())
                .collect();
            // Tasks keep running across a connector restart unless they are restarted too
            // or the connector now splits the work differently.
            let keep: Vec<Option<TaskHandle>> = self
                .connectors
                .get_mut(&msg.name)
                .expect("checked")
                .tasks
                .iter_mut()
                .enumerate()
                .map(|(i, t)| {
                    if tasks.contains(&i) {
                        None
                    } else {
                        t.handle.take()
                    }
                })
                .collect();
            let states: Vec<(State, Option<String>, u64)> = self.connectors[&msg.name]
                .tasks
                .iter()
                .map(|t| (t.state, t.trace.clone(), t.generation))
                .collect();
            self.stop_tasks(&msg.name).await;
            if let Some(actor) = self
                .connectors
                .get_mut(&msg.name)
                .and_then(|e| e.actor.take())
            {
                let _ = actor.ask(StopConnector, self.timeout()).await;
            }
            self.restart_connector_only(&msg.name, old_configs, keep, states, &tasks, ctx)
                .await;
        } else {
            for i in tasks {
                self.restart_task(&msg.name, i, ctx).await;
            }
        }
        Ok(status)
    }
}

impl Worker {
    /// Restarts the connector; tasks in `kept` run on unless the task configs changed.
    /// False when the connector is not running afterwards (failed or stopped).
    async fn restart_connector_only(
        &mut self,
        name: &str,
        old_configs: Vec<Config>,
        kept: Vec<Option<TaskHandle>>,
        states: Vec<(State, Option<String>, u64)>,
        restart: &[usize],
        ctx: &mut Context<Self>,
    ) -> bool {
        // Start the connector without its tasks to compare what it hands out.
        self.start_connector_actor_only(name).await;
        let e = self.connectors.get_mut(name).expect("checked");
        if e.state == State::Failed || e.target == TargetState::Stopped {
            let timeout = Duration::from_millis(self.shared.config.task_shutdown_timeout_ms);
            futures::future::join_all(kept.iter().flatten().map(|h| h.stop(timeout))).await;
            return false;
        }
        let same = e.tasks.iter().map(|t| &t.config).eq(old_configs.iter());
        if same {
            // Tasks not asked to restart keep running (or stay FAILED) as they were.
            let mut to_start = Vec::new();
            for (i, (handle, (state, trace, generation))) in
                kept.into_iter().zip(states).enumerate()
            {
                if restart.contains(&i) {
                    to_start.push(i);
                    continue;
                }
                let t = &mut e.tasks[i];
                t.handle = handle;
                t.state = state;
                t.trace = trace;
                t.generation = generation;
            }
            for i in to_start {
                self.start_task(name, i, ctx);
            }
        } else {
            let timeout = Duration::from_millis(self.shared.config.task_shutdown_timeout_ms);
            futures::future::join_all(kept.iter().flatten().map(|h| h.stop(timeout))).await;
            for i in 0..e.tasks.len() {
                self.start_task(name, i, ctx);
            }
        }
        true
    }

    /// Starts the connector actor and records its task configs without starting tasks.
    async fn start_connector_actor_only(&mut self, name: &str) {
        let Some(e) = self.connectors.get_mut(name) else {
            return;
        };
        if e.target == TargetState::Stopped {
            e.state = State::Stopped;
            e.tasks.clear();
            return;
        }
        let plugin = e.plugin.clone();
        let config = e.config.clone();
        let max_tasks = get_int(&config, "tasks.max", 1).unwrap_or(1).max(1) as usize;
        let actor = self.shared.node.spawn_or_give_up(
            format!("connect-connector-{name}"),
            8,
            RestartPolicy::never(),
            move || ConnectorActor {
                instance: (plugin.factory)(),
            },
            |error| tracing::error!(%error, "connector actor failed"),
        );
        let started = actor
            .ask(
                StartConnector { config, max_tasks },
                self.timeout().max(Duration::from_secs(30)),
            )
            .await;
        let e = self.connectors.get_mut(name).expect("looked up above");
        e.actor = Some(actor);
        match started {
            Ok(Ok(configs)) => {
                e.state = if e.target == TargetState::Paused {
                    State::Paused
                } else {
                    State::Running
                };
                e.trace = None;
                let task_class = e.plugin_task_class();
                e.tasks = configs
                    .into_iter()
                    .take(max_tasks)
                    .map(|mut config| {
                        config.insert("task.class".into(), task_class.clone());
                        TaskEntry {
                            config,
                            state: State::Unassigned,
                            trace: None,
                            generation: 0,
                            handle: None,
                        }
                    })
                    .collect();
            }
            Ok(Err(error)) => {
                e.state = State::Failed;
                e.trace = Some(error.trace());
            }
            Err(error) => {
                e.state = State::Failed;
                e.trace = Some(format!("runnel_connect connector actor failed: {error}"));
            }
        }
    }

    async fn restart_task(&mut self, name: &str, index: usize, ctx: &mut Context<Self>) {
        let handle = self
            .connectors
            .get_mut(name)
            .and_then(|e| e.tasks.get_mut(index))
            .and_then(|t| t.handle.take());
        if let Some(h) = handle {
            h.stop(self.timeout()).await;
        }
        self.start_task(name, index, ctx);
    }
}

impl Handler<RestartTask> for Worker {
    async fn handle(
        &mut self,
        msg: RestartTask,
        ctx: &mut Context<Self>,
    ) -> Result<(), ConnectError> {
        let e = self.entry(&msg.0)?;
        if msg.1 as usize >= e.tasks.len() {
            return Err(ConnectError::NotFound(format!(
                "Task {}-{} not found",
                msg.0, msg.1
            )));
        }
        self.restart_task(&msg.0, msg.1 as usize, ctx).await;
        Ok(())
    }
}

impl Handler<Topics> for Worker {
    async fn handle(
        &mut self,
        msg: Topics,
        _ctx: &mut Context<Self>,
    ) -> Result<Vec<String>, ConnectError> {
        Ok(self.entry(&msg.0)?.topics.iter().cloned().collect())
    }
}

impl Handler<OffsetsOf> for Worker {
    async fn handle(
        &mut self,
        msg: OffsetsOf,
        _ctx: &mut Context<Self>,
    ) -> Result<ConnectorType, ConnectError> {
        Ok(self.entry(&msg.0)?.plugin.connector_type)
    }
}

impl Handler<ResetTopics> for Worker {
    async fn handle(
        &mut self,
        msg: ResetTopics,
        _ctx: &mut Context<Self>,
    ) -> Result<(), ConnectError> {
        let e = self
            .connectors
            .get_mut(&msg.0)
            .ok_or_else(|| not_found(&msg.0))?;
        e.topics.clear();
        Ok(())
    }
}

impl Handler<ModifyOffsets> for Worker {
    async fn handle(
        &mut self,
        msg: ModifyOffsets,
        _ctx: &mut Context<Self>,
    ) -> Result<String, ConnectError> {
        let ModifyOffsets(name, offsets) = msg;
        let e = self.entry(&name)?;
        if e.target != TargetState::Stopped || !e.tasks.is_empty() {
            return Err(ConnectError::BadRequest(format!(
                "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the specified connector by issuing a 'PUT' request to the '/connectors/{name}/stop' endpoint"
            )));
        }
        let (plugin, config) = (e.plugin.clone(), e.config.clone());
        modify_offsets(&self.shared, &name, &plugin, &config, offsets).await
    }
}

/// KIP-875's alter (`Some`) or reset (`None`) of a stopped connector's offsets: a
/// source's in the offset store (the connector checks them first, as Kafka's
/// `alterOffsets`), a sink's in its group through the admin client. Kafka's message.
pub(crate) async fn modify_offsets(
    shared: &Shared,
    name: &str,
    plugin: &PluginDesc,
    config: &Config,
    offsets: Option<Vec<(JsonMap, Option<JsonMap>)>>,
) -> Result<String, ConnectError> {
    let kind = if offsets.is_some() {
        "altered"
    } else {
        "reset"
    };
    let entries = match offsets {
        Some(entries) => entries,
        None => match plugin.connector_type {
            ConnectorType::Source => shared
                .offsets
                .of_connector(name)
                .into_iter()
                .map(|(p, _)| (p, None))
                .collect(),
            ConnectorType::Sink => Vec::new(),
        },
    };
    let managed_here = (plugin.factory)()
        .as_connector()
        .alter_offsets(config, &entries)?;
    match plugin.connector_type {
        ConnectorType::Source => {
            for (partition, _) in &entries {
                if partition.is_empty() {
                    return Err(ConnectError::BadRequest(
                        "Source partitions may not be null".into(),
                    ));
                }
            }
            shared.offsets.write(name, entries).await?;
        }
        ConnectorType::Sink => {
            let admin = Admin::connect(ClientConfig::new(&shared.config.bootstrap_servers)).await?;
            let group = sink_group(name);
            if kind == "reset" {
                for (_, result) in admin.delete_groups(std::slice::from_ref(&group)).await {
                    match result {
                        Ok(()) => {}
                        // A sink that never committed has no group to delete.
                        Err(e) if e.code() == Some(ResponseError::GroupIdNotFound) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            } else {
                let (set, remove) = parse_sink_offsets(&entries)?;
                if !set.is_empty() {
                    for (_, r) in admin.commit_group_offsets(&group, &set).await? {
                        r?;
                    }
                }
                if !remove.is_empty() {
                    for (_, r) in admin.delete_group_offsets(&group, &remove).await? {
                        r?;
                    }
                }
            }
        }
    }
    Ok(if managed_here {
        format!("The offsets for this connector have been {kind} successfully")
    } else {
        format!("The Connect framework-managed offsets for this connector have been {kind} successfully. However, if this connector manages offsets externally, they will need to be manually {kind} in the system that the connector uses.")
    })
}

type SinkOffsets = (BTreeMap<TopicPartition, i64>, Vec<TopicPartition>);

/// KIP-875's sink offsets (`{"kafka_topic", "kafka_partition"}` → `{"kafka_offset"}` or
/// null), with Kafka's messages.
fn parse_sink_offsets(entries: &[(JsonMap, Option<JsonMap>)]) -> Result<SinkOffsets, ConnectError> {
    let bad = |m: &str| ConnectError::BadRequest(m.to_string());
    let mut set = BTreeMap::new();
    let mut remove = Vec::new();
    for (partition, offset) in entries {
        if !partition.contains_key("kafka_topic") || !partition.contains_key("kafka_partition") {
            return Err(bad("The partition for a sink connector offset must contain the keys 'kafka_topic' and 'kafka_partition'"));
        }
        let topic = match &partition["kafka_topic"] {
            serde_json::Value::String(t) => t.clone(),
            serde_json::Value::Null => {
                return Err(bad(
                    "Kafka topic names must be valid strings and may not be null",
                ))
            }
            other => other.to_string(),
        };
        let number = |v: &serde_json::Value| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        };
        let p = &partition["kafka_partition"];
        if p.is_null() {
            return Err(bad(
                "Kafka partitions must be valid numbers and may not be null",
            ));
        }
        let index = number(p).and_then(|n| i32::try_from(n).ok()).ok_or_else(|| {
            bad(&format!("Failed to parse the following Kafka partition value in the provided offsets: '{p}'. Partition values for sink connectors need to be integers."))
        })?;
        let tp = TopicPartition::new(topic, index);
        match offset {
            None => remove.push(tp),
            Some(o) => {
                let v = o.get("kafka_offset").ok_or_else(|| bad("The offset for a sink connector should either be null or contain the key 'kafka_offset'"))?;
                let n = number(v).ok_or_else(|| {
                    bad(&format!("Failed to parse the following Kafka offset value in the provided offsets: '{v}'. Offset values for sink connectors need to be integers."))
                })?;
                set.insert(tp, n);
            }
        }
    }
    Ok((set, remove))
}

impl Handler<StopAll> for Worker {
    async fn handle(&mut self, _msg: StopAll, ctx: &mut Context<Self>) {
        let names: Vec<String> = self.connectors.keys().cloned().collect();
        let timeout = self.timeout();
        let handles: Vec<TaskHandle> = self
            .connectors
            .values_mut()
            .flat_map(|e| e.tasks.iter_mut().filter_map(|t| t.handle.take()))
            .collect();
        futures::future::join_all(handles.iter().map(|h| h.stop(timeout))).await;
        for name in names {
            self.stop_connector(&name).await;
        }
        ctx.stop();
    }
}

impl Handler<StatusChanged> for Worker {
    async fn handle(&mut self, StatusChanged(msg): StatusChanged, _ctx: &mut Context<Self>) {
        let Some(t) = self
            .connectors
            .get_mut(&msg.id.connector)
            .and_then(|e| e.tasks.get_mut(msg.id.task as usize))
        else {
            return;
        };
        if t.generation != msg.generation {
            return;
        }
        t.state = msg.state;
        t.trace = msg.trace;
        if msg.state == State::Failed {
            t.handle = None;
        }
    }
}

impl Handler<TopicUsed> for Worker {
    async fn handle(&mut self, msg: TopicUsed, _ctx: &mut Context<Self>) {
        if let Some(e) = self.connectors.get_mut(&msg.task.connector) {
            e.topics.insert(msg.topic);
        }
    }
}

/// One connector instance in its own actor, so its code never runs in the worker's.
pub(crate) struct ConnectorActor {
    pub instance: AnyConnector,
}

impl Actor for ConnectorActor {}

pub(crate) struct StartConnector {
    pub config: Config,
    pub max_tasks: usize,
}
message!(StartConnector => Result<Vec<Config>, ConnectError>);
pub(crate) struct StopConnector;
message!(StopConnector => ());

impl Handler<StartConnector> for ConnectorActor {
    async fn handle(
        &mut self,
        msg: StartConnector,
        _ctx: &mut Context<Self>,
    ) -> Result<Vec<Config>, ConnectError> {
        let connector = self.instance.as_connector_mut();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            connector.start(&msg.config)?;
            connector.task_configs(msg.max_tasks)
        }));
        run.unwrap_or_else(|panic| {
            Err(ConnectError::Task(format!(
                "connector panicked: {}",
                panic_text(&*panic)
            )))
        })
    }
}

impl Handler<StopConnector> for ConnectorActor {
    async fn handle(&mut self, _msg: StopConnector, ctx: &mut Context<Self>) {
        let connector = self.instance.as_connector_mut();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| connector.stop())).is_err() {
            tracing::warn!("connector panicked while stopping");
        }
        ctx.stop();
    }
}

/// The handle the REST API and the CLI drive a worker through: plain async calls over
/// the worker actor, so a test or the simulator can use them without HTTP.
#[derive(Clone)]
pub struct Herder {
    addr: WorkerAddr,
    shared: Arc<Shared>,
}

/// The actor behind a herder: Kafka's standalone herder, or the distributed one.
#[derive(Clone)]
enum WorkerAddr {
    Standalone(Addr<Worker>),
    Distributed {
        addr: Addr<DistributedWorker>,
        member_stop: Arc<tokio::sync::watch::Sender<bool>>,
    },
}

impl Herder {
    /// Starts a worker on `node`, its offsets in `config.offset_storage_file` on `disk`.
    pub async fn start(
        node: &Node,
        config: WorkerConfig,
        plugins: Plugins,
        disk: Arc<dyn Disk>,
        worker_id: String,
    ) -> Result<Herder, ConnectError> {
        let offsets =
            Arc::new(OffsetStore::open(disk.clone(), config.offset_storage_file.clone()).await?);
        let shared = Arc::new(Shared {
            config,
            plugins,
            disk,
            offsets,
            worker_id,
            node: node.clone(),
        });
        let for_actor = shared.clone();
        let addr = node.spawn(
            "connect-worker",
            WORKER_MAILBOX,
            RestartPolicy::never(),
            move || Worker {
                shared: for_actor.clone(),
                connectors: BTreeMap::new(),
                next_generation: 0,
            },
        );
        Ok(Herder {
            addr: WorkerAddr::Standalone(addr),
            shared,
        })
    }

    /// Starts a distributed worker on `node`: creates and reads the config, offset and
    /// status topics, then joins the group `group.id`.
    pub async fn start_distributed(
        node: &Node,
        config: DistributedConfig,
        plugins: Plugins,
        disk: Arc<dyn Disk>,
        worker_id: String,
    ) -> Result<Herder, ConnectError> {
        let started =
            crate::distributed::herder::start(node, config, plugins, disk, worker_id).await?;
        Ok(Herder {
            addr: WorkerAddr::Distributed {
                addr: started.addr,
                member_stop: Arc::new(started.member_stop),
            },
            shared: started.shared,
        })
    }

    /// Who leads the group; a standalone worker always leads itself.
    pub async fn leadership(&self) -> Leadership {
        match &self.addr {
            WorkerAddr::Standalone(_) => Leadership::Leader,
            WorkerAddr::Distributed { addr, .. } => {
                crate::distributed::herder::leadership(addr).await
            }
        }
    }

    async fn call<M>(&self, msg: M) -> Result<M::Reply, ConnectError>
    where
        Worker: Handler<M>,
        DistributedWorker: Handler<M>,
        M: Message,
    {
        let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
        let answer = match &self.addr {
            WorkerAddr::Standalone(a) => a.ask(msg, timeout).await,
            WorkerAddr::Distributed { addr, .. } => addr.ask(msg, timeout).await,
        };
        answer.map_err(|e| ConnectError::Worker(e.to_string()))
    }

    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    pub fn plugins(&self) -> &Plugins {
        &self.shared.plugins
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.shared.config
    }

    /// Creates (or, with `allow_replace`, replaces) a connector; true when created.
    pub async fn put_connector_config(
        &self,
        name: &str,
        config: Config,
        allow_replace: bool,
        initial: Option<TargetState>,
    ) -> Result<(bool, ConnectorInfo), ConnectError> {
        self.call(Put {
            name: name.to_string(),
            config,
            allow_replace,
            initial,
        })
        .await?
    }

    pub async fn delete_connector(&self, name: &str) -> Result<(), ConnectError> {
        self.call(Delete(name.into())).await?
    }

    pub async fn connectors(&self) -> Result<Vec<String>, ConnectError> {
        self.call(List).await
    }

    pub async fn connector_info(&self, name: &str) -> Result<ConnectorInfo, ConnectError> {
        self.call(Info(name.into())).await?
    }

    pub async fn connector_status(&self, name: &str) -> Result<ConnectorStateInfo, ConnectError> {
        self.call(Status(name.into())).await?
    }

    pub async fn task_status(&self, name: &str, task: u32) -> Result<TaskState, ConnectError> {
        self.call(GetTaskStatus(name.into(), task)).await?
    }

    pub async fn task_configs(&self, name: &str) -> Result<Vec<TaskInfo>, ConnectError> {
        self.call(Tasks(name.into())).await?
    }

    pub async fn set_target_state(
        &self,
        name: &str,
        target: TargetState,
    ) -> Result<(), ConnectError> {
        self.call(SetTarget(name.into(), target)).await?
    }

    /// Kafka's restart request; the answer shows what is RESTARTING.
    pub async fn restart_connector(
        &self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
    ) -> Result<ConnectorStateInfo, ConnectError> {
        self.call(Restart {
            name: name.into(),
            include_tasks,
            only_failed,
        })
        .await?
    }

    pub async fn restart_task(&self, name: &str, task: u32) -> Result<(), ConnectError> {
        self.call(RestartTask(name.into(), task)).await?
    }

    pub async fn active_topics(&self, name: &str) -> Result<Vec<String>, ConnectError> {
        self.call(Topics(name.into())).await?
    }

    /// KIP-875's offsets: a source connector's from the offset store, a sink's from its
    /// consumer group.
    pub async fn offsets(&self, name: &str) -> Result<ConnectorOffsets, ConnectError> {
        let kind = self.call(OffsetsOf(name.into())).await??;
        // A distributed worker reads what the others committed first.
        self.shared.offsets.refresh().await?;
        let offsets = match kind {
            ConnectorType::Source => self
                .shared
                .offsets
                .of_connector(name)
                .into_iter()
                .map(|(partition, offset)| ConnectorOffset { partition, offset })
                .collect(),
            ConnectorType::Sink => {
                let admin =
                    Admin::connect(ClientConfig::new(&self.shared.config.bootstrap_servers))
                        .await?;
                admin
                    .list_group_offsets(&sink_group(name), None)
                    .await?
                    .into_iter()
                    .map(|(tp, committed)| {
                        let mut partition = serde_json::Map::new();
                        partition.insert("kafka_topic".into(), tp.topic.into());
                        partition.insert("kafka_partition".into(), tp.partition.into());
                        let mut offset = serde_json::Map::new();
                        offset.insert("kafka_offset".into(), committed.offset.into());
                        ConnectorOffset { partition, offset }
                    })
                    .collect()
            }
        };
        Ok(ConnectorOffsets { offsets })
    }

    /// KIP-875's `PATCH /offsets`: sets (or with `None` removes) offsets of a stopped
    /// connector; Kafka's message on success.
    pub async fn alter_offsets(
        &self,
        name: &str,
        offsets: Vec<(JsonMap, Option<JsonMap>)>,
    ) -> Result<String, ConnectError> {
        if offsets.is_empty() {
            return Err(ConnectError::BadRequest(
                "Partitions / offsets need to be provided for an alter offsets request".into(),
            ));
        }
        self.call(ModifyOffsets(name.into(), Some(offsets))).await?
    }

    /// KIP-875's `DELETE /offsets`: forgets every offset of a stopped connector.
    pub async fn reset_offsets(&self, name: &str) -> Result<String, ConnectError> {
        self.call(ModifyOffsets(name.into(), None)).await?
    }

    /// `PUT /topics/reset`: forgets the connector's active topics.
    pub async fn reset_active_topics(&self, name: &str) -> Result<(), ConnectError> {
        self.call(ResetTopics(name.into())).await?
    }

    /// Kafka's config validation of a connector plugin.
    pub fn validate(&self, plugin: &str, config: &Config) -> Result<ConfigInfos, ConnectError> {
        crate::validate::validate(&self.shared.plugins, plugin, config)
    }

    /// The Kafka cluster id, as `GET /` shows it.
    pub async fn kafka_cluster_id(&self) -> Option<String> {
        let admin = Admin::connect(ClientConfig::new(&self.shared.config.bootstrap_servers))
            .await
            .ok()?;
        admin
            .cluster()
            .metadata(Some(&[]), false)
            .await
            .ok()?
            .cluster_id
    }

    /// Stops every task (committing offsets) and connector, then the worker.
    pub async fn stop(&self) {
        let timeout = Duration::from_millis(
            self.shared
                .config
                .task_shutdown_timeout_ms
                .saturating_mul(4)
                .max(1000),
        );
        let stopped = match &self.addr {
            WorkerAddr::Standalone(a) => a.ask(StopAll, timeout).await,
            WorkerAddr::Distributed { addr, member_stop } => {
                let stopped = addr.ask(StopAll, timeout).await;
                // Then leave the group, so the others take the work over at once.
                let _ = member_stop.send(true);
                stopped
            }
        };
        if let Err(e) = stopped {
            tracing::warn!(error = %e, "worker did not stop cleanly");
        }
    }
}
