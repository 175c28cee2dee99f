//! The client's view of a cluster: bootstrap servers, brokers, one connection per broker,
//! and cached topic metadata (partitions, leaders, replicas, ISR).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ListOffsetsRequest, MetadataRequest, MetadataResponse};
use runnel_protocol::kafka::{topic_name, ResponseError};
use tokio::time::Instant;

use super::conn::{Connection, ConnectionConfig};
use super::error::KafkaError;

/// Settings shared by the producer, the consumer and the admin client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// HOST:PORT of brokers to learn the cluster from; the first one that answers is used.
    pub bootstrap_servers: Vec<String>,
    pub connection: ConnectionConfig,
    /// Pause between retries of a retriable error (Kafka's retry.backoff.ms).
    pub retry_backoff_ms: u64,
    /// Cached topic metadata older than this is asked for again, so added partitions and
    /// moved leaders are seen even without an error (Kafka's metadata.max.age.ms).
    pub metadata_max_age_ms: u64,
}

impl ClientConfig {
    /// A config for one or more comma-separated HOST:PORT bootstrap servers.
    pub fn new(bootstrap_servers: &str) -> Self {
        ClientConfig {
            bootstrap_servers: bootstrap_servers
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            connection: ConnectionConfig::default(),
            retry_backoff_ms: 100,
            metadata_max_age_ms: 300_000,
        }
    }

    pub fn with_client_id(mut self, client_id: &str) -> Self {
        self.connection.client_id = client_id.to_string();
        self
    }

    pub fn with_request_timeout_ms(mut self, request_timeout_ms: u64) -> Self {
        self.connection.request_timeout_ms = request_timeout_ms;
        self
    }
}

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: i32,
    /// -1 while there is no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
    pub error: Option<ResponseError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    /// The topic id's 128 bits (Metadata v10+; 0 when the broker sent none), as KIP-848
    /// consumer groups name topics by id.
    pub topic_id: u128,
    pub is_internal: bool,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionMetadata>,
}

impl TopicMetadata {
    pub fn partition(&self, partition: i32) -> Option<&PartitionMetadata> {
        self.partitions
            .binary_search_by_key(&partition, |p| p.partition)
            .ok()
            .map(|i| &self.partitions[i])
    }
}

/// A metadata answer: the brokers, the controller, and each topic asked about (or all).
#[derive(Debug, Clone)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    pub topics: Vec<TopicMetadata>,
    /// Topics the broker answered with an error (e.g. UNKNOWN_TOPIC_OR_PARTITION).
    pub topic_errors: Vec<(String, ResponseError)>,
}

/// Which offset ListOffsets should find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset whose timestamp is at or after this one (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ts) => ts,
        }
    }
}

/// A ListOffsets answer for one partition; `offset` is -1 when no record is that late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub leader_epoch: i32,
}

struct State {
    brokers: BTreeMap<i32, BrokerInfo>,
    connections: HashMap<i32, Connection>,
    /// The connection to a bootstrap server, used until broker connections exist.
    bootstrap: Option<Connection>,
    /// Each topic's metadata and when it was learned.
    topics: HashMap<String, (Arc<TopicMetadata>, Instant)>,
    controller_id: i32,
}

/// The cluster as this client sees it; cheap to clone, shared by a client's tasks.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<ClusterInner>,
}

struct ClusterInner {
    config: ClientConfig,
    state: Mutex<State>,
}

