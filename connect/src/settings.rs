//! A worker's settings (Kafka's names) and what every actor of a worker shares.

use std::path::PathBuf;

use runnel_actors::Node;
use runnel_storage::disk::Disk;
use std::sync::Arc;

use crate::api::Plugins;
use crate::config::{get_int, Config};
use crate::converter::JSON_CONVERTER;
use crate::error::ConnectError;
use crate::offsets::OffsetStore;

/// Kafka's default `offset.flush.interval.ms`.
pub const DEFAULT_OFFSET_FLUSH_INTERVAL_MS: u64 = 60_000;
/// Kafka's default `task.shutdown.graceful.timeout.ms`.
pub const DEFAULT_TASK_SHUTDOWN_TIMEOUT_MS: u64 = 5_000;
/// Kafka's default `listeners`.
pub const DEFAULT_LISTENERS: &str = "http://:8083";

/// A worker's settings, by Kafka's names.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `bootstrap.servers`
    pub bootstrap_servers: String,
    /// `offset.storage.file.filename`
    pub offset_storage_file: PathBuf,
    /// `offset.flush.interval.ms`
    pub offset_flush_interval_ms: u64,
    /// `task.shutdown.graceful.timeout.ms`
    pub task_shutdown_timeout_ms: u64,
    /// `listeners`
    pub listeners: String,
    /// Every property as given: `key.converter`, `value.converter` and their settings.
    pub properties: Config,
}

impl WorkerConfig {
    /// Reads a standalone worker's properties; also returns warnings for people.
    pub fn from_properties(
        properties: Config,
    ) -> Result<(WorkerConfig, Vec<String>), ConnectError> {
        let offset_storage_file = properties
            .get("offset.storage.file.filename")
            .map(|f| f.trim())
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| ConnectError::Config("Missing required configuration \"offset.storage.file.filename\" which has no default value.".into()))?;
        Self::common(properties, offset_storage_file)
    }

    /// Reads the settings every worker has; a distributed worker keeps its offsets in
    /// `offset.storage.topic`, so its `offset_storage_file` is empty and unused.
    pub(crate) fn common(
        properties: Config,
        offset_storage_file: PathBuf,
    ) -> Result<(WorkerConfig, Vec<String>), ConnectError> {
        let mut warnings = Vec::new();
        if properties.contains_key("plugin.path") {
            warnings.push("plugin.path is ignored: Runnel's connectors are built in (FileStreamSource, FileStreamSink); Java plugins need Apache Kafka's own worker".to_string());
        }
        let flush = get_int(
            &properties,
            "offset.flush.interval.ms",
            DEFAULT_OFFSET_FLUSH_INTERVAL_MS as i64,
        )?;
        let shutdown = get_int(
            &properties,
            "task.shutdown.graceful.timeout.ms",
            DEFAULT_TASK_SHUTDOWN_TIMEOUT_MS as i64,
        )?;
        if flush <= 0 || shutdown < 0 {
            return Err(ConnectError::Config("offset.flush.interval.ms must be above 0 and task.shutdown.graceful.timeout.ms at least 0".into()));
        }
        for which in ["key", "value"] {
            if !properties.contains_key(&format!("{which}.converter")) {
                warnings.push(format!(
                    "{which}.converter is not set; using {JSON_CONVERTER}"
                ));
            }
        }
        Ok((
            WorkerConfig {
                bootstrap_servers: properties
                    .get("bootstrap.servers")
                    .cloned()
                    .unwrap_or_else(|| "localhost:9092".into()),
                offset_storage_file,
                offset_flush_interval_ms: flush as u64,
                task_shutdown_timeout_ms: shutdown as u64,
                listeners: properties
                    .get("listeners")
                    .cloned()
                    .unwrap_or_else(|| DEFAULT_LISTENERS.into()),
                properties,
            },
            warnings,
        ))
    }

    /// The class of `key.converter` or `value.converter` (`which` is `key` or `value`).
    pub fn converter_class(&self, which: &str) -> String {
        self.properties
            .get(&format!("{which}.converter"))
            .cloned()
            .unwrap_or_else(|| JSON_CONVERTER.to_string())
    }
}

/// What every actor of a worker shares.
pub(crate) struct Shared {
    pub config: WorkerConfig,
    pub plugins: Plugins,
    pub disk: Arc<dyn Disk>,
    pub offsets: Arc<OffsetStore>,
    pub worker_id: String,
    pub node: Node,
}
