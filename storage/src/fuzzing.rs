//! Properties the fuzz targets check, shared with the tests that replay their corpus.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use runnel_protocol::batch::{RecordBatch, CRC_AT, CRC_FROM, LENGTH_AT};

use crate::disk::{Disk, MemDisk, OpenMode};
use crate::log::{LogConfig, PartitionLog};

/// Arbitrary bytes as a node frame body: decoding may fail, never panic, and whatever
/// decodes re-encodes within the limit and decodes to the same frame.
pub fn check_node_frame(data: &[u8]) {
    use runnel_protocol::node;
    if let Ok(frame) = node::decode_frame_body(Bytes::copy_from_slice(data)) {
        let wire = node::encode_frame(&frame).expect("a decoded frame re-encodes");
        let again =
            node::decode_frame_body(wire.slice(node::FRAME_PREFIX_BYTES..)).expect("round trip");
        assert_eq!(again, frame);
    }
}

/// Arbitrary bytes as a Kafka request frame (after the size prefix): decoding may fail,
/// never panics nor allocates far beyond the input, and whatever decodes re-encodes to a
/// request that decodes the same.
///
/// One exception is allowed: the crate keeps unknown tagged fields under `i32` tags and
/// drops those past `i32::MAX` when encoding, so such a request re-encodes to bytes it
/// cannot decode (fuzzing found it). The broker never re-encodes requests, so only
/// decoding matters there.
pub fn check_kafka_request(data: &[u8]) {
    // Every version the codec knows, a superset of what the broker serves.
    let every_version = |key: kafka::ApiKey| Some(key.valid_versions());
    use runnel_protocol::kafka;
    if let Ok(request) = kafka::decode_request(Bytes::copy_from_slice(data), every_version) {
        let wire = kafka::encode_request(&request.header, &request.body)
            .expect("a decoded request re-encodes");
        if let Ok(again) =
            kafka::decode_request(wire.slice(kafka::SIZE_PREFIX_BYTES..), every_version)
        {
            assert_eq!(again, request);
        }
    }
}

/// Whatever `data` is, parsing batches and decoding (and decompressing) their records
/// never panics, and what parses survives stamping.
pub fn check_batch_parsing(data: &[u8]) {
    if let Ok(batches) = RecordBatch::parse_all(Bytes::copy_from_slice(data)) {
        for batch in batches {
            if let Ok(records) = batch.records() {
                assert!(records.len() <= batch.record_count().max(0) as usize);
            }
            let stamped = batch.stamped(42, 7);
            let (again, rest) = RecordBatch::parse(stamped.as_bytes().clone())
                .expect("stamping keeps a batch valid");
            assert!(rest.is_empty());
            assert_eq!(again.base_offset(), 42);
        }
    }
}

/// `data` made into one batch with a correct length and CRC, so fuzzing reaches record
/// decoding and decompression instead of stopping at the checksum.
pub fn check_record_decoding(data: &[u8]) {
    if data.len() < runnel_protocol::batch::BATCH_HEADER_BYTES {
        return;
    }
    let mut fixed = data.to_vec();
    fixed[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&((data.len() - 12) as i32).to_be_bytes());
    fixed[16] = 2;
    let crc = crc32c::crc32c(&fixed[CRC_FROM..]);
    fixed[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    check_batch_parsing(&fixed);
}

/// `data` as the only segment of a partition, with no checkpoints (as after a crash):
/// opening never panics and yields a log whose every batch is valid and in order.
pub async fn check_recovery(data: &[u8]) {
    let disk = MemDisk::new(0);
    let dir = Path::new("/data/fuzz-0");
    disk.create_dir_all(dir).await.expect("mkdir");
    let file = disk
        .open(&dir.join("00000000000000000000.log"), OpenMode::CreateNew)
        .await
        .expect("create");
    file.write_at(0, data).await.expect("write");
    let log = PartitionLog::open(Arc::new(disk), dir, LogConfig::default(), 0)
        .await
        .expect("recovery copes with any bytes");
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let bytes = log.read(next, 1 << 20).await.expect("read below the end");
        let batches = RecordBatch::parse_all(bytes).expect("recovery leaves only valid batches");
        let last = batches
            .last()
            .expect("a read below the end returns a batch");
        assert!(last.last_offset() >= next);
        next = last.last_offset() + 1;
    }
    assert_eq!(next, log.log_end_offset());
}
