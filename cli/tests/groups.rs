//! Consumer groups against a real `runnel server` over TCP: group consumers sharing a
//! topic and resuming from committed offsets, and `runnel groups` as a person runs it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use runnel_client::kafka::admin::NewTopic;
use runnel_client::kafka::{
    Admin, ClientConfig, ConsumerConfig, ConsumerRecord, GroupConsumer, GroupConsumerConfig,
    GroupProtocol, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use support::{unique_topic, Broker, RUNNEL};
use tokio::time::Instant;

/// A group consumer that reads from the earliest offset and heartbeats often, so tests
/// see rebalances quickly (6 s is the broker's smallest session timeout).
async fn group_consumer(broker: &Broker, group: &str, topic: &str) -> GroupConsumer {
    let mut consumer = ConsumerConfig::new(ClientConfig::new(&broker.bootstrap));
    consumer.auto_offset_reset = OffsetReset::Earliest;
    consumer.fetch_max_wait_ms = 100;
    let mut config = GroupConsumerConfig::new(consumer, group);
    config.session_timeout_ms = 6_000;
    config.heartbeat_interval_ms = 300;
    config.max_poll_interval_ms = 20_000;
    config.enable_auto_commit = false;
    let mut c = GroupConsumer::new(config).await.expect("consumer connects");
    c.subscribe(&[topic]).expect("subscribes");
    c
}

async fn produce(broker: &Broker, topic: &str, partitions: i32, per_partition: usize, tag: &str) {
    let producer = Producer::new(ProducerConfig::new(ClientConfig::new(&broker.bootstrap)))
        .await
        .expect("producer connects");
    for p in 0..partitions {
        for i in 0..per_partition {
            let record = ProducerRecord::new(topic, format!("{tag}-{p}-{i}")).with_partition(p);
            producer
                .send_and_wait(record)
                .await
                .expect("record delivered");
        }
    }
    producer.close().await;
}

fn partitions_of(records: &[ConsumerRecord]) -> BTreeSet<i32> {
    records.iter().map(|r| r.partition).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_a_topic_commit_and_a_restart_resumes() {
    let broker = Broker::start();
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    let topic = unique_topic("split");
    let group = unique_topic("group");
    admin
        .create_topic(NewTopic::new(&topic, 4, 1), false)
        .await
        .expect("topic created");

    let mut a = group_consumer(&broker, &group, &topic).await;
    let mut b = group_consumer(&broker, &group, &topic).await;
    // Poll both until they settle in one generation that splits the four partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ra, rb) = tokio::join!(
            a.poll(Duration::from_millis(200)),
            b.poll(Duration::from_millis(200))
        );
        assert!(ra.expect("a polls").is_empty() && rb.expect("b polls").is_empty());
        let (pa, pb) = (a.assignment(), b.assignment());
        let all: BTreeSet<TopicPartition> = pa.iter().chain(&pb).cloned().collect();
        if a.generation_id() >= 0
            && a.generation_id() == b.generation_id()
            && pa.len() == 2
            && pb.len() == 2
            && all.len() == 4
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no settled split: a={pa:?} (gen {}), b={pb:?} (gen {})",
            a.generation_id(),
            b.generation_id()
        );
    }
    assert_ne!(a.member_id(), b.member_id());

    produce(&broker, &topic, 4, 10, "first").await;
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while got_a.len() + got_b.len() < 40 && Instant::now() < deadline {
        let (ra, rb) = tokio::join!(
            a.poll(Duration::from_millis(300)),
            b.poll(Duration::from_millis(300))
        );
        got_a.extend(ra.expect("a polls"));
        got_b.extend(rb.expect("b polls"));
    }
    assert_eq!(got_a.len() + got_b.len(), 40, "every record once");
    let owned_a: BTreeSet<i32> = a.assignment().iter().map(|tp| tp.partition).collect();
    let owned_b: BTreeSet<i32> = b.assignment().iter().map(|tp| tp.partition).collect();
    assert_eq!(
        partitions_of(&got_a),
        owned_a,
        "a reads only its partitions"
    );
    assert_eq!(
        partitions_of(&got_b),
        owned_b,
        "b reads only its partitions"
    );

    a.commit().await.expect("a commits");
    b.commit().await.expect("b commits");
    let committed = admin
        .list_group_offsets(&group, None)
        .await
        .expect("committed offsets");
    assert_eq!(committed.len(), 4, "{committed:?}");
    assert!(committed.values().all(|c| c.offset == 10), "{committed:?}");
    let description = admin.describe_group(&group).await.expect("described");
    assert_eq!(description.state, "Stable");
    assert_eq!(description.members.len(), 2);
    assert_eq!(description.protocol, "range");
    a.close().await.expect("a leaves");
    b.close().await.expect("b leaves");
    let description = admin.describe_group(&group).await.expect("described");
    assert_eq!(description.state, "Empty", "both left");

    // A new member starts at the committed offsets: only the new records.
    produce(&broker, &topic, 4, 3, "second").await;
    let mut c = group_consumer(&broker, &group, &topic).await;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 12 && Instant::now() < deadline {
        got.extend(c.poll(Duration::from_millis(300)).await.expect("c polls"));
    }
    assert_eq!(got.len(), 12, "{got:?}");
    assert!(got.iter().all(|r| r.offset >= 10), "resumed at the commits");
    assert!(got.iter().all(
        |r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).starts_with("second-")
    ));
    c.commit().await.expect("c commits");
    c.close().await.expect("c leaves");

    // As an admin: the group is empty, so its offsets can be set and deleted.
    let rewind: BTreeMap<TopicPartition, i64> = (0..4)
        .map(|p| (TopicPartition::new(&topic, p), 1))
        .collect();
    let results = admin
        .commit_group_offsets(&group, &rewind)
        .await
        .expect("admin commit");
    assert!(results.values().all(Result::is_ok), "{results:?}");
    let committed = admin
        .list_group_offsets(&group, Some(&[TopicPartition::new(&topic, 2)]))
        .await
        .expect("committed offsets");
    assert_eq!(committed[&TopicPartition::new(&topic, 2)].offset, 1);
    let deleted = admin
        .delete_group_offsets(&group, &[TopicPartition::new(&topic, 0)])
        .await
        .expect("offsets deleted");
    assert!(deleted.values().all(Result::is_ok), "{deleted:?}");
    let committed = admin
        .list_group_offsets(&group, None)
        .await
        .expect("committed offsets");
    assert_eq!(committed.len(), 3, "{committed:?}");

    let listed = admin.list_groups(&["Empty".into()]).await.expect("listed");
    assert!(listed.iter().any(|g| g.group_id == group), "{listed:?}");
    let results = admin.delete_groups(std::slice::from_ref(&group)).await;
    assert!(results[0].1.is_ok(), "{results:?}");
    let listed = admin.list_groups(&[]).await.expect("listed");
    assert!(!listed.iter().any(|g| g.group_id == group), "{listed:?}");
}

