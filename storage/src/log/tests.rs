use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use runnel_protocol::batch::build::{batch, Record};
use runnel_protocol::batch::RecordBatch;

use super::*;
use crate::disk::{DiskFaults, MemDisk, OpenMode};
use crate::log::segment;

fn sample(records: usize, value_bytes: usize, timestamp: i64) -> RecordBatch {
    let value = vec![b'x'; value_bytes];
    let records: Vec<Record<'_>> = (0..records)
        .map(|i| Record {
            key: None,
            value: Some(&value),
            timestamp_delta: i as i64,
        })
        .collect();
    batch(timestamp, &records)
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

async fn open(disk: &MemDisk, config: LogConfig) -> PartitionLog {
    PartitionLog::open(Arc::new(disk.clone()), Path::new("/data/t-0"), config, 0)
        .await
        .expect("open")
}

fn batches_of(bytes: Bytes) -> Vec<RecordBatch> {
    RecordBatch::parse_all(bytes).expect("the log serves valid batches")
}

#[tokio::test]
async fn append_assigns_offsets_rolls_and_reads_back() {
    let disk = MemDisk::new(1);
    let mut log = open(&disk, small_segments()).await;
    for i in 0..20 {
        let info = log
            .append(&[sample(3, 40, 1000 + i)], 5, 0)
            .await
            .expect("append");
        assert_eq!(info.first_offset, i * 3);
        assert_eq!(info.last_offset, i * 3 + 2);
    }
    assert_eq!(log.log_end_offset(), 60);
    assert!(log.segment_count() > 3, "1 KiB segments roll");
    let all = batches_of(log.read(0, 1 << 20).await.expect("read"));
    assert!(!all.is_empty());
    assert_eq!(all[0].base_offset(), 0);
    assert_eq!(all[0].partition_leader_epoch(), 5);
    // From the middle of a batch: the whole batch holding the offset comes first.
    let mid = batches_of(log.read(31, 1).await.expect("read"));
    assert_eq!(mid.len(), 1, "at least one batch even past max_bytes");
    assert_eq!(mid[0].base_offset(), 30);
    // Walk the whole log segment by segment.
    let mut next = 0;
    while next < log.log_end_offset() {
        let got = batches_of(log.read(next, 300).await.expect("read"));
        assert_eq!(got[0].base_offset(), next);
        next = got.last().expect("non-empty").last_offset() + 1;
    }
    assert!(log.read(60, 100).await.expect("at the end").is_empty());
    assert!(matches!(
        log.read(61, 100).await,
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Batch i holds records at 1000+i, 1000+i+1 and 1000+i+2 (offsets 3i to 3i+2): the
    // first record at 1010 or later is batch 8's last, the first at 1009 batch 7's last.
    let lookup = |ts| log.offset_for_timestamp(ts);
    assert_eq!(lookup(1010).await.expect("lookup"), Some((26, 1010)));
    assert_eq!(lookup(1009).await.expect("lookup"), Some((23, 1009)));
    assert_eq!(lookup(0).await.expect("lookup"), Some((0, 1000)));
    assert_eq!(log.offset_for_timestamp(5000).await.expect("lookup"), None);
}

#[tokio::test]
async fn flushed_data_survives_a_crash_and_the_torn_tail_is_cut() {
    for seed in 0..20 {
        let disk = MemDisk::new(seed);
        let mut log = open(&disk, small_segments()).await;
        for i in 0..10 {
            log.append(&[sample(2, 30, i)], 1, 0).await.expect("append");
        }
        log.flush().await.expect("flush");
        assert_eq!(log.recovery_point(), 20);
        for i in 10..20 {
            log.append(&[sample(2, 30, i)], 1, 0).await.expect("append");
        }
        let before = read_all(&log).await;
        assert_eq!(before.len(), 20);
        disk.crash(&mut StdRng::seed_from_u64(seed));
        let log = open(&disk, small_segments()).await;
        let end = log.log_end_offset();
        assert!((20..=40).contains(&end), "seed {seed}: end {end}");
        let after = read_all(&log).await;
        assert!(after.len() <= before.len());
        for (a, b) in after.iter().zip(&before) {
            assert_eq!(
                a.as_bytes(),
                b.as_bytes(),
                "seed {seed}: recovery changed a batch"
            );
        }
    }
}

/// A log reopened over writes that never reached the disk (their process or actor died
/// before the fsync, or the fsync failed) serves them; the next flush must make them
/// durable, or a crash takes back what was served.
#[tokio::test]
async fn what_a_reopened_log_serves_past_its_recovery_point_is_synced_by_the_next_flush() {
    for seed in 0..20 {
        let disk = MemDisk::new(seed);
        let mut log = open(&disk, LogConfig::default()).await;
        for i in 0..10 {
            log.append(&[sample(2, 30, i)], 1, 0).await.expect("append");
        }
        drop(log);
        let mut log = open(&disk, LogConfig::default()).await;
        assert_eq!(
            log.log_end_offset(),
            20,
            "seed {seed}: the page cache still holds it"
        );
        assert!(
            log.recovery_point() < 20,
            "seed {seed}: recovery point {}",
            log.recovery_point()
        );
        log.flush().await.expect("flush");
        assert_eq!(log.recovery_point(), 20);
        disk.crash(&mut StdRng::seed_from_u64(seed));
        let log = open(&disk, LogConfig::default()).await;
        assert_eq!(
            log.log_end_offset(),
            20,
            "seed {seed}: the flush after reopening held"
        );
    }
}

/// A truncation walks batch headers to find its cut; the base offset is outside the CRC,
/// so a bit flipped on a read must neither move the cut nor panic: it fails, or it cuts
/// exactly where asked.
#[tokio::test]
async fn bits_flipped_on_read_never_move_a_truncation() {
    for seed in 0..30 {
        let disk = MemDisk::new(seed);
        let mut log = open(&disk, LogConfig::default()).await;
        for i in 0..20 {
            log.append(&[sample(1, 30, i)], 1, 0).await.expect("append");
        }
        log.flush().await.expect("flush");
        disk.set_faults(DiskFaults {
            read_flip_probability: 0.3,
            ..Default::default()
        });
        let result = log.truncate_to(12).await;
        disk.set_faults(DiskFaults::default());
        match result {
            Ok(end) => assert_eq!(end, 12, "seed {seed}: the cut is where it was asked"),
            Err(_) => assert_eq!(log.log_end_offset(), 20, "seed {seed}: nothing was cut"),
        }
        drop(log);
        let log = open(&disk, LogConfig::default()).await;
        assert!(
            [12, 20].contains(&log.log_end_offset()),
            "seed {seed}: end {} after reopening",
            log.log_end_offset()
        );
    }
}

#[tokio::test]
async fn bits_flipped_on_read_during_recovery_never_cut_durable_batches() {
    for seed in 0..30 {
        let disk = MemDisk::new(seed);
        let mut log = open(&disk, small_segments()).await;
        for i in 0..30 {
            log.append(&[sample(2, 30, i)], 1, 0).await.expect("append");
        }
        log.flush().await.expect("flush");
        let before = read_all(&log).await;
        drop(log);
        disk.crash(&mut StdRng::seed_from_u64(seed));
        // Half of all reads flip a bit while the log recovers, as the simulator's nemesis
        // does; recovery scans every segment's tail without trusting a single read.
        disk.set_faults(DiskFaults {
            read_flip_probability: 0.5,
            ..Default::default()
        });
        let log = open(&disk, small_segments()).await;
        disk.set_faults(DiskFaults::default());
        assert_eq!(
            log.log_end_offset(),
            60,
            "seed {seed}: durable batches were cut"
        );
        assert_eq!(read_all(&log).await.len(), before.len());
    }
}

#[tokio::test]
async fn reads_never_serve_a_misread_base_offset() {
    let disk = MemDisk::new(11);
    let mut log = open(&disk, LogConfig::default()).await;
    for i in 0..20 {
        log.append(&[sample(3, 40, i)], 0, 0).await.expect("append");
    }
    log.flush().await.expect("flush");
    disk.set_faults(DiskFaults {
        read_flip_probability: 0.3,
        ..Default::default()
    });
    let mut served = 0;
    for _ in 0..300 {
        // A read may fail outright; what it serves must have true base offsets.
        let Ok(bytes) = log.read(0, 1 << 20).await else {
            continue;
        };
        served += 1;
        let mut position = 0;
        let mut expected = 0i64;
        while position + 12 <= bytes.len() {
            let base = i64::from_be_bytes(bytes[position..position + 8].try_into().expect("8"));
            let length =
                i32::from_be_bytes(bytes[position + 8..position + 12].try_into().expect("4"));
            assert_eq!(base, expected, "a misread base offset was served");
            expected += 3;
            position += 12 + length as usize;
        }
    }
    disk.set_faults(DiskFaults::default());
    assert!(served > 250, "reads succeed despite flips: {served} of 300");
}

#[tokio::test]
async fn a_failed_append_leaves_no_gap_in_offsets() {
    let disk = MemDisk::new(9);
    let mut log = open(&disk, LogConfig::default()).await;
    log.append(&[sample(2, 30, 0)], 0, 0).await.expect("append");
    disk.set_faults(DiskFaults {
        full: true,
        ..Default::default()
    });
    for i in 0..3 {
        assert!(log.append(&[sample(2, 30, i)], 0, 0).await.is_err());
    }
    disk.set_faults(DiskFaults::default());
    let info = log.append(&[sample(2, 30, 9)], 0, 0).await.expect("append");
    assert_eq!(info.first_offset, 2, "failed appends took no offsets");
    let bases: Vec<i64> = read_all(&log)
        .await
        .iter()
        .map(|b| b.base_offset())
        .collect();
    assert_eq!(bases, vec![0, 2]);
}

#[tokio::test]
async fn a_flipped_bit_in_the_unflushed_tail_is_cut_not_served() {
    let disk = MemDisk::new(3);
    let mut log = open(&disk, LogConfig::default()).await;
    for i in 0..5 {
        log.append(&[sample(1, 100, i)], 0, 0)
            .await
            .expect("append");
    }
    log.flush().await.expect("flush");
    let second = batches_of(log.read(1, 1).await.expect("read"))[0].size_bytes();
    drop(log);
    // Reopen with the recovery point pulled back, then flip a byte in batch 1.
    let dir = Path::new("/data/t-0");
    checkpoint::write_offset(&disk, dir, RECOVERY_POINT_CHECKPOINT, 0)
        .await
        .expect("checkpoint");
    let file = disk
        .open(&dir.join(segment::file_name(0, ".log")), OpenMode::Existing)
        .await
        .expect("open");
    let at = second as u64 + 70;
    let byte = file.read_at(at, 1).await.expect("read")[0];
    file.write_at(at, &[byte ^ 0x01]).await.expect("write");
    let log = open(&disk, LogConfig::default()).await;
    assert_eq!(
        log.log_end_offset(),
        1,
        "everything from the corrupt batch on is cut"
    );
}

#[tokio::test]
async fn a_damaged_index_is_rebuilt() {
    let disk = MemDisk::new(4);
    let mut log = open(&disk, small_segments()).await;
    for i in 0..8 {
        log.append(&[sample(2, 30, i)], 0, 0).await.expect("append");
    }
    log.flush().await.expect("flush");
    drop(log);
    let index = disk
        .open(
            &Path::new("/data/t-0").join(segment::file_name(0, ".index")),
            OpenMode::Existing,
        )
        .await
        .expect("index exists");
    index.truncate(3).await.expect("damage it");
    let log = open(&disk, small_segments()).await;
    assert_eq!(log.log_end_offset(), 16);
    assert_eq!(
        batches_of(log.read(9, 1).await.expect("read"))[0].base_offset(),
        8
    );
}

#[tokio::test]
async fn truncation_epochs_retention_and_delete_records() {
    let disk = MemDisk::new(5);
    let mut log = open(&disk, small_segments()).await;
    for epoch in [1, 1, 2, 2, 3, 3, 3, 4] {
        log.append(&[sample(2, 100, 1_000)], epoch, 0)
            .await
            .expect("append");
    }
    assert_eq!(
        log.leader_epochs().entries(),
        &[(1, 0), (2, 4), (3, 8), (4, 14)]
    );
    assert_eq!(
        log.leader_epochs().end_offset_for(2, log.log_end_offset()),
        Some((2, 8))
    );

    assert_eq!(
        log.truncate_to(9).await.expect("truncate"),
        8,
        "cut at the batch holding 9"
    );
    assert_eq!(log.leader_epochs().entries(), &[(1, 0), (2, 4)]);
    drop(log);
    let mut log = open(&disk, small_segments()).await;
    assert_eq!(log.log_end_offset(), 8, "truncation is durable");
    assert_eq!(log.leader_epochs().entries(), &[(1, 0), (2, 4)]);

    for _ in 0..10 {
        log.append(&[sample(2, 100, 2_000)], 5, 0)
            .await
            .expect("append");
    }
    let segments = log.segment_count();
    log.config.retention_bytes = Some(600);
    let deleted = log.apply_retention(0).await.expect("retention");
    assert!(deleted > 0 && log.segment_count() < segments);
    assert!(log.size_bytes() - log.segments.values().next().expect("one").size_bytes < 600);
    let start = log.log_start_offset();
    assert!(matches!(
        log.read(start - 1, 10).await,
        Err(LogError::OffsetOutOfRange { .. })
    ));

    log.config.retention_bytes = None;
    log.config.retention_ms = Some(1_000);
    log.force_roll(0).await.expect("roll");
    assert_eq!(
        log.apply_retention(2_900).await.expect("retention"),
        0,
        "records of 2001 are not a second old at 2900"
    );
    assert!(log.apply_retention(3_500).await.expect("retention") > 0);
    assert_eq!(
        log.log_start_offset(),
        log.log_end_offset(),
        "every closed segment expired"
    );

    log.append(&[sample(1, 10, 3_000)], 5, 0)
        .await
        .expect("append");
    let end = log.log_end_offset();
    assert_eq!(
        log.delete_records_before(end + 10).await.expect("delete"),
        end,
        "never past the end"
    );
    drop(log);
    let log = open(&disk, small_segments()).await;
    assert_eq!(
        log.log_start_offset(),
        end,
        "the log start offset is durable"
    );
}

#[tokio::test]
async fn flush_policies_follow_kafka_settings() {
    let disk = MemDisk::new(6);
    let config = LogConfig {
        flush_messages: Some(4),
        flush_ms: Some(100),
        ..LogConfig::default()
    };
    let mut log = open(&disk, config).await;
    log.append(&[sample(3, 10, 0)], 0, 0).await.expect("append");
    assert_eq!(log.recovery_point(), 0);
    log.append(&[sample(1, 10, 0)], 0, 0).await.expect("append");
    assert_eq!(log.recovery_point(), 4, "flush.messages reached");
    log.append(&[sample(1, 10, 0)], 0, 1_000)
        .await
        .expect("append");
    assert!(!log.maybe_flush(1_050).await.expect("not yet"));
    assert!(log.maybe_flush(1_100).await.expect("due"));
    assert_eq!(log.recovery_point(), 5);
}

#[tokio::test]
async fn a_batch_over_max_message_bytes_is_refused() {
    let disk = MemDisk::new(7);
    let mut log = open(
        &disk,
        LogConfig {
            max_message_bytes: 200,
            ..LogConfig::default()
        },
    )
    .await;
    let err = log
        .append(&[sample(1, 500, 0)], 0, 0)
        .await
        .expect_err("too large");
    assert!(matches!(err, LogError::BatchTooLarge { .. }));
    assert_eq!(log.log_end_offset(), 0, "nothing was written");
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8, u8),
    Flush,
    Truncate(u8),
    DeleteRecords(u8),
    Roll,
    Crash(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..4, 1u8..120).prop_map(|(n, size)| Op::Append(n, size)),
        2 => Just(Op::Flush),
        1 => any::<u8>().prop_map(Op::Truncate),
        1 => any::<u8>().prop_map(Op::DeleteRecords),
        1 => Just(Op::Roll),
        2 => any::<u64>().prop_map(Op::Crash),
    ]
}

async fn read_all(log: &PartitionLog) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let got = batches_of(log.read(next, 700).await.expect("read"));
        next = got
            .last()
            .expect("a read below the end returns a batch")
            .last_offset()
            + 1;
        out.extend(got);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Against a model: after any crash the log is a prefix of what was appended, holds
    /// everything flushed, and nothing is changed or invented.
    #[test]
    fn the_log_keeps_what_was_synced_and_invents_nothing(ops in prop::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let disk = MemDisk::new(9);
            let config = LogConfig { segment_bytes: 600, index_interval_bytes: 100, ..LogConfig::default() };
            let mut log = open(&disk, config.clone()).await;
            // The model: the batches from the log start on, and the end offset known durable.
            let mut model: Vec<RecordBatch> = Vec::new();
            let mut durable_end = 0i64;
            let mut ts = 0i64;
            for op in ops {
                match op {
                    Op::Append(n, size) => {
                        ts += 1;
                        log.append(&[sample(n.into(), size.into(), ts)], 1, 0).await.expect("append");
                    }
                    Op::Flush => {
                        log.flush().await.expect("flush");
                        durable_end = log.log_end_offset();
                    }
                    Op::Truncate(to) => {
                        let to = i64::from(to) % (log.log_end_offset() + 1);
                        let end = log.truncate_to(to).await.expect("truncate");
                        durable_end = durable_end.min(end);
                    }
                    Op::DeleteRecords(to) => {
                        let to = i64::from(to) % (log.log_end_offset() + 1);
                        log.delete_records_before(to).await.expect("delete records");
                    }
                    Op::Roll => log.force_roll(0).await.expect("roll"),
                    Op::Crash(seed) => {
                        let start = log.log_start_offset();
                        drop(log);
                        disk.crash(&mut StdRng::seed_from_u64(seed));
                        log = open(&disk, config.clone()).await;
                        prop_assert_eq!(log.log_start_offset(), start, "the log start offset is durable");
                        let after = read_all(&log).await;
                        let by_offset: std::collections::BTreeMap<i64, &RecordBatch> =
                            model.iter().map(|b| (b.base_offset(), b)).collect();
                        for batch in &after {
                            let expected = by_offset.get(&batch.base_offset());
                            prop_assert!(expected.is_some(), "batch at {} was invented", batch.base_offset());
                            prop_assert_eq!(batch.as_bytes(), expected.expect("checked").as_bytes(), "a batch changed");
                        }
                        let synced_end = durable_end.max(log.log_start_offset());
                        prop_assert!(log.log_end_offset() >= synced_end, "lost synced data: end {} < {}", log.log_end_offset(), synced_end);
                        // What survived a crash is on disk for good.
                        durable_end = log.log_end_offset();
                    }
                }
                model = read_all(&log).await;
            }
            Ok(())
        })?;
    }
}

