//! Checkpoint files, in Kafka's text format: a version line (`0`), a count line, then one
//! entry per line. Written atomically: write a `.tmp`, fsync it, rename it over the old
//! file, fsync the directory.

use std::path::Path;

use crate::disk::{Disk, DiskError, OpenMode};

const VERSION: &str = "0";

/// Replaces `dir/name` with `entries`, crash-safely.
pub async fn write(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
    entries: &[String],
) -> Result<(), DiskError> {
    let mut text = format!("{VERSION}\n{}\n", entries.len());
    for entry in entries {
        text.push_str(entry);
        text.push('\n');
    }
    replace_file(disk, dir, name, text.as_bytes()).await
}

/// Replaces `dir/name` with `bytes`, crash-safely: a reader after a crash finds the old
/// file or the new one, whole.
pub async fn replace_file(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), DiskError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let file = disk.open(&tmp, OpenMode::Create).await?;
    file.truncate(0).await?;
    file.write_at(0, bytes).await?;
    file.sync_data().await?;
    disk.rename(&tmp, &dir.join(name)).await?;
    disk.sync_dir(dir).await
}

/// The entries of `dir/name`; `None` if the file is missing or not a valid checkpoint
/// (the caller then falls back to what it can prove from the log itself).
pub async fn read(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
) -> Result<Option<Vec<String>>, DiskError> {
    let path = dir.join(name);
    if !disk.exists(&path).await? {
        return Ok(None);
    }
    let file = disk.open(&path, OpenMode::Existing).await?;
    let size = file.size_bytes().await?;
    let bytes = crate::disk::read_agreed(file.as_ref(), 0, size as usize).await?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        tracing::warn!(path = %path.display(), "checkpoint is not UTF-8; ignoring it");
        return Ok(None);
    };
    let mut lines = text.lines();
    let version = lines.next();
    let count = lines.next().and_then(|c| c.parse::<usize>().ok());
    let entries: Vec<String> = lines.map(str::to_string).collect();
    if version != Some(VERSION) || count != Some(entries.len()) {
        tracing::warn!(path = %path.display(), "checkpoint is damaged; ignoring it");
        return Ok(None);
    }
    Ok(Some(entries))
}

/// A checkpoint holding one offset.
pub async fn read_offset(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
) -> Result<Option<i64>, DiskError> {
    Ok(read(disk, dir, name)
        .await?
        .and_then(|entries| entries.first().and_then(|e| e.trim().parse().ok())))
}

pub async fn write_offset(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
    offset: i64,
) -> Result<(), DiskError> {
    write(disk, dir, name, &[offset.to_string()]).await
}
