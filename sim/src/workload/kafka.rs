//! The Kafka workload: one simulated broker (the real `Broker` on the simulated disk and
//! network), producers sending unique values with acks=1 or acks=all, consumers polling by
//! assignment, a nemesis, then a final read of every partition after the faults heal.
//!
//! Clients speak raw Kafka frames through `runnel_protocol::kafka`, so each send has a
//! precise outcome: ok with its offset, a definite failure (an error code), or unknown (no
//! answer in time). The history is judged by [`crate::checker::kafka`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use runnel_actors::Node;
use runnel_broker::config::BrokerConfig;
use runnel_broker::{Broker, BrokerServer};
use runnel_protocol::batch::{build, RecordBatch};
use runnel_protocol::kafka::{self, topic_name, RequestKind, ResponseKind};
use runnel_storage::disk::{Disk, SimDisks};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::harness::{addr_of, report, Clock, Nemesis, CHECKER_ID, CLIENT_ID_BASE};
use crate::history::{History, OpType};
use crate::{checker, Policy, RunReport, SimOptions};

const KAFKA_PORT: u16 = 9092;
pub(crate) const BROKER_ID: u64 = 1;
const TOPIC: &str = "jepsen";
pub const PARTITIONS: i32 = 2;
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
const FINAL_READ_ATTEMPTS: u32 = 40;
/// Frames larger than this from the simulated broker mean a bug; refuse them.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

pub(crate) fn broker_addr() -> SocketAddr {
    SocketAddr::new(addr_of(BROKER_ID).ip(), KAFKA_PORT)
}

pub(crate) async fn run(opts: SimOptions) -> RunReport {
    assert!(
        opts.clients >= 2,
        "the Kafka workload needs a producer and a consumer"
    );
    let clock = Arc::new(Clock::new());
    let history = History::new();
    let handle = Handle::current();
    let (broker, checker_node) = start_broker(&handle, &opts, TOPIC, PARTITIONS).await;

    let stop_at = Instant::now() + opts.duration;
    let mut tasks = Vec::new();
    let mut client_nodes = Vec::new();
    for c in 0..opts.clients {
        let id = CLIENT_ID_BASE + c;
        let node = handle
            .create_node()
            .name(format!("client-{c}"))
            .ip(addr_of(id).ip())
            .build();
        let (history, clock) = (history.clone(), clock.clone());
        // Every third client consumes; the others produce.
        if c % 3 == 2 || (c == opts.clients - 1 && c < 2) {
            tasks.push(node.spawn(consume(c, history, clock, stop_at)));
        } else {
            tasks.push(node.spawn(produce(c, history, clock, stop_at)));
        }
        client_nodes.push((id, node.id()));
    }

    let mut nemesis = Nemesis::new(
        vec![(BROKER_ID, broker.id())],
        client_nodes,
        history.clone(),
        clock.clone(),
    );
    nemesis.run_then_heal(&opts.faults, stop_at).await;
    for task in tasks {
        task.await.expect("client tasks do not panic");
    }
    final_read_or_restart(
        &handle,
        &broker,
        &checker_node,
        &mut nemesis,
        (TOPIC, PARTITIONS),
        &history,
        &clock,
    )
    .await;

    let ops = history.ops();
    let mut anomalies = checker::kafka::check(&ops);
    let read_back = ops
        .iter()
        .filter(|op| op.f == "final-read" && op.op_type == OpType::Ok)
        .count();
    if read_back < PARTITIONS as usize {
        anomalies.push(crate::checker::Anomaly::Unreadable { server: BROKER_ID });
    }
    report(&opts, &ops, anomalies, &clock, nemesis.injected)
}

fn broker_properties(opts: &SimOptions) -> BTreeMap<String, String> {
    let mut p = BTreeMap::from([
        ("log.dirs".to_string(), "/data".to_string()),
        (
            "listeners".to_string(),
            format!("PLAINTEXT://{}", broker_addr()),
        ),
        ("auto.create.topics.enable".to_string(), "false".to_string()),
        // KIP-848 members that crash hold their partitions until their session expires;
        // Kafka's 45 s would outlast the group workload's catch-up.
        (
            "group.consumer.session.timeout.ms".to_string(),
            "6000".to_string(),
        ),
        (
            "group.consumer.heartbeat.interval.ms".to_string(),
            "1000".to_string(),
        ),
    ]);
    match opts.policy {
        // Every append is fsynced before it is acknowledged or visible.
        Policy::FsyncBeforeAck => {
            p.insert("log.flush.interval.messages".into(), "1".into());
        }
        // Kafka's default leaves fsync to the OS; here a timer flushes now and then.
        Policy::AckBeforeFsync => {
            p.insert(
                "log.flush.interval.ms".into(),
                opts.flush_interval.as_millis().to_string(),
            );
        }
    }
    p
}

