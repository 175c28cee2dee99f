//! The producer: records are partitioned, gathered into one open batch per partition,
//! and sent by a background task when a batch is full (`batch_size_bytes`), has waited
//! `linger_ms`, or a flush asks for it.
//!
//! Each partition has at most one batch in flight, so records stay in order through
//! retries and an idempotent producer's sequence numbers never arrive out of order.
//! With idempotence the producer gets a producer id and epoch (InitProducerId) and numbers
//! each partition's records; a retried batch keeps its bytes and base sequence, so the
//! broker drops it if it was already written.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProduceResponse};
use runnel_protocol::kafka::{topic_name, ResponseError};
use tokio::sync::{oneshot, watch, Notify, Semaphore};
use tokio::time::Instant;

use super::cluster::{ClientConfig, Cluster, TopicPartition};
use super::error::KafkaError;
use super::partitioner::partition_for_key;
use super::records::{build_batch, BatchOptions, Compression, NewRecord};

/// How many acknowledgements the leader waits for before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: no answer at all; offsets are unknown (-1).
    None,
    /// acks=1: the leader has written it.
    Leader,
    /// acks=all (-1): every in-sync replica has it.
    All,
}

impl Acks {
    pub fn code(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    /// Parses `0`, `1`, `-1` or `all`.
    pub fn parse(s: &str) -> Result<Acks, KafkaError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "-1" | "all" => Ok(Acks::All),
            other => Err(KafkaError::Config(format!(
                "acks {other:?} is not one of 0, 1, -1 or all"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent.
    pub linger_ms: u64,
    /// A batch is sent once it holds this many bytes (a larger single record still goes).
    pub batch_size_bytes: usize,
    pub compression: Compression,
    /// Producer ids and sequence numbers, so retries are not duplicated (needs acks=all).
    pub enable_idempotence: bool,
    /// Retries of a batch after retriable errors, within `delivery_timeout_ms`.
    pub retries: u32,
    /// How long a record may take from `send` to its acknowledgement, retries included.
    pub delivery_timeout_ms: u64,
    /// Bytes of records waiting to be sent; `send` waits (up to `max_block_ms`) when full.
    pub buffer_memory_bytes: usize,
    /// How long `send` may wait for metadata or buffer space.
    pub max_block_ms: u64,
    /// The largest record accepted (Kafka's max.request.size).
    pub max_request_bytes: usize,
    /// Ask the broker to create missing topics (if it is configured to).
    pub allow_auto_topic_creation: bool,
}

impl ProducerConfig {
    pub fn new(client: ClientConfig) -> Self {
        ProducerConfig {
            client,
            acks: Acks::All,
            linger_ms: 5,
            batch_size_bytes: 16 * 1024,
            compression: Compression::None,
            enable_idempotence: true,
            retries: i32::MAX as u32,
            delivery_timeout_ms: 120_000,
            buffer_memory_bytes: 32 << 20,
            max_block_ms: 60_000,
            max_request_bytes: 1 << 20,
            allow_auto_topic_creation: true,
        }
    }

    fn validate(&self) -> Result<(), KafkaError> {
        if self.enable_idempotence && self.acks != Acks::All {
            return Err(KafkaError::Config(
                "idempotence needs acks=all; set acks to all or turn idempotence off".into(),
            ));
        }
        if self.batch_size_bytes == 0 || self.buffer_memory_bytes < self.max_request_bytes {
            return Err(KafkaError::Config(
                "batch_size_bytes must be positive and buffer_memory_bytes at least max_request_bytes".into(),
            ));
        }
        Ok(())
    }
}

/// A record to send. `partition: None` lets the partitioner choose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch; `None` stamps the time of `send`.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// A record with a null value (a tombstone when keyed).
    pub fn null_value(topic: impl Into<String>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            ..Default::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((key.into(), value));
        self
    }

    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }
}

/// Where an acknowledged record landed; `offset` is -1 with acks=0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp, or the broker's append time for LogAppendTime topics.
    pub timestamp_ms: i64,
}

type Reply = oneshot::Sender<Result<RecordMetadata, KafkaError>>;

/// Resolves when the record is acknowledged or has failed for good.
pub struct DeliveryFuture {
    answer: oneshot::Receiver<Result<RecordMetadata, KafkaError>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, KafkaError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.answer)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(KafkaError::Closed)))
    }
}

