//! Kafka's file connectors, written on the connector API as its example:
//! `FileStreamSource` reads the lines of `file` into `topic` (at most `batch.size` per
//! poll) and remembers its byte position as the offset `{"position": N}` of the source
//! partition `{"filename": FILE}`, as Kafka's does; `FileStreamSink` appends the value of
//! each record of `topics` to `file` as a line and makes it durable on `flush`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use runnel_storage::disk::{Disk, DiskError, DiskFile, OpenMode};
use serde_json::json;

use crate::api::{
    AnyConnector, Connector, ConnectorType, PluginDesc, Plugins, SinkConnector, SinkTask,
    SinkTaskContext, SourceConnector, SourceTask, SourceTaskContext,
};
use crate::config::{get_int, Config, ConfigDef, ConfigType, Importance};
use crate::data::{ConnectRecord, JsonMap, Schema, SinkRecord, SourceRecord, Value};
use crate::error::ConnectError;

pub const SOURCE_CLASS: &str = "org.apache.kafka.connect.file.FileStreamSourceConnector";
pub const SINK_CLASS: &str = "org.apache.kafka.connect.file.FileStreamSinkConnector";
pub const SOURCE_TASK_CLASS: &str = "org.apache.kafka.connect.file.FileStreamSourceTask";
pub const SINK_TASK_CLASS: &str = "org.apache.kafka.connect.file.FileStreamSinkTask";

/// Kafka's default `batch.size`.
pub const DEFAULT_BATCH_SIZE: i64 = 2000;
/// The first read of a poll; doubled while a line does not fit, up to the bound below.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// The longest line the source accepts.
pub const MAX_LINE_BYTES: usize = 16 << 20;

impl Plugins {
    /// The plugins Runnel ships: Kafka's file connectors.
    pub fn builtin() -> Plugins {
        let mut plugins = Plugins::default();
        plugins.register(source_plugin());
        plugins.register(sink_plugin());
        plugins
    }
}

pub fn source_plugin() -> PluginDesc {
    PluginDesc {
        class: SOURCE_CLASS.into(),
        connector_type: ConnectorType::Source,
        version: crate::VERSION.into(),
        factory: || AnyConnector::Source(Box::new(FileStreamSourceConnector::default())),
    }
}

pub fn sink_plugin() -> PluginDesc {
    PluginDesc {
        class: SINK_CLASS.into(),
        connector_type: ConnectorType::Sink,
        version: crate::VERSION.into(),
        factory: || AnyConnector::Sink(Box::new(FileStreamSinkConnector::default())),
    }
}

fn file_of(config: &Config, what: &str) -> Result<String, ConnectError> {
    match config.get("file").map(|f| f.trim()) {
        Some(f) if !f.is_empty() => Ok(f.to_string()),
        _ => Err(ConnectError::Config(format!(
            "Runnel's {what} needs \"file\": it does not read standard input or write standard output"
        ))),
    }
}

/// Kafka's `FileStreamSourceConnector`: one task reading one file.
#[derive(Default)]
pub struct FileStreamSourceConnector {
    config: Config,
}

impl Connector for FileStreamSourceConnector {
    fn version(&self) -> String {
        crate::VERSION.into()
    }

    fn config_def(&self) -> ConfigDef {
        ConfigDef::new()
            .define("file", ConfigType::String, Some(""), Importance::High, "Source filename. If not specified, the standard input will be used")
            .define("topic", ConfigType::String, None, Importance::High, "The topic to publish data to")
            .non_empty()
            .define("batch.size", ConfigType::Int, Some("2000"), Importance::Low, "The maximum number of records the source task can read from the file each time it is polled")
    }

    fn start(&mut self, config: &Config) -> Result<(), ConnectError> {
        file_of(config, "FileStreamSource")?;
        if get_int(config, "batch.size", DEFAULT_BATCH_SIZE)? <= 0 {
            return Err(ConnectError::Config(
                "Invalid value for configuration batch.size: Value must be at least 1".into(),
            ));
        }
        self.config = config.clone();
        Ok(())
    }

