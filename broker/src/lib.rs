//! Runnel's Kafka broker: a single node that is broker and controller at once, like
//! Kafka's combined KRaft mode.
//!
//! Where a request goes: [`BrokerServer`]'s listener accepts a client; its connection task
//! ([`connection`]) reads frames, decodes them against [`versions`] (the one table of what
//! is served) and hands each to [`handlers::handle`], which dispatches to one file per API,
//! grouped by family (`handlers/data`, `admin`, `group`, `txn`). Handlers read the
//! metadata image ([`metadata`]) and the partitions ([`partition`]); topic changes go
//! through the controller, which writes them to the metadata log before the broker applies
//! them. Consumer groups live in [`group`]: the coordinator's shards and the pure state
//! machines of both group protocols.
//!
//! Start from [`Broker::open`], [`BrokerServer`] (what runs on a node, and the ordered
//! shutdown) and [`handlers::handle`].

pub mod config;
mod connection;
pub mod coordinator;
pub mod faults;
pub mod fetch_session;
pub mod group;
pub mod handlers;
pub mod housekeeping;
pub mod meta_properties;
pub mod metadata;
pub mod partition;
pub mod producer_state;
pub mod server;
pub mod versions;

pub use server::BrokerServer;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use futures::{StreamExt, TryStreamExt};
use kafka_protocol::ResponseError;
use runnel_actors::Node;
use runnel_storage::disk::Disk;
use runnel_storage::log::{delete_dir, LogError};
use runnel_storage::TopicPartition;
use tokio::net::TcpListener;

use config::{BrokerConfig, TopicConfig};
use group::coordinator::{GroupCoordinator, OFFSETS_TOPIC};
use metadata::{
    new_cluster_id, new_topic_id, MetadataImage, MetadataLog, MetadataRecord, TopicImage,
    METADATA_LOG_DIR, PRODUCER_ID_BLOCK_SIZE,
};
use partition::{LeaderAppendRules, Partition, PartitionConfig, PartitionError};

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 4096;
/// Partitions opened (recovered) at start, or flushed at a clean stop, at the same time.
const OPEN_CONCURRENCY: usize = 8;

/// Milliseconds since the Unix epoch (simulated time under madsim).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Log(#[from] LogError),
    // The OS error is in the sentence and not a `source`, so it is said once.
    #[error("cannot listen on {addr}: {error}. Is another broker running there? Choose another address with --listen")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("{dir} holds partition directories but no metadata log ({METADATA_LOG_DIR}); it is not a Runnel data directory, or its metadata was lost. Point log.dirs elsewhere")]
    NoMetadata { dir: PathBuf },
    #[error("the metadata log is corrupt: {0}")]
    CorruptMetadata(#[from] metadata::MetadataError),
    #[error("the group coordinator could not load __consumer_offsets: {0}")]
    GroupsNotLoaded(#[from] coordinator::ShardUnavailable),
    #[error(transparent)]
    MetaProperties(#[from] meta_properties::MetaPropertiesError),
}

/// A Kafka error code with a sentence for people.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ResponseError,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        let code = match &e {
            LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            LogError::CorruptBatch(_) => ResponseError::CorruptMessage,
            LogError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
            _ => ResponseError::KafkaStorageError,
        };
        ApiError::new(code, e.to_string())
    }
}

/// `__consumer_offsets` belongs to the group coordinator, whose shards follow its
/// partitions: deleting it or adding partitions would lose or move groups.
fn refuse_internal(name: &str) -> Result<(), ApiError> {
    if name == OFFSETS_TOPIC {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("{OFFSETS_TOPIC} is internal to the group coordinator and cannot be changed this way"),
        ));
    }
    Ok(())
}

/// The controller's state: the metadata log it alone writes. It runs as one shard of the
/// shard runtime over that log ([`coordinator`]), so every change is handled in order by
/// one actor; the Raft quorum plugs in behind it later.
struct Controller {
    log: MetadataLog,
    /// Producer ids in `next_producer_id..producer_id_block_end` are allocated and free.
    next_producer_id: i64,
    producer_id_block_end: i64,
    /// Counts metadata changes, so topic ids differ even for a re-created name.
    changes: i64,
}