struct Batch {
    records: Vec<NewRecord>,
    replies: Vec<Reply>,
    size_bytes: usize,
    created: Instant,
    /// Still accepting records (only the last batch of a queue can be).
    open: bool,
    attempts: u32,
    retry_at: Option<Instant>,
    /// -1 until the first send assigns one.
    base_sequence: i32,
    producer: (i64, i16),
    /// Built at the first send and resent unchanged.
    encoded: Option<Bytes>,
    last_error: Option<KafkaError>,
}

#[derive(Default)]
struct PartitionQueue {
    batches: VecDeque<Batch>,
    in_flight: bool,
    next_sequence: i32,
}

#[derive(Default)]
struct State {
    // BTreeMap: the order batches are visited in must not depend on hashing (simulation).
    queues: BTreeMap<TopicPartition, PartitionQueue>,
    sticky: HashMap<String, i32>,
    round_robin: u32,
    outstanding_records: usize,
    flushing: usize,
    closed: bool,
    /// (producer id, epoch) once InitProducerId answered.
    producer: Option<(i64, i16)>,
    refreshing_metadata: bool,
}

struct Shared {
    config: ProducerConfig,
    cluster: Cluster,
    state: Mutex<State>,
    wake: Notify,
    /// One permit per buffered byte.
    buffer: Arc<Semaphore>,
    /// Bumped whenever records complete, so `flush` can wait.
    progress: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Completion code holds no invariant across a panic worth stopping for.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Closes the producer when the last handle goes, so the sender sends what is left and stops.
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.wake.notify_one();
    }
}

/// A Kafka producer; cheap to clone, all clones share batches and the sender task.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    _close: Arc<CloseOnDrop>,
}

impl Producer {
    /// Connects to the cluster and starts the sender task.
    pub async fn new(config: ProducerConfig) -> Result<Producer, KafkaError> {
        config.validate()?;
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(Self::with_cluster(config, cluster))
    }

