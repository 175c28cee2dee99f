//! The consumer by assignment: the caller names the partitions (no consumer group), seeks
//! or lets `auto_offset_reset` choose where to start, and polls records.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use runnel_protocol::batch::{BatchError, RecordBatch};
use runnel_protocol::kafka::{topic_name, ResponseError};
use tokio::time::Instant;

use super::cluster::{ClientConfig, Cluster, OffsetSpec, TopicPartition};
use super::error::KafkaError;

/// Where to start when a partition has no position or its position is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Fail instead (Kafka's `none`).
    None,
}

impl OffsetReset {
    pub fn parse(s: &str) -> Result<OffsetReset, KafkaError> {
        match s.to_ascii_lowercase().as_str() {
            "earliest" => Ok(OffsetReset::Earliest),
            "latest" => Ok(OffsetReset::Latest),
            "none" => Ok(OffsetReset::None),
            other => Err(KafkaError::Config(format!(
                "auto.offset.reset {other:?} is not one of earliest, latest or none"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub client: ClientConfig,
    pub auto_offset_reset: OffsetReset,
    /// How long the broker may hold a fetch waiting for `fetch_min_bytes`.
    pub fetch_max_wait_ms: u64,
    pub fetch_min_bytes: i32,
    /// Bytes one fetch response may hold over all partitions (the broker still returns
    /// at least one batch even if it is larger).
    pub fetch_max_bytes: i32,
    /// Bytes one fetch may return for each partition.
    pub max_partition_fetch_bytes: i32,
}

impl ConsumerConfig {
    pub fn new(client: ClientConfig) -> Self {
        ConsumerConfig {
            client,
            auto_offset_reset: OffsetReset::Latest,
            fetch_max_wait_ms: 500,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 << 20,
            max_partition_fetch_bytes: 1 << 20,
        }
    }
}

/// A record as consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    /// The timestamp is the broker's append time rather than the producer's.
    pub log_append_time: bool,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub leader_epoch: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    At(i64),
    Reset(OffsetSpec),
    /// No position and no reset policy: polling fails until a seek.
    Unset,
}

/// A consumer of explicitly assigned partitions. Not shared: `poll` takes `&mut self`.
pub struct Consumer {
    cluster: Cluster,
    config: ConsumerConfig,
    positions: BTreeMap<TopicPartition, Position>,
    high_watermarks: BTreeMap<TopicPartition, i64>,
}

impl Consumer {
    pub async fn new(config: ConsumerConfig) -> Result<Consumer, KafkaError> {
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(Self::with_cluster(config, cluster))
    }

    pub fn with_cluster(config: ConsumerConfig, cluster: Cluster) -> Consumer {
        Consumer {
            cluster,
            config,
            positions: BTreeMap::new(),
            high_watermarks: BTreeMap::new(),
        }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    fn reset_position(&self) -> Position {
        match self.config.auto_offset_reset {
            OffsetReset::Earliest => Position::Reset(OffsetSpec::Earliest),
            OffsetReset::Latest => Position::Reset(OffsetSpec::Latest),
            OffsetReset::None => Position::Unset,
        }
    }

    /// Replaces the assignment; new partitions start per `auto_offset_reset`, partitions
    /// kept keep their position.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let reset = self.reset_position();
        let mut positions = BTreeMap::new();
        for tp in partitions {
            let position = self.positions.get(&tp).copied().unwrap_or(reset);
            positions.insert(tp, position);
        }
        self.positions = positions;
    }

    /// Assigns every partition of `topic`, and returns them.
    pub async fn assign_topic(&mut self, topic: &str) -> Result<Vec<TopicPartition>, KafkaError> {
        self.cluster.invalidate(topic);
        let metadata = self.cluster.topic(topic, false).await?;
        let partitions: Vec<TopicPartition> = metadata
            .partitions
            .iter()
            .map(|p| TopicPartition::new(topic, p.partition))
            .collect();
        let mut all: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        all.extend(partitions.iter().cloned());
        self.assign(all);
        Ok(partitions)
    }

    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    /// The next offset `poll` reads from `tp`, if known yet.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        match self.positions.get(tp)? {
            Position::At(offset) => Some(*offset),
            _ => None,
        }
    }

    /// The partition's high watermark as of the last fetch.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.high_watermarks.get(tp).copied()
    }

    /// Reads `tp` from `offset` next (the partition must be assigned).
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), KafkaError> {
        self.set(tp, Position::At(offset))
    }

