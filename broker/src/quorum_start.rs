//! How a broker joins its controller quorum at start: the node transport on the controller
//! listener, the quorum voter with the metadata image as its state machine, the replay of
//! the log, and the one-time migration of a metadata log written before the quorum.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use runnel_actors::transport::{Transport, TransportConfig};
use runnel_actors::Node;
use runnel_quorum::{Committed, QuorumConfig, QuorumHandle};
use runnel_storage::disk::Disk;
use runnel_storage::log::{checkpoint, delete_dir, LogError};

use crate::config::BrokerConfig;
use crate::metadata::{
    read_pre_quorum_log, MetadataCache, MetadataImage, MetadataRecord, PreQuorumRecord,
    METADATA_LOG_DIR,
};
use crate::BrokerError;

/// Beside the log dir: the records of a pre-quorum metadata log, kept until the quorum
/// has committed them.
pub const PRE_QUORUM_FILE: &str = "__cluster_metadata-0.pre-quorum";
const STATUS_POLL: Duration = Duration::from_millis(10);
/// How long a start waits to have replayed what its own log holds committed.
const REPLAY_WAIT: Duration = Duration::from_secs(60);
/// How long a voter of a larger quorum waits at start to hear its leader.
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

/// A metadata log of the single-node format (no `quorum-state` beside its segments) is
/// read, its records saved beside it, and the directory cleared for the quorum's log.
/// Returns the records still to migrate (also those saved by an earlier, interrupted
/// start).
pub async fn set_aside_pre_quorum_log(
    disk: &Arc<dyn Disk>,
    config: &BrokerConfig,
    now_ms: i64,
) -> Result<Vec<PreQuorumRecord>, BrokerError> {
    let root = &config.log_dirs[0];
    let dir = root.join(METADATA_LOG_DIR);
    let state = dir.join(runnel_quorum::log::STATE_FILE);
    let exists = disk.exists(&dir).await.map_err(LogError::from)?;
    if exists && !disk.exists(&state).await.map_err(LogError::from)? {
        let records = read_pre_quorum_log(disk.clone(), &dir, now_ms).await?;
        if !records.is_empty() {
            let lines: Vec<String> = records
                .iter()
                .map(|r| serde_json::to_string(r).expect("records serialize"))
                .collect();
            checkpoint::write(disk.as_ref(), root, PRE_QUORUM_FILE, &lines)
                .await
                .map_err(LogError::from)?;
            tracing::info!(
                records = records.len(),
                "moving a metadata log written before the controller quorum into the quorum's log"
            );
            delete_dir(disk.as_ref(), &dir).await?;
            disk.sync_dir(root).await.map_err(LogError::from)?;
        }
    }
    let saved = checkpoint::read(disk.as_ref(), root, PRE_QUORUM_FILE)
        .await
        .map_err(LogError::from)?
        .unwrap_or_default();
    let mut records = Vec::with_capacity(saved.len());
    for line in saved {
        let record = serde_json::from_str(&line).map_err(|e| {
            LogError::Corrupt(format!(
                "{PRE_QUORUM_FILE} holds a line that is no record: {e}"
            ))
        })?;
        records.push(record);
    }
    if !records.is_empty() && !config.single_voter() {
        return Err(BrokerError::MigrateAlone);
    }
    Ok(records)
}

/// Starts the node transport on the controller listener, with every other voter as a
/// peer. Returns it and the voters' node ids.
pub async fn start_transport(
    node: &Node,
    config: &BrokerConfig,
) -> Result<(Transport, Vec<u64>), BrokerError> {
    let voters = config.quorum_voters();
    let me = voter_id(config.node_id);
    let listen = match config.controller_listen {
        Some(addr) => addr,
        None => SocketAddr::new(config.listen.ip(), 0),
    };
    let mut transport_config = TransportConfig::new(me, listen);
    for (id, (host, port)) in &voters {
        if *id == config.node_id {
            continue;
        }
        let addr = resolve(host, *port).await?;
        transport_config = transport_config.with_peer(voter_id(*id), addr);
    }
    let transport = Transport::start(node, transport_config)
        .await
        .map_err(|e| BrokerError::ControllerListen {
            addr: listen,
            error: e.to_string(),
        })?;
    Ok((transport, voters.keys().map(|id| voter_id(*id)).collect()))
}

