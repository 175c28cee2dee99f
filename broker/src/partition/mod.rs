//! A partition this broker leads, as an actor: it owns its log, its idempotent-producer
//! state, its high watermark and log start.
//!
//! Every change (appends, flushes, retention, compaction, DeleteRecords, config) goes
//! through the actor's bounded mailbox ([`actor`]), so changes land in the order they were
//! handled. Reads do not queue behind them: the actor publishes a read view (the state
//! behind a read-write lock that only the actor writes, plus the high watermark and log
//! start in atomics and the high watermark on a watch, which parked fetches wait on).
//! Fsyncs (`flush.messages`, `flush.ms`, shutdown) run with the view shared, so fetches
//! read on during them; reads stop at the high watermark, which moves past an append only
//! once it is durable.
//!
//! A handler that panics is restarted by the supervisor, which reopens (recovers) the log
//! from disk while every other partition keeps serving; one that keeps failing goes
//! offline alone, saying why. After a write or fsync error the partition goes offline
//! until the broker restarts, as Kafka takes a log directory offline: what follows a
//! failed fsync may be in the page cache and not on disk, and must not be served.

mod actor;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use runnel_actors::{Addr, AskError, Node, RestartPolicy};
use runnel_protocol::batch::{
    peek_batch_size, BatchError, Compression, RecordBatch, BASE_OFFSET_AT,
};
use runnel_protocol::records::RecordsError;
use runnel_storage::disk::Disk;
use runnel_storage::log::{CompactionPlan, LogConfig, LogError, PartitionLog};
use runnel_storage::TopicPartition;
use tokio::sync::{watch, RwLock, RwLockReadGuard};

use crate::producer_state::{
    last_sequence, BatchMeta, ProducerStateTable, SequenceCheck, SequenceError,
};
use crate::ApiError;
use actor::{PartitionActor, Write};

const SCAN_READ_BYTES: usize = 4 << 20;
/// Changes waiting for the actor; a full mailbox makes producers wait (backpressure).
pub const MAILBOX_CAPACITY: usize = 256;
/// How long a change may wait for the actor (an fsync-per-batch log can be slow).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A partition that fails this often within a minute goes offline instead.
const RESTART_POLICY: RestartPolicy = RestartPolicy {
    max_restarts: 5,
    window: Duration::from_secs(60),
    initial_backoff: Duration::from_millis(10),
    max_backoff: Duration::from_secs(1),
};

pub struct PartitionState {
    pub log: PartitionLog,
    pub producers: ProducerStateTable,
    /// The largest batch max timestamp and the base offset of its batch (ListOffsets -3).
    pub max_timestamp: Option<(i64, i64)>,
}

/// Why a partition could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("partition {partition} is offline ({reason}); restart the broker to recover it")]
    Offline { partition: String, reason: String },
    #[error("partition {partition} did not answer within {timeout_ms} ms; try again")]
    Busy { partition: String, timeout_ms: u64 },
    #[error("partition {partition} failed while handling this and is recovering; try again")]
    Recovering { partition: String },
}

impl From<PartitionError> for ApiError {
    fn from(e: PartitionError) -> Self {
        match e {
            PartitionError::Log(e) => e.into(),
            PartitionError::Offline { .. } => {
                ApiError::new(ResponseError::KafkaStorageError, e.to_string())
            }
            // Retriable: an idempotent producer resends with the same sequence and is
            // answered with the original offset if the change had landed.
            PartitionError::Busy { .. } | PartitionError::Recovering { .. } => {
                ApiError::new(ResponseError::RequestTimedOut, e.to_string())
            }
        }
    }
}

/// The result of appending one produce request's batches to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended { base_offset: i64 },
    Duplicate { base_offset: i64 },
    Rejected(SequenceError),
}

/// What a leader's append of a produce request answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    /// The broker's time stamped on the batches, or -1 when the producer's time stands.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

