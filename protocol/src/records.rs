//! Records inside a v2 batch, decompressed when needed: for the few places that must look
//! inside (timestamp lookups, compaction, printing), never for the produce path.
//!
//! A record: length (varint), attributes (i8), timestamp delta (varlong), offset delta
//! (varint), key and value (varint length, -1 for null), headers (varint count, each a
//! varint-length key and a varint-length value). The timestamp delta is read as a
//! 64-bit varlong, as the format defines it.

use std::io::Read;

use bytes::{Buf, Bytes};

use crate::batch::{
    Compression, RecordBatch, ATTRIBUTES_AT, BATCH_HEADER_BYTES, CRC_AT, CRC_FROM, LENGTH_AT,
    RECORD_COUNT_AT,
};

/// Largest decompressed records section accepted, so a small hostile batch cannot make the
/// broker allocate without bound.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
    /// The record as encoded, length prefix included, so it can be copied into a
    /// rebuilt batch unchanged.
    pub encoded: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("records section is malformed: {0}")]
    Malformed(&'static str),
    #[error("cannot decompress {codec:?} records: {reason}")]
    Decompress { codec: Compression, reason: String },
    #[error("records decompress to more than {MAX_DECOMPRESSED_BYTES} bytes")]
    TooLarge,
    #[error("batch says {expected} records but holds {found}")]
    CountMismatch { expected: i32, found: usize },
    #[error("cannot compress records with {codec:?}: {reason}")]
    Compress { codec: Compression, reason: String },
}

/// snappy-java's stream header: magic, version 1, minimum compatible version 1.
const XERIAL_STREAM_HEADER: &[u8] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// snappy-java compresses in blocks of this many bytes.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// A codec's level, in the ranges and with the defaults of Kafka's `compression.gzip.level`,
/// `compression.lz4.level` and `compression.zstd.level` (KIP-390).
pub mod level {
    /// gzip: 1 to 9, or -1 for zlib's default (6).
    pub const GZIP: std::ops::RangeInclusive<i32> = 1..=9;
    pub const GZIP_DEFAULT: i32 = -1;
    /// lz4: 1 to 17; 9 is Kafka's default.
    pub const LZ4: std::ops::RangeInclusive<i32> = 1..=17;
    pub const LZ4_DEFAULT: i32 = 9;
    /// zstd: -131072 to 22; 3 is Kafka's default.
    pub const ZSTD: std::ops::RangeInclusive<i32> = -131072..=22;
    pub const ZSTD_DEFAULT: i32 = 3;

    /// Kafka's default level for `codec` (snappy and none have no levels).
    pub fn default_for(codec: crate::batch::Compression) -> i32 {
        use crate::batch::Compression;
        match codec {
            Compression::Gzip => GZIP_DEFAULT,
            Compression::Lz4 => LZ4_DEFAULT,
            Compression::Zstd => ZSTD_DEFAULT,
            Compression::None | Compression::Snappy => 0,
        }
    }

    /// Whether `level` is one Kafka accepts for `codec`.
    pub fn is_valid(codec: crate::batch::Compression, level: i32) -> bool {
        use crate::batch::Compression;
        match codec {
            Compression::Gzip => level == GZIP_DEFAULT || GZIP.contains(&level),
            Compression::Lz4 => LZ4.contains(&level),
            Compression::Zstd => ZSTD.contains(&level),
            Compression::None | Compression::Snappy => true,
        }
    }
}

/// Compresses a records section the way Kafka's clients do, at Kafka's default level.
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, RecordsError> {
    compress_at(codec, level::default_for(codec), data)
}

