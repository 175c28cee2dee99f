//! The Kafka workload: one simulated broker ([`super::broker`]), producers sending unique
//! values with acks=1 or acks=all ([`super::producer`]), consumers polling by assignment,
//! a nemesis, then a final read of every partition after the faults heal.
//!
//! Clients speak raw Kafka frames ([`crate::wire`]), so each send has a precise outcome:
//! ok with its offset, a definite failure (an error code), or unknown (no answer in time).
//! The history is judged by [`crate::checker::kafka`].

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::*;
use madsim::runtime::Handle;
use runnel_protocol::kafka::ResponseKind;
use serde_json::json;
use tokio::time::Instant;

use super::broker::{broker_addr, final_read_or_restart, start_broker, BROKER_ID};
use super::producer::produce_to;
use crate::checker::{self, Anomaly};
use crate::harness::{client_node, report, Clock, Nemesis, RunReport, SimOptions};
use crate::history::{History, OpType};
use crate::wire::{decode, fetch_request, Wire};

const TOPIC: &str = "jepsen";
const PARTITIONS: i32 = 2;

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
        let (id, node) = client_node(&handle, c);
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
        anomalies.push(Anomaly::Unreadable { server: BROKER_ID });
    }
    report(&opts, &ops, anomalies, &clock, nemesis.injected)
}

async fn produce(process: u64, history: History, clock: Arc<Clock>, stop_at: Instant) {
    produce_to(TOPIC, PARTITIONS, process, history, clock, stop_at).await
}

async fn consume(process: u64, history: History, clock: Arc<Clock>, stop_at: Instant) {
    let mut wire = Wire::new(broker_addr());
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
