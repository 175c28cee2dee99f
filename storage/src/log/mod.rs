//! The partition log, in Kafka's vocabulary (`UnifiedLog`, `LogSegment`): a directory of
//! segments, the log start and end offsets, the recovery point, and the leader-epoch
//! cache, all kept through the [`Disk`] trait so the simulator can crash this very code.
//!
//! Durability: appended batches are durable after [`PartitionLog::flush`] (called by the
//! flush policy or the caller); the recovery point records how far that is, and on open
//! every segment from the one holding the recovery point onward is validated batch by
//! batch, cutting a torn or corrupt tail. Truncation, deletion and the log start offset are
//! made durable before they are acknowledged.

pub mod checkpoint;
mod compact;
mod epoch;
mod segment;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use runnel_protocol::batch::{BatchError, RecordBatch};

use crate::disk::{Disk, DiskError};
pub use compact::{CompactionInput, CompactionPlan, CompactionStats, MAX_COMPACTION_KEYS};
pub use epoch::LeaderEpochCache;
use segment::Segment;

pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
pub const LOG_START_CHECKPOINT: &str = "log-start-offset-checkpoint";
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// `cleanup.policy`: what happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Segments past `retention.ms` / `retention.bytes` are deleted.
    pub delete: bool,
    /// Superseded records are removed, keeping the last value per key.
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };

    /// Reads Kafka's spelling: `delete`, `compact`, or both comma-separated.
    pub fn parse(text: &str) -> Option<CleanupPolicy> {
        let mut policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in text.split(',') {
            match part.trim() {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                _ => return None,
            }
        }
        Some(policy)
    }
}

/// Per-topic log settings, with Kafka's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment is older than this.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of log between offset-index entries.
    pub index_interval_bytes: u64,
    /// `retention.ms`; `None` keeps data forever (Kafka's -1).
    pub retention_ms: Option<i64>,
    /// `retention.bytes`; `None` for no size limit (Kafka's -1).
    pub retention_bytes: Option<u64>,
    /// `flush.messages`: fsync after this many messages; `None` leaves it to `flush.ms`.
    pub flush_messages: Option<u64>,
    /// `flush.ms`: fsync when unflushed data is older than this (driven by the caller's
    /// clock through [`PartitionLog::maybe_flush`]).
    pub flush_ms: Option<i64>,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long compaction keeps tombstones.
    pub delete_retention_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            retention_ms: Some(7 * 24 * 60 * 60 * 1000),
            retention_bytes: None,
            flush_messages: None,
            flush_ms: None,
            max_message_bytes: 1_048_588,
            cleanup_policy: CleanupPolicy::DELETE,
            delete_retention_ms: 24 * 60 * 60 * 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("corrupt record batch: {0}")]
    CorruptBatch(#[from] BatchError),
    #[error("batch of {size_bytes} bytes exceeds max.message.bytes of {max_bytes}")]
    BatchTooLarge { size_bytes: usize, max_bytes: usize },
    #[error(
        "offset {offset} is out of range: the log holds [{log_start_offset}, {log_end_offset})"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("the log is corrupt: {0}")]
    Corrupt(String),
    /// Its owner stopped serving it after a write or fsync failed (its tail is unknown).
    #[error(
        "partition {partition} is offline after a storage error; restart the broker to recover it"
    )]
    Offline { partition: String },
}

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// What a flush covers, from [`PartitionLog::plan_flush`] to [`PartitionLog::finish_flush`].
#[derive(Debug)]
#[must_use = "a planned flush is synced and finished, or the log stays dirty"]
pub struct FlushPlan {
    dirty: Vec<i64>,
    end: i64,
    dir: bool,
}