impl Cluster {
    /// Connects to the first bootstrap server that answers and learns the brokers.
    pub async fn connect(config: ClientConfig) -> Result<Cluster, KafkaError> {
        if config.bootstrap_servers.is_empty() {
            return Err(KafkaError::Config(
                "no bootstrap servers given; pass HOST:PORT of a broker".into(),
            ));
        }
        let cluster = Cluster {
            inner: Arc::new(ClusterInner {
                config,
                state: Mutex::new(State {
                    brokers: BTreeMap::new(),
                    connections: HashMap::new(),
                    bootstrap: None,
                    topics: HashMap::new(),
                    controller_id: -1,
                }),
            }),
        };
        cluster.metadata(Some(&[]), false).await?;
        Ok(cluster)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a cache: a panic elsewhere cannot leave it worse than stale.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connect_bootstrap(&self) -> Result<Connection, KafkaError> {
        let mut last_error = None;
        for addr in &self.inner.config.bootstrap_servers {
            match Connection::connect(addr, self.inner.config.connection.clone()).await {
                Ok(conn) => {
                    self.lock().bootstrap = Some(conn.clone());
                    return Ok(conn);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("bootstrap_servers is not empty"))
    }

    /// A live connection to some broker: a known broker's, else a bootstrap server's.
    pub async fn any_connection(&self) -> Result<Connection, KafkaError> {
        let (live, known) = {
            let state = self.lock();
            let live = state
                .connections
                .values()
                .chain(state.bootstrap.iter())
                .find(|c| !c.is_closed())
                .cloned();
            (live, state.brokers.keys().copied().collect::<Vec<_>>())
        };
        if let Some(conn) = live {
            return Ok(conn);
        }
        for node_id in known {
            if let Ok(conn) = self.connection(node_id).await {
                return Ok(conn);
            }
        }
        self.connect_bootstrap().await
    }

    /// A live connection to broker `node_id`, opened if needed.
    pub async fn connection(&self, node_id: i32) -> Result<Connection, KafkaError> {
        let addr = {
            let state = self.lock();
            if let Some(conn) = state.connections.get(&node_id).filter(|c| !c.is_closed()) {
                return Ok(conn.clone());
            }
            match state.brokers.get(&node_id) {
                Some(b) => b.addr(),
                None => {
                    return Err(KafkaError::broker(
                        ResponseError::BrokerNotAvailable,
                        format!("broker {node_id} is not in the cluster metadata"),
                        None,
                    ))
                }
            }
        };
        let conn = Connection::connect(&addr, self.inner.config.connection.clone()).await?;
        self.lock().connections.insert(node_id, conn.clone());
        Ok(conn)
    }

    /// The controller's connection when it is known, else any broker's.
    pub async fn controller_connection(&self) -> Result<Connection, KafkaError> {
        let controller = self.lock().controller_id;
        if controller >= 0 {
            if let Ok(conn) = self.connection(controller).await {
                return Ok(conn);
            }
        }
        self.any_connection().await
    }

    /// Asks for metadata of `topics` (`None`: every topic; `Some(&[])`: brokers only) and
    /// updates the cache.
    pub async fn metadata(
        &self,
        topics: Option<&[String]>,
        allow_auto_topic_creation: bool,
    ) -> Result<ClusterMetadata, KafkaError> {
        let conn = self.any_connection().await?;
        let response: MetadataResponse = conn
            .call(|version| {
                let request = MetadataRequest::default().with_topics(topics.map(|names| {
                    names
                        .iter()
                        .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                        .collect()
                }));
                if version >= 4 {
                    request.with_allow_auto_topic_creation(allow_auto_topic_creation)
                } else {
                    request
                }
            })
            .await?;
        let metadata = convert_metadata(response);
        let mut state = self.lock();
        if !metadata.brokers.is_empty() {
            state.brokers = metadata
                .brokers
                .iter()
                .map(|b| (b.node_id, b.clone()))
                .collect();
            // Connections to brokers that left, or moved, are dropped.
            let brokers = &state.brokers;
            let stale: Vec<i32> = state
                .connections
                .iter()
                .filter(|(id, c)| brokers.get(id).is_none_or(|b| b.addr() != c.addr()))
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                state.connections.remove(&id);
            }
        }
        state.controller_id = metadata.controller_id;
        let now = Instant::now();
        for topic in &metadata.topics {
            state
                .topics
                .insert(topic.name.clone(), (Arc::new(topic.clone()), now));
        }
        for (name, _) in &metadata.topic_errors {
            state.topics.remove(name);
        }
        Ok(metadata)
    }

    /// Cached metadata of `topic`, if any and not older than `metadata_max_age_ms`.
    pub fn cached_topic(&self, topic: &str) -> Option<Arc<TopicMetadata>> {
        let max_age = Duration::from_millis(self.inner.config.metadata_max_age_ms);
        let state = self.lock();
        let (metadata, learned) = state.topics.get(topic)?;
        (learned.elapsed() <= max_age).then(|| metadata.clone())
    }

    /// Metadata of `topic` from the cache, or asked for when missing.
    pub async fn topic(
        &self,
        topic: &str,
        allow_auto_topic_creation: bool,
    ) -> Result<Arc<TopicMetadata>, KafkaError> {
        if let Some(t) = self.cached_topic(topic) {
            return Ok(t);
        }
        let metadata = self
            .metadata(Some(&[topic.to_string()]), allow_auto_topic_creation)
            .await?;
        if let Some((_, code)) = metadata.topic_errors.iter().find(|(n, _)| n == topic) {
            return Err(match code {
                ResponseError::UnknownTopicOrPartition => KafkaError::UnknownTopic {
                    topic: topic.to_string(),
                },
                code => KafkaError::broker(*code, format!("metadata of topic {topic:?}"), None),
            });
        }
        self.cached_topic(topic).ok_or(KafkaError::UnknownTopic {
            topic: topic.to_string(),
        })
    }

    /// Forgets cached topic metadata, so the next use asks again.
    pub fn invalidate(&self, topic: &str) {
        self.lock().topics.remove(topic);
    }

    /// The leader of a partition from the cache: `None` if unknown or leaderless.
    pub fn cached_leader(&self, tp: &TopicPartition) -> Option<i32> {
        let leader = self
            .cached_topic(&tp.topic)?
            .partition(tp.partition)?
            .leader;
        (leader >= 0).then_some(leader)
    }

    /// The leader of a partition, refreshing metadata once if the cache does not know it.
    pub async fn leader(&self, tp: &TopicPartition) -> Result<i32, KafkaError> {
        if let Some(leader) = self.cached_leader(tp) {
            return Ok(leader);
        }
        self.invalidate(&tp.topic);
        let topic = self.topic(&tp.topic, false).await?;
        let partition = topic
            .partition(tp.partition)
            .ok_or(KafkaError::UnknownPartition {
                topic: tp.topic.clone(),
                partition: tp.partition,
                partitions: topic.partitions.len(),
            })?;
        if partition.leader < 0 {
            return Err(KafkaError::broker(
                partition.error.unwrap_or(ResponseError::LeaderNotAvailable),
                format!("partition {tp} has no leader"),
                None,
            ));
        }
        Ok(partition.leader)
    }

    /// Finds offsets with ListOffsets at each partition's leader.
    pub async fn list_offsets(
        &self,
        requests: &[(TopicPartition, OffsetSpec)],
    ) -> Result<Vec<(TopicPartition, Result<ListedOffset, KafkaError>)>, KafkaError> {
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, OffsetSpec)>> = BTreeMap::new();
        let mut results = Vec::with_capacity(requests.len());
        for (tp, spec) in requests {
            match self.leader(tp).await {
                Ok(leader) => by_leader
                    .entry(leader)
                    .or_default()
                    .push((tp.clone(), *spec)),
                Err(e) => results.push((tp.clone(), Err(e))),
            }
        }
        let calls = by_leader.into_iter().map(|(leader, parts)| async move {
            let outcome = self.list_offsets_at(leader, &parts).await;
            (parts, outcome)
        });
        for (parts, outcome) in futures::future::join_all(calls).await {
            match outcome {
                Ok(found) => results.extend(found),
                Err(e) => {
                    if e.invalidates_metadata() {
                        for (tp, _) in &parts {
                            self.invalidate(&tp.topic);
                        }
                    }
                    results.extend(parts.into_iter().map(|(tp, _)| (tp, Err(e.clone()))));
                }
            }
        }
        Ok(results)
    }

    async fn list_offsets_at(
        &self,
        leader: i32,
        parts: &[(TopicPartition, OffsetSpec)],
    ) -> Result<Vec<(TopicPartition, Result<ListedOffset, KafkaError>)>, KafkaError> {
        let conn = self.connection(leader).await?;
        let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
        for (tp, spec) in parts {
            topics.entry(&tp.topic).or_default().push(
                ListOffsetsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(spec.timestamp()),
            );
        }
        let timeout_ms = self.inner.config.connection.request_timeout_ms;
        let response = conn
            .call(|version| {
                let request = ListOffsetsRequest::default()
                    .with_replica_id((-1).into())
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                ListOffsetsTopic::default()
                                    .with_name(topic_name(name))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    );
                if version >= 10 {
                    request.with_timeout_ms(timeout_ms.min(i32::MAX as u64) as i32)
                } else {
                    request
                }
            })
            .await?;
        let mut found = Vec::new();
        for topic in response.topics {
            for p in topic.partitions {
                let tp = TopicPartition::new(topic.name.as_str(), p.partition_index);
                let result = match ResponseError::try_from_code(p.error_code) {
                    None => Ok(ListedOffset {
                        offset: p.offset,
                        timestamp_ms: p.timestamp,
                        leader_epoch: p.leader_epoch,
                    }),
                    Some(code) => {
                        let e = KafkaError::broker(code, format!("list offsets of {tp}"), None);
                        if e.invalidates_metadata() {
                            self.invalidate(&tp.topic);
                        }
                        Err(e)
                    }
                };
                found.push((tp, result));
            }
        }
        Ok(found)
    }
}

