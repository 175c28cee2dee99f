//! One TCP connection to a Kafka broker: framing, correlation ids, pipelined requests
//! answered by correlation id, ApiVersions negotiation, and a bounded in-flight window.
//!
//! A writer task sends frames in the order requests were issued (so requests to one
//! partition stay ordered); a reader task hands each response to the request waiting for
//! its correlation id. When either side fails, every waiting request fails at once and
//! the connection reports itself closed, so the cluster view opens a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use runnel_protocol::kafka::{self, ApiKey, ReadFrameError, RequestHeader, SIZE_PREFIX_BYTES};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::error::KafkaError;

/// How a connection behaves; every bound is explicit.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Sent in every request header; brokers log it.
    pub client_id: String,
    pub connect_timeout_ms: u64,
    /// How long a request may wait for its answer, queueing included.
    pub request_timeout_ms: u64,
    /// Requests sent and not yet answered (Kafka's max.in.flight.requests.per.connection).
    pub max_in_flight: usize,
    /// The largest response frame accepted; larger ones close the connection.
    pub max_response_bytes: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: "runnel".into(),
            connect_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_in_flight: 32,
            max_response_bytes: 256 << 20,
        }
    }
}

/// The versions of each API this client can fill in correctly: the crate's range narrowed
/// where a newer version needs something we do not send (topic ids in Produce 13 and
/// Fetch 13+).
pub fn client_versions(api: ApiKey) -> Option<(i16, i16)> {
    let ours = match api {
        ApiKey::Produce => (3, 12),
        ApiKey::Fetch => (4, 12),
        ApiKey::ListOffsets => (1, 9),
        ApiKey::Metadata => (1, 12),
        ApiKey::ApiVersions => (0, 3),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::DeleteTopics => (1, 6),
        ApiKey::CreatePartitions => (0, 3),
        ApiKey::DescribeConfigs => (1, 4),
        ApiKey::IncrementalAlterConfigs => (0, 1),
        ApiKey::InitProducerId => (0, 5),
        // Groups: from the versions Kafka 4 still serves (KIP-896), up to the newest that
        // need nothing we lack (OffsetCommit and OffsetFetch 10 want topic ids).
        ApiKey::FindCoordinator => (1, 6),
        ApiKey::JoinGroup => (2, 9),
        ApiKey::SyncGroup => (0, 5),
        ApiKey::Heartbeat => (0, 4),
        ApiKey::LeaveGroup => (0, 5),
        ApiKey::OffsetCommit => (2, 9),
        ApiKey::OffsetFetch => (2, 9),
        ApiKey::OffsetDelete => (0, 0),
        ApiKey::DescribeGroups => (0, 6),
        ApiKey::ListGroups => (0, 5),
        ApiKey::DeleteGroups => (0, 2),
        // v0: the coordinator names new members (v1 wants a client-chosen UUID).
        ApiKey::ConsumerGroupHeartbeat => (0, 0),
        ApiKey::ConsumerGroupDescribe => (0, 1),
        ApiKey::DescribeQuorum => (0, 2),
        _ => return None,
    };
    let crate_range = api.valid_versions();
    let min = ours.0.max(crate_range.min);
    let max = ours.1.min(crate_range.max);
    (min <= max).then_some((min, max))
}

type Reply = oneshot::Sender<Result<Bytes, KafkaError>>;

struct Pending {
    waiting: HashMap<i32, Reply>,
    /// Why the connection closed; once set, no request is registered any more.
    closed: Option<String>,
}

struct Shared {
    addr: String,
    pending: Mutex<Pending>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the map inconsistent, so go on.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails every waiting request and refuses new ones.
    fn close(&self, reason: String) {
        let waiting = {
            let mut p = self.lock();
            if p.closed.is_none() {
                p.closed = Some(reason.clone());
            }
            std::mem::take(&mut p.waiting)
        };
        for (_, reply) in waiting {
            let _ = reply.send(Err(KafkaError::Disconnected {
                addr: self.addr.clone(),
                reason: reason.clone(),
            }));
        }
    }
}

/// A connection to one broker; cheap to clone, closed when the last clone is dropped.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

/// A frame for the writer; `written` is told once its bytes are in the socket.
struct Outgoing {
    frame: Bytes,
    written: Option<oneshot::Sender<()>>,
}

struct Inner {
    shared: Arc<Shared>,
    frames: mpsc::Sender<Outgoing>,
    in_flight: Arc<Semaphore>,
    next_correlation_id: AtomicI32,
    /// The broker's version range per API key, learned once at connect.
    broker_versions: OnceLock<HashMap<i16, (i16, i16)>>,
    config: ConnectionConfig,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.inner.shared.addr)
            .finish()
    }
}

