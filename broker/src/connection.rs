//! One client connection: read frames, handle requests one at a time, answer in order.
//!
//! A reader task reads ahead up to [`MAX_QUEUED_REQUESTS`] frames, so pipelined requests
//! wait in a bounded queue instead of on the client. Requests are handled strictly in
//! arrival order, as Kafka does, so an idempotent producer's batches on one connection
//! are appended in the order it sent them.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use runnel_protocol::kafka::{self, ApiKey, RequestError, ResponseKind};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::{handlers, versions, Broker};

/// Frames read ahead of the one being handled.
pub const MAX_QUEUED_REQUESTS: usize = 16;

/// Serves one client until it closes, errs, idles out, or `draining` turns true: then
/// the request being handled is answered and the connection closes.
pub async fn run(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut draining: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (frames_tx, mut frames_rx) = mpsc::channel::<Bytes>(MAX_QUEUED_REQUESTS);
    let max_bytes = broker.config.socket_request_max_bytes;
    let read_task = tokio::spawn(async move {
        loop {
            match kafka::read_frame(&mut reader, max_bytes).await {
                Ok(Some(frame)) => {
                    if frames_tx.send(frame).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "closing connection");
                    return;
                }
            }
        }
    });
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    loop {
        let next = tokio::select! {
            biased;
            _ = draining.wait_for(|d| *d) => {
                tracing::debug!(%peer, "closing the connection: the broker is shutting down");
                break;
            }
            next = tokio::time::timeout(idle, frames_rx.recv()) => next,
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                tracing::debug!(%peer, "closing idle connection");
                break;
            }
        };
        let response = match kafka::decode_request(frame, versions::supported_versions) {
            Ok(request) => {
                let (api_key, version, correlation_id) =
                    (request.api_key, request.version, request.correlation_id());
                let span = tracing::debug_span!("request", ?api_key, version, correlation_id);
                let _guard = span.enter();
                // `None` for acks=0 produce: Kafka sends nothing back.
                handlers::handle(&broker, request, peer)
                    .await
                    .map(|body| (api_key, version, correlation_id, body))
            }
            Err(RequestError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => {
                // KIP-511: answer in v0 with the versions we do serve, so the client retries.
                let body = handlers::api_versions::unsupported_version();
                Some((
                    ApiKey::ApiVersions,
                    0,
                    correlation_id,
                    ResponseKind::ApiVersions(body),
                ))
            }
            Err(error) => {
                tracing::warn!(%peer, %error, "closing connection after a bad request");
                break;
            }
        };
        if let Some((api_key, version, correlation_id, body)) = response {
            let frame = match kafka::encode_response_parts(api_key, version, correlation_id, &body)
            {
                Ok(frame) => frame,
                Err(error) => {
                    tracing::error!(%peer, ?api_key, version, %error, "cannot encode a response");
                    break;
                }
            };
            if write_parts(&mut writer, frame.parts()).await.is_err()
                || writer.flush().await.is_err()
            {
                break;
            }
        }
    }
    read_task.abort();
}

/// Writes every piece of a frame, as few system calls as the socket allows.
async fn write_parts<W: AsyncWrite + Unpin>(writer: &mut W, parts: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        let written = writer.write_vectored(rest).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, written);
    }
    Ok(())
}
