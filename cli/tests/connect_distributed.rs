//! `runnel connect distributed`: three worker processes in one group against a real
//! `runnel server`. Connectors and tasks spread over the workers, any worker answers the
//! REST API (writes go to the leader), a killed worker's tasks move to the survivors only
//! after `scheduled.rebalance.max.delay.ms` (a killed leader's at once, as in Kafka), and
//! every line of the file sources reaches the file sinks, in order.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use support::connect::{append, read, Response, Worker};
use support::{free_port, Broker};

const DELAY_MS: u64 = 4_000;
const PIPELINES: [&str; 2] = ["a", "b"];

fn worker_properties(dir: &Path, bootstrap: &str, port: u16) -> String {
    let name = format!("worker-{port}.properties");
    std::fs::write(
        dir.join(&name),
        format!(
            "bootstrap.servers={bootstrap}\n\
             group.id=connect-cluster\n\
             key.converter=org.apache.kafka.connect.json.JsonConverter\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\n\
             config.storage.topic=connect-configs\n\
             offset.storage.topic=connect-offsets\n\
             status.storage.topic=connect-status\n\
             config.storage.replication.factor=1\n\
             offset.storage.replication.factor=1\n\
             offset.storage.partitions=5\n\
             status.storage.replication.factor=1\n\
             offset.flush.interval.ms=200\n\
             listeners=http://127.0.0.1:{port}\n\
             scheduled.rebalance.max.delay.ms={DELAY_MS}\n\
             session.timeout.ms=6000\n\
             heartbeat.interval.ms=1000\n\
             consumer.session.timeout.ms=6000\n\
             consumer.heartbeat.interval.ms=1000\n"
        ),
    )
    .expect("worker properties");
    name
}

/// The log without terminal colours.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The worker's latest assignment line.
fn last_assignment(w: &Worker) -> Option<String> {
    plain(&w.stderr())
        .lines()
        .rev()
        .find(|l| l.contains(" assignment "))
        .map(str::to_string)
}

fn leads(w: &Worker) -> bool {
    last_assignment(w).is_some_and(|l| l.contains("leader=true"))
}

/// A REST call, retried while the group rebalances (Kafka answers 409 then).
fn call_retrying(w: &Worker, method: &str, target: &str, body: Option<Json>) -> Response {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let r = w.call(method, target, body.clone());
        if r.status != 409 || Instant::now() > deadline {
            eprintln!(
                "{method} {target}: {} after {:?}",
                r.status,
                started.elapsed()
            );
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("{what}: {:?}", started.elapsed());
}

/// Who runs what: connector or `connector-task` → the worker id in its status.
fn owners(w: &Worker) -> BTreeMap<String, (String, String)> {
    let all = w.call("GET", "/connectors?expand=status", None).json();
    let mut out = BTreeMap::new();
    for (name, v) in all.as_object().into_iter().flatten() {
        let s = &v["status"];
        let entry = |x: &Json| {
            (
                x["state"].as_str().unwrap_or_default().to_string(),
                x["worker_id"].as_str().unwrap_or_default().to_string(),
            )
        };
        out.insert(name.clone(), entry(&s["connector"]));
        for t in s["tasks"].as_array().into_iter().flatten() {
            out.insert(format!("{name}-{}", t["id"]), entry(t));
        }
    }
    out
}

fn at(workers: &[Option<Worker>], i: usize) -> &Worker {
    workers[i].as_ref().expect("a live worker")
}

fn all_running(o: &BTreeMap<String, (String, String)>, expected: usize) -> bool {
    o.len() == expected && o.values().all(|(state, _)| state == "RUNNING")
}

fn lines_of(range: std::ops::Range<usize>, pipeline: &str) -> String {
    range.map(|i| format!("{pipeline} line {i}\n")).collect()
}

/// Every line at least once, each line's first copy after the one before's.
fn assert_complete_in_order(got: &str, total: usize, pipeline: &str) -> usize {
    let lines: Vec<&str> = got.lines().collect();
    let firsts: Vec<usize> = (0..total)
        .map(|i| {
            let want = format!("{pipeline} line {i}");
            lines
                .iter()
                .position(|l| *l == want)
                .unwrap_or_else(|| panic!("{want} never reached the sink: {got}"))
        })
        .collect();
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "out of order: {got}"
    );
    lines.len() - total
}