impl Connection {
    /// Connects to `addr` (HOST:PORT) and negotiates API versions.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Connection, KafkaError> {
        let connect_error = |reason: String| KafkaError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let stream = match tokio::time::timeout(
            Duration::from_millis(config.connect_timeout_ms),
            TcpStream::connect(addr),
        )
        .await
        {
            Err(_) => {
                return Err(connect_error(format!(
                    "no answer within {} ms",
                    config.connect_timeout_ms
                )))
            }
            Ok(Err(e)) => return Err(connect_error(io_reason(&e))),
            Ok(Ok(stream)) => stream,
        };
        // Requests are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let (reader, writer) = tokio::io::split(stream);
        let shared = Arc::new(Shared {
            addr: addr.to_string(),
            pending: Mutex::new(Pending {
                waiting: HashMap::new(),
                closed: None,
            }),
        });
        let max_in_flight = config.max_in_flight.max(1);
        let (frames, frames_rx) = mpsc::channel(max_in_flight);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        tokio::spawn(write_loop(writer, frames_rx, shared.clone(), stop_tx));
        tokio::spawn(read_loop(
            reader,
            shared.clone(),
            stop_rx,
            config.max_response_bytes,
        ));
        let conn = Connection {
            inner: Arc::new(Inner {
                shared,
                frames,
                in_flight: Arc::new(Semaphore::new(max_in_flight)),
                next_correlation_id: AtomicI32::new(0),
                broker_versions: OnceLock::new(),
                config,
            }),
        };
        conn.negotiate().await?;
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.inner.shared.addr
    }

    pub fn is_closed(&self) -> bool {
        self.inner.shared.lock().closed.is_some()
    }

    /// Asks for the broker's versions at the newest ApiVersions we speak, falling back to
    /// v0 when the broker is older (it then answers UNSUPPORTED_VERSION in the v0 format).
    async fn negotiate(&self) -> Result<(), KafkaError> {
        let (_, max) = client_versions(ApiKey::ApiVersions).expect("ApiVersions is always ours");
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("runnel"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = match self.call_at(max, &request).await {
            Ok(r) if r.error_code == 0 => r,
            Ok(_) | Err(KafkaError::Protocol { .. }) => {
                self.call_at(0, &ApiVersionsRequest::default()).await?
            }
            Err(e) => return Err(e),
        };
        super::error::check(
            response.error_code,
            || format!("ApiVersions with {}", self.addr()),
            None,
        )?;
        let versions = versions_of(&response);
        let _ = self.inner.broker_versions.set(versions);
        Ok(())
    }

    /// The newest version of `api` both sides speak.
    pub fn version(&self, api: ApiKey) -> Result<i16, KafkaError> {
        let (client_min, client_max) = client_versions(api).ok_or(KafkaError::UnsupportedApi {
            api,
            addr: self.addr().to_string(),
        })?;
        let broker = self
            .inner
            .broker_versions
            .get()
            .and_then(|v| v.get(&(api as i16)).copied())
            .ok_or(KafkaError::UnsupportedApi {
                api,
                addr: self.addr().to_string(),
            })?;
        let max = client_max.min(broker.1);
        if max < client_min.max(broker.0) {
            return Err(KafkaError::UnsupportedVersion {
                api,
                addr: self.addr().to_string(),
                broker_min: broker.0,
                broker_max: broker.1,
                client_min,
                client_max,
            });
        }
        Ok(max)
    }

    /// Sends `request` at the negotiated version built by `build(version)`, waits for the answer.
    pub async fn call<R: Request>(
        &self,
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response, KafkaError> {
        let version = self.version(api_of::<R>())?;
        self.call_at(version, &build(version)).await
    }

    /// Sends `request` at `version` and waits for its response.
    pub async fn call_at<R: Request>(
        &self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, KafkaError> {
        let api = api_of::<R>();
        let timeout = Duration::from_millis(self.inner.config.request_timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || KafkaError::Timeout {
            api,
            addr: self.addr().to_string(),
            timeout_ms: self.inner.config.request_timeout_ms,
        };
        let _permit = tokio::time::timeout(
            deadline.saturating_duration_since(tokio::time::Instant::now()),
            self.permit(),
        )
        .await
        .map_err(|_| timed_out())??;
        let (correlation_id, frame) = self.encode(api, version, request)?;
        let (reply, answer) = oneshot::channel();
        {
            let mut pending = self.inner.shared.lock();
            if let Some(reason) = &pending.closed {
                return Err(self.disconnected(reason.clone()));
            }
            pending.waiting.insert(correlation_id, reply);
        }
        let outcome = tokio::time::timeout(
            deadline.saturating_duration_since(tokio::time::Instant::now()),
            async {
                let outgoing = Outgoing {
                    frame,
                    written: None,
                };
                if self.inner.frames.send(outgoing).await.is_err() {
                    return Err(self.disconnected("the writer stopped".into()));
                }
                match answer.await {
                    Ok(result) => result,
                    Err(_) => Err(self.disconnected("the connection closed".into())),
                }
            },
        )
        .await;
        let mut body = match outcome {
            Ok(result) => result?,
            Err(_) => {
                self.inner.shared.lock().waiting.remove(&correlation_id);
                return Err(timed_out());
            }
        };
        let protocol_error = |reason: String| KafkaError::Protocol {
            addr: self.addr().to_string(),
            reason: format!("{api:?} v{version}: {reason}"),
        };
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        kafka_protocol::messages::ResponseHeader::decode(&mut body, header_version)
            .map_err(|e| protocol_error(format!("header: {e}")))?;
        R::Response::decode(&mut body, version).map_err(|e| protocol_error(format!("{e:#}")))
    }

    /// Sends a request that gets no response (Produce with acks=0). It returns once the
    /// request is in the socket, as Kafka's acks=0 counts a record sent: a client that
    /// exits right after loses nothing it was told was sent.
    pub async fn send_without_response<R: Request>(
        &self,
        version: i16,
        request: &R,
    ) -> Result<(), KafkaError> {
        let api = api_of::<R>();
        if let Some(reason) = &self.inner.shared.lock().closed {
            return Err(self.disconnected(reason.clone()));
        }
        let (_, frame) = self.encode(api, version, request)?;
        let (written, in_socket) = oneshot::channel();
        let outgoing = Outgoing {
            frame,
            written: Some(written),
        };
        let timeout = Duration::from_millis(self.inner.config.request_timeout_ms);
        let sent = async {
            if self.inner.frames.send(outgoing).await.is_err() {
                return Err(self.disconnected("the writer stopped".into()));
            }
            in_socket
                .await
                .map_err(|_| self.disconnected(self.closed_reason()))
        };
        match tokio::time::timeout(timeout, sent).await {
            Ok(result) => result,
            Err(_) => Err(KafkaError::Timeout {
                api,
                addr: self.addr().to_string(),
                timeout_ms: self.inner.config.request_timeout_ms,
            }),
        }
    }

    fn closed_reason(&self) -> String {
        self.inner
            .shared
            .lock()
            .closed
            .clone()
            .unwrap_or_else(|| "the writer stopped".into())
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, KafkaError> {
        self.inner
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.disconnected("closed".into()))
    }

    fn disconnected(&self, reason: String) -> KafkaError {
        KafkaError::Disconnected {
            addr: self.addr().to_string(),
            reason,
        }
    }

    fn encode<R: Request>(
        &self,
        api: ApiKey,
        version: i16,
        request: &R,
    ) -> Result<(i32, Bytes), KafkaError> {
        // Correlation ids wrap; at most max_in_flight are live, so wrapping cannot collide.
        let correlation_id = self
            .inner
            .next_correlation_id
            .fetch_add(1, Ordering::Relaxed)
            & i32::MAX;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(
                self.inner.config.client_id.clone(),
            )));
        let addr = self.addr();
        let config_error = |e: anyhow::Error| {
            KafkaError::Config(format!("cannot encode {api:?} v{version} for {addr}: {e}"))
        };
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&[0u8; SIZE_PREFIX_BYTES]);
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(config_error)?;
        request.encode(&mut buf, version).map_err(config_error)?;
        let size = i32::try_from(buf.len() - SIZE_PREFIX_BYTES)
            .map_err(|_| KafkaError::Config(format!("{api:?} request over 2 GiB")))?;
        buf[..SIZE_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
        Ok((correlation_id, buf.freeze()))
    }
}

fn api_of<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("every Request type has a known api key")
}

