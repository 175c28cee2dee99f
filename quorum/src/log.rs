//! The Raft log on Runnel's storage, as KRaft keeps it: entries are the records of a
//! `__cluster_metadata-0` partition log (Raft index `i` at offset `i - 1`, one batch per
//! entry, the batch's leader epoch is the entry's term), and the term and vote live in a
//! `quorum-state` checkpoint beside it. raft-rs reads through [`Storage`] from a copy in
//! memory (the metadata log is small); every write reaches the disk before it returns.
//!
//! Crash order: the term and vote are written before the entries of a Ready, and the commit
//! index written with them never exceeds what is already durable, so a restart never finds
//! a commit index past its log, nor entries from a term it has not recorded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use runnel_protocol::batch::build::{encode, BatchOptions, NewRecord};
use runnel_protocol::batch::RecordBatch;
use runnel_storage::disk::Disk;
use runnel_storage::log::{checkpoint, LogConfig, PartitionLog};

use crate::QuorumError;

/// The checkpoint of the term, the vote and a durable commit index.
pub const STATE_FILE: &str = "quorum-state";
/// Reads of the log at open go this many bytes at a time.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// The durable Raft log and hard state of one voter.
pub struct RaftLog {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    log: PartitionLog,
    /// Every entry, `entries[i].index == i + 1` (nothing is compacted yet).
    entries: Vec<Entry>,
    hard_state: HardState,
    conf_state: ConfState,
    /// The term and vote as last written, so an unchanged hard state is not written again.
    persisted: (u64, u64),
}

impl RaftLog {
    /// Opens (or creates) the log in `dir`, with `voters` as the quorum's membership.
    pub async fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        voters: &[u64],
    ) -> Result<RaftLog, QuorumError> {
        disk.create_dir_all(dir).await?;
        let mut log = PartitionLog::open(disk.clone(), dir, LogConfig::default(), now_ms()).await?;
        let entries = read_entries(&log).await?;
        // Entries read back may be in the page cache only (their fsync failed before a
        // restart of the actor): Raft counts on what it reads, so make it durable first.
        log.flush().await?;
        let hard_state = read_hard_state(disk.as_ref(), dir).await?;
        let last_index = entries.len() as u64;
        if hard_state.commit > last_index {
            return Err(QuorumError::Corrupt {
                dir: dir.to_path_buf(),
                reason: format!(
                    "the quorum state says entry {} is committed but the log ends at {last_index}",
                    hard_state.commit
                ),
            });
        }
        let conf_state = ConfState {
            voters: voters.to_vec(),
            ..Default::default()
        };
        let persisted = (hard_state.term, hard_state.vote);
        Ok(RaftLog {
            disk,
            dir: dir.to_path_buf(),
            log,
            entries,
            hard_state,
            conf_state,
            persisted,
        })
    }

    pub fn last_index(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Makes a Ready's hard state and entries durable, in the order that keeps a restart
    /// consistent: the term and vote first (when they changed: the commit index alone can
    /// be learnt again), then the entries, first dropping any of ours they replace (a
    /// follower's conflicting suffix).
    pub async fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), QuorumError> {
        if let Some(hard_state) = hard_state {
            if (hard_state.term, hard_state.vote) != self.persisted {
                let commit = self.durable_commit(hard_state.commit, entries);
                let line = format!("{} {} {commit}", hard_state.term, hard_state.vote);
                checkpoint::write(self.disk.as_ref(), &self.dir, STATE_FILE, &[line]).await?;
                self.persisted = (hard_state.term, hard_state.vote);
            }
        }
        self.append(entries).await?;
        if let Some(hard_state) = hard_state {
            assert!(
                hard_state.commit <= self.last_index(),
                "commit past the log"
            );
            self.hard_state = hard_state.clone();
        }
        Ok(())
    }

    /// The commit index that may be written before `entries` are: only what is durable
    /// now and stays in the log once they replace our suffix.
    fn durable_commit(&self, commit: u64, entries: &[Entry]) -> u64 {
        let kept = entries
            .first()
            .map_or(self.last_index(), |e| (e.index - 1).min(self.last_index()));
        commit.min(kept)
    }

    /// A commit index from a LightReady: kept in memory only.
    pub fn set_commit(&mut self, commit: u64) {
        assert!(
            commit <= self.last_index(),
            "commit {commit} is past the log"
        );
        self.hard_state.commit = commit;
    }

    async fn append(&mut self, entries: &[Entry]) -> Result<(), QuorumError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let first_index = first.index;
        assert!(
            first_index >= 1 && first_index <= self.last_index() + 1,
            "entries from {first_index} leave a gap after {}",
            self.last_index()
        );
        assert!(
            first_index > self.hard_state.commit,
            "entry {first_index} would replace a committed one (commit {})",
            self.hard_state.commit
        );
        if first_index <= self.last_index() {
            let end = self.log.truncate_to(offset_of(first_index)).await?;
            assert_eq!(
                end,
                offset_of(first_index),
                "one batch per entry: cuts are exact"
            );
            self.entries.truncate((first_index - 1) as usize);
        }
        let now = now_ms();
        for run in entries.chunk_by(|a, b| a.term == b.term) {
            let batches = run
                .iter()
                .map(|entry| to_batch(entry, now))
                .collect::<Result<Vec<_>, _>>()?;
            let term = i32::try_from(run[0].term)
                .map_err(|_| QuorumError::TermTooLarge { term: run[0].term })?;
            self.log.write_batches(&batches, term, now).await?;
        }
        self.log.flush().await?;
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                first_index + offset as u64,
                "entries are contiguous"
            );
        }
        self.entries.extend_from_slice(entries);
        assert_eq!(self.log.log_end_offset() as u64, self.last_index());
        Ok(())
    }

    fn entry_at(&self, index: u64) -> Option<&Entry> {
        index
            .checked_sub(1)
            .and_then(|i| self.entries.get(i as usize))
    }
}