/// A crash at any step of an atomic checkpoint write leaves the old value or the new one,
/// never a damaged or missing checkpoint.
#[tokio::test]
async fn a_crash_inside_a_checkpoint_write_keeps_the_old_or_the_new_value() {
    let dir = Path::new("/data/cp");
    for crash_after_step in 0..5 {
        for seed in 0..8 {
            let disk = MemDisk::new(seed);
            disk.create_dir_all(dir).await.expect("mkdir");
            checkpoint::write_offset(&disk, dir, "cp", 10)
                .await
                .expect("first write");
            // The steps of checkpoint::write, with a crash after `crash_after_step` of them.
            let tmp = dir.join("cp.tmp");
            let steps = async {
                let file = disk.open(&tmp, OpenMode::Create).await?;
                if crash_after_step == 0 {
                    return Ok(());
                }
                file.truncate(0).await?;
                file.write_at(0, b"0\n1\n20\n").await?;
                if crash_after_step == 1 {
                    return Ok(());
                }
                file.sync_data().await?;
                if crash_after_step == 2 {
                    return Ok(());
                }
                disk.rename(&tmp, &dir.join("cp")).await?;
                if crash_after_step == 3 {
                    return Ok(());
                }
                disk.sync_dir(dir).await
            };
            let result: Result<(), crate::disk::DiskError> = steps.await;
            result.expect("steps");
            disk.crash(&mut StdRng::seed_from_u64(seed));
            let value = checkpoint::read_offset(&disk, dir, "cp")
                .await
                .expect("read");
            let expected: &[Option<i64>] = if crash_after_step == 4 {
                &[Some(20)]
            } else {
                &[Some(10), Some(20)]
            };
            assert!(
                expected.contains(&value),
                "step {crash_after_step} seed {seed}: {value:?}"
            );
            // Opening a log there cleans the leftover temporary file.
            PartitionLog::open(Arc::new(disk.clone()), dir, LogConfig::default(), 0)
                .await
                .expect("open");
            assert!(
                !disk.exists(&tmp).await.expect("exists"),
                "leftover .tmp removed"
            );
        }
    }
}