#[test]
fn three_workers_share_the_work_and_survive_a_kill() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let ports = [free_port(), free_port(), free_port()];
    let props: Vec<String> = ports
        .iter()
        .map(|p| worker_properties(home, &broker.bootstrap, *p))
        .collect();

    // The first worker forms the group alone and leads it; the others join.
    let mut workers: Vec<Option<Worker>> = vec![Some(Worker::start_distributed(home, &props[0]))];
    wait_for("the first worker to lead", 60, || leads(at(&workers, 0)));
    for p in &props[1..] {
        workers.push(Some(Worker::start_distributed(home, p)));
    }
    wait_for("three workers in one generation", 60, || {
        (0..3).all(|i| last_assignment(at(&workers, i)).is_some())
            && (0..3)
                .filter_map(|i| last_assignment(at(&workers, i)))
                .map(|l| {
                    l.split("generation=")
                        .nth(1)
                        .map(|g| g.split(' ').next().map(str::to_string))
                })
                .collect::<BTreeSet<_>>()
                .len()
                == 1
    });

    for p in PIPELINES {
        std::fs::write(home.join(format!("in-{p}.txt")), lines_of(0..20, p)).expect("source file");
    }
    // Each connector is created through a different worker: writes reach the leader.
    let mut n = 0;
    for p in PIPELINES {
        let source = json!({"name": format!("src-{p}"), "config": {
            "connector.class": "FileStreamSource", "tasks.max": "1",
            "file": home.join(format!("in-{p}.txt")), "topic": format!("topic-{p}")}});
        let sink = json!({"name": format!("sink-{p}"), "config": {
            "connector.class": "FileStreamSink", "tasks.max": "1",
            "file": home.join(format!("out-{p}.txt")), "topics": format!("topic-{p}")}});
        for body in [source, sink] {
            let r = call_retrying(at(&workers, n % 3), "POST", "/connectors", Some(body));
            assert_eq!(r.status, 201, "{}", r.body);
            n += 1;
        }
    }
    let expected_items = 8;
    wait_for("every connector and task RUNNING", 90, || {
        all_running(&owners(at(&workers, 0)), expected_items)
    });

    // Every worker answers the same.
    wait_for("the same status from every worker", 30, || {
        let views: BTreeSet<String> = (0..3)
            .map(|i| {
                at(&workers, i)
                    .call("GET", "/connectors?expand=status&expand=info", None)
                    .body
            })
            .collect();
        views.len() == 1
    });
    for i in 0..3 {
        let r = at(&workers, i).call("GET", "/connectors/src-a/tasks", None);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()[0]["config"]["task.class"],
            "org.apache.kafka.connect.file.FileStreamSourceTask"
        );
    }

    // The leader spreads connectors and tasks each on their own, as Kafka's does: 4 of
    // each over 3 workers is 1 or 2 per worker.
    let before = owners(at(&workers, 0));
    for tasks in [false, true] {
        let mut load: BTreeMap<String, usize> = BTreeMap::new();
        for (item, (_, worker)) in &before {
            let is_task = item
                .rsplit_once('-')
                .is_some_and(|(_, n)| n.parse::<u32>().is_ok());
            if is_task == tasks {
                *load.entry(worker.clone()).or_default() += 1;
            }
        }
        assert_eq!(load.len(), 3, "{before:?}");
        assert!(load.values().all(|n| (1..=2).contains(n)), "{before:?}");
    }

    for p in PIPELINES {
        wait_for("the first lines in the sink", 60, || {
            read(&home.join(format!("out-{p}.txt"))).lines().count() >= 20
        });
    }

    // Kill a worker that does not lead (a new leader has no memory of the lost work
    // and would reassign it at once, as Kafka's does).
    let victim = (1..3)
        .find(|i| !leads(at(&workers, *i)))
        .expect("a follower");
    let victim_id = format!("127.0.0.1:{}", ports[victim]);
    let moved: Vec<String> = before
        .iter()
        .filter(|(_, (_, worker))| *worker == victim_id)
        .map(|(item, _)| item.clone())
        .collect();
    assert!(!moved.is_empty());
    let mut dead = workers[victim].take().expect("victim");
    let _ = dead.child.kill();
    let _ = dead.child.wait();
    let killed_at = Instant::now();
    drop(dead);
    for p in PIPELINES {
        append(&home.join(format!("in-{p}.txt")), &lines_of(20..40, p));
    }
    let survivor = (0..3).find(|i| workers[*i].is_some()).expect("a survivor");
    wait_for("the victim's work on the survivors", 90, || {
        let now = owners(at(&workers, survivor));
        all_running(&now, expected_items) && now.values().all(|(_, worker)| *worker != victim_id)
    });
    let took = killed_at.elapsed();
    assert!(
        took >= Duration::from_millis(DELAY_MS),
        "moved after {took:?}, before scheduled.rebalance.max.delay.ms"
    );
    let leader = (0..3)
        .filter(|i| workers[*i].is_some())
        .find(|i| leads(at(&workers, *i)))
        .expect("a leader among the survivors");
    let delays = plain(&at(&workers, leader).stderr());
    assert!(
        delays
            .lines()
            .any(|l| l.contains(" assignment ") && l.contains("delay_ms=4000")),
        "the leader never scheduled the delayed rebalance: {delays}"
    );

    for p in PIPELINES {
        append(&home.join(format!("in-{p}.txt")), &lines_of(40..50, p));
        let out = home.join(format!("out-{p}.txt"));
        wait_for("every line in the sink", 60, || {
            let got = read(&out);
            (0..50).all(|i| got.lines().any(|l| l == format!("{p} line {i}")))
        });
        let dupes = assert_complete_in_order(&read(&out), 50, p);
        // Offsets were committed every 200 ms: only what followed the last commit repeats.
        assert!(dupes <= 20, "{dupes} duplicates in {p}");
    }
    let views: BTreeSet<String> = (0..3)
        .filter(|i| workers[*i].is_some())
        .map(|i| {
            at(&workers, i)
                .call("GET", "/connectors?expand=status", None)
                .body
        })
        .collect();
    assert_eq!(views.len(), 1, "{views:?}");

    // Deleting through a follower reaches the leader; every worker forgets it.
    let follower = (0..3)
        .filter(|i| workers[*i].is_some())
        .find(|i| *i != leader)
        .expect("a follower");
    let r = call_retrying(at(&workers, follower), "DELETE", "/connectors/sink-b", None);
    assert_eq!(r.status, 204, "{}", r.body);
    wait_for("sink-b gone everywhere", 30, || {
        (0..3).filter(|i| workers[*i].is_some()).all(|i| {
            at(&workers, i)
                .call("GET", "/connectors/sink-b", None)
                .status
                == 404
        })
    });

    // Kill the leader: the new leader has no memory of what the old one assigned, so the
    // lost work is reassigned in the first rebalance, without the delay (as in Kafka).
    let delayed = |w: &Worker| {
        plain(&w.stderr())
            .lines()
            .filter(|l| l.contains(" assignment ") && !l.contains("delay_ms=0"))
            .count()
    };
    let last = (0..3)
        .find(|i| workers[*i].is_some() && *i != leader)
        .expect("the last worker");
    let delayed_before = delayed(at(&workers, last));
    let mut dead = workers[leader].take().expect("the leader");
    let _ = dead.child.kill();
    let _ = dead.child.wait();
    drop(dead);
    let last_id = format!("127.0.0.1:{}", ports[last]);
    append(&home.join("in-a.txt"), &lines_of(50..60, "a"));
    wait_for("every connector and task on the last worker", 60, || {
        let now = owners(at(&workers, last));
        now.len() == 6
            && now
                .values()
                .all(|(state, worker)| state == "RUNNING" && *worker == last_id)
    });
    let out = home.join("out-a.txt");
    wait_for("the lines after the leader's death", 60, || {
        let got = read(&out);
        (0..60).all(|i| got.lines().any(|l| l == format!("a line {i}")))
    });
    assert_complete_in_order(&read(&out), 60, "a");
    let log = plain(&at(&workers, last).stderr());
    let took_over = log
        .lines()
        .rfind(|l| l.contains(" assignment "))
        .expect("an assignment");
    assert!(took_over.contains("leader=true"), "{took_over}");
    assert_eq!(
        delayed(at(&workers, last)),
        delayed_before,
        "no rebalance was delayed for the leader's work: {log}"
    );

    for slot in workers.iter_mut() {
        if let Some(worker) = slot.take() {
            let said = worker.stop();
            assert!(said.contains("stopped cleanly"), "{said}");
        }
    }
}

