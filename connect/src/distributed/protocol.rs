//! The `connect` group protocol's bytes, as Kafka's workers write them: a member's
//! metadata in JoinGroup and a member's assignment in SyncGroup, for the incremental
//! cooperative protocols of KIP-415 (`compatible`, version 1) and KIP-507 (`sessioned`,
//! version 2, the same layout). Kafka's eager protocol (`default`, version 0) is not
//! offered by our workers; its assignments are still read, since they are a prefix of
//! version 1's.
//!
//! Layout (Kafka's protocol types: strings with an int16 length, arrays and nullable
//! bytes with an int32 length, -1 for null):
//! - metadata: version i16, url string, config offset i64, allocation nullable bytes
//!   (the member's current assignment, serialized as below, or null when empty);
//! - assignment: version i16, error i16, leader string, leader url string, config
//!   offset i64, assigned `[connector string, tasks [i32]]`, revoked (same), delay i32.
//!   Task -1 stands for the connector itself.

use std::collections::BTreeSet;

use crate::entities::TaskId;

/// The group's protocol type.
pub const PROTOCOL_TYPE: &str = "connect";
/// KIP-415's protocol, version 1.
pub const COMPATIBLE: &str = "compatible";
/// KIP-507's protocol, version 2 (version 1's layout; session keys in the config topic).
pub const SESSIONED: &str = "sessioned";
/// Kafka's eager protocol, version 0.
pub const EAGER: &str = "default";
/// The task id that stands for the connector itself.
pub const CONNECTOR_TASK: i32 = -1;
/// Assignment error: none.
pub const NO_ERROR: i16 = 0;
/// Assignment error: the leader was behind the config topic; members read it and rejoin.
pub const CONFIG_MISMATCH: i16 = 1;
/// Bound on the connectors and tasks one decoded assignment may name, so a hostile
/// member cannot make us allocate without limit.
pub const MAX_ASSIGNED_ITEMS: usize = 100_000;

/// The protocol version a protocol name stands for.
pub fn version_of(protocol: &str) -> Option<i16> {
    match protocol {
        EAGER => Some(0),
        COMPATIBLE => Some(1),
        SESSIONED => Some(2),
        _ => None,
    }
}

/// Bytes that are not the `connect` protocol's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed connect protocol data: {0}")]
pub struct ProtocolError(pub String);

/// Connectors and tasks (Kafka's `ConnectorsAndTasks`), in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorsAndTasks {
    pub connectors: BTreeSet<String>,
    pub tasks: BTreeSet<TaskId>,
}

impl ConnectorsAndTasks {
    pub fn is_empty(&self) -> bool {
        self.connectors.is_empty() && self.tasks.is_empty()
    }

    pub fn extend(&mut self, other: &ConnectorsAndTasks) {
        self.connectors.extend(other.connectors.iter().cloned());
        self.tasks.extend(other.tasks.iter().cloned());
    }

    pub fn remove_all(&mut self, other: &ConnectorsAndTasks) {
        self.connectors.retain(|c| !other.connectors.contains(c));
        self.tasks.retain(|t| !other.tasks.contains(t));
    }

    /// What is in `self` but in none of `others`.
    pub fn minus(&self, others: &[&ConnectorsAndTasks]) -> ConnectorsAndTasks {
        let mut out = self.clone();
        for o in others {
            out.remove_all(o);
        }
        out
    }
}

/// A member's JoinGroup metadata (Kafka's `ExtendedWorkerState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerState {
    /// The worker's REST URL, where the leader forwards requests.
    pub url: String,
    /// The config topic offset the worker has read up to.
    pub config_offset: i64,
    /// What the worker runs now.
    pub assignment: ConnectorsAndTasks,
}

/// A member's SyncGroup assignment (Kafka's `ExtendedAssignment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub version: i16,
    pub error: i16,
    pub leader: String,
    pub leader_url: String,
    pub config_offset: i64,
    /// Newly assigned (incremental protocols) or everything (eager).
    pub assigned: ConnectorsAndTasks,
    pub revoked: ConnectorsAndTasks,
    /// How long until the leader wants the group to rebalance again, in milliseconds.
    pub delay_ms: i32,
}

struct Writer(Vec<u8>);