fn keyed(pairs: &[(&str, Option<&str>)], timestamp: i64) -> RecordBatch {
    let records: Vec<Record<'_>> = pairs
        .iter()
        .map(|(k, v)| Record {
            key: Some(k.as_bytes()),
            value: v.map(str::as_bytes),
            timestamp_delta: 0,
        })
        .collect();
    batch(timestamp, &records)
}

/// (offset, key, value) of every record in the log, in order.
async fn key_values(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    for batch in read_all(log).await {
        for r in batch.records().expect("decodes") {
            let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
            out.push((
                batch.base_offset() + i64::from(r.offset_delta),
                text(r.key.as_ref().expect("keyed")),
                r.value.as_ref().map(text),
            ));
        }
    }
    out
}

fn compacted() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::COMPACT,
        delete_retention_ms: 1_000,
        segment_bytes: 300,
        ..LogConfig::default()
    }
}

#[tokio::test]
async fn compaction_keeps_the_last_value_per_key_at_its_offset() {
    let disk = MemDisk::new(20);
    let mut log = open(&disk, compacted()).await;
    log.append(&[keyed(&[("a", Some("a1")), ("b", Some("b1"))], 100)], 0, 0)
        .await
        .expect("append");
    log.append(&[keyed(&[("a", Some("a2")), ("c", Some("c1"))], 100)], 0, 0)
        .await
        .expect("append");
    log.append(&[keyed(&[("b", None)], 5_000)], 0, 0)
        .await
        .expect("tombstone for b");
    log.append(&[keyed(&[("c", Some("c2")), ("d", Some("d1"))], 100)], 0, 0)
        .await
        .expect("append");
    log.force_roll(0).await.expect("roll");
    log.append(&[keyed(&[("a", Some("a3"))], 100)], 0, 0)
        .await
        .expect("into the active segment");
    assert!(log.segment_count() >= 3);

    let stats = log.compact(5_500).await.expect("compact");
    assert!(stats.segments_rewritten >= 1);
    // a2 stays: a3 is in the active segment, which compaction neither cleans nor reads.
    let expected = vec![
        (2, "a".to_string(), Some("a2".to_string())),
        (4, "b".to_string(), None),
        (5, "c".to_string(), Some("c2".to_string())),
        (6, "d".to_string(), Some("d1".to_string())),
        (7, "a".to_string(), Some("a3".to_string())),
    ];
    assert_eq!(
        key_values(&log).await,
        expected,
        "the young tombstone stays"
    );
    assert_eq!(stats.records_removed, 3);

    // Once delete.retention.ms has passed, the tombstone goes too; offsets never move.
    log.compact(6_500).await.expect("compact");
    let after: Vec<i64> = key_values(&log).await.iter().map(|kv| kv.0).collect();
    assert_eq!(after, vec![2, 5, 6, 7]);
    assert_eq!(log.log_end_offset(), 8);
    drop(log);
    let log = open(&disk, compacted()).await;
    let reopened: Vec<i64> = key_values(&log).await.iter().map(|kv| kv.0).collect();
    assert_eq!(reopened, vec![2, 5, 6, 7], "the swap is durable");
}

