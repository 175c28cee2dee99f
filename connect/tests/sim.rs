//! The worker inside madsim's simulator: the real broker on a simulated node and disk, the
//! worker on another, its files on an in-memory disk, driven through the REST handlers as
//! plain functions. Built and run with `--cfg madsim` (ci/test's simulation step).
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
use runnel_connect::http::HttpRequest;
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
