//! Cluster metadata as a log of records, as in KRaft.
//!
//! The controller appends [`MetadataRecord`]s to the `__cluster_metadata-0` log and fsyncs
//! them before anything acts on them; the broker side applies each record, in log order, to
//! an immutable [`MetadataImage`]. Today one local controller writes the log; a Raft quorum
//! replaces it later without changing how the broker applies records.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use runnel_protocol::batch::build;
use runnel_storage::disk::Disk;
use runnel_storage::log::{LogConfig, LogError, PartitionLog};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The directory of the metadata log under the first log dir.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";
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
    TopicCreated {
        name: String,
        topic_id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    /// The topic now has `partitions` partitions (more than before).
    PartitionsCreated {
        name: String,
        partitions: i32,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

/// The metadata as of some offset of the metadata log. Handlers read an `Arc` of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicImage>,
    pub topic_names: HashMap<Uuid, String>,
    /// The first producer id not yet allocated.
    pub next_producer_id: i64,
}

/// A record that does not fit the image it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("topic {name} cannot be created: it exists already or has no partitions")]
    BadTopicCreation { name: String },
    #[error("topic {name} cannot shrink to {partitions} partitions")]
    PartitionsShrink { name: String, partitions: i32 },
    #[error("no topic {name}")]
    NoSuchTopic { name: String },
    #[error("producer ids cannot go back to {next}")]
    ProducerIdsBackwards { next: i64 },
}

impl MetadataImage {
    /// Applies one record. Records were validated before they were written, so a record
    /// that does not fit the image means the log is corrupt.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), MetadataError> {
        match record {
            MetadataRecord::Cluster { cluster_id } => self.cluster_id = cluster_id.clone(),
            MetadataRecord::TopicCreated {
                name,
                topic_id,
                partitions,
                configs,
            } => {
                if self.topics.contains_key(name) || *partitions < 1 {
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
                    },
                );
            }
            MetadataRecord::PartitionsCreated { name, partitions } => {
                let topic = self.topic_mut(name)?;
                if *partitions <= topic.partitions {
                    return Err(MetadataError::PartitionsShrink {
                        name: name.clone(),
                        partitions: *partitions,
                    });
                }
                topic.partitions = *partitions;
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
}

/// The metadata log on disk: append-and-fsync, and replay on open.
pub struct MetadataLog {
    log: PartitionLog,
}

impl MetadataLog {
    /// Opens the log and returns it with every record it holds, in order.
    pub async fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        now_ms: i64,
    ) -> Result<(MetadataLog, Vec<MetadataRecord>), LogError> {
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
                    let parsed = serde_json::from_slice(&value).map_err(|e| {
                        LogError::Corrupt(format!("metadata record at {offset}: {e}"))
                    })?;
                    records.push(parsed);
                }
                offset = batch.last_offset() + 1;
            }
        }
        Ok((MetadataLog { log }, records))
    }

    pub fn is_empty(&self) -> bool {
        self.log.log_end_offset() == 0
    }

    /// Appends the records as one batch and makes them durable.
    pub async fn append(
        &mut self,
        records: &[MetadataRecord],
        now_ms: i64,
    ) -> Result<(), LogError> {
        assert!(!records.is_empty());
        let values: Vec<Vec<u8>> = records
            .iter()
            .map(|r| serde_json::to_vec(r).expect("metadata records serialize"))
            .collect();
        let entries: Vec<build::Record<'_>> = values
            .iter()
            .map(|v| build::Record {
                key: None,
                value: Some(v),
                timestamp_delta: 0,
            })
            .collect();
        let batch = build::batch(now_ms, &entries);
        self.log.append(&[batch], 0, now_ms).await?;
        self.log.flush().await
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
    use runnel_storage::disk::MemDisk;

    fn created(name: &str, partitions: i32) -> MetadataRecord {
        MetadataRecord::TopicCreated {
            name: name.into(),
            topic_id: new_topic_id("c", name, 0),
            partitions,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn image_applies_records_and_refuses_impossible_ones() {
        let mut image = MetadataImage::default();
        image.apply(&created("a", 2)).expect("create");
        assert!(image.apply(&created("a", 2)).is_err());
        image
            .apply(&MetadataRecord::PartitionsCreated {
                name: "a".into(),
                partitions: 3,
            })
            .expect("grow");
        assert!(image
            .apply(&MetadataRecord::PartitionsCreated {
                name: "a".into(),
                partitions: 1
            })
            .is_err());
        assert_eq!(image.topics["a"].partitions, 3);
        image
            .apply(&MetadataRecord::TopicDeleted { name: "a".into() })
            .expect("delete");
        assert!(image.topics.is_empty() && image.topic_names.is_empty());
    }

    #[tokio::test]
    async fn the_log_replays_what_it_made_durable() {
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::new(1));
        let dir = Path::new("/data").join(METADATA_LOG_DIR);
        let (mut log, records) = MetadataLog::open(disk.clone(), &dir, 0)
            .await
            .expect("open");
        assert!(records.is_empty() && log.is_empty());
        let written = vec![
            MetadataRecord::Cluster {
                cluster_id: new_cluster_id(1),
            },
            created("t", 4),
        ];
        log.append(&written, 5).await.expect("append");
        drop(log);
        let (_, replayed) = MetadataLog::open(disk, &dir, 6).await.expect("reopen");
        assert_eq!(replayed, written);
    }
}
