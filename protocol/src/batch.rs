//! A zero-copy view of Kafka record batches (format v2, magic 2).
//!
//! The broker never decodes records on the produce path: it checks the batch header and
//! its CRC-32C and stores the bytes as they came, stamping only the base offset and the
//! partition leader epoch, which lie outside the CRC.
//!
//! Header layout (big endian), offsets in bytes:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | base offset |
//! | 8 | 4 | batch length (bytes after this field) |
//! | 12 | 4 | partition leader epoch |
//! | 16 | 1 | magic (2) |
//! | 17 | 4 | CRC-32C of everything from offset 21 to the end |
//! | 21 | 2 | attributes |
//! | 23 | 4 | last offset delta |
//! | 27 | 8 | base timestamp |
//! | 35 | 8 | max timestamp |
//! | 43 | 8 | producer id |
//! | 51 | 2 | producer epoch |
//! | 53 | 4 | base sequence |
//! | 57 | 4 | record count |

use bytes::{Buf, Bytes, BytesMut};

/// Bytes before the first record.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before the batch length field ends: base offset plus the length itself.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The bytes that stamping touches: base offset, length and partition leader epoch.
pub const STAMPED_PREFIX_BYTES: usize = 16;
// Where each header field starts (the table above); every reader and writer of batch
// headers in the workspace uses these.
pub const BASE_OFFSET_AT: usize = 0;
pub const LENGTH_AT: usize = 8;
pub const LEADER_EPOCH_AT: usize = 12;
pub const MAGIC_AT: usize = 16;
pub const CRC_AT: usize = 17;
/// The CRC-32C covers everything from here (the attributes) to the end of the batch.
pub const CRC_FROM: usize = 21;
pub const ATTRIBUTES_AT: usize = 21;
pub const LAST_OFFSET_DELTA_AT: usize = 23;
pub const BASE_TIMESTAMP_AT: usize = 27;
pub const MAX_TIMESTAMP_AT: usize = 35;
pub const PRODUCER_ID_AT: usize = 43;
pub const PRODUCER_EPOCH_AT: usize = 51;
pub const BASE_SEQUENCE_AT: usize = 53;
pub const RECORD_COUNT_AT: usize = 57;
/// Attributes bit 3: timestamps are the broker's append time, not the producer's.
const LOG_APPEND_TIME_BIT: i16 = 0x08;

/// How the records of a batch are compressed (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec's bits in a batch's attributes.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// Why bytes are not a valid v2 record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{available} bytes cannot hold a record batch header of {BATCH_HEADER_BYTES} bytes")]
    TooShort { available: usize },
    #[error("batch length {length} is below the minimum of {min}", min = BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES)]
    LengthTooSmall { length: i32 },
    #[error("batch of {needed} bytes but only {available} bytes follow")]
    Truncated { needed: usize, available: usize },
    #[error("magic byte {magic} is not 2: only record batch format v2 is supported")]
    UnsupportedMagic { magic: i8 },
    #[error("CRC-32C mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("unknown compression codec {codec}")]
    UnknownCompression { codec: u8 },
    #[error("record count {count} is negative")]
    NegativeRecordCount { count: i32 },
    #[error("last offset delta {delta} is negative")]
    NegativeLastOffsetDelta { delta: i32 },
    #[error("last offset delta {delta} is below record count {count} minus one")]
    InconsistentCount { delta: i32, count: i32 },
    #[error("base offset {base_offset} plus last offset delta {delta} overflows")]
    OffsetOverflow { base_offset: i64, delta: i32 },
}

/// One validated record batch over shared bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordBatch {
    bytes: Bytes,
}

impl std::fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatch")
            .field("base_offset", &self.base_offset())
            .field("last_offset_delta", &self.last_offset_delta())
            .field("records", &self.record_count())
            .field("size_bytes", &self.size_bytes())
            .finish()
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    (&b[at..at + 2]).get_i16()
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    (&b[at..at + 4]).get_i32()
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    (&b[at..at + 8]).get_i64()
}

/// The total size of the batch starting at `bytes`, read from its length field, without
/// validating anything else. `None` if fewer than 12 bytes are available.
pub fn peek_batch_size(bytes: &[u8]) -> Option<i64> {
    if bytes.len() < LOG_OVERHEAD_BYTES {
        return None;
    }
    Some(i64::from(i32_at(bytes, LENGTH_AT)) + LOG_OVERHEAD_BYTES as i64)
}

