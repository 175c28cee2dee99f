//! An in-memory `Disk` with a crash model, used by the simulator and by storage tests.
//!
//! Per file it keeps the bytes written and the image known durable. [`MemDisk::crash`]
//! keeps each durable image plus a seeded random prefix of the writes that followed the
//! last sync (a torn write), sometimes as zeros (the size reached disk, the data did not).
//! Names are durable only once their directory is synced: a crash forgets unsynced
//! creates, renames and removes. Directories themselves are durable when created.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use super::{Disk, DiskError, DiskFile, DiskResult, OpenMode};

/// Faults the nemesis can switch on for one node's disk.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DiskFaults {
    /// Every `sync_data` and `sync_dir` fails; nothing becomes durable.
    pub fsync_fails: bool,
    /// Chance (0.0 to 1.0) that a read returns its bytes with one bit flipped.
    pub read_flip_probability: f64,
    /// Writes that would grow a file fail with `NoSpace`.
    pub full: bool,
}

type InodeId = u64;

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// `data[..clean_len] == durable[..clean_len]`: what a sync need not copy again.
    clean_len: usize,
}

#[derive(Debug)]
struct State {
    /// Bumped by every crash; handles from an earlier generation are stale.
    generation: u64,
    next_inode: InodeId,
    inodes: BTreeMap<InodeId, Inode>,
    live_names: BTreeMap<PathBuf, InodeId>,
    durable_names: BTreeMap<PathBuf, InodeId>,
    dirs: BTreeSet<PathBuf>,
    faults: DiskFaults,
    rng: StdRng,
}

/// A cheaply cloneable handle to one in-memory disk.
#[derive(Clone, Debug)]
pub struct MemDisk {
    state: Arc<Mutex<State>>,
}