/// A produce request's records for a partition refused, with Kafka's per-record detail
/// when particular records were the reason (its `RecordValidationException`): the
/// ProduceResponse lists them by index, and the client fails those records with the
/// partition's error and the others of their batch as collateral.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRefused {
    pub error: ApiError,
    /// For each refused record: its index in its batch, and why.
    pub record_errors: Vec<RecordError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

impl From<ApiError> for AppendRefused {
    fn from(error: ApiError) -> Self {
        AppendRefused {
            error,
            record_errors: Vec::new(),
        }
    }
}

impl From<PartitionError> for AppendRefused {
    fn from(error: PartitionError) -> Self {
        ApiError::from(error).into()
    }
}

/// What the actor and the readers share: the read view and the facts about the partition.
struct Shared {
    tp: TopicPartition,
    dir: PathBuf,
    disk: Arc<dyn Disk>,
    state: RwLock<PartitionState>,
    /// The config last given, for produce's checks and for reopening after a restart.
    config: Mutex<PartitionConfig>,
    high_watermark: AtomicI64,
    /// The high watermark again, for whoever waits for it to move: long-poll fetches
    /// parked on this partition (and acks=all, with replication).
    high_watermark_moved: watch::Sender<i64>,
    log_start_offset: AtomicI64,
    offline: AtomicBool,
    offline_reason: Mutex<Option<String>>,
    /// How often fetches have looked at this partition (a metric; the long-poll test
    /// counts it to show that an append wakes only this partition's fetches).
    fetch_polls: AtomicU64,
    /// Fault injection: the chance that a change panics the actor mid-way.
    crash_probability: f64,
}

/// A handle to a partition: its read view, and the address its changes go to.
pub struct Partition {
    pub tp: TopicPartition,
    shared: Arc<Shared>,
    actor: Addr<PartitionActor>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only plain assignments happen under these locks: never left half-done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Partition {
    /// Opens (or creates) the partition's log, rebuilds the producer state from it, and
    /// starts its actor on `node`. `crash_probability` is a fault-injection knob (0 off).
    pub async fn open(
        node: &Node,
        disk: Arc<dyn Disk>,
        tp: TopicPartition,
        dir: &std::path::Path,
        config: PartitionConfig,
        now_ms: i64,
        crash_probability: f64,
    ) -> Result<Partition, LogError> {
        let state = PartitionState::open(disk.clone(), dir, config.log.clone(), now_ms).await?;
        let high_watermark = state.log.log_end_offset();
        let shared = Arc::new(Shared {
            tp: tp.clone(),
            dir: dir.to_path_buf(),
            disk,
            high_watermark: AtomicI64::new(high_watermark),
            high_watermark_moved: watch::Sender::new(high_watermark),
            log_start_offset: AtomicI64::new(state.log.log_start_offset()),
            state: RwLock::new(state),
            config: Mutex::new(config),
            offline: AtomicBool::new(false),
            offline_reason: Mutex::new(None),
            fetch_polls: AtomicU64::new(0),
            crash_probability,
        });
        let (for_actor, for_give_up) = (shared.clone(), shared.clone());
        let mut lives = 0u32;
        let actor = node.spawn_or_give_up(
            format!("partition-{tp}"),
            MAILBOX_CAPACITY,
            RESTART_POLICY,
            move || {
                lives += 1;
                // The first life starts from the log opened above; later ones recover it.
                PartitionActor::new(for_actor.clone(), lives > 1)
            },
            move |error| for_give_up.go_offline(format!("it kept failing: {error}")),
        );
        Ok(Partition { tp, shared, actor })
    }

    /// The read view: the state as the actor last left it. Hold it briefly; the actor
    /// waits for readers before each change.
    pub async fn view(&self) -> RwLockReadGuard<'_, PartitionState> {
        self.shared.state.read().await
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.shared.dir
    }

