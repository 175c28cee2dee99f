//! Cluster metadata as a log of records, as in KRaft.
//!
//! The active controller ([`crate::controller`]) proposes [`MetadataRecord`]s to the
//! controller quorum, which replicates them in the `__cluster_metadata-0` Raft log. Every
//! node applies each committed entry, in log order, to an immutable [`MetadataImage`]
//! ([`MetadataImage::apply`] is pure and deterministic, so every node that has applied the
//! same entries holds the same image).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use runnel_storage::disk::Disk;
use runnel_storage::log::{LogConfig, LogError, PartitionLog};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The directory of the metadata log under the first log dir.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";
/// Where a metadata log written before the quorum is kept once its records are migrated.
pub const PRE_QUORUM_LOG_DIR: &str = "__cluster_metadata-0.pre-quorum";
/// Producer ids are handed out by the controller in blocks, as Kafka's AllocateProducerIds.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;
const METADATA_READ_BYTES: usize = 1 << 20;

/// One change to the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// The first record of every metadata log.
    Cluster {
        cluster_id: String,
    },
    /// A broker (re)started: its epoch is the index of this record's entry. It is fenced
    /// until it has caught up and heartbeats.
    BrokerRegistered {
        broker_id: i32,
        incarnation_id: Uuid,
        host: String,
        port: u16,
        #[serde(default)]
        rack: Option<String>,
    },
    /// The broker of that epoch missed its session, or is shutting down.
    BrokerFenced {
        broker_id: i32,
        epoch: i64,
    },
    /// The broker of that epoch has caught up and heartbeats: it may lead partitions.
    BrokerUnfenced {
        broker_id: i32,
        epoch: i64,
    },
    TopicCreated {
        name: String,
        topic_id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
        /// The replicas of each partition, by broker id.
        replicas: Vec<Vec<i32>>,
    },
    /// The topic now has `partitions` partitions (more than before); `replicas` are the
    /// new ones'.
    PartitionsCreated {
        name: String,
        partitions: i32,
        replicas: Vec<Vec<i32>>,
    },
    /// The topic's complete set of overrides from now on.
    TopicConfigsChanged {
        name: String,
        configs: BTreeMap<String, String>,
    },
    TopicDeleted {
        name: String,
    },
    /// Producer ids below `next` are taken.
    ProducerIdsAllocated {
        next: i64,
    },
}

/// A record of the metadata log written before the quorum (one node, replicas implied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PreQuorumRecord {
    Cluster {
        cluster_id: String,
    },
    TopicCreated {
        name: String,
        topic_id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    PartitionsCreated {
        name: String,
        partitions: i32,
    },
    TopicConfigsChanged {
        name: String,
        configs: BTreeMap<String, String>,
    },
    TopicDeleted {
        name: String,
    },
    ProducerIdsAllocated {
        next: i64,
    },
}

impl PreQuorumRecord {
    /// The record as the quorum writes it, every partition on `node`, the one broker then;
    /// `image` is the migrated log's image before this record.
    pub fn migrate(self, node: i32, image: &MetadataImage) -> MetadataRecord {
        let on_node = |count: i32| vec![vec![node]; count.max(0) as usize];
        match self {
            PreQuorumRecord::Cluster { cluster_id } => MetadataRecord::Cluster { cluster_id },
            PreQuorumRecord::TopicCreated {
                name,
                topic_id,
                partitions,
                configs,
            } => MetadataRecord::TopicCreated {
                name,
                topic_id,
                partitions,
                configs,
                replicas: on_node(partitions),
            },
            PreQuorumRecord::PartitionsCreated { name, partitions } => {
                let before = image.topics.get(&name).map_or(0, |t| t.partitions);
                MetadataRecord::PartitionsCreated {
                    name,
                    partitions,
                    replicas: on_node(partitions - before),
                }
            }
            PreQuorumRecord::TopicConfigsChanged { name, configs } => {
                MetadataRecord::TopicConfigsChanged { name, configs }
            }
            PreQuorumRecord::TopicDeleted { name } => MetadataRecord::TopicDeleted { name },
            PreQuorumRecord::ProducerIdsAllocated { next } => {
                MetadataRecord::ProducerIdsAllocated { next }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
    /// `replicas[p]` are partition `p`'s replicas, the preferred leader first.
    pub replicas: Vec<Vec<i32>>,
}

impl TopicImage {
    /// Partition `index`'s replicas (none for an index past the topic's end).
    pub fn replicas_of(&self, index: i32) -> &[i32] {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.replicas.get(i))
            .map_or(&[], Vec::as_slice)
    }
}

/// A registered broker as the metadata log knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerImage {
    pub id: i32,
    /// The index of its registration's entry: a restart makes a higher one.
    pub epoch: i64,
    pub incarnation_id: Uuid,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub fenced: bool,
}

/// The metadata as of some offset of the metadata log. Handlers read an `Arc` of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    /// The index of the last entry applied: how far this node has caught up.
    pub offset: u64,
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, BrokerImage>,
    pub topics: BTreeMap<String, TopicImage>,
    pub topic_names: HashMap<Uuid, String>,
    /// The first producer id not yet allocated.
    pub next_producer_id: i64,
}

