use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

/// The behaviour every `Disk` must share, run against both implementations.
async fn conformance(disk: &dyn Disk, root: &Path) {
    let dir = root.join("topic-0");
    disk.create_dir_all(&dir).await.expect("mkdir");
    let path = dir.join("00000000000000000000.log");
    let file = disk.open(&path, OpenMode::CreateNew).await.expect("create");
    assert!(matches!(
        disk.open(&path, OpenMode::CreateNew).await,
        Err(DiskError::AlreadyExists { .. })
    ));
    assert_eq!(file.append(b"hello ").await.expect("append"), 0);
    assert_eq!(file.append(b"world").await.expect("append"), 6);
    assert_eq!(file.size_bytes().await.expect("len"), 11);
    file.write_at(0, b"HELLO").await.expect("write_at");
    assert_eq!(
        &file.read_at(0, 100).await.expect("read")[..],
        b"HELLO world"
    );
    assert_eq!(&file.read_at(6, 3).await.expect("read")[..], b"wor");
    assert!(file.read_at(50, 3).await.expect("read past end").is_empty());
    file.truncate(5).await.expect("truncate");
    assert_eq!(file.size_bytes().await.expect("len"), 5);
    assert_eq!(file.append(b"!").await.expect("append after truncate"), 5);
    file.sync_data().await.expect("fsync");

    let renamed = dir.join("00000000000000000000.log.swap");
    disk.rename(&path, &renamed).await.expect("rename");
    assert!(!disk.exists(&path).await.expect("exists"));
    assert!(disk.exists(&renamed).await.expect("exists"));
    disk.sync_dir(&dir).await.expect("sync dir");
    let again = disk
        .open(&renamed, OpenMode::Existing)
        .await
        .expect("reopen");
    assert_eq!(&again.read_at(0, 100).await.expect("read")[..], b"HELLO!");

    disk.open(&dir.join("b"), OpenMode::Create)
        .await
        .expect("create b");
    assert_eq!(
        disk.list_dir(&dir).await.expect("list"),
        vec!["00000000000000000000.log.swap".to_string(), "b".to_string()]
    );
    disk.remove(&dir.join("b")).await.expect("remove");
    assert!(matches!(
        disk.remove(&dir.join("b")).await,
        Err(DiskError::NotFound { .. })
    ));
    assert!(matches!(
        disk.open(&dir.join("missing"), OpenMode::Existing).await,
        Err(DiskError::NotFound { .. })
    ));
    assert!(matches!(
        disk.open(&root.join("no-such-dir/x"), OpenMode::Create)
            .await,
        Err(DiskError::NotFound { .. })
    ));
}

#[tokio::test]
async fn real_disk_conforms() {
    let tmp = tempfile::tempdir().expect("tempdir");
    conformance(&RealDisk::new(), tmp.path()).await;
}

#[tokio::test]
async fn a_handle_cache_conforms_and_stays_under_its_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let disk = HandleCache::new(RealDisk::new(), 2);
    conformance(&disk, tmp.path()).await;
    let files: Vec<_> = futures_files(&disk, tmp.path(), 10).await;
    assert!(
        disk.open_files() <= 2,
        "{} descriptors open",
        disk.open_files()
    );
    // Every handle still works: evicted ones reopen their file.
    for (i, file) in files.iter().enumerate() {
        file.append(format!("file {i}").as_bytes())
            .await
            .expect("append");
        assert!(disk.open_files() <= 2);
    }
    for (i, file) in files.iter().enumerate() {
        assert_eq!(
            &file.read_at(0, 64).await.expect("read")[..],
            format!("file {i}").as_bytes()
        );
    }
    drop(files);
    assert_eq!(
        disk.open_files(),
        0,
        "dropped handles release their descriptors"
    );
}

async fn futures_files(disk: &dyn Disk, dir: &Path, count: usize) -> Vec<Arc<dyn DiskFile>> {
    let mut files = Vec::new();
    for i in 0..count {
        files.push(
            disk.open(&dir.join(format!("f{i}")), OpenMode::CreateNew)
                .await
                .expect("create"),
        );
    }
    files
}