impl RecordBatch {
    /// Validates the batch at the start of `bytes`; returns it and the bytes after it.
    pub fn parse(bytes: Bytes) -> Result<(RecordBatch, Bytes), BatchError> {
        let available = bytes.len();
        if available < BATCH_HEADER_BYTES {
            return Err(BatchError::TooShort { available });
        }
        let length = i32_at(&bytes, LENGTH_AT);
        if length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            return Err(BatchError::LengthTooSmall { length });
        }
        let needed = length as usize + LOG_OVERHEAD_BYTES;
        if needed > available {
            return Err(BatchError::Truncated { needed, available });
        }
        let magic = bytes[MAGIC_AT] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        let stored = (&bytes[CRC_AT..CRC_AT + 4]).get_u32();
        let computed = crc32c::crc32c(&bytes[CRC_FROM..needed]);
        if stored != computed {
            return Err(BatchError::CrcMismatch { stored, computed });
        }
        let mut rest = bytes;
        let batch = RecordBatch {
            bytes: rest.split_to(needed),
        };
        let codec = (batch.attributes() & 0x07) as u8;
        if codec > 4 {
            return Err(BatchError::UnknownCompression { codec });
        }
        let count = batch.record_count();
        if count < 0 {
            return Err(BatchError::NegativeRecordCount { count });
        }
        let delta = batch.last_offset_delta();
        if delta < 0 {
            return Err(BatchError::NegativeLastOffsetDelta { delta });
        }
        if batch.base_offset().checked_add(i64::from(delta)).is_none() {
            return Err(BatchError::OffsetOverflow {
                base_offset: batch.base_offset(),
                delta,
            });
        }
        // Compaction may remove records but keeps the delta, so only this direction holds.
        if i64::from(delta) < i64::from(count) - 1 {
            return Err(BatchError::InconsistentCount { delta, count });
        }
        Ok((batch, rest))
    }

    /// Parses every batch in `bytes`, which must hold whole batches only.
    pub fn parse_all(mut bytes: Bytes) -> Result<Vec<RecordBatch>, BatchError> {
        let mut batches = Vec::new();
        while !bytes.is_empty() {
            let (batch, rest) = RecordBatch::parse(bytes)?;
            batches.push(batch);
            bytes = rest;
        }
        Ok(batches)
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn size_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn base_offset(&self) -> i64 {
        i64_at(&self.bytes, BASE_OFFSET_AT)
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset() + i64::from(self.last_offset_delta())
    }

    pub fn partition_leader_epoch(&self) -> i32 {
        i32_at(&self.bytes, LEADER_EPOCH_AT)
    }

    pub fn crc(&self) -> u32 {
        (&self.bytes[CRC_AT..CRC_AT + 4]).get_u32()
    }

    pub fn attributes(&self) -> i16 {
        i16_at(&self.bytes, ATTRIBUTES_AT)
    }

    pub fn compression(&self) -> Compression {
        match self.attributes() & 0x07 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => unreachable!("parse rejects unknown codecs"),
        }
    }

    /// True when timestamps are set by the broker (LogAppendTime).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & LOG_APPEND_TIME_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes() & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes() & 0x20 != 0
    }

    pub fn last_offset_delta(&self) -> i32 {
        i32_at(&self.bytes, LAST_OFFSET_DELTA_AT)
    }

    pub fn base_timestamp(&self) -> i64 {
        i64_at(&self.bytes, BASE_TIMESTAMP_AT)
    }

    pub fn max_timestamp(&self) -> i64 {
        i64_at(&self.bytes, MAX_TIMESTAMP_AT)
    }

    pub fn producer_id(&self) -> i64 {
        i64_at(&self.bytes, PRODUCER_ID_AT)
    }

    pub fn producer_epoch(&self) -> i16 {
        i16_at(&self.bytes, PRODUCER_EPOCH_AT)
    }

    pub fn base_sequence(&self) -> i32 {
        i32_at(&self.bytes, BASE_SEQUENCE_AT)
    }

    pub fn record_count(&self) -> i32 {
        i32_at(&self.bytes, RECORD_COUNT_AT)
    }

    /// The first 16 bytes of the batch with `base_offset` and `leader_epoch` stamped in:
    /// written ahead of `as_bytes()[STAMPED_PREFIX_BYTES..]`, it stores the stamped batch
    /// without copying the rest.
    pub fn stamped_prefix(
        &self,
        base_offset: i64,
        leader_epoch: i32,
    ) -> [u8; STAMPED_PREFIX_BYTES] {
        let mut prefix = [0u8; STAMPED_PREFIX_BYTES];
        prefix.copy_from_slice(&self.bytes[..STAMPED_PREFIX_BYTES]);
        prefix[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
        prefix[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
        prefix
    }

    /// A copy with the base offset and leader epoch stamped in; neither is under the CRC,
    /// so the batch stays valid. One copy of the batch, as it goes to the log.
    pub fn stamped(&self, base_offset: i64, leader_epoch: i32) -> RecordBatch {
        let mut bytes = BytesMut::from(&self.bytes[..]);
        bytes[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
        bytes[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
        RecordBatch {
            bytes: bytes.freeze(),
        }
    }

    /// A copy marked as log-append-time with `now_ms` as its max timestamp, CRC updated:
    /// what a broker stores for a topic with `message.timestamp.type=LogAppendTime`.
    pub fn with_log_append_time(&self, now_ms: i64) -> RecordBatch {
        let mut bytes = BytesMut::from(&self.bytes[..]);
        let attributes = self.attributes() | LOG_APPEND_TIME_BIT;
        bytes[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        bytes[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[CRC_FROM..]);
        bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        RecordBatch {
            bytes: bytes.freeze(),
        }
    }
}

/// The one writer of v2 batches: our client's producer, the group coordinator, the
/// simulator and the tests all build batches here.
pub mod build {
    use bytes::{BufMut, Bytes, BytesMut};

    use super::*;
    use crate::records::{compress, RecordsError};

    /// One record for [`encode`]: key, value, headers and its timestamp.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct NewRecord {
        pub key: Option<Bytes>,
        pub value: Option<Bytes>,
        pub headers: Vec<(String, Option<Bytes>)>,
        pub timestamp_ms: i64,
    }

    impl NewRecord {
        /// Bytes this record takes in an uncompressed batch, near enough for batch sizing.
        pub fn estimated_size_bytes(&self) -> usize {
            let field = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len()) + 5;
            21 + field(&self.key)
                + field(&self.value)
                + self
                    .headers
                    .iter()
                    .map(|(k, v)| k.len() + 5 + field(v))
                    .sum::<usize>()
        }
    }

    /// The batch-level fields a producer sets.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct BatchOptions {
        /// -1 without idempotence.
        pub producer_id: i64,
        pub producer_epoch: i16,
        /// The sequence number of the first record, -1 without idempotence.
        pub base_sequence: i32,
        pub compression: Compression,
    }

    impl Default for BatchOptions {
        fn default() -> Self {
            BatchOptions {
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                compression: Compression::None,
            }
        }
    }

    /// Why a batch could not be built.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum BuildError {
        #[error("a batch holds at least one record")]
        Empty,
        #[error("a batch of {count} records is too many for one batch")]
        TooManyRecords { count: usize },
        #[error("a batch of {size_bytes} bytes is over the format's 2 GiB")]
        TooLarge { size_bytes: usize },
        #[error(transparent)]
        Compress(#[from] RecordsError),
    }

    /// A zigzag varint, as record fields are written.
    pub fn put_varint(buf: &mut BytesMut, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        while v >= 0x80 {
            buf.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        buf.put_u8(v as u8);
    }

    /// A varint length (-1 for null) and the bytes, as record keys, values and headers.
    pub fn put_bytes(buf: &mut BytesMut, bytes: Option<&[u8]>) {
        match bytes {
            None => put_varint(buf, -1),
            Some(b) => {
                put_varint(buf, b.len() as i64);
                buf.put_slice(b);
            }
        }
    }

    /// Encodes `records` as one v2 batch with base offset 0 and leader epoch -1 (the
    /// broker stamps both). The base timestamp is the first record's, as the Java client
    /// does.
    pub fn encode(options: BatchOptions, records: &[NewRecord]) -> Result<Bytes, BuildError> {
        let first = records.first().ok_or(BuildError::Empty)?;
        let count = i32::try_from(records.len()).map_err(|_| BuildError::TooManyRecords {
            count: records.len(),
        })?;
        let base_timestamp = first.timestamp_ms;
        let max_timestamp = records
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(base_timestamp);
        let mut section =
            BytesMut::with_capacity(records.iter().map(NewRecord::estimated_size_bytes).sum());
        let mut record = BytesMut::new();
        for (i, r) in records.iter().enumerate() {
            record.clear();
            record.put_i8(0);
            put_varint(&mut record, r.timestamp_ms - base_timestamp);
            put_varint(&mut record, i as i64);
            put_bytes(&mut record, r.key.as_deref());
            put_bytes(&mut record, r.value.as_deref());
            put_varint(&mut record, r.headers.len() as i64);
            for (k, v) in &r.headers {
                put_bytes(&mut record, Some(k.as_bytes()));
                put_bytes(&mut record, v.as_deref());
            }
            put_varint(&mut section, record.len() as i64);
            section.put_slice(&record);
        }
        let packed = compress(options.compression, &section)?;
        let size_bytes = BATCH_HEADER_BYTES + packed.len();
        let length = i32::try_from(size_bytes - LOG_OVERHEAD_BYTES)
            .map_err(|_| BuildError::TooLarge { size_bytes })?;
        let mut buf = BytesMut::with_capacity(size_bytes);
        buf.put_i64(0);
        buf.put_i32(length);
        buf.put_i32(-1);
        buf.put_i8(2);
        buf.put_u32(0);
        buf.put_i16(options.compression.attribute_bits());
        buf.put_i32(count - 1);
        buf.put_i64(base_timestamp);
        buf.put_i64(max_timestamp);
        buf.put_i64(options.producer_id);
        buf.put_i16(options.producer_epoch);
        buf.put_i32(options.base_sequence);
        buf.put_i32(count);
        debug_assert_eq!(buf.len(), BATCH_HEADER_BYTES);
        buf.put_slice(&packed);
        let crc = crc32c::crc32c(&buf[CRC_FROM..]);
        buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(buf.freeze())
    }

    /// One record for [`batch`]: key, value and timestamp delta from the base timestamp.
    pub struct Record<'a> {
        pub key: Option<&'a [u8]>,
        pub value: Option<&'a [u8]>,
        pub timestamp_delta: i64,
    }

    /// An uncompressed batch without producer or headers: what the group coordinator
    /// writes, and what tests and the simulator send.
    pub fn batch(base_timestamp: i64, records: &[Record<'_>]) -> RecordBatch {
        let records: Vec<NewRecord> = records
            .iter()
            .map(|r| NewRecord {
                key: r.key.map(Bytes::copy_from_slice),
                value: r.value.map(Bytes::copy_from_slice),
                headers: Vec::new(),
                timestamp_ms: base_timestamp + r.timestamp_delta,
            })
            .collect();
        let bytes = encode(BatchOptions::default(), &records)
            .expect("a batch of in-memory records without compression builds");
        RecordBatch::parse(bytes)
            .expect("a freshly built batch is valid")
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::build::{batch, Record};
    use super::*;

    fn sample() -> RecordBatch {
        batch(
            1_700_000_000_000,
            &[
                Record {
                    key: Some(b"k1"),
                    value: Some(b"v1"),
                    timestamp_delta: 0,
                },
                Record {
                    key: None,
                    value: Some(b"v2"),
                    timestamp_delta: 5,
                },
                Record {
                    key: Some(b"k3"),
                    value: None,
                    timestamp_delta: 2,
                },
            ],
        )
    }

    #[test]
    fn header_fields_read_back() {
        let b = sample();
        assert_eq!(b.base_offset(), 0);
        assert_eq!(b.record_count(), 3);
        assert_eq!(b.last_offset_delta(), 2);
        assert_eq!(b.base_timestamp(), 1_700_000_000_000);
        assert_eq!(b.max_timestamp(), 1_700_000_000_005);
        assert_eq!(b.compression(), Compression::None);
        assert_eq!(b.producer_id(), -1);
        assert!(!b.is_transactional() && !b.is_control() && !b.is_log_append_time());
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let b = sample().stamped(1000, 7);
        let (again, rest) = RecordBatch::parse(b.as_bytes().clone()).expect("still valid");
        assert!(rest.is_empty());
        assert_eq!(again.base_offset(), 1000);
        assert_eq!(again.last_offset(), 1002);
        assert_eq!(again.partition_leader_epoch(), 7);
        let original = sample();
        let prefix = original.stamped_prefix(1000, 7);
        let joined = [&prefix[..], &original.as_bytes()[STAMPED_PREFIX_BYTES..]].concat();
        assert_eq!(
            &joined[..],
            &b.as_bytes()[..],
            "prefix plus the untouched rest is the stamped batch"
        );
    }

    #[test]
    fn every_inconsistency_is_named() {
        let good = sample().as_bytes().clone();
        let mutate = |at: usize, value: u8| {
            let mut b = BytesMut::from(&good[..]);
            b[at] = value;
            RecordBatch::parse(b.freeze()).map(|_| ())
        };
        assert!(matches!(
            RecordBatch::parse(good.slice(..40)),
            Err(BatchError::TooShort { available: 40 })
        ));
        assert!(matches!(
            RecordBatch::parse(good.slice(..good.len() - 1)),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            mutate(16, 1),
            Err(BatchError::UnsupportedMagic { magic: 1 })
        ));
        assert!(matches!(
            mutate(good.len() - 1, 0xff),
            Err(BatchError::CrcMismatch { .. })
        ));
        assert!(matches!(
            mutate(8, 0x80),
            Err(BatchError::LengthTooSmall { .. })
        ));
        let two = [good.clone(), good.clone()].concat();
        assert_eq!(
            RecordBatch::parse_all(Bytes::from(two))
                .expect("two batches")
                .len(),
            2
        );
    }
}
