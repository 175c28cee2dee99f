//! The REST API's operations on the distributed herder: reads from its view of the
//! topics, writes (done by the leader) to the config and status topics.

use bytes::Bytes;
use runnel_actors::{Context, Handler};

use super::{not_found, not_leader, DistributedWorker, GetLeadership, Leadership};
use crate::api::ConnectorType;
use crate::distributed::records;
use crate::entities::{
    ConnectorInfo, ConnectorState, ConnectorStateInfo, TaskId, TaskInfo, TaskState,
};
use crate::error::ConnectError;
use crate::task::State;
use crate::validate::{find_plugin, validate_connector_config};
use crate::worker::{
    modify_offsets, Delete, GetTaskStatus, Info, List, ModifyOffsets, OffsetsOf, Put, ResetTopics,
    Restart, RestartTask, SetTarget, Status, TargetState, Tasks, Topics,
};

impl DistributedWorker {
    /// The leader's restart: the plan from the statuses, and the request in the config
    /// topic for every worker to act on.
    async fn restart(
        &mut self,
        msg: Restart,
        ctx: &mut Context<Self>,
    ) -> Result<ConnectorStateInfo, ConnectError> {
        self.require_leader()?;
        self.read_config(ctx).await?;
        let mut status = self
            .status_of(&msg.name)
            .map_err(|_| not_found(&msg.name))?;
        let failed = State::Failed.name();
        if !msg.only_failed || status.connector.state == failed {
            status.connector.state = State::Restarting.name().into();
        }
        for t in &mut status.tasks {
            if msg.include_tasks && (!msg.only_failed || t.state == failed) {
                t.state = State::Restarting.name().into();
            }
        }
        self.config_log
            .send(
                Bytes::from(records::restart_key(&msg.name)),
                Some(Bytes::from(records::restart_value(
                    msg.include_tasks,
                    msg.only_failed,
                ))),
            )
            .await?;
        Ok(status)
    }

    /// Kafka's task restart: by its owner; the leader points elsewhere to the owner.
    async fn restart_task(
        &mut self,
        name: &str,
        task: u32,
        ctx: &mut Context<Self>,
    ) -> Result<(), ConnectError> {
        let id = TaskId {
            connector: name.to_string(),
            task,
        };
        let known = self.info(name)?.tasks.contains(&id);
        if !known {
            return Err(ConnectError::NotFound(format!("Unknown task: {id}")));
        }
        if self.assignment.tasks.contains(&id) {
            self.stop_task(&id, false).await;
            self.start_task(&id, ctx).await;
            return Ok(());
        }
        match (&self.leadership, self.task_owner_urls.get(&id)) {
            (Leadership::Leader, Some(url)) => Err(ConnectError::RequestTarget {
                url: url.clone(),
                message: format!("Task {id} is not assigned to the leader"),
            }),
            (Leadership::Follower(url), _) => Err(ConnectError::RequestTarget {
                url: url.clone(),
                message: "Cannot restart task since it is not assigned to this member".into(),
            }),
            _ => Err(not_leader()),
        }
    }