    /// A producer over an existing cluster view.
    pub fn with_cluster(config: ProducerConfig, cluster: Cluster) -> Producer {
        let buffer_permits = config.buffer_memory_bytes.min(Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            config,
            cluster,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            buffer: Arc::new(Semaphore::new(buffer_permits)),
            progress: watch::channel(0).0,
        });
        tokio::spawn(sender_loop(shared.clone()));
        Producer {
            _close: Arc::new(CloseOnDrop(shared.clone())),
            shared,
        }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.shared.cluster
    }

    /// Queues `record`; waits only for metadata and buffer space. The returned future
    /// resolves to where the record landed, or why it could not be written.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, KafkaError> {
        let shared = &self.shared;
        let config = &shared.config;
        let max_block = Duration::from_millis(config.max_block_ms);
        let deadline = Instant::now() + max_block;
        if shared.lock().closed {
            return Err(KafkaError::Closed);
        }
        let topic = self.topic_with_partitions(&record.topic, deadline).await?;
        let partitions = topic.partitions.len();
        let partition = match (record.partition, &record.key) {
            (Some(p), _) => {
                if p < 0 || p as usize >= partitions {
                    return Err(KafkaError::UnknownPartition {
                        topic: record.topic,
                        partition: p,
                        partitions,
                    });
                }
                p
            }
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => -1,
        };
        let timestamp_ms = record.timestamp_ms.unwrap_or_else(now_ms);
        let new = NewRecord {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp_ms,
        };
        let size_bytes = new.estimated_size_bytes();
        if size_bytes > config.max_request_bytes {
            return Err(KafkaError::RecordTooLarge {
                size_bytes,
                max_bytes: config.max_request_bytes,
            });
        }
        let permit = tokio::time::timeout(
            deadline.saturating_duration_since(tokio::time::Instant::now()),
            shared.buffer.clone().acquire_many_owned(size_bytes as u32),
        )
        .await
        .map_err(|_| {
            KafkaError::Config(format!(
                "the producer's {}-byte buffer stayed full for {} ms; the broker is not keeping up (or is unreachable)",
                config.buffer_memory_bytes, config.max_block_ms
            ))
        })?
        .map_err(|_| KafkaError::Closed)?;
        // Released by hand when the record completes.
        permit.forget();
        let (reply, answer) = oneshot::channel();
        let wake = {
            let mut state = shared.lock();
            if state.closed {
                drop(state);
                shared.buffer.add_permits(size_bytes);
                return Err(KafkaError::Closed);
            }
            let partition = if partition >= 0 {
                partition
            } else {
                sticky_partition(&mut state, &record.topic, partitions)
            };
            let tp = TopicPartition::new(record.topic, partition);
            let queue = state.queues.entry(tp).or_default();
            let batch_size = config.batch_size_bytes;
            let fits = queue
                .batches
                .back()
                .is_some_and(|b| b.open && b.size_bytes + size_bytes <= batch_size);
            if !fits {
                if let Some(last) = queue.batches.back_mut() {
                    last.open = false;
                }
                queue.batches.push_back(Batch {
                    records: Vec::new(),
                    replies: Vec::new(),
                    size_bytes: 0,
                    created: Instant::now(),
                    open: true,
                    attempts: 0,
                    retry_at: None,
                    base_sequence: -1,
                    producer: (-1, -1),
                    encoded: None,
                    last_error: None,
                });
            }
            let batch = queue.batches.back_mut().expect("a batch was just ensured");
            batch.records.push(new);
            batch.replies.push(reply);
            batch.size_bytes += size_bytes;
            if batch.size_bytes >= batch_size {
                batch.open = false;
            }
            // A new batch needs the sender to start its linger timer.
            let wake = !fits || !batch.open || config.linger_ms == 0;
            state.outstanding_records += 1;
            wake
        };
        if wake {
            shared.wake.notify_one();
        }
        Ok(DeliveryFuture { answer })
    }

    /// Sends and waits for the acknowledgement.
    pub async fn send_and_wait(
        &self,
        record: ProducerRecord,
    ) -> Result<RecordMetadata, KafkaError> {
        self.send(record).await?.await
    }

    /// Sends every queued record now and waits until each has completed (ok or failed).
    pub async fn flush(&self) {
        let mut progress = self.shared.progress.subscribe();
        self.shared.lock().flushing += 1;
        self.shared.wake.notify_one();
        loop {
            if self.shared.lock().outstanding_records == 0 {
                break;
            }
            if progress.changed().await.is_err() {
                break;
            }
        }
        self.shared.lock().flushing -= 1;
    }

    /// Flushes and stops the sender; later sends fail with `Closed`.
    pub async fn close(&self) {
        self.flush().await;
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }

    async fn topic_with_partitions(
        &self,
        topic: &str,
        deadline: Instant,
    ) -> Result<Arc<super::cluster::TopicMetadata>, KafkaError> {
        let cluster = &self.shared.cluster;
        let backoff = Duration::from_millis(self.shared.config.client.retry_backoff_ms);
        loop {
            let result = cluster
                .topic(topic, self.shared.config.allow_auto_topic_creation)
                .await;
            match result {
                Ok(t) if !t.partitions.is_empty() => return Ok(t),
                Ok(_) => cluster.invalidate(topic),
                // As in Kafka, a topic not yet in metadata is waited for (a broker learns
                // of a new topic a moment after the controller commits it).
                Err(KafkaError::UnknownTopic { .. }) => {}
                Err(e) if e.is_retriable() && Instant::now() + backoff < deadline => {}
                Err(e) => return Err(e),
            }
            if Instant::now() + backoff >= deadline {
                return Err(KafkaError::UnknownTopic {
                    topic: topic.to_string(),
                });
            }
            tokio::time::sleep(backoff).await;
        }
    }
}