/// A record that does not fit the image it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("topic {name} cannot be created: it exists already, has no partitions, or its replicas do not match them")]
    BadTopicCreation { name: String },
    #[error(
        "topic {name} cannot grow to {partitions} partitions with {replicas} new replica lists"
    )]
    BadPartitionCreation {
        name: String,
        partitions: i32,
        replicas: usize,
    },
    #[error("no topic {name}")]
    NoSuchTopic { name: String },
    #[error("producer ids cannot go back to {next}")]
    ProducerIdsBackwards { next: i64 },
    #[error("broker {broker_id} is not registered with epoch {epoch}")]
    StaleBrokerEpoch { broker_id: i32, epoch: i64 },
    #[error("the cluster is {current}; a record for cluster {other} does not belong in its log")]
    OtherCluster { current: String, other: String },
}

impl MetadataImage {
    /// Applies one record of the entry at `offset`. The active controller checked it
    /// against the image before proposing it, so a record that does not fit was proposed
    /// twice (a retry after a timeout) or the log is corrupt: every node refuses it alike,
    /// leaving the image as it was.
    pub fn apply(&mut self, offset: u64, record: &MetadataRecord) -> Result<(), MetadataError> {
        assert!(offset >= self.offset, "entries are applied in log order");
        self.offset = offset;
        match record {
            MetadataRecord::Cluster { cluster_id } => {
                if !self.cluster_id.is_empty() && self.cluster_id != *cluster_id {
                    return Err(MetadataError::OtherCluster {
                        current: self.cluster_id.clone(),
                        other: cluster_id.clone(),
                    });
                }
                self.cluster_id = cluster_id.clone();
            }
            MetadataRecord::BrokerRegistered {
                broker_id,
                incarnation_id,
                host,
                port,
                rack,
            } => {
                let broker = BrokerImage {
                    id: *broker_id,
                    epoch: offset as i64,
                    incarnation_id: *incarnation_id,
                    host: host.clone(),
                    port: *port,
                    rack: rack.clone(),
                    fenced: true,
                };
                self.brokers.insert(*broker_id, broker);
            }
            MetadataRecord::BrokerFenced { broker_id, epoch } => {
                self.broker_of_epoch(*broker_id, *epoch)?.fenced = true;
            }
            MetadataRecord::BrokerUnfenced { broker_id, epoch } => {
                self.broker_of_epoch(*broker_id, *epoch)?.fenced = false;
            }
            MetadataRecord::TopicCreated {
                name,
                topic_id,
                partitions,
                configs,
                replicas,
            } => {
                let fits = *partitions >= 1 && replicas.len() == *partitions as usize;
                if self.topics.contains_key(name) || !fits || has_empty(replicas) {
                    return Err(MetadataError::BadTopicCreation { name: name.clone() });
                }
                self.topic_names.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        partitions: *partitions,
                        configs: configs.clone(),
                        replicas: replicas.clone(),
                    },
                );
            }
            MetadataRecord::PartitionsCreated {
                name,
                partitions,
                replicas,
            } => {
                let topic = self.topic_mut(name)?;
                let added = i64::from(*partitions) - i64::from(topic.partitions);
                if added < 1 || added != replicas.len() as i64 || has_empty(replicas) {
                    return Err(MetadataError::BadPartitionCreation {
                        name: name.clone(),
                        partitions: *partitions,
                        replicas: replicas.len(),
                    });
                }
                topic.partitions = *partitions;
                topic.replicas.extend(replicas.iter().cloned());
            }
            MetadataRecord::TopicConfigsChanged { name, configs } => {
                self.topic_mut(name)?.configs = configs.clone();
            }
            MetadataRecord::TopicDeleted { name } => {
                let topic = self
                    .topics
                    .remove(name)
                    .ok_or_else(|| MetadataError::NoSuchTopic { name: name.clone() })?;
                self.topic_names.remove(&topic.id);
            }
            MetadataRecord::ProducerIdsAllocated { next } => {
                if *next <= self.next_producer_id {
                    return Err(MetadataError::ProducerIdsBackwards { next: *next });
                }
                self.next_producer_id = *next;
            }
        }
        Ok(())
    }

    fn topic_mut(&mut self, name: &str) -> Result<&mut TopicImage, MetadataError> {
        self.topics
            .get_mut(name)
            .ok_or_else(|| MetadataError::NoSuchTopic {
                name: name.to_string(),
            })
    }

    fn broker_of_epoch(
        &mut self,
        broker_id: i32,
        epoch: i64,
    ) -> Result<&mut BrokerImage, MetadataError> {
        self.brokers
            .get_mut(&broker_id)
            .filter(|b| b.epoch == epoch)
            .ok_or(MetadataError::StaleBrokerEpoch { broker_id, epoch })
    }

    /// Registered brokers that are not fenced, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// The broker serving partition `index` of `topic`: its first replica, if that broker
    /// is live (a partition has one replica until replication is built, so there is no
    /// other to fail over to).
    pub fn leader_of(&self, topic: &TopicImage, index: i32) -> Option<i32> {
        let first = *topic.replicas_of(index).first()?;
        self.brokers.get(&first).filter(|b| !b.fenced).map(|b| b.id)
    }
}