/// Compresses a records section the way Kafka's clients and broker do, so that librdkafka,
/// the Java client and Kafka's broker all read it; `level` as [`level`] describes.
pub fn compress_at(codec: Compression, level: i32, data: &[u8]) -> Result<Vec<u8>, RecordsError> {
    use std::io::Write;
    assert!(
        level::is_valid(codec, level),
        "{codec:?} level {level} was checked by the caller"
    );
    let fail = |reason: String| RecordsError::Compress { codec, reason };
    Ok(match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let level = if level == level::GZIP_DEFAULT {
                flate2::Compression::default()
            } else {
                flate2::Compression::new(level as u32)
            };
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), level);
            e.write_all(data).map_err(|e| fail(e.to_string()))?;
            e.finish().map_err(|e| fail(e.to_string()))?
        }
        Compression::Snappy => {
            // xerial framing as the Java client writes it.
            let mut out = Vec::with_capacity(XERIAL_STREAM_HEADER.len() + data.len());
            out.extend_from_slice(XERIAL_STREAM_HEADER);
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK_BYTES) {
                let packed = encoder
                    .compress_vec(block)
                    .map_err(|e| fail(e.to_string()))?;
                out.extend_from_slice(&(packed.len() as u32).to_be_bytes());
                out.extend_from_slice(&packed);
            }
            out
        }
        Compression::Lz4 => {
            // Kafka reads LZ4 frames with independent 64 KiB blocks and no content size.
            let mut e = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .level(level as u32)
                .build(Vec::with_capacity(data.len() / 2))
                .map_err(|e| fail(e.to_string()))?;
            e.write_all(data).map_err(|e| fail(e.to_string()))?;
            let (out, done) = e.finish();
            done.map_err(|e| fail(e.to_string()))?;
            out
        }
        Compression::Zstd => zstd::bulk::compress(data, level).map_err(|e| fail(e.to_string()))?,
    })
}

fn varlong(buf: &mut Bytes) -> Result<i64, RecordsError> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return Err(RecordsError::Malformed("varint runs past the end"));
        }
        let byte = buf.get_u8();
        if shift == 63 && byte > 1 {
            return Err(RecordsError::Malformed("varint longer than 64 bits"));
        }
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err(RecordsError::Malformed("varint longer than 10 bytes"))
}

fn varint(buf: &mut Bytes) -> Result<i32, RecordsError> {
    i32::try_from(varlong(buf)?).map_err(|_| RecordsError::Malformed("varint out of 32-bit range"))
}

fn nullable_bytes(buf: &mut Bytes) -> Result<Option<Bytes>, RecordsError> {
    let len = varint(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(RecordsError::Malformed("field runs past the end"));
    }
    Ok(Some(buf.split_to(len)))
}

fn read_limited(reader: impl Read, codec: Compression) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    reader
        .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RecordsError::Decompress {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(RecordsError::TooLarge);
    }
    Ok(out)
}

/// The header Java's snappy-java writes ahead of framed snappy blocks.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

fn snappy_raw(block: &[u8]) -> Result<Vec<u8>, RecordsError> {
    let fail = |e: snap::Error| RecordsError::Decompress {
        codec: Compression::Snappy,
        reason: e.to_string(),
    };
    if snap::raw::decompress_len(block).map_err(fail)? > MAX_DECOMPRESSED_BYTES {
        return Err(RecordsError::TooLarge);
    }
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(fail)
}

/// Kafka's snappy is either raw or xerial-framed (Java clients), so both are read.
fn snappy(data: &[u8]) -> Result<Vec<u8>, RecordsError> {
    if !data.starts_with(XERIAL_MAGIC) {
        return snappy_raw(data);
    }
    let mut rest = data
        .get(16..)
        .ok_or(RecordsError::Malformed("xerial header is cut short"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RecordsError::Malformed("xerial block length is cut short"));
        }
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let block = rest
            .get(4..4 + len)
            .ok_or(RecordsError::Malformed("xerial block is cut short"))?;
        out.extend_from_slice(&snappy_raw(block)?);
        if out.len() > MAX_DECOMPRESSED_BYTES {
            return Err(RecordsError::TooLarge);
        }
        rest = &rest[4 + len..];
    }
    Ok(out)
}

fn decompress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, RecordsError> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => read_limited(flate2::read::GzDecoder::new(data), codec),
        Compression::Snappy => snappy(data),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(data).map_err(|e| RecordsError::Decompress {
                codec,
                reason: e.to_string(),
            })?;
            read_limited(decoder, codec)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(data).map_err(|e| {
                RecordsError::Decompress {
                    codec,
                    reason: e.to_string(),
                }
            })?;
            read_limited(decoder, codec)
        }
    }
}

