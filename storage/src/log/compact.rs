//! Compaction (`cleanup.policy=compact`): keep the last record per key in the closed
//! segments, drop tombstones once `delete.retention.ms` has passed, and swap each rewritten
//! segment in crash-safely.
//!
//! It runs in three steps so that the slow part never holds the log:
//! [`PartitionLog::compaction_input`] (quick, `&self`) hands out the closed segments' files;
//! [`CompactionInput::clean`] (anywhere, e.g. a background task, while appends and reads
//! go on) reads them, decides what stays and writes each rewritten segment to
//! `<base>.log.cleaned`, fsynced; [`PartitionLog::apply_compaction`] (quick, `&mut self`)
//! swaps them in, skipping any segment that changed meanwhile (truncated or deleted).
//!
//! Swap protocol, per segment: rename `.cleaned` to `<base>.log.swap` and sync the
//! directory (from here the swap is decided); remove the old indexes, rename the `.swap`
//! over `<base>.log` and sync the directory. Recovery deletes `.cleaned` leftovers and
//! completes `.swap` ones ([`complete_interrupted_swaps`]).
//!
//! Records keep their offsets. Uncompressed batches are rebuilt with the records they
//! keep; a compressed batch is kept whole while any of its records is still live (Kafka
//! promises at least the last value per key, so keeping more is allowed) and dropped when
//! none is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use runnel_protocol::batch::{peek_batch_size, Compression, RecordBatch};

use super::segment::{self, Segment};
use super::{LogError, PartitionLog};
use crate::disk::{Disk, DiskError, DiskFile, OpenMode};

/// Bound on distinct keys one compaction tracks (Kafka's `log.cleaner.dedupe.buffer.size`
/// plays this part); past it compaction stops with an error rather than grow unbounded.
pub const MAX_COMPACTION_KEYS: usize = 4_000_000;
/// How much of a segment compaction reads at a time.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// What one compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_rewritten: usize,
    pub records_removed: u64,
}

/// Finishes swaps a crash interrupted: `.cleaned` files are dropped (the old segment is
/// still whole), `.swap` files replace their segment. Called before segments are opened.
pub async fn complete_interrupted_swaps(
    disk: &dyn Disk,
    dir: &Path,
    names: &[String],
) -> Result<bool, LogError> {
    let mut changed = false;
    for name in names {
        if name.ends_with(".log.cleaned") {
            disk.remove(&dir.join(name)).await?;
            changed = true;
        } else if let Some(base) = name
            .strip_suffix(".swap")
            .and_then(|n| segment::parse_file_name(n, ".log"))
        {
            tracing::warn!(
                segment = base,
                "completing a compaction swap interrupted by a crash"
            );
            remove_indexes(disk, dir, base).await?;
            disk.rename(&dir.join(name), &dir.join(segment::file_name(base, ".log")))
                .await?;
            changed = true;
        }
    }
    Ok(changed)
}