/// The columns of the data lines of a `runnel groups` table whose first column is `group`.
fn rows<'a>(stdout: &'a str, group: &str) -> Vec<Vec<&'a str>> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.first() == Some(&group))
        .collect()
}

#[test]
fn groups_list_describe_reset_offsets_and_delete() {
    let broker = Broker::start();
    let topic = unique_topic("cg");
    let group = unique_topic("cli-group");
    let created = broker.run(
        &["topics", "create", "--topic", &topic, "--partitions", "2"],
        "",
    );
    assert!(created.ok, "{}", created.stderr);
    let lines: Vec<String> = (0..10).map(|i| format!("k{i}:v{i}")).collect();
    let produced = broker.run(
        &["produce", "--topic", &topic, "--key-separator", ":"],
        &(lines.join("\n") + "\n"),
    );
    assert!(produced.ok, "{}", produced.stderr);

    let consume = |max: &str| {
        broker.run(
            &[
                "consume",
                "--topic",
                &topic,
                "--group",
                &group,
                "--from-beginning",
                "--max-messages",
                max,
                "--timeout-ms",
                "15000",
            ],
            "",
        )
    };
    let consumed = consume("10");
    assert!(consumed.ok, "{}", consumed.stderr);
    assert_eq!(consumed.stdout.lines().count(), 10, "{}", consumed.stdout);

    let listed = broker.run(&["groups", "list"], "");
    assert!(listed.ok, "{}", listed.stderr);
    assert!(
        listed.stdout.lines().any(|l| l == group),
        "{}",
        listed.stdout
    );
    let listed = broker.run(&["groups", "list", "--state", "empty"], "");
    assert!(listed.ok, "{}", listed.stderr);
    assert!(listed.stdout.starts_with("GROUP"), "{}", listed.stdout);
    assert_eq!(
        rows(&listed.stdout, &group),
        vec![vec![group.as_str(), "Empty"]]
    );
    let listed = broker.run(&["groups", "list", "--state", "Stable"], "");
    assert!(rows(&listed.stdout, &group).is_empty(), "{}", listed.stdout);

    // Everything was read and committed: lag 0 on both partitions, no members.
    let described = broker.run(&["groups", "describe", &group], "");
    assert!(described.ok, "{}", described.stderr);
    assert!(
        described.stderr.contains("has no active members"),
        "{}",
        described.stderr
    );
    assert!(
        described.stdout.contains("GROUP")
            && described.stdout.contains("CURRENT-OFFSET")
            && described.stdout.contains("LOG-END-OFFSET")
            && described.stdout.contains("LAG"),
        "{}",
        described.stdout
    );
    let table = rows(&described.stdout, &group);
    assert_eq!(table.len(), 2, "{}", described.stdout);
    let mut total = 0;
    for row in &table {
        assert_eq!(row[1], topic);
        assert_eq!(row[3], row[4], "committed at the end: {row:?}");
        assert_eq!(row[5], "0", "no lag: {row:?}");
        assert_eq!(&row[6..], ["-", "-", "-"], "no owner: {row:?}");
        total += row[4].parse::<i64>().expect("end offset");
    }
    assert_eq!(total, 10);
    let state = broker.run(&["groups", "describe", &group, "--state"], "");
    assert!(state.ok, "{}", state.stderr);
    assert!(
        state.stdout.contains("ASSIGNMENT-STRATEGY"),
        "{}",
        state.stdout
    );
    assert!(
        rows(&state.stdout, &group)[0].contains(&"Empty"),
        "{}",
        state.stdout
    );

    // A dry run shows the new offsets and changes nothing.
    let dry = broker.run(
        &[
            "groups",
            "reset-offsets",
            &group,
            "--topic",
            &topic,
            "--to-earliest",
            "--dry-run",
        ],
        "",
    );
    assert!(dry.ok, "{}", dry.stderr);
    assert!(dry.stdout.contains("NEW-OFFSET"), "{}", dry.stdout);
    assert!(
        rows(&dry.stdout, &group).iter().all(|r| r[3] == "0"),
        "{}",
        dry.stdout
    );
    let described = broker.run(&["groups", "describe", &group], "");
    assert!(rows(&described.stdout, &group).iter().all(|r| r[5] == "0"));

    // Partition 0 to offset 1 (others untouched), then everything to the earliest.
    let to_offset = broker.run(
        &[
            "groups",
            "reset-offsets",
            &group,
            "--topic",
            &format!("{topic}:0"),
            "--to-offset",
            "1",
        ],
        "",
    );
    assert!(to_offset.ok, "{}", to_offset.stderr);
    let reset_rows = rows(&to_offset.stdout, &group);
    assert_eq!(reset_rows.len(), 1, "{}", to_offset.stdout);
    let expected_p0 = if reset_rows[0][3] == "1" { 1 } else { 0 };
    let described = broker.run(&["groups", "describe", &group], "");
    let p0 = rows(&described.stdout, &group)
        .into_iter()
        .find(|r| r[2] == "0")
        .expect("partition 0 listed");
    assert_eq!(p0[3], expected_p0.to_string(), "{}", described.stdout);

    let future = broker.run(
        &[
            "groups",
            "reset-offsets",
            &group,
            "--topic",
            &topic,
            "--to-datetime",
            "2999-01-01T00:00:00Z",
        ],
        "",
    );
    assert!(future.ok, "{}", future.stderr);
    let described = broker.run(&["groups", "describe", &group], "");
    assert!(
        rows(&described.stdout, &group).iter().all(|r| r[5] == "0"),
        "after the last record means at the end: {}",
        described.stdout
    );

    let earliest = broker.run(
        &[
            "groups",
            "reset-offsets",
            &group,
            "--topic",
            &topic,
            "--to-earliest",
        ],
        "",
    );
    assert!(earliest.ok, "{}", earliest.stderr);
    let described = broker.run(&["groups", "describe", &group], "");
    let lag: i64 = rows(&described.stdout, &group)
        .iter()
        .map(|r| r[5].parse::<i64>().expect("lag"))
        .sum();
    assert_eq!(lag, 10, "{}", described.stdout);
    // The group reads everything again.
    let again = consume("10");
    assert!(again.ok, "{}", again.stderr);
    assert_eq!(again.stdout.lines().count(), 10, "{}", again.stdout);

    let deleted = broker.run(&["groups", "delete", &group], "");
    assert!(deleted.ok, "{}", deleted.stderr);
    assert!(
        deleted.stdout.contains(&format!(
            "Deletion of requested consumer groups ('{group}') was successful."
        )),
        "{}",
        deleted.stdout
    );
    let listed = broker.run(&["groups", "list"], "");
    assert!(
        !listed.stdout.lines().any(|l| l == group),
        "{}",
        listed.stdout
    );
}

