//! The records of the config and status topics, in Apache Kafka's formats, and the state
//! they build. Kafka writes them through its internal converter, a `JsonConverter` with
//! `schemas.enable=false` (hard-wired since Kafka 3.0), so values are plain JSON objects:
//!
//! - config topic (string keys): `connector-NAME` → `{"properties":{...}}` (null: deleted);
//!   `restart-connector-NAME` → `{"include-tasks":..., "only-failed":...}` (KIP-745);
//!   `task-NAME-N` → `{"properties":{...}}`, applied only when `commit-NAME` →
//!   `{"tasks":N}` follows; `target-state-NAME` → `{"state":..., "state.v2":...}` (`state`
//!   says PAUSED for STOPPED, for workers older than KIP-875);
//! - status topic: `status-connector-NAME` and `status-task-NAME-N` →
//!   `{"state":..., "trace":..., "worker_id":..., "generation":N}`.
//!
//! A value wrapped in the converter's `{"schema":...,"payload":...}` envelope (workers
//! configured so before Kafka 3.0) is read too. Other keys (`session-key`,
//! `tasks-fencing-*`, `logger-cluster-*`) are skipped.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value as Json};

use crate::config::Config;
use crate::entities::TaskId;
use crate::worker::TargetState;

pub const CONNECTOR_PREFIX: &str = "connector-";
pub const TASK_PREFIX: &str = "task-";
pub const COMMIT_PREFIX: &str = "commit-";
pub const TARGET_STATE_PREFIX: &str = "target-state-";
pub const RESTART_PREFIX: &str = "restart-connector-";
pub const CONNECTOR_STATUS_PREFIX: &str = "status-connector-";
pub const TASK_STATUS_PREFIX: &str = "status-task-";
pub const TOPIC_STATUS_PREFIX: &str = "status-topic-";
const TOPIC_STATUS_SEPARATOR: &str = ":connector-";

pub fn connector_key(name: &str) -> String {
    format!("{CONNECTOR_PREFIX}{name}")
}

pub fn task_key(id: &TaskId) -> String {
    format!("{TASK_PREFIX}{}-{}", id.connector, id.task)
}

pub fn commit_key(name: &str) -> String {
    format!("{COMMIT_PREFIX}{name}")
}

pub fn target_state_key(name: &str) -> String {
    format!("{TARGET_STATE_PREFIX}{name}")
}

pub fn restart_key(name: &str) -> String {
    format!("{RESTART_PREFIX}{name}")
}

/// KIP-745's restart request: `{"include-tasks":..., "only-failed":...}`.
pub fn restart_value(include_tasks: bool, only_failed: bool) -> Vec<u8> {
    json!({ "include-tasks": include_tasks, "only-failed": only_failed })
        .to_string()
        .into_bytes()
}

pub fn connector_status_key(name: &str) -> String {
    format!("{CONNECTOR_STATUS_PREFIX}{name}")
}

pub fn task_status_key(id: &TaskId) -> String {
    format!("{TASK_STATUS_PREFIX}{}-{}", id.connector, id.task)
}

/// `{"properties":{...}}`, a connector's or a task's config.
pub fn properties_value(config: &Config) -> Vec<u8> {
    json!({ "properties": config }).to_string().into_bytes()
}

pub fn commit_value(tasks: usize) -> Vec<u8> {
    json!({ "tasks": tasks }).to_string().into_bytes()
}

pub fn target_state_value(state: TargetState) -> Vec<u8> {
    let v2 = state_name(state);
    let v1 = if state == TargetState::Stopped {
        "PAUSED"
    } else {
        v2
    };
    json!({ "state": v1, "state.v2": v2 })
        .to_string()
        .into_bytes()
}

fn state_name(state: TargetState) -> &'static str {
    match state {
        TargetState::Started => "STARTED",
        TargetState::Paused => "PAUSED",
        TargetState::Stopped => "STOPPED",
    }
}