/// One partition's log.
pub struct PartitionLog {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    recovery_point: i64,
    epochs: LeaderEpochCache,
    unflushed_messages: u64,
    /// When the oldest unflushed append happened.
    unflushed_since_ms: Option<i64>,
    /// Segment files were created or removed since the directory was last synced.
    dir_dirty: bool,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.dir)
            .field("log_start_offset", &self.log_start_offset)
            .field("log_end_offset", &self.log_end_offset())
            .field("segments", &self.segments.len())
            .finish()
    }
}

/// Reads of one range before [`PartitionLog::read`] reports the log corrupt.
const READ_ATTEMPTS: usize = 8;

/// Checks that the batches read for `offset` hold it (the first) and follow each other
/// without gaps or overlap, all ending below `end`.
///
/// A compacted log's true gaps fail this too: a header misread with a smaller last offset
/// makes the segment walk step over a batch, and that looks exactly like a gap, so a gap
/// is served only once two reads agree on it.
fn check_offsets(bytes: &Bytes, offset: i64, end: i64) -> Result<(), String> {
    use runnel_protocol::batch::{peek_batch_size, BATCH_HEADER_BYTES, LAST_OFFSET_DELTA_AT};
    let mut position = 0usize;
    let mut previous_last: Option<i64> = None;
    while position < bytes.len() {
        let rest = &bytes[position..];
        let size = peek_batch_size(rest)
            .filter(|&s| s >= BATCH_HEADER_BYTES as i64 && s as u64 <= rest.len() as u64)
            .ok_or_else(|| format!("a bad batch length at byte {position}"))?
            as usize;
        let base = i64::from_be_bytes(rest[0..8].try_into().expect("a header holds 8 bytes"));
        let delta = i32::from_be_bytes(
            rest[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .expect("a header holds 4 bytes"),
        );
        let last = base.saturating_add(i64::from(delta));
        let follows = match previous_last {
            None => base <= offset && offset <= last,
            Some(prev) => base == prev + 1,
        };
        if !follows || delta < 0 || last >= end {
            return Err(format!(
                "the batch at byte {position} claims offsets {base}..={last} after {previous_last:?}"
            ));
        }
        previous_last = Some(last);
        position += size;
    }
    Ok(())
}

/// The (base offset, last offset delta, length) of each batch in `bytes`, or None if a
/// length is impossible: what two reads must agree on before a gap is believed. A bit
/// flipped inside records is left to the CRC, so it does not keep two reads from agreeing.
fn batch_headers(bytes: &Bytes) -> Option<Vec<(i64, i32, usize)>> {
    use runnel_protocol::batch::{peek_batch_size, BATCH_HEADER_BYTES, LAST_OFFSET_DELTA_AT};
    let mut headers = Vec::new();
    let mut position = 0usize;
    while position < bytes.len() {
        let rest = &bytes[position..];
        let size = peek_batch_size(rest)
            .filter(|&s| s >= BATCH_HEADER_BYTES as i64 && s as u64 <= rest.len() as u64)?
            as usize;
        let base = i64::from_be_bytes(rest[0..8].try_into().expect("a header holds 8 bytes"));
        let delta = i32::from_be_bytes(
            rest[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .expect("a header holds 4 bytes"),
        );
        headers.push((base, delta, size));
        position += size;
    }
    Some(headers)
}

/// Removes a partition directory and everything in it, then syncs its parent. Used for
/// deleted topics and for directories that no topic owns any more.
pub async fn delete_dir(disk: &dyn Disk, dir: &Path) -> Result<(), LogError> {
    if !disk.exists(dir).await? {
        return Ok(());
    }
    for name in disk.list_dir(dir).await? {
        disk.remove(&dir.join(name)).await?;
    }
    disk.remove_dir(dir).await?;
    if let Some(parent) = dir.parent() {
        disk.sync_dir(parent).await?;
    }
    Ok(())
}

impl PartitionLog {
    /// Opens the log in `dir`, creating it if needed, and recovers it after a crash.
    pub async fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<PartitionLog, LogError> {
        assert!(config.segment_bytes > 0 && config.index_interval_bytes > 0);
        let started = std::time::Instant::now();
        disk.create_dir_all(dir).await?;
        let names = disk.list_dir(dir).await?;
        let mut removed = compact::complete_interrupted_swaps(disk.as_ref(), dir, &names).await?;
        let names = if removed {
            disk.list_dir(dir).await?
        } else {
            names
        };
        for name in names
            .iter()
            .filter(|n| n.ends_with(".tmp") || n.ends_with(".deleted"))
        {
            disk.remove(&dir.join(name)).await?;
            removed = true;
        }
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|n| segment::parse_file_name(n, ".log"))
            .collect();
        bases.sort_unstable();
        let checkpointed_start =
            checkpoint::read_offset(disk.as_ref(), dir, LOG_START_CHECKPOINT).await?;
        let recovery_point = checkpoint::read_offset(disk.as_ref(), dir, RECOVERY_POINT_CHECKPOINT)
            .await?
            .unwrap_or(0);
        let epochs = checkpoint::read(disk.as_ref(), dir, LEADER_EPOCH_CHECKPOINT)
            .await?
            .unwrap_or_default()
            .iter()
            .filter_map(|line| {
                let (e, o) = line.split_once(' ')?;
                Some((e.parse().ok()?, o.parse().ok()?))
            })
            .collect();

        // Index files whose log is gone are leftovers of a deletion.
        for name in &names {
            for suffix in [".index", ".timeindex"] {
                if let Some(base) = segment::parse_file_name(name, suffix) {
                    if bases.binary_search(&base).is_err() {
                        disk.remove(&dir.join(name)).await?;
                        removed = true;
                    }
                }
            }
        }

        let mut log = PartitionLog {
            disk: disk.clone(),
            dir: dir.to_path_buf(),
            config,
            segments: BTreeMap::new(),
            log_start_offset: 0,
            recovery_point,
            epochs: LeaderEpochCache::from_entries(epochs),
            unflushed_messages: 0,
            unflushed_since_ms: None,
            dir_dirty: removed,
        };
        let mut cut_at: Option<usize> = None;
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied().unwrap_or(i64::MAX);
            let recover = next_base > recovery_point;
            let (segment, cut) = Segment::open(
                disk.as_ref(),
                dir,
                base,
                log.config.index_interval_bytes,
                recover,
                now_ms,
            )
            .await?;
            let overlaps_next = segment.next_offset > next_base;
            log.segments.insert(base, segment);
            if cut || overlaps_next {
                cut_at = Some(i + 1);
                break;
            }
        }
        // Everything after a cut is past the valid end of the log.
        if let Some(first_dropped) = cut_at {
            for &base in &bases[first_dropped..] {
                segment::delete_files(disk.as_ref(), dir, base).await?;
                log.dir_dirty = true;
            }
        }
        let first_base = log.segments.keys().next().copied();
        log.log_start_offset = checkpointed_start
            .unwrap_or(first_base.unwrap_or(0))
            .max(first_base.unwrap_or(0));
        // Segments wholly below the log start were deleted logically before a crash.
        while log.segments.len() > 1
            && log
                .segments
                .values()
                .next()
                .is_some_and(|s| s.next_offset <= log.log_start_offset)
        {
            let (_, old) = log.segments.pop_first().expect("len > 1");
            old.delete(disk.as_ref()).await?;
            log.dir_dirty = true;
        }
        if log.segments.is_empty() {
            let segment = Segment::create(disk.as_ref(), dir, log.log_start_offset, now_ms).await?;
            log.segments.insert(log.log_start_offset, segment);
            log.dir_dirty = true;
        }
        if log.log_start_offset > log.log_end_offset() {
            // The log start was made durable past data a crash then lost (DeleteRecords
            // beyond the flushed end): nothing between them exists, so start over there.
            tracing::warn!(
                log_start_offset = log.log_start_offset,
                log_end_offset = log.log_end_offset(),
                "log start offset is past the recovered end; restarting the log at the log start"
            );
            let start = log.log_start_offset;
            log.truncate_fully_and_start_at(start, now_ms).await?;
        }
        let end = log.log_end_offset();
        log.recovery_point = log.recovery_point.min(end);
        if log.epochs.truncate_from_end(end) {
            log.write_epochs().await?;
        }
        log.sync_dir_if_dirty().await?;
        tracing::info!(
            dir = %dir.display(),
            segments = log.segments.len(),
            log_start_offset = log.log_start_offset,
            log_end_offset = end,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "log recovered"
        );
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replaces the settings; size and age limits apply from the next append or roll.
    pub fn set_config(&mut self, config: LogConfig) {
        assert!(config.segment_bytes > 0 && config.index_interval_bytes > 0);
        self.config = config;
    }

    /// Deletes the log's files and its directory, durably (topic deletion).
    pub async fn delete(self) -> Result<(), LogError> {
        let (disk, dir) = (self.disk.clone(), self.dir.clone());
        drop(self);
        delete_dir(disk.as_ref(), &dir).await
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The offset the next batch will get.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    pub fn leader_epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size_bytes).sum()
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Assigns offsets to validated batches, stamps them with `leader_epoch`, and appends
    /// them, rolling segments as needed; fsyncs when `flush.messages` says so.
    pub async fn append(
        &mut self,
        batches: &[RecordBatch],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let info = self.write_batches(batches, leader_epoch, now_ms).await?;
        if self.flush_messages_due() {
            self.flush().await?;
        }
        Ok(info)
    }

    /// [`PartitionLog::append`] without its fsync: the caller asks [`PartitionLog::flush_messages_due`]
    /// and flushes in three steps ([`PartitionLog::plan_flush`], [`PartitionLog::sync`],
    /// [`PartitionLog::finish_flush`]), so that readers need not wait for the disk.
    pub async fn write_batches(
        &mut self,
        batches: &[RecordBatch],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        assert!(!batches.is_empty(), "append needs at least one batch");
        for batch in batches {
            if batch.size_bytes() > self.config.max_message_bytes {
                return Err(LogError::BatchTooLarge {
                    size_bytes: batch.size_bytes(),
                    max_bytes: self.config.max_message_bytes,
                });
            }
        }
        let first_offset = self.log_end_offset();
        let mut next = first_offset;
        let mut placed = Vec::with_capacity(batches.len());
        let mut max_timestamp = -1;
        let mut messages = 0u64;
        for batch in batches {
            placed.push((batch, next));
            next += i64::from(batch.last_offset_delta()) + 1;
            max_timestamp = max_timestamp.max(batch.max_timestamp());
            messages += batch.record_count().max(0) as u64;
        }
        if self.epochs.assign(leader_epoch, first_offset) {
            self.write_epochs().await?;
        }
        let mut pending = &placed[..];
        while !pending.is_empty() {
            let room = self
                .config
                .segment_bytes
                .saturating_sub(self.active().size_bytes);
            let mut fit = 0;
            let mut fit_bytes = 0u64;
            for (batch, _) in pending {
                if fit_bytes + batch.size_bytes() as u64 > room {
                    break;
                }
                fit_bytes += batch.size_bytes() as u64;
                fit += 1;
            }
            let too_old = now_ms - self.active().created_ms >= self.config.segment_ms;
            let (first, first_base) = pending[0];
            let too_far = first_base + i64::from(first.last_offset_delta())
                - self.active().base_offset
                > segment::MAX_RELATIVE_OFFSET;
            if (fit == 0 || too_old || too_far) && self.active().size_bytes > 0 {
                self.roll(pending[0].1, now_ms).await?;
                continue;
            }
            // An empty segment takes at least one batch, even one larger than segment.bytes.
            let take = fit.max(1);
            let interval = self.config.index_interval_bytes;
            self.active_mut()
                .append(&pending[..take], leader_epoch, interval)
                .await?;
            pending = &pending[take..];
        }
        self.unflushed_messages += messages;
        self.unflushed_since_ms.get_or_insert(now_ms);
        Ok(AppendInfo {
            first_offset,
            last_offset: next - 1,
            max_timestamp,
        })
    }

    /// Starts a new active segment at `base_offset`.
    async fn roll(&mut self, base_offset: i64, now_ms: i64) -> Result<(), LogError> {
        assert!(base_offset >= self.log_end_offset());
        let segment = Segment::create(self.disk.as_ref(), &self.dir, base_offset, now_ms).await?;
        self.segments.insert(base_offset, segment);
        self.dir_dirty = true;
        Ok(())
    }

    /// Rolls the active segment if it is non-empty (Kafka's forced roll).
    pub async fn force_roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        if self.active().size_bytes > 0 {
            let end = self.log_end_offset();
            self.roll(end, now_ms).await?;
        }
        Ok(())
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` but always at least
    /// one batch (Kafka's rule, so a large batch never blocks a consumer). Empty at the end.
    ///
    /// Base offsets lie outside the batch CRC, so a reader could not tell a misread one from
    /// a true one. What is returned has passed an offset check (each batch follows the one
    /// before, the first holds `offset`, all end below the log end), or two reads returned
    /// the same bytes, as the gaps of a compacted log must. A read the segment refuses (a
    /// header claiming an impossible length, a damaged batch) is one more failed attempt:
    /// a misread header looks just like that, and the next read may see it right.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, LogError> {
        let end = self.log_end_offset();
        if offset < self.log_start_offset || offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: end,
            });
        }
        // The last read that came back but failed its offset check.
        let mut previous: Option<Bytes> = None;
        let mut problem = String::new();
        for _ in 0..READ_ATTEMPTS {
            let again = match self.read_unchecked(offset, max_bytes).await {
                Ok(bytes) => bytes,
                Err(LogError::Corrupt(refused)) => {
                    problem = refused;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Err(failed) = check_offsets(&again, offset, end) else {
                return Ok(again);
            };
            let agreed = previous.as_ref().is_some_and(|previous| {
                again == *previous
                    || batch_headers(&again).is_some_and(|h| Some(h) == batch_headers(previous))
            });
            if agreed {
                return Ok(again);
            }
            problem = failed;
            previous = Some(again);
        }
        Err(LogError::Corrupt(format!(
            "{}: {READ_ATTEMPTS} reads from offset {offset} disagree or fail their checks; the last: {problem}",
            self.dir.display()
        )))
    }

    /// [`read`](Self::read), parsed and CRC-checked; a read whose batches fail is made again,
    /// so one bad read of good data does not fail start-up.
    pub async fn read_batches(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<RecordBatch>, LogError> {
        let mut attempt = 1;
        loop {
            match RecordBatch::parse_all(self.read(offset, max_bytes).await?) {
                Ok(batches) => return Ok(batches),
                Err(e) if attempt >= READ_ATTEMPTS => return Err(e.into()),
                Err(_) => attempt += 1,
            }
        }
    }

    async fn read_unchecked(&self, offset: i64, max_bytes: usize) -> Result<Bytes, LogError> {
        for (_, segment) in self
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .chain(self.segments.range(offset + 1..))
        {
            if let Some(bytes) = segment.read(offset, max_bytes).await? {
                return Ok(bytes);
            }
        }
        Ok(Bytes::new())
    }

    /// ListOffsets by timestamp: the first record whose timestamp is ≥ `timestamp`, as
    /// (its offset, its timestamp). Only the batch that reaches the target is decoded.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        for segment in self.segments.values() {
            if let Some(found) = segment.find_offset_for_timestamp(timestamp).await? {
                return Ok(Some((found.0.max(self.log_start_offset), found.1)));
            }
        }
        Ok(None)
    }

    /// Removes everything from the first batch holding an offset ≥ `offset`; returns the
    /// new log end offset (a batch boundary, so possibly below `offset`). Durable on return.
    pub async fn truncate_to(&mut self, offset: i64) -> Result<i64, LogError> {
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        if offset <= self.log_start_offset {
            let start = self.log_start_offset;
            self.truncate_fully_and_start_at(start, 0).await?;
            return Ok(start);
        }
        let doomed: Vec<i64> = self.segments.range(offset + 1..).map(|(b, _)| *b).collect();
        for base in doomed {
            let segment = self.segments.remove(&base).expect("listed above");
            segment.delete(self.disk.as_ref()).await?;
            self.dir_dirty = true;
        }
        let end = self.active_mut().truncate_to(offset).await?;
        self.recovery_point = self.recovery_point.min(end);
        if self.epochs.truncate_from_end(end) {
            self.write_epochs().await?;
        }
        self.sync_dir_if_dirty().await?;
        self.write_recovery_point(self.recovery_point).await?;
        Ok(end)
    }

    /// Deletes the whole log and restarts it, empty, at `offset` (a follower whose leader's
    /// log starts past its own end).
    pub async fn truncate_fully_and_start_at(
        &mut self,
        offset: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let old = std::mem::take(&mut self.segments);
        for (_, segment) in old {
            segment.delete(self.disk.as_ref()).await?;
        }
        let segment = Segment::create(self.disk.as_ref(), &self.dir, offset, now_ms).await?;
        self.segments.insert(offset, segment);
        self.dir_dirty = true;
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.epochs.clear();
        self.unflushed_messages = 0;
        self.unflushed_since_ms = None;
        self.write_epochs().await?;
        self.sync_dir_if_dirty().await?;
        checkpoint::write_offset(self.disk.as_ref(), &self.dir, LOG_START_CHECKPOINT, offset)
            .await?;
        self.write_recovery_point(self.recovery_point).await
    }

    /// DeleteRecords: moves the log start offset up to `offset` (never past the end) and
    /// drops segments wholly below it. Durable on return.
    pub async fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        let offset = offset.min(self.log_end_offset());
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = offset;
        checkpoint::write_offset(self.disk.as_ref(), &self.dir, LOG_START_CHECKPOINT, offset)
            .await?;
        if self.epochs.truncate_from_start(offset) {
            self.write_epochs().await?;
        }
        self.delete_segments_below_start().await?;
        Ok(offset)
    }

    async fn delete_segments_below_start(&mut self) -> Result<(), LogError> {
        while self.segments.len() > 1 {
            let first = self.segments.values().next().expect("len > 1");
            if first.next_offset > self.log_start_offset {
                break;
            }
            let (_, segment) = self.segments.pop_first().expect("len > 1");
            segment.delete(self.disk.as_ref()).await?;
            self.dir_dirty = true;
        }
        self.sync_dir_if_dirty().await
    }

    /// Applies `retention.ms` and `retention.bytes` to closed segments (never the active
    /// one); returns how many segments were deleted.
    pub async fn apply_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        if !self.config.cleanup_policy.delete {
            return Ok(0);
        }
        let mut new_start = self.log_start_offset;
        let mut remaining = self.size_bytes();
        let mut deleted = 0;
        let closed: Vec<(i64, i64, u64)> = self
            .segments
            .values()
            .take(self.segments.len() - 1)
            .map(|s| (s.next_offset, s.max_timestamp, s.size_bytes))
            .collect();
        for (next_offset, max_timestamp, size) in closed {
            let expired = self
                .config
                .retention_ms
                .is_some_and(|ms| max_timestamp >= 0 && now_ms - max_timestamp > ms);
            let oversize = self
                .config
                .retention_bytes
                .is_some_and(|limit| remaining - size >= limit);
            if !expired && !oversize {
                break;
            }
            new_start = next_offset;
            remaining -= size;
            deleted += 1;
        }
        if deleted > 0 {
            self.delete_records_before(new_start).await?;
        }
        Ok(deleted)
    }

    /// Fsyncs everything appended so far and advances the recovery point.
    pub async fn flush(&mut self) -> Result<(), LogError> {
        let plan = self.plan_flush().await?;
        self.sync(&plan).await?;
        self.finish_flush(plan);
        Ok(())
    }

    /// Whether `flush.messages` asks for a flush: that many messages are unflushed.
    pub fn flush_messages_due(&self) -> bool {
        self.config
            .flush_messages
            .is_some_and(|n| self.unflushed_messages >= n)
    }

    /// Whether `flush.ms` asks for a flush: the oldest unflushed append is older than it.
    pub fn flush_ms_due(&self, now_ms: i64) -> bool {
        matches!((self.config.flush_ms, self.unflushed_since_ms), (Some(ms), Some(since)) if now_ms - since >= ms)
    }

    /// Applies `flush.ms`: flushes if the oldest unflushed append is older than it.
    pub async fn maybe_flush(&mut self, now_ms: i64) -> Result<bool, LogError> {
        let due = self.flush_ms_due(now_ms);
        if due {
            self.flush().await?;
        }
        Ok(due)
    }

    /// A flush's first step, which needs the log to itself: the index entries written,
    /// and what the fsyncs must cover noted.
    pub async fn plan_flush(&mut self) -> Result<FlushPlan, LogError> {
        let mut dirty = Vec::new();
        for (base, segment) in &mut self.segments {
            if segment.dirty {
                segment.prepare_flush().await?;
                dirty.push(*base);
            }
        }
        Ok(FlushPlan {
            dirty,
            end: self.log_end_offset(),
            dir: self.dir_dirty,
        })
    }

    /// A flush's second step, the slow one, shared with readers: the fsyncs, and the new
    /// recovery point written. Nothing may change the log between the plan and its finish.
    pub async fn sync(&self, plan: &FlushPlan) -> Result<(), LogError> {
        assert_eq!(
            plan.end,
            self.log_end_offset(),
            "the log changed between the flush's plan and its sync"
        );
        for base in &plan.dirty {
            self.segments
                .get(base)
                .expect("the plan names segments of this log")
                .sync()
                .await?;
        }
        if plan.dir {
            self.disk.sync_dir(&self.dir).await?;
        }
        if plan.end > self.recovery_point {
            self.write_recovery_point(plan.end).await?;
        }
        Ok(())
    }

    /// A flush's last step, once [`PartitionLog::sync`] succeeded: the log knows it is durable.
    pub fn finish_flush(&mut self, plan: FlushPlan) {
        assert_eq!(plan.end, self.log_end_offset(), "appended during a flush");
        for base in &plan.dirty {
            if let Some(segment) = self.segments.get_mut(base) {
                segment.dirty = false;
            }
        }
        if plan.dir {
            self.dir_dirty = false;
        }
        self.unflushed_messages = 0;
        self.unflushed_since_ms = None;
        self.recovery_point = self.recovery_point.max(plan.end);
    }

    async fn write_recovery_point(&self, offset: i64) -> Result<(), LogError> {
        checkpoint::write_offset(
            self.disk.as_ref(),
            &self.dir,
            RECOVERY_POINT_CHECKPOINT,
            offset,
        )
        .await?;
        Ok(())
    }

    async fn write_epochs(&self) -> Result<(), LogError> {
        let lines: Vec<String> = self
            .epochs
            .entries()
            .iter()
            .map(|(e, o)| format!("{e} {o}"))
            .collect();
        checkpoint::write(
            self.disk.as_ref(),
            &self.dir,
            LEADER_EPOCH_CHECKPOINT,
            &lines,
        )
        .await?;
        Ok(())
    }

    async fn sync_dir_if_dirty(&mut self) -> Result<(), LogError> {
        if self.dir_dirty {
            self.disk.sync_dir(&self.dir).await?;
            self.dir_dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
