//! Record batches (format v2) the way a producer sends them: headers, producer id, epoch
//! and base sequence for idempotence, and any of Kafka's four compressions. The codec is
//! `runnel_protocol::batch::build`, the workspace's one batch writer; this module names
//! it for the client.

use bytes::Bytes;
use runnel_protocol::batch::build::encode;
pub use runnel_protocol::batch::build::{BatchOptions, NewRecord};
pub use runnel_protocol::batch::Compression;
pub use runnel_protocol::records::compress;

use super::error::KafkaError;

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

/// Encodes `records` as one v2 batch with base offset 0 (the broker assigns offsets),
/// with the one batch codec of `runnel-protocol`.
pub fn build_batch(options: BatchOptions, records: &[NewRecord]) -> Result<Bytes, KafkaError> {
    encode(options, records).map_err(|e| KafkaError::Config(e.to_string()))
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
