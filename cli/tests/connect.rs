//! `runnel connect` against a real `runnel server`: the Kafka quick start's step 6 as a
//! Kafka user types it (with Runnel's worker in place of connect-standalone.sh), and
//! Kafka's REST API over real HTTP, status codes and bodies as Kafka's.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use support::{run_with, Broker, RUNNEL};

/// A `runnel connect standalone` process started in `dir`.
struct Worker {
    child: Child,
    url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    fn start(dir: &Path, args: &[&str]) -> Worker {
        let mut child = Command::new(RUNNEL)
            .arg("connect")
            .arg("standalone")
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runnel connect starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines: Arc<Mutex<Vec<String>>> = Default::default();
        let kept = lines.clone();
        let (found, addr) = std::sync::mpsc::channel();
        // Reads stderr to its end so the worker never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("REST API listening on ").nth(1) {
                    let _ = found.send(rest.trim().to_string());
                }
                kept.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let url = match addr.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the worker never printed its REST address: {}",
                    lines.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
                );
            }
        };
        Worker {
            child,
            url,
            stderr: lines,
        }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Stops the worker as a service manager does (SIGTERM) and waits for it.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                assert!(
                    status.success(),
                    "the worker exited with {status}: {}",
                    self.stderr()
                );
                return self.stderr();
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not stop: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn authority(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    fn call(&self, method: &str, target: &str, body: Option<Json>) -> Response {
        http(self.authority(), method, target, body)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    headers: String,
    body: String,
}

impl Response {
    fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 exchange written by hand, independent of the worker's own HTTP code.
fn http(authority: &str, method: &str, target: &str, body: Option<Json>) -> Response {
    let mut stream = TcpStream::connect(authority).expect("connect to the REST API");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    Response {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

/// Kafka 4.1's config/connect-standalone.properties with the broker and offsets file of
/// this test (and a free REST port), then the quick start's plugin.path line.
fn quick_start_files(dir: &Path, bootstrap: &str, flush_ms: u32, extra: &str) -> PathBuf {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    let worker = format!(
        "# These are defaults. This file just demonstrates how to override some settings.\n\
         bootstrap.servers={bootstrap}\n\
         \n\
         # The converters specify the format of data in Kafka and how to translate it into Connect data.\n\
         key.converter=org.apache.kafka.connect.json.JsonConverter\n\
         value.converter=org.apache.kafka.connect.json.JsonConverter\n\
         key.converter.schemas.enable=true\n\
         value.converter.schemas.enable=true\n\
         \n\
         offset.storage.file.filename={}\n\
         # Flush much faster than normally, which is useful for testing/debugging\n\
         offset.flush.interval.ms={flush_ms}\n\
         listeners=http://127.0.0.1:0\n\
         plugin.path=libs/connect-file-4.1.1.jar\n{extra}",
        dir.join("connect.offsets").display()
    );
    std::fs::write(config.join("connect-standalone.properties"), worker).expect("worker file");
    std::fs::write(
        config.join("connect-file-source.properties"),
        "name=local-file-source\nconnector.class=FileStreamSource\ntasks.max=1\nfile=test.txt\ntopic=connect-test\n",
    )
    .expect("source file");
    std::fs::write(
        config.join("connect-file-sink.properties"),
        "name=local-file-sink\nconnector.class=FileStreamSink\ntasks.max=1\nfile=test.sink.txt\ntopics=connect-test\n",
    )
    .expect("sink file");
    config
}

const QUICK_START: [&str; 3] = [
    "config/connect-standalone.properties",
    "config/connect-file-source.properties",
    "config/connect-file-sink.properties",
];

fn envelope(line: &str) -> String {
    format!(
        "{{\"schema\":{{\"type\":\"string\",\"optional\":false}},\"payload\":{}}}",
        json!(line)
    )
}

fn topic_lines(broker: &Broker, expected: usize) -> Vec<String> {
    let n = expected.to_string();
    let out = broker.run(
        &[
            "consume",
            "--topic",
            "connect-test",
            "--from-beginning",
            "--max-messages",
            &n,
            "--timeout-ms",
            "5000",
        ],
        "",
    );
    assert!(out.ok, "consume failed: {}", out.stderr);
    out.stdout.lines().map(str::to_string).collect()
}

#[test]
fn quick_start_step_6_survives_more_lines_and_a_worker_restart() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    quick_start_files(home, &broker.bootstrap, 10_000, "");
    // $ echo -e "foo\nbar" > test.txt
    std::fs::write(home.join("test.txt"), "foo\nbar\n").expect("test.txt");
    let sink = home.join("test.sink.txt");

    let worker = Worker::start(home, &QUICK_START);
    wait_for("foo and bar in test.sink.txt", || {
        read(&sink) == "foo\nbar\n"
    });
    assert!(
        worker.stderr().contains("plugin.path is ignored"),
        "{}",
        worker.stderr()
    );
    assert_eq!(topic_lines(&broker, 2), [envelope("foo"), envelope("bar")]);

    // $ echo "Another line" >> test.txt
    append(&home.join("test.txt"), "Another line\n");
    wait_for("Another line in test.sink.txt", || {
        read(&sink) == "foo\nbar\nAnother line\n"
    });

    let said = worker.stop();
    assert!(said.contains("stopped cleanly"), "{said}");
    append(
        &home.join("test.txt"),
        "written while the worker was down\n",
    );
    let worker = Worker::start(home, &QUICK_START);
    append(&home.join("test.txt"), "written after the restart\n");
    let all =
        "foo\nbar\nAnother line\nwritten while the worker was down\nwritten after the restart\n";
    wait_for("every line in test.sink.txt once", || {
        read(&sink).len() >= all.len()
    });
    // Give a duplicate the time to show up, then check each line arrived exactly once.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(read(&sink), all);
    let expected: Vec<String> = all.lines().map(envelope).collect();
    assert_eq!(
        topic_lines(&broker, expected.len() + 1),
        expected,
        "the topic holds each line once"
    );
    worker.stop();
}

#[test]
fn a_killed_worker_loses_no_line() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    // Offsets committed every 200 ms: a kill re-sends at most what came after the last commit.
    // The killed sink's group member is dropped after 6 s instead of Kafka's 45 s.
    quick_start_files(
        home,
        &broker.bootstrap,
        200,
        "consumer.session.timeout.ms=6000\nconsumer.heartbeat.interval.ms=1000\n",
    );
    let lines: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    std::fs::write(home.join("test.txt"), lines[..25].join("\n") + "\n").expect("test.txt");
    let sink = home.join("test.sink.txt");
    let mut worker = Worker::start(home, &QUICK_START);
    wait_for("the first lines in the sink", || {
        read(&sink).lines().count() >= 25
    });
    std::thread::sleep(Duration::from_millis(600));
    let _ = worker.child.kill();
    let _ = worker.child.wait();
    drop(worker);
    append(&home.join("test.txt"), &(lines[25..].join("\n") + "\n"));
    let worker = Worker::start(home, &QUICK_START);
    wait_for("every line in the sink", || {
        let got = read(&sink);
        lines.iter().all(|l| got.lines().any(|g| g == l))
    });
    // In order: each line's first appearance follows the one before's.
    let got = read(&sink);
    let firsts: Vec<usize> = lines
        .iter()
        .map(|l| got.lines().position(|g| g == l).expect("present"))
        .collect();
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "out of order: {got}"
    );
    // Committed offsets were 600 ms old at the kill: nothing before them is written twice.
    let dupes = got.lines().count() - lines.len();
    assert!(
        dupes <= 25,
        "{dupes} duplicates for 25 committed lines: {got}"
    );
    worker.stop();
}

#[test]
fn the_rest_api_answers_as_kafkas() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let config = quick_start_files(home, &broker.bootstrap, 500, "");
    std::fs::write(home.join("test.txt"), "one\ntwo\n").expect("test.txt");
    let w = Worker::start(home, &["config/connect-standalone.properties"]);

    let root = w.call("GET", "/", None);
    assert_eq!(root.status, 200);
    assert!(root.json()["kafka_cluster_id"].is_string(), "{}", root.body);
    assert!(root.json()["version"].is_string());
    let r = w.call("GET", "/connectors", None);
    assert_eq!((r.status, r.json()), (200, json!([])));

    let r = w.call("GET", "/connectors/nope", None);
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"error_code": 404, "message": "Connector nope not found"})
        )
    );
    assert_eq!(w.call("GET", "/connectors/nope/status", None).status, 404);
    assert_eq!(w.call("PUT", "/connectors/nope/pause", None).status, 404);
    assert_eq!(w.call("DELETE", "/connectors/nope", None).status, 404);

    let source = json!({"connector.class": "FileStreamSource", "file": "test.txt", "topic": "rest-test", "tasks.max": "1"});
    let r = w.call(
        "POST",
        "/connectors",
        Some(json!({"name": "src", "config": source})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.headers.contains("Location: /connectors/src"),
        "{}",
        r.headers
    );
    let mut with_name = source.clone();
    with_name["name"] = json!("src");
    assert_eq!(
        r.json(),
        json!({"name": "src", "config": with_name, "tasks": [{"connector": "src", "task": 0}], "type": "source"})
    );

    let r = w.call(
        "POST",
        "/connectors",
        Some(json!({"name": "src", "config": source})),
    );
    assert_eq!(
        (r.status, r.json()),
        (
            409,
            json!({"error_code": 409, "message": "Connector src already exists"})
        )
    );

    let r = w.call(
        "POST",
        "/connectors",
        Some(
            json!({"name": "bad", "config": {"connector.class": "FileStreamSource", "file": "x"}}),
        ),
    );
    assert_eq!(r.status, 400);
    let message = r.json()["message"].as_str().expect("message").to_string();
    assert!(message.starts_with("Connector configuration is invalid and contains the following 1 error(s):\nMissing required configuration \"topic\" which has no default value."), "{message}");
    let r = w.call(
        "POST",
        "/connectors",
        Some(json!({"name": "bad", "config": {"connector.class": "NoSuchConnector"}})),
    );
    assert_eq!(r.status, 500);
    assert!(
        r.json()["message"]
            .as_str()
            .expect("message")
            .starts_with("Failed to find any class that implements Connector"),
        "{}",
        r.body
    );
    let r = w.call(
        "PUT",
        "/connectors/src/config",
        Some(json!({"name": "other", "connector.class": "FileStreamSource"})),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "Connector name configuration (other) doesn't match connector name in the URL (src)"
    );
    assert_eq!(
        w.call("POST", "/connectors", Some(json!("not an object")))
            .status,
        400
    );

    let r = w.call("GET", "/connectors/src/config", None);
    assert_eq!((r.status, r.json()), (200, with_name.clone()));
    let r = w.call("GET", "/connectors/src/tasks", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0]["id"], json!({"connector": "src", "task": 0}));
    assert_eq!(
        r.json()[0]["config"]["task.class"],
        "org.apache.kafka.connect.file.FileStreamSourceTask"
    );
    wait_for("task 0 RUNNING", || {
        w.call("GET", "/connectors/src/tasks/0/status", None).json()["state"] == "RUNNING"
    });
    let r = w.call("GET", "/connectors/src/tasks/0/status", None);
    assert_eq!(
        r.json(),
        json!({"id": 0, "state": "RUNNING", "worker_id": w.authority()})
    );
    assert_eq!(
        w.call("GET", "/connectors/src/tasks/7/status", None).status,
        404
    );
    assert_eq!(
        w.call("GET", "/connectors/src/tasks/x/status", None).status,
        404
    );

    let r = w.call("GET", "/connectors?expand=status&expand=info", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["src"]["status"]["connector"]["state"], "RUNNING");
    assert_eq!(r.json()["src"]["info"]["type"], "source");

    let r = w.call("PUT", "/connectors/src/pause", None);
    assert_eq!((r.status, r.body.as_str()), (202, ""));
    wait_for("PAUSED", || {
        w.call("GET", "/connectors/src/status", None).json()["tasks"][0]["state"] == "PAUSED"
    });
    assert_eq!(w.call("PUT", "/connectors/src/resume", None).status, 202);
    wait_for("RUNNING again", || {
        w.call("GET", "/connectors/src/status", None).json()["tasks"][0]["state"] == "RUNNING"
    });
    let r = w.call("POST", "/connectors/src/restart", None);
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    let r = w.call("POST", "/connectors/src/restart?includeTasks=true", None);
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["connector"]["state"], "RESTARTING");
    assert_eq!(r.json()["tasks"][0]["state"], "RESTARTING");
    assert_eq!(
        w.call("POST", "/connectors/src/tasks/0/restart", None)
            .status,
        204
    );
    assert_eq!(
        w.call("POST", "/connectors/src/tasks/3/restart", None)
            .status,
        404
    );

    wait_for("source offsets committed", || {
        w.call("GET", "/connectors/src/offsets", None).json()
            == json!({"offsets": [{"partition": {"filename": "test.txt"}, "offset": {"position": 8}}]})
    });
    let r = w.call("GET", "/connectors/src/topics", None);
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"src": {"topics": ["rest-test"]}}))
    );

    let r = w.call("GET", "/connector-plugins", None);
    assert_eq!(r.status, 200);
    let plugins = r.json();
    let classes: Vec<&str> = plugins
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["class"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        classes,
        [
            "org.apache.kafka.connect.file.FileStreamSinkConnector",
            "org.apache.kafka.connect.file.FileStreamSourceConnector"
        ]
    );
    assert_eq!(r.json()[0]["type"], "sink");
    let r = w.call("GET", "/connector-plugins/FileStreamSource/config", None);
    let names: Vec<Json> = r
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|k| k["name"].clone())
        .collect();
    assert_eq!(names, [json!("file"), json!("topic"), json!("batch.size")]);
    assert_eq!(
        w.call("GET", "/connector-plugins/Nope/config", None).status,
        404
    );
    let r = w.call(
        "PUT",
        "/connector-plugins/FileStreamSource/config/validate",
        Some(json!({"connector.class": "FileStreamSource", "name": "v", "file": "f"})),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["name"],
        "org.apache.kafka.connect.file.FileStreamSourceConnector"
    );
    assert_eq!(r.json()["error_count"], 1);
    let topic = r.json()["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| c["value"]["name"] == "topic")
        .cloned()
        .expect("topic");
    assert_eq!(
        topic["value"]["errors"],
        json!(["Missing required configuration \"topic\" which has no default value."])
    );

    assert_eq!(w.call("PUT", "/connectors/src/stop", None).status, 204);
    let r = w.call("GET", "/connectors/src/status", None);
    assert_eq!(r.json()["connector"]["state"], "STOPPED");
    assert_eq!(w.call("DELETE", "/connectors/src", None).status, 204);
    assert_eq!(w.call("GET", "/connectors/src", None).status, 404);
    assert_eq!(w.call("GET", "/nothing/here", None).status, 404);
    assert_eq!(w.call("DELETE", "/connector-plugins", None).status, 405);

    // The commands for people, over the same API.
    let url = w.url.clone();
    let rest = ["--url", url.as_str()];
    let out = run_with(
        &[
            "connect",
            "create",
            config
                .join("connect-file-sink.properties")
                .to_str()
                .expect("utf-8 path"),
        ],
        &rest,
        "",
    );
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "Created sink connector local-file-sink with 1 task(s)"
    );
    wait_for("the sink running", || {
        run_with(&["connect", "list"], &rest, "")
            .stdout
            .contains("0:RUNNING")
    });
    let out = run_with(&["connect", "list"], &rest, "");
    assert!(
        out.stdout.lines().any(|l| l.starts_with("local-file-sink")
            && l.contains("sink")
            && l.contains("RUNNING")),
        "{}",
        out.stdout
    );
    let out = run_with(&["connect", "status", "local-file-sink"], &rest, "");
    assert!(
        out.stdout
            .starts_with("Connector local-file-sink (sink): RUNNING"),
        "{}",
        out.stdout
    );
    assert!(run_with(&["connect", "pause", "local-file-sink"], &rest, "").ok);
    assert!(run_with(&["connect", "resume", "local-file-sink"], &rest, "").ok);
    assert!(
        run_with(
            &["connect", "restart", "local-file-sink", "--include-tasks"],
            &rest,
            ""
        )
        .ok
    );
    assert!(run_with(&["connect", "delete", "local-file-sink"], &rest, "").ok);
    let out = run_with(&["connect", "status", "local-file-sink"], &rest, "");
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("Connector local-file-sink not found (HTTP 404)"),
        "{}",
        out.stderr
    );
    w.stop();
}