#[test]
fn reset_offsets_and_delete_refuse_a_group_with_members() {
    let broker = Broker::start();
    let topic = unique_topic("busy");
    let group = unique_topic("busy-group");
    let created = broker.run(&["topics", "create", "--topic", &topic], "");
    assert!(created.ok, "{}", created.stderr);
    // A member that stays in the group for the length of the test.
    let mut member = Command::new(RUNNEL)
        .args([
            "consume",
            "--topic",
            &topic,
            "--group",
            &group,
            "--timeout-ms",
            "60000",
        ])
        .args(["--bootstrap-server", &broker.bootstrap])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runnel consume runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state = broker.run(&["groups", "describe", &group, "--state"], "");
        if state.ok
            && rows(&state.stdout, &group)
                .first()
                .is_some_and(|r| r.contains(&"Stable"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the group never became stable: {} {}",
            state.stdout,
            state.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let members = broker.run(&["groups", "describe", &group, "--members"], "");
    assert!(members.ok, "{}", members.stderr);
    let member_rows = rows(&members.stdout, &group);
    assert_eq!(member_rows.len(), 1, "{}", members.stdout);
    assert!(
        member_rows[0].contains(&"runnel-consume"),
        "{}",
        members.stdout
    );
    assert!(
        member_rows[0].last().is_some_and(|a| a.starts_with(&topic)),
        "the assignment is listed: {}",
        members.stdout
    );

    let refused = broker.run(
        &[
            "groups",
            "reset-offsets",
            &group,
            "--topic",
            &topic,
            "--to-earliest",
        ],
        "",
    );
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("can only be reset if the group")
            && refused.stderr.contains("Stable"),
        "{}",
        refused.stderr
    );
    let refused = broker.run(&["groups", "delete", &group], "");
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("active members"),
        "{}",
        refused.stderr
    );
    let _ = member.kill();
    let _ = member.wait();
}