    pub fn is_offline(&self) -> bool {
        self.shared.offline.load(Ordering::Acquire)
    }

    /// Why the partition is offline, if it is.
    pub fn offline_reason(&self) -> Option<String> {
        lock(&self.shared.offline_reason).clone()
    }

    fn check_online(&self) -> Result<(), PartitionError> {
        self.shared.check_online()
    }

    pub fn high_watermark(&self) -> i64 {
        self.shared.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.shared.log_start_offset.load(Ordering::Acquire)
    }

    /// Sees every move of the high watermark after this call.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.shared.high_watermark_moved.subscribe()
    }

    /// Counts one look by a fetch (see `fetch_polls`).
    pub fn note_fetch_poll(&self) {
        self.shared.fetch_polls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fetch_polls(&self) -> u64 {
        self.shared.fetch_polls.load(Ordering::Relaxed)
    }

    /// Whole batches from `offset` up to about `max_bytes` (at least one batch), checked
    /// by the log (see [`PartitionLog::read`]).
    /// Only what is below the high watermark is served: while the actor fsyncs an append
    /// (readers let in), the log already holds it but it is not yet acknowledged.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, PartitionError> {
        let state = self.view().await;
        self.check_online()?;
        let high_watermark = self.high_watermark();
        let bytes = state.log.read(offset, max_bytes).await?;
        Ok(below(bytes, high_watermark))
    }

    /// A produce request's records for this partition, as its leader takes them: the
    /// batches checked (CRC, magic, size against `max.message.bytes`, offsets, one batch
    /// per idempotent producer, a key on every record of a compacted topic), recompressed
    /// when the topic's `compression.type` names another codec, stamped with the broker's
    /// time for `LogAppendTime` topics, de-duplicated by producer sequence, and appended.
    pub async fn append_as_leader(
        &self,
        records: Bytes,
        now_ms: i64,
    ) -> Result<Appended, AppendRefused> {
        let (max_bytes, compacted, rules) = {
            let config = lock(&self.shared.config);
            let log = &config.log;
            (
                log.max_message_bytes,
                log.cleanup_policy.compact,
                config.leader,
            )
        };
        let mut batches = validate_batches(&self.tp, records, max_bytes)?;
        // (before recompression: the record errors name records of the producer's batches)
        if compacted {
            validate_keys(&self.tp, &batches)?;
        }
        if let Some((codec, level)) = rules.compression {
            batches = recompress(&self.tp, batches, codec, level, max_bytes)?;
        }
        let log_append_time_ms = if rules.log_append_time {
            batches = batches
                .iter()
                .map(|b| b.with_log_append_time(now_ms))
                .collect();
            now_ms
        } else {
            -1
        };
        let base_offset = match self.append(batches, 0, now_ms).await? {
            AppendOutcome::Appended { base_offset } | AppendOutcome::Duplicate { base_offset } => {
                base_offset
            }
            AppendOutcome::Rejected(error) => return Err(sequence_error(error).into()),
        };
        Ok(Appended {
            base_offset,
            log_append_time_ms,
            log_start_offset: self.log_start_offset(),
        })
    }

    /// Appends batches the broker built itself (the group coordinator's records), or that
    /// [`Partition::append_as_leader`] checked.
    pub async fn append(
        &self,
        batches: Vec<RecordBatch>,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, PartitionError> {
        assert!(!batches.is_empty(), "an append carries at least one batch");
        self.write(Write::Append {
            batches,
            leader_epoch,
            now_ms,
        })
        .await
        .map(|done| done.expect_append())
    }

    /// Flushes what `flush.ms` says is due, or everything with `all`.
    pub async fn flush(&self, all: bool, now_ms: i64) -> Result<(), PartitionError> {
        self.write(Write::Flush { all, now_ms }).await.map(|_| ())
    }

    pub async fn apply_retention(&self, now_ms: i64) -> Result<(), PartitionError> {
        self.write(Write::Retention { now_ms }).await.map(|_| ())
    }

    /// Swaps in segments that compaction cleaned off the actor (see `compaction_input`).
    pub async fn apply_compaction(
        &self,
        plan: CompactionPlan,
        now_ms: i64,
    ) -> Result<(), PartitionError> {
        self.write(Write::ApplyCompaction { plan, now_ms })
            .await
            .map(|_| ())
    }

    /// DeleteRecords: moves the log start to `offset` (-1: the high watermark); answers
    /// the new low watermark.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, PartitionError> {
        self.write(Write::DeleteRecords { offset })
            .await
            .map(|done| done.expect_low_watermark())
    }

    pub async fn set_config(&self, config: PartitionConfig) -> Result<(), PartitionError> {
        self.write(Write::SetConfig(config)).await.map(|_| ())
    }

    /// Fault injection: the actor panics in its next change, as a bug would make it.
    pub async fn inject_crash(&self) -> Result<(), PartitionError> {
        self.write(Write::Crash).await.map(|_| ())
    }

    async fn write(&self, change: Write) -> Result<actor::Done, PartitionError> {
        self.check_online()?;
        match self.actor.ask(change, WRITE_TIMEOUT).await {
            Ok(done) => done,
            Err(AskError::Timeout { timeout_ms, .. }) => Err(PartitionError::Busy {
                partition: self.tp.to_string(),
                timeout_ms,
            }),
            // The actor failed mid-change (its supervisor restarts it) or stopped for good.
            Err(AskError::Dropped { .. } | AskError::Closed { .. }) => {
                self.check_online()?;
                Err(PartitionError::Recovering {
                    partition: self.tp.to_string(),
                })
            }
        }
    }
}

