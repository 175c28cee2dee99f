"""ListOffsets: earliest, latest and by timestamp, through both Python clients."""

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from conftest import OP_TIMEOUT, admin_client, consumer, create_topic, produce_all, producer, unique

T0 = 1_700_000_000_000
# Offsets 0..5 with non-monotonic timestamps: Kafka answers "first offset whose timestamp >= T".
TIMESTAMPS = [T0, T0 + 1000, T0 + 2000, T0 + 1500, T0 + 3000, T0 + 3000]


@pytest.fixture(scope="module")
def topic(broker):
    """One partition holding six records with the CreateTime timestamps above, in two batches."""
    name = unique("offsets")
    create_topic(broker, name, 1)
    produce_all(producer(broker, **{"linger.ms": 0}), [dict(topic=name, value=b"v%d" % i, partition=0, timestamp=ts)
                                                       for i, ts in enumerate(TIMESTAMPS[:3])])
    produce_all(producer(broker, **{"linger.ms": 0}), [dict(topic=name, value=b"v%d" % i, partition=0, timestamp=ts)
                                                       for i, ts in enumerate(TIMESTAMPS[3:], start=3)])
    return name


# (query timestamp, expected offset; -1 = none: the latest offset is reported as -1 by ListOffsets)
CASES = [
    (T0 - 10_000, 0),
    (T0, 0),
    (T0 + 1, 1),
    (T0 + 1000, 1),
    (T0 + 1200, 2),  # offset 3 has 1500 but comes after offset 2 (2000): first offset with ts >= T wins
    (T0 + 2000, 2),
    (T0 + 2001, 4),
    (T0 + 3000, 4),
    (T0 + 3001, -1),
]


def test_confluent_watermarks(broker, topic):
    """Earliest and latest offsets (ListOffsets -2 and -1) as confluent's consumer sees them."""
    c = consumer(broker)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=OP_TIMEOUT, cached=False) == (0, 6)
    finally:
        c.close()


def test_confluent_offsets_for_times(broker, topic):
    """Consumer.offsets_for_times: the first offset whose timestamp is >= the query, -1 past the end."""
    c = consumer(broker)
    try:
        for ts, want in CASES:
            (tp,) = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=OP_TIMEOUT)
            assert tp.error is None, (ts, tp.error)
            assert tp.offset == want, f"timestamp {ts}: offset {tp.offset}, expected {want}"
    finally:
        c.close()


def test_confluent_admin_list_offsets(broker, topic):
    """AdminClient.list_offsets: earliest, latest, for_timestamp (with the record's timestamp) and max_timestamp."""
    admin = admin_client(broker)
    tp = TopicPartition(topic, 0)

    def ask(spec):
        fs = admin.list_offsets({tp: spec}, request_timeout=OP_TIMEOUT)
        return fs[tp].result(timeout=OP_TIMEOUT)

    assert ask(OffsetSpec.earliest()).offset == 0
    assert ask(OffsetSpec.latest()).offset == 6
    r = ask(OffsetSpec.for_timestamp(T0 + 1200))
    assert (r.offset, r.timestamp) == (2, T0 + 2000)
    r = ask(OffsetSpec.for_timestamp(T0 + 2001))
    assert (r.offset, r.timestamp) == (4, T0 + 3000)
    # KIP-734: the offset of the record with the largest timestamp (the first of equal ones).
    r = ask(OffsetSpec.max_timestamp())
    assert (r.offset, r.timestamp) == (4, T0 + 3000)


def test_kafka_python_offsets(broker, topic):
    """kafka-python: beginning_offsets, end_offsets and offsets_for_times (offset and the record's timestamp)."""
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=None,
                      request_timeout_ms=int(OP_TIMEOUT * 1000))
    try:
        tp = KTopicPartition(topic, 0)
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 6}
        for ts, want in CASES:
            got = c.offsets_for_times({tp: ts})[tp]
            if want == -1:
                assert got is None, (ts, got)
            else:
                assert got is not None, ts
                assert (got.offset, got.timestamp) == (want, TIMESTAMPS[want]), ts
    finally:
        c.close()