impl coordinator::ShardState for Controller {
    type Context = Broker;

    /// After a failure: reopen the metadata log, and bring the image up to what it holds
    /// (a failure between the append and the image update would leave it behind).
    async fn load(broker: &Broker, _index: i32) -> Result<Controller, String> {
        let dir = broker.config.log_dirs[0].join(METADATA_LOG_DIR);
        let (log, records) = MetadataLog::open(broker.disk.clone(), &dir, now_ms())
            .await
            .map_err(|e| e.to_string())?;
        let mut image = MetadataImage::default();
        for record in &records {
            image.apply(record).map_err(|e| e.to_string())?;
        }
        if *broker.image() != image {
            tracing::warn!("the metadata image was behind the metadata log; caught up");
            *broker.image.write().expect("image lock") = Arc::new(image.clone());
            for topic in image.topics.values() {
                broker
                    .open_partitions(topic, 0)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        // The rest of the block in use is skipped: ids are handed out once, never twice.
        let next = image.next_producer_id;
        Ok(Controller {
            log,
            next_producer_id: next,
            producer_id_block_end: next,
            changes: records.len() as i64,
        })
    }
}

pub struct Broker {
    pub config: BrokerConfig,
    /// The node the broker's actors run on.
    node: Node,
    disk: Arc<dyn Disk>,
    /// Where clients are told to connect.
    advertised: (String, u16),
    image: std::sync::RwLock<Arc<MetadataImage>>,
    /// The controller actor, started once the broker exists.
    controller: OnceLock<coordinator::ShardRuntime<Controller>>,
    partitions: std::sync::RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    pub fetch_sessions: std::sync::Mutex<fetch_session::FetchSessionCache>,
    pub groups: GroupCoordinator,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Broker(node {})", self.config.node_id)
    }
}

impl Broker {
    /// Replays the metadata log and opens every partition it names.
    /// Partitions run as actors on `node`.
    pub async fn open(
        node: &Node,
        config: BrokerConfig,
        disk: Arc<dyn Disk>,
        advertised: (String, u16),
    ) -> Result<Arc<Broker>, BrokerError> {
        let started_ms = now_ms();
        for dir in &config.log_dirs {
            disk.create_dir_all(dir).await.map_err(LogError::from)?;
        }
        let formatted =
            meta_properties::check(disk.as_ref(), &config.log_dirs, config.node_id).await?;
        let metadata_dir = config.log_dirs[0].join(METADATA_LOG_DIR);
        let (mut log, records) = MetadataLog::open(disk.clone(), &metadata_dir, started_ms).await?;
        let mut image = MetadataImage::default();
        for record in &records {
            image.apply(record)?;
        }
        let mut found = Vec::new();
        for dir in &config.log_dirs {
            for name in disk.list_dir(dir).await.map_err(LogError::from)? {
                if name == METADATA_LOG_DIR {
                    continue;
                }
                if let Some(tp) = TopicPartition::parse_dir_name(&name) {
                    found.push((tp, dir.join(name)));
                }
            }
        }
        if log.is_empty() {
            if let Some((_, path)) = found.first() {
                return Err(BrokerError::NoMetadata {
                    dir: path.parent().map(PathBuf::from).unwrap_or_default(),
                });
            }
            // The id `runnel storage format` chose, or a fresh one on a first start.
            let cluster_id = formatted.clone().unwrap_or_else(|| {
                new_cluster_id(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos()),
                )
            });
            let cluster = MetadataRecord::Cluster { cluster_id };
            log.append(std::slice::from_ref(&cluster), started_ms)
                .await?;
            image.apply(&cluster)?;
        } else if let Some(found) = formatted.filter(|id| *id != image.cluster_id) {
            return Err(meta_properties::MetaPropertiesError::OtherCluster {
                dir: config.log_dirs[0].clone(),
                found,
                expected: image.cluster_id.clone(),
            }
            .into());
        }
        meta_properties::format_missing(
            disk.as_ref(),
            &config.log_dirs,
            config.node_id,
            &image.cluster_id,
        )
        .await?;
        let controller = Controller {
            log,
            next_producer_id: image.next_producer_id,
            producer_id_block_end: image.next_producer_id,
            changes: records.len() as i64,
        };
        // The coordinator follows the topic as it exists: changing
        // offsets.topic.num.partitions later must not move groups to other partitions.
        let offsets_partitions = image
            .topics
            .get(OFFSETS_TOPIC)
            .map_or(config.offsets_topic_num_partitions, |t| t.partitions);
        let controller = Some(controller);
        let broker = Arc::new(Broker {
            groups: GroupCoordinator::new(offsets_partitions, started_ms),
            node: node.clone(),
            config,
            disk,
            advertised,
            image: std::sync::RwLock::new(Arc::new(image.clone())),
            controller: OnceLock::new(),
            partitions: std::sync::RwLock::new(HashMap::new()),
            fetch_sessions: std::sync::Mutex::new(fetch_session::FetchSessionCache::default()),
        });
        let mut owned = BTreeMap::new();
        for (tp, path) in found {
            let is_owned = image
                .topics
                .get(&tp.topic)
                .is_some_and(|t| tp.partition < t.partitions);
            if is_owned && !owned.contains_key(&tp) {
                owned.insert(tp, path);
            } else {
                // Likely a topic deleted before its files were (a crash in between). It is
                // left alone rather than deleted on the word of the metadata log alone;
                // creating a topic of that name removes it.
                tracing::warn!(dir = %path.display(), "ignoring a partition directory no topic owns");
            }
        }
        // Recovery reads each log; several at once keep the disk busy on a restart.
        {
            let mut opened = futures::stream::iter(owned)
                .map(|(tp, path)| {
                    let config = broker.partition_config(&image.topics[&tp.topic]);
                    let disk = broker.disk.clone();
                    let (node, crash) = (node.clone(), broker.config.fault_actor_crash_probability);
                    async move {
                        Partition::open(&node, disk, tp, &path, config, started_ms, crash).await
                    }
                })
                .buffer_unordered(OPEN_CONCURRENCY);
            while let Some(partition) = opened.next().await {
                broker.insert_partition(partition?);
            }
        }
        for topic in image.topics.values() {
            broker.open_partitions(topic, 0).await?;
        }
        let runtime = coordinator::ShardRuntime::start_loaded(
            node,
            "controller",
            Arc::downgrade(&broker),
            broker.config.fault_actor_crash_probability,
            vec![controller],
        );
        assert!(
            broker.controller.set(runtime).is_ok(),
            "the controller starts once"
        );
        broker.groups.start(node, &broker);
        broker.groups.loaded().await?;
        tracing::info!(
            topics = image.topics.len(),
            partitions = broker.partition_count(),
            elapsed_ms = now_ms() - started_ms,
            cluster_id = %image.cluster_id,
            "broker opened"
        );
        Ok(broker)
    }

