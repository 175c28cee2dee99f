"""confluent-kafka AdminClient: topic administration and the error codes Kafka gives."""

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)

from conftest import (
    OP_TIMEOUT,
    admin_client,
    consume_exactly,
    consumer,
    create_topic,
    error_code,
    produce_all,
    producer,
    topic_ready,
    unique,
    wait_until,
)
import kafka_wire as wire

TOPIC = ConfigResource.Type.TOPIC


def describe(admin, topic: str) -> dict:
    res = ConfigResource(TOPIC, topic)
    return admin.describe_configs([res], request_timeout=OP_TIMEOUT)[res].result(timeout=OP_TIMEOUT)


def topic_exists(broker, topic: str) -> bool:
    """Whether Metadata for this one topic (auto-creation off) knows it."""
    admin = admin_client(broker, **{"allow.auto.create.topics": False})
    t = admin.list_topics(topic=topic, timeout=OP_TIMEOUT).topics.get(topic)
    if t is None or (t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        return False
    assert t.error is None, t.error
    return True


def test_list_all_topics(broker):
    """Metadata for all topics (a null topic list) lists every topic with its partitions and the one broker."""
    admin = admin_client(broker)
    a, b = unique("adm-list"), unique("adm-list")
    create_topic(broker, a, 1)
    create_topic(broker, b, 4)
    md = admin.list_topics(timeout=OP_TIMEOUT)
    assert len(md.brokers) == 1
    assert sorted(md.topics[a].partitions) == [0]
    assert sorted(md.topics[b].partitions) == [0, 1, 2, 3]
    assert md.topics[a].error is None and md.topics[b].error is None


def test_create_with_configs_and_describe(broker):
    """CreateTopics with configs; Metadata shows every partition led by the one broker with
    replicas=isr=[it]; DescribeConfigs returns the configs as DYNAMIC_TOPIC_CONFIG and the
    untouched ones as defaults."""
    admin = admin_client(broker)
    topic = unique("adm-create")
    create_topic(broker, topic, 3, {"cleanup.policy": "compact", "retention.ms": "86400000"})

    md = admin.list_topics(topic=topic, timeout=OP_TIMEOUT)
    assert len(md.brokers) == 1
    (broker_id,) = md.brokers
    t = md.topics[topic]
    assert sorted(t.partitions) == [0, 1, 2]
    for p in t.partitions.values():
        assert (p.leader, p.replicas, p.isrs, p.error) == (broker_id, [broker_id], [broker_id], None)

    configs = describe(admin, topic)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["retention.ms"].value == "86400000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["segment.bytes"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert int(configs["segment.bytes"].value) > 0


def test_create_validate_only(broker):
    """CreateTopics with validate_only succeeds for a valid topic and creates nothing."""
    admin = admin_client(broker)
    topic = unique("adm-validate")
    fs = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)], validate_only=True,
                             operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    assert fs[topic].result(timeout=OP_TIMEOUT) is None
    assert not topic_exists(broker, topic)
    # And a real create of the same name still works afterwards.
    create_topic(broker, topic, 2)


@pytest.mark.parametrize("name", ["bad name!", "a/b", "..", "x" * 250], ids=["space-bang", "slash", "dotdot", "too-long"])
def test_create_bad_name(broker, name):
    """CreateTopics with an illegal topic name fails with INVALID_TOPIC_EXCEPTION (17)."""
    admin = admin_client(broker)
    fs = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                             operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[name].result(timeout=OP_TIMEOUT)
    assert error_code(e.value) == KafkaError.TOPIC_EXCEPTION, e.value


def test_create_existing(broker):
    """Creating a topic that exists fails with TOPIC_ALREADY_EXISTS (36)."""
    admin = admin_client(broker)
    topic = unique("adm-exists")
    create_topic(broker, topic, 1)
    fs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                             operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(timeout=OP_TIMEOUT)
    assert error_code(e.value) == KafkaError.TOPIC_ALREADY_EXISTS, e.value


def test_incremental_alter_configs(broker):
    """IncrementalAlterConfigs SET changes a topic config, DELETE reverts it to the default."""
    admin = admin_client(broker)
    topic = unique("adm-alter")
    create_topic(broker, topic, 1, {"cleanup.policy": "compact"})
    res = ConfigResource(TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    admin.incremental_alter_configs([res], request_timeout=OP_TIMEOUT)[res].result(timeout=OP_TIMEOUT)

    def altered():
        c = describe(admin, topic)
        return c["retention.ms"].value == "3600000" and c["cleanup.policy"].value == "delete" and c

    configs = wait_until(altered, OP_TIMEOUT, "the altered configs to show")
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_alter_configs_bad_value(broker):
    """IncrementalAlterConfigs with a value of the wrong type fails with INVALID_CONFIG (40)."""
    admin = admin_client(broker)
    topic = unique("adm-badcfg")
    create_topic(broker, topic, 1)
    res = ConfigResource(TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "not-a-number", incremental_operation=AlterConfigOpType.SET),
    ])
    with pytest.raises(KafkaException) as e:
        admin.incremental_alter_configs([res], request_timeout=OP_TIMEOUT)[res].result(timeout=OP_TIMEOUT)
    assert error_code(e.value) == KafkaError.INVALID_CONFIG, e.value


