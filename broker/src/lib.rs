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
pub mod controller;
pub mod coordinator;
pub mod faults;
pub mod fetch_session;
pub mod group;
pub mod handlers;
pub mod housekeeping;
mod lifecycle;
pub mod meta_properties;
pub mod metadata;
pub mod partition;
pub mod producer_state;
mod publisher;
pub mod quorum_start;
pub mod server;
pub mod versions;

pub use server::BrokerServer;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kafka_protocol::ResponseError;
use runnel_actors::transport::Transport;
use runnel_actors::Node;
use runnel_quorum::QuorumHandle;
use runnel_storage::disk::Disk;
use runnel_storage::log::{delete_dir, LogError};
use runnel_storage::TopicPartition;
use tokio::net::TcpListener;
use tokio::sync::watch;

use config::{BrokerConfig, TopicConfig};
use controller::{Controller, ControllerAnswer, ControllerCommand};
use group::coordinator::{GroupCoordinator, OFFSETS_TOPIC};
use metadata::{
    new_cluster_id, new_topic_id, MetadataCache, MetadataImage, TopicImage, METADATA_LOG_DIR,
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
    #[error("cannot listen for the controller quorum on {addr}: {error}. Is another node running there? Choose another CONTROLLER listener")]
    ControllerListen { addr: SocketAddr, error: String },
    #[error(
        "controller.quorum.voters names {host}:{port}, which does not resolve; fix the host name"
    )]
    UnknownVoterHost { host: String, port: u16 },
    #[error("the controller quorum did not replay its log within {waited_ms} ms; the log's disk may be failing")]
    NotReplayed { waited_ms: u64 },
    #[error("this node, its own quorum, did not register itself within {waited_ms} ms; see the log for why")]
    NotRegistered { waited_ms: u64 },
    #[error("this data directory's metadata log predates the controller quorum; start this node alone once (without controller.quorum.voters) to move it into the quorum's log, then join it to a cluster")]
    MigrateAlone,
    #[error("the metadata log written before the quorum could not be moved into it: {0}; restarting retries")]
    Migration(String),
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

impl coordinator::ShardState for Controller {
    type Context = Broker;

    /// The controller keeps no state of its own beyond sessions, which start afresh.
    async fn load(broker: &Broker, _index: i32) -> Result<Controller, String> {
        Ok(Controller::new(broker.quorum.clone()))
    }
}

/// How far the publisher has brought the partitions to the image, and how it went.
#[derive(Debug, Clone, Default)]
struct Reconciled {
    offset: u64,
    error: Option<ApiError>,
}

/// A topic with partitions here: its id and the overrides its partitions were given.
type LocalTopic = (uuid::Uuid, BTreeMap<String, String>);

/// This broker's registration with the controller, once it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub epoch: i64,
    pub fenced: bool,
}

pub struct Broker {
    pub config: BrokerConfig,
    /// The node the broker's actors run on.
    node: Node,
    disk: Arc<dyn Disk>,
    /// Where clients are told to connect.
    advertised: (String, u16),
    /// The image as this node has applied the quorum's log.
    pub(crate) metadata: Arc<MetadataCache>,
    quorum: QuorumHandle,
    transport: Transport,
    /// The cluster id meta.properties gave, or the one drawn for a first start: what the
    /// first registration writes when the log has none.
    cluster_id_hint: String,
    incarnation_id: uuid::Uuid,
    /// The controller actor, started once the broker exists.
    controller: OnceLock<coordinator::ShardRuntime<Controller>>,
    partitions: std::sync::RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Topics with partitions here: the id and overrides they were opened with.
    local_topics: tokio::sync::Mutex<HashMap<String, LocalTopic>>,
    reconciled: watch::Sender<Reconciled>,
    registration: watch::Sender<Option<Registration>>,
    /// Producer ids `start..end` are this broker's to hand out.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    pub fetch_sessions: std::sync::Mutex<fetch_session::FetchSessionCache>,
    pub groups: GroupCoordinator,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Broker(node {})", self.config.node_id)
    }
}

/// How long a start waits for the node's own quorum (one voter) to lead and register it.
const SELF_QUORUM_WAIT: Duration = Duration::from_secs(30);
/// How long a change waits for this node to apply it (and open its partitions).
const APPLY_WAIT: Duration = Duration::from_secs(10);
/// A change refused with NOT_CONTROLLER (an election) is retried this often, this long.
const NOT_CONTROLLER_RETRY: Duration = Duration::from_millis(100);
const NOT_CONTROLLER_PATIENCE: Duration = Duration::from_secs(5);

