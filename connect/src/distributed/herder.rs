//! The distributed herder (Kafka's `DistributedHerder`): one actor per worker that reads
//! the config and status topics, runs the connectors and tasks the group's leader gave
//! it, computes the assignment when it leads, and answers the REST API. Its membership
//! runs in [`run_member`], a task of its own, since JoinGroup and SyncGroup wait for the
//! whole group and must not hold the actor's mailbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use runnel_actors::{Actor, Addr, Context, Handler, Message, Node, RestartPolicy};
use runnel_client::kafka::{Admin, ClientConfig, Cluster};
use tokio::sync::mpsc;
use tokio::time::Instant;

mod membership;
mod requests;

pub(crate) use membership::{leadership, run_member};

use super::assignor::Assignor;
use super::config::DistributedConfig;
use super::log::{ensure_topic, TopicLog};
use super::member::{Member, MemberConfig};
use super::protocol::{
    decode_metadata, encode_assignment, version_of, Assignment, ConnectorsAndTasks, WorkerState,
    CONFIG_MISMATCH, NO_ERROR,
};
use super::records::{self, ConfigChange, ConfigState, StatusRecord, StatusState};
use crate::api::{ConnectorType, PluginDesc, Plugins};
use crate::config::{get_int, Config};
use crate::entities::TaskId;
use crate::error::ConnectError;
use crate::offsets::OffsetStore;
use crate::settings::Shared;
use crate::task::{spawn_task, State, TaskHandle, TaskSpec};
use crate::validate::find_plugin;
pub(crate) use crate::worker::not_found;
use crate::worker::{
    ConnectorActor, StartConnector, StatusChanged, StopAll, StopConnector, TargetState, TopicUsed,
    WORKER_MAILBOX,
};

/// How often the herder reads what the config and status topics gained.
pub const TICK_MS: u64 = 250;
/// Bound on pending rejoin requests; one pending is as good as many.
const REJOIN_QUEUE: usize = 1;
/// How long the member loop waits for the herder to answer it.
const HERDER_ASK_MS: u64 = 120_000;
/// Pause after a failed join before trying again.
const JOIN_BACKOFF_MS: u64 = 500;

/// Who leads the group, as far as this worker knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// This worker leads: writes are done here.
    Leader,
    /// Another worker leads, reached at this URL.
    Follower(String),
    /// A rebalance is under way or none has completed: Kafka answers 409.
    Rebalancing,
}

struct RunningConnector {
    actor: Option<Addr<ConnectorActor>>,
}

struct RunningTask {
    handle: Option<TaskHandle>,
    generation: u64,
    config: Config,
}

/// The distributed herder's actor.
pub struct DistributedWorker {
    shared: Arc<Shared>,
    dist: Arc<DistributedConfig>,
    config_log: TopicLog,
    status_log: TopicLog,
    config: ConfigState,
    status: StatusState,
    assignor: Assignor,
    started: Instant,
    leadership: Leadership,
    member_id: String,
    generation: i32,
    last_completed_generation: i32,
    /// What the group gave this worker: the connectors and tasks it runs.
    assignment: ConnectorsAndTasks,
    connectors: BTreeMap<String, RunningConnector>,
    tasks: BTreeMap<TaskId, RunningTask>,
    next_task_generation: u64,
    rejoin: mpsc::Sender<&'static str>,
    /// The leader's view of where each task runs: its worker's URL.
    task_owner_urls: BTreeMap<TaskId, String>,
}

impl Actor for DistributedWorker {}

macro_rules! message {
    ($t:ty => $r:ty) => {
        impl Message for $t {
            type Reply = $r;
        }
    };
}

/// The member loop asks for the metadata to join with.
pub(crate) struct Snapshot;
message!(Snapshot => WorkerState);
/// The member loop, leading, asks for every member's assignment.
pub(crate) struct Lead {
    generation: i32,
    leader_id: String,
    protocol: String,
    members: Vec<(String, Vec<u8>)>,
}
message!(Lead => Result<Vec<(String, Vec<u8>)>, ConnectError>);
/// A rebalance started (JoinGroup sent).
pub(crate) struct Rebalancing;
message!(Rebalancing => ());
/// SyncGroup's answer.
pub(crate) struct Assigned {
    generation: i32,
    member_id: String,
    assignment: Assignment,
}
message!(Assigned => ());
#[derive(Clone)]
pub(crate) struct Tick;
message!(Tick => ());
pub(crate) struct GetLeadership;
message!(GetLeadership => Leadership);

