//! The client commands against a real `runnel server` over TCP: topics, produce, consume
//! and perf, as a person would run them.

mod support;

use support::{run_with, unique_topic, Broker};

#[test]
fn topics_create_list_describe_alter_delete() {
    let broker = Broker::start();
    let topic = unique_topic("admin");
    let created = broker.run(
        &[
            "topics",
            "create",
            "--topic",
            &topic,
            "--partitions",
            "2",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=123456",
        ],
        "",
    );
    assert!(created.ok, "{}", created.stderr);
    assert!(
        created.stderr.contains("Created topic"),
        "{}",
        created.stderr
    );

    let again = broker.run(&["topics", "create", "--topic", &topic], "");
    assert!(!again.ok);
    assert!(
        again.stderr.contains("TopicAlreadyExists"),
        "{}",
        again.stderr
    );
    let quiet = broker.run(
        &["topics", "create", "--topic", &topic, "--if-not-exists"],
        "",
    );
    assert!(quiet.ok, "{}", quiet.stderr);

    let listed = broker.run(&["topics", "list"], "");
    assert!(listed.ok, "{}", listed.stderr);
    assert!(
        listed.stdout.lines().any(|l| l == topic),
        "{}",
        listed.stdout
    );

    let described = broker.run(&["topics", "describe", "--topic", &topic], "");
    assert!(described.ok, "{}", described.stderr);
    assert!(
        described.stdout.contains("PartitionCount: 2"),
        "{}",
        described.stdout
    );
    assert!(
        described.stdout.contains("retention.ms=123456"),
        "{}",
        described.stdout
    );
    assert!(described.stdout.contains("Partition: 1\tLeader: "));

    let altered = broker.run(
        &[
            "topics",
            "alter",
            "--topic",
            &topic,
            "--partitions",
            "4",
            "--config",
            "retention.ms=654321",
        ],
        "",
    );
    assert!(altered.ok, "{}", altered.stderr);
    let described = broker.run(&["topics", "describe", "--topic", &topic], "");
    assert!(
        described.stdout.contains("PartitionCount: 4"),
        "{}",
        described.stdout
    );
    assert!(
        described.stdout.contains("retention.ms=654321"),
        "{}",
        described.stdout
    );

    let deleted = broker.run(&["topics", "delete", "--topic", &topic], "");
    assert!(deleted.ok, "{}", deleted.stderr);
    let listed = broker.run(&["topics", "list"], "");
    assert!(
        !listed.stdout.lines().any(|l| l == topic),
        "{}",
        listed.stdout
    );
    let gone = broker.run(&["topics", "describe", "--topic", &topic], "");
    assert!(!gone.ok);
    assert!(
        gone.stderr.contains("does not exist") && gone.stderr.contains("runnel topics create"),
        "{}",
        gone.stderr
    );
    let quiet = broker.run(&["topics", "delete", "--topic", &topic, "--if-exists"], "");
    assert!(quiet.ok, "{}", quiet.stderr);
}

#[test]
fn produce_then_consume_round_trips_keys_partitions_and_offsets() {
    let broker = Broker::start();
    let topic = unique_topic("roundtrip");
    let created = broker.run(
        &["topics", "create", "--topic", &topic, "--partitions", "3"],
        "",
    );
    assert!(created.ok, "{}", created.stderr);
    let lines: Vec<String> = (0..30).map(|i| format!("key{}:value {i}", i % 5)).collect();
    let produced = broker.run(
        &["produce", "--topic", &topic, "--key-separator", ":"],
        &(lines.join("\n") + "\n"),
    );
    assert!(produced.ok, "{}", produced.stderr);
    assert!(produced.stdout.is_empty(), "produce prints no records");

    let consumed = broker.run(
        &[
            "consume",
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "30",
            "--timeout-ms",
            "20000",
            "--print-key",
            "--print-partition",
            "--print-offset",
        ],
        "",
    );
    assert!(consumed.ok, "{}", consumed.stderr);
    let mut seen: Vec<(i32, i64, String, String)> = consumed
        .stdout
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "{l}");
            (
                f[0].trim_start_matches("Partition:")
                    .parse()
                    .expect("partition"),
                f[1].trim_start_matches("Offset:").parse().expect("offset"),
                f[2].to_string(),
                f[3].to_string(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 30, "{}", consumed.stdout);
    // A key always lands on the partition Java's murmur2 picks.
    for (partition, _, key, _) in &seen {
        let expected = runnel_client::kafka::partitioner::partition_for_key(key.as_bytes(), 3);
        assert_eq!(*partition, expected, "key {key}");
    }
    // Within a partition, offsets count up from 0 in the order lines were written.
    seen.sort();
    for p in 0..3 {
        let values: Vec<&(i32, i64, String, String)> = seen.iter().filter(|s| s.0 == p).collect();
        for (i, s) in values.iter().enumerate() {
            assert_eq!(s.1, i as i64);
        }
        let order: Vec<usize> = values
            .iter()
            .map(|s| s.3.trim_start_matches("value ").parse().expect("n"))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    }
    let mut values: Vec<String> = seen.iter().map(|s| format!("{}:{}", s.2, s.3)).collect();
    values.sort();
    let mut want = lines.clone();
    want.sort();
    assert_eq!(values, want);

    // One partition from an offset.
    let p0 = seen.iter().filter(|s| s.0 == 0).count();
    if p0 > 1 {
        let from = broker.run(
            &[
                "consume",
                "--topic",
                &topic,
                "--partition",
                "0",
                "--offset",
                "1",
                "--max-messages",
                &(p0 - 1).to_string(),
                "--timeout-ms",
                "20000",
                "--print-offset",
            ],
            "",
        );
        assert!(from.ok, "{}", from.stderr);
        let offsets: Vec<&str> = from
            .stdout
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default())
            .collect();
        assert_eq!(offsets.first(), Some(&"Offset:1"), "{}", from.stdout);
        assert_eq!(offsets.len(), p0 - 1);
    }

    // Starting at the end with nothing new, --timeout-ms ends it quietly.
    let idle = broker.run(&["consume", "--topic", &topic, "--timeout-ms", "1500"], "");
    assert!(idle.ok, "{}", idle.stderr);
    assert!(idle.stdout.is_empty(), "{}", idle.stdout);
    assert!(idle.stderr.contains("Processed a total of 0 messages"));
}

