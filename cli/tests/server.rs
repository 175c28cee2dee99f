//! The real `runnel server` process: records survive SIGKILL, Ctrl-C and SIGTERM stop it
//! cleanly and in order, and a failure to start says its cause once.

mod support;

use std::process::Command;

use std::time::Duration;

use runnel_client::kafka::admin::NewTopic;
use runnel_client::kafka::{
    Acks, Admin, ClientConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicPartition,
};
use support::{free_port, unique_topic, Broker, RUNNEL};

fn produce(broker: &Broker, topic: &str, lines: &str) {
    let run = broker.run(&["produce", "--topic", topic], lines);
    assert!(run.ok, "produce failed: {}", run.stderr);
}

fn consume_all(broker: &Broker, topic: &str, count: usize) -> String {
    let count = count.to_string();
    let run = broker.run(
        &[
            "consume",
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            &count,
        ],
        "",
    );
    assert!(run.ok, "consume failed: {}", run.stderr);
    run.stdout
}

#[test]
fn records_survive_a_kill_and_every_stop_is_clean() {
    let data = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let topic = unique_topic("server");

    let mut broker = Broker::start_at(&listen, data.path());
    produce(&broker, &topic, "one\ntwo\nthree\n");
    assert!(broker.stop_with("KILL").is_some(), "SIGKILL ends it");

    let mut broker = Broker::start_at(&listen, data.path());
    assert_eq!(consume_all(&broker, &topic, 3), "one\ntwo\nthree\n");
    produce(&broker, &topic, "four\n");
    let exit = broker.stop_with("INT").expect("Ctrl-C stops the server");
    assert!(exit.success(), "Ctrl-C stops it cleanly: {exit:?}");
    let said = broker.stderr();
    assert!(said.contains("stopped cleanly"), "{said}");

    let mut broker = Broker::start_at(&listen, data.path());
    assert_eq!(consume_all(&broker, &topic, 4), "one\ntwo\nthree\nfour\n");
    let exit = broker.stop_with("TERM").expect("SIGTERM stops the server");
    assert!(exit.success(), "SIGTERM stops it cleanly: {exit:?}");
    let said = broker.stderr();
    assert!(said.contains("stopped cleanly"), "{said}");
}

#[test]
fn a_busy_port_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let data = tempfile::tempdir().expect("tempdir");
    let out = Command::new(RUNNEL)
        .args(["server", "--listen", &addr, "--data-dir"])
        .arg(data.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && err.contains("--listen"), "{err}");
    assert_eq!(
        err.matches("in use").count(),
        1,
        "the cause is said once: {err}"
    );
}

/// Three log files per partition, several times more than the process may open: every
/// partition stays online, and the broker starts again on that data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_past_the_descriptor_limit_stay_online_and_the_broker_restarts() {
    const DESCRIPTORS: u32 = 256;
    const PARTITIONS: i32 = 300;
    let data = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let topic = unique_topic("wide");

    let mut broker = Broker::start_with_descriptor_limit(&listen, data.path(), DESCRIPTORS);
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    admin
        .create_topic(NewTopic::new(&topic, PARTITIONS, 1), false)
        .await
        .expect("the topic is created although its files outnumber the descriptors");
    let mut config = ProducerConfig::new(ClientConfig::new(&broker.bootstrap));
    config.acks = Acks::All;
    let producer = Producer::new(config).await.expect("producer connects");
    let mut deliveries = Vec::new();
    for partition in 0..PARTITIONS {
        let record = ProducerRecord::new(&topic, format!("p{partition}")).with_partition(partition);
        deliveries.push(producer.send(record).await.expect("queued"));
    }
    for delivery in deliveries {
        delivery.await.expect("every partition takes its record");
    }
    producer.close().await;
    let exit = broker.stop_with("TERM").expect("stops");
    assert!(exit.success(), "{exit:?}: {}", broker.stderr());
    assert!(
        !broker.stderr().contains("offline"),
        "no partition went offline: {}",
        broker.stderr()
    );

    let broker = Broker::start_with_descriptor_limit(&listen, data.path(), DESCRIPTORS);
    let mut config = ConsumerConfig::new(ClientConfig::new(&broker.bootstrap));
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await.expect("consumer connects");
    consumer.assign((0..PARTITIONS).map(|p| TopicPartition::new(&topic, p)));
    let mut seen = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < PARTITIONS as usize && tokio::time::Instant::now() < deadline {
        for record in consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll")
        {
            let value = record.value.clone().unwrap_or_default();
            seen.insert(
                record.partition,
                String::from_utf8_lossy(&value).into_owned(),
            );
        }
    }
    assert_eq!(
        seen.len(),
        PARTITIONS as usize,
        "every partition reads back after the restart"
    );
    assert!(seen.iter().all(|(p, v)| *v == format!("p{p}")));
}

/// `runnel storage format` fixes the cluster id a node starts with; a node refuses a
/// directory of another node or of another cluster, saying which and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_formatted_directory_fixes_the_cluster_id_and_foreign_ones_are_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().to_str().expect("a UTF-8 path");
    let uuid = support::run_with(&["storage", "random-uuid"], &[], "");
    let cluster_id = uuid.stdout.trim().to_string();
    assert!(
        uuid.ok && cluster_id.len() == 22,
        "{uuid:?}",
        uuid = uuid.stdout
    );
    let format = ["storage", "format", "-t", &cluster_id, "--data-dir", dir];
    let formatted = support::run_with(&format, &[], "");
    assert!(
        formatted.ok && formatted.stdout.contains("formatted"),
        "{}",
        formatted.stderr
    );
    let again = support::run_with(&format, &[], "");
    assert!(
        !again.ok && again.stderr.contains("--ignore-formatted"),
        "{}",
        again.stderr
    );
    assert!(support::run_with(&format, &["-g"], "").ok);
    let bad = support::run_with(
        &["storage", "format", "-t", "nope", "--data-dir", dir],
        &[],
        "",
    );
    assert!(
        !bad.ok && bad.stderr.contains("random-uuid"),
        "{}",
        bad.stderr
    );

    let broker = Broker::start_at("127.0.0.1:0", data.path());
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    let metadata = admin
        .cluster()
        .metadata(None, false)
        .await
        .expect("metadata");
    assert_eq!(metadata.cluster_id.as_deref(), Some(cluster_id.as_str()));
    drop(admin);
    drop(broker);

    let start = |extra: &[&str]| {
        let out = Command::new(RUNNEL)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir", dir])
            .args(extra)
            .output()
            .expect("runs");
        assert!(!out.status.success(), "the server refused to start");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let config = data.path().join("node-2.properties");
    std::fs::write(&config, "node.id=2\n").expect("written");
    let other_node = start(&["--config", config.to_str().expect("UTF-8")]);
    assert!(
        other_node.contains("node.id=1") && other_node.contains("node.id=2"),
        "{other_node}"
    );
    let meta = data.path().join("meta.properties");
    let text = std::fs::read_to_string(&meta).expect("meta.properties");
    std::fs::write(&meta, text.replace(&cluster_id, "AAAAAAAAAAAAAAAAAAAAAA")).expect("written");
    let other_cluster = start(&[]);
    assert!(
        other_cluster.contains("AAAAAAAAAAAAAAAAAAAAAA") && other_cluster.contains(&cluster_id),
        "{other_cluster}"
    );
}