impl Shared {
    fn check_online(&self) -> Result<(), PartitionError> {
        if self.offline.load(Ordering::Acquire) {
            return Err(PartitionError::Offline {
                partition: self.tp.to_string(),
                reason: lock(&self.offline_reason)
                    .clone()
                    .unwrap_or_else(|| "a storage error".into()),
            });
        }
        Ok(())
    }

    /// After a write or fsync failed, what the log holds beyond its last good state is
    /// unknown, so the partition stops serving until the broker restarts and recovery
    /// settles it. Running out of descriptors is not such an error: it fails before
    /// anything is written, so only the request that needed one fails.
    fn take_offline_on(&self, error: &LogError) {
        if matches!(error, LogError::Disk(e) if !e.is_resource_shortage()) {
            self.go_offline(format!("a storage error: {error}"));
        }
    }

    fn go_offline(&self, reason: String) {
        let mut current = lock(&self.offline_reason);
        if current.is_none() {
            tracing::error!(partition = %self.tp, %reason, "partition offline; restart the broker to recover it");
            *current = Some(reason);
        }
        self.offline.store(true, Ordering::Release);
    }

    /// Publishes the log's offsets after a change; call with the write lock held.
    fn publish(&self, state: &PartitionState) {
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
}

/// The whole batches of `bytes` that start below `end_offset`.
fn below(bytes: Bytes, end_offset: i64) -> Bytes {
    let mut at = 0usize;
    while let Some(size) = peek_batch_size(&bytes[at..]) {
        let base = i64::from_be_bytes(
            bytes[at + BASE_OFFSET_AT..at + BASE_OFFSET_AT + 8]
                .try_into()
                .expect("8 bytes, within the 12 peeked"),
        );
        if base >= end_offset {
            break;
        }
        at = at.saturating_add(usize::try_from(size).unwrap_or(usize::MAX));
        if at >= bytes.len() {
            return bytes;
        }
    }
    bytes.slice(..at)
}

/// A partition's settings: its log's, and how its leader takes a produce request's
/// batches. The partition keeps them, so a produce does not rebuild the topic's config.
#[derive(Debug, Clone)]
pub struct PartitionConfig {
    pub log: LogConfig,
    pub leader: LeaderAppendRules,
}

/// What a topic's settings say about how its leader takes a produce request's batches.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaderAppendRules {
    /// `message.timestamp.type=LogAppendTime`: the broker stamps its own time.
    pub log_append_time: bool,
    /// `compression.type` other than `producer`: the codec and level batches are stored in.
    pub compression: Option<(Compression, i32)>,
}

