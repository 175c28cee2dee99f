//! A response frame in pieces, so a fetch's record sets go to the socket from the buffers
//! the log read them into instead of being copied into the frame first: that copy was
//! nearly all of a consume's user-space instructions (about one per byte served).
//!
//! `kafka-protocol` encodes a `Bytes` field by copying it, and offers no hook. So each
//! large record set is swapped for a 16-byte placeholder, the response is encoded, and
//! the frame is cut at the placeholders; the pieces between are small and copied, the
//! record sets are shared. Every cut is checked (placeholders found once each, in order,
//! behind the length prefix their size gives): when anything does not match, the frame
//! is encoded the ordinary way, copy included.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};

use super::{encode_response, EncodeError, SIZE_PREFIX_BYTES};

/// Record sets shorter than this are copied: a piece costs more than a small copy.
pub const SHARE_MIN_BYTES: usize = 4 * 1024;
/// Fetch v12 is the first flexible version: its records carry a varint length.
const FETCH_FIRST_FLEXIBLE_VERSION: i16 = 12;
/// Bytes no encoded field but a record set holds: topic names are `[a-zA-Z0-9._-]`.
const MARK: [u8; 12] = *b"\xff\x00runnel-rec";
const PLACEHOLDER_BYTES: usize = MARK.len() + 4;

/// A response frame: its size prefix and bytes, in pieces to write in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFrame {
    parts: Vec<Bytes>,
}