#[tokio::test]
async fn delete_policy_logs_are_never_compacted_and_compact_logs_never_expire() {
    let disk = MemDisk::new(21);
    let mut log = open(
        &disk,
        LogConfig {
            segment_bytes: 200,
            ..LogConfig::default()
        },
    )
    .await;
    for _ in 0..4 {
        log.append(&[keyed(&[("k", Some("v"))], 0)], 0, 0)
            .await
            .expect("append");
    }
    assert_eq!(
        log.compact(0).await.expect("compact"),
        CompactionStats::default()
    );
    assert_eq!(key_values(&log).await.len(), 4);
    log.config.cleanup_policy = CleanupPolicy::COMPACT;
    log.config.retention_ms = Some(1);
    assert_eq!(log.apply_retention(1_000_000).await.expect("retention"), 0);
    assert_eq!(
        CleanupPolicy::parse("compact,delete"),
        Some(CleanupPolicy {
            delete: true,
            compact: true
        })
    );
    assert_eq!(CleanupPolicy::parse("compact, nope"), None);
}

#[tokio::test]
async fn an_interrupted_swap_is_undone_or_completed_on_open() {
    let disk = MemDisk::new(22);
    let mut log = open(&disk, compacted()).await;
    log.append(&[keyed(&[("a", Some("1"))], 0)], 0, 0)
        .await
        .expect("append");
    log.append(&[keyed(&[("a", Some("2"))], 0)], 0, 0)
        .await
        .expect("append");
    log.force_roll(0).await.expect("roll");
    log.flush().await.expect("flush");
    let before = key_values(&log).await;
    drop(log);
    let dir = Path::new("/data/t-0");

    // Crashed while writing the cleaned copy: it is dropped and the old segment stands.
    let cleaned = dir.join(format!("{}.cleaned", segment::file_name(0, ".log")));
    let junk = disk.open(&cleaned, OpenMode::Create).await.expect("create");
    junk.write_at(0, b"half written").await.expect("write");
    disk.sync_dir(dir).await.expect("sync");
    let log = open(&disk, compacted()).await;
    assert_eq!(key_values(&log).await, before);
    assert!(!disk.exists(&cleaned).await.expect("exists"));
    drop(log);

    // Crashed after the .swap was made durable: the swap completes, indexes are rebuilt.
    let swap = dir.join(format!("{}.swap", segment::file_name(0, ".log")));
    let only_last = keyed(&[("a", Some("2"))], 0).stamped(1, 0);
    let file = disk.open(&swap, OpenMode::Create).await.expect("create");
    file.write_at(0, only_last.as_bytes()).await.expect("write");
    file.sync_data().await.expect("fsync");
    disk.sync_dir(dir).await.expect("sync");
    let log = open(&disk, compacted()).await;
    assert_eq!(
        key_values(&log).await,
        vec![(1, "a".to_string(), Some("2".to_string()))]
    );
    assert!(!disk.exists(&swap).await.expect("exists"));
    assert_eq!(
        batches_of(log.read(1, 10).await.expect("read"))[0].base_offset(),
        1
    );
}