fn versions_of(response: &ApiVersionsResponse) -> HashMap<i16, (i16, i16)> {
    response
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect()
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        std::io::ErrorKind::UnexpectedEof => "the broker closed the connection".into(),
        _ => e.to_string(),
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut frames: mpsc::Receiver<Outgoing>,
    shared: Arc<Shared>,
    _stop_reader: oneshot::Sender<()>,
) {
    while let Some(outgoing) = frames.recv().await {
        let written = async {
            writer.write_all(&outgoing.frame).await?;
            // The simulated stream sends only on flush; real TCP is unaffected.
            writer.flush().await
        }
        .await;
        if let Err(e) = written {
            shared.close(format!("write failed: {}", io_reason(&e)));
            return;
        }
        if let Some(written) = outgoing.written {
            let _ = written.send(());
        }
    }
    let _ = writer.shutdown().await;
    shared.close("the client closed the connection".into());
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
    max_response_bytes: usize,
) {
    loop {
        let frame = tokio::select! {
            biased;
            _ = &mut stop => return,
            frame = read_frame(&mut reader, max_response_bytes) => frame,
        };
        let mut frame = match frame {
            Ok(frame) => frame,
            Err(reason) => {
                shared.close(reason);
                return;
            }
        };
        if frame.len() < 4 {
            shared.close(format!(
                "a response of {} bytes has no correlation id",
                frame.len()
            ));
            return;
        }
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let reply = shared.lock().waiting.remove(&correlation_id);
        match reply {
            Some(reply) => {
                let _ = reply.send(Ok(std::mem::take(&mut frame)));
            }
            // A request that timed out gave up its slot; its late answer is dropped.
            None => {
                tracing::debug!(correlation_id, addr = %shared.addr, "late or unknown response dropped")
            }
        }
    }
}

