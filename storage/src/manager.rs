//! The log manager: every partition under `log.dirs`, opened and recovered at start with
//! bounded concurrency, and the periodic work (retention, compaction, time-based flush) run over all of
//! them with the same bound. Give it a [`crate::disk::HandleCache`] so thousands of
//! partitions stay under the descriptor limit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::disk::Disk;
use crate::log::{CompactionStats, LogConfig, LogError, PartitionLog};

/// A topic partition; its directory is `<topic>-<partition>`, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Reads a directory name back; the partition is what follows the last `-`.
    pub fn parse_dir_name(name: &str) -> Option<TopicPartition> {
        let (topic, partition) = name.rsplit_once('-')?;
        let partition: i32 = partition.parse().ok()?;
        (!topic.is_empty() && partition >= 0).then(|| TopicPartition::new(topic, partition))
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

#[derive(Debug, Clone)]
pub struct LogManagerConfig {
    /// `log.dirs`; new partitions go to the directory holding the fewest.
    pub log_dirs: Vec<PathBuf>,
    /// Topic defaults, overridden per topic by [`LogManager::set_topic_config`].
    pub default_config: LogConfig,
    /// Partitions opened, recovered, flushed or cleaned at the same time.
    pub concurrency: usize,
}

impl LogManagerConfig {
    pub fn new(log_dirs: Vec<PathBuf>) -> Self {
        LogManagerConfig {
            log_dirs,
            default_config: LogConfig::default(),
            concurrency: 8,
        }
    }
}

pub struct LogManager {
    disk: Arc<dyn Disk>,
    config: LogManagerConfig,
    topic_configs: BTreeMap<String, LogConfig>,
    logs: BTreeMap<TopicPartition, PartitionLog>,
}

impl std::fmt::Debug for LogManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogManager({} partitions)", self.logs.len())
    }
}

