//! The metadata workload: `servers` real brokers, each a voter of the controller quorum
//! (`controller.quorum.voters`, Kafka's combined mode), on simulated disks and network.
//! Clients create uniquely named topics through random brokers (which forward to the
//! active controller) and delete some of those they were told exist; a nemesis; then,
//! once the faults heal and the quorum settles, every broker's Metadata is read.
//! [`crate::checker::metadata`] judges the history.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::*;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use runnel_protocol::kafka::{topic_name, RequestKind, ResponseKind};
use serde_json::json;
use tokio::time::Instant;

use crate::checker;
use crate::harness::{
    addr_of, client_node, report, Clock, Nemesis, RunReport, SimOptions, CHECKER_ID,
};
use crate::history::{History, OpType};
use crate::wire::Wire;

const KAFKA_PORT: u16 = 9092;
const CONTROLLER_PORT: u16 = 9093;
/// After healing: time for an election, for fenced brokers to return and to catch up.
const SETTLE: Duration = Duration::from_secs(15);
const FINAL_READ_ATTEMPTS: u32 = 40;
/// Of a client's operations, this share deletes a topic it created (when it has one).
const DELETE_PERCENT: u32 = 30;

fn kafka_addr(id: u64) -> SocketAddr {
    SocketAddr::new(addr_of(id).ip(), KAFKA_PORT)
}

fn topic_of(id: u64) -> String {
    format!("t-{id}")
}

fn properties(id: u64, servers: u64) -> BTreeMap<String, String> {
    let voters: Vec<String> = (1..=servers)
        .map(|v| format!("{v}@{}:{CONTROLLER_PORT}", addr_of(v).ip()))
        .collect();
    let ip = addr_of(id).ip();
    BTreeMap::from([
        ("node.id".to_string(), id.to_string()),
        ("log.dirs".to_string(), "/data".to_string()),
        (
            "listeners".to_string(),
            format!("PLAINTEXT://{ip}:{KAFKA_PORT},CONTROLLER://{ip}:{CONTROLLER_PORT}"),
        ),
        ("controller.quorum.voters".to_string(), voters.join(",")),
        ("auto.create.topics.enable".to_string(), "false".to_string()),
        ("log.flush.interval.messages".to_string(), "1".to_string()),
    ])
}

pub(crate) async fn run(opts: SimOptions) -> RunReport {
    let clock = Arc::new(Clock::new());
    let history = History::new();
    let handle = Handle::current();
    let server_ids: Vec<u64> = (1..=opts.servers).collect();
    let mut servers = Vec::new();
    for &id in &server_ids {
        let properties = properties(id, opts.servers);
        let node = handle
            .create_node()
            .name(format!("broker-{id}"))
            .ip(addr_of(id).ip())
            .init(move || super::broker::run_broker(properties.clone()))
            .build();
        servers.push((id, node));
    }

    let stop_at = Instant::now() + opts.duration;
    let mut clients = Vec::new();
    let mut client_nodes = Vec::new();
    for c in 0..opts.clients {
        let (id, node) = client_node(&handle, c);
        let (history, clock, server_ids) = (history.clone(), clock.clone(), server_ids.clone());
        clients.push(node.spawn(run_client(id, server_ids, history, clock, stop_at)));
        client_nodes.push((id, node));
    }
    let mut nemesis = Nemesis::new(
        servers.iter().map(|(id, n)| (*id, n.id())).collect(),
        client_nodes.iter().map(|(id, n)| (*id, n.id())).collect(),
        history.clone(),
        clock.clone(),
    );
    nemesis.run_then_heal(&opts.faults, stop_at).await;
    for client in clients {
        client.await.expect("client tasks do not panic");
    }
    tokio::time::sleep(SETTLE).await;

    let checker_node = handle
        .create_node()
        .name("checker")
        .ip(addr_of(CHECKER_ID).ip())
        .build();
    // An operator restarts every broker that does not answer (its node shut itself down
    // after repeated disk faults), then lets the cluster settle.
    let mut restarted = false;
    for (id, server) in &servers {
        let up = checker_node
            .spawn(read_topics(*id, 3))
            .await
            .expect("the probe does not panic")
            .is_ok();
        if !up {
            nemesis.record("restart-for-final-read", json!({ "server": id }));
            handle.kill(server.id());
            handle.restart(server.id());
            restarted = true;
        }
    }
    if restarted {
        tokio::time::sleep(SETTLE).await;
    }
    for &id in &server_ids {
        let read = checker_node.spawn(final_read(id, history.clone(), clock.clone()));
        read.await.expect("final read does not panic");
    }
    let ops = history.ops();
    let anomalies = checker::metadata::check(&ops);
    report(&opts, &ops, anomalies, &clock, nemesis.injected)
}