impl Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < 1 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= self.last_index() + 1,
            "raft asked for entries to {high}, past the log's end {}",
            self.last_index()
        );
        let mut out: Vec<Entry> = self.entries[(low - 1) as usize..(high - 1) as usize].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index == 0 {
            return Ok(0);
        }
        self.entry_at(index)
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(RaftLog::last_index(self))
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Nothing is compacted, so a lagging follower is sent entries, never a snapshot.
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

fn offset_of(index: u64) -> i64 {
    (index - 1) as i64
}

/// An entry as a one-record batch: the key is its type, the value its data.
fn to_batch(entry: &Entry, now_ms: i64) -> Result<RecordBatch, QuorumError> {
    let record = NewRecord {
        key: Some(Bytes::from(vec![entry_type_byte(entry.get_entry_type())])),
        value: Some(entry.data.clone()),
        headers: if entry.context.is_empty() {
            Vec::new()
        } else {
            vec![("context".to_string(), Some(entry.context.clone()))]
        },
        timestamp_ms: now_ms,
    };
    let bytes = encode(BatchOptions::default(), &[record])?;
    let (batch, rest) = RecordBatch::parse(bytes)?;
    assert!(rest.is_empty(), "one batch was built");
    Ok(batch)
}

fn entry_type_byte(entry_type: EntryType) -> u8 {
    match entry_type {
        EntryType::EntryNormal => 0,
        EntryType::EntryConfChange => 1,
        EntryType::EntryConfChangeV2 => 2,
    }
}

fn entry_type_of(byte: u8) -> Option<EntryType> {
    match byte {
        0 => Some(EntryType::EntryNormal),
        1 => Some(EntryType::EntryConfChange),
        2 => Some(EntryType::EntryConfChangeV2),
        _ => None,
    }
}

async fn read_entries(log: &PartitionLog) -> Result<Vec<Entry>, QuorumError> {
    let corrupt = |reason: String| QuorumError::Corrupt {
        dir: log.dir().to_path_buf(),
        reason,
    };
    let mut entries: Vec<Entry> = Vec::new();
    while (entries.len() as i64) < log.log_end_offset() {
        let batches = log
            .read_batches(entries.len() as i64, READ_CHUNK_BYTES)
            .await?;
        if batches.is_empty() {
            return Err(corrupt(format!(
                "nothing readable at offset {} below the log end {}",
                entries.len(),
                log.log_end_offset()
            )));
        }
        for batch in batches {
            let index = entries.len() as u64 + 1;
            if batch.base_offset() != offset_of(index) || batch.last_offset() != offset_of(index) {
                return Err(corrupt(format!(
                    "expected the one entry {index} at offset {}, found offsets {}..={}",
                    offset_of(index),
                    batch.base_offset(),
                    batch.last_offset()
                )));
            }
            let record = batch
                .records()?
                .into_iter()
                .next()
                .ok_or_else(|| corrupt(format!("entry {index} has no record")))?;
            let entry_type = record
                .key
                .as_ref()
                .and_then(|k| k.first().copied())
                .and_then(entry_type_of)
                .ok_or_else(|| corrupt(format!("entry {index} has no valid type")))?;
            let mut entry = Entry::default();
            entry.set_entry_type(entry_type);
            entry.index = index;
            entry.term = u64::try_from(batch.partition_leader_epoch())
                .map_err(|_| corrupt(format!("entry {index} has a negative term")))?;
            entry.data = record.value.unwrap_or_default();
            if let Some((_, Some(context))) = record.headers.iter().find(|(k, _)| k == "context") {
                entry.context = context.clone();
            }
            if let Some(previous) = entries.last() {
                if entry.term < previous.term {
                    return Err(corrupt(format!(
                        "entry {index} has term {} below its predecessor's {}",
                        entry.term, previous.term
                    )));
                }
            }
            entries.push(entry);
        }
    }
    Ok(entries)
}