/// Two workers in one group, started one after the other so the first leads.
fn two_workers(home: &Path, bootstrap: &str) -> (Vec<Option<Worker>>, [u16; 2]) {
    let ports = [free_port(), free_port()];
    let props: Vec<String> = ports
        .iter()
        .map(|p| worker_properties(home, bootstrap, *p))
        .collect();
    let mut workers = vec![Some(Worker::start_distributed(home, &props[0]))];
    wait_for("the first worker to lead", 60, || leads(at(&workers, 0)));
    workers.push(Some(Worker::start_distributed(home, &props[1])));
    wait_for("both workers in one generation", 60, || {
        let gens: Vec<Option<String>> = (0..2)
            .map(|i| {
                last_assignment(at(&workers, i)).and_then(|l| {
                    l.split("generation=")
                        .nth(1)
                        .map(|g| g.split(' ').next().unwrap_or("").to_string())
                })
            })
            .collect();
        gens[0].is_some() && gens[0] == gens[1]
    });
    (workers, ports)
}

fn state_everywhere(workers: &[Option<Worker>], target: &str, pointer: &str, want: &str) -> bool {
    (0..workers.len()).all(|i| {
        let r = at(workers, i).call("GET", target, None);
        r.status == 200 && r.json().pointer(pointer).and_then(Json::as_str) == Some(want)
    })
}

