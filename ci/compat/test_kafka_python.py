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


def test_group_of_two_commits_and_resumes(broker):
    """Two KafkaConsumers in one group split four partitions; each commits what it read; after
    both close, two new members of the group resume exactly after the committed offsets, so the
    second half is read once and the first half never again. The group's committed offsets are
    what kafka-python's admin client reports."""
    topic = unique("kp-group")
    group = unique("kp-g")
    create_topic(broker, topic, 4)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", request_timeout_ms=TIMEOUT_MS,
                             max_block_ms=TIMEOUT_MS)
    try:
        for i in range(80):
            producer.send(topic, value=b"first-%d" % i, partition=i % 4)
        producer.flush(timeout=OP_TIMEOUT)
    finally:
        producer.close()

    def member():
        return KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=10000, heartbeat_interval_ms=500,
                             request_timeout_ms=TIMEOUT_MS + 5000, consumer_timeout_ms=200)

    def drain(members, want):
        """Each member polls and commits in its own thread, as applications run them: kafka-python
        3.0's leader finishes its join inside poll(), and a sibling polled from the same thread
        in between can keep the group rebalancing."""
        import threading

        got, lock, stop = [], threading.Lock(), threading.Event()

        def run(c):
            while not stop.is_set():
                for batch in c.poll(timeout_ms=100).values():
                    with lock:
                        got.extend(m.value for m in batch)
                    c.commit()

        threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in members]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(got) >= want and all(len(c.assignment()) == 2 for c in members),
                       OP_TIMEOUT, f"{want} records across the group")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=OP_TIMEOUT)
        return got

    first = [member(), member()]
    try:
        got = drain(first, 80)
        assert sorted(got) == sorted(b"first-%d" % i for i in range(80))
        owned = [c.assignment() for c in first]
        assert not (owned[0] & owned[1]) and len(owned[0] | owned[1]) == 4
    finally:
        for c in first:
            c.close()

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS)
    try:
        offsets = admin.list_group_offsets([group])[group]  # OffsetFetch v8, multi-group
        assert {tp.partition: om.offset for tp, om in offsets.items()} == {0: 20, 1: 20, 2: 20, 3: 20}
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", request_timeout_ms=TIMEOUT_MS,
                             max_block_ms=TIMEOUT_MS)
    try:
        for i in range(40):
            producer.send(topic, value=b"second-%d" % i, partition=i % 4)
        producer.flush(timeout=OP_TIMEOUT)
    finally:
        producer.close()
    second = [member(), member()]
    try:
        got = drain(second, 40)
        time.sleep(1)
        for c in second:
            for batch in c.poll(timeout_ms=500).values():
                got.extend(m.value for m in batch)
        assert sorted(got) == sorted(b"second-%d" % i for i in range(40)), "resumed after the commits, once"
    finally:
        for c in second:
            c.close()