impl Writer {
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn string(&mut self, s: &str) {
        // Kafka's STRING holds at most i16::MAX bytes; longer names are cut at a char.
        let mut end = s.len().min(i16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.i16(end as i16);
        self.0.extend_from_slice(&s.as_bytes()[..end]);
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| ProtocolError(format!("{n} bytes needed at byte {}", self.at)))?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn i16(&mut self) -> Result<i16, ProtocolError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, ProtocolError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn string(&mut self) -> Result<String, ProtocolError> {
        let n = self.i16()?;
        let n = usize::try_from(n).map_err(|_| ProtocolError("a null string".into()))?;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| ProtocolError("a string that is not UTF-8".into()))
    }
    fn remaining(&self) -> usize {
        self.data.len() - self.at
    }
}

fn write_assigned(w: &mut Writer, set: &ConnectorsAndTasks) {
    // Grouped by connector as Kafka writes it: the connector's own entry (-1) first.
    let mut names: BTreeSet<&str> = set.connectors.iter().map(String::as_str).collect();
    names.extend(set.tasks.iter().map(|t| t.connector.as_str()));
    w.i32(names.len() as i32);
    for name in names {
        w.string(name);
        let own = set.connectors.contains(name);
        let tasks: Vec<i32> = set
            .tasks
            .iter()
            .filter(|t| t.connector == name)
            .map(|t| t.task as i32)
            .collect();
        w.i32(tasks.len() as i32 + i32::from(own));
        if own {
            w.i32(CONNECTOR_TASK);
        }
        for t in tasks {
            w.i32(t);
        }
    }
}

fn read_assigned(r: &mut Reader<'_>) -> Result<ConnectorsAndTasks, ProtocolError> {
    let mut out = ConnectorsAndTasks::default();
    let count = r.i32()?;
    if count < 0 {
        return Ok(out);
    }
    let mut items = 0usize;
    for _ in 0..count {
        let name = r.string()?;
        let n = r.i32()?;
        let n = usize::try_from(n).map_err(|_| ProtocolError("a null task array".into()))?;
        items = items.saturating_add(n);
        if items > MAX_ASSIGNED_ITEMS || n.saturating_mul(4) > r.remaining() {
            return Err(ProtocolError(format!("{items} assigned items")));
        }
        for _ in 0..n {
            match r.i32()? {
                CONNECTOR_TASK => {
                    out.connectors.insert(name.clone());
                }
                t if t >= 0 => {
                    out.tasks.insert(TaskId {
                        connector: name.clone(),
                        task: t as u32,
                    });
                }
                t => return Err(ProtocolError(format!("task id {t}"))),
            }
        }
    }
    Ok(out)
}

/// An assignment's bytes (version 1 or 2).
pub fn encode_assignment(a: &Assignment) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.i16(a.version);
    w.i16(a.error);
    w.string(&a.leader);
    w.string(&a.leader_url);
    w.i64(a.config_offset);
    write_assigned(&mut w, &a.assigned);
    write_assigned(&mut w, &a.revoked);
    w.i32(a.delay_ms);
    w.0
}

/// Reads an assignment of any version; version 0 has no revocations and no delay.
pub fn decode_assignment(data: &[u8]) -> Result<Assignment, ProtocolError> {
    let mut r = Reader { data, at: 0 };
    let version = r.i16()?;
    if version < 0 {
        return Err(ProtocolError(format!("version {version}")));
    }
    let error = r.i16()?;
    let leader = r.string()?;
    let leader_url = r.string()?;
    let config_offset = r.i64()?;
    let assigned = read_assigned(&mut r)?;
    // Kafka tolerates the later fields missing (defaults: none revoked, no delay).
    let revoked = if version >= 1 && r.remaining() > 0 {
        read_assigned(&mut r)?
    } else {
        ConnectorsAndTasks::default()
    };
    let delay_ms = if version >= 1 && r.remaining() >= 4 {
        r.i32()?
    } else {
        0
    };
    Ok(Assignment {
        version,
        error,
        leader,
        leader_url,
        config_offset,
        assigned,
        revoked,
        delay_ms,
    })
}

/// A member's metadata for the protocol of `version` (1 or 2). The allocation is the
/// member's current assignment in an assignment's layout, null when it runs nothing.
pub fn encode_metadata(state: &WorkerState, version: i16) -> Vec<u8> {
    assert!(version == 1 || version == 2, "incremental protocols only");
    let mut w = Writer(Vec::with_capacity(64));
    w.i16(version);
    w.string(&state.url);
    w.i64(state.config_offset);
    if state.assignment.is_empty() {
        w.i32(-1);
    } else {
        let allocation = encode_assignment(&Assignment {
            version,
            error: NO_ERROR,
            leader: String::new(),
            leader_url: String::new(),
            config_offset: state.config_offset,
            assigned: state.assignment.clone(),
            revoked: ConnectorsAndTasks::default(),
            delay_ms: 0,
        });
        w.i32(allocation.len() as i32);
        w.0.extend_from_slice(&allocation);
    }
    w.0
}