fn not_leader() -> ConnectError {
    ConnectError::Conflict(
        "Cannot complete request because of a conflicting operation (e.g. worker rebalance)".into(),
    )
}

impl DistributedWorker {
    fn request_rejoin(&self, reason: &'static str) {
        // Full means a rejoin is already pending.
        let _ = self.rejoin.try_send(reason);
    }

    fn now_ms(&self) -> i64 {
        // Never 0, which the assignor reads as "no rebalance scheduled".
        self.started.elapsed().as_millis() as i64 + 1
    }

    fn require_leader(&self) -> Result<(), ConnectError> {
        match self.leadership {
            Leadership::Leader => Ok(()),
            _ => Err(not_leader()),
        }
    }

    fn plugin_of(&self, name: &str) -> Result<PluginDesc, ConnectError> {
        let config = self
            .config
            .connectors
            .get(name)
            .ok_or_else(|| not_found(name))?;
        Ok(find_plugin(&self.shared.plugins, config)?.clone())
    }

    /// Reads what the config topic gained and acts on each change.
    async fn read_config(&mut self, ctx: &mut Context<Self>) -> Result<(), ConnectError> {
        let records = self.config_log.read_to_end().await?;
        let mut changes = Vec::new();
        for r in records {
            let Some(key) = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else {
                continue;
            };
            let existed = key
                .strip_prefix(records::CONNECTOR_PREFIX)
                .is_some_and(|n| self.config.connectors.contains_key(n));
            let change = self.config.apply(r.offset, key, r.value.as_deref());
            changes.push((change, existed));
        }
        for (change, existed) in changes {
            self.on_config_change(change, existed, ctx).await;
        }
        Ok(())
    }