fn parse_state(name: &str) -> Option<TargetState> {
    match name {
        "STARTED" => Some(TargetState::Started),
        "PAUSED" => Some(TargetState::Paused),
        "STOPPED" => Some(TargetState::Stopped),
        _ => None,
    }
}

/// A value's JSON, out of the schema envelope if it has one.
pub fn parse_value(bytes: &[u8]) -> Option<Json> {
    let v: Json = serde_json::from_slice(bytes).ok()?;
    match v.as_object() {
        Some(o) if o.len() == 2 && o.contains_key("schema") && o.contains_key("payload") => {
            o.get("payload").cloned()
        }
        _ => Some(v),
    }
}

fn parse_properties(v: &Json) -> Option<Config> {
    let props = v.get("properties")?.as_object()?;
    Some(
        props
            .iter()
            .filter_map(|(k, v)| match v {
                Json::String(s) => Some((k.clone(), s.clone())),
                Json::Null => None,
                other => Some((k.clone(), other.to_string())),
            })
            .collect(),
    )
}

/// `NAME-N` as a task id; the number is after the last dash, as Kafka parses it.
fn parse_task_id(rest: &str) -> Option<TaskId> {
    let (connector, task) = rest.rsplit_once('-')?;
    Some(TaskId {
        connector: connector.to_string(),
        task: task.parse().ok()?,
    })
}

/// What changed in the cluster's config, for the herder to decide whether to rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    Connector(String),
    Removed(String),
    Tasks(String),
    Target(String),
    /// A restart request (acted on only when read live, as Kafka's workers do).
    Restart {
        name: String,
        include_tasks: bool,
        only_failed: bool,
    },
    None,
}

/// The cluster's config as read from the config topic (Kafka's `ClusterConfigState`).
#[derive(Debug, Clone, Default)]
pub struct ConfigState {
    /// One past the last config topic offset read.
    pub offset: i64,
    pub connectors: BTreeMap<String, Config>,
    pub targets: BTreeMap<String, TargetState>,
    /// Committed task configs, by connector, in task order.
    pub tasks: BTreeMap<String, Vec<Config>>,
    /// Task configs written and not yet committed.
    deferred: BTreeMap<String, BTreeMap<u32, Config>>,
    /// Connectors whose last commit named tasks that were never written.
    pub inconsistent: BTreeSet<String>,
}

impl ConfigState {
    /// Applies one record read at `offset`.
    pub fn apply(&mut self, offset: i64, key: &str, value: Option<&[u8]>) -> ConfigChange {
        self.offset = self.offset.max(offset + 1);
        let value = value.and_then(parse_value);
        if let Some(name) = key.strip_prefix(RESTART_PREFIX) {
            let flag = |k: &str| {
                value
                    .as_ref()
                    .and_then(|v| v.get(k))
                    .and_then(Json::as_bool)
                    .unwrap_or(false)
            };
            return match value {
                Some(_) if self.connectors.contains_key(name) => ConfigChange::Restart {
                    name: name.to_string(),
                    include_tasks: flag("include-tasks"),
                    only_failed: flag("only-failed"),
                },
                _ => ConfigChange::None,
            };
        }
        if let Some(name) = key.strip_prefix(TARGET_STATE_PREFIX) {
            return self.apply_target(name, value.as_ref());
        }
        if let Some(name) = key.strip_prefix(CONNECTOR_PREFIX) {
            return match value.as_ref().and_then(parse_properties) {
                Some(config) => {
                    self.connectors.insert(name.to_string(), config);
                    ConfigChange::Connector(name.to_string())
                }
                None if value.is_none() => {
                    self.connectors.remove(name);
                    self.targets.remove(name);
                    self.tasks.remove(name);
                    self.deferred.remove(name);
                    self.inconsistent.remove(name);
                    ConfigChange::Removed(name.to_string())
                }
                None => {
                    tracing::warn!(key, "config record without properties; skipped");
                    ConfigChange::None
                }
            };
        }
        if let Some(rest) = key.strip_prefix(TASK_PREFIX) {
            let (Some(id), Some(config)) = (
                parse_task_id(rest),
                value.as_ref().and_then(parse_properties),
            ) else {
                return ConfigChange::None;
            };
            self.deferred
                .entry(id.connector)
                .or_default()
                .insert(id.task, config);
            return ConfigChange::None;
        }
        if let Some(name) = key.strip_prefix(COMMIT_PREFIX) {
            let Some(count) = value
                .as_ref()
                .and_then(|v| v.get("tasks"))
                .and_then(Json::as_u64)
            else {
                return ConfigChange::None;
            };
            return self.apply_commit(name, count);
        }
        ConfigChange::None
    }

