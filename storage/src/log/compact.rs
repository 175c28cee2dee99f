//! Compaction (`cleanup.policy=compact`): keep the last record per key in the closed
//! segments, drop tombstones once `delete.retention.ms` has passed, and swap each rewritten
//! segment in crash-safely.
//!
//! Swap protocol, per segment: write `<base>.log.cleaned` and fsync it; rename it to
//! `<base>.log.swap` and sync the directory (from here the swap is decided); remove the
//! old indexes, rename the `.swap` over `<base>.log` and sync the directory. Recovery
//! deletes `.cleaned` leftovers and completes `.swap` ones ([`complete_interrupted_swaps`]).
//!
//! Records keep their offsets. Uncompressed batches are rebuilt with the records they
//! keep; a compressed batch is kept whole while any of its records is still live (Kafka
//! promises at least the last value per key, so keeping more is allowed) and dropped when
//! none is.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use runnel_protocol::batch::{Compression, RecordBatch};

use super::segment::{self, Segment};
use super::{LogError, PartitionLog};
use crate::disk::{Disk, DiskError, OpenMode};

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

/// Every batch of a segment, in order.
async fn batches_of(segment: &Segment) -> Result<Vec<RecordBatch>, LogError> {
    let mut out = Vec::new();
    let mut next = segment.base_offset;
    while next < segment.next_offset {
        let Some(bytes) = segment.read(next, READ_CHUNK_BYTES).await? else {
            break;
        };
        let batches = RecordBatch::parse_all(bytes)?;
        let Some(last) = batches.last() else { break };
        next = last.last_offset() + 1;
        out.extend(batches);
    }
    Ok(out)
}

impl PartitionLog {
    /// Compacts the closed segments (never the active one). A no-op unless the topic's
    /// `cleanup.policy` includes `compact`.
    pub async fn compact(&mut self, now_ms: i64) -> Result<CompactionStats, LogError> {
        let mut stats = CompactionStats::default();
        if !self.config.cleanup_policy.compact || self.segments.len() < 2 {
            return Ok(stats);
        }
        let closed: Vec<i64> = self
            .segments
            .keys()
            .take(self.segments.len() - 1)
            .copied()
            .collect();

        // Where each key was last written.
        let mut latest: BTreeMap<Bytes, i64> = BTreeMap::new();
        let mut contents = Vec::with_capacity(closed.len());
        for base in &closed {
            let batches = batches_of(&self.segments[base]).await?;
            for batch in batches.iter().filter(|b| !b.is_control()) {
                let Ok(records) = batch.records() else {
                    continue;
                };
                for record in records {
                    if let Some(key) = record.key {
                        latest.insert(key, batch.base_offset() + i64::from(record.offset_delta));
                    }
                }
                if latest.len() > MAX_COMPACTION_KEYS {
                    return Err(LogError::Corrupt(format!(
                        "compaction of {} tracks more than {MAX_COMPACTION_KEYS} keys",
                        self.dir.display()
                    )));
                }
            }
            contents.push((*base, batches));
        }

        let tombstone_horizon = now_ms.saturating_sub(self.config.delete_retention_ms);
        for (base, batches) in contents {
            let mut kept = Vec::with_capacity(batches.len());
            let mut removed = 0u64;
            for batch in batches {
                let records = match batch.records() {
                    Ok(records) if !batch.is_control() => records,
                    _ => {
                        kept.push(batch);
                        continue;
                    }
                };
                let expired_tombstones = batch.max_timestamp() < tombstone_horizon;
                let live: Vec<_> = records
                    .iter()
                    .filter(|r| match &r.key {
                        None => true,
                        Some(key) => {
                            let newest = latest.get(key)
                                == Some(&(batch.base_offset() + i64::from(r.offset_delta)));
                            newest && !(r.value.is_none() && expired_tombstones)
                        }
                    })
                    .cloned()
                    .collect();
                removed += (records.len() - live.len()) as u64;
                if live.len() == records.len() {
                    kept.push(batch);
                } else if live.is_empty() {
                    // The whole batch is obsolete.
                } else if batch.compression() == Compression::None {
                    kept.push(batch.with_records(&live));
                } else {
                    removed -= (records.len() - live.len()) as u64;
                    kept.push(batch);
                }
            }
            if removed > 0 {
                self.swap_segment(base, &kept, now_ms).await?;
                stats.segments_rewritten += 1;
                stats.records_removed += removed;
            }
        }
        Ok(stats)
    }

    /// Replaces segment `base` with `batches`, crash-safely (see the module notes).
    async fn swap_segment(
        &mut self,
        base: i64,
        batches: &[RecordBatch],
        now_ms: i64,
    ) -> Result<(), LogError> {
        let disk = self.disk.clone();
        let dir = self.dir.clone();
        let log_path = dir.join(segment::file_name(base, ".log"));
        let cleaned = dir.join(format!("{}.cleaned", segment::file_name(base, ".log")));
        let swap = dir.join(format!("{}.swap", segment::file_name(base, ".log")));
        let file = disk.open(&cleaned, OpenMode::Create).await?;
        file.truncate(0).await?;
        let parts: Vec<&[u8]> = batches.iter().map(|b| &b.as_bytes()[..]).collect();
        file.write_vectored_at(0, &parts).await?;
        file.sync_data().await?;
        drop(file);
        disk.rename(&cleaned, &swap).await?;
        disk.sync_dir(&dir).await?;
        remove_indexes(disk.as_ref(), &dir, base).await?;
        disk.rename(&swap, &log_path).await?;
        disk.sync_dir(&dir).await?;
        let interval = self.config.index_interval_bytes;
        let (mut segment, cut) =
            Segment::open(disk.as_ref(), &dir, base, interval, true, now_ms).await?;
        assert!(!cut, "a freshly written, fsynced segment validates");
        segment.flush().await?;
        let old = self
            .segments
            .insert(base, segment)
            .expect("compacted a known segment");
        assert!(old.next_offset >= self.segments[&base].next_offset);
        Ok(())
    }
}