#[test]
fn any_worker_answers_and_writes_reach_the_leader() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    std::fs::write(home.join("in.txt"), "one\ntwo\n").expect("in.txt");
    let (workers, _) = two_workers(home, &broker.bootstrap);
    let follower = (0..2)
        .find(|i| !leads(at(&workers, *i)))
        .expect("a follower");
    let f = at(&workers, follower);

    let config = json!({"connector.class": "FileStreamSource", "tasks.max": "1",
        "file": home.join("in.txt"), "topic": "rest-lines"});
    let r = call_retrying(
        f,
        "POST",
        "/connectors",
        Some(json!({"name": "src", "config": config})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.headers.contains("Location: /connectors/src"),
        "{}",
        r.headers
    );
    assert_eq!(r.json()["name"], "src");
    wait_for("src RUNNING on both", 60, || {
        state_everywhere(
            &workers,
            "/connectors/src/status",
            "/tasks/0/state",
            "RUNNING",
        )
    });
    for target in [
        "/connectors",
        "/connectors/src",
        "/connectors/src/config",
        "/connectors/src/tasks",
        "/connectors/src/status",
    ] {
        let answers: BTreeSet<(u16, String)> = (0..2)
            .map(|i| {
                let r = at(&workers, i).call("GET", target, None);
                (r.status, r.body)
            })
            .collect();
        assert_eq!(answers.len(), 1, "{target}: {answers:?}");
    }

    // Active topics live in the status topic: every worker knows them, any resets them.
    wait_for("the active topic on both", 30, || {
        (0..2).all(|i| {
            at(&workers, i)
                .call("GET", "/connectors/src/topics", None)
                .json()
                == json!({"src": {"topics": ["rest-lines"]}})
        })
    });
    assert_eq!(
        call_retrying(f, "PUT", "/connectors/src/topics/reset", None).status,
        202
    );
    wait_for("no active topic on both", 30, || {
        (0..2).all(|i| {
            at(&workers, i)
                .call("GET", "/connectors/src/topics", None)
                .json()
                == json!({"src": {"topics": []}})
        })
    });

    // The leader's answers, through the follower: Kafka's codes and words (this 409 is
    // not a rebalance's, so it is not retried).
    let r = f.call(
        "POST",
        "/connectors",
        Some(json!({"name": "src", "config": config})),
    );
    assert_eq!(
        (r.status, r.json()),
        (
            409,
            json!({"error_code": 409, "message": "Connector src already exists"})
        )
    );
    let r = call_retrying(
        f,
        "POST",
        "/connectors",
        Some(json!({"name": "bad", "config": {"connector.class": "FileStreamSource"}})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(f.call("GET", "/connectors/nope", None).status, 404);
    // A request already forwarded twice is not forwarded again.
    let r = f.call("DELETE", "/connectors/src?forward=false", None);
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (409, json!("Cannot complete request because of a conflicting operation (e.g. worker rebalance)"))
    );

    let r = call_retrying(f, "DELETE", "/connectors/src/offsets", None);
    assert_eq!(
        r.status, 400,
        "a running connector's offsets stay: {}",
        r.body
    );
    // Pause and resume are written by the worker asked; every worker sees them.
    assert_eq!(
        call_retrying(f, "PUT", "/connectors/src/pause", None).status,
        202
    );
    wait_for("PAUSED on both", 30, || {
        state_everywhere(
            &workers,
            "/connectors/src/status",
            "/tasks/0/state",
            "PAUSED",
        )
    });
    assert_eq!(
        call_retrying(f, "PUT", "/connectors/src/resume", None).status,
        202
    );
    wait_for("RUNNING again", 30, || {
        state_everywhere(
            &workers,
            "/connectors/src/status",
            "/tasks/0/state",
            "RUNNING",
        )
    });
    // Stop (KIP-875): no tasks, the connector STOPPED; resume brings the task back.
    assert_eq!(
        call_retrying(f, "PUT", "/connectors/src/stop", None).status,
        204
    );
    wait_for("STOPPED with no tasks on both", 30, || {
        state_everywhere(
            &workers,
            "/connectors/src/status",
            "/connector/state",
            "STOPPED",
        ) && (0..2).all(|i| {
            at(&workers, i).call("GET", "/connectors/src", None).json()["tasks"] == json!([])
        })
    });
    // KIP-875 on a stopped connector, through the follower; every worker reads them.
    let position = |w: &Worker| {
        w.call("GET", "/connectors/src/offsets", None).json()["offsets"][0]["offset"]["position"]
            .as_i64()
    };
    wait_for("the committed offsets on both", 30, || {
        (0..2).all(|i| position(at(&workers, i)) == Some(8))
    });
    let partition = json!({"filename": home.join("in.txt")});
    let r = call_retrying(
        f,
        "PATCH",
        "/connectors/src/offsets",
        Some(json!({"offsets": [{"partition": partition, "offset": {"position": 4}}]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["message"],
        "The offsets for this connector have been altered successfully"
    );
    wait_for("the altered offsets on both", 30, || {
        (0..2).all(|i| position(at(&workers, i)) == Some(4))
    });
    assert_eq!(
        call_retrying(f, "PUT", "/connectors/src/resume", None).status,
        202
    );
    wait_for("the task back after a stop", 60, || {
        state_everywhere(
            &workers,
            "/connectors/src/status",
            "/tasks/0/state",
            "RUNNING",
        )
    });

    // Restarts (KIP-745) through the follower, and a task restart sent to a worker that
    // does not run the task.
    let r = call_retrying(f, "POST", "/connectors/src/restart?includeTasks=true", None);
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["connector"]["state"], "RESTARTING");
    assert_eq!(r.json()["tasks"][0]["state"], "RESTARTING");
    wait_for("RUNNING after the restart", 30, || {
        state_everywhere(
            &workers,
            "/connectors/src/status",
            "/tasks/0/state",
            "RUNNING",
        )
    });
    let owner = f.call("GET", "/connectors/src/status", None).json()["tasks"][0]["worker_id"]
        .as_str()
        .expect("worker id")
        .to_string();
    let other = (0..2)
        .find(|i| at(&workers, *i).authority() != owner)
        .expect("a worker without the task");
    let r = call_retrying(
        at(&workers, other),
        "POST",
        "/connectors/src/tasks/0/restart",
        None,
    );
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(
        call_retrying(f, "POST", "/connectors/src/tasks/9/restart", None).status,
        404
    );

    let r = call_retrying(f, "DELETE", "/connectors/src", None);
    assert_eq!(r.status, 204, "{}", r.body);
    wait_for("src gone from both", 30, || {
        (0..2).all(|i| at(&workers, i).call("GET", "/connectors/src", None).status == 404)
    });
    for slot in workers.into_iter() {
        let said = slot.expect("alive").stop();
        assert!(said.contains("stopped cleanly"), "{said}");
    }
}