#[tokio::test]
async fn cleaning_runs_beside_appends_and_skips_segments_that_changed() {
    let disk = MemDisk::new(23);
    let mut log = open(&disk, compacted()).await;
    for v in ["1", "2", "3", "4", "5", "6"] {
        log.append(&[keyed(&[("k", Some(v))], 0)], 0, 0)
            .await
            .expect("append");
    }
    log.force_roll(0).await.expect("roll");
    let closed_before = log.segment_count() - 1;
    assert!(
        closed_before >= 2,
        "300-byte segments hold a few batches each"
    );

    // The slow part runs with no hold on the log; appends and reads carry on meanwhile.
    let input = log
        .compaction_input()
        .expect("a compacted topic with closed segments");
    let plan = input.clean(0).await.expect("clean");
    log.append(&[keyed(&[("k", Some("7"))], 0)], 0, 0)
        .await
        .expect("append during cleaning");
    assert_eq!(
        key_values(&log).await.len(),
        7,
        "nothing is swapped before apply"
    );
    let stats = log.apply_compaction(plan, 0).await.expect("apply");
    assert_eq!(stats.segments_rewritten, closed_before);
    let left: Vec<i64> = key_values(&log).await.iter().map(|kv| kv.0).collect();
    assert_eq!(
        left,
        vec![5, 6],
        "the newest closed value and the active segment's"
    );

    // A segment truncated between cleaning and applying keeps what it has now.
    let disk = MemDisk::new(24);
    let mut log = open(&disk, compacted()).await;
    for v in ["1", "2", "3", "4"] {
        log.append(&[keyed(&[("k", Some(v))], 0)], 0, 0)
            .await
            .expect("append");
    }
    log.force_roll(0).await.expect("roll");
    let plan = log
        .compaction_input()
        .expect("input")
        .clean(0)
        .await
        .expect("clean");
    log.truncate_to(1).await.expect("truncate");
    let stats = log.apply_compaction(plan, 0).await.expect("apply");
    assert_eq!(
        stats.segments_rewritten, 0,
        "the truncated segment changed under the plan"
    );
    assert_eq!(
        key_values(&log).await,
        vec![(0, "k".to_string(), Some("1".to_string()))]
    );
    let leftovers = disk.list_dir(Path::new("/data/t-0")).await.expect("list");
    assert!(
        !leftovers.iter().any(|n| n.ends_with(".cleaned")),
        "{leftovers:?}"
    );
}