/// Polls `a` and `b` until they are in one generation that splits `partitions` evenly.
async fn settle_split(a: &mut GroupConsumer, b: &mut GroupConsumer, partitions: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ra, rb) = tokio::join!(
            a.poll(Duration::from_millis(200)),
            b.poll(Duration::from_millis(200))
        );
        ra.expect("a polls");
        rb.expect("b polls");
        let (pa, pb) = (a.assignment(), b.assignment());
        let all: BTreeSet<TopicPartition> = pa.iter().chain(&pb).cloned().collect();
        if a.generation_id() >= 0
            && a.generation_id() == b.generation_id()
            && pa.len() == partitions / 2
            && pb.len() == partitions - partitions / 2
            && all.len() == partitions
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no settled split: a={pa:?} (gen {}), b={pb:?} (gen {})",
            a.generation_id(),
            b.generation_id()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_member_leaves_the_other_takes_over_from_its_commits() {
    let broker = Broker::start();
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    let topic = unique_topic("takeover");
    let group = unique_topic("takeover-group");
    admin
        .create_topic(NewTopic::new(&topic, 2, 1), false)
        .await
        .expect("topic created");
    let mut a = group_consumer(&broker, &group, &topic).await;
    let mut b = group_consumer(&broker, &group, &topic).await;
    settle_split(&mut a, &mut b, 2).await;
    let generation = a.generation_id();
    let pa = a.assignment()[0].partition;
    let pb = b.assignment()[0].partition;

    produce(&broker, &topic, 2, 5, "old").await;
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while (got_a.len() < 5 || got_b.len() < 5) && Instant::now() < deadline {
        let (ra, rb) = tokio::join!(
            a.poll(Duration::from_millis(300)),
            b.poll(Duration::from_millis(300))
        );
        got_a.extend(ra.expect("a polls"));
        got_b.extend(rb.expect("b polls"));
    }
    assert_eq!((got_a.len(), got_b.len()), (5, 5));
    // a commits what it read and leaves; b never commits.
    a.commit().await.expect("a commits");
    a.close().await.expect("a leaves");

    // b's heartbeat learns of the rebalance; b rejoins and owns both partitions.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while b.assignment().len() < 2 {
        got.extend(b.poll(Duration::from_millis(200)).await.expect("b polls"));
        assert!(
            Instant::now() < deadline,
            "b never took over: {:?}",
            b.assignment()
        );
    }
    assert!(b.generation_id() > generation);
    produce(&broker, &topic, 2, 2, "new").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 9 && Instant::now() < deadline {
        got.extend(b.poll(Duration::from_millis(300)).await.expect("b polls"));
    }
    let offsets = |p: i32| -> Vec<i64> {
        got.iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect()
    };
    // a's partition continues after a's commit; b's own, never committed, starts over
    // (eager rebalancing gives up positions: records after the last commit come again).
    assert_eq!(offsets(pa), vec![5, 6], "{got:?}");
    assert_eq!(offsets(pb), (0..7).collect::<Vec<i64>>(), "{got:?}");
    b.close().await.expect("b leaves");
}