def test_create_partitions(broker):
    """CreatePartitions grows a topic; the new partitions are led and accept records."""
    admin = admin_client(broker)
    topic = unique("adm-grow")
    create_topic(broker, topic, 2)
    fs = admin.create_partitions([NewPartitions(topic, 5)], operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    fs[topic].result(timeout=OP_TIMEOUT)
    wait_until(lambda: topic_ready(admin, topic, 5), OP_TIMEOUT, f"{topic} to have 5 partitions")
    produce_all(producer(broker), [dict(topic=topic, value=b"in p4", partition=4)])
    (m,) = consume_exactly(broker, topic, [4], 1)
    assert (m.partition(), m.offset(), m.value()) == (4, 0, b"in p4")
    # Shrinking is refused with INVALID_PARTITIONS (37).
    fs = admin.create_partitions([NewPartitions(topic, 3)], operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(timeout=OP_TIMEOUT)
    assert error_code(e.value) == KafkaError.INVALID_PARTITIONS, e.value


def test_delete_topics(broker):
    """DeleteTopics removes a topic from Metadata; deleting it again gives UNKNOWN_TOPIC_OR_PARTITION (3)."""
    admin = admin_client(broker)
    topic = unique("adm-delete")
    create_topic(broker, topic, 2)
    produce_all(producer(broker), [dict(topic=topic, value=b"x", partition=0)])
    admin.delete_topics([topic], operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)[topic].result(timeout=OP_TIMEOUT)
    wait_until(lambda: not topic_exists(broker, topic), OP_TIMEOUT, f"{topic} to leave metadata")
    fs = admin.delete_topics([topic], operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(timeout=OP_TIMEOUT)
    assert error_code(e.value) == KafkaError.UNKNOWN_TOPIC_OR_PART, e.value


def test_delete_records(broker):
    """DeleteRecords moves the log start offset: low watermark 4 of 10, and a read from the
    beginning starts at offset 4."""
    admin = admin_client(broker)
    topic = unique("adm-delrec")
    create_topic(broker, topic, 1)
    produce_all(producer(broker), [dict(topic=topic, value=b"r%d" % i, partition=0) for i in range(10)])
    fs = admin.delete_records([TopicPartition(topic, 0, 4)], request_timeout=OP_TIMEOUT, operation_timeout=OP_TIMEOUT)
    deleted = list(fs.values())[0].result(timeout=OP_TIMEOUT)
    assert deleted.low_watermark == 4
    c = consumer(broker)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=OP_TIMEOUT) == (4, 10)
    finally:
        c.close()
    got = consume_exactly(broker, topic, [0], 6)
    assert [(m.offset(), m.value()) for m in got] == [(i, b"r%d" % i) for i in range(4, 10)]


def test_unknown_topic_describe_configs(broker):
    """DescribeConfigs of a topic that does not exist: UNKNOWN_TOPIC_OR_PARTITION (3)."""
    admin = admin_client(broker)
    with pytest.raises(KafkaException) as e:
        describe(admin, unique("adm-nosuch"))
    assert error_code(e.value) == KafkaError.UNKNOWN_TOPIC_OR_PART, e.value


def test_unknown_topic_create_partitions(broker):
    """CreatePartitions of a topic that does not exist: UNKNOWN_TOPIC_OR_PARTITION (3)."""
    admin = admin_client(broker)
    topic = unique("adm-nosuch")
    fs = admin.create_partitions([NewPartitions(topic, 2)], operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(timeout=OP_TIMEOUT)
    assert error_code(e.value) == KafkaError.UNKNOWN_TOPIC_OR_PART, e.value


def test_unknown_topic_metadata(broker):
    """Metadata for an unknown topic without auto-creation: the topic comes back with
    UNKNOWN_TOPIC_OR_PARTITION (3), through librdkafka and on the wire (Metadata v4)."""
    topic = unique("adm-nosuch")
    admin = admin_client(broker, **{"allow.auto.create.topics": False})
    t = admin.list_topics(topic=topic, timeout=OP_TIMEOUT).topics[topic]
    assert t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, t.error

    with wire.Conn(broker.host, broker.port) as conn:
        md = wire.metadata_v4(conn, [topic], allow_auto_create=False)
    assert md["topics"] == {topic: (wire.ERR_UNKNOWN_TOPIC_OR_PARTITION, [])}
    assert not topic_exists(broker, topic)


def test_unknown_topic_produce(broker):
    """Producing to an unknown topic with auto-creation off fails: librdkafka reports
    UNKNOWN_TOPIC_OR_PART, and a raw Produce v3 gets UNKNOWN_TOPIC_OR_PARTITION (3) for the partition."""
    topic = unique("adm-nosuch")
    p = producer(broker, **{"allow.auto.create.topics": False, "topic.metadata.propagation.max.ms": 5000,
                            "message.timeout.ms": 30000})
    errors = []
    p.produce(topic, value=b"nowhere", on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(OP_TIMEOUT) == 0
    assert len(errors) == 1 and errors[0] is not None, errors
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), errors[0]

    batch = wire.record_batch([wire.Rec(b"k", b"v")], base_timestamp=1_700_000_000_000)
    with wire.Conn(broker.host, broker.port) as conn:
        assert wire.produce_v3(conn, topic, 0, batch, acks=1)[:3] == (topic, 0, wire.ERR_UNKNOWN_TOPIC_OR_PARTITION)
    assert not topic_exists(broker, topic)
