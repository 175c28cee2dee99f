//! The Rust client against a real `runnel server` over TCP: producer options, consumer
//! positioning, admin calls, and idempotent de-duplication of a resent batch.

mod support;

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest};
use runnel_client::kafka::admin::{AlterConfigOp, ConfigResource, NewTopic};
use runnel_client::kafka::partitioner::partition_for_key;
use runnel_client::kafka::records::{build_batch, BatchOptions, Compression, NewRecord};
use runnel_client::kafka::{
    Acks, Admin, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, KafkaError, OffsetReset,
    OffsetSpec, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use runnel_protocol::kafka::{topic_name, ResponseError};
use support::{unique_topic, Broker};

async fn admin(broker: &Broker) -> Admin {
    Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects")
}

async fn create(admin: &Admin, topic: &str, partitions: i32) {
    admin
        .create_topic(NewTopic::new(topic, partitions, 1), false)
        .await
        .expect("topic created");
}

async fn read_all(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    want: usize,
) -> Vec<ConsumerRecord> {
    let mut config = ConsumerConfig::new(ClientConfig::new(&broker.bootstrap));
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await.expect("consumer connects");
    consumer.assign((0..partitions).map(|p| TopicPartition::new(topic, p)));
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < want && tokio::time::Instant::now() < deadline {
        got.extend(
            consumer
                .poll(Duration::from_millis(500))
                .await
                .expect("poll"),
        );
    }
    got.sort_by_key(|r| (r.partition, r.offset));
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_options_reach_the_consumer_intact() {
    let broker = Broker::start();
    let admin = admin(&broker).await;
    let topic = unique_topic("fields");
    create(&admin, &topic, 4).await;
    let mut config = ProducerConfig::new(ClientConfig::new(&broker.bootstrap));
    config.enable_idempotence = true;
    config.acks = Acks::All;
    config.compression = Compression::Gzip;
    config.linger_ms = 20;
    let producer = Producer::new(config).await.expect("producer connects");
    let mut deliveries = Vec::new();
    for i in 0..40 {
        let record = ProducerRecord::new(&topic, format!("v{i}"))
            .with_key(format!("k{}", i % 7))
            .with_header("n", Some(Bytes::from(i.to_string())))
            .with_header("null-header", None)
            .with_timestamp_ms(1_600_000_000_000 + i);
        deliveries.push(producer.send(record).await.expect("queued"));
    }
    let special = [
        ProducerRecord::null_value(&topic)
            .with_key("tombstone")
            .with_partition(3),
        ProducerRecord::new(&topic, "no key").with_partition(2),
    ];
    for record in special {
        deliveries.push(producer.send(record).await.expect("queued"));
    }
    producer.flush().await;
    let mut acked = Vec::new();
    for d in deliveries {
        acked.push(d.await.expect("acknowledged"));
    }
    for (i, meta) in acked.iter().take(40).enumerate() {
        let key = format!("k{}", i % 7);
        assert_eq!(
            meta.partition,
            partition_for_key(key.as_bytes(), 4),
            "murmur2 placement"
        );
        assert_eq!(meta.timestamp_ms, 1_600_000_000_000 + i as i64);
        assert!(meta.offset >= 0);
    }
    assert_eq!(acked[40].partition, 3);
    assert_eq!(acked[41].partition, 2);

    let records = read_all(&broker, &topic, 4, 42).await;
    assert_eq!(records.len(), 42);
    for meta in &acked {
        let r = records
            .iter()
            .find(|r| r.partition == meta.partition && r.offset == meta.offset)
            .expect("every acknowledged record is read back at its offset");
        if r.key.as_deref() == Some(b"tombstone") {
            assert_eq!(r.value, None);
        } else if r.value.as_deref() == Some(b"no key") {
            assert_eq!(r.key, None);
        } else {
            let value =
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            let i: i64 = value.trim_start_matches('v').parse().expect("n");
            assert_eq!(r.timestamp_ms, 1_600_000_000_000 + i);
            assert_eq!(
                r.headers[0],
                ("n".to_string(), Some(Bytes::from(i.to_string())))
            );
            assert_eq!(r.headers[1], ("null-header".to_string(), None));
        }
    }
    producer.close().await;
    assert!(matches!(
        producer.send(ProducerRecord::new(&topic, "late")).await,
        Err(KafkaError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_and_one_deliver() {
    let broker = Broker::start();
    let admin = admin(&broker).await;
    let topic = unique_topic("acks");
    create(&admin, &topic, 1).await;
    for acks in [Acks::None, Acks::Leader] {
        let mut config = ProducerConfig::new(ClientConfig::new(&broker.bootstrap));
        config.acks = acks;
        config.enable_idempotence = false;
        config.compression = Compression::Snappy;
        let producer = Producer::new(config).await.expect("connects");
        let mut last = None;
        for i in 0..100 {
            last = Some(
                producer
                    .send(ProducerRecord::new(&topic, format!("{acks:?} {i}")))
                    .await
                    .expect("queued"),
            );
        }
        let meta = last.expect("sent").await.expect("delivered");
        if acks == Acks::None {
            assert_eq!(meta.offset, -1, "acks=0 learns no offset");
        } else {
            assert!(meta.offset >= 99);
        }
        producer.close().await;
    }
    let records = read_all(&broker, &topic, 1, 200).await;
    assert_eq!(records.len(), 200);
}

/// acks=0 counts a record sent once it is in the socket: a producer whose process ends
/// right after `close` (its runtime dropped, as `runnel produce` exits) loses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_records_are_in_the_socket_when_close_returns() {
    let broker = Broker::start();
    let admin = admin(&broker).await;
    let topic = unique_topic("acks0-exit");
    create(&admin, &topic, 1).await;
    let (bootstrap, name) = (broker.bootstrap.clone(), topic.clone());
    // 20 MB: more than the socket buffers hold, so the writer is still busy at close.
    let records = 20_000;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut config = ProducerConfig::new(ClientConfig::new(&bootstrap));
            config.acks = Acks::None;
            config.enable_idempotence = false;
            config.linger_ms = 0;
            let producer = Producer::new(config).await.expect("connects");
            let mut deliveries = Vec::with_capacity(records);
            for i in 0..records {
                let record = format!("record {i:05} {}", "x".repeat(1_000));
                let delivery = producer
                    .send(ProducerRecord::new(&name, record))
                    .await
                    .expect("queued");
                deliveries.push(delivery);
            }
            producer.close().await;
            for delivery in deliveries {
                assert_eq!(delivery.await.expect("sent").offset, -1, "acks=0");
            }
        });
        // Dropping the runtime here stops every task, as a process exit would.
    })
    .join()
    .expect("the producer thread");
    let got = read_all(&broker, &topic, 1, records).await;
    assert_eq!(
        got.len(),
        records,
        "acks=0 records lost after close returned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_seeks_resets_and_lists_offsets() {
    let broker = Broker::start();
    let admin = admin(&broker).await;
    let topic = unique_topic("seek");
    create(&admin, &topic, 1).await;
    let mut config = ProducerConfig::new(ClientConfig::new(&broker.bootstrap));
    config.linger_ms = 0;
    let producer = Producer::new(config).await.expect("connects");
    for i in 0..10i64 {
        producer
            .send_and_wait(
                ProducerRecord::new(&topic, format!("{i}")).with_timestamp_ms(1_000_000 + i * 1000),
            )
            .await
            .expect("written");
    }
    let tp = TopicPartition::new(&topic, 0);
    let offsets = admin
        .list_offsets(&[(tp.clone(), OffsetSpec::Earliest)])
        .await
        .expect("listed");
    assert_eq!(offsets[&tp].as_ref().expect("earliest").offset, 0);
    let latest = admin
        .list_offsets(&[(tp.clone(), OffsetSpec::Latest)])
        .await
        .expect("listed");
    assert_eq!(latest[&tp].as_ref().expect("latest").offset, 10);
    let by_time = admin
        .list_offsets(&[(tp.clone(), OffsetSpec::Timestamp(1_000_000 + 4500))])
        .await
        .expect("listed");
    assert_eq!(by_time[&tp].as_ref().expect("by time").offset, 5);

    // auto.offset.reset=earliest recovers from an offset past the end.
    let mut config = ConsumerConfig::new(ClientConfig::new(&broker.bootstrap));
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config.clone()).await.expect("connects");
    consumer.assign([tp.clone()]);
    consumer.seek(&tp, 1000).expect("assigned");
    let first = consumer.poll(Duration::from_secs(10)).await.expect("poll");
    assert_eq!(
        first.first().map(|r| r.offset),
        Some(0),
        "reset to earliest"
    );
    consumer
        .seek_to_timestamp(&tp, 1_000_000 + 7000)
        .expect("assigned");
    let from_time = consumer.poll(Duration::from_secs(10)).await.expect("poll");
    assert_eq!(from_time.first().map(|r| r.offset), Some(7));
    consumer.seek_to_end(&tp).expect("assigned");
    assert!(consumer
        .poll(Duration::from_millis(300))
        .await
        .expect("poll")
        .is_empty());
    assert_eq!(consumer.position(&tp), Some(10));

    // With reset none, the same seek is an error that says what to do.
    config.auto_offset_reset = OffsetReset::None;
    let mut strict = Consumer::new(config).await.expect("connects");
    strict.assign([tp.clone()]);
    strict.seek(&tp, 1000).expect("assigned");
    let e = strict
        .poll(Duration::from_secs(5))
        .await
        .expect_err("out of range");
    assert!(
        matches!(e, KafkaError::OffsetOutOfRange { offset: 1000, .. }),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_validates_grows_and_configures_topics() {
    let broker = Broker::start();
    let admin = admin(&broker).await;
    let topic = unique_topic("admin");
    admin
        .create_topic(NewTopic::new(&topic, 2, 1), true)
        .await
        .expect("valid");
    assert!(
        !admin.list_topics().await.expect("listed").contains(&topic),
        "validate only"
    );
    create(&admin, &topic, 2).await;
    let e = admin
        .create_topic(NewTopic::new(&topic, 2, 1), false)
        .await
        .expect_err("exists");
    assert_eq!(e.code(), Some(ResponseError::TopicAlreadyExists));
    let e = admin
        .create_topic(NewTopic::new("bad name!", 1, 1), false)
        .await
        .expect_err("invalid name");
    assert!(e.to_string().contains("ASCII letters"), "{e}");

    admin
        .create_partitions(&topic, 5, false)
        .await
        .expect("grown");
    let described = admin
        .describe_topics(std::slice::from_ref(&topic))
        .await
        .expect("described");
    assert_eq!(described[0].partitions.len(), 5);
    for p in &described[0].partitions {
        assert!(p.leader >= 0 && p.replicas.contains(&p.leader) && p.isr.contains(&p.leader));
    }

    let resource = ConfigResource::Topic(topic.clone());
    admin
        .alter_configs(
            &resource,
            &[AlterConfigOp::Set("retention.ms".into(), "777777".into())],
            false,
        )
        .await
        .expect("altered");
    let configs = admin.describe_configs(&resource).await.expect("described");
    let retention = configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("777777"));

    admin.delete_topic(&topic).await.expect("deleted");
    let e = admin.delete_topic(&topic).await.expect_err("already gone");
    assert!(matches!(e, KafkaError::UnknownTopic { .. }), "{e}");
}

/// A batch resent with the same producer id, epoch and sequence (as a retry after a lost
/// answer would be) is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_idempotent_batch_is_written_once() {
    let broker = Broker::start();
    let admin = admin(&broker).await;
    let topic = unique_topic("dedup");
    create(&admin, &topic, 1).await;
    let conn = admin.cluster().any_connection().await.expect("connected");
    let id = conn
        .call(|_| {
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
        })
        .await
        .expect("producer id");
    assert_eq!(id.error_code, 0);
    let records = vec![NewRecord {
        value: Some(Bytes::from_static(b"once")),
        timestamp_ms: 1,
        ..Default::default()
    }];
    let batch = build_batch(
        BatchOptions {
            producer_id: id.producer_id.0,
            producer_epoch: id.producer_epoch,
            base_sequence: 0,
            compression: Compression::Zstd,
        },
        &records,
    )
    .expect("built");
    let leader = admin
        .cluster()
        .leader(&TopicPartition::new(&topic, 0))
        .await
        .expect("leader");
    let conn = admin
        .cluster()
        .connection(leader)
        .await
        .expect("leader connection");
    let mut offsets = Vec::new();
    for _ in 0..2 {
        let response = conn
            .call(|_| {
                ProduceRequest::default()
                    .with_transactional_id(None)
                    .with_acks(-1)
                    .with_timeout_ms(10_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(topic_name(&topic))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.clone()))])])
            })
            .await
            .expect("produced");
        let p = &response.responses[0].partition_responses[0];
        assert!(
            p.error_code == 0 || p.error_code == ResponseError::DuplicateSequenceNumber.code(),
            "error {}",
            p.error_code
        );
        offsets.push(p.base_offset);
    }
    assert_eq!(offsets[0], 0);
    let got = read_all(&broker, &topic, 1, 1).await;
    assert_eq!(got.len(), 1);
    let latest = admin
        .list_offsets(&[(TopicPartition::new(&topic, 0), OffsetSpec::Latest)])
        .await
        .expect("listed");
    assert_eq!(
        latest[&TopicPartition::new(&topic, 0)]
            .as_ref()
            .expect("latest")
            .offset,
        1,
        "the resent batch was not appended again"
    );
}