/// Polls until `want` records arrived, riding through retriable errors (a broker restart).
async fn poll_until(c: &mut GroupConsumer, want: usize, limit: Duration) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        match c.poll(Duration::from_millis(300)).await {
            Ok(records) => got.extend(records),
            Err(e) if e.is_retriable() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("poll failed: {e}"),
        }
    }
    got
}

/// The coordinator restarts: the member finds it again, and the group's commits survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_rides_through_a_coordinator_restart() {
    if std::env::var("RUNNEL_TEST_BOOTSTRAP").is_ok() {
        return; // An external broker cannot be restarted from here.
    }
    let data = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", support::free_port());
    let mut broker = Broker::start_at(&listen, data.path());
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    let topic = unique_topic("restart");
    let group = unique_topic("restart-group");
    admin
        .create_topic(NewTopic::new(&topic, 1, 1), false)
        .await
        .expect("topic created");
    produce(&broker, &topic, 1, 10, "before").await;
    let mut c = group_consumer(&broker, &group, &topic).await;
    let got = poll_until(&mut c, 10, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 10);
    c.commit().await.expect("commits");
    let generation = c.generation_id();

    let data_dir = data.path().to_path_buf();
    let listen_again = listen.clone();
    let broker = tokio::task::spawn_blocking(move || {
        broker.stop();
        std::thread::sleep(Duration::from_millis(500));
        Broker::start_at(&listen_again, &data_dir)
    })
    .await
    .expect("restarted");
    produce(&broker, &topic, 1, 5, "after").await;
    let got = poll_until(&mut c, 5, Duration::from_secs(40)).await;
    let offsets: BTreeSet<i64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        (10..15).collect::<BTreeSet<i64>>(),
        "continues after the commit: {got:?}"
    );
    assert!(c.generation_id() >= generation);
    c.commit().await.expect("commits after the restart");
    c.close().await.expect("leaves");
    let committed = admin_after_restart(&broker, &group).await;
    assert_eq!(committed, vec![15]);
}

async fn admin_after_restart(broker: &Broker, group: &str) -> Vec<i64> {
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    admin
        .list_group_offsets(group, None)
        .await
        .expect("committed offsets")
        .into_values()
        .map(|c| c.offset)
        .collect()
}

/// A member that stops polling for longer than max.poll.interval.ms leaves the group, so
/// the others take its partitions; when it polls again it rejoins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_polling_gives_up_its_partitions() {
    let broker = Broker::start();
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    let topic = unique_topic("stuck");
    let group = unique_topic("stuck-group");
    admin
        .create_topic(NewTopic::new(&topic, 2, 1), false)
        .await
        .expect("topic created");
    let mut a = group_consumer(&broker, &group, &topic).await;
    let mut b = group_consumer(&broker, &group, &topic).await;
    settle_split(&mut a, &mut b, 2).await;
    let a_id = a.member_id();

    // a's max.poll.interval.ms is 20 s (see group_consumer): b keeps polling meanwhile.
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.assignment().len() < 2 {
        b.poll(Duration::from_millis(300)).await.expect("b polls");
        assert!(
            Instant::now() < deadline,
            "a never left: b has {:?}",
            b.assignment()
        );
    }
    let description = admin.describe_group(&group).await.expect("described");
    assert_eq!(description.members.len(), 1, "{description:?}");
    assert_ne!(description.members[0].member_id, a_id);

    // a comes back as a new member and the partitions are split again.
    settle_split(&mut a, &mut b, 2).await;
    assert_ne!(
        a.member_id(),
        a_id,
        "a dynamic member that left rejoins anew"
    );
}

