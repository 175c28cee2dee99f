//! Kafka's wire framing and the request/response codec over the `kafka-protocol` crate.
//!
//! A Kafka frame is a 4-byte big-endian size and then that many bytes: a request header
//! (api key, api version, correlation id, client id, tagged fields for flexible versions)
//! and the body. Responses carry a header with the correlation id; ApiVersions responses
//! always use header version 0 so that a client can read them before it knows our versions.
//!
//! [`decode_request`] takes the table of what a server serves (the broker keeps its own);
//! [`read_frame`] is the one frame reader, used by the broker, the client and the
//! simulator's wire client.

use bytes::{Buf, BufMut, Bytes, BytesMut};
pub use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::messages::{ResponseHeader, TopicName};
pub use kafka_protocol::protocol::VersionRange;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
pub use kafka_protocol::ResponseError;
use tokio::io::{AsyncRead, AsyncReadExt};

mod response_parts;
pub use response_parts::{encode_response_parts, ResponseFrame};

/// `socket.request.max.bytes`'s default: the largest request a broker reads.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;
pub const SIZE_PREFIX_BYTES: usize = 4;
/// Api key, api version and correlation id: the part of a header every version shares.
pub const HEADER_PREFIX_BYTES: usize = 8;

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

impl Request {
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }
}

/// Why a frame is not a request we can serve. Every variant but `TooShort` knows the
/// correlation id, so the broker can answer where Kafka would.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("a request of {size_bytes} bytes is shorter than a request header")]
    TooShort { size_bytes: usize },
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("{api_key:?} version {version} is not supported")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// Why a size prefix is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {size} is negative")]
    Negative { size: i32 },
    #[error("frame of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { size_bytes: usize, max_bytes: usize },
}

/// A message the crate could not encode (a field out of its version's range).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode: {0}")]
pub struct EncodeError(pub String);

/// Checks a frame's size prefix against `max_bytes` (socket.request.max.bytes).
pub fn check_frame_size(prefix: [u8; 4], max_bytes: usize) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes(prefix);
    if size < 0 {
        return Err(FrameError::Negative { size });
    }
    let size_bytes = size as usize;
    if size_bytes > max_bytes {
        return Err(FrameError::TooLarge {
            size_bytes,
            max_bytes,
        });
    }
    Ok(size_bytes)
}

/// Why [`read_frame`] could not read a frame.
#[derive(Debug, thiserror::Error)]
pub enum ReadFrameError {
    #[error(transparent)]
    Size(#[from] FrameError),
    #[error("the connection closed after {read_bytes} of a {size_bytes}-byte frame")]
    Truncated {
        read_bytes: usize,
        size_bytes: usize,
    },
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Frames up to this size are read into a buffer allocated once; larger ones grow with
/// the bytes that arrive, so a size prefix alone cannot make the reader allocate much.
const INITIAL_FRAME_CAPACITY_BYTES: usize = 1 << 20;

/// Reads one size-prefixed frame and returns it without its prefix; `Ok(None)` when the
/// stream ends cleanly before a frame starts.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> Result<Option<Bytes>, ReadFrameError> {
    let mut prefix = [0u8; SIZE_PREFIX_BYTES];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size_bytes = check_frame_size(prefix, max_bytes)?;
    let mut frame = Vec::with_capacity(size_bytes.min(INITIAL_FRAME_CAPACITY_BYTES));
    let read_bytes = (&mut *reader)
        .take(size_bytes as u64)
        .read_to_end(&mut frame)
        .await?;
    if read_bytes < size_bytes {
        return Err(ReadFrameError::Truncated {
            read_bytes,
            size_bytes,
        });
    }
    Ok(Some(Bytes::from(frame)))
}

/// Decodes one request frame (without its size prefix), admitting only the versions
/// `supported` gives (`None`: an API not served). Never panics on any input.
pub fn decode_request(
    mut frame: Bytes,
    supported: impl Fn(ApiKey) -> Option<VersionRange>,
) -> Result<Request, RequestError> {
    if frame.len() < HEADER_PREFIX_BYTES {
        return Err(RequestError::TooShort {
            size_bytes: frame.len(),
        });
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|()| RequestError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let supported = supported(api_key).ok_or(RequestError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    if version < supported.min || version > supported.max {
        return Err(RequestError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| RequestError::Malformed {
        api_key,
        version,
        correlation_id,
        reason,
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| malformed(format!("header: {e}")))?;
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| malformed(format!("{e:#}")))?;
    // Kafka ignores bytes after the body, and librdkafka 2.x sends some: its "all topics"
    // Metadata request leaves fields after the null topic array.
    if frame.has_remaining() {
        tracing::debug!(
            ?api_key,
            version,
            left_over = frame.remaining(),
            "ignoring bytes after a request body"
        );
    }
    Ok(Request {
        api_key,
        version,
        header,
        body,
    })
}

/// Encodes a request frame, size prefix included (the client's side).
pub fn encode_request(header: &RequestHeader, body: &RequestKind) -> Result<Bytes, EncodeError> {
    let api_key = ApiKey::try_from(header.request_api_key)
        .map_err(|()| EncodeError("unknown api key".into()))?;
    let version = header.request_api_version;
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .map_err(|e| EncodeError(e.to_string()))?;
    body.encode(&mut buf, version)
        .map_err(|e| EncodeError(e.to_string()))?;
    finish_frame(buf).ok_or_else(|| EncodeError("frame over 2 GiB".into()))
}

/// Encodes a response frame, size prefix included (the broker's side).
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    // Sized up front: growing by doubling would copy a large fetch response several times.
    let mut buf = BytesMut::with_capacity(response_size_hint(body));
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| EncodeError(e.to_string()))?;
    body.encode(&mut buf, version)
        .map_err(|e| EncodeError(e.to_string()))?;
    finish_frame(buf).ok_or_else(|| EncodeError("frame over 2 GiB".into()))
}

/// Roughly the encoded size of a response: its record bytes plus room for the rest.
fn response_size_hint(body: &ResponseKind) -> usize {
    const OVERHEAD_BYTES: usize = 1024;
    let records: usize = match body {
        ResponseKind::Fetch(fetch) => fetch
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()) + 64)
            .sum(),
        _ => 0,
    };
    records + OVERHEAD_BYTES
}