async fn read_hard_state(disk: &dyn Disk, dir: &Path) -> Result<HardState, QuorumError> {
    let Some(lines) = checkpoint::read(disk, dir, STATE_FILE).await? else {
        return Ok(HardState::default());
    };
    let fields: Vec<u64> = lines
        .first()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let [term, vote, commit] = fields[..] else {
        return Err(QuorumError::Corrupt {
            dir: dir.to_path_buf(),
            reason: format!("{STATE_FILE} does not hold a term, a vote and a commit index"),
        });
    };
    Ok(HardState {
        term,
        vote,
        commit,
        ..Default::default()
    })
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use runnel_storage::disk::RealDisk;

    use super::*;

    fn entry(index: u64, term: u64, data: &'static str) -> Entry {
        Entry {
            index,
            term,
            data: Bytes::from_static(data.as_bytes()),
            ..Default::default()
        }
    }

    fn hard(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    async fn open(dir: &Path) -> RaftLog {
        RaftLog::open(Arc::new(RealDisk), dir, &[1, 2, 3])
            .await
            .expect("opens")
    }

    #[tokio::test]
    async fn entries_and_the_vote_survive_a_reopen() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut log = open(tmp.path()).await;
        log.persist(
            Some(&hard(2, 3, 0)),
            &[entry(1, 1, "a"), entry(2, 2, "b"), entry(3, 2, "c")],
        )
        .await
        .expect("persisted");
        log.set_commit(2);
        drop(log);
        let log = open(tmp.path()).await;
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.term(2).expect("term"), 2);
        assert_eq!(log.term(0).expect("term 0"), 0);
        let read = log
            .entries(1, 4, None, GetEntriesContext::empty(false))
            .expect("entries");
        let data: Vec<&[u8]> = read.iter().map(|e| &e.data[..]).collect();
        assert_eq!(data, vec![&b"a"[..], b"b", b"c"]);
        let state = log.initial_state().expect("state");
        assert_eq!((state.hard_state.term, state.hard_state.vote), (2, 3));
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn a_conflicting_suffix_is_replaced_on_disk_too() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut log = open(tmp.path()).await;
        log.persist(
            None,
            &[entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")],
        )
        .await
        .expect("appended");
        log.persist(
            None,
            &[entry(2, 3, "B"), entry(3, 3, "C"), entry(4, 3, "D")],
        )
        .await
        .expect("replaced");
        drop(log);
        let log = open(tmp.path()).await;
        let read = log
            .entries(1, 5, None, GetEntriesContext::empty(false))
            .expect("entries");
        let got: Vec<(u64, &[u8])> = read.iter().map(|e| (e.term, &e.data[..])).collect();
        assert_eq!(got, vec![(1, &b"a"[..]), (3, b"B"), (3, b"C"), (3, b"D")]);
    }

    #[tokio::test]
    async fn the_commit_written_never_passes_the_durable_log() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut log = open(tmp.path()).await;
        log.persist(
            Some(&hard(1, 1, 2)),
            &[
                entry(1, 1, "a"),
                entry(2, 1, "b"),
                entry(3, 1, "c"),
                entry(4, 1, "d"),
            ],
        )
        .await
        .expect("persisted");
        // A follower's Ready in a new term: entries replacing ours from 3, and a commit
        // index covering them. Written before them, the commit may only cover what stays.
        let replacing = [entry(3, 2, "C"), entry(4, 2, "D"), entry(5, 2, "E")];
        assert_eq!(log.durable_commit(5, &replacing), 2);
        assert_eq!(log.durable_commit(5, &[]), 4);
        assert_eq!(log.durable_commit(1, &replacing), 1);
        log.persist(Some(&hard(2, 0, 4)), &[])
            .await
            .expect("hard state");
        drop(log);
        let log = open(tmp.path()).await;
        assert_eq!((log.hard_state().term, log.hard_state().commit), (2, 4));
    }

    #[tokio::test]
    async fn a_damaged_quorum_state_is_refused_with_a_reason() {
        let tmp = tempfile::tempdir().expect("tempdir");
        drop(open(tmp.path()).await);
        checkpoint::write(&RealDisk, tmp.path(), STATE_FILE, &["7 x".to_string()])
            .await
            .expect("written");
        let error = RaftLog::open(Arc::new(RealDisk), tmp.path(), &[1])
            .await
            .err()
            .expect("refused");
        assert!(error.to_string().contains("quorum-state"), "{error}");
    }
}