impl ResponseFrame {
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The whole frame's size, its size prefix included.
    pub fn size_bytes(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// The frame in one buffer (a copy when it is in pieces).
    pub fn to_bytes(&self) -> Bytes {
        if let [only] = self.parts.as_slice() {
            return only.clone();
        }
        let mut buf = BytesMut::with_capacity(self.size_bytes());
        for part in &self.parts {
            buf.put_slice(part);
        }
        buf.freeze()
    }
}

/// Like [`encode_response`], with a fetch's large record sets shared rather than copied.
pub fn encode_response_parts(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<ResponseFrame, EncodeError> {
    let whole = || {
        encode_response(api_key, version, correlation_id, body)
            .map(|frame| ResponseFrame { parts: vec![frame] })
    };
    let ResponseKind::Fetch(fetch) = body else {
        return whole();
    };
    let mut shared = Vec::new();
    let mut marked = fetch.clone();
    for partition in marked.responses.iter_mut().flat_map(|t| &mut t.partitions) {
        if let Some(records) = partition.records.as_mut() {
            if records.len() >= SHARE_MIN_BYTES {
                let placeholder = placeholder(shared.len());
                shared.push(std::mem::replace(records, placeholder));
            }
        }
    }
    if shared.is_empty() {
        return whole();
    }
    let encoded = encode_response(
        api_key,
        version,
        correlation_id,
        &ResponseKind::Fetch(marked),
    )?;
    let flexible = version >= FETCH_FIRST_FLEXIBLE_VERSION;
    match cut(&encoded, &shared, flexible) {
        Some(parts) => Ok(ResponseFrame { parts }),
        None => whole(),
    }
}

fn placeholder(index: usize) -> Bytes {
    let index = u32::try_from(index).expect("fewer than 2^32 partitions in a response");
    let mut buf = BytesMut::with_capacity(PLACEHOLDER_BYTES);
    buf.put_slice(&MARK);
    buf.put_u32(index);
    buf.freeze()
}

/// The frame cut at each placeholder, the record sets put in their places with their
/// own length prefixes; `None` when the encoded frame is not as expected.
fn cut(encoded: &Bytes, shared: &[Bytes], flexible: bool) -> Option<Vec<Bytes>> {
    let placeholder_prefix = length_prefix(PLACEHOLDER_BYTES, flexible)?;
    let mut parts = Vec::with_capacity(2 * shared.len() + 1);
    let mut piece = BytesMut::new();
    piece.put_i32(0); // the size, once it is known
    let mut from = SIZE_PREFIX_BYTES;
    for (index, records) in shared.iter().enumerate() {
        let at = from + find(&encoded[from..], &placeholder(index))?;
        let prefix_at = at.checked_sub(placeholder_prefix.len())?;
        if prefix_at < from || encoded[prefix_at..at] != placeholder_prefix[..] {
            return None;
        }
        piece.put_slice(&encoded[from..prefix_at]);
        piece.put_slice(&length_prefix(records.len(), flexible)?);
        parts.push(std::mem::take(&mut piece).freeze());
        parts.push(records.clone());
        from = at + PLACEHOLDER_BYTES;
    }
    // One mark per record set shared: none was found where a record set was not put.
    let marks = encoded.windows(MARK.len()).filter(|w| *w == MARK).count();
    if marks != shared.len() {
        return None;
    }
    parts.push(encoded.slice(from..));
    let size: usize = parts.iter().map(Bytes::len).sum::<usize>() - SIZE_PREFIX_BYTES;
    let size = i32::try_from(size).ok()?;
    let mut first = BytesMut::from(&parts[0][..]);
    first[..SIZE_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
    parts[0] = first.freeze();
    Some(parts)
}

/// How a records field's length is encoded: NULLABLE_BYTES (int32), or COMPACT (varint
/// of length + 1) in flexible versions.
fn length_prefix(len: usize, flexible: bool) -> Option<Vec<u8>> {
    if !flexible {
        return Some(i32::try_from(len).ok()?.to_be_bytes().to_vec());
    }
    let mut value = u32::try_from(len.checked_add(1)?).ok()?;
    let mut out = Vec::with_capacity(5);
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    Some(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{
        FetchableTopicResponse, PartitionData as FetchPartition,
    };
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn fetch(records: &[Option<Bytes>]) -> ResponseKind {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                FetchPartition::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(1_000 + i as i64)
                    .with_records(r.clone())
            })
            .collect();
        ResponseKind::Fetch(FetchResponse::default().with_responses(
            vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(partitions)],
        ))
    }

    fn records(len: usize, seed: u8) -> Bytes {
        (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect()
    }

    #[test]
    fn the_pieces_are_the_copied_frame_in_every_fetch_version() {
        let body = fetch(&[
            Some(records(10_000, 7)),
            None,
            Some(records(100, 3)),
            Some(records(200_000, 11)),
        ]);
        for version in 4..=17 {
            let copied = encode_response(ApiKey::Fetch, version, 42, &body).expect("encodes");
            let frame = encode_response_parts(ApiKey::Fetch, version, 42, &body).expect("encodes");
            assert_eq!(frame.parts().len(), 5, "v{version}: two record sets shared");
            assert_eq!(frame.to_bytes(), copied, "v{version}");
            assert_eq!(frame.size_bytes(), copied.len());
        }
    }

    #[test]
    fn shared_record_sets_are_not_copied() {
        let big = records(50_000, 5);
        let body = fetch(&[Some(big.clone())]);
        let frame = encode_response_parts(ApiKey::Fetch, 16, 1, &body).expect("encodes");
        assert_eq!(
            frame.parts()[1].as_ptr(),
            big.as_ptr(),
            "the log's buffer itself"
        );
    }

    #[test]
    fn a_mark_inside_a_small_record_set_falls_back_to_the_copy() {
        // A copied record set that happens to hold the mark: the cut cannot be trusted.
        let mut tricky = BytesMut::from(&MARK[..]);
        tricky.put_u32(0);
        let body = fetch(&[Some(tricky.freeze()), Some(records(8_000, 9))]);
        let copied = encode_response(ApiKey::Fetch, 12, 7, &body).expect("encodes");
        let frame = encode_response_parts(ApiKey::Fetch, 12, 7, &body).expect("encodes");
        assert_eq!(frame.parts().len(), 1, "encoded whole");
        assert_eq!(frame.to_bytes(), copied);
    }

    #[test]
    fn a_fetch_of_small_record_sets_is_one_piece() {
        let body = fetch(&[Some(records(100, 1))]);
        let frame = encode_response_parts(ApiKey::Fetch, 16, 3, &body).expect("encodes");
        assert_eq!(frame.parts().len(), 1);
    }
}
