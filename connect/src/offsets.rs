//! Source offsets: the standalone worker's in `offset.storage.file.filename`, the
//! distributed worker's in the compacted `offset.storage.topic`.
//!
//! Kafka keys each offset by the JSON `["connector", {source partition}]` and stores the
//! offset as JSON (its internal converter, schemas off). The topic holds exactly those
//! bytes as key and value (a null value removes an offset), so Kafka's workers and ours
//! read each other's offsets. The standalone file keeps the same key and value JSON in a
//! JSON file (Kafka's file is a Java-serialized map); every commit rewrites it
//! crash-safely (temporary file, fsync, rename, directory fsync), so a committed offset
//! survives a crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use runnel_storage::disk::{Disk, DiskError, OpenMode};
use serde_json::{json, Value as Json};

use crate::api::OffsetReader;
use crate::data::JsonMap;
use crate::distributed::log::TopicLog;
use crate::error::ConnectError;

enum Backing {
    File { disk: Arc<dyn Disk>, path: PathBuf },
    Topic(Box<tokio::sync::Mutex<TopicLog>>),
}

impl std::fmt::Debug for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backing::File { path, .. } => write!(f, "file {}", path.display()),
            Backing::Topic(_) => write!(f, "topic"),
        }
    }
}

/// The offsets of every connector, in memory and in their file or topic.
#[derive(Debug)]
pub struct OffsetStore {
    backing: Backing,
    /// Key JSON text (`["name",{...}]`) to offset.
    offsets: Mutex<BTreeMap<String, JsonMap>>,
    /// One file write at a time, so renames never cross.
    write: tokio::sync::Mutex<()>,
}

fn key_of(connector: &str, partition: &JsonMap) -> String {
    json!([connector, partition]).to_string()
}