/// Batches in `codec`, as Kafka's broker stores them for a topic whose `compression.type`
/// is not `producer`: one already in that codec is kept as sent, any other is re-encoded,
/// and the result must still fit `max.message.bytes`.
fn recompress(
    tp: &TopicPartition,
    batches: Vec<RecordBatch>,
    codec: Compression,
    level: i32,
    max_bytes: usize,
) -> Result<Vec<RecordBatch>, ApiError> {
    batches
        .into_iter()
        .map(|batch| {
            if batch.compression() == codec {
                return Ok(batch);
            }
            let again = batch.recompressed(codec, level).map_err(|e| {
                let code = match e {
                    RecordsError::Decompress { .. } => ResponseError::CorruptMessage,
                    RecordsError::Compress { .. } => ResponseError::UnknownServerError,
                    _ => ResponseError::InvalidRecord,
                };
                ApiError::new(code, format!("partition {tp}: {e}"))
            })?;
            if again.size_bytes() > max_bytes {
                return Err(ApiError::new(
                    ResponseError::MessageTooLarge,
                    format!(
                        "a batch recompressed to {codec:?} is {} bytes, over max.message.bytes \
                         ({max_bytes}) of topic {}",
                        again.size_bytes(),
                        tp.topic
                    ),
                ));
            }
            Ok(again)
        })
        .collect()
}

/// The checks a produce request's batches pass before the log sees them.
fn validate_batches(
    tp: &TopicPartition,
    records: Bytes,
    max_bytes: usize,
) -> Result<Vec<RecordBatch>, ApiError> {
    let batches = RecordBatch::parse_all(records).map_err(|e| {
        let code = match e {
            BatchError::UnsupportedMagic { .. } => ResponseError::UnsupportedForMessageFormat,
            _ => ResponseError::CorruptMessage,
        };
        ApiError::new(code, format!("partition {tp}: {e}"))
    })?;
    if batches.is_empty() {
        return Err(ApiError::new(
            ResponseError::InvalidRecord,
            "the request holds no record batch for this partition",
        ));
    }
    for batch in &batches {
        if batch.size_bytes() > max_bytes {
            return Err(ApiError::new(
                ResponseError::MessageTooLarge,
                format!(
                    "a batch of {} bytes exceeds max.message.bytes ({max_bytes}) of topic {}",
                    batch.size_bytes(),
                    tp.topic
                ),
            ));
        }
        // Compaction may leave gaps inside a batch, but a producer's batch has none.
        if batch.record_count() < 1
            || i64::from(batch.last_offset_delta()) != i64::from(batch.record_count()) - 1
        {
            return Err(ApiError::new(
                ResponseError::InvalidRecord,
                format!(
                    "a batch with {} records claims a last offset delta of {}",
                    batch.record_count(),
                    batch.last_offset_delta()
                ),
            ));
        }
        if batch.is_control() || batch.is_transactional() {
            return Err(ApiError::new(
                ResponseError::InvalidRecord,
                "transactional and control batches are not supported yet",
            ));
        }
        if batch.producer_id() >= 0 && batches.len() > 1 {
            return Err(ApiError::new(
                ResponseError::InvalidRecord,
                "an idempotent producer sends exactly one batch per partition per request",
            ));
        }
    }
    Ok(batches)
}

