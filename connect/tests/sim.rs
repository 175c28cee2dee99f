//! The worker inside madsim's simulator: the real broker on a simulated node and disk, the
//! worker on another, its files on an in-memory disk, driven through the REST handlers as
//! plain functions; and two distributed workers on their own nodes, one crashed. Built
//! and run with `--cfg madsim` (ci/test's simulation step).
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::{Handle, Runtime};
use runnel_actors::{Node, ShutdownReason};
use runnel_broker::config::BrokerConfig;
use runnel_broker::{Broker, BrokerServer};
use runnel_connect::api::Plugins;
use runnel_connect::distributed::config::DistributedConfig;
use runnel_connect::http::{self, HttpRequest};
use runnel_connect::rest;
use runnel_connect::worker::{Herder, WorkerConfig};
use runnel_storage::disk::{Disk, MemDisk, OpenMode, SimDisks};
use serde_json::{json, Value as Json};

/// Simulated addresses in a documentation range (TEST-NET-1): no real packet is sent.
fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
}

fn broker_addr() -> SocketAddr {
    SocketAddr::new(ip(1), 9092)
}

async fn run_broker() {
    let properties = BTreeMap::from([
        ("log.dirs".to_string(), "/data".to_string()),
        (
            "listeners".to_string(),
            format!("PLAINTEXT://{}", broker_addr()),
        ),
        (
            "group.initial.rebalance.delay.ms".to_string(),
            "0".to_string(),
        ),
    ]);
    let config = BrokerConfig::from_properties(properties).expect("valid config");
    let (listener, bound) = Broker::bind(&config).await.expect("bind");
    let disk: Arc<dyn Disk> = Arc::new(SimDisks::current());
    let node = Node::new("broker");
    let broker = Broker::open(
        &node,
        config.clone(),
        disk,
        config.advertised_host_port(bound),
    )
    .await
    .expect("the broker opens");
    let _server = BrokerServer::start(&node, broker, listener);
    // A madsim node's init future must stay pending.
    std::future::pending::<()>().await;
}

async fn call(herder: &Herder, method: &str, path: &str, body: Option<Json>) -> (u16, Json) {
    let req = HttpRequest {
        method: method.into(),
        path: path.into(),
        query: Vec::new(),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    };
    let r = rest::handle(herder, req).await;
    let body = r
        .body
        .map(|b| serde_json::from_slice(&b).expect("JSON"))
        .unwrap_or(Json::Null);
    (r.status, body)
}

async fn read(disk: &MemDisk, path: &str) -> String {
    match disk.open(Path::new(path), OpenMode::Existing).await {
        Ok(f) => {
            let size = f.size_bytes().await.expect("size") as usize;
            String::from_utf8_lossy(&f.read_at(0, size).await.expect("read")).into_owned()
        }
        Err(_) => String::new(),
    }
}

async fn append(disk: &MemDisk, path: &str, text: &str) {
    let f = disk
        .open(Path::new(path), OpenMode::Create)
        .await
        .expect("open");
    f.append(text.as_bytes()).await.expect("append");
}

/// Waits in simulated time until `path` holds `want`.
async fn wait_for_file(disk: &MemDisk, path: &str, want: &str) {
    for _ in 0..600 {
        if read(disk, path).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{path} never held {want:?}; it holds {:?}",
        read(disk, path).await
    );
}

