//! The records of `__consumer_offsets`, in Kafka's own binary schemas so that tools which
//! read the topic (`kafka-console-consumer --formatter OffsetsMessageFormatter`) understand
//! it: `OffsetCommitKey` v1 / `OffsetCommitValue` v3 for committed offsets and
//! `GroupMetadataKey` v2 / `GroupMetadataValue` v3 for classic groups. A null value is a
//! tombstone: compaction then forgets the key.
//!
//! KIP-848 groups are kept as one Runnel record per group under key version
//! [`CONSUMER_GROUP_KEY_VERSION`] with a JSON value; Kafka splits the same state over its key
//! versions 3 to 8, which a later change can adopt.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::membership::{GroupRecord, MemberRecord};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
/// Outside Kafka's key versions (0 to 8 in Kafka 4.1), so no Kafka tool mistakes it.
pub const CONSUMER_GROUP_KEY_VERSION: i16 = 0x5252;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// What a record is about; also its compaction key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsKey {
    Offset {
        group_id: String,
        topic: String,
        partition: i32,
    },
    ClassicGroup {
        group_id: String,
    },
    ConsumerGroup {
        group_id: String,
    },
}

impl OffsetsKey {
    pub fn group_id(&self) -> &str {
        match self {
            OffsetsKey::Offset { group_id, .. }
            | OffsetsKey::ClassicGroup { group_id }
            | OffsetsKey::ConsumerGroup { group_id } => group_id,
        }
    }
}

/// One committed offset (Kafka's `OffsetAndMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when the client did not say.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unreadable __consumer_offsets record: {0}")]
pub struct RecordError(String);

fn err(reason: impl Into<String>) -> RecordError {
    RecordError(reason.into())
}

pub fn encode_key(key: &OffsetsKey) -> Bytes {
    let mut buf = BytesMut::new();
    match key {
        OffsetsKey::Offset {
            group_id,
            topic,
            partition,
        } => {
            buf.put_i16(OFFSET_KEY_VERSION);
            put_string(&mut buf, group_id);
            put_string(&mut buf, topic);
            buf.put_i32(*partition);
        }
        OffsetsKey::ClassicGroup { group_id } => {
            buf.put_i16(GROUP_KEY_VERSION);
            put_string(&mut buf, group_id);
        }
        OffsetsKey::ConsumerGroup { group_id } => {
            buf.put_i16(CONSUMER_GROUP_KEY_VERSION);
            put_string(&mut buf, group_id);
        }
    }
    buf.freeze()
}

pub fn decode_key(mut bytes: &[u8]) -> Result<OffsetsKey, RecordError> {
    let version = get_i16(&mut bytes)?;
    let key = match version {
        0 | 1 => OffsetsKey::Offset {
            group_id: get_string(&mut bytes)?,
            topic: get_string(&mut bytes)?,
            partition: get_i32(&mut bytes)?,
        },
        2 => OffsetsKey::ClassicGroup {
            group_id: get_string(&mut bytes)?,
        },
        CONSUMER_GROUP_KEY_VERSION => OffsetsKey::ConsumerGroup {
            group_id: get_string(&mut bytes)?,
        },
        other => return Err(err(format!("unknown key version {other}"))),
    };
    Ok(key)
}

pub fn encode_offset(value: &CommittedOffset) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(OFFSET_VALUE_VERSION);
    buf.put_i64(value.offset);
    buf.put_i32(value.leader_epoch);
    put_string(&mut buf, &value.metadata);
    buf.put_i64(value.commit_timestamp_ms);
    buf.freeze()
}

