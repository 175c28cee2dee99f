//! The worker against a real broker in this process, driven through the REST handlers as
//! plain functions (no HTTP): a failing or panicking task is FAILED with its trace and is
//! restartable, and the worker and its other connectors go on.
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runnel_actors::{Node, ShutdownReason};
use runnel_broker::config::BrokerConfig;
use runnel_broker::{Broker, BrokerServer};
use runnel_connect::api::{
    AnyConnector, Connector, ConnectorType, PluginDesc, Plugins, SourceConnector, SourceTask,
    SourceTaskContext,
};
use runnel_connect::config::{Config, ConfigDef};
use runnel_connect::data::{ConnectRecord, JsonMap, Schema, SourceRecord, Value};
use runnel_connect::http::HttpRequest;
use runnel_connect::worker::{Herder, WorkerConfig};
use runnel_connect::{rest, ConnectError};
use runnel_storage::disk::{Disk, RealDisk};
use serde_json::{json, Value as Json};

/// A source whose task fails each poll while the file `fail.marker` names exists, and
/// panics when `panic` is true; otherwise it emits one record per poll.
#[derive(Default)]
struct FlakySource {
    config: Config,
}

impl Connector for FlakySource {
    fn version(&self) -> String {
        "test".into()
    }
    fn config_def(&self) -> ConfigDef {
        ConfigDef::new()
    }
    fn start(&mut self, config: &Config) -> Result<(), ConnectError> {
        self.config = config.clone();
        Ok(())
    }
    fn task_configs(&self, _max_tasks: usize) -> Result<Vec<Config>, ConnectError> {
        Ok(vec![self.config.clone()])
    }
}

impl SourceConnector for FlakySource {
    fn create_task(&self) -> Box<dyn SourceTask> {
        Box::new(FlakyTask::default())
    }
    fn task_class(&self) -> String {
        "test.FlakyTask".into()
    }
}

#[derive(Default)]
struct FlakyTask {
    disk: Option<Arc<dyn Disk>>,
    marker: Option<PathBuf>,
    panic: bool,
    topic: String,
    n: u64,
}