/// A disk whose log files misread one bit the same way in `alike` reads, after `skip`
/// reads of that bit that are left alone: the rare case of two reads flipped alike, which
/// `read_agreed` alone takes for the truth, or a flip that only a later read of the same
/// bytes sees.
#[derive(Debug, Clone)]
struct AlikeFlips {
    inner: MemDisk,
    bit: u64,
    skip: Arc<std::sync::atomic::AtomicUsize>,
    alike: Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Debug)]
struct AlikeFlipsFile {
    inner: Arc<dyn crate::disk::DiskFile>,
    bit: u64,
    skip: Arc<std::sync::atomic::AtomicUsize>,
    alike: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl crate::disk::Disk for AlikeFlips {
    async fn open(
        &self,
        path: &Path,
        mode: OpenMode,
    ) -> crate::disk::DiskResult<Arc<dyn crate::disk::DiskFile>> {
        let inner = self.inner.open(path, mode).await?;
        if path.extension().is_some_and(|e| e == "log") {
            return Ok(Arc::new(AlikeFlipsFile {
                inner,
                bit: self.bit,
                skip: self.skip.clone(),
                alike: self.alike.clone(),
            }));
        }
        Ok(inner)
    }
    async fn rename(&self, from: &Path, to: &Path) -> crate::disk::DiskResult<()> {
        self.inner.rename(from, to).await
    }
    async fn remove(&self, path: &Path) -> crate::disk::DiskResult<()> {
        self.inner.remove(path).await
    }
    async fn create_dir_all(&self, path: &Path) -> crate::disk::DiskResult<()> {
        self.inner.create_dir_all(path).await
    }
    async fn remove_dir(&self, path: &Path) -> crate::disk::DiskResult<()> {
        self.inner.remove_dir(path).await
    }
    async fn list_dir(&self, path: &Path) -> crate::disk::DiskResult<Vec<String>> {
        self.inner.list_dir(path).await
    }
    async fn sync_dir(&self, path: &Path) -> crate::disk::DiskResult<()> {
        self.inner.sync_dir(path).await
    }
    async fn exists(&self, path: &Path) -> crate::disk::DiskResult<bool> {
        self.inner.exists(path).await
    }
}

#[async_trait::async_trait]
impl crate::disk::DiskFile for AlikeFlipsFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    async fn size_bytes(&self) -> crate::disk::DiskResult<u64> {
        self.inner.size_bytes().await
    }
    async fn write_at(&self, offset_bytes: u64, data: &[u8]) -> crate::disk::DiskResult<()> {
        self.inner.write_at(offset_bytes, data).await
    }
    async fn append(&self, data: &[u8]) -> crate::disk::DiskResult<u64> {
        self.inner.append(data).await
    }
    async fn read_at(&self, offset_bytes: u64, len_bytes: usize) -> crate::disk::DiskResult<Bytes> {
        let bytes = self.inner.read_at(offset_bytes, len_bytes).await?;
        let byte = self.bit / 8;
        let covers = (offset_bytes..offset_bytes + bytes.len() as u64).contains(&byte);
        let take_one = |count: &std::sync::atomic::AtomicUsize| {
            count
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok()
        };
        let flip = covers && !take_one(&self.skip) && take_one(&self.alike);
        if !flip {
            return Ok(bytes);
        }
        let mut flipped = bytes.to_vec();
        flipped[(byte - offset_bytes) as usize] ^= 1 << (self.bit % 8);
        Ok(Bytes::from(flipped))
    }
    async fn truncate(&self, len_bytes: u64) -> crate::disk::DiskResult<()> {
        self.inner.truncate(len_bytes).await
    }
    async fn sync_data(&self) -> crate::disk::DiskResult<()> {
        self.inner.sync_data().await
    }
}

