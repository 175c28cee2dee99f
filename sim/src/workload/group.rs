//! The consumer-group workload: one simulated broker, producers sending unique values, and
//! members of one consumer group (our client's `GroupConsumer`; half the seeds speak the
//! classic protocol, half KIP-848's, recorded as `group-protocol`) that
//! process records at least once: poll, record what they read, then commit exactly the
//! offsets after it. Members crash (dropped without leaving, so their session must expire)
//! or leave cleanly, and come back; the nemesis kills the broker and cuts the network.
//! After the faults heal, members run on until they have caught up, then a final read of
//! every partition and of the group's committed offsets. [`crate::checker::group`] judges
//! the history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use runnel_client::kafka::{
    ClientConfig, ConsumerConfig, GroupConsumer, GroupConsumerConfig, GroupProtocol, KafkaError,
    OffsetReset, TopicPartition,
};
use runnel_protocol::kafka::{RequestKind, ResponseKind};
use serde_json::json;
use tokio::time::Instant;

use super::broker::{broker_addr, final_read_or_restart, start_broker, BROKER_ID};
use super::producer::produce_to;
use crate::checker::{self, Anomaly};
use crate::harness::{client_node, report, Clock, Nemesis, RunReport, SimOptions};
use crate::history::{History, OpType};
use crate::wire::Wire;

const TOPIC: &str = "grouped";
const PARTITIONS: i32 = 4;
const GROUP: &str = "sim-group";
/// After the faults heal, members go on this long so the group settles and catches up.
const CATCH_UP: Duration = Duration::from_secs(30);
/// A member lives this long (simulated) before it crashes or leaves, at most.
const MAX_LIFE_MS: u64 = 12_000;