    async fn on_config_change(
        &mut self,
        change: ConfigChange,
        existed: bool,
        ctx: &mut Context<Self>,
    ) {
        match change {
            ConfigChange::None => {}
            ConfigChange::Connector(name) => {
                if !existed {
                    self.request_rejoin("connector created");
                } else if self.connectors.contains_key(&name) {
                    // A new config: the connector starts again and may hand out new tasks.
                    self.stop_connector(&name).await;
                    self.start_connector(&name).await;
                }
            }
            ConfigChange::Removed(_) => self.request_rejoin("connector deleted"),
            ConfigChange::Tasks(name) => {
                let restart: Vec<TaskId> = self
                    .tasks
                    .iter()
                    .filter(|(id, t)| {
                        id.connector == name
                            && self
                                .config
                                .tasks
                                .get(&name)
                                .and_then(|c| c.get(id.task as usize))
                                .is_some_and(|c| *c != t.config)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in restart {
                    self.stop_task(&id, false).await;
                    self.start_task(&id, ctx).await;
                }
                self.request_rejoin("task configs changed");
            }
            ConfigChange::Target(name) => self.on_target_change(&name).await,
            ConfigChange::Restart {
                name,
                include_tasks,
                only_failed,
            } => {
                self.on_restart(&name, include_tasks, only_failed, ctx)
                    .await
            }
        }
    }

    /// KIP-745 on each worker: restart what this worker runs of the connector, as the
    /// request and the statuses say.
    async fn on_restart(
        &mut self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
        ctx: &mut Context<Self>,
    ) {
        let failed = |s: Option<&StatusRecord>| s.is_some_and(|s| s.state == State::Failed.name());
        if self.connectors.contains_key(name)
            && (!only_failed || failed(self.status.connectors.get(name)))
        {
            self.put_connector_status(name, State::Restarting, None)
                .await;
            self.stop_connector(name).await;
            self.start_connector(name).await;
        }
        if !include_tasks {
            return;
        }
        let mine: Vec<TaskId> = self
            .assignment
            .tasks
            .iter()
            .filter(|t| t.connector == name)
            .filter(|t| !only_failed || failed(self.status.tasks.get(*t)))
            .cloned()
            .collect();
        for id in mine {
            self.put_task_status(&id, State::Restarting, None).await;
            self.stop_task(&id, false).await;
            self.start_task(&id, ctx).await;
        }
    }

    async fn on_target_change(&mut self, name: &str) {
        let target = self.config.target(name);
        if self.connectors.contains_key(name) {
            let running = self.connectors[name].actor.is_some();
            match (target, running) {
                (TargetState::Stopped, true) => {
                    self.stop_connector(name).await;
                    self.put_connector_status(name, State::Stopped, None).await;
                }
                (TargetState::Stopped, false) => {}
                (_, false) => self.start_connector(name).await,
                (t, true) => {
                    let state = if t == TargetState::Paused {
                        State::Paused
                    } else {
                        State::Running
                    };
                    self.put_connector_status(name, state, None).await;
                }
            }
        }
        let paused = target == TargetState::Paused;
        let handles: Vec<TaskHandle> = self
            .tasks
            .iter()
            .filter(|(id, _)| id.connector == name)
            .filter_map(|(_, t)| t.handle.clone())
            .collect();
        for h in handles {
            h.set_paused(paused).await;
        }
        // A stopped connector's tasks leave the assignment, a resumed one's come back.
        self.request_rejoin("target state changed");
    }

    fn read_status(&mut self, records: Vec<runnel_client::kafka::ConsumerRecord>) {
        for r in records {
            if let Some(key) = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) {
                self.status.apply(key, r.value.as_deref());
            }
        }
    }

    async fn write_status(&mut self, key: String, status: Option<StatusRecord>) {
        let value = status
            .as_ref()
            .map(|s| Bytes::from(records::status_value(s)));
        if let Err(e) = self.status_log.send(Bytes::from(key.clone()), value).await {
            tracing::warn!(%key, error = %e, "status not written to the status topic");
        }
        // Our own view follows at once; the topic has it for the other workers.
        self.status
            .apply(&key, status.map(|s| records::status_value(&s)).as_deref());
    }

    fn status_record(&self, state: State, trace: Option<String>) -> StatusRecord {
        StatusRecord {
            state: state.name().to_string(),
            trace,
            worker_id: self.shared.worker_id.clone(),
            generation: self.generation,
        }
    }

    async fn put_connector_status(&mut self, name: &str, state: State, trace: Option<String>) {
        if state == State::Unassigned && !self.may_overwrite(self.status.connectors.get(name)) {
            return;
        }
        let s = self.status_record(state, trace);
        self.write_status(records::connector_status_key(name), Some(s))
            .await;
    }

    async fn put_task_status(&mut self, id: &TaskId, state: State, trace: Option<String>) {
        if state == State::Unassigned && !self.may_overwrite(self.status.tasks.get(id)) {
            return;
        }
        let s = self.status_record(state, trace);
        self.write_status(records::task_status_key(id), Some(s))
            .await;
    }

    /// Kafka's safe write, used for UNASSIGNED: a worker giving work up never overwrites
    /// the status of a newer owner (another worker, a later generation).
    fn may_overwrite(&self, current: Option<&StatusRecord>) -> bool {
        current
            .is_none_or(|c| c.worker_id == self.shared.worker_id || c.generation <= self.generation)
    }

    /// Starts a connector this worker was assigned; writes its task configs if they
    /// differ from the committed ones.
    async fn start_connector(&mut self, name: &str) {
        self.connectors
            .insert(name.to_string(), RunningConnector { actor: None });
        let target = self.config.target(name);
        if target == TargetState::Stopped {
            self.put_connector_status(name, State::Stopped, None).await;
            return;
        }
        let plugin = match self.plugin_of(name) {
            Ok(p) => p,
            Err(e) => {
                self.put_connector_status(name, State::Failed, Some(e.trace()))
                    .await;
                return;
            }
        };
        let config = self.config.connectors[name].clone();
        let max_tasks = get_int(&config, "tasks.max", 1).unwrap_or(1).max(1) as usize;
        let factory = plugin.factory;
        let actor = self.shared.node.spawn_or_give_up(
            format!("connect-connector-{name}"),
            8,
            RestartPolicy::never(),
            move || ConnectorActor {
                instance: factory(),
            },
            |error| tracing::error!(%error, "connector actor failed"),
        );
        let timeout =
            Duration::from_millis(self.shared.config.task_shutdown_timeout_ms.max(30_000));
        let started = actor
            .ask(StartConnector { config, max_tasks }, timeout)
            .await;
        if let Some(c) = self.connectors.get_mut(name) {
            c.actor = Some(actor);
        }
        match started {
            Ok(Ok(configs)) => {
                let state = if target == TargetState::Paused {
                    State::Paused
                } else {
                    State::Running
                };
                self.put_connector_status(name, state, None).await;
                let task_class = (plugin.factory)().task_class();
                let configs: Vec<Config> = configs
                    .into_iter()
                    .take(max_tasks)
                    .map(|mut c| {
                        c.insert("task.class".into(), task_class.clone());
                        c
                    })
                    .collect();
                if self.config.tasks.get(name) != Some(&configs) {
                    if let Err(e) = self.write_task_configs(name, &configs).await {
                        tracing::warn!(connector = name, error = %e, "task configs not written");
                    }
                }
            }
            Ok(Err(e)) => {
                self.put_connector_status(name, State::Failed, Some(e.trace()))
                    .await
            }
            Err(e) => {
                let trace = format!("runnel_connect connector actor failed: {e}");
                self.put_connector_status(name, State::Failed, Some(trace))
                    .await;
            }
        }
    }

    /// Kafka forwards task configs to the leader, which writes them; we write them from
    /// the connector's worker (no KIP-507 request signing yet), tasks first, then the
    /// commit record that makes them visible at once.
    async fn write_task_configs(
        &mut self,
        name: &str,
        configs: &[Config],
    ) -> Result<(), ConnectError> {
        for (i, c) in configs.iter().enumerate() {
            let id = TaskId {
                connector: name.to_string(),
                task: i as u32,
            };
            self.config_log
                .send(
                    Bytes::from(records::task_key(&id)),
                    Some(Bytes::from(records::properties_value(c))),
                )
                .await?;
        }
        self.config_log
            .send(
                Bytes::from(records::commit_key(name)),
                Some(Bytes::from(records::commit_value(configs.len()))),
            )
            .await
    }

    async fn stop_connector(&mut self, name: &str) {
        let Some(actor) = self.connectors.get_mut(name).and_then(|c| c.actor.take()) else {
            return;
        };
        let timeout = Duration::from_millis(self.shared.config.task_shutdown_timeout_ms.max(1));
        let _ = actor.ask(StopConnector, timeout).await;
    }

    async fn start_task(&mut self, id: &TaskId, ctx: &mut Context<Self>) {
        let Some(me) = ctx.addr() else { return };
        let (Some(connector_config), Some(task_config)) = (
            self.config.connectors.get(&id.connector).cloned(),
            self.config
                .tasks
                .get(&id.connector)
                .and_then(|t| t.get(id.task as usize))
                .cloned(),
        ) else {
            // Not in the config we read: the next rebalance sorts it out.
            self.request_rejoin("assigned a task the config does not hold");
            return;
        };
        let plugin = match self.plugin_of(&id.connector) {
            Ok(p) => p,
            Err(e) => {
                self.put_task_status(id, State::Failed, Some(e.trace()))
                    .await;
                return;
            }
        };
        if plugin.connector_type == ConnectorType::Source {
            // Offsets another worker committed before the task moved here.
            if let Err(e) = self.shared.offsets.refresh().await {
                self.put_task_status(id, State::Failed, Some(e.trace()))
                    .await;
                return;
            }
        }
        self.next_task_generation += 1;
        let generation = self.next_task_generation;
        let spec = TaskSpec {
            id: id.clone(),
            generation,
            connector_config,
            task_config: task_config.clone(),
            plugin,
            start_paused: self.config.target(&id.connector) == TargetState::Paused,
        };
        let handle = spawn_task(&self.shared, Arc::new(me), spec);
        self.tasks.insert(
            id.clone(),
            RunningTask {
                handle: Some(handle),
                generation,
                config: task_config,
            },
        );
    }

    /// Stops a task (it commits its offsets); `unassigned` reports it as Kafka does when
    /// a rebalance takes it away.
    async fn stop_task(&mut self, id: &TaskId, unassigned: bool) {
        let Some(task) = self.tasks.remove(id) else {
            return;
        };
        if let Some(h) = task.handle {
            h.stop(Duration::from_millis(
                self.shared.config.task_shutdown_timeout_ms,
            ))
            .await;
        }
        // A deleted connector's statuses are tombstoned; do not bring them back.
        if unassigned && self.config.connectors.contains_key(&id.connector) {
            self.put_task_status(id, State::Unassigned, None).await;
        }
    }

    async fn lead(
        &mut self,
        msg: Lead,
        ctx: &mut Context<Self>,
    ) -> Result<Vec<(String, Vec<u8>)>, ConnectError> {
        let version = version_of(&msg.protocol)
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                ConnectError::Worker(format!("the group chose protocol {:?}", msg.protocol))
            })?;
        let mut states = BTreeMap::new();
        for (member, metadata) in &msg.members {
            let state =
                decode_metadata(metadata).map_err(|e| ConnectError::Worker(e.to_string()))?;
            states.insert(member.clone(), state);
        }
        let leader_url = states
            .get(&msg.leader_id)
            .map(|s| s.url.clone())
            .ok_or_else(|| ConnectError::Worker("the leader is not among the members".into()))?;
        let max_offset = states.values().map(|s| s.config_offset).max().unwrap_or(0);
        if self.config.offset < max_offset {
            self.read_config(ctx).await?;
        }
        let (error, cluster) = if self.config.offset < max_offset {
            // Behind a member even after reading: tell everyone to read and rejoin.
            (CONFIG_MISMATCH, None)
        } else {
            let members: BTreeMap<String, ConnectorsAndTasks> = states
                .iter()
                .map(|(m, s)| (m.clone(), s.assignment.clone()))
                .collect();
            let configured = self.config.configured();
            let cluster = self.assignor.assign(
                self.now_ms(),
                &configured,
                self.last_completed_generation,
                msg.generation,
                &members,
            );
            self.task_owner_urls = cluster
                .all
                .iter()
                .flat_map(|(member, set)| {
                    let url = states[member].url.clone();
                    set.tasks.iter().map(move |t| (t.clone(), url.clone()))
                })
                .collect();
            (NO_ERROR, Some(cluster))
        };
        let offset = self.config.offset.max(max_offset);
        Ok(states
            .keys()
            .map(|member| {
                let (assigned, revoked, delay_ms) = match &cluster {
                    Some(c) => (
                        c.assigned.get(member).cloned().unwrap_or_default(),
                        c.revoked.get(member).cloned().unwrap_or_default(),
                        c.delay_ms,
                    ),
                    None => Default::default(),
                };
                let a = Assignment {
                    version,
                    error,
                    leader: msg.leader_id.clone(),
                    leader_url: leader_url.clone(),
                    config_offset: offset,
                    assigned,
                    revoked,
                    delay_ms,
                };
                (member.clone(), encode_assignment(&a))
            })
            .collect())
    }

    async fn on_assigned(&mut self, msg: Assigned, ctx: &mut Context<Self>) {
        let a = msg.assignment;
        if a.error == CONFIG_MISMATCH {
            if let Err(e) = self.read_config(ctx).await {
                tracing::warn!(error = %e, "config topic not read");
            }
            self.request_rejoin("behind the leader's config");
            return;
        }
        self.generation = msg.generation;
        self.member_id = msg.member_id.clone();
        self.last_completed_generation = msg.generation;
        self.leadership = if a.leader == msg.member_id {
            Leadership::Leader
        } else {
            Leadership::Follower(a.leader_url.clone())
        };
        if self.config.offset < a.config_offset {
            if let Err(e) = self.read_config(ctx).await {
                tracing::warn!(error = %e, "config topic not read");
            }
        }
        for id in &a.revoked.tasks {
            self.stop_task(id, true).await;
        }
        for name in &a.revoked.connectors {
            self.stop_connector(name).await;
            self.connectors.remove(name);
            if self.config.connectors.contains_key(name) {
                self.put_connector_status(name, State::Unassigned, None)
                    .await;
            }
        }
        self.assignment.remove_all(&a.revoked);
        self.assignment.extend(&a.assigned);
        tracing::info!(
            generation = msg.generation,
            leader = self.leadership == Leadership::Leader,
            connectors = ?self.assignment.connectors,
            tasks = self.assignment.tasks.len(),
            revoked = a.revoked.connectors.len() + a.revoked.tasks.len(),
            delay_ms = a.delay_ms,
            "assignment"
        );
        for name in &a.assigned.connectors {
            self.start_connector(name).await;
        }
        for id in &a.assigned.tasks {
            self.start_task(id, ctx).await;
        }
        if self.leadership == Leadership::Leader {
            self.clean_statuses().await;
        }
        if !a.revoked.is_empty() {
            // KIP-415: what was revoked is stopped; rejoin so it can go elsewhere.
            self.request_rejoin("revoked");
        }
    }

    /// The leader, once a rebalance completed, tombstones (Kafka's DESTROYED) the statuses
    /// of connectors that are gone and of tasks their connector no longer has. After the
    /// rebalance, so a previous owner's UNASSIGNED cannot come after the tombstone.
    async fn clean_statuses(&mut self) {
        let gone_connectors: Vec<String> = self
            .status
            .connectors
            .keys()
            .filter(|c| !self.config.connectors.contains_key(*c))
            .cloned()
            .collect();
        let gone_tasks: Vec<TaskId> = self
            .status
            .tasks
            .keys()
            .filter(|t| {
                self.config
                    .tasks
                    .get(&t.connector)
                    .is_none_or(|tasks| t.task as usize >= tasks.len())
            })
            .cloned()
            .collect();
        for name in gone_connectors {
            self.write_status(records::connector_status_key(&name), None)
                .await;
        }
        for id in gone_tasks {
            self.write_status(records::task_status_key(&id), None).await;
        }
    }
}