impl RecordBatch {
    /// Decodes every record of the batch, decompressing first if needed.
    pub fn records(&self) -> Result<Vec<Record>, RecordsError> {
        parse_records(self.plain_records()?, self.record_count())
    }

    /// The records section, decompressed.
    fn plain_records(&self) -> Result<Bytes, RecordsError> {
        let section = &self.as_bytes()[BATCH_HEADER_BYTES..];
        Ok(match self.compression() {
            Compression::None => self.as_bytes().slice(BATCH_HEADER_BYTES..),
            codec => Bytes::from(decompress(codec, section)?),
        })
    }

    /// The same batch with its records compressed by `codec` at `level`, as a broker stores
    /// it when the topic's `compression.type` names another codec than the producer used.
    /// The header (offsets, timestamps, producer fields, other attributes) is unchanged;
    /// the codec bits, length and CRC are new. Every record is checked on the way, since
    /// the batch's own CRC no longer vouches for them once they are re-encoded.
    pub fn recompressed(
        &self,
        codec: Compression,
        level: i32,
    ) -> Result<RecordBatch, RecordsError> {
        let plain = self.plain_records()?;
        parse_records(plain.clone(), self.record_count())?;
        let packed = compress_at(codec, level, &plain)?;
        let mut buf = bytes::BytesMut::with_capacity(BATCH_HEADER_BYTES + packed.len());
        buf.extend_from_slice(&self.as_bytes()[..BATCH_HEADER_BYTES]);
        buf.extend_from_slice(&packed);
        let length = i32::try_from(buf.len() - crate::batch::LOG_OVERHEAD_BYTES)
            .map_err(|_| RecordsError::TooLarge)?;
        buf[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        let attributes = (self.attributes() & !CODEC_BITS) | codec.attribute_bits();
        buf[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        let crc = crc32c::crc32c(&buf[CRC_FROM..]);
        buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(RecordBatch::parse(buf.freeze())
            .expect("a batch recompressed from checked records is valid")
            .0)
    }
}

/// Attributes bits 0-2: the codec.
const CODEC_BITS: i16 = 0x07;

fn parse_records(mut buf: Bytes, expected: i32) -> Result<Vec<Record>, RecordsError> {
    let mut records = Vec::with_capacity((expected.max(0) as usize).min(1 << 16));
    while buf.has_remaining() {
        let whole = buf.clone();
        let len = varint(&mut buf)?;
        if len < 0 || buf.remaining() < len as usize {
            return Err(RecordsError::Malformed("record length runs past the end"));
        }
        let encoded = whole.slice(..whole.len() - buf.remaining() + len as usize);
        let mut record = buf.split_to(len as usize);
        if !record.has_remaining() {
            return Err(RecordsError::Malformed("empty record"));
        }
        record.advance(1);
        let timestamp_delta = varlong(&mut record)?;
        let offset_delta = varint(&mut record)?;
        let key = nullable_bytes(&mut record)?;
        let value = nullable_bytes(&mut record)?;
        let header_count = varint(&mut record)?;
        if header_count < 0 || header_count as usize > record.remaining() {
            return Err(RecordsError::Malformed("header count is impossible"));
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let key =
                nullable_bytes(&mut record)?.ok_or(RecordsError::Malformed("null header key"))?;
            headers.push((key, nullable_bytes(&mut record)?));
        }
        if record.has_remaining() {
            return Err(RecordsError::Malformed("bytes left over after a record"));
        }
        records.push(Record {
            encoded,
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
        });
    }
    if records.len() != expected.max(0) as usize {
        return Err(RecordsError::CountMismatch {
            expected,
            found: records.len(),
        });
    }
    Ok(records)
}

impl RecordBatch {
    /// An uncompressed batch keeping `template`'s header (offsets, timestamps, producer)
    /// but holding only `records`, as compaction leaves it. Offsets do not move.
    pub fn with_records(&self, records: &[Record]) -> RecordBatch {
        assert_eq!(
            self.compression(),
            Compression::None,
            "only uncompressed batches are rebuilt"
        );
        assert!(
            !records.is_empty(),
            "an empty batch is dropped, not rebuilt"
        );
        let body: usize = records.iter().map(|r| r.encoded.len()).sum();
        let mut buf = bytes::BytesMut::with_capacity(BATCH_HEADER_BYTES + body);
        buf.extend_from_slice(&self.as_bytes()[..BATCH_HEADER_BYTES]);
        for record in records {
            buf.extend_from_slice(&record.encoded);
        }
        let length = (buf.len() - crate::batch::LOG_OVERHEAD_BYTES) as i32;
        buf[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        buf[RECORD_COUNT_AT..RECORD_COUNT_AT + 4]
            .copy_from_slice(&(records.len() as i32).to_be_bytes());
        let crc = crc32c::crc32c(&buf[CRC_FROM..]);
        buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        RecordBatch::parse(buf.freeze())
            .expect("a batch rebuilt from valid records is valid")
            .0
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bytes::{BufMut, BytesMut};

    use super::*;
    use crate::batch::build::{batch, Record as NewRecord};

    /// Re-packs an uncompressed batch's records with `codec`, as a client would send them.
    fn compressed(plain: &RecordBatch, codec: Compression) -> RecordBatch {
        let section = &plain.as_bytes()[BATCH_HEADER_BYTES..];
        let packed: Vec<u8> = match codec {
            Compression::None => section.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(section).expect("gzip");
                e.finish().expect("gzip")
            }
            Compression::Snappy => {
                // xerial framing, as Java clients write it.
                let block = snap::raw::Encoder::new()
                    .compress_vec(section)
                    .expect("snappy");
                let mut out = XERIAL_MAGIC.to_vec();
                out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
                out
            }
            Compression::Lz4 => {
                // liblz4's own defaults (4 MiB blocks, a content checksum), unlike ours.
                let mut e = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
                e.write_all(section).expect("lz4");
                let (out, done) = e.finish();
                done.expect("lz4");
                out
            }
            Compression::Zstd => zstd::stream::encode_all(section, 1).expect("zstd"),
        };
        let codec_bits: i16 = match codec {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        };
        let mut buf = BytesMut::from(&plain.as_bytes()[..BATCH_HEADER_BYTES]);
        buf[LENGTH_AT..LENGTH_AT + 4]
            .copy_from_slice(&((BATCH_HEADER_BYTES - 12 + packed.len()) as i32).to_be_bytes());
        buf[crate::batch::ATTRIBUTES_AT..crate::batch::ATTRIBUTES_AT + 2]
            .copy_from_slice(&codec_bits.to_be_bytes());
        buf.put_slice(&packed);
        let crc = crc32c::crc32c(&buf[CRC_FROM..]);
        buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        RecordBatch::parse(buf.freeze())
            .expect("valid compressed batch")
            .0
    }

    fn sample() -> RecordBatch {
        let big = vec![b'z'; 3000];
        batch(
            1_000,
            &[
                NewRecord {
                    key: Some(b"k1"),
                    value: Some(b"v1"),
                    timestamp_delta: 0,
                },
                NewRecord {
                    key: None,
                    value: Some(&big),
                    timestamp_delta: 40 * 24 * 3600 * 1000,
                },
                NewRecord {
                    key: Some(b"tomb"),
                    value: None,
                    timestamp_delta: 7,
                },
            ],
        )
    }

    #[test]
    fn every_codec_decodes_to_the_same_records() {
        let plain = sample();
        let expected = plain.records().expect("plain");
        assert_eq!(expected.len(), 3);
        assert_eq!(expected[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(
            expected[1].timestamp_delta,
            40 * 24 * 3600 * 1000,
            "deltas past 24 days read as varlong"
        );
        assert_eq!(expected[2].value, None);
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = compressed(&plain, codec);
            assert_eq!(packed.compression(), codec);
            assert_eq!(packed.records().expect("decodes"), expected, "{codec:?}");
        }
    }

    #[test]
    fn a_batch_rebuilt_from_some_records_keeps_their_offsets() {
        let plain = sample();
        let records = plain.records().expect("decodes");
        let kept = plain.with_records(&[records[0].clone(), records[2].clone()]);
        assert_eq!(kept.record_count(), 2);
        assert_eq!(kept.last_offset_delta(), plain.last_offset_delta());
        assert_eq!(kept.base_timestamp(), plain.base_timestamp());
        let again = kept.records().expect("decodes");
        assert_eq!(
            again.iter().map(|r| r.offset_delta).collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert_eq!(again[0].key, records[0].key);
        assert_eq!(again[1].value, None);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let plain = sample();
        let bytes = plain.as_bytes();
        for cut in [
            BATCH_HEADER_BYTES + 1,
            BATCH_HEADER_BYTES + 5,
            bytes.len() - 3,
        ] {
            let mut buf = BytesMut::from(&bytes[..cut]);
            buf[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&((cut - 12) as i32).to_be_bytes());
            let crc = crc32c::crc32c(&buf[CRC_FROM..]);
            buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
            let cut_batch = RecordBatch::parse(buf.freeze())
                .expect("header still valid")
                .0;
            assert!(cut_batch.records().is_err(), "cut at {cut}");
        }
        let mut gz = BytesMut::from(&compressed(&plain, Compression::Gzip).as_bytes()[..]);
        let last = gz.len() - 10;
        gz[last] ^= 0xff;
        let crc = crc32c::crc32c(&gz[CRC_FROM..]);
        gz[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        let bad = RecordBatch::parse(gz.freeze()).expect("crc fixed").0;
        assert!(matches!(
            bad.records(),
            Err(RecordsError::Decompress { .. }) | Err(RecordsError::Malformed(_))
        ));
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn recompressing_changes_the_codec_and_nothing_a_reader_sees() {
        let plain = sample();
        let expected = plain.records().expect("plain");
        for from in CODECS {
            let source = compressed(&plain, from);
            for to in CODECS {
                for lvl in [
                    level::default_for(to),
                    *level_range(to).start(),
                    *level_range(to).end(),
                ] {
                    let again = source.recompressed(to, lvl).expect("recompresses");
                    assert_eq!(again.compression(), to, "{from:?} -> {to:?} at {lvl}");
                    assert_eq!(
                        again.records().expect("decodes"),
                        expected,
                        "{from:?} -> {to:?}"
                    );
                    assert_eq!(again.base_offset(), plain.base_offset());
                    assert_eq!(again.max_timestamp(), plain.max_timestamp());
                    assert_eq!(again.producer_id(), plain.producer_id());
                    assert_eq!(again.base_sequence(), plain.base_sequence());
                    assert_eq!(
                        again.attributes() & !CODEC_BITS,
                        plain.attributes() & !CODEC_BITS
                    );
                }
            }
        }
    }

    fn level_range(codec: Compression) -> std::ops::RangeInclusive<i32> {
        match codec {
            Compression::Gzip => level::GZIP,
            Compression::Lz4 => level::LZ4,
            Compression::Zstd => -5..=19,
            Compression::None | Compression::Snappy => 0..=0,
        }
    }

    #[test]
    fn higher_levels_compress_harder() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{{\"id\":{i},\"name\":\"user-{}\"}}", i % 977).into_bytes())
            .collect();
        for (codec, low, high) in [
            (Compression::Gzip, 1, 9),
            (Compression::Lz4, 1, 17),
            (Compression::Zstd, -5, 19),
        ] {
            let fast = compress_at(codec, low, &text).expect("compresses").len();
            let hard = compress_at(codec, high, &text).expect("compresses").len();
            assert!(
                hard < fast,
                "{codec:?}: level {high} gave {hard} bytes, level {low} {fast}"
            );
        }
    }

    #[test]
    fn a_damaged_batch_is_not_recompressed() {
        let plain = sample();
        // The last record cut short, the header's length and CRC made to agree.
        let cut = plain.as_bytes().len() - 3;
        let mut buf = BytesMut::from(&plain.as_bytes()[..cut]);
        buf[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&((cut - 12) as i32).to_be_bytes());
        let crc = crc32c::crc32c(&buf[CRC_FROM..]);
        buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        let cut_short = RecordBatch::parse(buf.freeze()).expect("header valid").0;
        assert!(matches!(
            cut_short.recompressed(Compression::Zstd, level::ZSTD_DEFAULT),
            Err(RecordsError::Malformed(_))
        ));
    }
}
