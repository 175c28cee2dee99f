//! Building record batches (format v2) the way a producer sends them: headers, producer
//! id, epoch and base sequence for idempotence, and any of Kafka's four compressions.

use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};
use runnel_protocol::batch::build::{put_bytes, put_varint};
pub use runnel_protocol::batch::Compression;
use runnel_protocol::batch::{BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};

use super::error::KafkaError;

/// The CRC-32C covers everything from the attributes on.
const CRC_FROM: usize = 21;
/// snappy-java's stream header: magic, version 1, minimum compatible version 1.
const XERIAL_HEADER: &[u8] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// snappy-java compresses in blocks of this many bytes.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// Parses a compression name as Kafka's `compression.type` spells it.
pub fn parse_compression(name: &str) -> Result<Compression, KafkaError> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "none" | "" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => {
            return Err(KafkaError::Config(format!(
                "unknown compression {other:?}; use none, gzip, snappy, lz4 or zstd"
            )))
        }
    })
}

fn codec_bits(c: Compression) -> i16 {
    match c {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

/// One record to put in a batch.
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

/// Encodes `records` as one v2 batch with base offset 0 (the broker assigns offsets).
/// The base timestamp is the first record's, as the Java client does.
pub fn build_batch(options: BatchOptions, records: &[NewRecord]) -> Result<Bytes, KafkaError> {
    let Some(first) = records.first() else {
        return Err(KafkaError::Config(
            "a batch holds at least one record".into(),
        ));
    };
    let count = i32::try_from(records.len())
        .map_err(|_| KafkaError::Config("too many records for one batch".into()))?;
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
    let mut buf = BytesMut::with_capacity(BATCH_HEADER_BYTES + packed.len());
    let length = i32::try_from(BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + packed.len())
        .map_err(|_| KafkaError::Config("batch over 2 GiB".into()))?;
    buf.put_i64(0);
    buf.put_i32(length);
    buf.put_i32(-1);
    buf.put_i8(2);
    buf.put_u32(0);
    buf.put_i16(codec_bits(options.compression));
    buf.put_i32(count - 1);
    buf.put_i64(base_timestamp);
    buf.put_i64(max_timestamp);
    buf.put_i64(options.producer_id);
    buf.put_i16(options.producer_epoch);
    buf.put_i32(options.base_sequence);
    buf.put_i32(count);
    buf.put_slice(&packed);
    let crc = crc32c::crc32c(&buf[CRC_FROM..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(buf.freeze())
}

/// Compresses a records section the way Kafka's clients do.
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, KafkaError> {
    let fail = |e: std::io::Error| KafkaError::Config(format!("{codec:?} compression failed: {e}"));
    Ok(match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 2),
                flate2::Compression::default(),
            );
            e.write_all(data).map_err(fail)?;
            e.finish().map_err(fail)?
        }
        Compression::Snappy => {
            // xerial framing as the Java client writes it; librdkafka and Java both read it.
            let mut out = Vec::with_capacity(XERIAL_HEADER.len() + data.len());
            out.extend_from_slice(XERIAL_HEADER);
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK_BYTES) {
                let packed = encoder
                    .compress_vec(block)
                    .map_err(|e| KafkaError::Config(format!("snappy compression failed: {e}")))?;
                out.extend_from_slice(&(packed.len() as u32).to_be_bytes());
                out.extend_from_slice(&packed);
            }
            out
        }
        Compression::Lz4 => {
            // Kafka reads LZ4 frames with independent 64 KiB blocks and no content size.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(
                info,
                Vec::with_capacity(data.len() / 2),
            );
            e.write_all(data).map_err(fail)?;
            e.finish()
                .map_err(|e| KafkaError::Config(format!("lz4 compression failed: {e}")))?
        }
        Compression::Zstd => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
    })
}

#[cfg(test)]
mod tests {
    use runnel_protocol::batch::RecordBatch;

    use super::*;

    fn sample() -> Vec<NewRecord> {
        let big = Bytes::from(vec![b'x'; 100_000]);
        vec![
            NewRecord {
                key: Some(Bytes::from_static(b"k1")),
                value: Some(Bytes::from_static(b"v1")),
                headers: vec![
                    ("trace".into(), Some(Bytes::from_static(b"abc"))),
                    ("empty".into(), None),
                ],
                timestamp_ms: 1_700_000_000_000,
            },
            NewRecord {
                key: None,
                value: Some(big),
                headers: vec![],
                timestamp_ms: 1_700_000_000_005,
            },
            NewRecord {
                key: Some(Bytes::from_static(b"tombstone")),
                value: None,
                headers: vec![],
                timestamp_ms: 1_699_999_999_990,
            },
        ]
    }

    #[test]
    fn every_codec_round_trips_through_the_protocol_decoder() {
        let records = sample();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let options = BatchOptions {
                producer_id: 42,
                producer_epoch: 3,
                base_sequence: 17,
                compression: codec,
            };
            let bytes = build_batch(options, &records).expect("builds");
            let (batch, rest) = RecordBatch::parse(bytes).expect("valid batch");
            assert!(rest.is_empty());
            assert_eq!(batch.compression(), codec);
            assert_eq!(batch.record_count(), 3);
            assert_eq!(batch.last_offset_delta(), 2);
            assert_eq!(batch.producer_id(), 42);
            assert_eq!(batch.producer_epoch(), 3);
            assert_eq!(batch.base_sequence(), 17);
            assert_eq!(batch.base_timestamp(), 1_700_000_000_000);
            assert_eq!(batch.max_timestamp(), 1_700_000_000_005);
            if codec != Compression::None {
                assert!(batch.size_bytes() < 10_000, "{codec:?} compresses");
            }
            let decoded = batch.records().expect("decodes");
            assert_eq!(decoded.len(), 3);
            for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
                assert_eq!(got.offset_delta, i as i32);
                assert_eq!(got.key, want.key, "{codec:?}");
                assert_eq!(got.value, want.value, "{codec:?}");
                assert_eq!(
                    batch.base_timestamp() + got.timestamp_delta,
                    want.timestamp_ms
                );
                let headers: Vec<(String, Option<Bytes>)> = got
                    .headers
                    .iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
                    .collect();
                assert_eq!(headers, want.headers);
            }
        }
    }

    #[test]
    fn snappy_uses_xerial_framing_and_lz4_a_frame() {
        let data = vec![7u8; 100_000];
        let snappy = compress(Compression::Snappy, &data).expect("snappy");
        assert!(snappy.starts_with(b"\x82SNAPPY\x00"));
        let lz4 = compress(Compression::Lz4, &data).expect("lz4");
        assert_eq!(&lz4[..4], &[0x04, 0x22, 0x4d, 0x18], "LZ4 frame magic");
        let zstd = compress(Compression::Zstd, &data).expect("zstd");
        assert_eq!(&zstd[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd frame magic");
    }

    #[test]
    fn compression_names_parse() {
        assert_eq!(parse_compression("LZ4").expect("lz4"), Compression::Lz4);
        assert!(parse_compression("brotli")
            .expect_err("unknown")
            .to_string()
            .contains("none, gzip"));
    }
}