#[tokio::test]
async fn mem_disk_conforms() {
    conformance(&MemDisk::new(1), Path::new("/data")).await;
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

async fn setup(disk: &MemDisk) -> PathBuf {
    let dir = PathBuf::from("/d");
    disk.create_dir_all(&dir).await.expect("mkdir");
    dir
}

#[tokio::test]
async fn crash_keeps_synced_bytes_and_tears_the_rest() {
    let mut saw_torn = false;
    let mut saw_full_loss = false;
    for seed in 0..64 {
        let disk = MemDisk::new(seed);
        let dir = setup(&disk).await;
        let path = dir.join("f");
        let file = disk.open(&path, OpenMode::CreateNew).await.expect("create");
        file.append(b"durable-").await.expect("append");
        file.sync_data().await.expect("fsync");
        disk.sync_dir(&dir).await.expect("sync dir");
        file.append(b"volatile").await.expect("append");
        disk.crash(&mut rng(seed));

        assert!(matches!(
            file.size_bytes().await,
            Err(DiskError::Stale { .. })
        ));
        let file = disk
            .open(&path, OpenMode::Existing)
            .await
            .expect("survives");
        let bytes = file.read_at(0, 100).await.expect("read");
        assert!(bytes.starts_with(b"durable-"), "{bytes:?}");
        let tail = &bytes[8..];
        assert!(tail.len() <= 8);
        let is_data_prefix = b"volatile".starts_with(tail);
        let is_zeros = tail.iter().all(|b| *b == 0);
        assert!(
            is_data_prefix || is_zeros,
            "tail {tail:?} was never written"
        );
        saw_torn |= !tail.is_empty() && tail.len() < 8;
        saw_full_loss |= tail.is_empty();
    }
    assert!(
        saw_torn && saw_full_loss,
        "the crash model must vary by seed"
    );
}

#[tokio::test]
async fn names_are_durable_only_after_the_directory_is_synced() {
    let disk = MemDisk::new(7);
    let dir = setup(&disk).await;
    let kept = disk
        .open(&dir.join("kept"), OpenMode::CreateNew)
        .await
        .expect("create");
    kept.append(b"x").await.expect("append");
    kept.sync_data().await.expect("fsync");
    disk.sync_dir(&dir).await.expect("sync dir");

    let lost = disk
        .open(&dir.join("lost"), OpenMode::CreateNew)
        .await
        .expect("create");
    lost.append(b"y").await.expect("append");
    lost.sync_data().await.expect("fsync file but not its name");
    disk.rename(&dir.join("kept"), &dir.join("renamed"))
        .await
        .expect("rename");
    disk.crash(&mut rng(7));

    assert_eq!(
        disk.list_dir(&dir).await.expect("list"),
        vec!["kept".to_string()]
    );

    disk.remove(&dir.join("kept")).await.expect("remove");
    disk.crash(&mut rng(8));
    assert!(
        disk.exists(&dir.join("kept")).await.expect("exists"),
        "unsynced remove undone"
    );
    disk.remove(&dir.join("kept")).await.expect("remove");
    disk.sync_dir(&dir).await.expect("sync dir");
    disk.crash(&mut rng(9));
    assert!(!disk.exists(&dir.join("kept")).await.expect("exists"));
}

#[tokio::test]
async fn unsynced_truncate_is_undone_by_a_crash() {
    let disk = MemDisk::new(3);
    let dir = setup(&disk).await;
    let path = dir.join("f");
    let file = disk.open(&path, OpenMode::CreateNew).await.expect("create");
    file.append(b"0123456789").await.expect("append");
    file.sync_data().await.expect("fsync");
    disk.sync_dir(&dir).await.expect("sync dir");
    file.truncate(4).await.expect("truncate");
    disk.crash(&mut rng(3));
    let file = disk.open(&path, OpenMode::Existing).await.expect("open");
    assert_eq!(
        &file.read_at(0, 100).await.expect("read")[..],
        b"0123456789"
    );
}

#[tokio::test]
async fn injected_faults_fail_the_right_calls() {
    let disk = MemDisk::new(5);
    let dir = setup(&disk).await;
    let file = disk
        .open(&dir.join("f"), OpenMode::CreateNew)
        .await
        .expect("create");
    file.append(&[0u8; 64]).await.expect("append");

    disk.set_faults(DiskFaults {
        fsync_fails: true,
        ..Default::default()
    });
    assert!(matches!(
        file.sync_data().await,
        Err(DiskError::Injected { op: "fsync", .. })
    ));
    assert!(matches!(
        disk.sync_dir(&dir).await,
        Err(DiskError::Injected { .. })
    ));

    disk.set_faults(DiskFaults {
        full: true,
        ..Default::default()
    });
    assert!(matches!(
        file.append(b"more").await,
        Err(DiskError::NoSpace { .. })
    ));
    file.write_at(0, b"in place")
        .await
        .expect("overwrite needs no new space");

    disk.set_faults(DiskFaults {
        read_flip_probability: 1.0,
        ..Default::default()
    });
    let flipped = file.read_at(8, 56).await.expect("read");
    let ones: u32 = flipped.iter().map(|b| b.count_ones()).sum();
    assert_eq!(ones, 1, "exactly one bit flips in a read of zeros");

    disk.set_faults(DiskFaults::default());
    let clean = file.read_at(8, 56).await.expect("read");
    assert!(
        clean.iter().all(|b| *b == 0),
        "the flip was in the read, not the stored bytes"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    WriteAt(u16, Vec<u8>),
    Truncate(u16),
    Sync,
    Crash(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 1..40).prop_map(Op::Append),
        1 => (any::<u16>(), prop::collection::vec(any::<u8>(), 1..20)).prop_map(|(o, d)| Op::WriteAt(o, d)),
        1 => any::<u16>().prop_map(Op::Truncate),
        2 => Just(Op::Sync),
        1 => any::<u64>().prop_map(Op::Crash),
    ]
}

proptest! {
    /// Whatever was synced survives any crash unchanged; only bytes written after the last
    /// sync may vanish, and what appears instead is a prefix of them or zeros.
    #[test]
    fn synced_bytes_survive_every_crash(ops in prop::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let disk = MemDisk::new(11);
            let dir = setup(&disk).await;
            let path = dir.join("f");
            let mut file = disk.open(&path, OpenMode::CreateNew).await.expect("create");
            disk.sync_dir(&dir).await.expect("sync dir");
            let mut model: Vec<u8> = Vec::new();
            let mut synced: Vec<u8> = Vec::new();
            for op in ops {
                match op {
                    Op::Append(d) => {
                        file.append(&d).await.expect("append");
                        model.extend_from_slice(&d);
                    }
                    Op::WriteAt(o, d) => {
                        let o = usize::from(o) % (model.len() + 1);
                        file.write_at(o as u64, &d).await.expect("write_at");
                        if model.len() < o + d.len() { model.resize(o + d.len(), 0); }
                        model[o..o + d.len()].copy_from_slice(&d);
                    }
                    Op::Truncate(l) => {
                        let l = usize::from(l) % (model.len() + 1);
                        file.truncate(l as u64).await.expect("truncate");
                        model.truncate(l);
                    }
                    Op::Sync => {
                        file.sync_data().await.expect("fsync");
                        synced = model.clone();
                    }
                    Op::Crash(seed) => {
                        disk.crash(&mut rng(seed));
                        file = disk.open(&path, OpenMode::Existing).await.expect("name was synced");
                        let after = file.read_at(0, 1 << 20).await.expect("read").to_vec();
                        prop_assert!(after.len() >= synced.len());
                        prop_assert!(after.len() <= synced.len().max(model.len()));
                        for (i, byte) in after.iter().enumerate() {
                            let was_synced = synced.get(i) == Some(byte);
                            let was_written = model.get(i) == Some(byte);
                            let torn_zero = i >= synced.len() && *byte == 0;
                            prop_assert!(was_synced || was_written || torn_zero, "byte {} invented", i);
                        }
                        model = after.clone();
                        synced = after;
                    }
                }
            }
            Ok(())
        })?;
    }
}