    fn apply_target(&mut self, name: &str, value: Option<&Json>) -> ConfigChange {
        let Some(v) = value else {
            self.targets.remove(name);
            return ConfigChange::Target(name.to_string());
        };
        let state = ["state.v2", "state"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Json::as_str).and_then(parse_state));
        match state {
            Some(s) => {
                self.targets.insert(name.to_string(), s);
                ConfigChange::Target(name.to_string())
            }
            None => ConfigChange::None,
        }
    }

    fn apply_commit(&mut self, name: &str, count: u64) -> ConfigChange {
        let written = self.deferred.remove(name).unwrap_or_default();
        let complete = (0..count).all(|t| u32::try_from(t).is_ok_and(|t| written.contains_key(&t)));
        if !complete {
            // Kafka keeps the old tasks and waits for the connector to write them again.
            self.inconsistent.insert(name.to_string());
            return ConfigChange::None;
        }
        self.inconsistent.remove(name);
        let configs: Vec<Config> = written
            .into_iter()
            .filter(|(t, _)| u64::from(*t) < count)
            .map(|(_, c)| c)
            .collect();
        self.tasks.insert(name.to_string(), configs);
        ConfigChange::Tasks(name.to_string())
    }

    pub fn target(&self, name: &str) -> TargetState {
        self.targets
            .get(name)
            .copied()
            .unwrap_or(TargetState::Started)
    }

    /// Every connector and its committed tasks, as the assignor sees the config.
    pub fn configured(&self) -> super::protocol::ConnectorsAndTasks {
        let mut out = super::protocol::ConnectorsAndTasks::default();
        for name in self.connectors.keys() {
            out.connectors.insert(name.clone());
            for t in 0..self.tasks.get(name).map_or(0, Vec::len) {
                out.tasks.insert(TaskId {
                    connector: name.clone(),
                    task: t as u32,
                });
            }
        }
        out
    }
}

/// A status as the status topic holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRecord {
    pub state: String,
    pub trace: Option<String>,
    pub worker_id: String,
    pub generation: i32,
}

/// `status-topic-TOPIC:connector-NAME`, an active topic of a connector.
pub fn topic_status_key(topic: &str, connector: &str) -> String {
    format!("{TOPIC_STATUS_PREFIX}{topic}{TOPIC_STATUS_SEPARATOR}{connector}")
}

/// `{"topic":{"name":..., "connector":..., "task":N, "discoverTimestamp":MS}}`.
pub fn topic_status_value(topic: &str, task: &TaskId, discovered_ms: i64) -> Vec<u8> {
    json!({ "topic": {
        "name": topic,
        "connector": task.connector,
        "task": task.task,
        "discoverTimestamp": discovered_ms,
    }})
    .to_string()
    .into_bytes()
}

pub fn status_value(s: &StatusRecord) -> Vec<u8> {
    json!({
        "state": s.state,
        "trace": s.trace,
        "worker_id": s.worker_id,
        "generation": s.generation,
    })
    .to_string()
    .into_bytes()
}