async fn remove_indexes(disk: &dyn Disk, dir: &Path, base: i64) -> Result<(), LogError> {
    for suffix in [".index", ".timeindex"] {
        match disk
            .remove(&dir.join(segment::file_name(base, suffix)))
            .await
        {
            Ok(()) | Err(DiskError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn cleaned_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{}.cleaned", segment::file_name(base, ".log")))
}

fn swap_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{}.swap", segment::file_name(base, ".log")))
}

/// Reads a closed segment's batches a chunk at a time, so a large segment is never held
/// in memory whole.
struct BatchReader {
    file: Arc<dyn DiskFile>,
    size_bytes: u64,
    position: u64,
}

impl BatchReader {
    /// The whole batches of the next chunk; empty at the end.
    async fn next_chunk(&mut self) -> Result<Vec<RecordBatch>, LogError> {
        if self.position >= self.size_bytes {
            return Ok(Vec::new());
        }
        let left = (self.size_bytes - self.position) as usize;
        let mut bytes = self
            .file
            .read_at(self.position, READ_CHUNK_BYTES.min(left))
            .await?;
        let mut whole = 0;
        while let Some(size) = peek_batch_size(&bytes[whole..]).filter(|s| *s > 0) {
            if whole + size as usize > bytes.len() {
                break;
            }
            whole += size as usize;
        }
        if whole == 0 {
            // One batch larger than a chunk: read exactly that batch.
            let size = peek_batch_size(&bytes)
                .filter(|s| *s > 0 && *s as usize <= left)
                .ok_or_else(|| {
                    LogError::Corrupt(format!(
                        "a closed segment holds a damaged batch at position {}",
                        self.position
                    ))
                })?;
            bytes = self.file.read_at(self.position, size as usize).await?;
            whole = bytes.len();
        }
        self.position += whole as u64;
        Ok(RecordBatch::parse_all(bytes.slice(..whole))?)
    }
}

/// The closed segments of one partition, to compact without holding the log.
pub struct CompactionInput {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    delete_retention_ms: i64,
    /// (base offset, file, size when the input was taken)
    segments: Vec<(i64, Arc<dyn DiskFile>, u64)>,
}

/// Rewritten segments waiting in `.cleaned` files to be swapped in.
pub struct CompactionPlan {
    /// (base offset, size of the segment it replaces, records removed)
    cleaned: Vec<(i64, u64, u64)>,
}

impl CompactionInput {
    fn reader(&self, i: usize) -> BatchReader {
        let (_, file, size_bytes) = &self.segments[i];
        BatchReader {
            file: file.clone(),
            size_bytes: *size_bytes,
            position: 0,
        }
    }

    /// Decides what stays and writes the rewritten segments; the log is not touched.
    pub async fn clean(&self, now_ms: i64) -> Result<CompactionPlan, LogError> {
        // Where each key was last written.
        let mut latest: BTreeMap<Bytes, i64> = BTreeMap::new();
        for i in 0..self.segments.len() {
            let mut reader = self.reader(i);
            loop {
                let batches = reader.next_chunk().await?;
                if batches.is_empty() {
                    break;
                }
                for batch in batches.iter().filter(|b| !b.is_control()) {
                    let Ok(records) = batch.records() else {
                        continue;
                    };
                    for record in records {
                        if let Some(key) = record.key {
                            latest
                                .insert(key, batch.base_offset() + i64::from(record.offset_delta));
                        }
                    }
                }
                if latest.len() > MAX_COMPACTION_KEYS {
                    return Err(LogError::Corrupt(format!(
                        "compaction of {} tracks more than {MAX_COMPACTION_KEYS} keys",
                        self.dir.display()
                    )));
                }
            }
        }

        let tombstone_horizon = now_ms.saturating_sub(self.delete_retention_ms);
        let mut plan = CompactionPlan {
            cleaned: Vec::new(),
        };
        for i in 0..self.segments.len() {
            let (base, _, size_bytes) = self.segments[i];
            let mut reader = self.reader(i);
            let mut out = BytesMut::new();
            let mut removed = 0u64;
            loop {
                let batches = reader.next_chunk().await?;
                if batches.is_empty() {
                    break;
                }
                for batch in batches {
                    let (kept, dropped) = keep_live(batch, &latest, tombstone_horizon);
                    removed += dropped;
                    if let Some(kept) = kept {
                        out.extend_from_slice(kept.as_bytes());
                    }
                }
            }
            if removed == 0 {
                continue;
            }
            let file = self
                .disk
                .open(&cleaned_path(&self.dir, base), OpenMode::Create)
                .await?;
            file.truncate(0).await?;
            file.write_at(0, &out).await?;
            file.sync_data().await?;
            plan.cleaned.push((base, size_bytes, removed));
        }
        Ok(plan)
    }
}

/// The part of `batch` still live, and how many records were dropped.
fn keep_live(
    batch: RecordBatch,
    latest: &BTreeMap<Bytes, i64>,
    tombstone_horizon: i64,
) -> (Option<RecordBatch>, u64) {
    let records = match batch.records() {
        Ok(records) if !batch.is_control() => records,
        _ => return (Some(batch), 0),
    };
    let expired_tombstones = batch.max_timestamp() < tombstone_horizon;
    let live: Vec<_> = records
        .iter()
        .filter(|r| match &r.key {
            None => true,
            Some(key) => {
                let newest =
                    latest.get(key) == Some(&(batch.base_offset() + i64::from(r.offset_delta)));
                newest && !(r.value.is_none() && expired_tombstones)
            }
        })
        .cloned()
        .collect();
    let dropped = (records.len() - live.len()) as u64;
    if dropped == 0 {
        (Some(batch), 0)
    } else if live.is_empty() {
        (None, dropped)
    } else if batch.compression() == Compression::None {
        (Some(batch.with_records(&live)), dropped)
    } else {
        (Some(batch), 0)
    }
}

impl PartitionLog {
    /// The closed segments, for [`CompactionInput::clean`]; `None` unless the topic's
    /// `cleanup.policy` includes `compact` and there is a closed segment.
    pub fn compaction_input(&self) -> Option<CompactionInput> {
        if !self.config.cleanup_policy.compact || self.segments.len() < 2 {
            return None;
        }
        let segments = self
            .segments
            .values()
            .take(self.segments.len() - 1)
            .map(|s| (s.base_offset, s.log_file(), s.size_bytes))
            .collect();
        Some(CompactionInput {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            delete_retention_ms: self.config.delete_retention_ms,
            segments,
        })
    }

    /// Swaps cleaned segments in. A segment that changed since the input was taken (cut by
    /// truncation, deleted by retention) keeps its current contents and its cleaned copy
    /// is dropped.
    pub async fn apply_compaction(
        &mut self,
        plan: CompactionPlan,
        now_ms: i64,
    ) -> Result<CompactionStats, LogError> {
        let mut stats = CompactionStats::default();
        let disk = self.disk.clone();
        let dir = self.dir.clone();
        let active_base = self.active().base_offset;
        for (base, size_bytes, removed) in plan.cleaned {
            let unchanged = base != active_base
                && self
                    .segments
                    .get(&base)
                    .is_some_and(|s| s.size_bytes == size_bytes);
            if !unchanged {
                disk.remove(&cleaned_path(&dir, base)).await?;
                continue;
            }
            disk.rename(&cleaned_path(&dir, base), &swap_path(&dir, base))
                .await?;
            disk.sync_dir(&dir).await?;
            remove_indexes(disk.as_ref(), &dir, base).await?;
            disk.rename(
                &swap_path(&dir, base),
                &dir.join(segment::file_name(base, ".log")),
            )
            .await?;
            disk.sync_dir(&dir).await?;
            let interval = self.config.index_interval_bytes;
            let (mut segment, cut) =
                Segment::open(disk.as_ref(), &dir, base, interval, true, now_ms).await?;
            assert!(
                !cut,
                "a cleaned segment was fsynced before the swap, so it validates"
            );
            segment.flush().await?;
            self.segments.insert(base, segment);
            stats.segments_rewritten += 1;
            stats.records_removed += removed;
        }
        Ok(stats)
    }

    /// All three steps in one call, holding the log throughout.
    pub async fn compact(&mut self, now_ms: i64) -> Result<CompactionStats, LogError> {
        let Some(input) = self.compaction_input() else {
            return Ok(CompactionStats::default());
        };
        let plan = input.clean(now_ms).await?;
        self.apply_compaction(plan, now_ms).await
    }
}