/// Kafka's rule for compacted topics (LogValidator): compaction keeps the last record per
/// key, so a record without a key could never be compacted away, and Kafka refuses it. Only
/// compacted topics pay for decoding the records; the error's wording is Kafka's, so
/// clients and people see what they would see from Kafka.
fn validate_keys(tp: &TopicPartition, batches: &[RecordBatch]) -> Result<(), AppendRefused> {
    let mut record_errors = Vec::new();
    for batch in batches {
        let records = batch.records().map_err(|e| {
            ApiError::new(
                ResponseError::CorruptMessage,
                format!("partition {tp}: {e}"),
            )
        })?;
        for (index, record) in records.iter().enumerate() {
            if record.key.is_none() {
                record_errors.push(RecordError {
                    batch_index: i32::try_from(index).unwrap_or(i32::MAX),
                    message: format!(
                        "Compacted topic cannot accept message without key in topic partition {tp}."
                    ),
                });
            }
        }
    }
    if record_errors.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = record_errors
        .iter()
        .take(3)
        .map(|e| {
            format!(
                "RecordError(batchIndex={}, message='{}')",
                e.batch_index, e.message
            )
        })
        .collect();
    Err(AppendRefused {
        error: ApiError::new(
            ResponseError::InvalidRecord,
            format!(
                "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
                record_errors.len(),
                shown.join(", ")
            ),
        ),
        record_errors,
    })
}

fn sequence_error(error: SequenceError) -> ApiError {
    let (code, message) = match error {
        SequenceError::InvalidEpoch => (
            ResponseError::InvalidProducerEpoch,
            "the producer's epoch is older than the current one: another instance took over",
        ),
        SequenceError::OutOfOrder => (
            ResponseError::OutOfOrderSequenceNumber,
            "the batch's sequence number does not follow the last one written",
        ),
        SequenceError::UnknownProducer => (
            ResponseError::UnknownProducerId,
            "this partition has no state for the producer id",
        ),
    };
    ApiError::new(code, message)
}

impl PartitionState {
    async fn open(
        disk: Arc<dyn Disk>,
        dir: &std::path::Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<PartitionState, LogError> {
        let log = PartitionLog::open(disk, dir, config, now_ms).await?;
        let mut state = PartitionState {
            log,
            producers: ProducerStateTable::default(),
            max_timestamp: None,
        };
        state.rebuild().await?;
        Ok(state)
    }

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
                    max_timestamp_ms: batch.max_timestamp(),
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

/// Kafka's `partition.metadata`: which topic (by id) a partition directory belongs to, so
/// the files of a deleted topic are told from those of a new topic of the same name.
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// The topic id `dir` was created for; `None` for a directory of an older Runnel (or
/// a marker a crash left unreadable), which is then recovered rather than removed.
pub async fn read_topic_id(
    disk: &dyn Disk,
    dir: &std::path::Path,
) -> Result<Option<uuid::Uuid>, LogError> {
    let path = dir.join(PARTITION_METADATA_FILE);
    if !disk.exists(&path).await? {
        return Ok(None);
    }
    let file = disk
        .open(&path, runnel_storage::disk::OpenMode::Existing)
        .await?;
    let size = file.size_bytes().await? as usize;
    let bytes = runnel_storage::disk::read_agreed(file.as_ref(), 0, size).await?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("topic_id: "))
        .and_then(|id| uuid::Uuid::parse_str(id.trim()).ok()))
}

/// Marks `dir` as topic `topic_id`'s, crash-safely, unless it is already.
pub async fn write_topic_id(
    disk: &dyn Disk,
    dir: &std::path::Path,
    topic_id: uuid::Uuid,
) -> Result<(), LogError> {
    if read_topic_id(disk, dir).await? == Some(topic_id) {
        return Ok(());
    }
    let text = format!("version: 0\ntopic_id: {topic_id}\n");
    runnel_storage::log::checkpoint::replace_file(
        disk,
        dir,
        PARTITION_METADATA_FILE,
        text.as_bytes(),
    )
    .await?;
    Ok(())
}