fn parse_status(v: &Json) -> Option<StatusRecord> {
    Some(StatusRecord {
        state: v.get("state")?.as_str()?.to_string(),
        trace: v.get("trace").and_then(Json::as_str).map(str::to_string),
        worker_id: v.get("worker_id")?.as_str()?.to_string(),
        generation: i32::try_from(v.get("generation")?.as_i64()?).ok()?,
    })
}

/// Every connector's and task's latest status (Kafka's `KafkaStatusBackingStore` view).
#[derive(Debug, Clone, Default)]
pub struct StatusState {
    pub connectors: BTreeMap<String, StatusRecord>,
    pub tasks: BTreeMap<TaskId, StatusRecord>,
    /// Each connector's active topics.
    pub topics: BTreeMap<String, BTreeSet<String>>,
}

impl StatusState {
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        let status = value.and_then(parse_value).as_ref().and_then(parse_status);
        if let Some(name) = key.strip_prefix(CONNECTOR_STATUS_PREFIX) {
            match status {
                Some(s) => self.connectors.insert(name.to_string(), s),
                None => self.connectors.remove(name),
            };
        } else if let Some(rest) = key.strip_prefix(TOPIC_STATUS_PREFIX) {
            // Kafka splits at the first separator: topic names cannot hold a colon.
            let Some((topic, connector)) = rest.split_once(TOPIC_STATUS_SEPARATOR) else {
                return;
            };
            let present = value
                .and_then(parse_value)
                .is_some_and(|v| v.get("topic").is_some_and(Json::is_object));
            let topics = self.topics.entry(connector.to_string()).or_default();
            if present {
                topics.insert(topic.to_string());
            } else {
                topics.remove(topic);
            }
        } else if let Some(id) = key.strip_prefix(TASK_STATUS_PREFIX).and_then(parse_task_id) {
            match status {
                Some(s) => self.tasks.insert(id, s),
                None => self.tasks.remove(&id),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kafkas_config_records_build_the_state_tasks_only_on_commit() {
        let mut s = ConfigState::default();
        // Bytes as Kafka 4.1's worker writes them.
        let c = br#"{"properties":{"connector.class":"FileStreamSource","tasks.max":"2","file":"in.txt","topic":"t","name":"src"}}"#;
        assert_eq!(
            s.apply(0, "connector-src", Some(c)),
            ConfigChange::Connector("src".into())
        );
        assert_eq!(s.connectors["src"]["file"], "in.txt");
        assert_eq!(s.target("src"), TargetState::Started);
        let t = br#"{"properties":{"task.class":"org.apache.kafka.connect.file.FileStreamSourceTask","file":"in.txt","topic":"t","batch.size":"2000"}}"#;
        assert_eq!(s.apply(1, "task-src-0", Some(t)), ConfigChange::None);
        assert!(s.tasks.is_empty(), "not committed yet");
        // A commit naming a task never written keeps the connector inconsistent.
        assert_eq!(
            s.apply(2, "commit-src", Some(br#"{"tasks":2}"#)),
            ConfigChange::None
        );
        assert!(s.inconsistent.contains("src"));
        s.apply(3, "task-src-0", Some(t));
        s.apply(4, "task-src-1", Some(t));
        assert_eq!(
            s.apply(5, "commit-src", Some(br#"{"tasks":2}"#)),
            ConfigChange::Tasks("src".into())
        );
        assert_eq!(s.tasks["src"].len(), 2);
        assert!(s.inconsistent.is_empty());
        assert_eq!(s.configured().tasks.len(), 2);
        s.apply(
            6,
            "target-state-src",
            Some(br#"{"state":"PAUSED","state.v2":"STOPPED"}"#),
        );
        assert_eq!(s.target("src"), TargetState::Stopped);
        let restart = br#"{"include-tasks":true,"only-failed":true}"#;
        assert_eq!(
            s.apply(6, "restart-connector-src", Some(restart)),
            ConfigChange::Restart {
                name: "src".into(),
                include_tasks: true,
                only_failed: true
            }
        );
        // Kafka stops a connector by committing no tasks.
        s.apply(6, "commit-src", Some(br#"{"tasks":0}"#));
        assert!(s.configured().tasks.is_empty());
        s.apply(
            7,
            "session-key",
            Some(br#"{"key":"x","algorithm":"HmacSHA256","creation-timestamp":1}"#),
        );
        assert_eq!(s.offset, 8);
        assert_eq!(
            s.apply(8, "connector-src", None),
            ConfigChange::Removed("src".into())
        );
        assert!(s.connectors.is_empty() && s.tasks.is_empty() && s.targets.is_empty());
    }

    #[test]
    fn our_records_are_kafkas_bytes_and_read_back() {
        let cfg = config(&[("name", "a-b-1"), ("connector.class", "FileStreamSink")]);
        assert_eq!(
            String::from_utf8(properties_value(&cfg)).expect("utf-8"),
            r#"{"properties":{"connector.class":"FileStreamSink","name":"a-b-1"}}"#
        );
        assert_eq!(
            String::from_utf8(target_state_value(TargetState::Stopped)).expect("utf-8"),
            r#"{"state":"PAUSED","state.v2":"STOPPED"}"#
        );
        assert_eq!(commit_value(3), br#"{"tasks":3}"#.to_vec());
        assert_eq!(
            restart_value(true, false),
            br#"{"include-tasks":true,"only-failed":false}"#.to_vec()
        );
        // A connector name with dashes: the task number is after the last one.
        let mut s = ConfigState::default();
        let id = TaskId {
            connector: "a-b".into(),
            task: 10,
        };
        assert_eq!(task_key(&id), "task-a-b-10");
        s.apply(0, &connector_key("a-b"), Some(&properties_value(&cfg)));
        s.apply(1, &task_key(&id), Some(&properties_value(&cfg)));
        assert_eq!(
            s.apply(2, &commit_key("a-b"), Some(&commit_value(1))),
            ConfigChange::None
        );
        assert!(s.inconsistent.contains("a-b"), "task 0 is missing");
        // The schema envelope is read as well.
        let enveloped = br#"{"schema":{"type":"struct"},"payload":{"state":"PAUSED"}}"#;
        s.apply(3, &target_state_key("a-b"), Some(enveloped));
        assert_eq!(s.target("a-b"), TargetState::Paused);
    }

    #[test]
    fn statuses_read_kafkas_records_and_tombstones() {
        let mut st = StatusState::default();
        let v = br#"{"state":"RUNNING","trace":null,"worker_id":"10.0.0.1:8083","generation":3}"#;
        st.apply("status-connector-src", Some(v));
        st.apply("status-task-src-0", Some(v));
        let id = TaskId {
            connector: "src".into(),
            task: 0,
        };
        assert_eq!(st.tasks[&id].worker_id, "10.0.0.1:8083");
        assert_eq!(st.connectors["src"].generation, 3);
        let mine = StatusRecord {
            state: "FAILED".into(),
            trace: Some("boom".into()),
            worker_id: "w".into(),
            generation: 4,
        };
        st.apply(&task_status_key(&id), Some(&status_value(&mine)));
        assert_eq!(st.tasks[&id], mine);
        st.apply(&connector_status_key("src"), None);
        assert!(st.connectors.is_empty());
        let kafkas = br#"{"topic":{"name":"t-1","connector":"my-src","task":0,"discoverTimestamp":1700000000000}}"#;
        st.apply("status-topic-t-1:connector-my-src", Some(kafkas));
        assert_eq!(st.topics["my-src"], ["t-1".to_string()].into());
        let ours = topic_status_value("t-1", &id, 5);
        assert_eq!(
            String::from_utf8(ours).expect("utf-8"),
            r#"{"topic":{"connector":"src","discoverTimestamp":5,"name":"t-1","task":0}}"#
        );
        st.apply(&topic_status_key("t-1", "my-src"), None);
        assert!(st.topics["my-src"].is_empty());
    }
}