#[tokio::test]
async fn recovery_rereads_a_batch_before_cutting_it() {
    let memory = MemDisk::new(5);
    let mut log = open(&memory, LogConfig::default()).await;
    for i in 0..5 {
        log.append(&[sample(2, 30, i)], 1, 0).await.expect("append");
    }
    log.flush().await.expect("flush");
    let third_batch_bytes = read_all(&log).await[..2]
        .iter()
        .map(|b| b.size_bytes() as u64)
        .sum::<u64>();
    drop(log);
    // A bit of the third batch's CRC (bytes 17..21 of a batch) misreads alike, in as many
    // reads in a row as the simulator once produced: two.
    let disk = AlikeFlips {
        inner: memory.clone(),
        bit: (third_batch_bytes + 17) * 8 + 5,
        skip: Arc::default(),
        alike: Arc::new(std::sync::atomic::AtomicUsize::new(2)),
    };
    let (segment, cut) = segment::Segment::open(&disk, Path::new("/data/t-0"), 0, 4096, true, 0)
        .await
        .expect("open");
    assert!(!cut, "a batch that reads well again is not cut");
    assert_eq!(segment.next_offset, 10);
    // A batch that keeps failing its checks is cut, as before.
    let disk = AlikeFlips {
        inner: memory.clone(),
        bit: (third_batch_bytes + 17) * 8 + 5,
        skip: Arc::default(),
        alike: Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX)),
    };
    let (segment, cut) = segment::Segment::open(&disk, Path::new("/data/t-0"), 0, 4096, true, 0)
        .await
        .expect("open");
    assert!(cut);
    assert_eq!(segment.next_offset, 4);
}

