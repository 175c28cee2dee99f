//! The producer of the Kafka and group workloads: unique values to random partitions,
//! each send with acks=1 or acks=all, every outcome recorded as ok with its offset, a
//! definite failure (an error code), or unknown (no answer in time).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::*;
use madsim::rand::{thread_rng, Rng};
use runnel_protocol::batch::build;
use runnel_protocol::kafka::{topic_name, RequestKind, ResponseKind};
use serde_json::json;
use tokio::time::Instant;

use super::broker::broker_addr;
use crate::harness::Clock;
use crate::history::{History, OpType};
use crate::wire::Wire;

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
    let mut wire = Wire::new(broker_addr());
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