    fn task_configs(&self, _max_tasks: usize) -> Result<Vec<Config>, ConnectError> {
        // Only one input stream makes sense.
        Ok(vec![self.config.clone()])
    }

    fn alter_offsets(
        &self,
        config: &Config,
        offsets: &[(JsonMap, Option<JsonMap>)],
    ) -> Result<bool, ConnectError> {
        if config.get("file").is_none_or(|f| f.trim().is_empty()) {
            return Err(ConnectError::BadRequest("Offsets cannot be modified if the 'file' configuration is unspecified. This is because stdin is used for input and offsets are not tracked.".into()));
        }
        for (partition, offset) in offsets {
            // Tombstones are allowed for anything, so garbage can be cleaned up.
            let Some(offset) = offset else { continue };
            let position = offset.get("position").ok_or_else(|| {
                ConnectError::BadRequest(
                    "Offset objects should either be null or contain the key 'position'".into(),
                )
            })?;
            match position.as_i64() {
                None => return Err(ConnectError::BadRequest(
                    "The value for the 'position' key in the offset is expected to be a Long value"
                        .into(),
                )),
                Some(p) if p < 0 => return Err(ConnectError::BadRequest(
                    "The value for the 'position' key in the offset should be a non-negative value"
                        .into(),
                )),
                Some(_) => {}
            }
            if !partition.contains_key("filename") {
                return Err(ConnectError::BadRequest(
                    "Partition objects should contain the key 'filename'".into(),
                ));
            }
        }
        Ok(true)
    }
}

impl SourceConnector for FileStreamSourceConnector {
    fn create_task(&self) -> Box<dyn SourceTask> {
        Box::new(FileStreamSourceTask::default())
    }

    fn task_class(&self) -> String {
        SOURCE_TASK_CLASS.into()
    }
}

/// Reads complete lines (ended by `\n`, `\r\n` or `\r`) from its byte position on.
#[derive(Default)]
pub struct FileStreamSourceTask {
    disk: Option<Arc<dyn Disk>>,
    file: Option<Arc<dyn DiskFile>>,
    filename: String,
    topic: String,
    batch_size: usize,
    position: u64,
    missing_logged: bool,
}

impl FileStreamSourceTask {
    fn partition(&self) -> JsonMap {
        let mut m = JsonMap::new();
        m.insert("filename".into(), json!(self.filename));
        m
    }

