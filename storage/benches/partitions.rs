//! 10,000 idle partitions on the real disk behind a handle cache: resident memory and open
//! descriptors after creating them and after reopening them (targets: under 200 MiB, and
//! under the descriptor limit), with the process's own baseline measured first.
//!
//! cargo bench -p runnel-storage --bench partitions      (RUNNEL_BENCH_PARTITIONS=N)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use runnel_protocol::batch::build::{batch, Record};
use runnel_storage::disk::{Disk, HandleCache, RealDisk};
use runnel_storage::manager::{LogManager, LogManagerConfig, TopicPartition};

const MAX_OPEN_FILES: usize = 512;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("procfs").count()
}

fn fd_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "?".into())
}

#[tokio::main]
async fn main() {
    let partitions: i32 = std::env::var("RUNNEL_BENCH_PARTITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let tmp =
        tempfile::tempdir_in(std::env::var("RUNNEL_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("tempdir");
    let dirs: Vec<PathBuf> = vec![tmp.path().join("d1"), tmp.path().join("d2")];
    let (base_rss, base_fds) = (rss_mib(), open_fds());
    println!(
        "baseline: {base_rss:.1} MiB resident, {base_fds} descriptors; soft descriptor limit {}",
        fd_limit()
    );

    let disk: Arc<dyn Disk> = Arc::new(HandleCache::new(RealDisk::new(), MAX_OPEN_FILES));
    let start = Instant::now();
    let mut manager = LogManager::open(disk.clone(), LogManagerConfig::new(dirs.clone()), 0)
        .await
        .expect("open");
    let value = [7u8; 100];
    let one = batch(
        0,
        &[Record {
            key: None,
            value: Some(&value),
            timestamp_delta: 0,
        }],
    );
    for p in 0..partitions {
        let tp = TopicPartition::new(format!("topic{}", p % 100), p / 100);
        let log = manager.get_or_create(&tp, 0).await.expect("create");
        log.append(std::slice::from_ref(&one), 0, 0)
            .await
            .expect("append");
    }
    manager.flush_all().await.expect("flush");
    println!(
        "created {partitions} partitions in {:.1} s: {:.1} MiB resident (+{:.1}), {} descriptors (cache limit {MAX_OPEN_FILES})",
        start.elapsed().as_secs_f64(),
        rss_mib(),
        rss_mib() - base_rss,
        open_fds()
    );
    drop(manager);

    let start = Instant::now();
    let manager = LogManager::open(disk, LogManagerConfig::new(dirs), 0)
        .await
        .expect("reopen");
    assert_eq!(manager.len(), partitions as usize);
    println!(
        "reopened {} partitions in {:.1} s: {:.1} MiB resident (+{:.1}), {} descriptors",
        manager.len(),
        start.elapsed().as_secs_f64(),
        rss_mib(),
        rss_mib() - base_rss,
        open_fds()
    );
}
