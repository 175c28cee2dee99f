//! The `Disk` trait: the file operations a log needs, and nothing that hides durability.
//!
//! Durability follows POSIX as ext4 gives it: file contents are durable after
//! [`DiskFile::sync_data`]; a create, rename or remove is durable only after
//! [`Disk::sync_dir`] on the directory holding the name.

mod cache;
mod mem;
mod real;
#[cfg(madsim)]
mod sim;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use cache::HandleCache;
pub use mem::{DiskFaults, MemDisk};
pub use real::RealDisk;
#[cfg(madsim)]
pub use sim::SimDisks;

pub type DiskResult<T> = Result<T, DiskError>;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path}: already exists")]
    AlreadyExists { path: PathBuf },
    #[error("{path}: no space left on the device")]
    NoSpace { path: PathBuf },
    /// Only calls that make a descriptor fail this way, so nothing was written.
    #[error("{path}: {op} failed: the process is out of file descriptors; raise its limit (ulimit -n) or serve fewer partitions")]
    OutOfDescriptors { path: PathBuf, op: &'static str },
    #[error("{path}: {op} failed (fault injected by the simulator)")]
    Injected { path: PathBuf, op: &'static str },
    #[error("{path}: the file handle predates a crash of its node and is no longer valid")]
    Stale { path: PathBuf },
    #[error("{path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl DiskError {
    /// A shortage that passes (descriptors), not a sign that data on disk is unknown: the
    /// operation failed before it changed anything.
    pub fn is_resource_shortage(&self) -> bool {
        matches!(self, DiskError::OutOfDescriptors { .. })
    }
}

/// How [`Disk::open`] treats an existing or missing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file; fail if it exists.
    CreateNew,
    /// Open the file, creating it empty if missing.
    Create,
    /// Open an existing file; fail if missing.
    Existing,
}

/// A directory tree of files, as a node's log sees it.
#[async_trait]
pub trait Disk: Send + Sync + fmt::Debug {
    async fn open(&self, path: &Path, mode: OpenMode) -> DiskResult<Arc<dyn DiskFile>>;
    /// Atomically replaces `to` with `from`.
    async fn rename(&self, from: &Path, to: &Path) -> DiskResult<()>;
    async fn remove(&self, path: &Path) -> DiskResult<()>;
    async fn create_dir_all(&self, path: &Path) -> DiskResult<()>;
    /// Removes an empty directory.
    async fn remove_dir(&self, path: &Path) -> DiskResult<()>;
    /// The names (not paths) of the entries of a directory, sorted.
    async fn list_dir(&self, path: &Path) -> DiskResult<Vec<String>>;
    /// Makes creates, renames and removes of names in this directory durable.
    async fn sync_dir(&self, path: &Path) -> DiskResult<()>;
    async fn exists(&self, path: &Path) -> DiskResult<bool>;
}

/// An open file. Handles are shared (`Arc`) and safe to use from several tasks.
#[async_trait]
pub trait DiskFile: Send + Sync + fmt::Debug {
    fn path(&self) -> &Path;
    async fn size_bytes(&self) -> DiskResult<u64>;
    async fn write_at(&self, offset_bytes: u64, data: &[u8]) -> DiskResult<()>;
    /// Writes `parts` back to back from `offset_bytes`, as one write where the platform
    /// allows (`pwritev`), so callers need not copy pieces together first.
    async fn write_vectored_at(&self, offset_bytes: u64, parts: &[&[u8]]) -> DiskResult<()> {
        self.write_at(offset_bytes, &parts.concat()).await
    }
    /// Writes at the end of the file and returns the offset the data starts at.
    async fn append(&self, data: &[u8]) -> DiskResult<u64>;
    /// Reads up to `len_bytes`; fewer only at the end of the file.
    async fn read_at(&self, offset_bytes: u64, len_bytes: usize) -> DiskResult<Bytes>;
    async fn truncate(&self, len_bytes: u64) -> DiskResult<()>;
    /// Makes the file's contents durable.
    async fn sync_data(&self) -> DiskResult<()>;
}

/// Reads of one range [`read_agreed`] makes before giving up.
pub const AGREED_READ_ATTEMPTS: usize = 64;

/// Reads until two reads in a row return the same bytes. For bytes whose misreading
/// would do harm (what recovery may cut, a checkpoint's offset), on a disk that may flip
/// bits on read: two reads flipped the same way are vanishingly unlikely.
pub async fn read_agreed(
    file: &dyn DiskFile,
    offset_bytes: u64,
    len_bytes: usize,
) -> DiskResult<Bytes> {
    let mut previous = file.read_at(offset_bytes, len_bytes).await?;
    for _ in 0..AGREED_READ_ATTEMPTS {
        let again = file.read_at(offset_bytes, len_bytes).await?;
        if again == previous {
            return Ok(again);
        }
        previous = again;
    }
    Err(DiskError::Io {
        path: file.path().to_path_buf(),
        op: "read",
        source: std::io::Error::other(format!(
            "{AGREED_READ_ATTEMPTS} reads at byte {offset_bytes} disagree; the disk is failing"
        )),
    })
}

#[cfg(test)]
mod tests;
