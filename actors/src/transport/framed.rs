//! Reading and writing length-prefixed frames on a byte stream.

use bytes::{Buf, BytesMut};
use runnel_protocol::node::{self, Frame, FrameError, FRAME_PREFIX_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::TransportError;

/// Initial read buffer; it grows to the largest frame seen.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Reads frames. Cancel-safe: the partial frame lives in `buf`, so dropping a pending
/// `next` inside `select!` loses no bytes.
pub(crate) struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        FrameReader {
            reader,
            buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
        }
    }

    /// The next frame, or `None` at a clean end of stream.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            if self.buf.len() >= FRAME_PREFIX_BYTES {
                let len = u32::from_be_bytes(
                    self.buf[..FRAME_PREFIX_BYTES]
                        .try_into()
                        .expect("slice has the prefix length"),
                ) as usize;
                node::check_frame_size(len as u64)?;
                if self.buf.len() >= FRAME_PREFIX_BYTES + len {
                    self.buf.advance(FRAME_PREFIX_BYTES);
                    let body = self.buf.split_to(len).freeze();
                    return Ok(Some(node::decode_frame_body(body)?));
                }
                self.buf.reserve(FRAME_PREFIX_BYTES + len - self.buf.len());
            }
            let n = self.reader.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(TransportError::Frame(FrameError::Malformed(format!(
                        "stream ended inside a frame ({} bytes buffered)",
                        self.buf.len()
                    ))))
                };
            }
        }
    }
}

/// Writes one frame and flushes it (madsim's simulated stream sends only on flush).
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
) -> Result<(), TransportError> {
    let wire = node::encode_frame(frame)?;
    writer.write_all(&wire).await?;
    writer.flush().await?;
    Ok(())
}
