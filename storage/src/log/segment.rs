//! One log segment: a `.log` file of record batches, a sparse `.index` (relative offset to
//! file position) and a `.timeindex` (max timestamp so far to relative offset), named by
//! the segment's base offset in 20 digits, as Kafka names them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use runnel_protocol::batch::{
    peek_batch_size, RecordBatch, BATCH_HEADER_BYTES, LAST_OFFSET_DELTA_AT, MAX_TIMESTAMP_AT,
    STAMPED_PREFIX_BYTES,
};

use crate::disk::{read_agreed, Disk, DiskFile, OpenMode};
use crate::log::LogError;

const INDEX_ENTRY_BYTES: usize = 8;
const TIME_INDEX_ENTRY_BYTES: usize = 12;
/// How much recovery reads at a time.
/// Agreed reads of a batch that fails validation before recovery cuts it.
const CUT_CONFIRMATION_READS: usize = 4;
const SCAN_CHUNK_BYTES: usize = 1 << 20;

pub fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// The base offset of a segment file name such as `00000000000000000042.log`.
pub fn parse_file_name(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok())?
}

/// Removes whichever of a segment's files exist.
pub async fn delete_files(disk: &dyn Disk, dir: &Path, base_offset: i64) -> Result<(), LogError> {
    for suffix in [".log", ".index", ".timeindex"] {
        match disk.remove(&dir.join(file_name(base_offset, suffix))).await {
            Ok(()) | Err(crate::disk::DiskError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// (offset relative to the segment's base, byte position of the batch holding it)
type IndexEntry = (u32, u32);
/// (largest timestamp so far, offset relative to the base where it is reached)
type TimeIndexEntry = (i64, u32);

/// Largest offset distance from a segment's base: index entries hold 32-bit relative
/// offsets, and a segment rolls before it would exceed this.
pub const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;

pub(crate) struct Segment {
    pub base_offset: i64,
    dir: PathBuf,
    log: Arc<dyn DiskFile>,
    index_file: Arc<dyn DiskFile>,
    time_index_file: Arc<dyn DiskFile>,
    index: Vec<IndexEntry>,
    time_index: Vec<TimeIndexEntry>,
    pub size_bytes: u64,
    /// One past the last offset in this segment; `base_offset` while empty.
    pub next_offset: i64,
    /// Largest batch max-timestamp seen; -1 while empty.
    pub max_timestamp: i64,
    bytes_since_index_entry: u64,
    /// When the segment was created, for `segment.ms` rolls.
    pub created_ms: i64,
    /// Bytes written since the last fsync of this segment's files.
    pub dirty: bool,
    /// Index entries already in the index files; later ones are written at flush. Recovery
    /// rebuilds indexes past the recovery point, so entries only need to be on disk
    /// before the recovery point moves over them.
    index_written: usize,
    time_index_written: usize,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("base_offset", &self.base_offset)
            .field("next_offset", &self.next_offset)
            .field("size_bytes", &self.size_bytes)
            .finish()
    }
}

/// Where a batch sits in a segment file.
#[derive(Debug, Clone, Copy)]
struct BatchPosition {
    position: u64,
    size_bytes: u64,
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
}

fn header_fields(header: &[u8], position: u64) -> BatchPosition {
    let base_offset = (&header[0..8]).get_i64();
    let size_bytes = peek_batch_size(header).expect("a full header was read") as u64;
    let last_delta = (&header[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]).get_i32();
    let max_timestamp = (&header[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8]).get_i64();
    BatchPosition {
        position,
        size_bytes,
        base_offset,
        last_offset: base_offset.saturating_add(i64::from(last_delta)),
        max_timestamp,
    }
}

impl Segment {
    fn path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
        dir.join(file_name(base_offset, suffix))
    }

    /// Opens (creating if missing) the three files of a segment, without reading them.
    async fn open_files(
        disk: &dyn Disk,
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
    ) -> Result<Segment, LogError> {
        let log = disk
            .open(&Self::path(dir, base_offset, ".log"), OpenMode::Create)
            .await?;
        let index_file = disk
            .open(&Self::path(dir, base_offset, ".index"), OpenMode::Create)
            .await?;
        let time_index_file = disk
            .open(
                &Self::path(dir, base_offset, ".timeindex"),
                OpenMode::Create,
            )
            .await?;
        Ok(Segment {
            base_offset,
            dir: dir.to_path_buf(),
            log,
            index_file,
            time_index_file,
            index: Vec::new(),
            time_index: Vec::new(),
            size_bytes: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            bytes_since_index_entry: 0,
            created_ms: now_ms,
            dirty: false,
            index_written: 0,
            time_index_written: 0,
        })
    }

    /// A new, empty segment; leftovers of an older one at this offset are cleared.
    pub async fn create(
        disk: &dyn Disk,
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
    ) -> Result<Segment, LogError> {
        let segment = Self::open_files(disk, dir, base_offset, now_ms).await?;
        segment.log.truncate(0).await?;
        segment.index_file.truncate(0).await?;
        segment.time_index_file.truncate(0).await?;
        Ok(segment)
    }

    /// Opens an existing segment. With `recover`, every batch is validated and the first
    /// bad one and everything after it are cut, and both indexes are rebuilt; without it
    /// the indexes are trusted if they look sane and rebuilt otherwise.
    /// Returns the segment and whether anything was cut.
    pub async fn open(
        disk: &dyn Disk,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        recover: bool,
        now_ms: i64,
    ) -> Result<(Segment, bool), LogError> {
        let mut segment = Self::open_files(disk, dir, base_offset, now_ms).await?;
        segment.size_bytes = segment.log.size_bytes().await?;
        if !recover && segment.load_indexes().await? {
            // Only the tail after the last index entry needs reading to learn the end.
            let from = segment.index.last().map_or(0, |e| u64::from(e.1));
            let cut = segment.scan(from, index_interval_bytes, false).await?;
            if !cut {
                return Ok((segment, false));
            }
        }
        segment.index.clear();
        segment.time_index.clear();
        segment.max_timestamp = -1;
        segment.next_offset = base_offset;
        segment.bytes_since_index_entry = 0;
        let cut = segment.scan(0, index_interval_bytes, true).await?;
        segment.rewrite_indexes().await?;
        Ok((segment, cut))
    }

    /// Reads both index files; false if either is damaged or inconsistent with the log.
    async fn load_indexes(&mut self) -> Result<bool, LogError> {
        let size = self.index_file.size_bytes().await? as usize;
        let time_size = self.time_index_file.size_bytes().await? as usize;
        if !size.is_multiple_of(INDEX_ENTRY_BYTES)
            || !time_size.is_multiple_of(TIME_INDEX_ENTRY_BYTES)
        {
            return Ok(false);
        }
        let mut raw = read_agreed(self.index_file.as_ref(), 0, size).await?;
        let mut index = Vec::with_capacity(size / INDEX_ENTRY_BYTES);
        while raw.remaining() >= INDEX_ENTRY_BYTES {
            index.push((raw.get_u32(), raw.get_u32()));
        }
        let mut raw = read_agreed(self.time_index_file.as_ref(), 0, time_size).await?;
        let mut time_index = Vec::with_capacity(time_size / TIME_INDEX_ENTRY_BYTES);
        while raw.remaining() >= TIME_INDEX_ENTRY_BYTES {
            time_index.push((raw.get_i64(), raw.get_u32()));
        }
        let increasing = index.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && time_index
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1);
        let in_bounds = index
            .last()
            .is_none_or(|e| u64::from(e.1) < self.size_bytes);
        if !increasing || !in_bounds {
            return Ok(false);
        }
        self.index_written = index.len();
        self.time_index_written = time_index.len();
        self.index = index;
        self.time_index = time_index;
        if let Some(&(ts, rel)) = self.time_index.last() {
            self.max_timestamp = ts;
            self.next_offset = self.next_offset.max(self.base_offset + i64::from(rel) + 1);
        }
        if let Some(&(rel, _)) = self.index.last() {
            self.next_offset = self.next_offset.max(self.base_offset + i64::from(rel));
        }
        Ok(true)
    }

    /// Walks batches from `from`, updating `next_offset` and `max_timestamp`. With
    /// `recover`, each batch's CRC and offsets are also checked, the indexes rebuilt, and
    /// the first bad batch and everything after it truncated. Returns true if the walk
    /// stopped before the end of the file.
    async fn scan(
        &mut self,
        from: u64,
        index_interval_bytes: u64,
        recover: bool,
    ) -> Result<bool, LogError> {
        let mut position = from;
        let mut reason = "";
        let mut chunk = Bytes::new();
        let mut chunk_start = from;
        // Fresh reads of the current position after it failed validation.
        let mut rereads = 0;
        while position < self.size_bytes {
            if !reason.is_empty() {
                // Cutting destroys data, so it needs more than one agreed read: two reads
                // flipped alike are rare, but not rare enough across a whole simulation
                // (seen: a CRC field flipped twice the same way). Read this batch again.
                if !recover || rereads == CUT_CONFIRMATION_READS {
                    break;
                }
                rereads += 1;
                reason = "";
                chunk = Bytes::new();
                chunk_start = position;
                continue;
            }
            let in_chunk = (position - chunk_start) as usize;
            let available = chunk.len().saturating_sub(in_chunk);
            let want = match peek_batch_size(&chunk[in_chunk.min(chunk.len())..]) {
                Some(size) if size > 0 && available >= BATCH_HEADER_BYTES => size as usize,
                _ => BATCH_HEADER_BYTES,
            };
            if available < want {
                let len = want
                    .max(SCAN_CHUNK_BYTES)
                    .min((self.size_bytes - position) as usize);
                // What a scan reads decides offsets and what is cut: no single read is trusted.
                chunk = read_agreed(self.log.as_ref(), position, len).await?;
                chunk_start = position;
                if chunk.len() < want {
                    reason = "a batch longer than the file";
                }
                continue;
            }
            let bytes = chunk.slice(in_chunk..in_chunk + available);
            let header_ok = peek_batch_size(&bytes).is_some_and(|s| s >= BATCH_HEADER_BYTES as i64);
            if !header_ok {
                reason = "an impossible batch length";
                continue;
            }
            let batch = header_fields(&bytes, position);
            if recover {
                let parsed = match RecordBatch::parse(bytes.slice(..batch.size_bytes as usize)) {
                    Ok((parsed, _)) => parsed,
                    Err(e) => {
                        tracing::debug!(position, error = %e, "batch fails validation");
                        reason = "a batch that fails its checks";
                        continue;
                    }
                };
                // Offsets must grow and stay within a 32-bit distance of the segment's base.
                let fits = parsed.last_offset() - self.base_offset <= i64::from(u32::MAX);
                if parsed.base_offset() < self.next_offset || !fits {
                    tracing::debug!(
                        position,
                        base_offset = parsed.base_offset(),
                        next_offset = self.next_offset,
                        "batch offsets out of order"
                    );
                    reason = "offsets out of order";
                    continue;
                }
            }
            if recover {
                self.note_batch(&batch, index_interval_bytes);
            } else {
                self.next_offset = batch.last_offset + 1;
                self.max_timestamp = self.max_timestamp.max(batch.max_timestamp);
            }
            position += batch.size_bytes;
            rereads = 0;
        }
        let cut = position < self.size_bytes;
        // Only a validating scan, on reads that agree, may cut; a quick scan that trips
        // hands over to one.
        if cut && recover {
            tracing::warn!(
                segment = %Self::path(&self.dir, self.base_offset, ".log").display(),
                valid_bytes = position,
                cut_bytes = self.size_bytes - position,
                reason,
                "truncating an invalid tail"
            );
            self.log.truncate(position).await?;
            self.log.sync_data().await?;
            self.size_bytes = position;
        }
        Ok(cut)
    }

    /// Updates offsets, timestamps and in-memory indexes for a batch at `batch.position`.
    fn note_batch(&mut self, batch: &BatchPosition, index_interval_bytes: u64) {
        let rel = self.relative(batch.base_offset);
        if self.index.is_empty() || self.bytes_since_index_entry >= index_interval_bytes {
            let entry = (rel, batch.position as u32);
            if self.index.last().is_none_or(|last| last.0 < entry.0) {
                self.index.push(entry);
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += batch.size_bytes;
        if batch.max_timestamp > self.max_timestamp {
            self.max_timestamp = batch.max_timestamp;
            self.time_index
                .push((batch.max_timestamp, self.relative(batch.last_offset)));
        }
        self.next_offset = batch.last_offset + 1;
    }

    fn relative(&self, offset: i64) -> u32 {
        let rel = offset - self.base_offset;
        assert!(
            (0..=i64::from(u32::MAX)).contains(&rel),
            "offset {offset} is outside segment {}",
            self.base_offset
        );
        rel as u32
    }

    /// Replaces both index files with the in-memory indexes.
    async fn rewrite_indexes(&mut self) -> Result<(), LogError> {
        self.index_file.truncate(0).await?;
        self.time_index_file.truncate(0).await?;
        self.index_written = 0;
        self.time_index_written = 0;
        self.write_pending_index_entries().await?;
        self.dirty = true;
        Ok(())
    }

    /// Writes index entries appended since the last write.
    async fn write_pending_index_entries(&mut self) -> Result<(), LogError> {
        if self.index_written < self.index.len() {
            let mut buf = BytesMut::with_capacity(
                (self.index.len() - self.index_written) * INDEX_ENTRY_BYTES,
            );
            for &(rel, pos) in &self.index[self.index_written..] {
                buf.put_u32(rel);
                buf.put_u32(pos);
            }
            self.index_file
                .write_at((self.index_written * INDEX_ENTRY_BYTES) as u64, &buf)
                .await?;
            self.index_written = self.index.len();
        }
        if self.time_index_written < self.time_index.len() {
            let mut buf = BytesMut::with_capacity(
                (self.time_index.len() - self.time_index_written) * TIME_INDEX_ENTRY_BYTES,
            );
            for &(ts, rel) in &self.time_index[self.time_index_written..] {
                buf.put_i64(ts);
                buf.put_u32(rel);
            }
            self.time_index_file
                .write_at(
                    (self.time_index_written * TIME_INDEX_ENTRY_BYTES) as u64,
                    &buf,
                )
                .await?;
            self.time_index_written = self.time_index.len();
        }
        Ok(())
    }

    /// Appends batches at the given base offsets, stamped with `leader_epoch`, as one
    /// vectored write: only each batch's 16-byte prefix is copied.
    pub async fn append(
        &mut self,
        batches: &[(&RecordBatch, i64)],
        leader_epoch: i32,
        index_interval_bytes: u64,
    ) -> Result<(), LogError> {
        let total: usize = batches.iter().map(|(b, _)| b.size_bytes()).sum();
        assert!(
            self.size_bytes + total as u64 <= u64::from(u32::MAX),
            "segment positions are 32-bit"
        );
        let prefixes: Vec<[u8; STAMPED_PREFIX_BYTES]> = batches
            .iter()
            .map(|(b, base)| b.stamped_prefix(*base, leader_epoch))
            .collect();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(batches.len() * 2);
        let mut placed = Vec::with_capacity(batches.len());
        let mut position = self.size_bytes;
        let mut next_offset = self.next_offset;
        for ((batch, base_offset), prefix) in batches.iter().zip(&prefixes) {
            assert!(
                *base_offset >= next_offset,
                "offsets only grow within a segment"
            );
            let at = BatchPosition {
                position,
                size_bytes: batch.size_bytes() as u64,
                base_offset: *base_offset,
                last_offset: base_offset + i64::from(batch.last_offset_delta()),
                max_timestamp: batch.max_timestamp(),
            };
            next_offset = at.last_offset + 1;
            parts.push(prefix);
            parts.push(&batch.as_bytes()[STAMPED_PREFIX_BYTES..]);
            position += at.size_bytes;
            placed.push(at);
        }
        // Offsets and indexes move only once the bytes are written: a failed write (a
        // full disk) must not leave a gap of offsets that no batch holds.
        self.log.write_vectored_at(self.size_bytes, &parts).await?;
        for at in &placed {
            self.note_batch(at, index_interval_bytes);
        }
        self.size_bytes = position;
        self.dirty = true;
        Ok(())
    }

    /// The header of the batch at `position`.
    async fn batch_at(&self, position: u64) -> Result<BatchPosition, LogError> {
        let header = self.log.read_at(position, BATCH_HEADER_BYTES).await?;
        self.checked_header(&header, position)
    }

    /// The header fields read at `position`, refused when they cannot be right.
    fn checked_header(&self, header: &[u8], position: u64) -> Result<BatchPosition, LogError> {
        if header.len() < BATCH_HEADER_BYTES {
            return Err(LogError::Corrupt(format!(
                "segment {} ends inside a batch header at position {position}",
                self.base_offset
            )));
        }
        let batch = header_fields(header, position);
        // A misread length must not send a walk off the end of the file, or nowhere.
        let fits = batch.size_bytes >= BATCH_HEADER_BYTES as u64
            && batch.size_bytes <= self.size_bytes - position;
        if !fits {
            return Err(LogError::Corrupt(format!(
                "segment {} has a batch of impossible length {} at position {position}",
                self.base_offset, batch.size_bytes
            )));
        }
        Ok(batch)
    }

    /// Position of the first batch whose last offset is ≥ `offset`, or `None` if every
    /// batch ends before it.
    async fn find_batch(&self, offset: i64) -> Result<Option<BatchPosition>, LogError> {
        let rel = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let start = match self.index.partition_point(|e| e.0 <= rel) {
            0 => 0,
            i => u64::from(self.index[i - 1].1),
        };
        let mut position = start;
        while position < self.size_bytes {
            let batch = self.batch_at(position).await?;
            if batch.last_offset >= offset {
                return Ok(Some(batch));
            }
            position += batch.size_bytes;
        }
        Ok(None)
    }

    /// [`Segment::find_batch`] for a cut, which destroys what follows: every header is
    /// read until two reads agree, and the offsets must rise through the segment, so a
    /// bit flipped on the way in cannot move the cut (the base offset is outside the CRC).
    async fn find_batch_to_cut(&self, offset: i64) -> Result<Option<BatchPosition>, LogError> {
        let mut position = 0;
        let mut previous_last = self.base_offset - 1;
        while position < self.size_bytes {
            let header = read_agreed(self.log.as_ref(), position, BATCH_HEADER_BYTES).await?;
            let batch = self.checked_header(&header, position)?;
            if batch.base_offset <= previous_last
                || batch.last_offset < batch.base_offset
                || batch.last_offset - self.base_offset > i64::from(u32::MAX)
            {
                return Err(LogError::Corrupt(format!(
                    "segment {} has a batch of offsets {}..={} after offset {previous_last}, at position {position}",
                    self.base_offset, batch.base_offset, batch.last_offset
                )));
            }
            if batch.last_offset >= offset {
                return Ok(Some(batch));
            }
            previous_last = batch.last_offset;
            position += batch.size_bytes;
        }
        Ok(None)
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` but at least one.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Option<Bytes>, LogError> {
        let Some(first) = self.find_batch(offset).await? else {
            return Ok(None);
        };
        let want = (first.size_bytes as usize).max(max_bytes);
        let len = want.min((self.size_bytes - first.position) as usize);
        let bytes = self.log.read_at(first.position, len).await?;
        let mut whole = 0usize;
        while let Some(size) = peek_batch_size(&bytes[whole..]) {
            let fits =
                size >= BATCH_HEADER_BYTES as i64 && size as u64 <= (bytes.len() - whole) as u64;
            if !fits {
                break;
            }
            whole += size as usize;
        }
        if whole == 0 {
            return Err(LogError::Corrupt(format!(
                "segment {} holds a damaged batch at position {}",
                self.base_offset, first.position
            )));
        }
        Ok(Some(bytes.slice(..whole)))
    }

    /// The first offset whose batch has a max timestamp ≥ `timestamp`, and that timestamp.
    pub async fn find_offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        // Start at the batch after the last time-index entry still below the target.
        let from_offset = match self.time_index.partition_point(|e| e.0 < timestamp) {
            0 => self.base_offset,
            i => self.base_offset + i64::from(self.time_index[i - 1].1) + 1,
        };
        let Some(mut batch) = self.find_batch(from_offset).await? else {
            return Ok(None);
        };
        loop {
            if batch.max_timestamp >= timestamp {
                return Ok(Some(
                    self.first_record_at_or_after(&batch, timestamp).await?,
                ));
            }
            let next = batch.position + batch.size_bytes;
            if next >= self.size_bytes {
                return Ok(None);
            }
            batch = self.batch_at(next).await?;
        }
    }

    /// Within a batch reaching `timestamp`: the first record at or after it, and its
    /// timestamp, as Kafka's ListOffsets answers. Log-append-time batches, and batches
    /// whose records do not decode, answer with the batch's base offset.
    async fn first_record_at_or_after(
        &self,
        batch: &BatchPosition,
        timestamp: i64,
    ) -> Result<(i64, i64), LogError> {
        let whole = (batch.base_offset, batch.max_timestamp);
        let bytes = self
            .log
            .read_at(batch.position, batch.size_bytes as usize)
            .await?;
        let Ok((parsed, _)) = RecordBatch::parse(bytes) else {
            return Ok(whole);
        };
        if parsed.is_log_append_time() {
            return Ok(whole);
        }
        match parsed.records() {
            Ok(records) => Ok(records
                .iter()
                .map(|r| {
                    (
                        batch.base_offset + i64::from(r.offset_delta),
                        parsed.base_timestamp().saturating_add(r.timestamp_delta),
                    )
                })
                .find(|(_, ts)| *ts >= timestamp)
                .unwrap_or(whole)),
            Err(e) => {
                tracing::warn!(offset = batch.base_offset, error = %e, "records do not decode; answering with the batch");
                Ok(whole)
            }
        }
    }

    /// Cuts the segment before the first batch whose last offset is ≥ `offset`; returns
    /// the new `next_offset`. The cut is fsynced.
    pub async fn truncate_to(&mut self, offset: i64) -> Result<i64, LogError> {
        let Some(batch) = self.find_batch_to_cut(offset).await? else {
            return Ok(self.next_offset);
        };
        self.log.truncate(batch.position).await?;
        self.log.sync_data().await?;
        self.size_bytes = batch.position;
        let rel = self.relative(batch.base_offset);
        self.index.retain(|e| u64::from(e.1) < batch.position);
        self.time_index.retain(|e| e.1 < rel);
        self.next_offset = batch.base_offset;
        self.max_timestamp = self.time_index.last().map_or(-1, |e| e.0);
        self.bytes_since_index_entry = self
            .index
            .last()
            .map_or(0, |e| batch.position - u64::from(e.1));
        self.rewrite_indexes().await?;
        Ok(self.next_offset)
    }

    pub async fn flush(&mut self) -> Result<(), LogError> {
        if self.dirty {
            self.prepare_flush().await?;
            self.sync().await?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Writes what is still only in memory (index entries), before [`Segment::sync`].
    pub async fn prepare_flush(&mut self) -> Result<(), LogError> {
        self.write_pending_index_entries().await
    }

    /// Fsyncs the segment's files; the caller marks it clean.
    pub async fn sync(&self) -> Result<(), LogError> {
        self.log.sync_data().await?;
        self.index_file.sync_data().await?;
        self.time_index_file.sync_data().await?;
        Ok(())
    }

    /// The `.log` file, shared: closed segments never change in place, so a background
    /// reader (the compactor) may read it while the log goes on.
    pub fn log_file(&self) -> Arc<dyn DiskFile> {
        self.log.clone()
    }

    /// Removes the segment's files (the caller syncs the directory).
    pub async fn delete(self, disk: &dyn Disk) -> Result<(), LogError> {
        delete_files(disk, &self.dir, self.base_offset).await
    }
}
