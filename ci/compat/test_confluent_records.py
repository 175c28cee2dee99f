"""confluent-kafka (librdkafka): records survive a produce/consume round trip byte for byte."""

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from conftest import as_tuple, consume_exactly, create_topic, produce_all, producer, unique
from kafka_wire import murmur2_partition

PARTITIONS = 3
BASE_TS = 1_700_000_000_000  # explicit CreateTime timestamps, in milliseconds


def record_set() -> list[dict]:
    """Records covering what a Kafka record can hold. Null keys carry an explicit partition."""
    binary = bytes(range(256))
    recs = [
        dict(key=b"user-1", value=b"plain value"),
        dict(key=b"user-2", value=b"with headers", headers=[("trace", b"abc"), ("h", b"1")]),
        dict(key=b"user-3", value=b"duplicate header keys", headers=[("dup", b"first"), ("dup", b"second"), ("dup", b"")]),
        dict(key=b"user-4", value=binary, headers=[("bin", binary), ("nul", b"\x00\x00")]),
        dict(key=b"user-1", value=None),  # tombstone
        dict(key=b"user-5", value=b""),  # empty, not null
        dict(key=b"", value=b"empty key"),
        dict(key=None, value=b"null key p0", partition=0),
        dict(key=None, value=b"null key p2", partition=2, headers=[("only", b"header")]),
        dict(key=None, value=None, partition=1),  # null key and null value
        dict(key=binary, value=b"binary key"),
        dict(key="ключ-ü".encode(), value="значение ✓".encode(), headers=[("ünï", "värde".encode())]),
        dict(key=b"big", value=b"B" * 300_000),
    ]
    for i in range(40):
        recs.append(dict(key=b"k%d" % (i % 7), value=b"v%d-" % i + b"x" * (i * 13)))
    for i, r in enumerate(recs):
        r["timestamp"] = BASE_TS + i * 1000 + (i % 3)
    return recs


def expected_messages(topic: str, recs: list[dict]) -> list[tuple]:
    """What a consumer must see: partition by Java's murmur2 for keyed records, offsets in produce order."""
    next_offset = [0] * PARTITIONS
    out = []
    for r in recs:
        if "partition" in r:
            p = r["partition"]
        else:
            p = murmur2_partition(r["key"], PARTITIONS)
        headers = [(k, v) for k, v in r["headers"]] if r.get("headers") else None
        out.append((topic, p, next_offset[p], r["key"], r["value"], headers, (TIMESTAMP_CREATE_TIME, r["timestamp"])))
        next_offset[p] += 1
    return sorted(out, key=lambda t: (t[1], t[2]))


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_round_trip(broker, compression, idempotent):
    """Keys, null keys, tombstones, empty values, headers (duplicate keys, binary values) and
    CreateTime timestamps come back unchanged, at the partition murmur2 picks and at the offsets
    the delivery reports gave, whatever the batch compression and with or without idempotence."""
    topic = unique(f"cf-{compression}-{'idem' if idempotent else 'plain'}")
    create_topic(broker, topic, PARTITIONS)
    recs = record_set()
    config = {"compression.type": compression, "enable.idempotence": idempotent, "acks": "all"}
    p = producer(broker, **config)
    delivered = produce_all(p, [dict(topic=topic, **r) for r in recs])
    want = expected_messages(topic, recs)

    # Delivery reports: partition and offset of each record as the broker assigned them.
    reported = sorted(((m.partition(), m.offset()) for m in delivered))
    assert reported == [(t[1], t[2]) for t in want]

    got = consume_exactly(broker, topic, list(range(PARTITIONS)), len(recs))
    assert [as_tuple(m) for m in got] == want


def test_acks_one_and_zero(broker):
    """acks=1 and acks=0 producers store the same records (acks=0 gets no offsets back)."""
    topic = unique("cf-acks")
    create_topic(broker, topic, 1)
    recs = [dict(topic=topic, key=b"a%d" % i, value=b"v%d" % i, partition=0, timestamp=BASE_TS + i) for i in range(20)]
    produce_all(producer(broker, acks=1), recs[:10])
    produce_all(producer(broker, acks=0), recs[10:])
    got = consume_exactly(broker, topic, [0], 20)
    assert [(m.offset(), m.key(), m.value(), m.timestamp()[1]) for m in got] == [
        (i, r["key"], r["value"], r["timestamp"]) for i, r in enumerate(recs)
    ]