fn voter_id(node_id: i32) -> u64 {
    u64::try_from(node_id).expect("node ids were checked to be non-negative")
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, BrokerError> {
    let unresolved = || BrokerError::UnknownVoterHost {
        host: host.to_string(),
        port,
    };
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| unresolved())?
        .next()
        .ok_or_else(unresolved)
}

/// The voter, applying committed entries to `metadata`.
pub fn spawn_voter(
    node: &Node,
    transport: &Transport,
    disk: &Arc<dyn Disk>,
    config: &BrokerConfig,
    voters: Vec<u64>,
    metadata: &Arc<MetadataCache>,
) -> QuorumHandle {
    let dir = config.log_dirs[0].join(METADATA_LOG_DIR);
    let quorum_config = QuorumConfig::new(voter_id(config.node_id), voters, dir);
    let cache = metadata.clone();
    let apply = Arc::new(move |entry: Committed| cache.apply_entry(entry.index, &entry.data));
    QuorumHandle::spawn(node, transport, disk.clone(), quorum_config, apply)
}

/// Waits until the voter has applied its log. A quorum of one leads at once and applies
/// everything it holds. A voter of a larger quorum waits (for a while) to hear the leader
/// and apply what it says is committed; without a leader it goes on with what it has, and
/// the publisher catches up later. Returns how many entries the log held at start.
pub async fn replay(
    quorum: &QuorumHandle,
    metadata: &MetadataCache,
    single_voter: bool,
) -> Result<u64, BrokerError> {
    let patience = if single_voter {
        REPLAY_WAIT
    } else {
        CATCH_UP_WAIT
    };
    let deadline = tokio::time::Instant::now() + patience;
    let mut held = None;
    loop {
        // Read before the status: the voter applies on, so only this order can be checked.
        let image_offset = metadata.image().offset;
        if let Ok(status) = quorum.status(crate::controller::STATUS_TIMEOUT).await {
            let held = *held.get_or_insert(status.last_index);
            let caught_up = if single_voter {
                status.leader_ready && status.applied_index >= held
            } else {
                status.leader.is_some() && status.applied_index >= status.commit_index
            };
            if caught_up {
                assert!(
                    image_offset <= status.applied_index,
                    "the image never runs ahead of the voter that applies to it"
                );
                return Ok(held);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            if single_voter {
                return Err(BrokerError::NotReplayed {
                    waited_ms: REPLAY_WAIT.as_millis() as u64,
                });
            }
            tracing::warn!(
                waited_ms = CATCH_UP_WAIT.as_millis() as u64,
                "no quorum leader heard yet; starting from the metadata this node has"
            );
            return Ok(held.unwrap_or(0));
        }
        tokio::time::sleep(STATUS_POLL).await;
    }
}

/// Commits the records of a pre-quorum metadata log, once and as one entry (so a crash
/// leaves all of them or none), then drops the saved copy.
pub async fn migrate(
    quorum: &QuorumHandle,
    metadata: &MetadataCache,
    disk: &Arc<dyn Disk>,
    config: &BrokerConfig,
    records: Vec<PreQuorumRecord>,
) -> Result<(), BrokerError> {
    if records.is_empty() {
        return Ok(());
    }
    // Non-empty: committed by an earlier start that stopped before removing the copy.
    if metadata.image().cluster_id.is_empty() {
        let mut image = MetadataImage::default();
        let mut migrated: Vec<MetadataRecord> = Vec::with_capacity(records.len());
        for record in records {
            let record = record.migrate(config.node_id, &image);
            image.apply(0, &record)?;
            migrated.push(record);
        }
        let entry = crate::metadata::encode_entry(&migrated);
        quorum
            .propose(entry, crate::controller::COMMIT_TIMEOUT)
            .await
            .map_err(|e| BrokerError::Migration(e.to_string()))?;
        tracing::info!(
            records = migrated.len(),
            topics = image.topics.len(),
            "the metadata log is now the controller quorum's"
        );
    }
    let root = &config.log_dirs[0];
    disk.remove(&root.join(PRE_QUORUM_FILE))
        .await
        .map_err(LogError::from)?;
    disk.sync_dir(root).await.map_err(LogError::from)?;
    Ok(())
}