fn has_empty(replicas: &[Vec<i32>]) -> bool {
    replicas.iter().any(Vec::is_empty)
}

/// One committed quorum entry's payload: the records it carries, in order.
pub fn encode_entry(records: &[MetadataRecord]) -> bytes::Bytes {
    assert!(!records.is_empty(), "an entry carries at least one record");
    bytes::Bytes::from(serde_json::to_vec(records).expect("metadata records serialize"))
}

pub fn decode_entry(data: &[u8]) -> Result<Vec<MetadataRecord>, serde_json::Error> {
    serde_json::from_slice(data)
}

/// Reads a metadata log written before the quorum, for its migration.
pub async fn read_pre_quorum_log(
    disk: Arc<dyn Disk>,
    dir: &Path,
    now_ms: i64,
) -> Result<Vec<PreQuorumRecord>, LogError> {
    let log = PartitionLog::open(disk, dir, LogConfig::default(), now_ms).await?;
    let mut records = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let batches = log.read_batches(offset, METADATA_READ_BYTES).await?;
        if batches.is_empty() {
            break;
        }
        for batch in batches {
            for record in batch
                .records()
                .map_err(|e| LogError::Corrupt(format!("metadata batch: {e}")))?
            {
                let value = record.value.unwrap_or_default();
                let parsed = serde_json::from_slice(&value)
                    .map_err(|e| LogError::Corrupt(format!("metadata record at {offset}: {e}")))?;
                records.push(parsed);
            }
            offset = batch.last_offset() + 1;
        }
    }
    Ok(records)
}

/// Entries whose refusal is remembered for the controller that proposed them.
const REFUSED_REMEMBERED: usize = 256;

/// The image as this node has applied the quorum's committed entries, shared by the
/// handlers (which read it), the quorum peer (which applies entries to it) and the
/// broker's publisher (which opens and removes partitions to match it).
pub struct MetadataCache {
    image: std::sync::RwLock<Arc<MetadataImage>>,
    /// The offset applied so far; the publisher and waiting proposers watch it.
    applied: tokio::sync::watch::Sender<u64>,
    /// Entries some record of which was refused, with the reason (the latest few).
    refused: std::sync::Mutex<BTreeMap<u64, String>>,
}

impl Default for MetadataCache {
    fn default() -> Self {
        MetadataCache {
            image: std::sync::RwLock::new(Arc::new(MetadataImage::default())),
            applied: tokio::sync::watch::channel(0).0,
            refused: std::sync::Mutex::new(BTreeMap::new()),
        }
    }
}

impl MetadataCache {
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().expect("image lock").clone()
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Applies one committed entry. A record that does not fit is refused alike on every
    /// node, and the rest of the entry still applies.
    pub fn apply_entry(&self, index: u64, data: &[u8]) {
        let mut refusals = Vec::new();
        {
            let mut guard = self.image.write().expect("image lock");
            // In place while no handler holds this version; a copy otherwise.
            let image = Arc::make_mut(&mut guard);
            match decode_entry(data) {
                Ok(records) => {
                    for record in &records {
                        if let Err(e) = image.apply(index, record) {
                            refusals.push(e.to_string());
                        }
                    }
                }
                Err(e) => refusals.push(format!("the entry is not metadata records: {e}")),
            }
            image.offset = index;
        }
        if !refusals.is_empty() {
            let reason = refusals.join("; ");
            tracing::warn!(index, %reason, "metadata records refused");
            let mut refused = self.refused.lock().expect("refused lock");
            refused.insert(index, reason);
            while refused.len() > REFUSED_REMEMBERED {
                refused.pop_first();
            }
        }
        self.applied.send_replace(index);
    }