    async fn open(&mut self) -> Result<Option<Arc<dyn DiskFile>>, ConnectError> {
        if let Some(f) = &self.file {
            return Ok(Some(f.clone()));
        }
        let disk = self.disk.as_ref().expect("start sets the disk");
        match disk
            .open(&PathBuf::from(&self.filename), OpenMode::Existing)
            .await
        {
            Ok(f) => {
                self.file = Some(f.clone());
                Ok(Some(f))
            }
            Err(DiskError::NotFound { .. }) => {
                if !std::mem::replace(&mut self.missing_logged, true) {
                    tracing::warn!(file = %self.filename, "Couldn't find file; waiting for it to be created");
                }
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl SourceTask for FileStreamSourceTask {
    async fn start(
        &mut self,
        context: SourceTaskContext,
        config: &Config,
    ) -> Result<(), ConnectError> {
        self.filename = file_of(config, "FileStreamSource")?;
        self.topic = config
            .get("topic")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ConnectError::Config(
                    "Missing required configuration \"topic\" which has no default value.".into(),
                )
            })?;
        self.batch_size = get_int(config, "batch.size", DEFAULT_BATCH_SIZE)?.max(1) as usize;
        self.position = match context.offsets.offset(&self.partition()) {
            None => 0,
            Some(offset) => match offset.get("position") {
                None => 0,
                Some(p) => p.as_u64().ok_or_else(|| {
                    ConnectError::Config(format!("Offset position is the incorrect type: {p}"))
                })?,
            },
        };
        self.disk = Some(context.disk);
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>, ConnectError> {
        let Some(file) = self.open().await? else {
            return Ok(Vec::new());
        };
        let mut chunk_bytes = READ_CHUNK_BYTES;
        let data = loop {
            let data = file.read_at(self.position, chunk_bytes).await?;
            let has_end = data.iter().any(|&b| b == b'\n' || b == b'\r');
            if has_end || data.len() < chunk_bytes {
                break data;
            }
            if chunk_bytes >= MAX_LINE_BYTES {
                return Err(ConnectError::Data(format!(
                    "{}: a line at byte {} is longer than {MAX_LINE_BYTES} bytes",
                    self.filename, self.position
                )));
            }
            chunk_bytes *= 2;
        };
        let mut records = Vec::new();
        let mut start = 0usize;
        let mut i = 0usize;
        while i < data.len() && records.len() < self.batch_size {
            let end = match data[i] {
                b'\n' => i + 1,
                // A \r at the end of what was read may be half of \r\n: wait for more.
                b'\r' if i + 1 == data.len() => break,
                b'\r' if data[i + 1] == b'\n' => i + 2,
                b'\r' => i + 1,
                _ => {
                    i += 1;
                    continue;
                }
            };
            let line = String::from_utf8_lossy(&data[start..i]).into_owned();
            let position = self.position + end as u64;
            let mut offset = JsonMap::new();
            offset.insert("position".into(), json!(position));
            let mut record =
                ConnectRecord::new(&self.topic, Some(Schema::string()), Value::String(line));
            record.timestamp_ms = Some(jiff::Timestamp::now().as_millisecond());
            records.push(SourceRecord {
                source_partition: self.partition(),
                source_offset: offset,
                record,
            });
            start = end;
            i = end;
        }
        self.position += start as u64;
        Ok(records)
    }
}

/// Kafka's `FileStreamSinkConnector`: each task appends to the same file.
#[derive(Default)]
pub struct FileStreamSinkConnector {
    config: Config,
}

impl Connector for FileStreamSinkConnector {
    fn version(&self) -> String {
        crate::VERSION.into()
    }

    fn config_def(&self) -> ConfigDef {
        ConfigDef::new().define(
            "file",
            ConfigType::String,
            Some(""),
            Importance::High,
            "Destination filename. If not specified, the standard output will be used",
        )
    }

    fn start(&mut self, config: &Config) -> Result<(), ConnectError> {
        file_of(config, "FileStreamSink")?;
        self.config = config.clone();
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Config>, ConnectError> {
        Ok(vec![self.config.clone(); max_tasks.max(1)])
    }

    fn alter_offsets(
        &self,
        _config: &Config,
        _offsets: &[(JsonMap, Option<JsonMap>)],
    ) -> Result<bool, ConnectError> {
        // Everything it wrote is in the file; only Kafka's offsets say where it is.
        Ok(true)
    }
}

impl SinkConnector for FileStreamSinkConnector {
    fn create_task(&self) -> Box<dyn SinkTask> {
        Box::new(FileStreamSinkTask::default())
    }

    fn task_class(&self) -> String {
        SINK_TASK_CLASS.into()
    }
}

/// Appends one line per record: the value as Java's `toString` prints it.
#[derive(Default)]
pub struct FileStreamSinkTask {
    file: Option<Arc<dyn DiskFile>>,
}

#[async_trait]
impl SinkTask for FileStreamSinkTask {
    async fn start(
        &mut self,
        context: SinkTaskContext,
        config: &Config,
    ) -> Result<(), ConnectError> {
        let name = file_of(config, "FileStreamSink")?;
        self.file = Some(
            context
                .disk
                .open(&PathBuf::from(name), OpenMode::Create)
                .await?,
        );
        Ok(())
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> Result<(), ConnectError> {
        let file = self.file.as_ref().expect("start opens the file");
        let mut out = Vec::new();
        for r in &records {
            out.extend_from_slice(r.record.value.to_java_string().as_bytes());
            out.push(b'\n');
        }
        if !out.is_empty() {
            file.append(&out).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectError> {
        if let Some(file) = &self.file {
            file.sync_data().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OffsetReader;
    use runnel_storage::disk::MemDisk;

    struct Offsets(Option<JsonMap>);
    impl OffsetReader for Offsets {
        fn offset(&self, _partition: &JsonMap) -> Option<JsonMap> {
            self.0.clone()
        }
    }

    fn source_config(batch: &str) -> Config {
        [("file", "in.txt"), ("topic", "t"), ("batch.size", batch)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn lines(records: &[SourceRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| r.record.value.to_java_string())
            .collect()
    }

    #[tokio::test]
    async fn source_reads_complete_lines_in_batches_and_resumes_from_its_offset() {
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::new(1));
        let file = disk
            .open(&PathBuf::from("in.txt"), OpenMode::Create)
            .await
            .expect("open");
        file.append(b"foo\r\nbar\rbaz\nhalf").await.expect("write");
        let mut task = FileStreamSourceTask::default();
        let context = SourceTaskContext {
            offsets: Arc::new(Offsets(None)),
            disk: disk.clone(),
        };
        task.start(context, &source_config("2"))
            .await
            .expect("start");
        let first = task.poll().await.expect("poll");
        assert_eq!(lines(&first), ["foo", "bar"]);
        assert_eq!(first[1].source_offset["position"], json!(9));
        assert_eq!(first[0].source_partition["filename"], json!("in.txt"));
        assert_eq!(lines(&task.poll().await.expect("poll")), ["baz"]);
        assert!(
            task.poll().await.expect("poll").is_empty(),
            "an unfinished line waits"
        );
        file.append(b" line\n").await.expect("write");
        let last = task.poll().await.expect("poll");
        assert_eq!(lines(&last), ["half line"]);
        let end = last[0].source_offset.clone();

        let mut again = FileStreamSourceTask::default();
        let mut at = JsonMap::new();
        at.insert("position".into(), json!(9));
        let context = SourceTaskContext {
            offsets: Arc::new(Offsets(Some(at))),
            disk: disk.clone(),
        };
        again
            .start(context, &source_config("100"))
            .await
            .expect("start");
        assert_eq!(
            lines(&again.poll().await.expect("poll")),
            ["baz", "half line"]
        );
        assert_eq!(end["position"], json!(23));
    }

    #[tokio::test]
    async fn source_waits_for_a_missing_file() {
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::new(1));
        let mut task = FileStreamSourceTask::default();
        let context = SourceTaskContext {
            offsets: Arc::new(Offsets(None)),
            disk: disk.clone(),
        };
        task.start(context, &source_config("10"))
            .await
            .expect("start");
        assert!(task.poll().await.expect("poll").is_empty());
        let file = disk
            .open(&PathBuf::from("in.txt"), OpenMode::Create)
            .await
            .expect("open");
        file.append(b"x\n").await.expect("write");
        assert_eq!(lines(&task.poll().await.expect("poll")), ["x"]);
    }

    #[tokio::test]
    async fn sink_appends_values_as_lines() {
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::new(1));
        let mut task = FileStreamSinkTask::default();
        let config: Config = [("file".to_string(), "out.txt".to_string())]
            .into_iter()
            .collect();
        task.start(SinkTaskContext { disk: disk.clone() }, &config)
            .await
            .expect("start");
        let record = |v: Value, o| SinkRecord {
            record: ConnectRecord {
                kafka_offset: Some(o),
                ..ConnectRecord::new("t", None, v)
            },
        };
        task.put(vec![
            record(Value::String("a".into()), 0),
            record(Value::Int64(2), 1),
        ])
        .await
        .expect("put");
        task.flush().await.expect("flush");
        let file = disk
            .open(&PathBuf::from("out.txt"), OpenMode::Existing)
            .await
            .expect("open");
        assert_eq!(&file.read_at(0, 100).await.expect("read")[..], b"a\n2\n");
    }

    #[test]
    fn plugins_answer_to_kafkas_aliases() {
        let p = source_plugin();
        assert!(p.matches("FileStreamSource"));
        assert!(p.matches("FileStreamSourceConnector"));
        assert!(p.matches(SOURCE_CLASS));
        assert!(!p.matches("FileStreamSink"));
    }
}