#[test]
fn the_file_pipeline_runs_in_the_simulator_and_survives_a_worker_restart() {
    let runtime = Runtime::with_seed_and_config(7, madsim::Config::default());
    runtime.add_simulator::<SimDisks>();
    runtime.block_on(async {
        let handle = Handle::current();
        let _broker = handle.create_node().name("broker").ip(ip(1)).init(run_broker).build();
        let worker = handle.create_node().name("worker").ip(ip(2)).build();
        let files = Arc::new(MemDisk::new(7));
        append(&files, "test.txt", "foo\nbar\n").await;
        let disk = files.clone();
        worker
            .spawn(async move {
                let props = BTreeMap::from([
                    ("bootstrap.servers".to_string(), broker_addr().to_string()),
                    ("offset.storage.file.filename".to_string(), "connect.offsets".to_string()),
                    ("offset.flush.interval.ms".to_string(), "500".to_string()),
                    ("key.converter".to_string(), "org.apache.kafka.connect.storage.StringConverter".to_string()),
                    ("value.converter".to_string(), "org.apache.kafka.connect.storage.StringConverter".to_string()),
                ]);
                let source = json!({"name": "src", "config": {"connector.class": "FileStreamSource", "file": "test.txt", "topic": "lines"}});
                let sink = json!({"name": "sink", "config": {"connector.class": "FileStreamSink", "file": "test.sink.txt", "topics": "lines"}});
                for round in 0..2 {
                    let (config, _) = WorkerConfig::from_properties(props.clone()).expect("config");
                    let node = Node::new("connect");
                    let dyn_disk: Arc<dyn Disk> = disk.clone();
                    let herder = Herder::start(&node, config, Plugins::builtin(), dyn_disk, "worker:8083".into())
                        .await
                        .expect("the worker starts");
                    assert_eq!(call(&herder, "POST", "/connectors", Some(source.clone())).await.0, 201);
                    assert_eq!(call(&herder, "POST", "/connectors", Some(sink.clone())).await.0, 201);
                    if round == 0 {
                        wait_for_file(&disk, "test.sink.txt", "foo\nbar\n").await;
                        append(&disk, "test.txt", "baz\n").await;
                        wait_for_file(&disk, "test.sink.txt", "foo\nbar\nbaz\n").await;
                    } else {
                        append(&disk, "test.txt", "after the restart\n").await;
                        wait_for_file(&disk, "test.sink.txt", "foo\nbar\nbaz\nafter the restart\n").await;
                    }
                    let (_, status) = call(&herder, "GET", "/connectors/sink/status", None).await;
                    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
                    herder.stop().await;
                    node.shutdown(ShutdownReason::Requested);
                    node.stopped().await;
                }
            })
            .await
            .expect("the worker node does not panic");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(read(&files, "test.sink.txt").await, "foo\nbar\nbaz\nafter the restart\n", "each line once");
    });
}

fn worker_addr(n: u8) -> SocketAddr {
    SocketAddr::new(ip(n), 8083)
}

