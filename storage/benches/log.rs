//! Partition-log throughput against raw file I/O of the same bytes, measured in the same
//! run on the same disk, reported as ratios (targets: append ≥ 0.9x raw writes, read ≥ 0.9x
//! raw reads, recovery of 1 GiB after a crash < 2 s).
//!
//! cargo bench -p runnel-storage --bench log            (RUNNEL_BENCH_MIB=N to resize)

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runnel_protocol::batch::build::{batch, Record};
use runnel_protocol::batch::{peek_batch_size, RecordBatch, LAST_OFFSET_DELTA_AT};
use runnel_storage::disk::RealDisk;
use runnel_storage::log::{LogConfig, PartitionLog, RECOVERY_POINT_CHECKPOINT};

const ROUNDS: usize = 5;
const READ_CHUNK_BYTES: usize = 1 << 20;

/// A 16 KiB batch of 16 records of 1 KiB, as a producer with batch.size=16384 sends.
fn sample_batch() -> RecordBatch {
    let value = vec![0x5a; 1000];
    let records: Vec<Record<'_>> = (0..16)
        .map(|i| Record {
            key: Some(b"key-0001"),
            value: Some(&value),
            timestamp_delta: i,
        })
        .collect();
    batch(1_700_000_000_000, &records)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn raw_write(path: &Path, batch: &RecordBatch, count: usize) -> Duration {
    let start = Instant::now();
    let mut file = std::fs::File::create(path).expect("create");
    for _ in 0..count {
        file.write_all(batch.as_bytes()).expect("write");
    }
    drop(file);
    start.elapsed()
}

async fn log_append(dir: &Path, batch: &RecordBatch, count: usize) -> Duration {
    let start = Instant::now();
    let mut log = PartitionLog::open(Arc::new(RealDisk::new()), dir, LogConfig::default(), 0)
        .await
        .expect("open");
    for _ in 0..count {
        log.append(std::slice::from_ref(batch), 0, 0)
            .await
            .expect("append");
    }
    start.elapsed()
}

fn raw_read(path: &Path) -> Duration {
    let start = Instant::now();
    let file = std::fs::File::open(path).expect("open");
    let size = file.metadata().expect("stat").len();
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut at = 0;
    while at < size {
        at += file.read_at(&mut buf, at).expect("read") as u64;
    }
    start.elapsed()
}

/// Reads the log front to back as a consumer would fetch it; like the raw read, it does
/// not look inside the bytes beyond finding where the next read starts.
async fn log_read(log: &PartitionLog) -> Duration {
    let start = Instant::now();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let bytes = log.read(next, READ_CHUNK_BYTES).await.expect("read");
        let mut at = 0;
        let mut last = None;
        while let Some(size) = peek_batch_size(&bytes[at..]) {
            last = Some(at);
            at += size as usize;
        }
        let last = &bytes[last.expect("a read returns whole batches")..];
        let base = i64::from_be_bytes(last[0..8].try_into().expect("8 bytes"));
        let delta = i32::from_be_bytes(
            last[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        next = base + i64::from(delta) + 1;
    }
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::var("RUNNEL_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let tmp =
        tempfile::tempdir_in(std::env::var("RUNNEL_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("tempdir");
    let batch = sample_batch();
    let count = mib * (1 << 20) / batch.size_bytes();
    let total = (count * batch.size_bytes()) as u64;
    println!(
        "{count} batches of {} bytes = {:.0} MiB per round, {ROUNDS} rounds, medians",
        batch.size_bytes(),
        total as f64 / (1 << 20) as f64
    );

    let (mut raw_w, mut log_w, mut raw_r, mut log_r) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let raw_path = tmp.path().join(format!("raw-{round}.bin"));
        let log_dir = tmp.path().join(format!("log-{round}"));
        raw_w.push(raw_write(&raw_path, &batch, count));
        log_w.push(log_append(&log_dir, &batch, count).await);
        raw_r.push(raw_read(&raw_path));
        let log = PartitionLog::open(Arc::new(RealDisk::new()), &log_dir, LogConfig::default(), 0)
            .await
            .expect("open");
        log_r.push(log_read(&log).await);
        drop(log);
        std::fs::remove_dir_all(&log_dir).expect("cleanup");
        std::fs::remove_file(&raw_path).expect("cleanup");
    }
    let (rw, lw, rr, lr) = (median(raw_w), median(log_w), median(raw_r), median(log_r));
    println!(
        "append: log {:>8.0} MB/s, raw write {:>8.0} MB/s, ratio {:.2}x",
        mb_per_s(total, lw),
        mb_per_s(total, rw),
        rw.as_secs_f64() / lw.as_secs_f64()
    );
    println!(
        "read:   log {:>8.0} MB/s, raw read  {:>8.0} MB/s, ratio {:.2}x",
        mb_per_s(total, lr),
        mb_per_s(total, rr),
        rr.as_secs_f64() / lr.as_secs_f64()
    );

    // Recovery: 1 GiB of log, then "crash" by forgetting the recovery point.
    let gib_count = (1usize << 30) / batch.size_bytes();
    let dir = tmp.path().join("recovery");
    log_append(&dir, &batch, gib_count).await;
    std::fs::remove_file(dir.join(RECOVERY_POINT_CHECKPOINT)).ok();
    let start = Instant::now();
    let log = PartitionLog::open(Arc::new(RealDisk::new()), &dir, LogConfig::default(), 0)
        .await
        .expect("recover");
    let took = start.elapsed();
    assert_eq!(
        log.log_end_offset(),
        gib_count as i64 * 16,
        "recovery kept every batch"
    );
    println!(
        "recovery of {:.2} GiB with every batch validated: {:.2} s",
        log.size_bytes() as f64 / (1u64 << 30) as f64,
        took.as_secs_f64()
    );
}
