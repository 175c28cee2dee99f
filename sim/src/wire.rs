//! The raw Kafka client of the Kafka and group workloads: one connection to the broker
//! ([`Wire`]) that sends one request at a time, each with a deadline, plus topic creation,
//! the fetch request both workloads send and the decoding of what it returns.
//!
//! Raw frames through `runnel_protocol::kafka` give each call a precise outcome: a
//! response, or an error that says the request may or may not have taken effect.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::batch::RecordBatch;
use runnel_protocol::kafka::{self, topic_name, RequestKind, ResponseKind};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames larger than this from the simulated broker mean a bug; refuse them.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A raw Kafka connection: one request at a time, each with a deadline.
pub(crate) struct Wire {
    broker: SocketAddr,
    stream: Option<TcpStream>,
    next_id: i32,
}

impl Wire {
    /// Connects to `broker` lazily, and again after any failed call.
    pub(crate) fn new(broker: SocketAddr) -> Self {
        Wire {
            broker,
            stream: None,
            next_id: 1,
        }
    }

    pub(crate) async fn call(
        &mut self,
        key: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<ResponseKind, String> {
        let result = tokio::time::timeout(CALL_TIMEOUT, self.exchange(key, version, body)).await;
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                // A late answer must not be read as the next request's.
                self.stream = None;
                Err("timed out".into())
            }
        }
    }

    async fn exchange(
        &mut self,
        key: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<ResponseKind, String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.broker)
                .await
                .map_err(|e| e.to_string())?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        let id = self.next_id;
        self.next_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("runnel-sim")));
        let frame = kafka::encode_request(&header, &body).map_err(|e| e.to_string())?;
        stream.write_all(&frame).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let bytes = kafka::read_frame(stream, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the broker closed the connection")?;
        let (got, response) =
            kafka::decode_response(key, version, bytes).map_err(|e| e.to_string())?;
        if got != id {
            return Err(format!("correlation id {got}, expected {id}"));
        }
        Ok(response)
    }
}

/// Creates `topic` with `partitions` partitions (replication factor 1), retrying until the
/// broker says it exists.
pub(crate) async fn create_topic(broker: SocketAddr, topic: &str, partitions: i32) {
    let mut wire = Wire::new(broker);
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    loop {
        if let Ok(ResponseKind::CreateTopics(r)) = wire
            .call(
                ApiKey::CreateTopics,
                7,
                RequestKind::CreateTopics(request.clone()),
            )
            .await
        {
            let code = r.topics[0].error_code;
            if code == 0 || code == kafka_protocol::ResponseError::TopicAlreadyExists.code() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The records of one fetched partition at or after `from`, as (offset, value). A batch
/// failing its CRC is an error, as for a consumer with `check.crcs=true`: the broker
/// serves stored bytes unchecked, and a disk that flips bits on read shows here.
pub(crate) fn decode(records: Option<&Bytes>, from: i64) -> Result<Vec<(i64, u64)>, String> {
    let mut out = Vec::new();
    let Some(bytes) = records else { return Ok(out) };
    let batches = RecordBatch::parse_all(bytes.clone()).map_err(|e| e.to_string())?;
    for batch in batches {
        for record in batch.records().map_err(|e| e.to_string())? {
            let offset = batch.base_offset() + i64::from(record.offset_delta);
            let value = record
                .value
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<u64>().ok())
                .expect("every value is a number the workload wrote");
            if offset >= from {
                out.push((offset, value));
            }
        }
    }
    Ok(out)
}

/// A fetch of every partition of `topic`, partition `p` from `positions[p]`.
pub(crate) fn fetch_request(topic: &str, positions: &[i64], max_wait_ms: i32) -> RequestKind {
    let partitions = positions
        .iter()
        .enumerate()
        .map(|(p, &offset)| {
            fetch_request::FetchPartition::default()
                .with_partition(p as i32)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(4 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions)]),
    )
}