    /// Binds `config.listen` and returns the listener and the address it got.
    pub async fn bind(config: &BrokerConfig) -> Result<(TcpListener, SocketAddr), BrokerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|error| BrokerError::Listen {
                    addr: config.listen,
                    error,
                })?;
        let bound = listener.local_addr().map_err(|error| BrokerError::Listen {
            addr: config.listen,
            error,
        })?;
        Ok((listener, bound))
    }

    pub fn advertised(&self) -> (&str, u16) {
        (&self.advertised.0, self.advertised.1)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().expect("image lock").clone()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let key = TopicPartition::new(topic, index);
        self.partitions
            .read()
            .expect("partitions lock")
            .get(&key)
            .cloned()
    }

    pub fn partition_count(&self) -> usize {
        self.partitions.read().expect("partitions lock").len()
    }

    pub(crate) fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .values()
            .cloned()
            .collect()
    }

    fn insert_partition(&self, partition: Partition) {
        let previous = self
            .partitions
            .write()
            .expect("partitions lock")
            .insert(partition.tp.clone(), Arc::new(partition));
        assert!(previous.is_none(), "a partition is opened once");
    }

    /// A topic's effective settings. Overrides were validated when written; if the
    /// broker's own settings changed since and no longer fit, the defaults apply.
    pub fn topic_config(&self, topic: &TopicImage) -> TopicConfig {
        self.config
            .topic_config(&topic.configs)
            .unwrap_or_else(|e| {
                tracing::warn!(topic = %topic.name, error = %e, "ignoring the topic's overrides");
                self.config
                    .topic_config(&BTreeMap::new())
                    .expect("broker defaults were validated at start")
            })
    }

    /// What a partition of `topic` is opened with and told on a config change.
    fn partition_config(&self, topic: &TopicImage) -> PartitionConfig {
        let config = self.topic_config(topic);
        PartitionConfig {
            log: config.log_config(),
            leader: LeaderAppendRules {
                log_append_time: config.log_append_time(),
                compression: config.compression(),
            },
        }
    }

    fn partition_dir(&self, tp: &TopicPartition) -> PathBuf {
        let dirs = &self.config.log_dirs;
        let spread = tp.topic.bytes().fold(tp.partition as usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(b as usize)
        });
        dirs[spread % dirs.len()].join(tp.dir_name())
    }

    async fn open_partitions(&self, topic: &TopicImage, from: i32) -> Result<(), LogError> {
        let config = self.partition_config(topic);
        for index in from..topic.partitions {
            if self.partition(&topic.name, index).is_some() {
                continue;
            }
            let tp = TopicPartition::new(topic.name.clone(), index);
            let dir = self.partition_dir(&tp);
            if self.disk.exists(&dir).await? {
                tracing::warn!(dir = %dir.display(), "removing the files of an earlier topic of this name");
                delete_dir(self.disk.as_ref(), &dir).await?;
            }
            let partition = Partition::open(
                &self.node,
                self.disk.clone(),
                tp,
                &dir,
                config.clone(),
                now_ms(),
                self.config.fault_actor_crash_probability,
            )
            .await?;
            if let Some(parent) = dir.parent() {
                self.disk.sync_dir(parent).await?;
            }
            self.insert_partition(partition);
        }
        Ok(())
    }

    /// Runs `job` on the controller actor, after every change queued before it.
    async fn on_controller<R, F>(&self, job: F) -> Result<R, ApiError>
    where
        R: Send + 'static,
        F: for<'a> FnOnce(
                &'a Broker,
                &'a mut Controller,
            ) -> coordinator::BoxFuture<'a, Result<R, ApiError>>
            + Send
            + 'static,
    {
        let controller = self
            .controller
            .get()
            .expect("the controller starts with the broker");
        controller
            .run(0, job)
            .await
            .map_err(|e| ApiError::new(ResponseError::NotController, e.to_string()))?
    }

    /// Fault injection: the controller actor panics, as a bug would make it; its supervisor
    /// restarts it from the metadata log.
    pub async fn inject_controller_crash(&self) {
        let crashed = self
            .on_controller(|_, _| {
                Box::pin(async { panic!("the controller crashed by fault injection") })
            })
            .await;
        let _: Result<(), ApiError> = crashed;
    }

    /// Writes records to the metadata log, then applies them to the image and the
    /// partitions. Only the controller actor calls it, so changes land in log order.
    async fn commit(
        &self,
        controller: &mut Controller,
        records: Vec<MetadataRecord>,
    ) -> Result<(), ApiError> {
        let mut image = (*self.image()).clone();
        for record in &records {
            image
                .apply(record)
                .map_err(|e| ApiError::new(ResponseError::InvalidRequest, e.to_string()))?;
        }
        controller.log.append(&records, now_ms()).await?;
        controller.changes += records.len() as i64;
        *self.image.write().expect("image lock") = Arc::new(image.clone());
        for record in &records {
            match record {
                MetadataRecord::TopicCreated { name, .. }
                | MetadataRecord::PartitionsCreated { name, .. } => {
                    self.open_partitions(&image.topics[name], 0).await?;
                }
                MetadataRecord::TopicConfigsChanged { name, .. } => {
                    let config = self.partition_config(&image.topics[name]);
                    for index in 0..image.topics[name].partitions {
                        if let Some(partition) = self.partition(name, index) {
                            // An offline partition takes the new config when it is reopened.
                            if let Err(e) = partition.set_config(config.clone()).await {
                                tracing::warn!(partition = %partition.tp, error = %e, "config not applied");
                            }
                        }
                    }
                }
                MetadataRecord::TopicDeleted { name } => {
                    let removed: Vec<Arc<Partition>> = {
                        let mut partitions = self.partitions.write().expect("partitions lock");
                        let keys: Vec<TopicPartition> = partitions
                            .keys()
                            .filter(|tp| &tp.topic == name)
                            .cloned()
                            .collect();
                        keys.iter().filter_map(|k| partitions.remove(k)).collect()
                    };
                    for partition in removed {
                        delete_dir(self.disk.as_ref(), partition.dir()).await?;
                    }
                }
                MetadataRecord::Cluster { .. } | MetadataRecord::ProducerIdsAllocated { .. } => {}
            }
        }
        Ok(())
    }

    /// The partitions a topic has now, if it exists.
    pub fn topic_partition_count(&self, name: &str) -> Option<i32> {
        self.image().topics.get(name).map(|t| t.partitions)
    }

    /// CreateTopics for one topic, after the handler checked the request's shape.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicImage, ApiError> {
        runnel_protocol::kafka::validate_topic_name(name)
            .map_err(|e| ApiError::new(ResponseError::InvalidTopicException, e.to_string()))?;
        if partitions < 1 {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("a topic needs at least one partition, not {partitions}"),
            ));
        }
        check_partitions_per_request(partitions)?;
        self.config
            .topic_config(&configs)
            .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
        let name = name.to_string();
        self.on_controller(move |broker, controller| {
            Box::pin(async move {
                broker
                    .create_topic_on_controller(
                        controller,
                        &name,
                        partitions,
                        configs,
                        validate_only,
                    )
                    .await
            })
        })
        .await
    }

    async fn create_topic_on_controller(
        &self,
        controller: &mut Controller,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicImage, ApiError> {
        let image = self.image();
        if image.topics.contains_key(name) {
            return Err(ApiError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        // Kafka's metric names turn '.' into '_', so "a.b" and "a_b" may not both exist.
        let collides = |other: &str| other.replace('.', "_") == name.replace('.', "_");
        if let Some(other) = image.topics.keys().find(|other| collides(other)) {
            return Err(ApiError::new(
                ResponseError::InvalidTopicException,
                format!(
                    "topic '{name}' collides with the existing topic '{other}' ('.' and '_' count as the same); choose another name"
                ),
            ));
        }
        let topic = TopicImage {
            name: name.to_string(),
            id: new_topic_id(&image.cluster_id, name, controller.changes),
            partitions,
            configs,
        };
        if validate_only {
            return Ok(topic);
        }
        let record = MetadataRecord::TopicCreated {
            name: topic.name.clone(),
            topic_id: topic.id,
            partitions,
            configs: topic.configs.clone(),
        };
        self.commit(controller, vec![record]).await?;
        Ok(topic)
    }

    fn existing_topic(&self, name: &str) -> Result<TopicImage, ApiError> {
        self.image().topics.get(name).cloned().ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )
        })
    }

    pub async fn delete_topic(&self, name: &str) -> Result<TopicImage, ApiError> {
        refuse_internal(name)?;
        let name = name.to_string();
        self.on_controller(move |broker, controller| {
            Box::pin(async move {
                let topic = broker.existing_topic(&name)?;
                let record = MetadataRecord::TopicDeleted { name };
                broker.commit(controller, vec![record]).await?;
                Ok(topic)
            })
        })
        .await
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        refuse_internal(name)?;
        let name = name.to_string();
        self.on_controller(move |broker, controller| {
            Box::pin(async move {
                broker
                    .create_partitions_on_controller(controller, &name, count, validate_only)
                    .await
            })
        })
        .await
    }

    async fn create_partitions_on_controller(
        &self,
        controller: &mut Controller,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let topic = self.existing_topic(name)?;
        if count <= topic.partitions {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "topic '{name}' has {} partitions; the new count must be larger, and {count} is not",
                    topic.partitions
                ),
            ));
        }
        check_partitions_per_request(count - topic.partitions)?;
        if validate_only {
            return Ok(());
        }
        let record = MetadataRecord::PartitionsCreated {
            name: name.to_string(),
            partitions: count,
        };
        self.commit(controller, vec![record]).await
    }

    /// Replaces a topic's overrides with `change(current overrides)`.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        validate_only: bool,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), ApiError> + Send + 'static,
    ) -> Result<(), ApiError> {
        let name = name.to_string();
        self.on_controller(move |broker, controller| {
            Box::pin(async move {
                broker
                    .alter_configs_on_controller(controller, &name, validate_only, change)
                    .await
            })
        })
        .await
    }

    async fn alter_configs_on_controller(
        &self,
        controller: &mut Controller,
        name: &str,
        validate_only: bool,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let topic = self.existing_topic(name)?;
        let mut configs = topic.configs.clone();
        change(&mut configs)?;
        self.config
            .topic_config(&configs)
            .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
        if validate_only || configs == topic.configs {
            return Ok(());
        }
        let record = MetadataRecord::TopicConfigsChanged {
            name: name.to_string(),
            configs,
        };
        self.commit(controller, vec![record]).await
    }

    /// A fresh producer id; blocks of ids are made durable before any is handed out.
    pub async fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        self.on_controller(|broker, controller| {
            Box::pin(async move {
                if controller.next_producer_id == controller.producer_id_block_end {
                    let next = controller.producer_id_block_end + PRODUCER_ID_BLOCK_SIZE;
                    let record = MetadataRecord::ProducerIdsAllocated { next };
                    broker.commit(controller, vec![record]).await?;
                    controller.producer_id_block_end = next;
                }
                let id = controller.next_producer_id;
                controller.next_producer_id += 1;
                Ok(id)
            })
        })
        .await
    }

    /// Makes everything appended durable (a clean shutdown); returns how many partitions
    /// were flushed.
    pub async fn flush_all(&self) -> Result<usize, PartitionError> {
        // An offline partition's unflushed tail is exactly what must not be trusted.
        let online: Vec<Arc<Partition>> = self
            .all_partitions()
            .into_iter()
            .filter(|p| !p.is_offline())
            .collect();
        let flushed = online.len();
        // Each flush is a few fsyncs; several at once keep a 10,000-partition stop short.
        futures::stream::iter(online)
            .map(|partition| async move { partition.flush(true, now_ms()).await })
            .buffer_unordered(OPEN_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(flushed)
    }
}

/// Kafka's controller refuses to create more partitions than this in one request
/// (`MAX_RECORDS_PER_USER_OP`), so a typo cannot create millions of them.
pub const MAX_PARTITIONS_PER_REQUEST: i32 = 10_000;

fn check_partitions_per_request(new_partitions: i32) -> Result<(), ApiError> {
    if new_partitions > MAX_PARTITIONS_PER_REQUEST {
        return Err(ApiError::new(
            ResponseError::PolicyViolation,
            format!(
                "{new_partitions} new partitions in one request is more than the {MAX_PARTITIONS_PER_REQUEST} allowed; create fewer at a time"
            ),
        ));
    }
    Ok(())
}
