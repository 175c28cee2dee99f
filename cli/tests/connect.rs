//! `runnel connect` against a real `runnel server`: the Kafka quick start's step 6 as a
//! Kafka user types it (with Runnel's worker in place of connect-standalone.sh), and
//! Kafka's REST API over real HTTP, status codes and bodies as Kafka's.

mod support;

use std::time::Duration;

use serde_json::{json, Value as Json};
use support::connect::{
    append, envelope, quick_start_files, read, topic_lines, wait_for, Worker, QUICK_START,
};
use support::{run_with, Broker};

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
    assert_eq!(r.status, 400);
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
    // PATCH merges (null removes a key); PUT replaces; both answer 200 for an existing one.
    let r = w.call(
        "PATCH",
        "/connectors/src/config",
        Some(json!({"batch.size": "1", "tasks.max": null})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mut patched = with_name.clone();
    patched["batch.size"] = json!("1");
    patched.as_object_mut().expect("object").remove("tasks.max");
    assert_eq!(r.json()["config"], patched);
    let r = w.call("PUT", "/connectors/src/config", Some(with_name.clone()));
    assert_eq!(
        (r.status, r.json()["config"].clone()),
        (200, with_name.clone())
    );
    let r = w.call(
        "PUT",
        "/connectors/fresh/config",
        Some(json!({"connector.class": "FileStreamSink", "topics": "t", "file": "fresh.txt"})),
    );
    assert_eq!(r.status, 201, "PUT creates a missing connector: {}", r.body);
    assert_eq!(w.call("DELETE", "/connectors/fresh", None).status, 204);
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
        json!({"id": 0, "state": "RUNNING", "worker_id": w.authority(), "version": env!("CARGO_PKG_VERSION")})
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

    let all = w
        .call("GET", "/connector-plugins?connectorsOnly=false", None)
        .json();
    let kinds: Vec<(String, String)> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|p| {
            (
                p["class"].as_str().unwrap_or_default().to_string(),
                p["type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (class, kind) in [
        ("org.apache.kafka.connect.json.JsonConverter", "converter"),
        (
            "org.apache.kafka.connect.transforms.RegexRouter",
            "transformation",
        ),
        (
            "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
            "predicate",
        ),
    ] {
        assert!(
            kinds.contains(&(class.to_string(), kind.to_string())),
            "{class} as {kind} in {kinds:?}"
        );
    }
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
    assert_eq!(
        names[..4],
        [
            json!("file"),
            json!("topic"),
            json!("batch.size"),
            json!("name")
        ]
    );
    let keys = r.json();
    assert_eq!(keys[1]["required"], true);
    assert_eq!(keys[2]["default_value"], "2000");
    assert_eq!(
        (keys[3]["group"].clone(), keys[3]["order"].clone()),
        (json!("Common"), json!(1))
    );
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

    let patch =
        json!({"offsets": [{"partition": {"filename": "test.txt"}, "offset": {"position": 4}}]});
    let r = w.call("PATCH", "/connectors/src/offsets", Some(patch.clone()));
    assert_eq!(r.status, 400, "only a stopped connector's offsets change");
    assert!(
        r.json()["message"]
            .as_str()
            .expect("message")
            .starts_with("Connectors must be in the STOPPED state"),
        "{}",
        r.body
    );
    assert_eq!(
        w.call("PUT", "/connectors/src/topics/reset", None).status,
        202
    );
    assert_eq!(
        w.call("GET", "/connectors/src/topics", None).json(),
        json!({"src": {"topics": []}})
    );
    assert_eq!(w.call("PUT", "/connectors/src/stop", None).status, 204);
    let r = w.call("GET", "/connectors/src/status", None);
    assert_eq!(r.json()["connector"]["state"], "STOPPED");
    let r = w.call("PATCH", "/connectors/src/offsets", Some(patch));
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"message": "The offsets for this connector have been altered successfully"})
        )
    );
    assert_eq!(
        w.call("GET", "/connectors/src/offsets", None).json(),
        json!({"offsets": [{"partition": {"filename": "test.txt"}, "offset": {"position": 4}}]})
    );
    let bad =
        json!({"offsets": [{"partition": {"filename": "test.txt"}, "offset": {"position": -1}}]});
    let r = w.call("PATCH", "/connectors/src/offsets", Some(bad));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "The value for the 'position' key in the offset should be a non-negative value"
    );
    let r = w.call(
        "PATCH",
        "/connectors/src/offsets",
        Some(json!({"offsets": []})),
    );
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (
            400,
            json!("Partitions / offsets need to be provided for an alter offsets request")
        )
    );
    let r = w.call("DELETE", "/connectors/src/offsets", None);
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"message": "The offsets for this connector have been reset successfully"})
        )
    );
    assert_eq!(
        w.call("GET", "/connectors/src/offsets", None).json(),
        json!({"offsets": []})
    );
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
            .contains("No status found for connector local-file-sink (HTTP 404)"),
        "{}",
        out.stderr
    );
    w.stop();
}