impl OffsetStore {
    /// Loads the file if it exists.
    pub async fn open(disk: Arc<dyn Disk>, path: PathBuf) -> Result<OffsetStore, ConnectError> {
        let mut offsets = BTreeMap::new();
        match disk.open(&path, OpenMode::Existing).await {
            Ok(file) => {
                let size = file.size_bytes().await?;
                let size = usize::try_from(size).map_err(|_| {
                    ConnectError::Config(format!("{}: offsets file too large", path.display()))
                })?;
                let bytes = file.read_at(0, size).await?;
                if !bytes.is_empty() {
                    let doc: Json = serde_json::from_slice(&bytes).map_err(|e| {
                        ConnectError::Config(format!(
                            "{}: the offsets file is not Runnel's JSON ({e}); move it away to start from no offsets",
                            path.display()
                        ))
                    })?;
                    for entry in doc["offsets"].as_array().into_iter().flatten() {
                        if let (Some(key), Some(Json::Object(value))) =
                            (entry.get("key"), entry.get("value"))
                        {
                            offsets.insert(key.to_string(), value.clone());
                        }
                    }
                }
            }
            Err(DiskError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(OffsetStore {
            backing: Backing::File { disk, path },
            offsets: Mutex::new(offsets),
            write: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads the offset topic to its end.
    pub async fn open_topic(log: TopicLog) -> Result<OffsetStore, ConnectError> {
        let store = OffsetStore {
            backing: Backing::Topic(Box::new(tokio::sync::Mutex::new(log))),
            offsets: Mutex::new(BTreeMap::new()),
            write: tokio::sync::Mutex::new(()),
        };
        store.refresh().await?;
        Ok(store)
    }

    /// Reads what other workers committed since (a no-op for the file). Kafka's workers
    /// do this before a source task reads its offsets.
    pub async fn refresh(&self) -> Result<(), ConnectError> {
        let Backing::Topic(log) = &self.backing else {
            return Ok(());
        };
        let records = log.lock().await.read_to_end().await?;
        let mut offsets = self.lock();
        for r in records {
            let Some(key) = r
                .key
                .as_deref()
                .and_then(|k| serde_json::from_slice::<Json>(k).ok())
            else {
                continue;
            };
            let key = key.to_string();
            match r.value.as_deref().map(serde_json::from_slice::<Json>) {
                Some(Ok(Json::Object(v))) => {
                    offsets.insert(key, v);
                }
                None => {
                    offsets.remove(&key);
                }
                Some(_) => tracing::warn!(key, "an offset that is not a JSON object; skipped"),
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, JsonMap>> {
        self.offsets.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, connector: &str, partition: &JsonMap) -> Option<JsonMap> {
        self.lock().get(&key_of(connector, partition)).cloned()
    }

    /// Every (partition, offset) of `connector`.
    pub fn of_connector(&self, connector: &str) -> Vec<(JsonMap, JsonMap)> {
        self.lock()
            .iter()
            .filter_map(|(k, v)| {
                let key: Json = serde_json::from_str(k).ok()?;
                match key.as_array().map(Vec::as_slice) {
                    Some([Json::String(name), Json::Object(partition)]) if name == connector => {
                        Some((partition.clone(), v.clone()))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// Records `entries` and makes the file durable before returning.
    pub async fn commit(
        &self,
        connector: &str,
        entries: impl IntoIterator<Item = (JsonMap, JsonMap)>,
    ) -> Result<(), ConnectError> {
        self.write(connector, entries.into_iter().map(|(p, o)| (p, Some(o))))
            .await
    }

    /// Sets (`Some`) or removes (`None`) offsets, durably; KIP-875's alter and reset.
    pub async fn write(
        &self,
        connector: &str,
        entries: impl IntoIterator<Item = (JsonMap, Option<JsonMap>)>,
    ) -> Result<(), ConnectError> {
        let _writing = self.write.lock().await;
        let (disk, path) = match &self.backing {
            Backing::File { disk, path } => (disk, path),
            Backing::Topic(log) => return self.write_topic(log, connector, entries).await,
        };
        let text = {
            let mut offsets = self.lock();
            for (partition, offset) in entries {
                let key = key_of(connector, &partition);
                match offset {
                    Some(offset) => offsets.insert(key, offset),
                    None => offsets.remove(&key),
                };
            }
            let list: Vec<Json> = offsets
                .iter()
                .filter_map(|(k, v)| {
                    Some(json!({"key": serde_json::from_str::<Json>(k).ok()?, "value": v}))
                })
                .collect();
            json!({"version": 1, "offsets": list}).to_string()
        };
        let tmp = path.with_extension("tmp");
        if disk.exists(&tmp).await? {
            disk.remove(&tmp).await?;
        }
        let file = disk.open(&tmp, OpenMode::CreateNew).await?;
        file.write_at(0, text.as_bytes()).await?;
        file.sync_data().await?;
        drop(file);
        disk.rename(&tmp, path).await?;
        disk.sync_dir(parent_of(path)).await?;
        Ok(())
    }

    /// One record per offset, acknowledged by the brokers before the map changes.
    async fn write_topic(
        &self,
        log: &tokio::sync::Mutex<TopicLog>,
        connector: &str,
        entries: impl IntoIterator<Item = (JsonMap, Option<JsonMap>)>,
    ) -> Result<(), ConnectError> {
        let entries: Vec<(JsonMap, Option<JsonMap>)> = entries.into_iter().collect();
        {
            let log = log.lock().await;
            for (partition, offset) in &entries {
                let key = key_of(connector, partition);
                let value = offset
                    .as_ref()
                    .map(|o| bytes::Bytes::from(Json::Object(o.clone()).to_string()));
                log.send(bytes::Bytes::from(key), value).await?;
            }
        }
        let mut offsets = self.lock();
        for (partition, offset) in entries {
            let key = key_of(connector, &partition);
            match offset {
                Some(o) => offsets.insert(key, o),
                None => offsets.remove(&key),
            };
        }
        Ok(())
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// One connector's view of the store, for its source tasks.
pub struct ConnectorOffsets {
    pub store: Arc<OffsetStore>,
    pub connector: String,
}

impl OffsetReader for ConnectorOffsets {
    fn offset(&self, partition: &JsonMap) -> Option<JsonMap> {
        self.store.get(&self.connector, partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_storage::disk::MemDisk;

    fn map(k: &str, v: Json) -> JsonMap {
        let mut m = JsonMap::new();
        m.insert(k.into(), v);
        m
    }

    #[tokio::test]
    async fn commits_survive_a_reopen_per_connector() {
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::new(1));
        let path = PathBuf::from("connect.offsets");
        let store = OffsetStore::open(disk.clone(), path.clone())
            .await
            .expect("open");
        let p = map("filename", json!("a.txt"));
        store
            .commit("src", [(p.clone(), map("position", json!(4)))])
            .await
            .expect("commit");
        store
            .commit("other", [(p.clone(), map("position", json!(1)))])
            .await
            .expect("commit");
        store
            .commit("src", [(p.clone(), map("position", json!(9)))])
            .await
            .expect("commit");
        let again = OffsetStore::open(disk, path).await.expect("reopen");
        assert_eq!(again.get("src", &p), Some(map("position", json!(9))));
        assert_eq!(
            again.of_connector("other"),
            vec![(p, map("position", json!(1)))]
        );
        assert!(again.of_connector("nobody").is_empty());
    }
}
