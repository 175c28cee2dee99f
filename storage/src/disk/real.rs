//! The `Disk` on the machine's file system.
//!
//! Reads and writes go through positional `pread`/`pwrite`, which land in the page cache
//! and return quickly. fsync can take milliseconds to seconds, so it runs on tokio's
//! blocking pool and never stalls an executor thread (under madsim the same call compiles
//! and runs inline, but simulations use `MemDisk`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Disk, DiskError, DiskFile, DiskResult, OpenMode};

/// The real file system, rooted nowhere in particular: paths are used as given.
#[derive(Debug, Default, Clone)]
pub struct RealDisk;

impl RealDisk {
    pub fn new() -> Self {
        RealDisk
    }
}

/// EMFILE and ENFILE on Linux: the process's or the system's descriptor table is full.
const OUT_OF_DESCRIPTORS: [i32; 2] = [24, 23];

fn io_error(path: &Path, op: &'static str, source: std::io::Error) -> DiskError {
    if source
        .raw_os_error()
        .is_some_and(|code| OUT_OF_DESCRIPTORS.contains(&code))
    {
        return DiskError::OutOfDescriptors {
            path: path.to_path_buf(),
            op,
        };
    }
    match source.kind() {
        std::io::ErrorKind::NotFound => DiskError::NotFound {
            path: path.to_path_buf(),
        },
        std::io::ErrorKind::AlreadyExists => DiskError::AlreadyExists {
            path: path.to_path_buf(),
        },
        std::io::ErrorKind::StorageFull => DiskError::NoSpace {
            path: path.to_path_buf(),
        },
        _ => DiskError::Io {
            path: path.to_path_buf(),
            op,
            source,
        },
    }
}

/// Runs a slow call on the blocking pool; a panic or cancellation there is an I/O error.
async fn blocking<T: Send + 'static>(
    path: &Path,
    op: &'static str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> DiskResult<T> {
    // madsim deprecates spawn_blocking; simulations use MemDisk, so this never runs there.
    #[allow(deprecated)]
    let joined = tokio::task::spawn_blocking(f).await;
    match joined {
        Ok(result) => result.map_err(|e| io_error(path, op, e)),
        Err(join_error) => Err(io_error(
            path,
            op,
            std::io::Error::other(join_error.to_string()),
        )),
    }
}

#[async_trait]
impl Disk for RealDisk {
    async fn open(&self, path: &Path, mode: OpenMode) -> DiskResult<Arc<dyn DiskFile>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::CreateNew => options.create_new(true),
            OpenMode::Create => options.create(true),
            OpenMode::Existing => &mut options,
        };
        let file = options.open(path).map_err(|e| io_error(path, "open", e))?;
        let len_bytes = file
            .metadata()
            .map_err(|e| io_error(path, "stat", e))?
            .len();
        Ok(Arc::new(RealFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            end_bytes: Mutex::new(len_bytes),
        }))
    }

    async fn rename(&self, from: &Path, to: &Path) -> DiskResult<()> {
        std::fs::rename(from, to).map_err(|e| io_error(from, "rename", e))
    }

    async fn remove(&self, path: &Path) -> DiskResult<()> {
        std::fs::remove_file(path).map_err(|e| io_error(path, "remove", e))
    }

    async fn create_dir_all(&self, path: &Path) -> DiskResult<()> {
        std::fs::create_dir_all(path).map_err(|e| io_error(path, "create_dir_all", e))
    }

    async fn remove_dir(&self, path: &Path) -> DiskResult<()> {
        std::fs::remove_dir(path).map_err(|e| io_error(path, "remove_dir", e))
    }

    async fn list_dir(&self, path: &Path) -> DiskResult<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| io_error(path, "list_dir", e))? {
            let entry = entry.map_err(|e| io_error(path, "list_dir", e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    async fn sync_dir(&self, path: &Path) -> DiskResult<()> {
        let owned = path.to_path_buf();
        blocking(path, "sync_dir", move || File::open(owned)?.sync_all()).await
    }

    async fn exists(&self, path: &Path) -> DiskResult<bool> {
        path.try_exists().map_err(|e| io_error(path, "stat", e))
    }
}

#[derive(Debug)]
struct RealFile {
    path: PathBuf,
    file: Arc<File>,
    /// Where the next append goes; appends are serialised through this lock.
    end_bytes: Mutex<u64>,
}

impl RealFile {
    fn end(&self) -> std::sync::MutexGuard<'_, u64> {
        // A panic while holding this lock leaves a plain integer behind: still valid.
        self.end_bytes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl DiskFile for RealFile {
    fn path(&self) -> &Path {
        &self.path
    }

    async fn size_bytes(&self) -> DiskResult<u64> {
        Ok(*self.end())
    }

    async fn write_at(&self, offset_bytes: u64, data: &[u8]) -> DiskResult<()> {
        let mut end = self.end();
        self.file
            .write_all_at(data, offset_bytes)
            .map_err(|e| io_error(&self.path, "write", e))?;
        *end = (*end).max(offset_bytes + data.len() as u64);
        Ok(())
    }

    async fn write_vectored_at(&self, offset_bytes: u64, parts: &[&[u8]]) -> DiskResult<()> {
        /// Linux's IOV_MAX.
        const MAX_IOVECS: usize = 1024;
        let mut end = self.end();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut written = 0usize;
        while written < total {
            let mut skip = written;
            let mut iovecs = Vec::with_capacity(parts.len().min(MAX_IOVECS));
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                iovecs.push(std::io::IoSlice::new(&part[skip..]));
                skip = 0;
                if iovecs.len() == MAX_IOVECS {
                    break;
                }
            }
            let n = rustix::io::pwritev(&*self.file, &iovecs, offset_bytes + written as u64)
                .map_err(|e| io_error(&self.path, "write", e.into()))?;
            if n == 0 {
                return Err(io_error(
                    &self.path,
                    "write",
                    std::io::ErrorKind::WriteZero.into(),
                ));
            }
            written += n;
        }
        *end = (*end).max(offset_bytes + total as u64);
        Ok(())
    }

    async fn append(&self, data: &[u8]) -> DiskResult<u64> {
        let mut end = self.end();
        let offset_bytes = *end;
        self.file
            .write_all_at(data, offset_bytes)
            .map_err(|e| io_error(&self.path, "append", e))?;
        *end += data.len() as u64;
        Ok(offset_bytes)
    }

    async fn read_at(&self, offset_bytes: u64, len_bytes: usize) -> DiskResult<Bytes> {
        // rustix's pread fills spare capacity, so the buffer is never zeroed first: a read
        // costs one copy out of the page cache, as a raw read does.
        let mut buf: Vec<u8> = Vec::with_capacity(len_bytes);
        while buf.len() < len_bytes {
            let at = offset_bytes + buf.len() as u64;
            let n = rustix::io::pread(&*self.file, rustix::buffer::spare_capacity(&mut buf), at)
                .map_err(|e| io_error(&self.path, "read", e.into()))?;
            if n == 0 {
                break;
            }
        }
        Ok(Bytes::from(buf))
    }

    async fn truncate(&self, len_bytes: u64) -> DiskResult<()> {
        let mut end = self.end();
        self.file
            .set_len(len_bytes)
            .map_err(|e| io_error(&self.path, "truncate", e))?;
        *end = len_bytes;
        Ok(())
    }

    async fn sync_data(&self) -> DiskResult<()> {
        let file = self.file.clone();
        blocking(&self.path, "fsync", move || file.sync_data()).await
    }
}