impl MemDisk {
    /// A new empty disk; `seed` drives the bit flips of `read_flip_probability`.
    pub fn new(seed: u64) -> Self {
        let mut dirs = BTreeSet::new();
        dirs.insert(PathBuf::from("/"));
        dirs.insert(PathBuf::new());
        MemDisk {
            state: Arc::new(Mutex::new(State {
                generation: 0,
                next_inode: 1,
                inodes: BTreeMap::new(),
                live_names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                dirs,
                faults: DiskFaults::default(),
                rng: StdRng::seed_from_u64(seed),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock with the state half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_faults(&self, faults: DiskFaults) {
        self.lock().faults = faults;
    }

    /// Loses everything that was not durable, as a power cut would. Each file keeps its
    /// durable image plus a random prefix of its later writes; every open handle goes stale.
    pub fn crash(&self, rng: &mut dyn RngCore) {
        let mut state = self.lock();
        let state = &mut *state;
        state.generation += 1;
        state.live_names = state.durable_names.clone();
        let referenced: BTreeSet<InodeId> = state.durable_names.values().copied().collect();
        state.inodes.retain(|id, _| referenced.contains(id));
        for inode in state.inodes.values_mut() {
            let durable_len = inode.durable.len();
            let mut image = std::mem::take(&mut inode.durable);
            let torn_from = inode.clean_len.min(inode.data.len());
            let unsynced = inode.data.len() - torn_from;
            let kept = if unsynced == 0 {
                0
            } else {
                rng.gen_range(0..=unsynced)
            };
            if kept > 0 {
                let end = torn_from + kept;
                if image.len() < end {
                    image.resize(end, 0);
                }
                image[torn_from..end].copy_from_slice(&inode.data[torn_from..end]);
                // One torn extension in four reached disk as size without data.
                let extended_from = durable_len.max(torn_from);
                if extended_from < end && rng.gen_range(0..4) == 0 {
                    image[extended_from..end].fill(0);
                }
            }
            inode.clean_len = image.len();
            inode.data = image.clone();
            inode.durable = image;
        }
    }
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl State {
    fn check_parent(&self, path: &Path) -> DiskResult<()> {
        if self.dirs.contains(&parent_of(path)) {
            Ok(())
        } else {
            Err(DiskError::NotFound {
                path: parent_of(path),
            })
        }
    }
}

#[async_trait]
impl Disk for MemDisk {
    async fn open(&self, path: &Path, mode: OpenMode) -> DiskResult<Arc<dyn DiskFile>> {
        let mut state = self.lock();
        state.check_parent(path)?;
        let existing = state.live_names.get(path).copied();
        let inode = match (existing, mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(DiskError::AlreadyExists {
                    path: path.to_path_buf(),
                })
            }
            (Some(id), _) => id,
            (None, OpenMode::Existing) => {
                return Err(DiskError::NotFound {
                    path: path.to_path_buf(),
                })
            }
            (None, OpenMode::Create | OpenMode::CreateNew) => {
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(id, Inode::default());
                state.live_names.insert(path.to_path_buf(), id);
                id
            }
        };
        Ok(Arc::new(MemFile {
            disk: self.clone(),
            path: path.to_path_buf(),
            inode,
            generation: state.generation,
        }))
    }

    async fn rename(&self, from: &Path, to: &Path) -> DiskResult<()> {
        let mut state = self.lock();
        state.check_parent(to)?;
        let id = state
            .live_names
            .remove(from)
            .ok_or_else(|| DiskError::NotFound {
                path: from.to_path_buf(),
            })?;
        state.live_names.insert(to.to_path_buf(), id);
        Ok(())
    }

    async fn remove(&self, path: &Path) -> DiskResult<()> {
        let mut state = self.lock();
        state
            .live_names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| DiskError::NotFound {
                path: path.to_path_buf(),
            })
    }

    async fn create_dir_all(&self, path: &Path) -> DiskResult<()> {
        let mut state = self.lock();
        for ancestor in path.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    async fn remove_dir(&self, path: &Path) -> DiskResult<()> {
        let mut state = self.lock();
        if !state.dirs.contains(path) {
            return Err(DiskError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let occupied = state.live_names.keys().any(|n| n.parent() == Some(path))
            || state.dirs.iter().any(|d| d.parent() == Some(path));
        if occupied {
            return Err(DiskError::Io {
                path: path.to_path_buf(),
                op: "remove_dir",
                source: std::io::Error::other("directory not empty"),
            });
        }
        state.dirs.remove(path);
        Ok(())
    }

    async fn list_dir(&self, path: &Path) -> DiskResult<Vec<String>> {
        let state = self.lock();
        if !state.dirs.contains(path) {
            return Err(DiskError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let files = state.live_names.keys();
        let dirs = state.dirs.iter().filter(|d| d.as_path() != path);
        let mut names: Vec<String> = files
            .chain(dirs)
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn sync_dir(&self, path: &Path) -> DiskResult<()> {
        let mut state = self.lock();
        if state.faults.fsync_fails {
            return Err(DiskError::Injected {
                path: path.to_path_buf(),
                op: "sync_dir",
            });
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(path);
        let state = &mut *state;
        state.durable_names.retain(|p, _| !in_dir(p));
        for (p, id) in state.live_names.iter().filter(|(p, _)| in_dir(p)) {
            state.durable_names.insert(p.clone(), *id);
        }
        Ok(())
    }

    async fn exists(&self, path: &Path) -> DiskResult<bool> {
        let state = self.lock();
        Ok(state.live_names.contains_key(path) || state.dirs.contains(path))
    }
}

#[derive(Debug)]
struct MemFile {
    disk: MemDisk,
    path: PathBuf,
    inode: InodeId,
    generation: u64,
}

impl MemFile {
    /// Runs `f` on this file's inode, unless the disk crashed since the file was opened.
    fn with_inode<T>(
        &self,
        f: impl FnOnce(&mut Inode, &mut State) -> DiskResult<T>,
    ) -> DiskResult<T> {
        let mut guard = self.disk.lock();
        let state = &mut *guard;
        if state.generation != self.generation {
            return Err(DiskError::Stale {
                path: self.path.clone(),
            });
        }
        let mut inode = state
            .inodes
            .remove(&self.inode)
            .expect("inodes live until a crash, and a crash makes every handle stale");
        let result = f(&mut inode, state);
        state.inodes.insert(self.inode, inode);
        result
    }

    fn write(&self, offset: Option<u64>, data: &[u8]) -> DiskResult<u64> {
        self.with_inode(|inode, state| {
            let start = offset.map_or(inode.data.len(), |o| o as usize);
            let end = start + data.len();
            if end > inode.data.len() {
                if state.faults.full {
                    return Err(DiskError::NoSpace {
                        path: self.path.clone(),
                    });
                }
                inode.data.resize(end, 0);
            }
            inode.data[start..end].copy_from_slice(data);
            inode.clean_len = inode.clean_len.min(start);
            Ok(start as u64)
        })
    }
}

#[async_trait]
impl DiskFile for MemFile {
    fn path(&self) -> &Path {
        &self.path
    }

    async fn size_bytes(&self) -> DiskResult<u64> {
        self.with_inode(|inode, _| Ok(inode.data.len() as u64))
    }

    async fn write_at(&self, offset_bytes: u64, data: &[u8]) -> DiskResult<()> {
        self.write(Some(offset_bytes), data).map(|_| ())
    }

    async fn append(&self, data: &[u8]) -> DiskResult<u64> {
        self.write(None, data)
    }

    async fn read_at(&self, offset_bytes: u64, len_bytes: usize) -> DiskResult<Bytes> {
        self.with_inode(|inode, state| {
            let start = (offset_bytes as usize).min(inode.data.len());
            let end = start.saturating_add(len_bytes).min(inode.data.len());
            let mut buf = inode.data[start..end].to_vec();
            let p = state.faults.read_flip_probability;
            if !buf.is_empty() && p > 0.0 && state.rng.gen_bool(p.min(1.0)) {
                let bit = state.rng.gen_range(0..buf.len() * 8);
                buf[bit / 8] ^= 1 << (bit % 8);
            }
            Ok(Bytes::from(buf))
        })
    }

    async fn truncate(&self, len_bytes: u64) -> DiskResult<()> {
        self.with_inode(|inode, _| {
            let len = len_bytes as usize;
            inode.data.resize(len, 0);
            inode.clean_len = inode.clean_len.min(len);
            Ok(())
        })
    }

    async fn sync_data(&self) -> DiskResult<()> {
        self.with_inode(|inode, state| {
            if state.faults.fsync_fails {
                return Err(DiskError::Injected {
                    path: self.path.clone(),
                    op: "fsync",
                });
            }
            let clean = inode.clean_len.min(inode.durable.len());
            inode.durable.truncate(clean);
            inode.durable.extend_from_slice(&inode.data[clean..]);
            inode.clean_len = inode.data.len();
            Ok(())
        })
    }
}
