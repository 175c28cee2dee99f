//! Ten thousand partitions through `runnel server` itself, as a new user would make them:
//! 100 topics of 100 partitions created over the wire, one record produced to each, then
//! the broker stopped and started again. Reports the server's resident memory and open
//! descriptors (read from /proc) at each step, and the time each step took.
//!
//! cargo bench -p runnel --bench partitions
//!     RUNNEL_BENCH_TOPICS (default 100), RUNNEL_BENCH_PARTITIONS_PER_TOPIC (default 100),
//!     RUNNEL_BENCH_DIR (where the data goes; default .)

use std::time::{Duration, Instant};

use runnel_client::kafka::admin::NewTopic;
use runnel_client::kafka::{
    Acks, Admin, ClientConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicPartition,
};

#[path = "../tests/support/mod.rs"]
mod support;

use support::Broker;

fn env_or(name: &str, default: i32) -> i32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `runnel server` with what this benchmark reads of it.
struct Server {
    broker: Broker,
    bootstrap: String,
    pid: u32,
}

impl Server {
    fn start(data: &std::path::Path, listen: &str) -> (Server, Duration) {
        let started = Instant::now();
        let broker = Broker::start_at(listen, data);
        let took = started.elapsed();
        let pid = broker.pid().expect("started here");
        let bootstrap = broker.bootstrap.clone();
        (
            Server {
                broker,
                bootstrap,
                pid,
            },
            took,
        )
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("procfs");
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib / 1024.0
    }

    fn descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .expect("procfs")
            .count()
    }

    fn report(&self, step: &str, took: Duration) {
        println!(
            "{step:<28} {:>9.1} s   {:>8.1} MiB resident   {:>6} descriptors",
            took.as_secs_f64(),
            self.rss_mib(),
            self.descriptors()
        );
    }

    fn stop(mut self) -> Duration {
        let started = Instant::now();
        let status = self.broker.stop_with("TERM").expect("stops within 30 s");
        assert!(status.success(), "a clean stop: {status:?}");
        started.elapsed()
    }
}

#[tokio::main]
async fn main() {
    let topics = env_or("RUNNEL_BENCH_TOPICS", 100);
    let per_topic = env_or("RUNNEL_BENCH_PARTITIONS_PER_TOPIC", 100);
    let base = std::env::var("RUNNEL_BENCH_DIR").unwrap_or_else(|_| ".".into());
    let data = tempfile::tempdir_in(base).expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    println!(
        "{} partitions ({topics} topics x {per_topic}) through runnel server",
        topics * per_topic
    );

    let (server, took) = Server::start(data.path(), &listen);
    server.report("started empty", took);
    let admin = Admin::connect(ClientConfig::new(&server.bootstrap))
        .await
        .expect("admin");
    let started = Instant::now();
    for t in 0..topics {
        admin
            .create_topic(NewTopic::new(format!("bench-{t}"), per_topic, 1), false)
            .await
            .expect("topic created");
    }
    server.report("topics created", started.elapsed());

    let mut config = ProducerConfig::new(ClientConfig::new(&server.bootstrap));
    config.acks = Acks::All;
    let producer = Producer::new(config).await.expect("producer");
    let started = Instant::now();
    let mut deliveries = Vec::new();
    for t in 0..topics {
        for p in 0..per_topic {
            let record = ProducerRecord::new(format!("bench-{t}"), "x").with_partition(p);
            deliveries.push(producer.send(record).await.expect("queued"));
        }
    }
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    producer.close().await;
    server.report("a record in each", started.elapsed());
    let stop = server.stop();
    println!("{:<28} {:>9.1} s", "stopped (SIGTERM)", stop.as_secs_f64());

    let (server, took) = Server::start(data.path(), &listen);
    server.report("restarted", took);
    let mut config = ConsumerConfig::new(ClientConfig::new(&server.bootstrap));
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await.expect("consumer");
    consumer.assign(
        (0..topics).flat_map(|t| {
            (0..per_topic).map(move |p| TopicPartition::new(format!("bench-{t}"), p))
        }),
    );
    let started = Instant::now();
    let mut read = 0usize;
    let want = (topics * per_topic) as usize;
    while read < want && started.elapsed() < Duration::from_secs(600) {
        read += consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll")
            .len();
    }
    assert_eq!(read, want, "every record reads back after the restart");
    server.report("every record read back", started.elapsed());
    server.stop();
}