impl LogManager {
    /// Opens and recovers every partition found under the log directories.
    pub async fn open(
        disk: Arc<dyn Disk>,
        config: LogManagerConfig,
        now_ms: i64,
    ) -> Result<LogManager, LogError> {
        assert!(
            !config.log_dirs.is_empty(),
            "log.dirs names at least one directory"
        );
        assert!(config.concurrency > 0);
        let mut found = Vec::new();
        for dir in &config.log_dirs {
            disk.create_dir_all(dir).await?;
            for name in disk.list_dir(dir).await? {
                if let Some(tp) = TopicPartition::parse_dir_name(&name) {
                    found.push((tp, dir.join(name)));
                }
            }
        }
        let default_config = config.default_config.clone();
        let logs: Vec<(TopicPartition, PartitionLog)> = stream::iter(found)
            .map(|(tp, path)| {
                let (disk, cfg) = (disk.clone(), default_config.clone());
                async move {
                    PartitionLog::open(disk, &path, cfg, now_ms)
                        .await
                        .map(|log| (tp, log))
                }
            })
            .buffer_unordered(config.concurrency)
            .try_collect()
            .await?;
        tracing::info!(partitions = logs.len(), "log manager opened");
        Ok(LogManager {
            disk,
            config,
            topic_configs: BTreeMap::new(),
            logs: logs.into_iter().collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.logs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }

    pub fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.logs.keys()
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<&PartitionLog> {
        self.logs.get(tp)
    }

    pub fn get_mut(&mut self, tp: &TopicPartition) -> Option<&mut PartitionLog> {
        self.logs.get_mut(tp)
    }

    /// The settings a topic's partitions use: its override, or the defaults.
    pub fn topic_config(&self, topic: &str) -> &LogConfig {
        self.topic_configs
            .get(topic)
            .unwrap_or(&self.config.default_config)
    }

    /// Overrides a topic's settings; partitions opened from now on use them.
    pub fn set_topic_config(&mut self, topic: &str, config: LogConfig) {
        self.topic_configs.insert(topic.to_string(), config);
    }

    /// Returns the partition's log, creating it in the least loaded log directory.
    pub async fn get_or_create(
        &mut self,
        tp: &TopicPartition,
        now_ms: i64,
    ) -> Result<&mut PartitionLog, LogError> {
        if !self.logs.contains_key(tp) {
            let mut load: BTreeMap<&PathBuf, usize> =
                self.config.log_dirs.iter().map(|d| (d, 0)).collect();
            for log in self.logs.values() {
                for (dir, count) in load.iter_mut() {
                    if log.dir().starts_with(dir) {
                        *count += 1;
                    }
                }
            }
            let dir = load
                .iter()
                .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
                .map(|(dir, _)| (*dir).clone())
                .expect("log.dirs is not empty");
            let config = self.topic_config(&tp.topic).clone();
            let log =
                PartitionLog::open(self.disk.clone(), &dir.join(tp.dir_name()), config, now_ms)
                    .await?;
            self.disk.sync_dir(&dir).await?;
            self.logs.insert(tp.clone(), log);
        }
        Ok(self.logs.get_mut(tp).expect("present or just inserted"))
    }

    /// Applies retention to every partition; returns the segments deleted.
    pub async fn run_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let deleted: Vec<usize> = stream::iter(self.logs.values_mut())
            .map(|log| log.apply_retention(now_ms))
            .buffer_unordered(self.config.concurrency)
            .try_collect()
            .await?;
        Ok(deleted.into_iter().sum())
    }

    /// Compacts every partition whose `cleanup.policy` includes `compact`.
    pub async fn run_compaction(&mut self, now_ms: i64) -> Result<CompactionStats, LogError> {
        let all: Vec<CompactionStats> = stream::iter(self.logs.values_mut())
            .map(|log| log.compact(now_ms))
            .buffer_unordered(self.config.concurrency)
            .try_collect()
            .await?;
        Ok(all
            .into_iter()
            .fold(CompactionStats::default(), |sum, s| CompactionStats {
                segments_rewritten: sum.segments_rewritten + s.segments_rewritten,
                records_removed: sum.records_removed + s.records_removed,
            }))
    }

    /// Applies `flush.ms` to every partition; returns how many were flushed.
    pub async fn flush_due(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let flushed: Vec<bool> = stream::iter(self.logs.values_mut())
            .map(|log| log.maybe_flush(now_ms))
            .buffer_unordered(self.config.concurrency)
            .try_collect()
            .await?;
        Ok(flushed.into_iter().filter(|f| *f).count())
    }

    /// Flushes every partition (a clean shutdown).
    pub async fn flush_all(&mut self) -> Result<(), LogError> {
        stream::iter(self.logs.values_mut())
            .map(|log| log.flush())
            .buffer_unordered(self.config.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use runnel_protocol::batch::build::{batch, Record};
    use runnel_protocol::batch::RecordBatch;

    use super::*;
    use crate::disk::{HandleCache, MemDisk};

    #[tokio::test]
    async fn compaction_runs_only_on_compacted_topics() {
        use crate::log::CleanupPolicy;
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::new(2));
        let mut manager =
            LogManager::open(disk, LogManagerConfig::new(vec![PathBuf::from("/c")]), 0)
                .await
                .expect("open");
        let small = LogConfig {
            segment_bytes: 100,
            ..LogConfig::default()
        };
        manager.set_topic_config(
            "table",
            LogConfig {
                cleanup_policy: CleanupPolicy::COMPACT,
                ..small.clone()
            },
        );
        manager.set_topic_config("stream", small);
        let same_key = batch(
            0,
            &[Record {
                key: Some(b"k"),
                value: Some(b"v"),
                timestamp_delta: 0,
            }],
        );
        for topic in ["table", "stream"] {
            let log = manager
                .get_or_create(&TopicPartition::new(topic, 0), 0)
                .await
                .expect("create");
            for _ in 0..5 {
                log.append(std::slice::from_ref(&same_key), 0, 0)
                    .await
                    .expect("append");
            }
        }
        let stats = manager.run_compaction(0).await.expect("compact");
        assert!(stats.records_removed >= 3, "{stats:?}");
        let stream = manager
            .get(&TopicPartition::new("stream", 0))
            .expect("exists");
        let mut offsets = Vec::new();
        let mut next = 0;
        while next < stream.log_end_offset() {
            let got = RecordBatch::parse_all(stream.read(next, 1 << 20).await.expect("read"))
                .expect("valid");
            offsets.extend(got.iter().map(|b| b.base_offset()));
            next = got.last().expect("non-empty").last_offset() + 1;
        }
        assert_eq!(
            offsets,
            vec![0, 1, 2, 3, 4],
            "a delete-policy topic keeps every record"
        );
    }

    #[test]
    fn directory_names_round_trip() {
        let tp = TopicPartition::new("orders-eu", 12);
        assert_eq!(tp.dir_name(), "orders-eu-12");
        assert_eq!(TopicPartition::parse_dir_name("orders-eu-12"), Some(tp));
        assert_eq!(TopicPartition::parse_dir_name("orders"), None);
        assert_eq!(TopicPartition::parse_dir_name("orders-x"), None);
        assert_eq!(TopicPartition::parse_dir_name("orders-7.5e1f-delete"), None);
        assert_eq!(
            TopicPartition::parse_dir_name("ends-with-dash--1"),
            Some(TopicPartition::new("ends-with-dash-", 1))
        );
        assert_eq!(TopicPartition::parse_dir_name("-3"), None);
    }

    #[tokio::test]
    async fn partitions_spread_over_dirs_survive_a_restart_and_keep_their_overrides() {
        let mem = MemDisk::new(1);
        let disk: Arc<dyn Disk> = Arc::new(HandleCache::new(mem.clone(), 16));
        let dirs = vec![PathBuf::from("/a"), PathBuf::from("/b")];
        let mut manager = LogManager::open(disk.clone(), LogManagerConfig::new(dirs.clone()), 0)
            .await
            .expect("open");
        manager.set_topic_config(
            "compact-me",
            LogConfig {
                flush_messages: Some(1),
                ..LogConfig::default()
            },
        );
        let value = b"v";
        let one = batch(
            0,
            &[Record {
                key: None,
                value: Some(value),
                timestamp_delta: 0,
            }],
        );
        for p in 0..40 {
            let topic = if p % 2 == 0 { "events" } else { "compact-me" };
            let log = manager
                .get_or_create(&TopicPartition::new(topic, p), 0)
                .await
                .expect("create");
            log.append(std::slice::from_ref(&one), 0, 0)
                .await
                .expect("append");
        }
        let flushed_by_policy = manager
            .partitions()
            .filter(|tp| manager.get(tp).expect("listed").recovery_point() == 1)
            .count();
        assert_eq!(
            flushed_by_policy, 20,
            "the per-topic flush.messages override applies"
        );
        manager.flush_all().await.expect("flush");
        let in_a = mem.list_dir(Path::new("/a")).await.expect("list").len();
        assert_eq!(in_a, 20, "partitions are spread evenly");
        drop(manager);

        let manager = LogManager::open(disk, LogManagerConfig::new(dirs), 0)
            .await
            .expect("reopen");
        assert_eq!(manager.len(), 40);
        for tp in manager.partitions() {
            assert_eq!(manager.get(tp).expect("listed").log_end_offset(), 1, "{tp}");
        }
    }
}