/// A distributed worker on this simulated node, its REST API on `worker_addr(n)`.
async fn run_distributed_worker(n: u8, files: Arc<MemDisk>) {
    let props = BTreeMap::from(
        [
            ("bootstrap.servers", broker_addr().to_string()),
            ("group.id", "connect-cluster".into()),
            ("config.storage.topic", "connect-configs".into()),
            ("offset.storage.topic", "connect-offsets".into()),
            ("status.storage.topic", "connect-status".into()),
            ("config.storage.replication.factor", "1".into()),
            ("offset.storage.replication.factor", "1".into()),
            ("offset.storage.partitions", "3".into()),
            ("status.storage.replication.factor", "1".into()),
            ("offset.flush.interval.ms", "300".into()),
            ("scheduled.rebalance.max.delay.ms", "3000".into()),
            ("session.timeout.ms", "6000".into()),
            ("heartbeat.interval.ms", "1000".into()),
            ("consumer.session.timeout.ms", "6000".into()),
            ("consumer.heartbeat.interval.ms", "1000".into()),
            ("listeners", format!("http://{}", worker_addr(n))),
            (
                "key.converter",
                "org.apache.kafka.connect.storage.StringConverter".into(),
            ),
            (
                "value.converter",
                "org.apache.kafka.connect.storage.StringConverter".into(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let (config, _) = DistributedConfig::from_properties(props).expect("config");
    let listener = tokio::net::TcpListener::bind(worker_addr(n))
        .await
        .expect("bind");
    let node = Node::new("connect");
    let disk: Arc<dyn Disk> = files;
    let herder = Herder::start_distributed(
        &node,
        config,
        Plugins::builtin(),
        disk,
        worker_addr(n).to_string(),
    )
    .await
    .expect("the worker starts");
    let for_http = herder.clone();
    http::serve(
        &node,
        listener,
        Arc::new(move |req: HttpRequest| {
            let herder = for_http.clone();
            Box::pin(async move { rest::handle(&herder, req).await })
        }),
    );
    std::future::pending::<()>().await;
}

/// One REST call over simulated TCP, retried while the group rebalances (409).
async fn rest_call(n: u8, method: &str, target: &str, body: Option<Json>) -> (u16, Json) {
    let body = body.map(|b| b.to_string().into_bytes());
    for _ in 0..300 {
        match http::request(
            &worker_addr(n).to_string(),
            method,
            target,
            body.as_deref(),
            30_000,
        )
        .await
        {
            Ok((409, _)) | Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Ok((status, bytes)) => {
                return (status, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
            }
        }
    }
    panic!("{method} {target} on worker {n} never answered but 409");
}

#[test]
fn distributed_workers_share_the_pipeline_and_survive_a_crash() {
    let runtime = Runtime::with_seed_and_config(11, madsim::Config::default());
    runtime.add_simulator::<SimDisks>();
    runtime.block_on(async {
        let handle = Handle::current();
        let _broker = handle.create_node().name("broker").ip(ip(1)).init(run_broker).build();
        let files = Arc::new(MemDisk::new(11));
        let lines: String = (0..20).map(|i| format!("line {i}\n")).collect();
        append(&files, "in.txt", &lines).await;
        let mut workers = Vec::new();
        for n in [2u8, 3] {
            let disk = files.clone();
            workers.push(
                handle
                    .create_node()
                    .name(format!("worker-{n}"))
                    .ip(ip(n))
                    .init(move || run_distributed_worker(n, disk.clone()))
                    .build(),
            );
        }
        let client = handle.create_node().name("client").ip(ip(9)).build();
        let more: String = (20..40).map(|i| format!("line {i}\n")).collect();
        let all = format!("{lines}{more}");
        let disk = files.clone();
        let victim = workers[1].id();
        client
            .spawn(async move {
                let source = json!({"name": "src", "config": {"connector.class": "FileStreamSource", "file": "in.txt", "topic": "lines"}});
                let sink = json!({"name": "sink", "config": {"connector.class": "FileStreamSink", "file": "out.txt", "topics": "lines"}});
                assert_eq!(rest_call(3, "POST", "/connectors", Some(source)).await.0, 201);
                assert_eq!(rest_call(2, "POST", "/connectors", Some(sink)).await.0, 201);
                wait_for_file(&disk, "out.txt", &lines).await;
                // Each worker reads the status topic on its own: their answers converge.
                let mut same = false;
                for _ in 0..50 {
                    let (_, a) = rest_call(2, "GET", "/connectors?expand=status", None).await;
                    let (_, b) = rest_call(3, "GET", "/connectors?expand=status", None).await;
                    same = a == b && a["sink"]["status"]["tasks"][0]["state"] == "RUNNING";
                    if same {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                assert!(same, "both workers answer the same");
                Handle::current().kill(victim);
                append(&disk, "in.txt", &more).await;
                // The survivor takes over after the session timeout and the rebalance
                // delay; a crash may repeat what followed the last commit, never lose.
                for _ in 0..600 {
                    let got = read(&disk, "out.txt").await;
                    if (0..40).all(|i| got.lines().any(|l| l == format!("line {i}"))) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let got = read(&disk, "out.txt").await;
                let firsts: Vec<usize> = (0..40)
                    .map(|i| {
                        got.lines()
                            .position(|l| l == format!("line {i}"))
                            .unwrap_or_else(|| panic!("line {i} lost: {got}"))
                    })
                    .collect();
                assert!(firsts.windows(2).all(|w| w[0] < w[1]), "out of order: {got}");
                let (_, status) = rest_call(2, "GET", "/connectors?expand=status", None).await;
                for name in ["src", "sink"] {
                    let s = &status[name]["status"];
                    assert_eq!(s["tasks"][0]["state"], "RUNNING", "{status}");
                    assert_eq!(s["tasks"][0]["worker_id"], worker_addr(2).to_string(), "{status}");
                }
                assert!(got.len() >= all.len());
            })
            .await
            .expect("the client does not panic");
    });
}
