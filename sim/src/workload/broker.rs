//! The one simulated broker the Kafka and group workloads run against: the real `Broker`
//! on the simulated disk and network, restarted by the nemesis at will; the node that
//! creates the workload's topic; and the final read of every partition after the faults
//! heal.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::*;
use madsim::runtime::{Handle, NodeHandle};
use runnel_actors::Node;
use runnel_broker::config::BrokerConfig;
use runnel_broker::{Broker, BrokerServer};
use runnel_protocol::kafka::ResponseKind;
use runnel_storage::disk::{Disk, SimDisks};
use serde_json::json;

use crate::harness::{addr_of, Clock, Nemesis, Policy, SimOptions, CHECKER_ID};
use crate::history::{History, OpType};
use crate::wire::{create_topic, decode, fetch_request, Wire};

const KAFKA_PORT: u16 = 9092;
pub(crate) const BROKER_ID: u64 = 1;
const FINAL_READ_ATTEMPTS: u32 = 40;

pub(crate) fn broker_addr() -> SocketAddr {
    SocketAddr::new(addr_of(BROKER_ID).ip(), KAFKA_PORT)
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
        // Members live 2-12 s. Kafka's 3 s initial delay starts again each time the group
        // empties and grows with every member that joins meanwhile (6 s and more was
        // seen), so under churn a seed could pass without a single generation handed out.
        (
            "group.initial.rebalance.delay.ms".to_string(),
            "500".to_string(),
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

/// A broker node's life; madsim calls it again after every restart.
pub(crate) async fn run_broker(properties: BTreeMap<String, String>) {
    let config = BrokerConfig::from_properties(properties).expect("the workload's config is valid");
    let (listener, bound) = Broker::bind(&config)
        .await
        .expect("the simulated address is free after a kill");
    let disk: Arc<dyn Disk> = Arc::new(SimDisks::current());
    let advertised = config.advertised_host_port(bound);
    let node = Node::new("broker");
    match Broker::open(&node, config, disk, advertised).await {
        Ok(broker) => {
            // Kept to the end: it holds the housekeeping actors' addresses.
            let _server = BrokerServer::start(&node, broker, listener);
            std::future::pending::<()>().await;
        }
        Err(e) => tracing::warn!(error = %e, "the broker cannot start"),
    }
    // A madsim node's init future must stay pending; the node is down until restarted.
    std::future::pending::<()>().await;
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
        .spawn(create_topic(broker_addr(), topic, partitions))
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
    let mut wire = Wire::new(broker_addr());
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
