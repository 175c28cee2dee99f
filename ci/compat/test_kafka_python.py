"""kafka-python (pure Python, its own protocol code): producer, consumer and admin client,
with the API versions negotiated against the broker (never pinned)."""

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from conftest import OP_TIMEOUT, create_topic, unique, wait_until
from kafka_wire import murmur2_partition

PARTITIONS = 3
BASE_TS = 1_700_000_000_000
TIMEOUT_MS = int(OP_TIMEOUT * 1000)


def records() -> list[dict]:
    binary = bytes(range(256))
    recs = [
        dict(key=b"alpha", value=b"one"),
        dict(key=b"beta", value=b"two", headers=[("h", b"1"), ("h", b"2"), ("bin", binary)]),
        dict(key=b"gamma", value=None),  # tombstone
        dict(key=b"delta", value=b""),
        dict(key=binary, value=binary * 100),
    ]
    recs += [dict(key=b"key-%d" % (i % 5), value=b"value-%d" % i) for i in range(30)]
    for i, r in enumerate(recs):
        r["timestamp_ms"] = BASE_TS + i * 7
    return recs


@pytest.mark.parametrize("compression", [None, "gzip"], ids=["none", "gzip"])
def test_round_trip(broker, compression):
    """KafkaProducer (acks=all) then KafkaConsumer with assign + seek_to_beginning: keys, values,
    tombstones, headers and timestamps come back unchanged, keyed records on the murmur2 partition
    (kafka-python's default partitioner is Java's), at the offsets the producer was told.
    Headers need record batch v2, which kafka-python only writes when the versions it negotiated
    through ApiVersions say the broker is 0.11 or newer: the negotiation is checked by using them."""
    topic = unique(f"kp-{compression or 'none'}")
    create_topic(broker, topic, PARTITIONS)
    recs = records()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type=compression,
                             linger_ms=5, request_timeout_ms=TIMEOUT_MS, max_block_ms=TIMEOUT_MS)
    try:
        futures = [producer.send(topic, key=r["key"], value=r["value"], headers=r.get("headers"),
                                 timestamp_ms=r["timestamp_ms"]) for r in recs]
        producer.flush(timeout=OP_TIMEOUT)
        metas = [f.get(timeout=OP_TIMEOUT) for f in futures]
    finally:
        producer.close(timeout=OP_TIMEOUT)

    next_offset = [0] * PARTITIONS
    want = []
    for r, meta in zip(recs, metas):
        p = murmur2_partition(r["key"], PARTITIONS)
        assert (meta.topic, meta.partition, meta.offset) == (topic, p, next_offset[p])
        want.append((p, next_offset[p], r["key"], r["value"], r.get("headers") or [], 0, r["timestamp_ms"]))
        next_offset[p] += 1
    want.sort()

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=TIMEOUT_MS)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got = []
        deadline = time.monotonic() + OP_TIMEOUT
        while len(got) < len(recs) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                got.extend(batch)
        assert len(got) == len(recs), f"read {len(got)} of {len(recs)}"
        assert consumer.poll(timeout_ms=500) == {}
    finally:
        consumer.close()
    seen = sorted((m.partition, m.offset, m.key, m.value, list(m.headers), m.timestamp_type, m.timestamp) for m in got)
    assert seen == want


def test_admin_create_delete(broker):
    """KafkaAdminClient: create_topics (visible in list_topics and describe_topics), a second
    create fails with TopicAlreadyExists, delete_topics removes it, a second delete fails with
    UnknownTopicOrPartition."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS)
    topic = unique("kp-admin")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)], timeout_ms=TIMEOUT_MS)
        wait_until(lambda: topic in admin.list_topics(), OP_TIMEOUT, f"{topic} in list_topics")
        (desc,) = admin.describe_topics([topic])
        assert (desc["name"], desc["error_code"]) == (topic, 0)
        assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1, 2, 3]
        assert all(p["error_code"] == 0 and p["leader_id"] >= 0 for p in desc["partitions"])

        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], timeout_ms=TIMEOUT_MS,
                                raise_errors=True)

        admin.delete_topics([topic], timeout_ms=TIMEOUT_MS)
        wait_until(lambda: topic not in admin.list_topics(), OP_TIMEOUT, f"{topic} gone from list_topics")
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_topics([topic], timeout_ms=TIMEOUT_MS, raise_errors=True)
    finally:
        admin.close()
