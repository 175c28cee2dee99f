//! A durable counter: the first workload, which proves the simulator before the broker.
//!
//! Each increment carries a unique id; the service appends it to `counter.log` as a
//! 12-byte record (id, then CRC-32C of the id) and acknowledges. With
//! [`SyncPolicy::FsyncBeforeAck`] the record is fsynced before the acknowledgement; with
//! [`SyncPolicy::AckBeforeFsync`] a timer fsyncs later, so a crash can lose acknowledged
//! increments, which the simulator's checker must notice. On start the log is recovered:
//! the first record that is incomplete or fails its CRC, and everything after it, is cut.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use runnel_storage::disk::{Disk, DiskFile, OpenMode};

use runnel_actors::transport::{FromPeer, RemoteMessage};
use runnel_actors::{Actor, ActorError, Context, Handler, Message};

/// Bytes per record: the id (u64, little endian) and its CRC-32C (u32, little endian).
pub const RECORD_BYTES: usize = 12;
/// Bound on increments one counter holds; past it increments are refused.
pub const MAX_INCREMENTS: usize = 1_000_000;
pub const LOG_FILE_NAME: &str = "counter.log";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    FsyncBeforeAck,
    AckBeforeFsync { flush_interval: Duration },
}

/// How an increment ended, as the client must record it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum IncrementStatus {
    Unspecified = 0,
    /// Applied (and durable if the policy says so).
    Ok = 1,
    /// Definitely not applied.
    Failed = 2,
    /// Maybe applied: the write happened but could not be made durable.
    Unknown = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IncrementRequest {
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IncrementReply {
    #[prost(enumeration = "IncrementStatus", tag = "1")]
    pub status: i32,
    /// The counter's value after this increment, when `Ok`.
    #[prost(uint64, tag = "2")]
    pub value: u64,
    #[prost(string, tag = "3")]
    pub error: String,
}

impl RemoteMessage for IncrementRequest {
    const SERVICE: &'static str = "counter.increment";
    type Reply = IncrementReply;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadReply {
    /// Every increment id in the log, in log order.
    #[prost(uint64, repeated, tag = "1")]
    pub ids: Vec<u64>,
}

impl RemoteMessage for ReadRequest {
    const SERVICE: &'static str = "counter.read";
    type Reply = ReadReply;
}

/// Timer message: fsync what the ack-before-fsync policy left unsynced.
#[derive(Debug, Clone)]
struct Flush;

impl Message for Flush {
    type Reply = ();
}

pub struct CounterService {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    policy: SyncPolicy,
    file: Option<Arc<dyn DiskFile>>,
    ids: Vec<u64>,
    unsynced: bool,
}

impl CounterService {
    pub fn new(disk: Arc<dyn Disk>, dir: impl Into<PathBuf>, policy: SyncPolicy) -> Self {
        CounterService {
            disk,
            dir: dir.into(),
            policy,
            file: None,
            ids: Vec::new(),
            unsynced: false,
        }
    }

    fn file(&self) -> &Arc<dyn DiskFile> {
        self.file
            .as_ref()
            .expect("started() opens the log before any message")
    }

    fn reply(status: IncrementStatus, value: u64, error: String) -> IncrementReply {
        IncrementReply {
            status: status as i32,
            value,
            error,
        }
    }
}

pub fn encode_record(id: u64) -> [u8; RECORD_BYTES] {
    let mut record = [0u8; RECORD_BYTES];
    record[..8].copy_from_slice(&id.to_le_bytes());
    record[8..].copy_from_slice(&crc32c::crc32c(&id.to_le_bytes()).to_le_bytes());
    record
}

/// The ids of the valid prefix of a log, and that prefix's length in bytes.
pub fn decode_records(log: &[u8]) -> (Vec<u64>, usize) {
    let mut ids = Vec::with_capacity(log.len() / RECORD_BYTES);
    for record in log.chunks_exact(RECORD_BYTES) {
        let id_bytes: [u8; 8] = record[..8].try_into().expect("chunk has 12 bytes");
        let crc = u32::from_le_bytes(record[8..].try_into().expect("chunk has 12 bytes"));
        if crc32c::crc32c(&id_bytes) != crc {
            break;
        }
        ids.push(u64::from_le_bytes(id_bytes));
    }
    let valid_bytes = ids.len() * RECORD_BYTES;
    (ids, valid_bytes)
}

impl Actor for CounterService {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        let fail =
            |e: runnel_storage::disk::DiskError| ActorError::new(format!("counter log: {e}"));
        self.disk.create_dir_all(&self.dir).await.map_err(fail)?;
        let path = self.dir.join(LOG_FILE_NAME);
        let existed = self.disk.exists(&path).await.map_err(fail)?;
        let file = self
            .disk
            .open(&path, OpenMode::Create)
            .await
            .map_err(fail)?;
        if !existed {
            self.disk.sync_dir(&self.dir).await.map_err(fail)?;
        }
        let len_bytes = file.size_bytes().await.map_err(fail)?;
        let log = read_stable(file.as_ref(), len_bytes).await?;
        let (ids, valid_bytes) = decode_records(&log);
        if (valid_bytes as u64) < len_bytes {
            tracing::warn!(
                cut_bytes = len_bytes - valid_bytes as u64,
                kept = ids.len(),
                "counter log has a torn or corrupt tail; truncating it"
            );
            file.truncate(valid_bytes as u64).await.map_err(fail)?;
            file.sync_data().await.map_err(fail)?;
        }
        self.ids = ids;
        self.file = Some(file);
        if let SyncPolicy::AckBeforeFsync { flush_interval } = self.policy {
            ctx.notify_interval(flush_interval, Flush);
        }
        Ok(())
    }
}

/// Reads to agree before recovery trusts them.
const STABLE_READ_ATTEMPTS: usize = 8;

/// Reads the whole log until two reads in a row agree. A bit flipped in transit must not
/// look like a torn tail: cutting there would throw away durable, acknowledged records.
async fn read_stable(file: &dyn DiskFile, len_bytes: u64) -> Result<bytes::Bytes, ActorError> {
    let read = || async {
        file.read_at(0, len_bytes as usize)
            .await
            .map_err(|e| ActorError::new(format!("counter log: {e}")))
    };
    let mut previous = read().await?;
    for _ in 0..STABLE_READ_ATTEMPTS {
        let current = read().await?;
        if current == previous {
            return Ok(current);
        }
        previous = current;
    }
    Err(ActorError::new(format!(
        "counter log: {STABLE_READ_ATTEMPTS} reads of {} returned different bytes; the disk is failing",
        file.path().display()
    )))
}

impl Handler<FromPeer<IncrementRequest>> for CounterService {
    async fn handle(
        &mut self,
        msg: FromPeer<IncrementRequest>,
        ctx: &mut Context<Self>,
    ) -> IncrementReply {
        if self.ids.len() >= MAX_INCREMENTS {
            let error = format!("the counter holds its limit of {MAX_INCREMENTS} increments");
            return Self::reply(IncrementStatus::Failed, 0, error);
        }
        let id = msg.msg.id;
        let start_len = self.ids.len() as u64 * RECORD_BYTES as u64;
        if let Err(e) = self.file().write_at(start_len, &encode_record(id)).await {
            // Nothing counts until a later read sees it; a partial record is cut on recovery.
            let _ = self.file().truncate(start_len).await;
            return Self::reply(IncrementStatus::Failed, 0, e.to_string());
        }
        self.ids.push(id);
        let value = self.ids.len() as u64;
        match self.policy {
            SyncPolicy::FsyncBeforeAck => {
                if let Err(e) = self.file().sync_data().await {
                    // After a failed fsync the page cache can no longer be trusted
                    // (PostgreSQL's fsyncgate): restart and recover from the log.
                    ctx.fail(format!("fsync failed: {e}"));
                    return Self::reply(IncrementStatus::Unknown, 0, e.to_string());
                }
            }
            SyncPolicy::AckBeforeFsync { .. } => self.unsynced = true,
        }
        Self::reply(IncrementStatus::Ok, value, String::new())
    }
}

impl Handler<FromPeer<ReadRequest>> for CounterService {
    async fn handle(&mut self, _msg: FromPeer<ReadRequest>, _ctx: &mut Context<Self>) -> ReadReply {
        ReadReply {
            ids: self.ids.clone(),
        }
    }
}

impl Handler<Flush> for CounterService {
    async fn handle(&mut self, _msg: Flush, ctx: &mut Context<Self>) {
        if !self.unsynced {
            return;
        }
        match self.file().sync_data().await {
            Ok(()) => self.unsynced = false,
            Err(e) => ctx.fail(format!("background fsync failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut() {
        let mut log = Vec::new();
        for id in [7u64, 8, 9] {
            log.extend_from_slice(&encode_record(id));
        }
        assert_eq!(decode_records(&log), (vec![7, 8, 9], 36));
        let torn = &log[..30];
        assert_eq!(decode_records(torn), (vec![7, 8], 24));
        let mut flipped = log.clone();
        flipped[13] ^= 0x10;
        assert_eq!(decode_records(&flipped), (vec![7], 12));
        let zeros = [0u8; 12];
        assert_eq!(
            decode_records(&zeros).0,
            Vec::<u64>::new(),
            "an all-zero record fails its CRC"
        );
    }
}