#[test]
fn every_compression_and_acks_setting_round_trips() {
    let broker = Broker::start();
    for (compression, acks) in [
        ("none", "1"),
        ("gzip", "all"),
        ("snappy", "all"),
        ("lz4", "1"),
        ("zstd", "all"),
        ("none", "0"),
    ] {
        let topic = unique_topic(&format!("codec-{compression}"));
        let created = broker.run(
            &["topics", "create", "--topic", &topic, "--partitions", "1"],
            "",
        );
        assert!(created.ok, "{}", created.stderr);
        let input: String = (0..500)
            .map(|i| format!("record {i} {}\n", "x".repeat(i % 50)))
            .collect();
        let produced = broker.run(
            &[
                "produce",
                "--topic",
                &topic,
                "--compression",
                compression,
                "--acks",
                acks,
            ],
            &input,
        );
        assert!(produced.ok, "{compression}: {}", produced.stderr);
        let consumed = broker.run(
            &[
                "consume",
                "--topic",
                &topic,
                "--from-beginning",
                "--max-messages",
                "500",
                "--timeout-ms",
                "20000",
            ],
            "",
        );
        assert!(consumed.ok, "{compression}: {}", consumed.stderr);
        assert_eq!(consumed.stdout, input, "{compression} acks={acks}");
    }
}

#[test]
fn perf_produce_and_consume_report_throughput_and_latency() {
    let broker = Broker::start();
    let topic = unique_topic("perf");
    let created = broker.run(
        &["topics", "create", "--topic", &topic, "--partitions", "2"],
        "",
    );
    assert!(created.ok, "{}", created.stderr);
    let produced = broker.run(
        &[
            "perf",
            "produce",
            "--topic",
            &topic,
            "--num-records",
            "5000",
            "--record-size",
            "200",
            "--acks",
            "all",
            "--idempotence",
            "--compression",
            "lz4",
            "--linger-ms",
            "2",
            "--batch-size",
            "32768",
        ],
        "",
    );
    assert!(produced.ok, "{}", produced.stderr);
    let summary = produced.stdout.trim();
    assert!(summary.starts_with("5000 records sent"), "{summary}");
    for part in [
        "records/sec",
        "MB/sec",
        "ms avg latency",
        "ms 50th",
        "ms 99th",
        "ms 99.9th",
    ] {
        assert!(summary.contains(part), "{summary}");
    }
    let consumed = broker.run(
        &[
            "perf",
            "consume",
            "--topic",
            &topic,
            "--num-records",
            "5000",
            "--timeout-ms",
            "20000",
        ],
        "",
    );
    assert!(consumed.ok, "{}", consumed.stderr);
    let row = consumed
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let fields: Vec<&str> = row.split(", ").collect();
    assert_eq!(fields.get(2), Some(&"5000"), "{}", consumed.stdout);
}

#[test]
fn errors_say_what_to_do() {
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let refused = run_with(&["topics", "list"], &["--bootstrap-server", &addr], "");
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains(&format!("cannot reach {addr}"))
            && refused
                .stderr
                .contains("Is a broker running? Start one with `runnel server`"),
        "{}",
        refused.stderr
    );

    let broker = Broker::start();
    let missing = unique_topic("missing");
    let consumed = broker.run(
        &["consume", "--topic", &missing, "--timeout-ms", "1000"],
        "",
    );
    assert!(!consumed.ok);
    assert!(
        consumed.stderr.contains("does not exist")
            && consumed.stderr.contains("runnel topics create --topic"),
        "{}",
        consumed.stderr
    );
    let bad = broker.run(&["produce", "--topic", "x", "--compression", "brotli"], "");
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains("none, gzip, snappy, lz4 or zstd"),
        "{}",
        bad.stderr
    );
    let help = run_with(&["produce", "--help"], &[], "");
    assert!(
        help.ok && help.stdout.contains("--bootstrap-server"),
        "{}",
        help.stdout
    );
}