impl Handler<Tick> for DistributedWorker {
    async fn handle(&mut self, _msg: Tick, ctx: &mut Context<Self>) {
        if let Err(e) = self.read_config(ctx).await {
            tracing::warn!(error = %e, "config topic not read");
        }
        match self.status_log.read_to_end().await {
            Ok(records) => self.read_status(records),
            Err(e) => tracing::warn!(error = %e, "status topic not read"),
        }
    }
}

impl Handler<Snapshot> for DistributedWorker {
    async fn handle(&mut self, _msg: Snapshot, _ctx: &mut Context<Self>) -> WorkerState {
        WorkerState {
            url: self.dist.advertised_url.clone(),
            config_offset: self.config.offset,
            assignment: self.assignment.clone(),
        }
    }
}

impl Handler<Lead> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: Lead,
        ctx: &mut Context<Self>,
    ) -> Result<Vec<(String, Vec<u8>)>, ConnectError> {
        self.lead(msg, ctx).await
    }
}

impl Handler<Rebalancing> for DistributedWorker {
    async fn handle(&mut self, _msg: Rebalancing, _ctx: &mut Context<Self>) {
        self.leadership = Leadership::Rebalancing;
    }
}

impl Handler<Assigned> for DistributedWorker {
    async fn handle(&mut self, msg: Assigned, ctx: &mut Context<Self>) {
        self.on_assigned(msg, ctx).await;
    }
}

