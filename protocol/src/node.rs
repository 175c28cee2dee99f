//! Node-to-node frames: a 4-byte big-endian length prefix, then a prost-encoded [`Frame`].
//!
//! The length is checked against a maximum before any body byte is read, so a hostile or
//! corrupt peer cannot make a node allocate more than [`MAX_FRAME_SIZE_BYTES`].

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

/// Largest frame body a node accepts or sends (16 MiB).
pub const MAX_FRAME_SIZE_BYTES: u32 = 16 * 1024 * 1024;

/// Size of the length prefix in front of every frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// What a frame is: the first frame on every connection is a `Hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum FrameKind {
    Unspecified = 0,
    /// Names the connecting node; `payload` is empty.
    Hello = 1,
    /// Expects a `Response` with the same `correlation_id`.
    Request = 2,
    Response = 3,
    /// Fire and forget.
    OneWay = 4,
    /// Liveness probe; answered with `Pong` carrying the same `correlation_id`.
    Ping = 5,
    Pong = 6,
    /// The service could not handle the request; `payload` holds a UTF-8 reason.
    Error = 7,
}

/// The envelope of every message between nodes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    #[prost(enumeration = "FrameKind", tag = "1")]
    pub kind: i32,
    #[prost(uint64, tag = "2")]
    pub correlation_id: u64,
    /// The node that sent the frame.
    #[prost(uint64, tag = "3")]
    pub from_node: u64,
    /// Which registered service on the receiving node handles the payload.
    #[prost(string, tag = "4")]
    pub service: String,
    #[prost(bytes = "bytes", tag = "5")]
    pub payload: Bytes,
}

impl Frame {
    pub fn new(kind: FrameKind, correlation_id: u64, from_node: u64) -> Self {
        Frame {
            kind: kind as i32,
            correlation_id,
            from_node,
            service: String::new(),
            payload: Bytes::new(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {size_bytes} bytes exceeds the limit of {MAX_FRAME_SIZE_BYTES} bytes")]
    TooLarge { size_bytes: u64 },
    #[error("frame body does not decode: {0}")]
    Malformed(String),
}

/// Encodes a frame with its length prefix, ready to write to a socket.
pub fn encode_frame(frame: &Frame) -> Result<Bytes, FrameError> {
    let body_len = frame.encoded_len();
    check_frame_size(body_len as u64)?;
    let mut buf = BytesMut::with_capacity(FRAME_PREFIX_BYTES + body_len);
    buf.put_u32(body_len as u32);
    frame
        .encode(&mut buf)
        .expect("the buffer was sized from encoded_len");
    Ok(buf.freeze())
}

/// Checks a length prefix read off the wire before its body is read.
pub fn check_frame_size(size_bytes: u64) -> Result<(), FrameError> {
    if size_bytes > u64::from(MAX_FRAME_SIZE_BYTES) {
        return Err(FrameError::TooLarge { size_bytes });
    }
    Ok(())
}

/// Decodes a frame body (the bytes after the length prefix).
pub fn decode_frame_body(body: Bytes) -> Result<Frame, FrameError> {
    check_frame_size(body.len() as u64)?;
    Frame::decode(body).map_err(|e| FrameError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips_with_its_length_prefix() {
        let mut frame = Frame::new(FrameKind::Request, 42, 3);
        frame.service = "counter".into();
        frame.payload = Bytes::from_static(b"hello");
        let wire = encode_frame(&frame).expect("small frame encodes");
        let len = u32::from_be_bytes(wire[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(len, wire.len() - FRAME_PREFIX_BYTES);
        let back = decode_frame_body(wire.slice(FRAME_PREFIX_BYTES..)).expect("decodes");
        assert_eq!(back, frame);
        assert_eq!(back.kind(), FrameKind::Request);
    }

    #[test]
    fn oversized_and_garbage_frames_are_refused() {
        assert_eq!(
            check_frame_size(u64::from(MAX_FRAME_SIZE_BYTES) + 1),
            Err(FrameError::TooLarge {
                size_bytes: u64::from(MAX_FRAME_SIZE_BYTES) + 1
            })
        );
        assert!(check_frame_size(u64::from(MAX_FRAME_SIZE_BYTES)).is_ok());
        // A field header announcing a length-delimited field longer than the buffer.
        let garbage = Bytes::from_static(&[0x2a, 0xff, 0xff, 0xff, 0x0f, 0x01]);
        assert!(matches!(
            decode_frame_body(garbage),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_kind_reads_as_unspecified() {
        let mut frame = Frame::new(FrameKind::Ping, 1, 1);
        frame.kind = 99;
        assert_eq!(frame.kind(), FrameKind::Unspecified);
    }
}
