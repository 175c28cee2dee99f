//! A partition this broker leads: its log, its idempotent producer state and the offsets
//! clients see.
//!
//! Appends take the write lock, so batches land in the order their requests were handled;
//! fetches share the read lock. On a single node the high watermark is the log end offset;
//! its moves are published on a watch, so a parked fetch wakes only for the partitions it
//! reads.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use runnel_protocol::batch::RecordBatch;
use runnel_storage::disk::Disk;
use runnel_storage::log::{LogConfig, LogError, PartitionLog};
use runnel_storage::TopicPartition;
use tokio::sync::{watch, RwLock};

use super::producer_state::{last_sequence, BatchMeta, ProducerStateTable, SequenceCheck};

const SCAN_READ_BYTES: usize = 4 << 20;

pub struct PartitionState {
    pub log: PartitionLog,
    pub producers: ProducerStateTable,
    /// The largest batch max timestamp and the base offset of its batch (ListOffsets -3).
    pub max_timestamp: Option<(i64, i64)>,
}

pub struct Partition {
    pub tp: TopicPartition,
    pub state: RwLock<PartitionState>,
    high_watermark: AtomicI64,
    /// The high watermark again, for whoever waits for it to move: long-poll fetches
    /// parked on this partition (and acks=all, with replication).
    high_watermark_moved: watch::Sender<i64>,
    log_start_offset: AtomicI64,
    offline: AtomicBool,
    /// How often fetches have looked at this partition (a metric; the long-poll test
    /// counts it to show that an append wakes only this partition's fetches).
    fetch_polls: AtomicU64,
}

/// The result of appending one produce request's batches to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended { base_offset: i64 },
    Duplicate { base_offset: i64 },
    Rejected(super::producer_state::SequenceError),
}

impl Partition {
    /// Opens (or creates) the partition's log and rebuilds the producer state from it.
    pub async fn open(
        disk: Arc<dyn Disk>,
        tp: TopicPartition,
        dir: &std::path::Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Partition, LogError> {
        let log = PartitionLog::open(disk, dir, config, now_ms).await?;
        let mut state = PartitionState {
            log,
            producers: ProducerStateTable::default(),
            max_timestamp: None,
        };
        state.rebuild().await?;
        let partition = Partition {
            tp,
            high_watermark: AtomicI64::new(state.log.log_end_offset()),
            high_watermark_moved: watch::Sender::new(state.log.log_end_offset()),
            fetch_polls: AtomicU64::new(0),
            log_start_offset: AtomicI64::new(state.log.log_start_offset()),
            offline: AtomicBool::new(false),
            state: RwLock::new(state),
        };
        Ok(partition)
    }

    /// After a write or fsync failed, what the log holds beyond its last good state is
    /// unknown (it may be in the page cache and not on disk), so the partition stops
    /// serving until the broker restarts and recovery settles it, as Kafka takes a log
    /// directory offline.
    /// Running out of descriptors is not such an error: it fails before anything is written,
    /// so only the request that needed one fails.
    pub fn take_offline_on(&self, error: &LogError) {
        let unknown_state = matches!(error, LogError::Disk(e) if !e.is_resource_shortage());
        if unknown_state && !self.offline.swap(true, Ordering::AcqRel) {
            tracing::error!(partition = %self.tp, %error, "partition offline after a storage error; restart the broker to recover it");
        }
    }

    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    fn check_online(&self) -> Result<(), LogError> {
        if self.is_offline() {
            return Err(LogError::Offline {
                partition: self.tp.to_string(),
            });
        }
        Ok(())
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// Publishes the log's offsets after a change; call with the write lock held.
    pub fn publish(&self, state: &PartitionState) {
        let high_watermark = state.log.log_end_offset();
        self.log_start_offset
            .store(state.log.log_start_offset(), Ordering::Release);
        self.high_watermark.store(high_watermark, Ordering::Release);
        self.high_watermark_moved.send_if_modified(|published| {
            let moved = *published != high_watermark;
            *published = high_watermark;
            moved
        });
    }

    /// Sees every move of the high watermark after this call.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark_moved.subscribe()
    }

    /// Counts one look by a fetch (see `fetch_polls`).
    pub fn note_fetch_poll(&self) {
        self.fetch_polls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fetch_polls(&self) -> u64 {
        self.fetch_polls.load(Ordering::Relaxed)
    }

    /// Checks idempotent sequences and appends validated batches of one produce request.
    pub async fn append(
        &self,
        batches: &[RecordBatch],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, LogError> {
        assert!(!batches.is_empty());
        let mut state = self.state.write().await;
        self.check_online()?;
        // Clients send one batch per partition per request; several are checked as a run.
        let first = &batches[0];
        if first.producer_id() >= 0 {
            let count: i64 = batches
                .iter()
                .map(|b| i64::from(b.last_offset_delta()) + 1)
                .sum();
            let last = last_sequence(first.base_sequence(), count);
            match state.producers.check(
                first.producer_id(),
                first.producer_epoch(),
                first.base_sequence(),
                last,
            ) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate { first_offset } => {
                    return Ok(AppendOutcome::Duplicate {
                        base_offset: first_offset,
                    })
                }
                SequenceCheck::Reject(error) => return Ok(AppendOutcome::Rejected(error)),
            }
        }
        let info = match state.log.append(batches, leader_epoch, now_ms).await {
            Ok(info) => info,
            Err(e) => {
                self.take_offline_on(&e);
                return Err(e);
            }
        };
        let mut offset = info.first_offset;
        for batch in batches {
            let last_offset = offset + i64::from(batch.last_offset_delta());
            state.note_batch(batch, offset, last_offset);
            offset = last_offset + 1;
        }
        self.publish(&state);
        Ok(AppendOutcome::Appended {
            base_offset: info.first_offset,
        })
    }

    /// Whole batches from `offset` up to about `max_bytes` (at least one batch), checked
    /// by the log (see [`PartitionLog::read`]).
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, LogError> {
        let state = self.state.read().await;
        self.check_online()?;
        state.log.read(offset, max_bytes).await
    }
}

impl PartitionState {
    fn note_batch(&mut self, batch: &RecordBatch, first_offset: i64, last_offset: i64) {
        if batch.producer_id() >= 0 {
            self.producers.record(
                batch.producer_id(),
                batch.producer_epoch(),
                BatchMeta {
                    first_sequence: batch.base_sequence(),
                    last_sequence: last_sequence(
                        batch.base_sequence(),
                        i64::from(batch.last_offset_delta()) + 1,
                    ),
                    first_offset,
                    last_offset,
                },
            );
        }
        let ts = batch.max_timestamp();
        if self.max_timestamp.is_none_or(|(max, _)| ts > max) {
            self.max_timestamp = Some((ts, first_offset));
        }
    }

    /// Rebuilds the producer table and the max timestamp by scanning every batch header.
    /// Kafka keeps producer snapshots to avoid this; a full scan is simple and, at the
    /// recovery speed measured for the log, fast enough for now.
    pub async fn rebuild(&mut self) -> Result<(), LogError> {
        self.producers.clear();
        self.max_timestamp = None;
        let mut offset = self.log.log_start_offset();
        while offset < self.log.log_end_offset() {
            let batches = self.log.read_batches(offset, SCAN_READ_BYTES).await?;
            if batches.is_empty() {
                break;
            }
            for batch in batches {
                let (first, last) = (batch.base_offset(), batch.last_offset());
                self.note_batch(&batch, first, last);
                offset = last + 1;
            }
        }
        Ok(())
    }
}
