//! What the Connect tests share: a worker process (Runnel's or Apache Kafka's), a REST
//! client written by hand, and the quick start's files.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use super::{Broker, RUNNEL};

/// A `runnel connect standalone` (or `distributed`) process started in `dir`.
pub struct Worker {
    pub child: Child,
    pub url: String,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Apache Kafka's worker (a JVM, which exits 143 on SIGTERM) rather than ours.
    kafka: bool,
}

impl Worker {
    pub fn start(dir: &Path, args: &[&str]) -> Worker {
        Worker::spawn(dir, "standalone", args, "warn")
    }

    /// `runnel connect distributed WORKER.PROPERTIES`, logging its assignments.
    pub fn start_distributed(dir: &Path, properties: &str) -> Worker {
        Worker::spawn(
            dir,
            "distributed",
            &[properties],
            "warn,runnel_connect::distributed=info",
        )
    }

    fn spawn(dir: &Path, mode: &str, args: &[&str], log: &str) -> Worker {
        let mut child = Command::new(RUNNEL)
            .arg("connect")
            .arg(mode)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", log)
            .env("NO_COLOR", "1")
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
            kafka: false,
        }
    }

    /// Starts Apache Kafka's `bin/connect-standalone.sh ARGS` from `kafka_home` in `dir`,
    /// its REST API on `port`, and waits until it answers.
    pub fn start_kafka(dir: &Path, kafka_home: &Path, port: u16, args: &[&str]) -> Worker {
        Worker::start_kafka_script(dir, kafka_home, "connect-standalone.sh", port, args)
    }

    /// Apache Kafka's `bin/connect-distributed.sh WORKER.PROPERTIES`.
    pub fn start_kafka_distributed(
        dir: &Path,
        kafka_home: &Path,
        port: u16,
        properties: &str,
    ) -> Worker {
        Worker::start_kafka_script(
            dir,
            kafka_home,
            "connect-distributed.sh",
            port,
            &[properties],
        )
    }

    fn start_kafka_script(
        dir: &Path,
        kafka_home: &Path,
        script: &str,
        port: u16,
        args: &[&str],
    ) -> Worker {
        let mut child = Command::new("bash")
            .arg(kafka_home.join("bin").join(script))
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Kafka's Connect script starts");
        let lines: Arc<Mutex<Vec<String>>> = Default::default();
        let outputs: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for out in outputs {
            let kept = lines.clone();
            // Reads to the end so the JVM never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    kept.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        let worker = Worker {
            child,
            url: format!("http://127.0.0.1:{port}"),
            stderr: lines,
            kafka: true,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(worker.authority()).is_err()
            || worker.call("GET", "/", None).status != 200
        {
            assert!(
                Instant::now() < deadline,
                "Kafka's worker never answered: {}",
                worker.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        worker
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Stops the worker as a service manager does (SIGTERM) and waits for it.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                // A JVM ended by SIGTERM exits 143 after its shutdown hooks ran.
                let clean = status.success() || (self.kafka && status.code() == Some(143));
                assert!(clean, "the worker exited with {status}: {}", self.stderr());
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

    pub fn authority(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    pub fn call(&self, method: &str, target: &str, body: Option<Json>) -> Response {
        http(self.authority(), method, target, body)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 exchange written by hand, independent of the worker's own HTTP code.
pub fn http(authority: &str, method: &str, target: &str, body: Option<Json>) -> Response {
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

pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

/// Kafka 4.1's config/connect-standalone.properties with the broker and offsets file of
/// this test (and a free REST port), then the quick start's plugin.path line.
pub fn quick_start_files(dir: &Path, bootstrap: &str, flush_ms: u32, extra: &str) -> PathBuf {
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

pub const QUICK_START: [&str; 3] = [
    "config/connect-standalone.properties",
    "config/connect-file-source.properties",
    "config/connect-file-sink.properties",
];

pub fn envelope(line: &str) -> String {
    format!(
        "{{\"schema\":{{\"type\":\"string\",\"optional\":false}},\"payload\":{}}}",
        json!(line)
    )
}

pub fn topic_lines(broker: &Broker, expected: usize) -> Vec<String> {
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