/// One response frame, with the reason the connection ends when there is none.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> Result<Bytes, String> {
    match kafka::read_frame(reader, max_bytes).await {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err("the broker closed the connection".into()),
        Err(ReadFrameError::Io(e)) => Err(format!("read failed: {}", io_reason(&e))),
        Err(e) => Err(format!("bad response frame: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse, RequestKind, ResponseKind};
    use runnel_protocol::kafka::{decode_request, encode_response, topic_name};
    use tokio::net::TcpListener;

    use super::*;

    async fn read_request<R: AsyncRead + Unpin>(reader: &mut R) -> runnel_protocol::kafka::Request {
        let frame = read_frame(reader, 1 << 20).await.expect("a request frame");
        decode_request(frame, |key| Some(key.valid_versions())).expect("a valid request")
    }

    /// Answers ApiVersions, then two Metadata requests in the reverse order they came in.
    async fn reversing_broker(listener: TcpListener) {
        let (stream, _) = listener.accept().await.expect("accept");
        let (mut reader, mut writer) = tokio::io::split(stream);
        let hello = read_request(&mut reader).await;
        assert_eq!(hello.api_key, ApiKey::ApiVersions);
        let versions = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_min_version(0)
                .with_max_version(3),
            ApiVersion::default()
                .with_api_key(ApiKey::Metadata as i16)
                .with_min_version(0)
                .with_max_version(9),
        ]);
        let frame = encode_response(
            ApiKey::ApiVersions,
            hello.version,
            hello.correlation_id(),
            &ResponseKind::ApiVersions(versions),
        )
        .expect("encodes");
        writer.write_all(&frame).await.expect("write");
        writer.flush().await.expect("flush");
        let first = read_request(&mut reader).await;
        let second = read_request(&mut reader).await;
        for request in [second, first] {
            assert_eq!(request.version, 9, "the highest version both sides speak");
            let RequestKind::Metadata(body) = &request.body else {
                panic!("expected Metadata, got {:?}", request.api_key);
            };
            let asked = body.topics.as_ref().expect("topics")[0]
                .name
                .as_ref()
                .expect("name")
                .0
                .clone();
            let response = MetadataResponse::default().with_cluster_id(Some(asked));
            let frame = encode_response(
                ApiKey::Metadata,
                request.version,
                request.correlation_id(),
                &ResponseKind::Metadata(response),
            )
            .expect("encodes");
            writer.write_all(&frame).await.expect("write");
            writer.flush().await.expect("flush");
        }
        // Hold the connection until the client is done.
        let _ = read_frame(&mut reader, 1 << 20).await;
    }

    #[tokio::test]
    async fn pipelined_answers_find_their_requests_by_correlation_id() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(reversing_broker(listener));
        let conn = Connection::connect(&addr, ConnectionConfig::default())
            .await
            .expect("connects and negotiates");
        assert_eq!(conn.version(ApiKey::Metadata).expect("negotiated"), 9);
        assert!(matches!(
            conn.version(ApiKey::Produce),
            Err(KafkaError::UnsupportedApi { .. })
        ));
        let ask = |name: &'static str| {
            let conn = conn.clone();
            async move {
                conn.call(|_| {
                    MetadataRequest::default().with_topics(Some(vec![
                        MetadataRequestTopic::default().with_name(Some(topic_name(name))),
                    ]))
                })
                .await
                .expect("answered")
                .cluster_id
                .map(|c| c.as_str().to_string())
            }
        };
        let (a, b) = tokio::join!(ask("first"), ask("second"));
        assert_eq!(a.as_deref(), Some("first"));
        assert_eq!(b.as_deref(), Some("second"));
    }

    #[tokio::test]
    async fn a_refused_connection_says_to_start_a_broker() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let e = Connection::connect(&addr, ConnectionConfig::default())
            .await
            .expect_err("nothing listens");
        let text = e.to_string();
        assert!(
            text.contains(&format!("cannot reach {addr}: connection refused")),
            "{text}"
        );
        assert!(text.contains("runnel server"), "{text}");
        assert!(e.is_retriable());
    }
}