impl Handler<StatusChanged> for DistributedWorker {
    async fn handle(&mut self, StatusChanged(msg): StatusChanged, _ctx: &mut Context<Self>) {
        let current = self
            .tasks
            .get(&msg.id)
            .is_some_and(|t| t.generation == msg.generation);
        if !current {
            return;
        }
        if msg.state == State::Failed {
            if let Some(t) = self.tasks.get_mut(&msg.id) {
                t.handle = None;
            }
        }
        self.put_task_status(&msg.id, msg.state, msg.trace).await;
    }
}

impl Handler<TopicUsed> for DistributedWorker {
    async fn handle(&mut self, msg: TopicUsed, _ctx: &mut Context<Self>) {
        let known = self
            .status
            .topics
            .get(&msg.task.connector)
            .is_some_and(|t| t.contains(&msg.topic));
        if known || !self.config.connectors.contains_key(&msg.task.connector) {
            return;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let key = records::topic_status_key(&msg.topic, &msg.task.connector);
        let value = records::topic_status_value(&msg.topic, &msg.task, now_ms);
        if let Err(e) = self
            .status_log
            .send(Bytes::from(key.clone()), Some(Bytes::from(value.clone())))
            .await
        {
            tracing::warn!(%key, error = %e, "active topic not written to the status topic");
            return;
        }
        self.status.apply(&key, Some(&value));
    }
}

impl Handler<StopAll> for DistributedWorker {
    async fn handle(&mut self, _msg: StopAll, ctx: &mut Context<Self>) {
        let ids: Vec<TaskId> = self.tasks.keys().cloned().collect();
        for id in ids {
            self.stop_task(&id, true).await;
        }
        let names: Vec<String> = self.connectors.keys().cloned().collect();
        for name in names {
            self.stop_connector(&name).await;
            self.put_connector_status(&name, State::Unassigned, None)
                .await;
        }
        self.connectors.clear();
        self.assignment = ConnectorsAndTasks::default();
        ctx.stop();
    }
}

/// What `start` builds: the herder's actor and what the handle shares.
pub(crate) struct Started {
    pub addr: Addr<DistributedWorker>,
    pub shared: Arc<Shared>,
    pub member_stop: tokio::sync::watch::Sender<bool>,
}

/// Creates the internal topics if missing, reads them, spawns the herder and its member
/// loop.
pub(crate) async fn start(
    node: &Node,
    dist: DistributedConfig,
    plugins: Plugins,
    disk: Arc<dyn runnel_storage::disk::Disk>,
    worker_id: String,
) -> Result<Started, ConnectError> {
    let client = ClientConfig::new(&dist.worker.bootstrap_servers)
        .with_client_id(&format!("connect-{worker_id}"));
    let admin = Admin::connect(client.clone()).await?;
    for spec in [&dist.config_topic, &dist.offset_topic, &dist.status_topic] {
        ensure_topic(&admin, spec).await?;
    }
    let mut config_log = TopicLog::open(client.clone(), &dist.config_topic.name).await?;
    let mut status_log = TopicLog::open(client.clone(), &dist.status_topic.name).await?;
    let offsets = Arc::new(
        OffsetStore::open_topic(TopicLog::open(client.clone(), &dist.offset_topic.name).await?)
            .await?,
    );
    let mut config = ConfigState::default();
    for r in config_log.read_to_end().await? {
        if let Some(key) = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) {
            config.apply(r.offset, key, r.value.as_deref());
        }
    }
    let mut status = StatusState::default();
    for r in status_log.read_to_end().await? {
        if let Some(key) = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) {
            status.apply(key, r.value.as_deref());
        }
    }
    let shared = Arc::new(Shared {
        config: dist.worker.clone(),
        plugins,
        disk,
        offsets,
        worker_id,
        node: node.clone(),
    });
    let (rejoin_tx, rejoin_rx) = mpsc::channel(REJOIN_QUEUE);
    let dist = Arc::new(dist);
    let mut once = Some(DistributedWorker {
        shared: shared.clone(),
        dist: dist.clone(),
        config_log,
        status_log,
        config,
        status,
        assignor: Assignor::new(dist.scheduled_rebalance_max_delay_ms),
        started: Instant::now(),
        leadership: Leadership::Rebalancing,
        member_id: String::new(),
        generation: -1,
        last_completed_generation: -1,
        assignment: ConnectorsAndTasks::default(),
        connectors: BTreeMap::new(),
        tasks: BTreeMap::new(),
        next_task_generation: 0,
        rejoin: rejoin_tx,
        task_owner_urls: BTreeMap::new(),
    });
    let addr = node.spawn(
        "connect-distributed-herder",
        WORKER_MAILBOX,
        RestartPolicy::never(),
        move || {
            once.take()
                .expect("the herder is spawned once and never restarted")
        },
    );
    addr.tell(StartTicks)
        .await
        .map_err(|e| ConnectError::Worker(e.to_string()))?;
    let (member_stop, stop_rx) = tokio::sync::watch::channel(false);
    let cluster = Cluster::connect(client).await?;
    let member = Member::new(
        cluster,
        MemberConfig {
            group_id: dist.group_id.clone(),
            session_timeout_ms: dist.session_timeout_ms,
            rebalance_timeout_ms: dist.rebalance_timeout_ms,
            heartbeat_interval_ms: dist.heartbeat_interval_ms,
        },
    );
    node.spawn_task(run_member(
        member,
        addr.clone(),
        dist.protocols.clone(),
        rejoin_rx,
        stop_rx,
    ));
    Ok(Started {
        addr,
        shared,
        member_stop,
    })
}

pub(crate) struct StartTicks;
message!(StartTicks => ());

impl Handler<StartTicks> for DistributedWorker {
    async fn handle(&mut self, _msg: StartTicks, ctx: &mut Context<Self>) {
        ctx.notify_interval(Duration::from_millis(TICK_MS), Tick);
    }
}