async fn run_client(
    node_id: u64,
    server_ids: Vec<u64>,
    history: History,
    clock: Arc<Clock>,
    stop_at: Instant,
) {
    let process = format!("client-{node_id}");
    let mut wires: BTreeMap<u64, Wire> = server_ids
        .iter()
        .map(|&id| (id, Wire::new(kafka_addr(id))))
        .collect();
    // Topics this client was told exist and has not tried to delete.
    let mut created: Vec<u64> = Vec::new();
    let mut seq = 0u64;
    while Instant::now() < stop_at {
        let server = server_ids[thread_rng().gen_range(0..server_ids.len())];
        let wire = wires.get_mut(&server).expect("a wire per server");
        let delete = !created.is_empty() && thread_rng().gen_range(0..100) < DELETE_PERCENT;
        let (f, id) = if delete {
            let at = thread_rng().gen_range(0..created.len());
            ("delete", created.swap_remove(at))
        } else {
            seq += 1;
            ("create", (node_id << 32) | seq)
        };
        history.record(
            clock.now_ns(),
            process.clone(),
            OpType::Invoke,
            f,
            json!({ "id": id }),
        );
        let (op_type, detail) = if delete {
            delete_topic(wire, id).await
        } else {
            create_topic(wire, id).await
        };
        if f == "create" && op_type == OpType::Ok {
            created.push(id);
        }
        history.record(
            clock.now_ns(),
            process.clone(),
            op_type,
            f,
            json!({ "id": id, "server": server, "detail": detail }),
        );
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(10..100))).await;
    }
}

/// An error code's meaning for the history: refused for sure, or perhaps applied.
fn outcome(code: i16, message: Option<&str>) -> (OpType, String) {
    use kafka_protocol::ResponseError as E;
    let detail = format!("error {code}: {}", message.unwrap_or(""));
    match E::try_from_code(code) {
        None if code == 0 => (OpType::Ok, String::new()),
        // Perhaps committed: the answer was lost, or this broker failed to apply it.
        Some(
            E::RequestTimedOut
            | E::KafkaStorageError
            | E::BrokerNotAvailable
            | E::UnknownServerError,
        ) => (OpType::Unknown, detail),
        // Refused by the active controller, or by a broker that never sent it on.
        Some(_) => (OpType::Fail, detail),
        None => (OpType::Unknown, detail),
    }
}

async fn create_topic(wire: &mut Wire, id: u64) -> (OpType, String) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(topic_name(&topic_of(id)))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    match wire
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request))
        .await
    {
        Ok(ResponseKind::CreateTopics(r)) => match r.topics.first() {
            Some(t) => outcome(t.error_code, t.error_message.as_deref()),
            None => (OpType::Unknown, "no topic in the answer".into()),
        },
        Ok(_) => (OpType::Unknown, "another answer".into()),
        Err(e) => (OpType::Unknown, e),
    }
}

async fn delete_topic(wire: &mut Wire, id: u64) -> (OpType, String) {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topic_names(vec![topic_name(&topic_of(id))]);
    match wire
        .call(ApiKey::DeleteTopics, 5, RequestKind::DeleteTopics(request))
        .await
    {
        Ok(ResponseKind::DeleteTopics(r)) => match r.responses.first() {
            Some(t) => outcome(t.error_code, t.error_message.as_deref()),
            None => (OpType::Unknown, "no topic in the answer".into()),
        },
        Ok(_) => (OpType::Unknown, "another answer".into()),
        Err(e) => (OpType::Unknown, e),
    }
}

/// The workload's topics a broker's Metadata names, by id.
async fn read_topics(server: u64, attempts: u32) -> Result<Vec<u64>, String> {
    let mut wire = Wire::new(kafka_addr(server));
    let mut last_error = String::new();
    for _ in 0..attempts {
        let request = MetadataRequest::default().with_topics(None);
        match wire
            .call(ApiKey::Metadata, 12, RequestKind::Metadata(request))
            .await
        {
            Ok(ResponseKind::Metadata(r)) => {
                let mut ids: Vec<u64> = r
                    .topics
                    .iter()
                    .filter_map(|t| t.name.as_ref())
                    .filter_map(|n| n.0.strip_prefix("t-").and_then(|id| id.parse().ok()))
                    .collect();
                ids.sort_unstable();
                return Ok(ids);
            }
            Ok(_) => last_error = "another answer".into(),
            Err(e) => last_error = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last_error)
}

async fn final_read(server: u64, history: History, clock: Arc<Clock>) {
    history.record(
        clock.now_ns(),
        "checker",
        OpType::Invoke,
        "final-read",
        json!({ "server": server }),
    );
    match read_topics(server, FINAL_READ_ATTEMPTS).await {
        Ok(topics) => history.record(
            clock.now_ns(),
            "checker",
            OpType::Ok,
            "final-read",
            json!({ "server": server, "topics": topics }),
        ),
        Err(error) => history.record(
            clock.now_ns(),
            "checker",
            OpType::Unknown,
            "final-read",
            json!({ "server": server, "error": error }),
        ),
    }
}