    /// Why (part of) the entry at `index` was refused, if it was.
    pub fn refused_at(&self, index: u64) -> Option<String> {
        self.refused
            .lock()
            .expect("refused lock")
            .get(&index)
            .cloned()
    }
}

/// A value for a fresh cluster id, 22 characters like Kafka's base64 UUIDs.
pub fn new_cluster_id(seed: u128) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(seed.to_be_bytes());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    digest
        .iter()
        .take(22)
        .map(|b| alphabet[usize::from(b % 64)] as char)
        .collect()
}

/// A topic id derived from the cluster, the name and a counter, so ids are unique and
/// simulated runs stay deterministic.
pub fn new_topic_id(cluster_id: &str, name: &str, nonce: i64) -> Uuid {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(cluster_id.as_bytes());
    hasher.update([0]);
    hasher.update(name.as_bytes());
    hasher.update(nonce.to_be_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(name: &str, partitions: i32) -> MetadataRecord {
        MetadataRecord::TopicCreated {
            name: name.into(),
            topic_id: new_topic_id("c", name, 0),
            partitions,
            configs: BTreeMap::new(),
            replicas: vec![vec![1]; partitions as usize],
        }
    }

    #[test]
    fn image_applies_records_and_refuses_impossible_ones() {
        let mut image = MetadataImage::default();
        image.apply(1, &created("a", 2)).expect("create");
        assert!(image.apply(2, &created("a", 2)).is_err());
        let grow = |partitions, replicas: usize| MetadataRecord::PartitionsCreated {
            name: "a".into(),
            partitions,
            replicas: vec![vec![1]; replicas],
        };
        assert!(
            image.apply(3, &grow(3, 2)).is_err(),
            "one new partition, two lists"
        );
        image.apply(4, &grow(3, 1)).expect("grow");
        assert!(image.apply(5, &grow(1, 0)).is_err());
        assert_eq!(image.topics["a"].partitions, 3);
        assert_eq!(image.topics["a"].replicas.len(), 3);
        image
            .apply(6, &MetadataRecord::TopicDeleted { name: "a".into() })
            .expect("delete");
        assert!(image.topics.is_empty() && image.topic_names.is_empty());
        assert_eq!(image.offset, 6);
    }

    #[test]
    fn a_broker_leads_once_registered_and_unfenced_in_its_own_epoch() {
        let mut image = MetadataImage::default();
        image.apply(1, &created("t", 1)).expect("create");
        let topic = image.topics["t"].clone();
        assert_eq!(image.leader_of(&topic, 0), None, "broker 1 is unknown");
        let registered = MetadataRecord::BrokerRegistered {
            broker_id: 1,
            incarnation_id: Uuid::nil(),
            host: "h".into(),
            port: 9092,
            rack: None,
        };
        image.apply(7, &registered).expect("register");
        assert_eq!(image.leader_of(&topic, 0), None, "fenced at registration");
        let stale = MetadataRecord::BrokerUnfenced {
            broker_id: 1,
            epoch: 3,
        };
        assert!(
            image.apply(8, &stale).is_err(),
            "an old epoch changes nothing"
        );
        let unfence = MetadataRecord::BrokerUnfenced {
            broker_id: 1,
            epoch: 7,
        };
        image.apply(9, &unfence).expect("unfence");
        assert_eq!(image.leader_of(&topic, 0), Some(1));
        assert_eq!(image.leader_of(&topic, 1), None, "past the topic's end");
    }

    #[test]
    fn entries_round_trip_and_pre_quorum_records_migrate_onto_the_node() {
        let records = vec![
            MetadataRecord::Cluster {
                cluster_id: new_cluster_id(1),
            },
            created("t", 4),
        ];
        assert_eq!(
            decode_entry(&encode_entry(&records)).expect("decode"),
            records
        );
        let old = PreQuorumRecord::TopicCreated {
            name: "t".into(),
            topic_id: new_topic_id("c", "t", 0),
            partitions: 4,
            configs: BTreeMap::new(),
        };
        assert_eq!(old.migrate(1, &MetadataImage::default()), records[1]);
    }
}
