"""Broker restart: what was acknowledged before a clean stop is there after a start on the same data dir."""

from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource

from conftest import (
    OP_TIMEOUT,
    admin_client,
    as_tuple,
    consume_exactly,
    consumer,
    create_topic,
    produce_all,
    producer,
    topic_ready,
    unique,
    wait_until,
)

PARTITIONS = 2
BASE_TS = 1_700_000_000_000


def test_restart_keeps_everything(broker):
    """Produce (acks=all, gzip and uncompressed, keys, headers, tombstones), stop the broker with
    its stop signal, start it again on the same data dir and port: the same records come back
    at the same offsets, topic configs and partition counts are kept, watermarks are unchanged,
    and the next record gets the next offset."""
    topic = unique("restart")
    create_topic(broker, topic, PARTITIONS, {"retention.ms": "604800001"})
    msgs = []
    for i in range(60):
        m = dict(topic=topic, partition=i % PARTITIONS, key=b"k%d" % i, value=b"value %d " % i + b"z" * (i * 11),
                 timestamp=BASE_TS + i)
        if i % 10 == 3:
            m["value"] = None
        if i % 4 == 1:
            m["headers"] = [("n", b"%d" % i), ("n", b"again"), ("raw", bytes([i, 0, 255]))]
        msgs.append(m)
    produce_all(producer(broker, acks="all", **{"compression.type": "gzip"}), msgs[:30])
    produce_all(producer(broker, acks="all"), msgs[30:])
    before = [as_tuple(m) for m in consume_exactly(broker, topic, list(range(PARTITIONS)), len(msgs))]
    assert [t[2] for t in before] == list(range(30)) * PARTITIONS

    code = broker.stop()
    assert code == 0, f"the broker exited with code {code} on a clean stop"
    broker.start()

    admin = admin_client(broker)
    wait_until(lambda: topic_ready(admin, topic, PARTITIONS), OP_TIMEOUT, f"{topic} back in metadata after restart")
    after = [as_tuple(m) for m in consume_exactly(broker, topic, list(range(PARTITIONS)), len(msgs))]
    assert after == before

    c = consumer(broker)
    try:
        for p in range(PARTITIONS):
            assert c.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT, cached=False) == (0, 30)
    finally:
        c.close()

    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res], request_timeout=OP_TIMEOUT)[res].result(timeout=OP_TIMEOUT)
    assert configs["retention.ms"].value == "604800001"

    (d,) = produce_all(producer(broker, acks="all"), [dict(topic=topic, partition=1, value=b"after restart")])
    assert (d.partition(), d.offset()) == (1, 30)