fn convert_metadata(response: MetadataResponse) -> ClusterMetadata {
    let brokers = response
        .brokers
        .into_iter()
        .map(|b| BrokerInfo {
            node_id: b.node_id.0,
            host: b.host.as_str().to_string(),
            port: b.port,
            rack: b.rack.map(|r| r.as_str().to_string()),
        })
        .collect();
    let mut topics = Vec::new();
    let mut topic_errors = Vec::new();
    for t in response.topics {
        let Some(name) = t.name.map(|n| n.0.as_str().to_string()) else {
            continue;
        };
        if let Some(code) = ResponseError::try_from_code(t.error_code) {
            topic_errors.push((name, code));
            continue;
        }
        let mut partitions: Vec<PartitionMetadata> = t
            .partitions
            .into_iter()
            .map(|p| PartitionMetadata {
                partition: p.partition_index,
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                replicas: p.replica_nodes.into_iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.into_iter().map(|b| b.0).collect(),
                offline_replicas: p.offline_replicas.into_iter().map(|b| b.0).collect(),
                error: ResponseError::try_from_code(p.error_code),
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        topics.push(TopicMetadata {
            name,
            topic_id: t.topic_id.as_u128(),
            is_internal: t.is_internal,
            partitions,
        });
    }
    ClusterMetadata {
        cluster_id: response.cluster_id.map(|c| c.as_str().to_string()),
        controller_id: response.controller_id.0,
        brokers,
        topics,
        topic_errors,
    }
}