#[async_trait]
impl SourceTask for FlakyTask {
    async fn start(
        &mut self,
        context: SourceTaskContext,
        config: &Config,
    ) -> Result<(), ConnectError> {
        self.disk = Some(context.disk);
        self.marker = config.get("fail.marker").map(PathBuf::from);
        self.panic = config.get("panic").is_some_and(|p| p == "true");
        self.topic = config.get("topic").cloned().unwrap_or_default();
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>, ConnectError> {
        if self.panic {
            panic!("flaky task told to panic");
        }
        if let Some(marker) = &self.marker {
            let disk = self.disk.as_ref().expect("started");
            if disk.exists(marker).await? {
                return Err(ConnectError::Task("boom: the source system is down".into()));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.n += 1;
        let mut partition = JsonMap::new();
        partition.insert("flaky".into(), json!(0));
        let mut offset = JsonMap::new();
        offset.insert("n".into(), json!(self.n));
        Ok(vec![SourceRecord {
            source_partition: partition,
            source_offset: offset,
            record: ConnectRecord::new(
                &self.topic,
                Some(Schema::string()),
                Value::String(format!("r{}", self.n)),
            ),
        }])
    }
}

/// A source whose task cannot even be made: `create_task` panics inside the task actor,
/// outside any connector call the runtime guards, so the actor's supervisor catches it.
#[derive(Default)]
struct BrokenSource(FlakySource);

impl Connector for BrokenSource {
    fn version(&self) -> String {
        "test".into()
    }
    fn config_def(&self) -> ConfigDef {
        ConfigDef::new()
    }
    fn start(&mut self, config: &Config) -> Result<(), ConnectError> {
        self.0.start(config)
    }
    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Config>, ConnectError> {
        self.0.task_configs(max_tasks)
    }
}

impl SourceConnector for BrokenSource {
    fn create_task(&self) -> Box<dyn SourceTask> {
        panic!("no task for you");
    }
    fn task_class(&self) -> String {
        "test.BrokenTask".into()
    }
}

fn plugins() -> Plugins {
    let mut plugins = Plugins::builtin();
    plugins.register(PluginDesc {
        class: "test.BrokenSourceConnector".into(),
        connector_type: ConnectorType::Source,
        version: "test".into(),
        factory: || AnyConnector::Source(Box::new(BrokenSource::default())),
    });
    plugins.register(PluginDesc {
        class: "test.FlakySourceConnector".into(),
        connector_type: ConnectorType::Source,
        version: "test".into(),
        factory: || AnyConnector::Source(Box::new(FlakySource::default())),
    });
    plugins
}

struct Setup {
    herder: Herder,
    _server: BrokerServer,
    broker_node: Node,
    worker_node: Node,
    dir: tempfile::TempDir,
    bootstrap: String,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let properties = BTreeMap::from([
        (
            "log.dirs".to_string(),
            dir.path().join("data").display().to_string(),
        ),
        (
            "listeners".to_string(),
            "PLAINTEXT://127.0.0.1:0".to_string(),
        ),
    ]);
    let config = BrokerConfig::from_properties(properties).expect("valid config");
    let (listener, addr) = Broker::bind(&config).await.expect("bind");
    let broker_node = Node::new("test-broker");
    let broker = Broker::open(
        &broker_node,
        config.clone(),
        Arc::new(RealDisk::new()),
        config.advertised_host_port(addr),
    )
    .await
    .expect("broker opens");
    let server = BrokerServer::start(&broker_node, broker, listener);
    let worker_props = BTreeMap::from([
        ("bootstrap.servers".to_string(), addr.to_string()),
        (
            "key.converter".to_string(),
            "org.apache.kafka.connect.storage.StringConverter".to_string(),
        ),
        (
            "value.converter".to_string(),
            "org.apache.kafka.connect.storage.StringConverter".to_string(),
        ),
        (
            "offset.storage.file.filename".to_string(),
            dir.path().join("offsets").display().to_string(),
        ),
        ("offset.flush.interval.ms".to_string(), "200".to_string()),
    ]);
    let (config, _) = WorkerConfig::from_properties(worker_props).expect("worker config");
    let worker_node = Node::new("test-connect");
    let herder = Herder::start(
        &worker_node,
        config,
        plugins(),
        Arc::new(RealDisk::new()),
        "test-worker:8083".into(),
    )
    .await
    .expect("worker starts");
    Setup {
        herder,
        _server: server,
        broker_node,
        worker_node,
        dir,
        bootstrap: addr.to_string(),
    }
}

impl Setup {
    async fn call(&self, method: &str, target: &str, body: Option<Json>) -> (u16, Json) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = query
            .split('&')
            .filter(|q| !q.is_empty())
            .map(|q| {
                let (k, v) = q.split_once('=').unwrap_or((q, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        let req = HttpRequest {
            method: method.into(),
            path: path.into(),
            query,
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        };
        let r = rest::handle(&self.herder, req).await;
        let body = r
            .body
            .map(|b| serde_json::from_slice(&b).expect("JSON body"))
            .unwrap_or(Json::Null);
        (r.status, body)
    }

    /// Waits until task 0 of `name` is in `state`; its status then.
    async fn wait_task(&self, name: &str, state: &str) -> Json {
        for _ in 0..200 {
            let (status, body) = self
                .call("GET", &format!("/connectors/{name}/tasks/0/status"), None)
                .await;
            if status == 200 && body["state"] == state {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("task 0 of {name} never became {state}");
    }

    async fn stop(self) {
        self.herder.stop().await;
        self.worker_node.shutdown(ShutdownReason::Requested);
        self.worker_node.stopped().await;
        self.broker_node.shutdown(ShutdownReason::Requested);
        self.broker_node.stopped().await;
    }
}

fn create(name: &str, config: Json) -> Json {
    json!({"name": name, "config": config})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_task_is_failed_with_its_trace_and_restartable() {
    let s = setup().await;
    let marker = s.dir.path().join("down");
    std::fs::write(&marker, b"").expect("marker");
    let (status, _) = s
        .call(
            "POST",
            "/connectors",
            Some(create(
                "healthy",
                json!({"connector.class": "test.FlakySourceConnector", "topic": "healthy"}),
            )),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = s
        .call(
            "POST",
            "/connectors",
            Some(create("flaky", json!({"connector.class": "FlakySource", "topic": "flaky", "fail.marker": marker.display().to_string()}))),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["tasks"], json!([{"connector": "flaky", "task": 0}]));

    let failed = s.wait_task("flaky", "FAILED").await;
    let trace = failed["trace"].as_str().expect("a FAILED task has a trace");
    assert!(trace.contains("boom: the source system is down"), "{trace}");
    assert_eq!(failed["worker_id"], "test-worker:8083");

    // The worker and the other connector go on.
    let (status, status_body) = s.call("GET", "/connectors/flaky/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(status_body["connector"]["state"], "RUNNING");
    s.wait_task("healthy", "RUNNING").await;
    let (status, names) = s.call("GET", "/connectors", None).await;
    assert_eq!((status, names), (200, json!(["flaky", "healthy"])));

    // A plain restart restarts the connector only: the task stays FAILED, as in Kafka.
    let (status, _) = s.call("POST", "/connectors/flaky/restart", None).await;
    assert_eq!(status, 204);
    let (_, after) = s.call("GET", "/connectors/flaky/status", None).await;
    assert_eq!(after["connector"]["state"], "RUNNING");
    assert_eq!(after["tasks"][0]["state"], "FAILED", "{after}");

    // Restarting while the source is still down fails again, with a trace again.
    let (status, _) = s
        .call("POST", "/connectors/flaky/tasks/0/restart", None)
        .await;
    assert_eq!(status, 204);
    s.wait_task("flaky", "FAILED").await;

    std::fs::remove_file(&marker).expect("source back");
    let (status, body) = s
        .call(
            "POST",
            "/connectors/flaky/restart?includeTasks=true&onlyFailed=true",
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["connector"]["state"], "RUNNING",
        "only failed parts restart: {body}"
    );
    assert_eq!(body["tasks"][0]["state"], "RESTARTING", "{body}");
    let running = s.wait_task("flaky", "RUNNING").await;
    assert!(
        running.get("trace").is_none(),
        "a running task has no trace: {running}"
    );

    // It now delivers, and its offsets are committed.
    let mut committed = false;
    for _ in 0..100 {
        let (_, offsets) = s.call("GET", "/connectors/flaky/offsets", None).await;
        if offsets["offsets"][0]["offset"]["n"]
            .as_u64()
            .is_some_and(|n| n >= 2)
        {
            assert_eq!(offsets["offsets"][0]["partition"], json!({"flaky": 0}));
            committed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        committed,
        "the restarted task's offsets were never committed"
    );
    let (_, topics) = s.call("GET", "/connectors/flaky/topics", None).await;
    assert_eq!(topics, json!({"flaky": {"topics": ["flaky"]}}));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_is_failed_and_the_worker_stays_up() {
    let s = setup().await;
    let (status, _) = s
        .call(
            "POST",
            "/connectors",
            Some(create(
                "panicky",
                json!({"connector.class": "FlakySource", "topic": "p", "panic": "true"}),
            )),
        )
        .await;
    assert_eq!(status, 201);
    let failed = s.wait_task("panicky", "FAILED").await;
    let trace = failed["trace"].as_str().expect("trace");
    assert!(trace.contains("flaky task told to panic"), "{trace}");
    // Fix the config: PUT replaces it (200, not 201) and the new task runs.
    let (status, body) = s
        .call(
            "PUT",
            "/connectors/panicky/config",
            Some(json!({"connector.class": "FlakySource", "topic": "p"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["config"]["name"], "panicky");
    s.wait_task("panicky", "RUNNING").await;
    let (status, _) = s.call("GET", "/", None).await;
    assert_eq!(status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_stop_and_delete_move_the_states_as_kafka() {
    let s = setup().await;
    let (status, _) = s
        .call(
            "POST",
            "/connectors",
            Some(create(
                "c",
                json!({"connector.class": "FlakySource", "topic": "c"}),
            )),
        )
        .await;
    assert_eq!(status, 201);
    s.wait_task("c", "RUNNING").await;
    assert_eq!(s.call("PUT", "/connectors/c/pause", None).await.0, 202);
    s.wait_task("c", "PAUSED").await;
    assert_eq!(
        s.call("GET", "/connectors/c/status", None).await.1["connector"]["state"],
        "PAUSED"
    );
    assert_eq!(s.call("PUT", "/connectors/c/resume", None).await.0, 202);
    s.wait_task("c", "RUNNING").await;
    assert_eq!(s.call("PUT", "/connectors/c/stop", None).await.0, 204);
    let (_, status) = s.call("GET", "/connectors/c/status", None).await;
    assert_eq!(status["connector"]["state"], "STOPPED");
    assert_eq!(status["tasks"], json!([]));
    assert_eq!(s.call("PUT", "/connectors/c/resume", None).await.0, 202);
    s.wait_task("c", "RUNNING").await;
    assert_eq!(s.call("DELETE", "/connectors/c", None).await.0, 204);
    let (status, body) = s.call("GET", "/connectors/c", None).await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"error_code": 404, "message": "Connector c not found"})
        )
    );
    // Created paused (KIP-980's initial_state).
    let mut req = create("p", json!({"connector.class": "FlakySource", "topic": "c"}));
    req["initial_state"] = json!("PAUSED");
    assert_eq!(s.call("POST", "/connectors", Some(req)).await.0, 201);
    s.wait_task("p", "PAUSED").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transforms_run_between_the_task_and_kafka() {
    let s = setup().await;
    let config = json!({
        "connector.class": "FlakySource",
        "topic": "raw-events",
        "transforms": "route,dropOthers",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": "raw-(.*)",
        "transforms.route.replacement": "clean-$1",
        "transforms.dropOthers.type": "org.apache.kafka.connect.transforms.Filter",
        "transforms.dropOthers.predicate": "isClean",
        "transforms.dropOthers.negate": "true",
        "predicates": "isClean",
        "predicates.isClean.type": "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
        "predicates.isClean.pattern": "clean-.*",
    });
    let (status, body) = s
        .call("POST", "/connectors", Some(create("routed", config)))
        .await;
    assert_eq!(status, 201, "{body}");
    s.wait_task("routed", "RUNNING").await;
    let mut seen = Json::Null;
    for _ in 0..100 {
        seen = s.call("GET", "/connectors/routed/topics", None).await.1;
        if seen != json!({"routed": {"topics": []}}) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, json!({"routed": {"topics": ["clean-events"]}}));
    // A transform that cannot be built is a 400 at create time, with Kafka's message.
    let bad = json!({"connector.class": "FlakySource", "topic": "t", "transforms": "x", "transforms.x.type": "NoSuchTransform"});
    let (status, body) = s
        .call("POST", "/connectors", Some(create("bad", bad)))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("NoSuchTransform could not be found"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_actor_that_panics_is_given_up_by_its_supervisor_as_failed() {
    let s = setup().await;
    let (status, _) = s
        .call(
            "POST",
            "/connectors",
            Some(create(
                "broken",
                json!({"connector.class": "BrokenSource", "topic": "b"}),
            )),
        )
        .await;
    assert_eq!(status, 201);
    let failed = s.wait_task("broken", "FAILED").await;
    let trace = failed["trace"].as_str().expect("trace");
    assert!(trace.contains("no task for you"), "{trace}");
    // Restartable (it fails again the same way), and the worker answers throughout.
    assert_eq!(
        s.call("POST", "/connectors/broken/tasks/0/restart", None)
            .await
            .0,
        204
    );
    s.wait_task("broken", "FAILED").await;
    assert_eq!(s.call("GET", "/connectors", None).await.0, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_tolerance_all_skips_bad_records_into_the_dead_letter_queue() {
    use runnel_client::kafka::{ClientConfig, Consumer, ConsumerConfig, OffsetReset};
    let s = setup().await;
    let unknown_field = json!({
        "connector.class": "FlakySource",
        "topic": "raw",
        "transforms": "pick",
        "transforms.pick.type": "ExtractField$Value",
        "transforms.pick.field": "x",
    });
    assert_eq!(
        s.call(
            "POST",
            "/connectors",
            Some(create("strict", unknown_field.clone()))
        )
        .await
        .0,
        201
    );
    let failed = s.wait_task("strict", "FAILED").await;
    assert!(
        failed["trace"]
            .as_str()
            .expect("trace")
            .contains("Unknown field: x"),
        "{failed}"
    );

    let mut tolerant = unknown_field;
    tolerant["errors.tolerance"] = json!("all");
    tolerant["errors.log.enable"] = json!("true");
    assert_eq!(
        s.call("POST", "/connectors", Some(create("tolerant", tolerant)))
            .await
            .0,
        201
    );
    let mut skipped_and_committed = false;
    for _ in 0..100 {
        let (_, offsets) = s.call("GET", "/connectors/tolerant/offsets", None).await;
        if offsets["offsets"][0]["offset"]["n"]
            .as_u64()
            .is_some_and(|n| n >= 3)
        {
            skipped_and_committed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        skipped_and_committed,
        "bad records are skipped and their offsets committed"
    );
    s.wait_task("tolerant", "RUNNING").await;

    // A sink whose converter cannot read the records sends them to its dead letter queue.
    let out = s.dir.path().join("out.txt");
    assert_eq!(
        s.call(
            "POST",
            "/connectors",
            Some(create(
                "feeder",
                json!({"connector.class": "FlakySource", "topic": "feed"})
            ))
        )
        .await
        .0,
        201
    );
    let sink = json!({
        "connector.class": "FileStreamSink",
        "topics": "feed",
        "file": out.display().to_string(),
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": "dlq",
        "errors.deadletterqueue.context.headers.enable": "true",
    });
    let (status, body) = s
        .call("POST", "/connectors", Some(create("dlqsink", sink)))
        .await;
    assert_eq!(status, 201, "{body}");
    let mut consumer_config = ConsumerConfig::new(ClientConfig::new(&s.bootstrap));
    consumer_config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(consumer_config).await.expect("consumer");
    let mut dead = Vec::new();
    for _ in 0..200 {
        if consumer.assignment().is_empty() && consumer.assign_topic("dlq").await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        dead.extend(
            consumer
                .poll(Duration::from_millis(200))
                .await
                .expect("poll"),
        );
        if dead.len() >= 2 {
            break;
        }
    }
    assert!(dead.len() >= 2, "records reach the dead letter queue");
    assert_eq!(dead[0].value.as_deref(), Some(&b"r1"[..]), "as they came");
    let header = |name: &str| {
        dead[0]
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(
        header("__connect.errors.topic").as_deref(),
        Some(&b"feed"[..])
    );
    assert_eq!(
        header("__connect.errors.connector.name").as_deref(),
        Some(&b"dlqsink"[..])
    );
    s.wait_task("dlqsink", "RUNNING").await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap_or_default(),
        "",
        "nothing bad reached the sink"
    );
    s.stop().await;
}