/// Records without a key stick to one partition until that partition's batch is full or
/// sent; then the next one is used, round-robin (Java's sticky partitioner, minus the
/// randomness so a seeded simulation stays deterministic).
fn sticky_partition(state: &mut State, topic: &str, partitions: usize) -> i32 {
    let start = state.round_robin;
    let current = *state
        .sticky
        .entry(topic.to_string())
        .or_insert((start as usize % partitions) as i32);
    let current = if current as usize >= partitions {
        0
    } else {
        current
    };
    let tp = TopicPartition::new(topic, current);
    let open = state
        .queues
        .get(&tp)
        .and_then(|q| q.batches.back())
        .is_some_and(|b| b.open);
    let chosen = if open || !state.queues.contains_key(&tp) {
        current
    } else {
        (current + 1) % partitions as i32
    };
    state.round_robin = state.round_robin.wrapping_add(1);
    state.sticky.insert(topic.to_string(), chosen);
    chosen
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the sender found to do in one pass.
struct Ready {
    by_leader: BTreeMap<i32, Vec<(TopicPartition, Batch)>>,
    next_wakeup: Option<Instant>,
    refresh: Vec<String>,
    need_producer_id: bool,
    done: bool,
}

async fn sender_loop(shared: Arc<Shared>) {
    loop {
        let ready = collect_ready(&shared);
        if ready.done {
            return;
        }
        if ready.need_producer_id {
            init_producer_id(&shared).await;
            continue;
        }
        if !ready.refresh.is_empty() {
            let refresher = shared.clone();
            tokio::spawn(async move {
                let topics = ready.refresh;
                if let Err(e) = refresher
                    .cluster
                    .metadata(Some(&topics), refresher.config.allow_auto_topic_creation)
                    .await
                {
                    tracing::debug!(error = %e, "metadata refresh failed");
                    tokio::time::sleep(Duration::from_millis(
                        refresher.config.client.retry_backoff_ms,
                    ))
                    .await;
                }
                refresher.lock().refreshing_metadata = false;
                refresher.wake.notify_one();
            });
        }
        for (leader, batches) in ready.by_leader {
            tokio::spawn(send_batches(shared.clone(), leader, batches));
        }
        let next = ready
            .next_wakeup
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

fn collect_ready(shared: &Shared) -> Ready {
    let config = &shared.config;
    let linger = Duration::from_millis(config.linger_ms);
    let delivery_timeout = Duration::from_millis(config.delivery_timeout_ms);
    let backoff = Duration::from_millis(config.client.retry_backoff_ms);
    let now = Instant::now();
    let mut state = shared.lock();
    let mut ready = Ready {
        by_leader: BTreeMap::new(),
        next_wakeup: None,
        refresh: Vec::new(),
        need_producer_id: false,
        done: false,
    };
    let wake_at = |at: Instant, ready: &mut Ready| {
        ready.next_wakeup = Some(ready.next_wakeup.map_or(at, |w| w.min(at)));
    };
    if state.closed && state.outstanding_records == 0 {
        ready.done = true;
        return ready;
    }
    let urgent = state.flushing > 0 || state.closed;
    let producer = state.producer;
    let idempotent = config.enable_idempotence;
    let mut expired = Vec::new();
    let mut refresh = std::collections::BTreeSet::new();
    let mut any_sendable = false;
    let State { queues, .. } = &mut *state;
    for (tp, queue) in queues.iter_mut() {
        if queue.in_flight {
            continue;
        }
        let Some(front) = queue.batches.front() else {
            continue;
        };
        if now >= front.created + delivery_timeout {
            let batch = queue.batches.pop_front().expect("front exists");
            expired.push((tp.clone(), batch));
            continue;
        }
        if let Some(at) = front.retry_at.filter(|at| *at > now) {
            wake_at(at, &mut ready);
            continue;
        }
        let due = front.created + linger;
        if front.open && !urgent && due > now && front.retry_at.is_none() {
            wake_at(due, &mut ready);
            continue;
        }
        wake_at(front.created + delivery_timeout, &mut ready);
        let Some(leader) = shared.cluster.cached_leader(tp) else {
            refresh.insert(tp.topic.clone());
            wake_at(now + backoff, &mut ready);
            continue;
        };
        if idempotent && producer.is_none() {
            any_sendable = true;
            continue;
        }
        let mut batch = queue.batches.pop_front().expect("front exists");
        batch.open = false;
        if idempotent && batch.base_sequence < 0 {
            let (id, epoch) = producer.expect("checked above");
            batch.base_sequence = queue.next_sequence;
            batch.producer = (id, epoch);
            let count = batch.records.len() as i64;
            // Sequences wrap to 0 after i32::MAX, as the broker expects.
            queue.next_sequence =
                ((queue.next_sequence as i64 + count) % (i32::MAX as i64 + 1)) as i32;
        }
        queue.in_flight = true;
        ready
            .by_leader
            .entry(leader)
            .or_default()
            .push((tp.clone(), batch));
    }
    if any_sendable {
        ready.need_producer_id = true;
    }
    if !refresh.is_empty() && !state.refreshing_metadata {
        state.refreshing_metadata = true;
        ready.refresh = refresh.into_iter().collect();
    }
    drop(state);
    for (tp, batch) in expired {
        let last_error = batch.last_error.as_ref().map_or_else(
            || "the partition had no leader".to_string(),
            |e| e.to_string(),
        );
        let error = KafkaError::DeliveryTimeout {
            topic: tp.topic.clone(),
            partition: tp.partition,
            timeout_ms: config.delivery_timeout_ms,
            last_error,
        };
        finish(shared, &tp, batch, Err(error), false);
    }
    ready
}

async fn init_producer_id(shared: &Arc<Shared>) {
    let result = async {
        let conn = shared.cluster.any_connection().await?;
        let response = conn
            .call(|_| {
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(i32::MAX)
            })
            .await?;
        super::error::check(response.error_code, || "InitProducerId".into(), None)?;
        Ok::<_, KafkaError>((response.producer_id.0, response.producer_epoch))
    }
    .await;
    match result {
        Ok(producer) => {
            let mut state = shared.lock();
            state.producer = Some(producer);
            for queue in state.queues.values_mut() {
                queue.next_sequence = 0;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot get a producer id; retrying");
            tokio::time::sleep(Duration::from_millis(shared.config.client.retry_backoff_ms)).await;
        }
    }
}

async fn send_batches(shared: Arc<Shared>, leader: i32, mut batches: Vec<(TopicPartition, Batch)>) {
    let config = &shared.config;
    // Build (and compress) each batch once; retries resend the same bytes.
    for (tp, batch) in batches.iter_mut() {
        if batch.encoded.is_none() {
            let options = BatchOptions {
                producer_id: batch.producer.0,
                producer_epoch: batch.producer.1,
                base_sequence: batch.base_sequence,
                compression: config.compression,
            };
            match build_batch(options, &batch.records) {
                Ok(bytes) => batch.encoded = Some(bytes),
                Err(e) => tracing::error!(%tp, error = %e, "cannot build a batch"),
            }
        }
    }
    let (buildable, broken): (Vec<_>, Vec<_>) =
        batches.into_iter().partition(|(_, b)| b.encoded.is_some());
    for (tp, batch) in broken {
        let e = KafkaError::Config(format!("cannot encode a batch for {tp}"));
        finish(&shared, &tp, batch, Err(e), false);
    }
    if buildable.is_empty() {
        return;
    }
    let outcome = produce(&shared, leader, &buildable).await;
    match outcome {
        Ok(mut answers) => {
            for (tp, batch) in buildable {
                let answer = answers.remove(&tp).unwrap_or_else(|| {
                    Err(KafkaError::Protocol {
                        addr: format!("broker {leader}"),
                        reason: format!("the produce response has no answer for {tp}"),
                    })
                });
                finish(&shared, &tp, batch, answer, true);
            }
        }
        Err(e) => {
            for (tp, batch) in buildable {
                finish(&shared, &tp, batch, Err(e.clone()), true);
            }
        }
    }
}

type Answers = HashMap<TopicPartition, Result<(i64, i64), KafkaError>>;

/// Sends one Produce request; answers (base offset, log append time) per partition.
async fn produce(
    shared: &Shared,
    leader: i32,
    batches: &[(TopicPartition, Batch)],
) -> Result<Answers, KafkaError> {
    let config = &shared.config;
    let conn = shared.cluster.connection(leader).await?;
    let mut topics: BTreeMap<&str, Vec<PartitionProduceData>> = BTreeMap::new();
    for (tp, batch) in batches {
        topics.entry(&tp.topic).or_default().push(
            PartitionProduceData::default()
                .with_index(tp.partition)
                .with_records(batch.encoded.clone()),
        );
    }
    let request = ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(config.acks.code())
        .with_timeout_ms(
            config
                .client
                .connection
                .request_timeout_ms
                .min(i32::MAX as u64) as i32,
        )
        .with_topic_data(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    TopicProduceData::default()
                        .with_name(topic_name(name))
                        .with_partition_data(partitions)
                })
                .collect(),
        );
    let version = conn.version(kafka_protocol::messages::ApiKey::Produce)?;
    if config.acks == Acks::None {
        conn.send_without_response(version, &request).await?;
        return Ok(batches
            .iter()
            .map(|(tp, _)| (tp.clone(), Ok((-1, -1))))
            .collect());
    }
    let response: ProduceResponse = conn.call_at(version, &request).await?;
    let mut answers = HashMap::new();
    for topic in response.responses {
        for p in topic.partition_responses {
            let tp = TopicPartition::new(topic.name.as_str(), p.index);
            let answer = match ResponseError::try_from_code(p.error_code) {
                None => Ok((p.base_offset, p.log_append_time_ms)),
                // The broker already has this batch: a retry of something that was written.
                Some(ResponseError::DuplicateSequenceNumber) => {
                    Ok((p.base_offset, p.log_append_time_ms))
                }
                Some(code) => {
                    let message = p
                        .error_message
                        .as_ref()
                        .map(|m| m.as_str().to_string())
                        .or_else(|| {
                            p.record_errors.first().and_then(|r| {
                                r.batch_index_error_message
                                    .as_ref()
                                    .map(|m| m.as_str().to_string())
                            })
                        });
                    Err(KafkaError::broker(
                        code,
                        format!("produce to {tp}"),
                        message.as_deref(),
                    ))
                }
            };
            answers.insert(tp, answer);
        }
    }
    Ok(answers)
}

/// Completes a batch: answers its records, or puts it back at the head of its queue for a
/// retry, and frees the partition for its next batch.
fn finish(
    shared: &Shared,
    tp: &TopicPartition,
    mut batch: Batch,
    outcome: Result<(i64, i64), KafkaError>,
    was_in_flight: bool,
) {
    let config = &shared.config;
    let now = Instant::now();
    let mut state = shared.lock();
    if let Err(e) = &outcome {
        if e.invalidates_metadata() {
            shared.cluster.invalidate(&tp.topic);
        }
        let in_time = now < batch.created + Duration::from_millis(config.delivery_timeout_ms);
        if e.is_retriable() && in_time && batch.attempts < config.retries {
            batch.attempts += 1;
            batch.retry_at = Some(now + Duration::from_millis(config.client.retry_backoff_ms));
            batch.last_error = Some(e.clone());
            tracing::debug!(%tp, attempt = batch.attempts, error = %e, "retrying a batch");
            let queue = state.queues.entry(tp.clone()).or_default();
            queue.batches.push_front(batch);
            if was_in_flight {
                queue.in_flight = false;
            }
            drop(state);
            shared.wake.notify_one();
            return;
        }
        if config.enable_idempotence
            && matches!(
                e.code(),
                Some(
                    ResponseError::OutOfOrderSequenceNumber
                        | ResponseError::UnknownProducerId
                        | ResponseError::InvalidProducerEpoch
                )
            )
        {
            // The broker lost or rejected our sequence state: start over with a new id.
            state.producer = None;
            for queue in state.queues.values_mut() {
                for queued in queue.batches.iter_mut() {
                    queued.base_sequence = -1;
                    queued.encoded = None;
                }
            }
        }
    }
    if was_in_flight {
        if let Some(queue) = state.queues.get_mut(tp) {
            queue.in_flight = false;
        }
    }
    let n = batch.replies.len();
    state.outstanding_records = state.outstanding_records.saturating_sub(n);
    drop(state);
    shared.buffer.add_permits(batch.size_bytes);
    match outcome {
        Ok((base_offset, log_append_time_ms)) => {
            for (i, (reply, record)) in batch.replies.into_iter().zip(&batch.records).enumerate() {
                let offset = if base_offset >= 0 {
                    base_offset + i as i64
                } else {
                    -1
                };
                let timestamp_ms = if log_append_time_ms >= 0 {
                    log_append_time_ms
                } else {
                    record.timestamp_ms
                };
                let _ = reply.send(Ok(RecordMetadata {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset,
                    timestamp_ms,
                }));
            }
        }
        Err(e) => {
            for reply in batch.replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
    shared.progress.send_modify(|n| *n += 1);
    shared.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_batch(open: bool) -> Batch {
        Batch {
            records: Vec::new(),
            replies: Vec::new(),
            size_bytes: 0,
            created: Instant::now(),
            open,
            attempts: 0,
            retry_at: None,
            base_sequence: -1,
            producer: (-1, -1),
            encoded: None,
            last_error: None,
        }
    }

    #[test]
    fn keyless_records_stick_to_a_partition_until_its_batch_closes() {
        let mut s = State::default();
        let first = sticky_partition(&mut s, "t", 3);
        let tp = TopicPartition::new("t", first);
        s.queues
            .entry(tp.clone())
            .or_default()
            .batches
            .push_back(open_batch(true));
        assert_eq!(sticky_partition(&mut s, "t", 3), first, "open batch: stay");
        assert_eq!(sticky_partition(&mut s, "t", 3), first);
        s.queues.get_mut(&tp).expect("queue").batches[0].open = false;
        let next = sticky_partition(&mut s, "t", 3);
        assert_eq!(next, (first + 1) % 3, "closed batch: move on, round-robin");
        // Over many batches every partition gets its turn.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..6 {
            let p = sticky_partition(&mut s, "t", 3);
            seen.insert(p);
            let q = s.queues.entry(TopicPartition::new("t", p)).or_default();
            q.batches.clear();
            q.batches.push_back(open_batch(false));
        }
        assert_eq!(seen.len(), 3);
        // A topic that shrank in metadata never gets an out-of-range partition.
        assert!(sticky_partition(&mut s, "t", 1) == 0);
    }

    #[test]
    fn acks_and_idempotence_are_checked() {
        assert_eq!(Acks::parse("all").expect("all"), Acks::All);
        assert_eq!(Acks::parse("-1").expect("-1").code(), -1);
        assert_eq!(Acks::parse("0").expect("0").code(), 0);
        assert!(Acks::parse("2").is_err());
        let mut config = ProducerConfig::new(ClientConfig::new("127.0.0.1:9092"));
        config.acks = Acks::Leader;
        let e = config.validate().expect_err("idempotence needs acks=all");
        assert!(e.to_string().contains("acks=all"), "{e}");
        config.enable_idempotence = false;
        assert!(config.validate().is_ok());
    }
}