/// Records sent while the broker stops and starts again are retried on a new connection,
/// acknowledged, and written exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producer_rides_through_a_broker_restart() {
    if std::env::var("RUNNEL_TEST_BOOTSTRAP").is_ok() {
        return; // An external broker cannot be restarted from here.
    }
    let data = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", support::free_port());
    let mut broker = Broker::start_at(&listen, data.path());
    let admin = admin(&broker).await;
    let topic = unique_topic("restart");
    create(&admin, &topic, 2).await;
    let mut config = ProducerConfig::new(ClientConfig::new(&broker.bootstrap));
    config.linger_ms = 1;
    config.delivery_timeout_ms = 60_000;
    config.client.connection.request_timeout_ms = 5_000;
    let producer = Producer::new(config).await.expect("connects");
    // The sender keeps sending from before the stop until well after the restart.
    let restarted_flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let producer = producer.clone();
        let topic = topic.clone();
        let restarted = restarted_flag.clone();
        tokio::spawn(async move {
            let mut deliveries = Vec::new();
            let mut after_restart = 0;
            let mut i = 0u32;
            while after_restart < 500 {
                let record = ProducerRecord::new(&topic, i.to_string()).with_key(i.to_string());
                deliveries.push(producer.send(record).await.expect("queued"));
                if restarted.load(std::sync::atomic::Ordering::SeqCst) {
                    after_restart += 1;
                }
                i += 1;
                if i.is_multiple_of(20) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            for d in deliveries {
                d.await.expect("every record is acknowledged in the end");
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let data_dir = data.path().to_path_buf();
    let listen_again = listen.clone();
    let restarted = tokio::task::spawn_blocking(move || {
        broker.stop();
        std::thread::sleep(Duration::from_millis(500));
        Broker::start_at(&listen_again, &data_dir)
    })
    .await
    .expect("restarted");
    restarted_flag.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = sender.await.expect("sender finished") as usize;
    assert!(
        sent > 600,
        "records were sent before and after the restart: {sent}"
    );
    producer.close().await;
    let records = read_all(&restarted, &topic, 2, sent).await;
    let mut values: Vec<u32> = records
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                .parse()
                .expect("n")
        })
        .collect();
    assert_eq!(values.len(), sent, "no record lost or duplicated");
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), sent, "no duplicates");
    for p in 0..2 {
        let order: Vec<u32> = records
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| {
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                    .parse()
                    .expect("n")
            })
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "partition {p} keeps send order"
        );
    }
}