/// The leader notices added partitions (at metadata.max.age.ms) and rebalances them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_partitions_are_assigned_after_a_rebalance() {
    let broker = Broker::start();
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    let topic = unique_topic("grow");
    let group = unique_topic("grow-group");
    admin
        .create_topic(NewTopic::new(&topic, 1, 1), false)
        .await
        .expect("topic created");
    let described = admin
        .describe_topics(std::slice::from_ref(&topic))
        .await
        .expect("described");
    assert_ne!(
        described[0].topic_id, 0,
        "Metadata carries topic ids (KIP-848 needs them)"
    );
    let mut consumer = ConsumerConfig::new(ClientConfig::new(&broker.bootstrap));
    consumer.auto_offset_reset = OffsetReset::Earliest;
    consumer.client.metadata_max_age_ms = 500;
    let mut config = GroupConsumerConfig::new(consumer, group.as_str());
    config.session_timeout_ms = 6_000;
    config.heartbeat_interval_ms = 300;
    let mut c = GroupConsumer::new(config).await.expect("consumer connects");
    c.subscribe(&[&topic]).expect("subscribes");
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.assignment().len() != 1 {
        c.poll(Duration::from_millis(200)).await.expect("polls");
        assert!(Instant::now() < deadline, "never joined");
    }
    admin
        .create_partitions(&topic, 3, false)
        .await
        .expect("partitions added");
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.assignment().len() != 3 {
        c.poll(Duration::from_millis(200)).await.expect("polls");
        assert!(
            Instant::now() < deadline,
            "added partitions never assigned: {:?}",
            c.assignment()
        );
    }
    c.close().await.expect("leaves");
}

/// With auto commit, positions are committed at the interval and on close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commit_commits_positions_at_the_interval_and_on_close() {
    let broker = Broker::start();
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    let topic = unique_topic("auto");
    let group = unique_topic("auto-group");
    admin
        .create_topic(NewTopic::new(&topic, 1, 1), false)
        .await
        .expect("topic created");
    produce(&broker, &topic, 1, 6, "x").await;
    let mut consumer = ConsumerConfig::new(ClientConfig::new(&broker.bootstrap));
    consumer.auto_offset_reset = OffsetReset::Earliest;
    let mut config = GroupConsumerConfig::new(consumer, group.as_str());
    config.session_timeout_ms = 6_000;
    config.heartbeat_interval_ms = 300;
    config.auto_commit_interval_ms = 200;
    let mut c = GroupConsumer::new(config).await.expect("consumer connects");
    c.subscribe(&[&topic]).expect("subscribes");
    let got = poll_until(&mut c, 6, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 6);
    let tp = TopicPartition::new(&topic, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        c.poll(Duration::from_millis(100)).await.expect("polls");
        let committed = admin
            .list_group_offsets(&group, None)
            .await
            .expect("committed offsets");
        if committed.get(&tp).map(|o| o.offset) == Some(6) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never auto-committed: {committed:?}"
        );
    }
    produce(&broker, &topic, 1, 2, "y").await;
    let got = poll_until(&mut c, 2, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 2);
    // No interval passes before close: close commits.
    c.close().await.expect("leaves");
    let committed = admin
        .list_group_offsets(&group, None)
        .await
        .expect("committed offsets");
    assert_eq!(committed[&tp].offset, 8);
}