/// The broker node's life; madsim calls it again after every restart.
async fn run_broker(properties: BTreeMap<String, String>) {
    let config = BrokerConfig::from_properties(properties).expect("the workload's config is valid");
    let (listener, bound) = Broker::bind(&config)
        .await
        .expect("the simulated address is free after a kill");
    let disk: Arc<dyn Disk> = Arc::new(SimDisks::current());
    let advertised = config.advertised_host_port(bound);
    match Broker::open(config, disk, advertised).await {
        Ok(broker) => {
            // Kept to the end: it holds the housekeeping actors' addresses.
            let _server = BrokerServer::start(&Node::new("broker"), broker, listener);
            std::future::pending::<()>().await;
        }
        Err(e) => tracing::warn!(error = %e, "the broker cannot start"),
    }
    // A madsim node's init future must stay pending; the node is down until restarted.
    std::future::pending::<()>().await;
}

/// A raw Kafka connection: one request at a time, each with a deadline.
pub(crate) struct Wire {
    stream: Option<TcpStream>,
    next_id: i32,
}

impl Wire {
    pub(crate) fn new() -> Self {
        Wire {
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
            let stream = TcpStream::connect(broker_addr())
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

async fn create_topic(topic: &str, partitions: i32) {
    let mut wire = Wire::new();
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

async fn produce(process: u64, history: History, clock: Arc<Clock>, stop_at: Instant) {
    produce_to(TOPIC, PARTITIONS, process, history, clock, stop_at).await
}

/// Sends unique values (`process << 32 | sequence`) to random partitions of `topic` until
/// `stop_at`, each with acks=1 or acks=all, recording every outcome.
pub(crate) async fn produce_to(
    topic: &'static str,
    partitions: i32,
    process: u64,
    history: History,
    clock: Arc<Clock>,
    stop_at: Instant,
) {
    let mut wire = Wire::new();
    let name = process.to_string();
    let mut seq = 0u64;
    while Instant::now() < stop_at {
        seq += 1;
        let value = (process << 32) | seq;
        let partition = thread_rng().gen_range(0..partitions);
        let acks: i16 = if thread_rng().gen_bool(0.5) { 1 } else { -1 };
        let sent = json!({ "partition": partition, "value": value, "acks": acks });
        history.record(clock.now_ns(), name.clone(), OpType::Invoke, "send", sent);
        let text = value.to_string();
        let batch = build::batch(
            1_700_000_000_000,
            &[build::Record {
                key: None,
                value: Some(text.as_bytes()),
                timestamp_delta: 0,
            }],
        );
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(1000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch.as_bytes().clone())),
                ])]);
        let outcome = wire
            .call(ApiKey::Produce, 9, RequestKind::Produce(request))
            .await;
        let (op_type, result) = match outcome {
            Ok(ResponseKind::Produce(r)) => {
                let p = &r.responses[0].partition_responses[0];
                if p.error_code == 0 {
                    (
                        OpType::Ok,
                        json!({ "partition": partition, "value": value, "offset": p.base_offset }),
                    )
                } else {
                    (
                        OpType::Fail,
                        json!({ "partition": partition, "value": value, "error": p.error_code }),
                    )
                }
            }
            Ok(_) => (
                OpType::Unknown,
                json!({ "value": value, "error": "wrong response" }),
            ),
            Err(e) => (
                OpType::Unknown,
                json!({ "partition": partition, "value": value, "error": e }),
            ),
        };
        history.record(clock.now_ns(), name.clone(), op_type, "send", result);
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(5..50))).await;
    }
}

