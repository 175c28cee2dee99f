//! `meta.properties`, the file that says which cluster and node a log directory belongs
//! to, as Kafka's `kafka-storage format` writes it (version 1: `cluster.id`, `node.id`,
//! `directory.id`). A directory is formatted on the broker's first start, or beforehand by
//! `runnel storage format` with a chosen cluster id (every node of a cluster needs the
//! same one); a broker refuses a directory of another cluster or another node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use runnel_storage::disk::{Disk, DiskError, OpenMode};
use runnel_storage::log::checkpoint;

pub const FILE: &str = "meta.properties";
const VERSION: &str = "1";
/// Kafka's cluster ids: 16 bytes in URL-safe base64 without padding.
const CLUSTER_ID_CHARS: usize = 22;

/// What a formatted log directory says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: i32,
    pub directory_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaPropertiesError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("{path} is not a valid meta.properties: {reason}. Restore it, or format an empty directory with `runnel storage format`")]
    Invalid { path: PathBuf, reason: String },
    #[error("{dir} belongs to node {found} (its meta.properties says node.id={found}), but this server is node.id={configured}; set node.id={found}, or point log.dirs at node {configured}'s directories")]
    OtherNode {
        dir: PathBuf,
        found: i32,
        configured: i32,
    },
    #[error("{dir} belongs to cluster {found}, but this node's data is of cluster {expected}; point log.dirs at directories of one cluster, or at an empty one")]
    OtherCluster {
        dir: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{cluster_id:?} is not a cluster id: Kafka's are 22 characters of URL-safe base64 (A-Z, a-z, 0-9, - and _), as `runnel storage random-uuid` prints")]
    BadClusterId { cluster_id: String },
    #[error("{dir} is formatted already (cluster {cluster_id}); pass --ignore-formatted to leave it as it is and format the others")]
    AlreadyFormatted { dir: PathBuf, cluster_id: String },
}

/// A new cluster id in Kafka's form.
pub fn random_cluster_id() -> String {
    crate::metadata::new_cluster_id(rand::random())
}

/// Refuses what is not a cluster id in Kafka's form.
pub fn validate_cluster_id(cluster_id: &str) -> Result<(), MetaPropertiesError> {
    let valid = cluster_id.len() == CLUSTER_ID_CHARS
        && cluster_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(MetaPropertiesError::BadClusterId {
            cluster_id: cluster_id.to_string(),
        })
    }
}

/// The directory's `meta.properties`, or `None` when it has none.
pub async fn read(
    disk: &dyn Disk,
    dir: &Path,
) -> Result<Option<MetaProperties>, MetaPropertiesError> {
    let path = dir.join(FILE);
    if !disk.exists(&path).await? {
        return Ok(None);
    }
    let file = disk.open(&path, OpenMode::Existing).await?;
    let size = file.size_bytes().await? as usize;
    let bytes = runnel_storage::disk::read_agreed(file.as_ref(), 0, size).await?;
    let invalid = |reason: String| MetaPropertiesError::Invalid {
        path: path.clone(),
        reason,
    };
    let properties: BTreeMap<String, String> = java_properties::read(&bytes[..])
        .map_err(|e| invalid(e.to_string()))?
        .into_iter()
        .collect();
    let get = |key: &str| {
        properties
            .get(key)
            .map(|v| v.trim().to_string())
            .ok_or_else(|| invalid(format!("it has no {key}")))
    };
    let version = get("version")?;
    if version != VERSION {
        return Err(invalid(format!(
            "version {version}; this broker reads version {VERSION}"
        )));
    }
    let cluster_id = get("cluster.id")?;
    let node_id = get("node.id")?
        .parse()
        .map_err(|e| invalid(format!("node.id: {e}")))?;
    let directory_id = properties.get("directory.id").cloned().unwrap_or_default();
    Ok(Some(MetaProperties {
        cluster_id,
        node_id,
        directory_id,
    }))
}

/// Writes the directory's `meta.properties` crash-safely.
pub async fn write(
    disk: &dyn Disk,
    dir: &Path,
    meta: &MetaProperties,
) -> Result<(), MetaPropertiesError> {
    disk.create_dir_all(dir).await?;
    let text = format!(
        "#\n# Written by Runnel: the cluster and node this log directory belongs to.\nnode.id={}\ndirectory.id={}\nversion={VERSION}\ncluster.id={}\n",
        meta.node_id, meta.directory_id, meta.cluster_id
    );
    checkpoint::replace_file(disk, dir, FILE, text.as_bytes()).await?;
    Ok(())
}

/// A directory id for `dir` of `cluster_id`, in Kafka's form; derived, so simulated runs
/// stay deterministic.
pub fn directory_id(cluster_id: &str, dir: &Path) -> String {
    crate::metadata::new_cluster_id(u128::from_be_bytes(sha_prefix(&format!(
        "{cluster_id}/{}",
        dir.display()
    ))))
}

fn sha_prefix(text: &str) -> [u8; 16] {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut prefix = [0u8; 16];
    prefix.copy_from_slice(&digest[..16]);
    prefix
}