/// Reads a member's metadata (version 0 has no allocation).
pub fn decode_metadata(data: &[u8]) -> Result<WorkerState, ProtocolError> {
    let mut r = Reader { data, at: 0 };
    let version = r.i16()?;
    if version < 0 {
        return Err(ProtocolError(format!("version {version}")));
    }
    let url = r.string()?;
    let config_offset = r.i64()?;
    let mut assignment = ConnectorsAndTasks::default();
    if version >= 1 && r.remaining() >= 4 {
        let n = r.i32()?;
        if n >= 0 {
            let bytes = r.take(n as usize)?;
            assignment = decode_assignment(bytes)?.assigned;
        }
    }
    Ok(WorkerState {
        url,
        config_offset,
        assignment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(c: &str, t: u32) -> TaskId {
        TaskId {
            connector: c.into(),
            task: t,
        }
    }

    fn sample() -> ConnectorsAndTasks {
        ConnectorsAndTasks {
            connectors: ["a".to_string()].into(),
            tasks: [task("a", 0), task("b", 1)].into(),
        }
    }

    #[test]
    fn assignments_round_trip_with_the_connector_as_task_minus_one() {
        let a = Assignment {
            version: 2,
            error: NO_ERROR,
            leader: "worker-1".into(),
            leader_url: "http://w1:8083/".into(),
            config_offset: 7,
            assigned: sample(),
            revoked: ConnectorsAndTasks {
                connectors: ["b".to_string()].into(),
                tasks: BTreeSet::new(),
            },
            delay_ms: 300_000,
        };
        let bytes = encode_assignment(&a);
        // version, error, then the leader's length-prefixed name.
        assert_eq!(&bytes[..6], &[0, 2, 0, 0, 0, 8]);
        // The assigned array: 2 connectors; "a" carries [-1, 0].
        let at = 2 + 2 + 10 + 17 + 8;
        assert_eq!(&bytes[at..at + 4], &[0, 0, 0, 2]);
        assert_eq!(&bytes[at + 7..at + 11], &[0, 0, 0, 2]);
        assert_eq!(&bytes[at + 11..at + 15], &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_assignment(&bytes), Ok(a));
    }

    #[test]
    fn metadata_carries_the_current_allocation_or_null() {
        let state = WorkerState {
            url: "http://localhost:8083/".into(),
            config_offset: 3,
            assignment: sample(),
        };
        for version in [1, 2] {
            let bytes = encode_metadata(&state, version);
            assert_eq!(decode_metadata(&bytes), Ok(state.clone()));
        }
        let empty = WorkerState {
            assignment: ConnectorsAndTasks::default(),
            ..state
        };
        let bytes = encode_metadata(&empty, 1);
        assert_eq!(&bytes[bytes.len() - 4..], &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_metadata(&bytes), Ok(empty));
    }

    #[test]
    fn eager_assignments_and_truncated_or_hostile_bytes() {
        // Version 0: no revoked array, no delay.
        let mut w = Writer(Vec::new());
        w.i16(0);
        w.i16(NO_ERROR);
        w.string("l");
        w.string("http://l/");
        w.i64(1);
        write_assigned(&mut w, &sample());
        let decoded = decode_assignment(&w.0).expect("eager assignment");
        assert_eq!(decoded.assigned, sample());
        assert!(decoded.revoked.is_empty());
        assert_eq!(decoded.delay_ms, 0);
        for cut in 0..w.0.len() - 1 {
            let _ = decode_assignment(&w.0[..cut]);
        }
        assert!(decode_assignment(&w.0[..5]).is_err());
        let mut huge = w.0[..w.0.len()].to_vec();
        let at = 2 + 2 + 3 + 11 + 8;
        huge.truncate(at);
        huge.extend_from_slice(&[0, 0, 0, 1, 0, 1, b'x', 0x7f, 0xff, 0xff, 0xff]);
        assert!(decode_assignment(&huge).is_err());
    }
}
