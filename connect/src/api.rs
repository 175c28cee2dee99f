//! The API for writing connectors, as Kafka's `connect-api`: a connector splits a job into
//! task configurations; tasks move the data. A source task's `poll` returns records with
//! their source partition and offset, and the runtime writes them to Kafka and commits the
//! offsets; a sink task's `put` receives records from Kafka, and the runtime commits their
//! Kafka offsets after `flush` returns.
//!
//! Tasks run inside actors, so their async methods must not block a thread: file I/O goes
//! through the [`Disk`] in their context (the real disk, or the simulator's). `poll` should
//! return within about a second, empty when there is nothing new; the runtime waits
//! [`SOURCE_IDLE_BACKOFF_MS`] before polling again after an empty poll.
//!
//! Register a connector with [`Plugins::register`]; see [`crate::file`] for an example.

use std::sync::Arc;

use async_trait::async_trait;
use runnel_storage::disk::Disk;

use crate::config::{Config, ConfigDef};
use crate::data::{JsonMap, SinkRecord, SourceRecord};
use crate::error::ConnectError;

/// How long a source task rests after a poll that returned nothing.
pub const SOURCE_IDLE_BACKOFF_MS: u64 = 100;

/// What connectors of both kinds do (Kafka's `Connector`).
pub trait Connector: Send + 'static {
    /// The connector's version, shown by `GET /connector-plugins`.
    fn version(&self) -> String;
    /// The keys the connector accepts, checked before it starts.
    fn config_def(&self) -> ConfigDef;
    /// Starts the connector with its configuration.
    fn start(&mut self, config: &Config) -> Result<(), ConnectError>;
    /// Splits the work into at most `max_tasks` task configurations.
    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Config>, ConnectError>;
    fn stop(&mut self) {}
    /// Checks offsets a person sets or resets (KIP-875) for a stopped connector; true
    /// when the connector keeps no offsets of its own elsewhere (Kafka's `alterOffsets`).
    fn alter_offsets(
        &self,
        _config: &Config,
        _offsets: &[(JsonMap, Option<JsonMap>)],
    ) -> Result<bool, ConnectError> {
        Ok(false)
    }
}

/// A connector that imports data into Kafka.
pub trait SourceConnector: Connector {
    fn create_task(&self) -> Box<dyn SourceTask>;
    /// The task's class name, which Kafka adds to each task config as `task.class`.
    fn task_class(&self) -> String;
}

/// A connector that exports data from Kafka.
pub trait SinkConnector: Connector {
    fn create_task(&self) -> Box<dyn SinkTask>;
    fn task_class(&self) -> String;
}

/// What a source task may ask the runtime.
#[derive(Clone)]
pub struct SourceTaskContext {
    /// The offsets committed for this connector's source partitions.
    pub offsets: Arc<dyn OffsetReader>,
    /// Where files live: the real disk, or the simulator's.
    pub disk: Arc<dyn Disk>,
}

/// What a sink task may ask the runtime.
#[derive(Clone)]
pub struct SinkTaskContext {
    pub disk: Arc<dyn Disk>,
}

/// Reads committed source offsets (Kafka's `OffsetStorageReader`).
pub trait OffsetReader: Send + Sync {
    fn offset(&self, partition: &JsonMap) -> Option<JsonMap>;
}

/// A task that reads from a source system (Kafka's `SourceTask`).
#[async_trait]
pub trait SourceTask: Send + 'static {
    /// Starts the task; committed offsets are readable through `context`.
    async fn start(
        &mut self,
        context: SourceTaskContext,
        config: &Config,
    ) -> Result<(), ConnectError>;
    /// The next records, or none for now.
    async fn poll(&mut self) -> Result<Vec<SourceRecord>, ConnectError>;
    /// Called after the runtime committed offsets up to what the task returned.
    async fn commit(&mut self) -> Result<(), ConnectError> {
        Ok(())
    }
    async fn stop(&mut self) {}
}

/// A task that writes to a sink system (Kafka's `SinkTask`).
#[async_trait]
pub trait SinkTask: Send + 'static {
    async fn start(
        &mut self,
        context: SinkTaskContext,
        config: &Config,
    ) -> Result<(), ConnectError>;
    /// Records from Kafka, in order per partition.
    async fn put(&mut self, records: Vec<SinkRecord>) -> Result<(), ConnectError>;
    /// Makes everything `put` so far durable; the runtime commits its offsets after this.
    async fn flush(&mut self) -> Result<(), ConnectError> {
        Ok(())
    }
    async fn stop(&mut self) {}
}

/// A connector instance of either kind.
pub enum AnyConnector {
    Source(Box<dyn SourceConnector>),
    Sink(Box<dyn SinkConnector>),
}

impl AnyConnector {
    pub fn connector_type(&self) -> ConnectorType {
        match self {
            AnyConnector::Source(_) => ConnectorType::Source,
            AnyConnector::Sink(_) => ConnectorType::Sink,
        }
    }

    pub fn as_connector(&self) -> &dyn Connector {
        match self {
            AnyConnector::Source(c) => c.as_ref(),
            AnyConnector::Sink(c) => c.as_ref(),
        }
    }

    pub fn as_connector_mut(&mut self) -> &mut dyn Connector {
        match self {
            AnyConnector::Source(c) => c.as_mut(),
            AnyConnector::Sink(c) => c.as_mut(),
        }
    }

    pub fn task_class(&self) -> String {
        match self {
            AnyConnector::Source(c) => c.task_class(),
            AnyConnector::Sink(c) => c.task_class(),
        }
    }
}

/// Source or sink, by Kafka's lower-case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorType {
    Source,
    Sink,
}

impl ConnectorType {
    pub fn name(self) -> &'static str {
        match self {
            ConnectorType::Source => "source",
            ConnectorType::Sink => "sink",
        }
    }
}

/// A connector plugin: its class name, aliases and how to make one.
#[derive(Clone)]
pub struct PluginDesc {
    /// The full class name (`org.apache.kafka.connect.file.FileStreamSourceConnector`).
    pub class: String,
    pub connector_type: ConnectorType,
    pub version: String,
    pub factory: fn() -> AnyConnector,
}

impl PluginDesc {
    /// Kafka's aliases: the simple class name, and that name without `Connector`.
    pub fn matches(&self, name: &str) -> bool {
        let simple = self.class.rsplit('.').next().unwrap_or_default();
        name == self.class || name == simple || Some(name) == simple.strip_suffix("Connector")
    }
}

/// The connector plugins a worker knows (Kafka scans `plugin.path`; we register).
#[derive(Clone, Default)]
pub struct Plugins {
    plugins: Vec<PluginDesc>,
}

impl Plugins {
    pub fn register(&mut self, plugin: PluginDesc) {
        self.plugins.push(plugin);
        self.plugins.sort_by(|a, b| a.class.cmp(&b.class));
    }

    pub fn find(&self, name: &str) -> Option<&PluginDesc> {
        self.plugins.iter().find(|p| p.matches(name.trim()))
    }

    pub fn all(&self) -> &[PluginDesc] {
        &self.plugins
    }
}