#[tokio::test]
async fn a_compacted_log_never_serves_a_read_past_a_misread_first_batch() {
    // The group workload's seed 77238: a restarted broker replayed `__consumer_offsets`
    // (compacted) from offset 0, the header of the batch there read back with its base
    // offset's sign bit flipped, the segment walk stepped over it, and the read, starting at
    // offset 1, passed as a compaction gap. The group's record was in that batch, so the
    // coordinator forgot the group and gave out its generation 1 a second time.
    let memory = MemDisk::new(23);
    let alike = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let disk = AlikeFlips {
        inner: memory,
        bit: 7,
        skip: Arc::default(),
        alike: alike.clone(),
    };
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::COMPACT,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(Arc::new(disk), Path::new("/data/t-0"), config, 0)
        .await
        .expect("open");
    for value in ["group", "offset-1", "offset-2"] {
        log.append(&[keyed(&[(value, Some(value))], 0)], 0, 0)
            .await
            .expect("append");
    }
    alike.store(1, std::sync::atomic::Ordering::SeqCst);
    let served = batches_of(log.read(0, 1 << 20).await.expect("read"));
    assert_eq!(
        alike.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the first batch's header was misread"
    );
    assert_eq!(
        served[0].base_offset(),
        0,
        "the batch at offset 0 was skipped"
    );
    assert_eq!(served.len(), 3);
}

#[tokio::test]
async fn a_read_retries_a_misread_impossible_length_or_damaged_batch() {
    let memory = MemDisk::new(29);
    let mut log = open(&memory, LogConfig::default()).await;
    for i in 0..3 {
        log.append(&[sample(2, 30, i)], 0, 0).await.expect("append");
    }
    log.flush().await.expect("flush");
    drop(log);
    // Bit 6 of the first batch's length field (bytes 8..12, big-endian) adds 2^30 to it.
    // Misread by the header read of the segment walk, it is an impossible length; misread
    // by the read of the batch after a good header read, the batch looks damaged.
    for (skip, case) in [(0, "impossible length"), (1, "damaged batch")] {
        let skip_reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let alike = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let disk = AlikeFlips {
            inner: memory.clone(),
            bit: 8 * 8 + 6,
            skip: skip_reads.clone(),
            alike: alike.clone(),
        };
        let log = PartitionLog::open(
            Arc::new(disk),
            Path::new("/data/t-0"),
            LogConfig::default(),
            0,
        )
        .await
        .expect("open");
        skip_reads.store(skip, std::sync::atomic::Ordering::SeqCst);
        alike.store(1, std::sync::atomic::Ordering::SeqCst);
        let served = log
            .read(0, 1 << 20)
            .await
            .unwrap_or_else(|e| panic!("{case}: one misread fails the read: {e}"));
        assert_eq!(
            alike.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{case}: the length was misread"
        );
        let bases: Vec<i64> = batches_of(served).iter().map(|b| b.base_offset()).collect();
        assert_eq!(bases, vec![0, 2, 4], "{case}");
    }
}