    fn info(&self, name: &str) -> Result<ConnectorInfo, ConnectError> {
        let config = self
            .config
            .connectors
            .get(name)
            .ok_or_else(|| not_found(name))?;
        let count = self.config.tasks.get(name).map_or(0, Vec::len);
        let connector_type = find_plugin(&self.shared.plugins, config)
            .map(|p| p.connector_type.name().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Ok(ConnectorInfo {
            name: name.to_string(),
            config: config.clone(),
            tasks: (0..count as u32)
                .map(|task| TaskId {
                    connector: name.to_string(),
                    task,
                })
                .collect(),
            connector_type,
        })
    }

    /// Kafka's status: 404 until the connector's owner wrote one; every task status the
    /// status topic holds for it (a stopped connector's tasks too), by task id.
    fn status_of(&self, name: &str) -> Result<ConnectorStateInfo, ConnectError> {
        let missing = || ConnectError::NotFound(format!("No status found for connector {name}"));
        let info = self.info(name).map_err(|_| missing())?;
        let c = self.status.connectors.get(name).ok_or_else(missing)?;
        let version = self.plugin_of(name).ok().map(|p| p.version);
        Ok(ConnectorStateInfo {
            name: name.to_string(),
            connector: ConnectorState {
                state: c.state.clone(),
                worker_id: c.worker_id.clone(),
                trace: c.trace.clone(),
                version: version.clone(),
            },
            tasks: self
                .status
                .tasks
                .iter()
                .filter(|(id, _)| id.connector == name)
                .map(|(id, t)| TaskState {
                    id: id.task,
                    state: t.state.clone(),
                    worker_id: t.worker_id.clone(),
                    trace: t.trace.clone(),
                    version: version.clone(),
                })
                .collect(),
            connector_type: info.connector_type,
        })
    }

    async fn put(
        &mut self,
        msg: Put,
        ctx: &mut Context<Self>,
    ) -> Result<(bool, ConnectorInfo), ConnectError> {
        self.require_leader()?;
        validate_connector_config(&self.shared.plugins, &msg.name, &msg.config)?;
        self.read_config(ctx).await?;
        let exists = self.config.connectors.contains_key(&msg.name);
        if exists && !msg.allow_replace {
            return Err(ConnectError::AlreadyExists(format!(
                "Connector {} already exists",
                msg.name
            )));
        }
        if let (false, Some(initial)) = (exists, msg.initial) {
            self.config_log
                .send(
                    Bytes::from(records::target_state_key(&msg.name)),
                    Some(Bytes::from(records::target_state_value(initial))),
                )
                .await?;
        }
        self.config_log
            .send(
                Bytes::from(records::connector_key(&msg.name)),
                Some(Bytes::from(records::properties_value(&msg.config))),
            )
            .await?;
        self.read_config(ctx).await?;
        Ok((!exists, self.info(&msg.name)?))
    }

    async fn delete(&mut self, name: &str, ctx: &mut Context<Self>) -> Result<(), ConnectError> {
        self.require_leader()?;
        self.read_config(ctx).await?;
        self.info(name)?;
        // Its statuses go after the rebalance this causes (`clean_statuses`).
        for key in [
            records::connector_key(name),
            records::target_state_key(name),
        ] {
            self.config_log.send(Bytes::from(key), None).await?;
        }
        self.read_config(ctx).await?;
        Ok(())
    }

    async fn set_target(
        &mut self,
        name: &str,
        target: TargetState,
        ctx: &mut Context<Self>,
    ) -> Result<(), ConnectError> {
        // As Kafka: pause and resume are written by whichever worker is asked; stop needs
        // the leader.
        if target == TargetState::Stopped {
            self.require_leader()?;
        }
        self.read_config(ctx).await?;
        if !self.config.connectors.contains_key(name) {
            return Err(not_found(name));
        }
        if target == TargetState::Stopped {
            // KIP-875, as Kafka: no tasks first, then the state.
            self.write_task_configs(name, &[]).await?;
        }
        self.config_log
            .send(
                Bytes::from(records::target_state_key(name)),
                Some(Bytes::from(records::target_state_value(target))),
            )
            .await?;
        self.read_config(ctx).await?;
        Ok(())
    }
}

impl Handler<Put> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: Put,
        ctx: &mut Context<Self>,
    ) -> Result<(bool, ConnectorInfo), ConnectError> {
        self.put(msg, ctx).await
    }
}

impl Handler<Delete> for DistributedWorker {
    async fn handle(&mut self, msg: Delete, ctx: &mut Context<Self>) -> Result<(), ConnectError> {
        self.delete(&msg.0, ctx).await
    }
}

impl Handler<List> for DistributedWorker {
    async fn handle(&mut self, _msg: List, _ctx: &mut Context<Self>) -> Vec<String> {
        self.config.connectors.keys().cloned().collect()
    }
}

impl Handler<Info> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: Info,
        _ctx: &mut Context<Self>,
    ) -> Result<ConnectorInfo, ConnectError> {
        self.info(&msg.0)
    }
}