/// Reads every log directory's `meta.properties`: each must name `node_id`, and all one
/// cluster; answers that cluster's id, if any directory is formatted.
pub async fn check(
    disk: &dyn Disk,
    dirs: &[PathBuf],
    node_id: i32,
) -> Result<Option<String>, MetaPropertiesError> {
    let mut cluster: Option<(PathBuf, String)> = None;
    for dir in dirs {
        let Some(meta) = read(disk, dir).await? else {
            continue;
        };
        if meta.node_id != node_id {
            return Err(MetaPropertiesError::OtherNode {
                dir: dir.clone(),
                found: meta.node_id,
                configured: node_id,
            });
        }
        match &cluster {
            Some((_, expected)) if *expected != meta.cluster_id => {
                return Err(MetaPropertiesError::OtherCluster {
                    dir: dir.clone(),
                    found: meta.cluster_id,
                    expected: expected.clone(),
                })
            }
            Some(_) => {}
            None => cluster = Some((dir.clone(), meta.cluster_id)),
        }
    }
    Ok(cluster.map(|(_, id)| id))
}

/// Formats every log directory that has no `meta.properties` yet for `cluster_id`.
pub async fn format_missing(
    disk: &dyn Disk,
    dirs: &[PathBuf],
    node_id: i32,
    cluster_id: &str,
) -> Result<(), MetaPropertiesError> {
    for dir in dirs {
        if read(disk, dir).await?.is_none() {
            let meta = MetaProperties {
                cluster_id: cluster_id.to_string(),
                node_id,
                directory_id: directory_id(cluster_id, dir),
            };
            write(disk, dir, &meta).await?;
        }
    }
    Ok(())
}

/// `runnel storage format`: writes `meta.properties` into every log directory for
/// `cluster_id`. A directory formatted already is an error, or left alone with
/// `ignore_formatted`. Answers the directories formatted.
pub async fn format(
    disk: &dyn Disk,
    dirs: &[PathBuf],
    node_id: i32,
    cluster_id: &str,
    ignore_formatted: bool,
) -> Result<Vec<PathBuf>, MetaPropertiesError> {
    validate_cluster_id(cluster_id)?;
    let mut formatted = Vec::new();
    for dir in dirs {
        if let Some(meta) = read(disk, dir).await? {
            if ignore_formatted {
                continue;
            }
            return Err(MetaPropertiesError::AlreadyFormatted {
                dir: dir.clone(),
                cluster_id: meta.cluster_id,
            });
        }
        let meta = MetaProperties {
            cluster_id: cluster_id.to_string(),
            node_id,
            directory_id: directory_id(cluster_id, dir),
        };
        write(disk, dir, &meta).await?;
        formatted.push(dir.clone());
    }
    Ok(formatted)
}

#[cfg(test)]
mod tests {
    use runnel_storage::disk::RealDisk;

    use super::*;

    #[tokio::test]
    async fn a_formatted_directory_reads_back_and_refuses_another_node_or_cluster() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let id = "MkU3OEVBNTcwNTJENDM2Qk";
        let formatted = format(&RealDisk, std::slice::from_ref(&a), 1, id, false)
            .await
            .expect("formats");
        assert_eq!(formatted, vec![a.clone()]);
        let meta = read(&RealDisk, &a).await.expect("reads").expect("present");
        assert_eq!((meta.cluster_id.as_str(), meta.node_id), (id, 1));
        assert_eq!(meta.directory_id.len(), 22);
        assert_eq!(
            check(&RealDisk, &[a.clone(), b.clone()], 1)
                .await
                .expect("ok"),
            Some(id.to_string())
        );
        let other_node = check(&RealDisk, std::slice::from_ref(&a), 2)
            .await
            .expect_err("refused");
        assert!(other_node.to_string().contains("node.id=1"), "{other_node}");
        format(
            &RealDisk,
            std::slice::from_ref(&b),
            1,
            "AAAAAAAAAAAAAAAAAAAAAA",
            false,
        )
        .await
        .expect("formats");
        let mixed = check(&RealDisk, &[a.clone(), b.clone()], 1)
            .await
            .expect_err("refused");
        assert!(
            matches!(mixed, MetaPropertiesError::OtherCluster { .. }),
            "{mixed}"
        );
        let again = format(&RealDisk, std::slice::from_ref(&a), 1, id, false)
            .await
            .expect_err("refused");
        assert!(again.to_string().contains("--ignore-formatted"), "{again}");
        assert!(format(&RealDisk, &[a], 1, id, true)
            .await
            .expect("skips")
            .is_empty());
    }

    #[test]
    fn cluster_ids_are_kafkas_base64_uuids() {
        assert!(validate_cluster_id("MkU3OEVBNTcwNTJENDM2Qk").is_ok());
        for bad in [
            "",
            "short",
            "MkU3OEVBNTcwNTJENDM2Qk=",
            "MkU3OEVBNTcwNTJENDM2Q!",
        ] {
            assert!(validate_cluster_id(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_damaged_file_is_refused_with_its_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join(FILE), "version=1\nnode.id=one\n").expect("written");
        let error = read(&RealDisk, tmp.path()).await.expect_err("refused");
        assert!(error.to_string().contains("meta.properties"), "{error}");
    }
}