    pub fn seek_to_beginning(&mut self, tp: &TopicPartition) -> Result<(), KafkaError> {
        self.set(tp, Position::Reset(OffsetSpec::Earliest))
    }

    pub fn seek_to_end(&mut self, tp: &TopicPartition) -> Result<(), KafkaError> {
        self.set(tp, Position::Reset(OffsetSpec::Latest))
    }

    /// Reads `tp` from the first record with a timestamp at or after `timestamp_ms`.
    pub fn seek_to_timestamp(
        &mut self,
        tp: &TopicPartition,
        timestamp_ms: i64,
    ) -> Result<(), KafkaError> {
        self.set(tp, Position::Reset(OffsetSpec::Timestamp(timestamp_ms)))
    }

    fn set(&mut self, tp: &TopicPartition, position: Position) -> Result<(), KafkaError> {
        match self.positions.get_mut(tp) {
            Some(p) => {
                *p = position;
                Ok(())
            }
            None => Err(KafkaError::Config(format!(
                "{tp} is not assigned to this consumer; assign it before seeking"
            ))),
        }
    }

    /// Fetches records from the assigned partitions, waiting up to `timeout` for some.
    /// Returns an empty list when none arrived in time.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, KafkaError> {
        let deadline = Instant::now() + timeout;
        let backoff = Duration::from_millis(self.config.client.retry_backoff_ms);
        loop {
            let records = match self.poll_once(deadline).await {
                Ok(records) => records,
                Err(e) if e.is_retriable() => {
                    tracing::debug!(error = %e, "fetch failed; retrying");
                    if e.invalidates_metadata() {
                        for tp in self.positions.keys() {
                            self.cluster.invalidate(&tp.topic);
                        }
                    }
                    if Instant::now() + backoff >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff).await;
                    Vec::new()
                }
                Err(e) => return Err(e),
            };
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    async fn poll_once(&mut self, deadline: Instant) -> Result<Vec<ConsumerRecord>, KafkaError> {
        if self.positions.is_empty() {
            tokio::time::sleep_until(deadline).await;
            return Ok(Vec::new());
        }
        self.resolve_positions().await?;
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (tp, position) in &self.positions {
            if let Position::At(offset) = position {
                let leader = self.cluster.leader(tp).await?;
                by_leader
                    .entry(leader)
                    .or_default()
                    .push((tp.clone(), *offset));
            }
        }
        let max_wait = deadline.saturating_duration_since(Instant::now());
        let max_wait_ms = (max_wait.as_millis() as u64).min(self.config.fetch_max_wait_ms);
        let cluster = &self.cluster;
        let config = &self.config;
        let fetches = by_leader.into_iter().map(|(leader, parts)| async move {
            let result = fetch(cluster, config, leader, &parts, max_wait_ms).await;
            (parts, result)
        });
        let mut records = Vec::new();
        let mut first_error = None;
        for (parts, result) in futures::future::join_all(fetches).await {
            match result {
                Ok(response) => {
                    if let Err(e) = self.absorb(response, &parts, &mut records) {
                        first_error.get_or_insert(e);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if records.is_empty() => Err(e),
            _ => Ok(records),
        }
    }

    /// Turns resets into offsets with ListOffsets.
    async fn resolve_positions(&mut self) -> Result<(), KafkaError> {
        let mut wanted = Vec::new();
        for (tp, position) in &self.positions {
            match position {
                Position::Reset(spec) => wanted.push((tp.clone(), *spec)),
                Position::Unset => {
                    return Err(KafkaError::Config(format!(
                        "{tp} has no position and auto.offset.reset is none; seek first"
                    )))
                }
                Position::At(_) => {}
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let specs: BTreeMap<TopicPartition, OffsetSpec> = wanted.iter().cloned().collect();
        for (tp, result) in self.cluster.list_offsets(&wanted).await? {
            let listed = result?;
            let offset = if listed.offset >= 0 {
                listed.offset
            } else {
                // No record at or after the timestamp: start at the end, as Java does.
                let end = self
                    .cluster
                    .list_offsets(&[(tp.clone(), OffsetSpec::Latest)])
                    .await?;
                match end.into_iter().next() {
                    Some((_, Ok(end))) => end.offset,
                    Some((_, Err(e))) => return Err(e),
                    None => continue,
                }
            };
            if specs.contains_key(&tp) {
                self.positions.insert(tp, Position::At(offset));
            }
        }
        Ok(())
    }

    /// Reads one fetch response into `records` and moves positions past what it held.
    fn absorb(
        &mut self,
        response: FetchResponse,
        asked: &[(TopicPartition, i64)],
        records: &mut Vec<ConsumerRecord>,
    ) -> Result<(), KafkaError> {
        super::error::check(response.error_code, || "fetch".into(), None)?;
        let mut first_error = None;
        for topic in response.responses {
            let name = topic.topic.as_str().to_string();
            for p in topic.partitions {
                let tp = TopicPartition::new(name.clone(), p.partition_index);
                let Some(&(_, fetch_offset)) = asked.iter().find(|(t, _)| *t == tp) else {
                    continue;
                };
                // A seek since the fetch went out wins over what it returned.
                if self.positions.get(&tp) != Some(&Position::At(fetch_offset)) {
                    continue;
                }
                match ResponseError::try_from_code(p.error_code) {
                    None => {}
                    Some(ResponseError::OffsetOutOfRange) => {
                        let reset = self.reset_position();
                        if reset == Position::Unset {
                            first_error.get_or_insert(KafkaError::OffsetOutOfRange {
                                topic: tp.topic.clone(),
                                partition: tp.partition,
                                offset: fetch_offset,
                            });
                        } else {
                            tracing::info!(%tp, fetch_offset, "offset out of range; resetting");
                            self.positions.insert(tp, reset);
                        }
                        continue;
                    }
                    Some(code) => {
                        let e = KafkaError::broker(code, format!("fetch {tp}"), None);
                        if e.invalidates_metadata() {
                            self.cluster.invalidate(&tp.topic);
                        }
                        first_error.get_or_insert(e);
                        continue;
                    }
                }
                self.high_watermarks.insert(tp.clone(), p.high_watermark);
                let data = p.records.unwrap_or_default();
                // Records before a corrupt batch are returned, so the position must move
                // past them too; else the next poll returns them again.
                let (next, decoded) = decode_records(&tp, data, fetch_offset, records);
                self.positions.insert(tp, Position::At(next));
                decoded?;
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

async fn fetch(
    cluster: &Cluster,
    config: &ConsumerConfig,
    leader: i32,
    parts: &[(TopicPartition, i64)],
    max_wait_ms: u64,
) -> Result<FetchResponse, KafkaError> {
    let conn = cluster.connection(leader).await?;
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for (tp, offset) in parts {
        topics.entry(&tp.topic).or_default().push(
            FetchPartition::default()
                .with_partition(tp.partition)
                .with_fetch_offset(*offset)
                .with_current_leader_epoch(-1)
                .with_log_start_offset(-1)
                .with_last_fetched_epoch(-1)
                .with_partition_max_bytes(config.max_partition_fetch_bytes),
        );
    }
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms.min(i32::MAX as u64) as i32)
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_max_bytes)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    FetchTopic::default()
                        .with_topic(topic_name(name))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    conn.call(|_| request).await
}

/// Decodes the batches of one partition's fetch data, keeping records at or after
/// `fetch_offset`; returns the next offset to fetch (after the last record kept, also when
/// a corrupt batch stopped the decoding) and whether decoding got to the end.
fn decode_records(
    tp: &TopicPartition,
    data: Bytes,
    fetch_offset: i64,
    out: &mut Vec<ConsumerRecord>,
) -> (i64, Result<(), KafkaError>) {
    let mut next = fetch_offset;
    let result = decode_batches(tp, data, &mut next, out);
    (next, result)
}

fn decode_batches(
    tp: &TopicPartition,
    mut data: Bytes,
    next: &mut i64,
    out: &mut Vec<ConsumerRecord>,
) -> Result<(), KafkaError> {
    let corrupt = |reason: String| KafkaError::CorruptRecords {
        topic: tp.topic.clone(),
        partition: tp.partition,
        reason,
    };
    while !data.is_empty() {
        let (batch, rest) = match RecordBatch::parse(data) {
            Ok(parsed) => parsed,
            // The response was cut at its byte limit: the rest comes with the next fetch.
            Err(BatchError::Truncated { .. } | BatchError::TooShort { .. }) => break,
            Err(BatchError::UnsupportedMagic { magic }) => {
                return Err(corrupt(format!(
                    "message format v{magic} is not supported; only record batches (v2) are"
                )))
            }
            Err(e) => return Err(corrupt(e.to_string())),
        };
        data = rest;
        if batch.last_offset() < *next {
            continue;
        }
        if !batch.is_control() {
            let decoded = batch.records().map_err(|e| corrupt(e.to_string()))?;
            let log_append_time = batch.is_log_append_time();
            for r in decoded {
                let offset = batch.base_offset() + i64::from(r.offset_delta);
                if offset < *next {
                    continue;
                }
                let timestamp_ms = if log_append_time {
                    batch.max_timestamp()
                } else {
                    batch.base_timestamp().wrapping_add(r.timestamp_delta)
                };
                out.push(ConsumerRecord {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset,
                    timestamp_ms,
                    log_append_time,
                    key: r.key,
                    value: r.value,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
                        .collect(),
                    leader_epoch: batch.partition_leader_epoch(),
                });
            }
        }
        *next = batch.last_offset() + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::records::{build_batch, BatchOptions, Compression, NewRecord};

    fn batch_at(base_offset: i64, values: &[&str], compression: Compression) -> Vec<u8> {
        let records: Vec<NewRecord> = values
            .iter()
            .enumerate()
            .map(|(i, v)| NewRecord {
                key: None,
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
                headers: vec![("h".into(), Some(Bytes::from_static(b"1")))],
                timestamp_ms: 1000 + i as i64,
            })
            .collect();
        let bytes = build_batch(
            BatchOptions {
                compression,
                ..Default::default()
            },
            &records,
        )
        .expect("builds");
        let (batch, _) = RecordBatch::parse(bytes).expect("valid");
        batch.stamped(base_offset, 0).as_bytes().to_vec()
    }

    #[test]
    fn fetch_data_skips_earlier_records_and_stops_at_a_cut_batch() {
        let tp = TopicPartition::new("t", 0);
        let mut data = batch_at(10, &["a", "b", "c"], Compression::Lz4);
        data.extend(batch_at(13, &["d", "e"], Compression::None));
        let third = batch_at(15, &["f"], Compression::Gzip);
        data.extend(&third[..third.len() - 5]);
        let mut out = Vec::new();
        let (next, decoded) = decode_records(&tp, Bytes::from(data), 11, &mut out);
        decoded.expect("decodes");
        assert_eq!(next, 15, "the cut batch is fetched again");
        let values: Vec<&[u8]> = out
            .iter()
            .map(|r| r.value.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(values, vec![&b"b"[..], b"c", b"d", b"e"]);
        assert_eq!(out[0].offset, 11);
        assert_eq!(out[0].timestamp_ms, 1001);
        assert_eq!(
            out[0].headers,
            vec![("h".to_string(), Some(Bytes::from_static(b"1")))]
        );
    }

    #[test]
    fn records_before_a_corrupt_batch_move_the_position_past_them() {
        let tp = TopicPartition::new("t", 0);
        let mut data = batch_at(0, &["a", "b"], Compression::None);
        let mut bad = batch_at(2, &["c"], Compression::None);
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        data.extend(bad);
        data.extend(batch_at(3, &["d"], Compression::None));
        let mut out = Vec::new();
        let (next, decoded) = decode_records(&tp, Bytes::from(data), 0, &mut out);
        assert!(matches!(decoded, Err(KafkaError::CorruptRecords { .. })));
        assert_eq!(
            out.len(),
            2,
            "the records before the corrupt batch are returned"
        );
        assert_eq!(
            next, 2,
            "and the next fetch starts after them, at the corrupt batch"
        );
    }
}