impl Handler<Status> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: Status,
        _ctx: &mut Context<Self>,
    ) -> Result<ConnectorStateInfo, ConnectError> {
        self.status_of(&msg.0)
    }
}

impl Handler<GetTaskStatus> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: GetTaskStatus,
        _ctx: &mut Context<Self>,
    ) -> Result<TaskState, ConnectError> {
        self.status_of(&msg.0)?
            .tasks
            .into_iter()
            .find(|t| t.id == msg.1)
            .ok_or_else(|| {
                ConnectError::NotFound(format!("No status found for task {}-{}", msg.0, msg.1))
            })
    }
}

impl Handler<Tasks> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: Tasks,
        _ctx: &mut Context<Self>,
    ) -> Result<Vec<TaskInfo>, ConnectError> {
        self.info(&msg.0)?;
        Ok(self
            .config
            .tasks
            .get(&msg.0)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, config)| TaskInfo {
                id: TaskId {
                    connector: msg.0.clone(),
                    task: i as u32,
                },
                config: config.clone(),
            })
            .collect())
    }
}

impl Handler<SetTarget> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: SetTarget,
        ctx: &mut Context<Self>,
    ) -> Result<(), ConnectError> {
        self.set_target(&msg.0, msg.1, ctx).await
    }
}

impl Handler<Restart> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: Restart,
        ctx: &mut Context<Self>,
    ) -> Result<ConnectorStateInfo, ConnectError> {
        self.restart(msg, ctx).await
    }
}

impl Handler<RestartTask> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: RestartTask,
        ctx: &mut Context<Self>,
    ) -> Result<(), ConnectError> {
        self.restart_task(&msg.0, msg.1, ctx).await
    }
}

impl Handler<Topics> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: Topics,
        _ctx: &mut Context<Self>,
    ) -> Result<Vec<String>, ConnectError> {
        self.info(&msg.0)?;
        Ok(self
            .status
            .topics
            .get(&msg.0)
            .into_iter()
            .flatten()
            .cloned()
            .collect())
    }
}

impl Handler<ResetTopics> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: ResetTopics,
        _ctx: &mut Context<Self>,
    ) -> Result<(), ConnectError> {
        // As Kafka: whichever worker is asked writes the tombstones.
        self.info(&msg.0)?;
        let topics: Vec<String> = self
            .status
            .topics
            .get(&msg.0)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        for topic in topics {
            self.write_status(records::topic_status_key(&topic, &msg.0), None)
                .await;
        }
        Ok(())
    }
}

impl Handler<OffsetsOf> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: OffsetsOf,
        _ctx: &mut Context<Self>,
    ) -> Result<ConnectorType, ConnectError> {
        Ok(self.plugin_of(&msg.0)?.connector_type)
    }
}

impl Handler<ModifyOffsets> for DistributedWorker {
    async fn handle(
        &mut self,
        msg: ModifyOffsets,
        ctx: &mut Context<Self>,
    ) -> Result<String, ConnectError> {
        let ModifyOffsets(name, offsets) = msg;
        self.require_leader()?;
        self.read_config(ctx).await?;
        let plugin = self.plugin_of(&name)?;
        let no_tasks = self.config.tasks.get(&name).is_none_or(Vec::is_empty);
        if self.config.target(&name) != TargetState::Stopped || !no_tasks {
            return Err(ConnectError::BadRequest(format!(
                "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the specified connector by issuing a 'PUT' request to the '/connectors/{name}/stop' endpoint"
            )));
        }
        // What other workers committed before the connector stopped.
        self.shared.offsets.refresh().await?;
        let config = self.config.connectors[&name].clone();
        modify_offsets(&self.shared, &name, &plugin, &config, offsets).await
    }
}

impl Handler<GetLeadership> for DistributedWorker {
    async fn handle(&mut self, _msg: GetLeadership, _ctx: &mut Context<Self>) -> Leadership {
        self.leadership.clone()
    }
}