/// Reads `OffsetCommitValue` v0 to v3 (v1 also carries an expiry, which is ignored: retention
/// is the broker's `offsets.retention.minutes`).
pub fn decode_offset(mut bytes: &[u8]) -> Result<CommittedOffset, RecordError> {
    let version = get_i16(&mut bytes)?;
    if !(0..=3).contains(&version) {
        return Err(err(format!("unknown offset value version {version}")));
    }
    let offset = get_i64(&mut bytes)?;
    let leader_epoch = if version >= 3 {
        get_i32(&mut bytes)?
    } else {
        -1
    };
    let metadata = get_string(&mut bytes)?;
    let commit_timestamp_ms = get_i64(&mut bytes)?;
    if version == 1 {
        get_i64(&mut bytes)?;
    }
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

pub fn encode_group(record: &GroupRecord) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_VALUE_VERSION);
    put_string(&mut buf, record.protocol_type.as_deref().unwrap_or(""));
    buf.put_i32(record.generation_id);
    put_nullable_string(&mut buf, record.protocol_name.as_deref());
    put_nullable_string(&mut buf, record.leader_id.as_deref());
    buf.put_i64(record.current_state_timestamp_ms);
    buf.put_i32(record.members.len() as i32);
    for m in &record.members {
        put_string(&mut buf, &m.member_id);
        put_nullable_string(&mut buf, m.group_instance_id.as_deref());
        put_string(&mut buf, &m.client_id);
        put_string(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

/// Reads `GroupMetadataValue` v0 to v3.
pub fn decode_group(mut bytes: &[u8]) -> Result<GroupRecord, RecordError> {
    let version = get_i16(&mut bytes)?;
    if !(0..=3).contains(&version) {
        return Err(err(format!("unknown group value version {version}")));
    }
    let protocol_type = get_string(&mut bytes)?;
    let generation_id = get_i32(&mut bytes)?;
    let protocol_name = get_nullable_string(&mut bytes)?;
    let leader_id = get_nullable_string(&mut bytes)?;
    let current_state_timestamp_ms = if version >= 2 {
        get_i64(&mut bytes)?
    } else {
        -1
    };
    let count = get_i32(&mut bytes)?;
    // Each member takes at least 28 bytes, so a count beyond that is a lie, not an allocation.
    if count < 0 || count as usize > bytes.len() / 28 {
        return Err(err(format!("{count} members in {} bytes", bytes.len())));
    }
    let mut members = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let member_id = get_string(&mut bytes)?;
        let group_instance_id = if version >= 3 {
            get_nullable_string(&mut bytes)?
        } else {
            None
        };
        let client_id = get_string(&mut bytes)?;
        let client_host = get_string(&mut bytes)?;
        let rebalance_timeout_ms = if version >= 1 {
            get_i32(&mut bytes)?
        } else {
            -1
        };
        let session_timeout_ms = get_i32(&mut bytes)?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
            session_timeout_ms
        } else {
            rebalance_timeout_ms
        };
        members.push(MemberRecord {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: get_bytes(&mut bytes)?,
            assignment: get_bytes(&mut bytes)?,
        });
    }
    Ok(GroupRecord {
        protocol_type: (!protocol_type.is_empty()).then_some(protocol_type),
        generation_id,
        protocol_name,
        leader_id,
        current_state_timestamp_ms,
        members,
    })
}

fn put_string(buf: &mut BytesMut, s: &str) {
    let len = i16::try_from(s.len()).expect("names are checked to fit a Kafka string");
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    let len = i32::try_from(b.len()).expect("request frames are far below 2 GiB");
    buf.put_i32(len);
    buf.put_slice(b);
}

fn need(bytes: &[u8], n: usize) -> Result<(), RecordError> {
    if bytes.len() < n {
        return Err(err(format!("{n} bytes needed, {} left", bytes.len())));
    }
    Ok(())
}

fn get_i16(bytes: &mut &[u8]) -> Result<i16, RecordError> {
    need(bytes, 2)?;
    Ok(bytes.get_i16())
}

fn get_i32(bytes: &mut &[u8]) -> Result<i32, RecordError> {
    need(bytes, 4)?;
    Ok(bytes.get_i32())
}

fn get_i64(bytes: &mut &[u8]) -> Result<i64, RecordError> {
    need(bytes, 8)?;
    Ok(bytes.get_i64())
}

fn get_nullable_string(bytes: &mut &[u8]) -> Result<Option<String>, RecordError> {
    let len = get_i16(bytes)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    need(bytes, len)?;
    let s = std::str::from_utf8(&bytes[..len])
        .map_err(|_| err("a string is not UTF-8"))?
        .to_string();
    bytes.advance(len);
    Ok(Some(s))
}

fn get_string(bytes: &mut &[u8]) -> Result<String, RecordError> {
    get_nullable_string(bytes)?.ok_or_else(|| err("a null string where one is required"))
}

fn get_bytes(bytes: &mut &[u8]) -> Result<Bytes, RecordError> {
    let len = get_i32(bytes)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    need(bytes, len)?;
    let b = Bytes::copy_from_slice(&bytes[..len]);
    bytes.advance(len);
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_match_kafkas_layout() {
        let key = OffsetsKey::Offset {
            group_id: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        let bytes = encode_key(&key);
        // version 1, "g", "t", partition 7: Kafka's OffsetCommitKey v1.
        assert_eq!(&bytes[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        assert_eq!(decode_key(&bytes), Ok(key));
        let group = OffsetsKey::ClassicGroup {
            group_id: "g".into(),
        };
        assert_eq!(&encode_key(&group)[..], &[0, 2, 0, 1, b'g']);
        assert_eq!(decode_key(&encode_key(&group)), Ok(group));
        let consumer = OffsetsKey::ConsumerGroup {
            group_id: "g".into(),
        };
        assert_eq!(decode_key(&encode_key(&consumer)), Ok(consumer));
    }

    #[test]
    fn values_round_trip() {
        let offset = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
        };
        assert_eq!(decode_offset(&encode_offset(&offset)), Ok(offset));
        let group = GroupRecord {
            protocol_type: Some("consumer".into()),
            generation_id: 5,
            protocol_name: Some("range".into()),
            leader_id: Some("m-1".into()),
            current_state_timestamp_ms: 99,
            members: vec![MemberRecord {
                member_id: "m-1".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group(&encode_group(&group)), Ok(group));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_key(&[]).is_err());
        assert!(decode_key(&[0, 9, 0, 0]).is_err());
        assert!(decode_key(&[0, 1, 0, 200, b'g']).is_err());
        assert!(decode_offset(&[0, 3, 0]).is_err());
        // A member count of 2^31-1 in a short value.
        let mut bomb = vec![0, 3, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255];
        bomb.extend_from_slice(&[0; 8]);
        bomb.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(decode_group(&bomb).is_err());
    }
}