/// The records of one fetched partition at or after `from`, as (offset, value). A batch
/// failing its CRC is an error, as for a consumer with `check.crcs=true`: the broker
/// serves stored bytes unchecked, and a disk that flips bits on read shows here.
fn decode(records: Option<&Bytes>, from: i64) -> Result<Vec<(i64, u64)>, String> {
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

fn fetch_request(topic: &str, positions: &[i64], max_wait_ms: i32) -> RequestKind {
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

async fn consume(process: u64, history: History, clock: Arc<Clock>, stop_at: Instant) {
    let mut wire = Wire::new();
    let name = process.to_string();
    let mut positions = vec![0i64; PARTITIONS as usize];
    while Instant::now() < stop_at {
        history.record(
            clock.now_ns(),
            name.clone(),
            OpType::Invoke,
            "poll",
            json!({ "positions": positions }),
        );
        match wire
            .call(ApiKey::Fetch, 12, fetch_request(TOPIC, &positions, 200))
            .await
        {
            Ok(ResponseKind::Fetch(r)) => {
                let mut read = serde_json::Map::new();
                for topic in &r.responses {
                    for p in &topic.partitions {
                        let index = p.partition_index as usize;
                        if index >= positions.len() {
                            continue;
                        }
                        if p.error_code == kafka_protocol::ResponseError::OffsetOutOfRange.code() {
                            // auto.offset.reset=earliest, as a consumer would.
                            history.record(clock.now_ns(), name.clone(), OpType::Info, "reset", json!({ "partition": index, "from": positions[index], "to": p.log_start_offset.max(0) }));
                            positions[index] = p.log_start_offset.max(0);
                            continue;
                        }
                        let got = match decode(p.records.as_ref(), positions[index]) {
                            Ok(got) => got,
                            Err(e) => {
                                history.record(
                                    clock.now_ns(),
                                    name.clone(),
                                    OpType::Info,
                                    "corrupt-fetch",
                                    json!({ "partition": index, "error": e }),
                                );
                                continue;
                            }
                        };
                        if let Some(&(last, _)) = got.last() {
                            positions[index] = last + 1;
                        }
                        if !got.is_empty() {
                            read.insert(index.to_string(), json!(got));
                        }
                    }
                }
                history.record(
                    clock.now_ns(),
                    name.clone(),
                    OpType::Ok,
                    "poll",
                    json!({ "records": read }),
                );
            }
            Ok(_) | Err(_) => {
                history.record(
                    clock.now_ns(),
                    name.clone(),
                    OpType::Unknown,
                    "poll",
                    json!({}),
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The broker node (restarted by the nemesis at will) and a checker node that has created
/// the workload's topic.
pub(crate) async fn start_broker(
    handle: &Handle,
    opts: &SimOptions,
    topic: &'static str,
    partitions: i32,
) -> (NodeHandle, NodeHandle) {
    let properties = broker_properties(opts);
    let broker = handle
        .create_node()
        .name("broker-1")
        .ip(addr_of(BROKER_ID).ip())
        .init(move || run_broker(properties.clone()))
        .build();
    let checker = handle
        .create_node()
        .name("checker")
        .ip(addr_of(CHECKER_ID).ip())
        .build();
    checker
        .spawn(create_topic(topic, partitions))
        .await
        .expect("topic creation does not panic");
    (broker, checker)
}

/// The final read of every partition; if it fails (the broker may be down after a disk
/// fault at start-up), the broker is restarted, as an operator would, and read once more.
/// True when a read succeeded.
pub(crate) async fn final_read_or_restart(
    handle: &Handle,
    broker: &NodeHandle,
    checker: &NodeHandle,
    nemesis: &mut Nemesis,
    (topic, partitions): (&'static str, i32),
    history: &History,
    clock: &Arc<Clock>,
) -> bool {
    for attempt in 0..2 {
        if attempt > 0 {
            nemesis.record("restart-for-final-read", json!({ "server": BROKER_ID }));
            handle.kill(broker.id());
            handle.restart(broker.id());
        }
        let read = checker.spawn(final_read_of(
            topic,
            partitions,
            history.clone(),
            clock.clone(),
        ));
        if read.await.expect("the final read does not panic") {
            return true;
        }
    }
    false
}

/// Reads every partition from its start to its high watermark; true when all were read.
async fn final_read_of(
    topic: &'static str,
    partitions: i32,
    history: History,
    clock: Arc<Clock>,
) -> bool {
    let mut wire = Wire::new();
    let mut all_ok = true;
    for partition in 0..partitions {
        history.record(
            clock.now_ns(),
            "checker",
            OpType::Invoke,
            "final-read",
            json!({ "partition": partition }),
        );
        let mut records: Vec<(i64, u64)> = Vec::new();
        let mut position = 0i64;
        let mut attempts = 0;
        let mut last_error = String::new();
        let done = loop {
            if attempts >= FINAL_READ_ATTEMPTS {
                break false;
            }
            let mut positions = vec![0i64; partitions as usize];
            positions[partition as usize] = position;
            match wire
                .call(ApiKey::Fetch, 12, fetch_request(topic, &positions, 0))
                .await
            {
                Ok(ResponseKind::Fetch(r)) => {
                    let Some(p) = r
                        .responses
                        .iter()
                        .flat_map(|t| &t.partitions)
                        .find(|p| p.partition_index == partition)
                    else {
                        attempts += 1;
                        continue;
                    };
                    if p.error_code != 0 {
                        last_error = format!("error code {}", p.error_code);
                        attempts += 1;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                    let got = match decode(p.records.as_ref(), position) {
                        Ok(got) => got,
                        Err(e) => {
                            last_error = e;
                            attempts += 1;
                            continue;
                        }
                    };
                    if let Some(&(last, _)) = got.last() {
                        position = last + 1;
                    }
                    records.extend(got);
                    if position >= p.high_watermark {
                        break true;
                    }
                }
                other => {
                    last_error = match other {
                        Err(e) => e,
                        Ok(_) => "a response of another kind".into(),
                    };
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        let op_type = if done { OpType::Ok } else { OpType::Unknown };
        all_ok &= done;
        let mut result = json!({ "partition": partition, "records": records });
        if !done {
            result["error"] = json!(last_error);
        }
        history.record(clock.now_ns(), "checker", op_type, "final-read", result);
    }
    all_ok
}