/// A static member that restarts within the session timeout takes its partitions back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_static_member_gets_its_partitions_back() {
    let broker = Broker::start();
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    let topic = unique_topic("static");
    let group = unique_topic("static-group");
    admin
        .create_topic(NewTopic::new(&topic, 2, 1), false)
        .await
        .expect("topic created");
    let static_consumer = |instance: &str| {
        let mut consumer = ConsumerConfig::new(ClientConfig::new(&broker.bootstrap));
        consumer.auto_offset_reset = OffsetReset::Earliest;
        let mut config = GroupConsumerConfig::new(consumer, group.as_str());
        config.group_instance_id = Some(instance.to_string());
        config.session_timeout_ms = 30_000;
        config.heartbeat_interval_ms = 300;
        config.enable_auto_commit = false;
        let topic = topic.clone();
        async move {
            let mut c = GroupConsumer::new(config).await.expect("consumer connects");
            c.subscribe(&[&topic]).expect("subscribes");
            c
        }
    };
    let mut a = static_consumer("instance-a").await;
    let mut b = static_consumer("instance-b").await;
    settle_split(&mut a, &mut b, 2).await;
    let b_partitions = b.assignment();
    // A static member does not leave on close: the group keeps its place.
    b.close().await.expect("b closes");
    drop(b);
    let mut b = static_consumer("instance-b").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.assignment().is_empty() {
        let (ra, rb) = tokio::join!(
            a.poll(Duration::from_millis(200)),
            b.poll(Duration::from_millis(200))
        );
        ra.expect("a polls");
        rb.expect("b polls");
        assert!(Instant::now() < deadline, "b never got partitions back");
    }
    assert_eq!(b.assignment(), b_partitions);
    let description = admin.describe_group(&group).await.expect("described");
    assert_eq!(description.members.len(), 2, "{description:?}");
}

/// KIP-848 (`group.protocol=consumer`): the coordinator assigns; two members split a
/// topic, commit with their member epochs, and a new member resumes from the commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_members_split_commit_and_resume() {
    let broker = Broker::start();
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    let topic = unique_topic("kip848");
    let group = unique_topic("kip848-group");
    admin
        .create_topic(NewTopic::new(&topic, 4, 1), false)
        .await
        .expect("topic created");
    let member = |auto_commit: bool| {
        let mut consumer = ConsumerConfig::new(ClientConfig::new(&broker.bootstrap));
        consumer.auto_offset_reset = OffsetReset::Earliest;
        consumer.fetch_max_wait_ms = 100;
        let mut config = GroupConsumerConfig::new(consumer, group.as_str());
        config.group_protocol = GroupProtocol::Consumer;
        config.enable_auto_commit = auto_commit;
        let topic = topic.clone();
        async move {
            let mut c = GroupConsumer::new(config).await.expect("consumer connects");
            c.subscribe(&[&topic]).expect("subscribes");
            c
        }
    };
    let mut a = member(false).await;
    let mut b = member(false).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ra, rb) = tokio::join!(
            a.poll(Duration::from_millis(200)),
            b.poll(Duration::from_millis(200))
        );
        ra.expect("a polls");
        rb.expect("b polls");
        let (pa, pb) = (a.assignment(), b.assignment());
        let all: BTreeSet<TopicPartition> = pa.iter().chain(&pb).cloned().collect();
        if pa.len() == 2 && pb.len() == 2 && all.len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no split: a={pa:?} (epoch {}), b={pb:?} (epoch {})",
            a.generation_id(),
            b.generation_id()
        );
    }
    assert!(a.generation_id() > 0 && b.generation_id() > 0);
    let listed = admin.list_groups(&[]).await.expect("listed");
    assert!(listed.iter().any(|g| g.group_id == group), "{listed:?}");
    // Described through ConsumerGroupDescribe: members with what they own.
    let description = admin.describe_group(&group).await.expect("described");
    assert_eq!(description.members.len(), 2, "{description:?}");
    assert!(
        !description.protocol.is_empty(),
        "the server assignor is named"
    );
    let owned: BTreeSet<TopicPartition> = description
        .members
        .iter()
        .flat_map(|m| m.assignment.iter().cloned())
        .collect();
    assert_eq!(owned.len(), 4, "{description:?}");

    produce(&broker, &topic, 4, 5, "first").await;
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while got_a.len() + got_b.len() < 20 && Instant::now() < deadline {
        let (ra, rb) = tokio::join!(
            a.poll(Duration::from_millis(300)),
            b.poll(Duration::from_millis(300))
        );
        got_a.extend(ra.expect("a polls"));
        got_b.extend(rb.expect("b polls"));
    }
    assert_eq!(got_a.len() + got_b.len(), 20);
    a.commit().await.expect("a commits with its member epoch");
    b.commit().await.expect("b commits with its member epoch");
    a.close().await.expect("a leaves");
    b.close().await.expect("b leaves");

    produce(&broker, &topic, 4, 2, "second").await;
    let mut c = member(true).await;
    let got = poll_until(&mut c, 8, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 8, "{got:?}");
    assert!(
        got.iter().all(|r| r.offset >= 5),
        "resumed at the commits: {got:?}"
    );
    c.close().await.expect("c commits and leaves");
    let committed = admin
        .list_group_offsets(&group, None)
        .await
        .expect("committed offsets");
    assert!(
        committed.len() == 4 && committed.values().all(|o| o.offset == 7),
        "{committed:?}"
    );
}

