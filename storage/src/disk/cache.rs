//! A `Disk` that keeps at most `max_open_files` descriptors open, whatever the number of
//! files in use: handles it gives out reopen their file on demand, and the least recently
//! used descriptors are closed past the limit. A node with 10,000 partitions (three files
//! each) stays under the process's descriptor limit.
//!
//! A handle whose file was renamed or removed while its descriptor was closed fails with
//! `NotFound` on its next use; the log never uses a handle across a rename.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Disk, DiskFile, DiskResult, OpenMode};

struct Lru {
    /// file id → (open handle, last use)
    open: BTreeMap<u64, (Arc<dyn DiskFile>, u64)>,
    /// last use → file id, oldest first
    by_use: BTreeMap<u64, u64>,
    tick: u64,
    next_id: u64,
}

/// Wraps a `Disk` with a bounded cache of open descriptors.
pub struct HandleCache<D> {
    inner: Arc<D>,
    max_open_files: usize,
    lru: Arc<Mutex<Lru>>,
}

impl<D> std::fmt::Debug for HandleCache<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HandleCache(max_open_files {})", self.max_open_files)
    }
}

fn lock(lru: &Mutex<Lru>) -> MutexGuard<'_, Lru> {
    // Only map inserts and removes happen under the lock: never left half-done.
    lru.lock().unwrap_or_else(|p| p.into_inner())
}

impl<D: Disk + 'static> HandleCache<D> {
    pub fn new(inner: D, max_open_files: usize) -> Self {
        assert!(
            max_open_files > 0,
            "the cache must hold at least one descriptor"
        );
        HandleCache {
            inner: Arc::new(inner),
            max_open_files,
            lru: Arc::new(Mutex::new(Lru {
                open: BTreeMap::new(),
                by_use: BTreeMap::new(),
                tick: 0,
                next_id: 0,
            })),
        }
    }

    /// Descriptors open right now.
    pub fn open_files(&self) -> usize {
        lock(&self.lru).open.len()
    }
}

impl Lru {
    fn touch(&mut self, id: u64) -> Option<Arc<dyn DiskFile>> {
        self.tick += 1;
        let tick = self.tick;
        let (handle, last) = self.open.get_mut(&id)?;
        self.by_use.remove(last);
        *last = tick;
        self.by_use.insert(tick, id);
        Some(handle.clone())
    }

    fn insert(&mut self, id: u64, handle: Arc<dyn DiskFile>, max_open_files: usize) {
        while self.open.len() >= max_open_files {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.open.remove(&oldest);
        }
        self.tick += 1;
        self.by_use.insert(self.tick, id);
        self.open.insert(id, (handle, self.tick));
    }

    fn forget(&mut self, id: u64) {
        if let Some((_, last)) = self.open.remove(&id) {
            self.by_use.remove(&last);
        }
    }
}

#[async_trait]
impl<D: Disk + 'static> Disk for HandleCache<D> {
    async fn open(&self, path: &Path, mode: OpenMode) -> DiskResult<Arc<dyn DiskFile>> {
        let handle = self.inner.open(path, mode).await?;
        let mut lru = lock(&self.lru);
        let id = lru.next_id;
        lru.next_id += 1;
        lru.insert(id, handle, self.max_open_files);
        Ok(Arc::new(CachedFile {
            id,
            path: path.to_path_buf(),
            disk: self.inner.clone() as Arc<dyn Disk>,
            lru: self.lru.clone(),
            max_open_files: self.max_open_files,
        }))
    }

    async fn rename(&self, from: &Path, to: &Path) -> DiskResult<()> {
        self.inner.rename(from, to).await
    }

    async fn remove(&self, path: &Path) -> DiskResult<()> {
        self.inner.remove(path).await
    }

    async fn create_dir_all(&self, path: &Path) -> DiskResult<()> {
        self.inner.create_dir_all(path).await
    }

    async fn remove_dir(&self, path: &Path) -> DiskResult<()> {
        self.inner.remove_dir(path).await
    }

    async fn list_dir(&self, path: &Path) -> DiskResult<Vec<String>> {
        self.inner.list_dir(path).await
    }

    async fn sync_dir(&self, path: &Path) -> DiskResult<()> {
        self.inner.sync_dir(path).await
    }

    async fn exists(&self, path: &Path) -> DiskResult<bool> {
        self.inner.exists(path).await
    }
}

struct CachedFile {
    id: u64,
    path: PathBuf,
    disk: Arc<dyn Disk>,
    lru: Arc<Mutex<Lru>>,
    max_open_files: usize,
}

impl std::fmt::Debug for CachedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CachedFile({})", self.path.display())
    }
}

impl CachedFile {
    /// The open descriptor, reopening the file if the cache closed it.
    async fn handle(&self) -> DiskResult<Arc<dyn DiskFile>> {
        if let Some(handle) = lock(&self.lru).touch(self.id) {
            return Ok(handle);
        }
        let handle = self.disk.open(&self.path, OpenMode::Existing).await?;
        lock(&self.lru).insert(self.id, handle.clone(), self.max_open_files);
        Ok(handle)
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        lock(&self.lru).forget(self.id);
    }
}

#[async_trait]
impl DiskFile for CachedFile {
    fn path(&self) -> &Path {
        &self.path
    }

    async fn size_bytes(&self) -> DiskResult<u64> {
        self.handle().await?.size_bytes().await
    }

    async fn write_at(&self, offset_bytes: u64, data: &[u8]) -> DiskResult<()> {
        self.handle().await?.write_at(offset_bytes, data).await
    }

    async fn write_vectored_at(&self, offset_bytes: u64, parts: &[&[u8]]) -> DiskResult<()> {
        self.handle()
            .await?
            .write_vectored_at(offset_bytes, parts)
            .await
    }

    async fn append(&self, data: &[u8]) -> DiskResult<u64> {
        self.handle().await?.append(data).await
    }

    async fn read_at(&self, offset_bytes: u64, len_bytes: usize) -> DiskResult<Bytes> {
        self.handle().await?.read_at(offset_bytes, len_bytes).await
    }

    async fn truncate(&self, len_bytes: u64) -> DiskResult<()> {
        self.handle().await?.truncate(len_bytes).await
    }

    async fn sync_data(&self) -> DiskResult<()> {
        self.handle().await?.sync_data().await
    }
}