impl Broker {
    /// Joins the controller quorum, replays the metadata log and opens every partition
    /// it places here. Partitions run as actors on `node`.
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
        let pre_quorum = quorum_start::set_aside_pre_quorum_log(&disk, &config, started_ms).await?;
        let (transport, voters) = quorum_start::start_transport(node, &config).await?;
        let metadata = Arc::new(MetadataCache::default());
        let quorum = quorum_start::spawn_voter(node, &transport, &disk, &config, voters, &metadata);
        let held = quorum_start::replay(&quorum, &metadata, config.single_voter()).await?;
        let migrating = !pre_quorum.is_empty();
        quorum_start::migrate(&quorum, &metadata, &disk, &config, pre_quorum).await?;
        let image = metadata.image();
        if let Some(found) = formatted
            .as_ref()
            .filter(|id| !image.cluster_id.is_empty() && **id != image.cluster_id)
        {
            return Err(meta_properties::MetaPropertiesError::OtherCluster {
                dir: config.log_dirs[0].clone(),
                found: found.clone(),
                expected: image.cluster_id.clone(),
            }
            .into());
        }
        let found = Self::partition_dirs(disk.as_ref(), &config).await?;
        if image.cluster_id.is_empty() && !migrating && held == 0 {
            if let Some((_, path)) = found.first() {
                return Err(BrokerError::NoMetadata {
                    dir: path.parent().map(PathBuf::from).unwrap_or_default(),
                });
            }
        }
        // The id `runnel storage format` chose, or a fresh one on a first start.
        let cluster_id_hint = formatted.clone().unwrap_or_else(|| {
            new_cluster_id(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            )
        });
        // The coordinator follows the topic as it exists: changing
        // offsets.topic.num.partitions later must not move groups to other partitions.
        let offsets_partitions = image
            .topics
            .get(OFFSETS_TOPIC)
            .map_or(config.offsets_topic_num_partitions, |t| t.partitions);
        let incarnation_id = new_topic_id("incarnation", &config.node_id.to_string(), started_ms);
        let broker = Arc::new(Broker {
            groups: GroupCoordinator::new(offsets_partitions, started_ms),
            node: node.clone(),
            config,
            disk,
            advertised,
            metadata,
            quorum,
            transport,
            cluster_id_hint,
            incarnation_id,
            controller: OnceLock::new(),
            partitions: std::sync::RwLock::new(HashMap::new()),
            local_topics: tokio::sync::Mutex::new(HashMap::new()),
            reconciled: watch::channel(Reconciled::default()).0,
            registration: watch::channel(None).0,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            fetch_sessions: std::sync::Mutex::new(fetch_session::FetchSessionCache::default()),
        });
        broker.open_found(&image, found, started_ms).await?;
        let runtime = coordinator::ShardRuntime::start_loaded(
            node,
            "controller",
            Arc::downgrade(&broker),
            broker.config.fault_actor_crash_probability,
            vec![Some(Controller::new(broker.quorum.clone()))],
        );
        assert!(
            broker.controller.set(runtime).is_ok(),
            "the controller starts once"
        );
        controller::serve(&broker);
        publisher::start(node, &broker);
        lifecycle::start(node, &broker);
        // Registration formats directories not formatted yet (`lifecycle::check_cluster_id`).
        if broker.config.single_voter() {
            broker.wait_registered(SELF_QUORUM_WAIT).await?;
        }
        broker.groups.start(node, &broker);
        broker.groups.loaded().await?;
        let image = broker.image();
        tracing::info!(
            topics = image.topics.len(),
            partitions = broker.partition_count(),
            metadata_offset = image.offset,
            elapsed_ms = now_ms() - started_ms,
            cluster_id = %image.cluster_id,
            "broker opened"
        );
        Ok(broker)
    }

    /// Every partition directory in the log dirs.
    async fn partition_dirs(
        disk: &dyn Disk,
        config: &BrokerConfig,
    ) -> Result<Vec<(TopicPartition, PathBuf)>, LogError> {
        let mut found = Vec::new();
        for dir in &config.log_dirs {
            for name in disk.list_dir(dir).await.map_err(LogError::from)? {
                if name.starts_with(METADATA_LOG_DIR) {
                    continue;
                }
                if let Some(tp) = TopicPartition::parse_dir_name(&name) {
                    found.push((tp, dir.join(name)));
                }
            }
        }
        Ok(found)
    }

    /// Opens the partitions found on disk that the image places here.
    async fn open_found(
        &self,
        image: &MetadataImage,
        found: Vec<(TopicPartition, PathBuf)>,
        started_ms: i64,
    ) -> Result<(), BrokerError> {
        let me = self.config.node_id;
        let mut owned = BTreeMap::new();
        for (tp, path) in found {
            let marked = partition::read_topic_id(self.disk.as_ref(), &path).await?;
            let is_owned = image.topics.get(&tp.topic).is_some_and(|t| {
                t.replicas_of(tp.partition).contains(&me) && marked.is_none_or(|id| id == t.id)
            });
            if is_owned && !owned.contains_key(&tp) {
                owned.insert(tp, path);
            } else {
                // Likely a topic deleted before its files were (a crash in between). It is
                // left alone rather than deleted on the word of the metadata log alone;
                // creating a topic of that name removes it.
                tracing::warn!(dir = %path.display(), "ignoring a partition directory no topic owns");
            }
        }
        let mut local = self.local_topics.lock().await;
        for tp in owned.keys() {
            let topic = &image.topics[&tp.topic];
            local.insert(topic.name.clone(), (topic.id, topic.configs.clone()));
        }
        // Recovery reads each log; several at once keep the disk busy on a restart.
        let mut opened =
            futures::stream::iter(owned)
                .map(|(tp, path)| {
                    let config = self.partition_config(&image.topics[&tp.topic]);
                    let disk = self.disk.clone();
                    let (node, crash) =
                        (self.node.clone(), self.config.fault_actor_crash_probability);
                    async move {
                        Partition::open(&node, disk, tp, &path, config, started_ms, crash).await
                    }
                })
                .buffer_unordered(OPEN_CONCURRENCY);
        while let Some(partition) = opened.next().await {
            let partition = partition?;
            let topic_id = image.topics[&partition.tp.topic].id;
            partition::write_topic_id(self.disk.as_ref(), partition.dir(), topic_id).await?;
            self.insert_partition(partition);
        }
        Ok(())
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
        self.metadata.image()
    }

    /// The quorum voter on this node.
    pub fn quorum(&self) -> &QuorumHandle {
        &self.quorum
    }

    /// The node transport's address (the controller listener).
    pub fn controller_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// The active controller's node id as this node last heard it.
    pub fn active_controller(&self) -> Option<i32> {
        self.quorum
            .known_leader()
            .and_then(|id| i32::try_from(id).ok())
    }

    pub fn registration(&self) -> Option<Registration> {
        *self.registration.borrow()
    }

    fn formatted_cluster_id(&self) -> String {
        self.cluster_id_hint.clone()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let key = TopicPartition::new(topic, index);
        self.partitions
            .read()
            .expect("partitions lock")
            .get(&key)
            .cloned()
    }

    /// The partition, if this broker serves it; else the error that sends the client to
    /// the broker that does (NOT_LEADER_OR_FOLLOWER) or says there is none.
    pub fn serving(&self, topic: &str, index: i32) -> Result<Arc<Partition>, ApiError> {
        if let Some(partition) = self.partition(topic, index) {
            return Ok(partition);
        }
        let image = self.image();
        match image.topics.get(topic) {
            Some(t) if (0..t.partitions).contains(&index) => match image.leader_of(t, index) {
                Some(leader) => Err(ApiError::new(
                    ResponseError::NotLeaderOrFollower,
                    format!("{topic}-{index} is served by broker {leader}, not this one; refresh metadata"),
                )),
                None => Err(ApiError::new(
                    ResponseError::LeaderNotAvailable,
                    format!("{topic}-{index} has no live broker to serve it right now"),
                )),
            },
            _ => Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("{topic}-{index} does not exist"),
            )),
        }
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

    /// Opens a partition the image places here; `topic_id` is its topic's.
    async fn open_partition(
        &self,
        tp: TopicPartition,
        topic_id: uuid::Uuid,
        config: PartitionConfig,
    ) -> Result<(), LogError> {
        let dir = self.partition_dir(&tp);
        if self.disk.exists(&dir).await? {
            match partition::read_topic_id(self.disk.as_ref(), &dir).await? {
                Some(found) if found != topic_id => {
                    tracing::warn!(dir = %dir.display(), "removing the files of an earlier topic of this name");
                    delete_dir(self.disk.as_ref(), &dir).await?;
                }
                // Ours (its files were found before the image named them) or unmarked by
                // an older Runnel: recovered, never removed on a guess.
                _ => {}
            }
        }
        let partition = Partition::open(
            &self.node,
            self.disk.clone(),
            tp,
            &dir,
            config,
            now_ms(),
            self.config.fault_actor_crash_probability,
        )
        .await?;
        partition::write_topic_id(self.disk.as_ref(), &dir, topic_id).await?;
        if let Some(parent) = dir.parent() {
            self.disk.sync_dir(parent).await?;
        }
        self.insert_partition(partition);
        Ok(())
    }

    /// Brings the partitions here to what the image places here: opens new ones, passes
    /// changed overrides on, removes those of deleted (or re-created) topics.
    async fn reconcile(&self) -> Result<u64, ApiError> {
        let mut local = self.local_topics.lock().await;
        let image = self.image();
        let me = self.config.node_id;
        let stale: Vec<String> = local
            .iter()
            .filter(|(name, (id, _))| image.topics.get(*name).map(|t| t.id) != Some(*id))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            local.remove(&name);
            self.remove_local_topic(&name).await?;
        }
        for topic in image.topics.values() {
            let hosted: Vec<i32> = (0..topic.partitions)
                .filter(|&i| topic.replicas_of(i).contains(&me))
                .collect();
            if hosted.is_empty() {
                continue;
            }
            let config = self.partition_config(topic);
            let previous = local.insert(topic.name.clone(), (topic.id, topic.configs.clone()));
            let changed = previous.is_some_and(|(_, configs)| configs != topic.configs);
            for index in hosted {
                match self.partition(&topic.name, index) {
                    // An offline partition takes the new config when it is reopened.
                    Some(partition) if changed => {
                        if let Err(e) = partition.set_config(config.clone()).await {
                            tracing::warn!(partition = %partition.tp, error = %e, "config not applied");
                        }
                    }
                    Some(_) => {}
                    None => {
                        let tp = TopicPartition::new(topic.name.clone(), index);
                        self.open_partition(tp, topic.id, config.clone()).await?;
                    }
                }
            }
        }
        Ok(image.offset)
    }

    async fn remove_local_topic(&self, name: &str) -> Result<(), LogError> {
        let removed: Vec<Arc<Partition>> = {
            let mut partitions = self.partitions.write().expect("partitions lock");
            let keys: Vec<TopicPartition> = partitions
                .keys()
                .filter(|tp| tp.topic == name)
                .cloned()
                .collect();
            keys.iter().filter_map(|k| partitions.remove(k)).collect()
        };
        for partition in removed {
            delete_dir(self.disk.as_ref(), partition.dir()).await?;
        }
        Ok(())
    }

    /// Runs `command` on this node's controller actor, which refuses it unless this node
    /// is the active controller.
    pub(crate) async fn run_on_controller(
        &self,
        command: ControllerCommand,
    ) -> Result<controller::Answered, ApiError> {
        let controller = self
            .controller
            .get()
            .expect("the controller starts with the broker");
        controller
            .run(0, move |broker, controller| {
                Box::pin(async move { controller.execute(broker, command).await })
            })
            .await
            .map_err(|e| ApiError::new(ResponseError::NotController, e.to_string()))?
    }

    /// Has the active controller run `command`, here or on the node that leads, and waits
    /// until this node has applied the outcome (so this broker's next answer shows it).
    pub(crate) async fn controller_call(
        &self,
        command: ControllerCommand,
    ) -> Result<ControllerAnswer, ApiError> {
        let deadline = tokio::time::Instant::now() + NOT_CONTROLLER_PATIENCE;
        let answered = loop {
            let attempt = self.controller_attempt(command.clone()).await;
            match attempt {
                Err(e)
                    if e.code == ResponseError::NotController
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(NOT_CONTROLLER_RETRY).await;
                }
                other => break other?,
            }
        };
        self.wait_applied(answered.offset).await?;
        Ok(answered.answer)
    }

    async fn controller_attempt(
        &self,
        command: ControllerCommand,
    ) -> Result<controller::Answered, ApiError> {
        let me = self.transport.node_id();
        match self.quorum.known_leader() {
            Some(leader) if leader == me => self.run_on_controller(command).await,
            Some(leader) => controller::forward(&self.transport, leader, &command).await,
            None => Err(ApiError::new(
                ResponseError::NotController,
                "no controller is active: an election is under way; retry",
            )),
        }
    }

    /// Waits until this node has applied `offset` and opened the partitions it places here.
    async fn wait_applied(&self, offset: u64) -> Result<(), ApiError> {
        let mut reconciled = self.reconciled.subscribe();
        let waited =
            tokio::time::timeout(APPLY_WAIT, reconciled.wait_for(|r| r.offset >= offset)).await;
        match waited {
            Ok(Ok(r)) => match &r.error {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            },
            Ok(Err(_)) => Err(ApiError::new(ResponseError::BrokerNotAvailable, "the broker is stopping")),
            Err(_) => Err(ApiError::new(
                ResponseError::RequestTimedOut,
                format!("the change is committed at metadata offset {offset}, but this broker has not applied it within {} ms", APPLY_WAIT.as_millis()),
            )),
        }
    }

    /// Waits until the controller has registered and unfenced this broker.
    async fn wait_registered(&self, patience: Duration) -> Result<(), BrokerError> {
        let mut registration = self.registration.subscribe();
        let waited = tokio::time::timeout(
            patience,
            registration.wait_for(|r| r.is_some_and(|r| !r.fenced)),
        )
        .await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(BrokerError::NotRegistered {
                waited_ms: patience.as_millis() as u64,
            }),
        }
    }

    /// Fault injection: the controller actor panics, as a bug would make it; its supervisor
    /// restarts it.
    pub async fn inject_controller_crash(&self) {
        let controller = self
            .controller
            .get()
            .expect("the controller starts with the broker");
        let _ = controller
            .run(0, |_, _| {
                Box::pin(async { panic!("the controller crashed by fault injection") })
            })
            .await;
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
        replication_factor: i16,
        replicas: Option<Vec<Vec<i32>>>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(TopicImage, i16), ApiError> {
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
        let command = ControllerCommand::CreateTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            replicas,
            configs: configs.clone(),
            validate_only,
        };
        match self.controller_call(command).await? {
            ControllerAnswer::Topic {
                id,
                partitions,
                replication_factor,
            } => {
                let topic = self
                    .image()
                    .topics
                    .get(name)
                    .cloned()
                    .filter(|t| t.id == id);
                let topic = topic.unwrap_or(TopicImage {
                    name: name.to_string(),
                    id,
                    partitions,
                    configs,
                    replicas: Vec::new(),
                });
                Ok((topic, replication_factor))
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<uuid::Uuid, ApiError> {
        refuse_internal(name)?;
        let command = ControllerCommand::DeleteTopic {
            name: name.to_string(),
        };
        match self.controller_call(command).await? {
            ControllerAnswer::Topic { id, .. } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        replicas: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        refuse_internal(name)?;
        if let Some(topic) = self.image().topics.get(name) {
            check_partitions_per_request(count - topic.partitions)?;
        }
        let command = ControllerCommand::CreatePartitions {
            name: name.to_string(),
            count,
            replicas,
            validate_only,
        };
        self.controller_call(command).await.map(|_| ())
    }

    /// Replaces a topic's overrides with `change(current overrides)`.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        validate_only: bool,
        change: impl Fn(&mut BTreeMap<String, String>) -> Result<(), ApiError> + Send + 'static,
    ) -> Result<(), ApiError> {
        let mut attempts = 0;
        loop {
            let expected = self
                .image()
                .topics
                .get(name)
                .map(|t| t.configs.clone())
                .ok_or_else(|| {
                    ApiError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic '{name}' does not exist"),
                    )
                })?;
            let mut configs = expected.clone();
            change(&mut configs)?;
            self.config
                .topic_config(&configs)
                .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
            let command = ControllerCommand::SetTopicConfigs {
                name: name.to_string(),
                expected,
                configs,
                validate_only,
            };
            match self.controller_call(command).await {
                // Changed meanwhile by another broker's request: start from the new ones.
                Err(e) if e.code == ResponseError::ConcurrentTransactions && attempts < 5 => {
                    attempts += 1;
                    tokio::time::sleep(NOT_CONTROLLER_RETRY).await;
                }
                other => return other.map(|_| ()),
            }
        }
    }

    /// A fresh producer id; this broker takes blocks of them from the controller, which
    /// makes each block durable before any of it is handed out.
    pub async fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        let mut block = self.producer_ids.lock().await;
        if block.0 == block.1 {
            match self
                .controller_call(ControllerCommand::AllocateProducerIds)
                .await?
            {
                ControllerAnswer::ProducerIds { start, end } => *block = (start, end),
                other => return Err(unexpected(other)),
            }
        }
        assert!(block.0 < block.1, "a block holds at least one id");
        let id = block.0;
        block.0 += 1;
        Ok(id)
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

pub(crate) fn unexpected(answer: ControllerAnswer) -> ApiError {
    ApiError::new(
        ResponseError::UnknownServerError,
        format!("the controller answered {answer:?}, which does not fit the request"),
    )
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