/// KIP-848: a member that owns everything gives half up when another joins (revoking
/// before the other gets them, so no partition is owned twice), and takes it all back
/// when the other leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_partitions_move_without_being_owned_twice() {
    let broker = Broker::start();
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    let topic = unique_topic("move");
    let group = unique_topic("move-group");
    admin
        .create_topic(NewTopic::new(&topic, 4, 1), false)
        .await
        .expect("topic created");
    let member = || {
        let mut consumer = ConsumerConfig::new(ClientConfig::new(&broker.bootstrap));
        consumer.auto_offset_reset = OffsetReset::Earliest;
        consumer.fetch_max_wait_ms = 100;
        let mut config = GroupConsumerConfig::new(consumer, group.as_str());
        config.group_protocol = GroupProtocol::Consumer;
        let topic = topic.clone();
        async move {
            let mut c = GroupConsumer::new(config).await.expect("consumer connects");
            c.subscribe(&[&topic]).expect("subscribes");
            c
        }
    };
    let mut a = member().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.assignment().len() < 4 {
        a.poll(Duration::from_millis(200)).await.expect("a polls");
        assert!(Instant::now() < deadline, "a never got everything");
    }
    let mut b = member().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ra, rb) = tokio::join!(
            a.poll(Duration::from_millis(200)),
            b.poll(Duration::from_millis(200))
        );
        ra.expect("a polls");
        rb.expect("b polls");
        let (pa, pb) = (a.assignment(), b.assignment());
        assert!(
            pa.iter().all(|tp| !pb.contains(tp)),
            "owned twice: a={pa:?} b={pb:?}"
        );
        if pa.len() == 2 && pb.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no split: a={pa:?} b={pb:?}");
    }
    a.close().await.expect("a leaves");
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.assignment().len() < 4 {
        b.poll(Duration::from_millis(200)).await.expect("b polls");
        assert!(
            Instant::now() < deadline,
            "b never took over: {:?}",
            b.assignment()
        );
    }
    b.close().await.expect("b leaves");
}

/// KIP-848: a member that stops polling for longer than max.poll.interval.ms leaves, and
/// rejoins when it polls again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_member_that_stops_polling_leaves_and_returns() {
    let broker = Broker::start();
    let admin = Admin::connect(ClientConfig::new(&broker.bootstrap))
        .await
        .expect("admin connects");
    let topic = unique_topic("pause");
    let group = unique_topic("pause-group");
    admin
        .create_topic(NewTopic::new(&topic, 2, 1), false)
        .await
        .expect("topic created");
    let member = || {
        let mut consumer = ConsumerConfig::new(ClientConfig::new(&broker.bootstrap));
        consumer.fetch_max_wait_ms = 100;
        let mut config = GroupConsumerConfig::new(consumer, group.as_str());
        config.group_protocol = GroupProtocol::Consumer;
        config.max_poll_interval_ms = 3_000;
        let topic = topic.clone();
        async move {
            let mut c = GroupConsumer::new(config).await.expect("consumer connects");
            c.subscribe(&[&topic]).expect("subscribes");
            c
        }
    };
    let (mut a, mut b) = (member().await, member().await);
    let split = |a: &GroupConsumer, b: &GroupConsumer| {
        a.assignment().len() == 1 && b.assignment().len() == 1
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !split(&a, &b) {
        let (ra, rb) = tokio::join!(
            a.poll(Duration::from_millis(200)),
            b.poll(Duration::from_millis(200))
        );
        ra.expect("a polls");
        rb.expect("b polls");
        assert!(
            Instant::now() < deadline,
            "no split: {:?} {:?}",
            a.assignment(),
            b.assignment()
        );
    }
    // a pauses; b alone keeps polling and gets both partitions.
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.assignment().len() < 2 {
        b.poll(Duration::from_millis(200)).await.expect("b polls");
        assert!(
            Instant::now() < deadline,
            "a never left: b has {:?}",
            b.assignment()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !split(&a, &b) {
        let (ra, rb) = tokio::join!(
            a.poll(Duration::from_millis(200)),
            b.poll(Duration::from_millis(200))
        );
        ra.expect("a polls");
        rb.expect("b polls");
        assert!(
            Instant::now() < deadline,
            "a never came back: a={:?} b={:?}",
            a.assignment(),
            b.assignment()
        );
    }
}
