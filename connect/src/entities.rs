//! The JSON bodies of Kafka's Connect REST API (its `rest.entities`), shared by the
//! server's handlers and the `runnel connect` client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// `{"connector": NAME, "task": N}`
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId {
    pub connector: String,
    pub task: u32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.connector, self.task)
    }
}

/// `GET /connectors/{name}` (Kafka's `ConnectorInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorInfo {
    pub name: String,
    pub config: Config,
    pub tasks: Vec<TaskId>,
    #[serde(rename = "type")]
    pub connector_type: String,
}

/// A connector's state in a status (Kafka's `ConnectorState`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorState {
    pub state: String,
    pub worker_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// The connector plugin's version (Kafka 4.1 adds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A task's state in a status (Kafka's `TaskState`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub id: u32,
    pub state: String,
    pub worker_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `GET /connectors/{name}/status` (Kafka's `ConnectorStateInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorStateInfo {
    pub name: String,
    pub connector: ConnectorState,
    pub tasks: Vec<TaskState>,
    #[serde(rename = "type")]
    pub connector_type: String,
}

/// `GET /connectors/{name}/tasks` items (Kafka's `TaskInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub id: TaskId,
    pub config: Config,
}

/// The body of `POST /connectors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateConnectorRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub config: Option<Config>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_state: Option<String>,
}

/// Every error body: `{"error_code": 404, "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMessage {
    pub error_code: u16,
    pub message: String,
}

/// `GET /` (Kafka's `ServerInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub version: String,
    pub commit: String,
    pub kafka_cluster_id: Option<String>,
}

/// `GET /connector-plugins` items (Kafka's `PluginInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub class: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    pub version: String,
}

/// `GET /connectors/{name}/offsets` (KIP-875's `ConnectorOffsets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorOffsets {
    pub offsets: Vec<ConnectorOffset>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorOffset {
    pub partition: serde_json::Map<String, serde_json::Value>,
    pub offset: serde_json::Map<String, serde_json::Value>,
}

/// `GET /connector-plugins/{type}/config` items (Kafka's `ConfigKeyInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigKeyInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub config_type: String,
    pub required: bool,
    pub default_value: Option<String>,
    pub importance: String,
    pub documentation: String,
    pub group: Option<String>,
    pub order: i32,
    pub width: String,
    pub display_name: String,
    pub dependents: Vec<String>,
}

/// Kafka's `ConfigValueInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigValueInfo {
    pub name: String,
    pub value: Option<String>,
    pub recommended_values: Vec<String>,
    pub errors: Vec<String>,
    pub visible: bool,
}

/// Kafka's `ConfigInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigInfo {
    pub definition: ConfigKeyInfo,
    pub value: ConfigValueInfo,
}

/// `PUT /connector-plugins/{type}/config/validate` (Kafka's `ConfigInfos`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigInfos {
    pub name: String,
    pub error_count: usize,
    pub groups: Vec<String>,
    pub configs: Vec<ConfigInfo>,
}

/// `GET /connectors/{name}/topics`: `{NAME: {"topics": [...]}}`.
pub type ActiveTopics = BTreeMap<String, TopicsInfo>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicsInfo {
    pub topics: Vec<String>,
}