fn finish_frame(mut buf: BytesMut) -> Option<Bytes> {
    let size = i32::try_from(buf.len() - SIZE_PREFIX_BYTES).ok()?;
    buf[..SIZE_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
    Some(buf.freeze())
}

/// Decodes a response frame (without its size prefix) to a request of `api_key` at
/// `version`; returns the correlation id and the body (the client's side).
pub fn decode_response(
    api_key: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> Result<(i32, ResponseKind), ResponseDecodeError> {
    let malformed = |reason: String| ResponseDecodeError {
        api_key,
        version,
        reason,
    };
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
        .map_err(|e| malformed(format!("header: {e}")))?;
    let body = ResponseKind::decode(api_key, &mut frame, version)
        .map_err(|e| malformed(format!("{e:#}")))?;
    Ok((header.correlation_id, body))
}

/// A response frame that does not decode as the answer to the request it matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {api_key:?} v{version} response: {reason}")]
pub struct ResponseDecodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// Why a name is not a valid Kafka topic name; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTopicName(String);

/// A topic name as the crate spells it.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Kafka's topic name rules: 1 to 249 characters of ASCII letters, digits, '.', '_' and
/// '-', and neither "." nor "..".
pub fn validate_topic_name(name: &str) -> Result<(), InvalidTopicName> {
    if name.is_empty() {
        return Err(InvalidTopicName("a topic name cannot be empty".into()));
    }
    if name == "." || name == ".." {
        return Err(InvalidTopicName(format!(
            "a topic name cannot be \"{name}\""
        )));
    }
    if name.len() > 249 {
        return Err(InvalidTopicName(format!(
            "a topic name can be at most 249 characters, and this one has {}",
            name.len()
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(InvalidTopicName(format!(
            "topic name {name:?} contains {bad:?}; use ASCII letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::MetadataRequest;

    use super::*;

    /// A server that serves everything the crate can decode but EndTxn.
    fn decode(frame: Bytes) -> Result<Request, RequestError> {
        decode_request(frame, |key| match key {
            ApiKey::EndTxn => None,
            key => Some(key.valid_versions()),
        })
    }

    fn metadata_frame(version: i16) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(version)
            .with_correlation_id(42);
        let body = RequestKind::Metadata(MetadataRequest::default().with_topics(None));
        encode_request(&header, &body)
            .expect("encodes")
            .slice(SIZE_PREFIX_BYTES..)
    }

    #[test]
    fn requests_round_trip_and_trailing_bytes_are_ignored_as_kafka_does() {
        let request = decode(metadata_frame(12)).expect("decodes");
        assert_eq!(
            (request.api_key, request.version, request.correlation_id()),
            (ApiKey::Metadata, 12, 42)
        );
        // What librdkafka 2.16 sends for "all topics": bytes after the null topic array.
        let mut padded = metadata_frame(12).to_vec();
        padded.extend_from_slice(&[0, 0, 0]);
        let again = decode(Bytes::from(padded)).expect("trailing bytes are ignored");
        assert_eq!(again, request);
    }

    #[test]
    fn bad_frames_get_precise_errors() {
        assert_eq!(
            decode(Bytes::from_static(&[0, 3, 0])),
            Err(RequestError::TooShort { size_bytes: 3 })
        );
        let unknown = [
            &999i16.to_be_bytes()[..],
            &0i16.to_be_bytes(),
            &7i32.to_be_bytes(),
        ]
        .concat();
        assert!(matches!(
            decode(Bytes::from(unknown)),
            Err(RequestError::UnknownApiKey {
                api_key: 999,
                correlation_id: 7
            })
        ));
        let mut future = metadata_frame(12).to_vec();
        future[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode(Bytes::from(future)),
            Err(RequestError::UnsupportedVersion { version: 99, .. })
        ));
        let truncated = metadata_frame(12).slice(..10);
        assert!(matches!(
            decode(truncated),
            Err(RequestError::Malformed { .. })
        ));
        assert_eq!(
            check_frame_size((-1i32).to_be_bytes(), 100),
            Err(FrameError::Negative { size: -1 })
        );
        assert!(matches!(
            check_frame_size(101i32.to_be_bytes(), 100),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(check_frame_size(100i32.to_be_bytes(), 100), Ok(100));
    }

    #[test]
    fn a_count_larger_than_the_frame_is_refused_before_allocating() {
        // Metadata v0 claiming 2^31 - 1 topics in five bytes, about 150 GB of topic structs:
        // unpatched, the codec asks the allocator for that and the process aborts. The
        // vendored patch (vendor/kafka-protocol/RUNNEL-PATCH.md) makes it an error.
        let bomb = [
            &3i16.to_be_bytes()[..],
            &0i16.to_be_bytes(),
            &7i32.to_be_bytes(),
            &[0, 0],
            &i32::MAX.to_be_bytes(),
            &[0],
        ]
        .concat();
        assert!(matches!(
            decode(Bytes::from(bomb)),
            Err(RequestError::Malformed { .. })
        ));
    }

    #[test]
    fn a_table_without_an_api_refuses_it() {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::EndTxn as i16)
            .with_request_api_version(3)
            .with_correlation_id(9);
        let body = RequestKind::EndTxn(Default::default());
        let frame = encode_request(&header, &body).expect("encodes");
        assert!(matches!(
            decode(frame.slice(SIZE_PREFIX_BYTES..)),
            Err(RequestError::UnknownApiKey {
                correlation_id: 9,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn frames_are_read_whole_or_refused() {
        let mut two = Vec::new();
        for body in [&b"abc"[..], b""] {
            two.extend_from_slice(&(body.len() as i32).to_be_bytes());
            two.extend_from_slice(body);
        }
        let mut reader = &two[..];
        let first = read_frame(&mut reader, 100).await.expect("reads");
        assert_eq!(first.as_deref(), Some(&b"abc"[..]));
        let second = read_frame(&mut reader, 100).await.expect("reads");
        assert_eq!(second.as_deref(), Some(&b""[..]));
        assert!(read_frame(&mut reader, 100)
            .await
            .expect("clean end")
            .is_none());

        let mut short = &[0u8, 0, 0, 5, b'x', b'y'][..];
        assert!(matches!(
            read_frame(&mut short, 100).await,
            Err(ReadFrameError::Truncated {
                read_bytes: 2,
                size_bytes: 5
            })
        ));
        let mut large = &[0u8, 0, 1, 0][..];
        assert!(matches!(
            read_frame(&mut large, 100).await,
            Err(ReadFrameError::Size(FrameError::TooLarge { .. }))
        ));
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("quickstart-events.v1_2").is_ok());
        for bad in ["", ".", "..", "a b", "ümlaut", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