pub(crate) async fn run(opts: SimOptions) -> RunReport {
    assert!(
        opts.clients >= 2,
        "the group workload needs a producer and a member"
    );
    let clock = Arc::new(Clock::new());
    let history = History::new();
    let handle = Handle::current();
    let (broker, checker_node) = start_broker(&handle, &opts, TOPIC, PARTITIONS).await;

    // Half the seeds run the classic protocol, half KIP-848's.
    let protocol = if thread_rng().gen_bool(0.5) {
        GroupProtocol::Consumer
    } else {
        GroupProtocol::Classic
    };
    history.record(
        clock.now_ns(),
        "checker",
        OpType::Info,
        "group-protocol",
        json!({ "consumer": protocol == GroupProtocol::Consumer }),
    );
    let stop_at = Instant::now() + opts.duration;
    let mut producers = Vec::new();
    let mut members = Vec::new();
    let mut client_nodes = Vec::new();
    for c in 0..opts.clients {
        let (id, node) = client_node(&handle, c);
        let (history, clock) = (history.clone(), clock.clone());
        // One producer; the other clients are group members.
        if c == 0 {
            producers.push(node.spawn(produce_to(TOPIC, PARTITIONS, c, history, clock, stop_at)));
        } else {
            members.push(node.spawn(member(c, protocol, history, clock, stop_at)));
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
    for task in producers.into_iter().chain(members) {
        task.await.expect("client tasks do not panic");
    }
    let read = final_read_or_restart(
        &handle,
        &broker,
        &checker_node,
        &mut nemesis,
        (TOPIC, PARTITIONS),
        &history,
        &clock,
    )
    .await;
    if read {
        checker_node
            .spawn(final_committed(history.clone(), clock.clone()))
            .await
            .expect("the committed-offsets read does not panic");
    }
    let ops = history.ops();
    let mut anomalies = checker::group::check(&ops, PARTITIONS);
    if !read {
        anomalies.push(Anomaly::Unreadable { server: BROKER_ID });
    }
    report(&opts, &ops, anomalies, &clock, nemesis.injected)
}

fn consumer_config(protocol: GroupProtocol) -> GroupConsumerConfig {
    let mut client = ClientConfig::new(&broker_addr().to_string());
    client.connection.client_id = "runnel-sim".into();
    client.connection.request_timeout_ms = 5_000;
    client.retry_backoff_ms = 100;
    let mut consumer = ConsumerConfig::new(client);
    consumer.auto_offset_reset = OffsetReset::Earliest;
    consumer.fetch_max_wait_ms = 200;
    let mut config = GroupConsumerConfig::new(consumer, GROUP);
    config.session_timeout_ms = 6_000;
    config.heartbeat_interval_ms = 1_000;
    config.max_poll_interval_ms = 20_000;
    // At-least-once by hand: commit exactly what was recorded as processed.
    config.enable_auto_commit = false;
    config.group_protocol = protocol;
    config
}

/// One group member's life, again and again: join, poll and commit until it crashes or
/// leaves, then come back; after `stop_at` it stays, and catches up for `CATCH_UP`.
async fn member(
    process: u64,
    protocol: GroupProtocol,
    history: History,
    clock: Arc<Clock>,
    stop_at: Instant,
) {
    let name = process.to_string();
    let end = stop_at + CATCH_UP;
    while Instant::now() < end {
        let mut consumer = match GroupConsumer::new(consumer_config(protocol)).await {
            Ok(consumer) => consumer,
            Err(e) => {
                history.record(
                    clock.now_ns(),
                    name.clone(),
                    OpType::Info,
                    "connect-failed",
                    json!({ "error": e.to_string() }),
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        consumer
            .subscribe(&[TOPIC])
            .expect("a non-empty subscription");
        let life = Duration::from_millis(thread_rng().gen_range(2_000..MAX_LIFE_MS));
        let dies_at = Instant::now() + life;
        let mut seen: Option<(String, i32, Vec<i32>)> = None;
        loop {
            let now = Instant::now();
            if now >= end {
                let _ = consumer.close().await;
                return;
            }
            if now < stop_at && now >= dies_at {
                if thread_rng().gen_bool(0.5) {
                    history.record(
                        clock.now_ns(),
                        name.clone(),
                        OpType::Info,
                        "crash",
                        json!({ "member": consumer.member_id() }),
                    );
                    drop(consumer);
                } else {
                    let left = consumer.close().await.is_ok();
                    history.record(
                        clock.now_ns(),
                        name.clone(),
                        OpType::Info,
                        "leave",
                        json!({ "member": consumer.member_id(), "ok": left }),
                    );
                }
                tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(100..3_000))).await;
                break;
            }
            let polled = consumer.poll(Duration::from_millis(300)).await;
            let generation = consumer.generation_id();
            let member_id = consumer.member_id();
            if generation >= 0 {
                let mut partitions: Vec<i32> = consumer
                    .assignment()
                    .iter()
                    .filter(|tp| tp.topic == TOPIC)
                    .map(|tp| tp.partition)
                    .collect();
                partitions.sort_unstable();
                let now_seen = (member_id.clone(), generation, partitions);
                if seen.as_ref() != Some(&now_seen) {
                    // A classic generation fixes every member's assignment at once. A KIP-848
                    // member's epoch moves on before its revocations show in what it owns,
                    // so (epoch, partitions) seen from outside is no such snapshot: noted,
                    // not judged.
                    let f = match protocol {
                        GroupProtocol::Classic => "assigned",
                        GroupProtocol::Consumer => "owned",
                    };
                    history.record(clock.now_ns(), name.clone(), OpType::Info, f, json!({ "member": now_seen.0, "generation": now_seen.1, "partitions": now_seen.2 }));
                    seen = Some(now_seen);
                }
            }
            let records = match polled {
                Ok(records) => records,
                Err(e) => {
                    history.record(
                        clock.now_ns(),
                        name.clone(),
                        OpType::Info,
                        "poll-error",
                        json!({ "error": e.to_string() }),
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if records.is_empty() {
                continue;
            }
            let mut read: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
            let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
            for r in &records {
                let value = r
                    .value
                    .as_deref()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .expect("every value is a number the workload wrote");
                read.entry(r.partition.to_string())
                    .or_default()
                    .push((r.offset, value));
                let tp = TopicPartition::new(TOPIC, r.partition);
                let after = next.entry(tp).or_insert(r.offset + 1);
                *after = (*after).max(r.offset + 1);
            }
            let positions: BTreeMap<String, i64> = consumer
                .assignment()
                .iter()
                .filter_map(|tp| Some((tp.partition.to_string(), consumer.position(tp)?)))
                .collect();
            // Processing is recording the records; only then are they committed.
            history.record(
                clock.now_ns(),
                name.clone(),
                OpType::Ok,
                "poll",
                json!({ "member": member_id, "generation": generation, "records": read, "positions": positions }),
            );
            let offsets: BTreeMap<String, i64> = next
                .iter()
                .map(|(tp, o)| (tp.partition.to_string(), *o))
                .collect();
            history.record(
                clock.now_ns(),
                name.clone(),
                OpType::Invoke,
                "commit",
                json!({ "member": member_id, "generation": generation, "offsets": offsets }),
            );
            let outcome = consumer.commit_offsets(&next).await;
            let (op_type, detail) = match outcome {
                Ok(()) => (OpType::Ok, json!({ "offsets": offsets })),
                // The coordinator said no (an earlier attempt may still have landed, so the
                // checker relies on acknowledged commits only).
                Err(e @ KafkaError::Broker { .. }) => (
                    OpType::Fail,
                    json!({ "offsets": offsets, "error": e.to_string() }),
                ),
                Err(e) => (
                    OpType::Unknown,
                    json!({ "offsets": offsets, "error": e.to_string() }),
                ),
            };
            history.record(clock.now_ns(), name.clone(), op_type, "commit", detail);
        }
    }
}

/// The group's committed offsets as the broker has them at the end.
async fn final_committed(history: History, clock: Arc<Clock>) {
    let mut wire = Wire::new(broker_addr());
    history.record(
        clock.now_ns(),
        "checker",
        OpType::Invoke,
        "final-committed",
        json!({}),
    );
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_topics(None);
    for _ in 0..40 {
        if let Ok(ResponseKind::OffsetFetch(r)) = wire
            .call(
                ApiKey::OffsetFetch,
                7,
                RequestKind::OffsetFetch(request.clone()),
            )
            .await
        {
            if r.error_code == 0 {
                let offsets: BTreeMap<String, i64> = r
                    .topics
                    .iter()
                    .filter(|t| t.name.as_str() == TOPIC)
                    .flat_map(|t| &t.partitions)
                    .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
                    .map(|p| (p.partition_index.to_string(), p.committed_offset))
                    .collect();
                history.record(
                    clock.now_ns(),
                    "checker",
                    OpType::Ok,
                    "final-committed",
                    json!({ "offsets": offsets }),
                );
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    history.record(
        clock.now_ns(),
        "checker",
        OpType::Unknown,
        "final-committed",
        json!({}),
    );
}
