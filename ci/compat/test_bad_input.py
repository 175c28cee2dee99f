"""Malformed and hostile input on raw sockets: the broker answers or closes the connection,
never hangs or crashes, and keeps serving other clients with their stored data intact."""

import random
import socket
import struct

import pytest
from confluent_kafka import TopicPartition

import kafka_wire as wire
from conftest import OP_TIMEOUT, as_tuple, consume_exactly, consumer, create_topic, produce_all, producer, unique

CLOSE_TIMEOUT = 30.0
BASE_TS = 1_700_000_000_000


@pytest.fixture(scope="module")
def stored(broker):
    """A topic with records stored before any bad input; returns (topic, what a consumer reads)."""
    topic = unique("bad-input")
    create_topic(broker, topic, 2)
    msgs = [dict(topic=topic, partition=i % 2, key=b"k%d" % i, value=b"v%d" % i, timestamp=BASE_TS + i,
                 headers=[("i", b"%d" % i)]) for i in range(20)]
    produce_all(producer(broker, acks="all", **{"compression.type": "lz4"}), msgs)
    return topic, [as_tuple(m) for m in consume_exactly(broker, topic, [0, 1], len(msgs))]


def assert_still_serving(broker, stored):
    """A new client gets ApiVersions answered and reads the stored records unchanged."""
    assert broker.alive(), "the broker process is gone"
    with wire.Conn(broker.host, broker.port) as conn:
        error, keys, _ = wire.api_versions(conn, 0)
        assert error == wire.ERR_NONE
        for api in (wire.API_PRODUCE, wire.API_METADATA, wire.API_API_VERSIONS):
            assert api in keys, f"ApiVersions lacks api key {api}: {keys}"
    topic, want = stored
    assert [as_tuple(m) for m in consume_exactly(broker, topic, [0, 1], len(want))] == want


def send_ignoring_reset(conn: wire.Conn, data: bytes) -> None:
    """Send; the broker may legitimately close the connection before it has read everything."""
    try:
        conn.send_raw(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def expect_close_or_answer(conn: wire.Conn, correlation_id: int) -> None:
    """Kafka closes the connection on a request it cannot parse. An error response with the
    request's correlation id is acceptable too; silence (neither) is not."""
    got = conn.wait_closed_or_frame(CLOSE_TIMEOUT)
    if got is not None:
        assert len(got) >= 4 and struct.unpack(">i", got[:4])[0] == correlation_id, \
            f"a response that does not answer correlation id {correlation_id}: {got[:64].hex()}"


def vm_hwm_kib(broker) -> int | None:
    try:
        with open(f"/proc/{broker.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, AttributeError):
        return None
    return None


def test_random_bytes(broker, stored):
    """4 KiB of random bytes (no framing at all), then the client closes."""
    rng = random.Random(20240511)
    with wire.Conn(broker.host, broker.port) as conn:
        send_ignoring_reset(conn, bytes(rng.getrandbits(8) for _ in range(4096)))
    assert_still_serving(broker, stored)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_frame(broker, stored, seed):
    """A correctly sized frame of random bytes with a random API key: closed or answered, never ignored."""
    rng = random.Random(seed)
    cid = 7000 + seed
    body = struct.pack(">hhi", rng.randrange(-32768, 32768), rng.randrange(-32768, 32768), cid)
    body += bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
    with wire.Conn(broker.host, broker.port) as conn:
        send_ignoring_reset(conn, wire.i32(len(body)) + body)
        expect_close_or_answer(conn, cid)
    assert_still_serving(broker, stored)


def test_truncated_frame_then_close(broker, stored):
    """A frame announcing 1000 bytes, of which 20 arrive before the client closes."""
    header = wire.i16(wire.API_METADATA) + wire.i16(4) + wire.i32(1) + wire.string("truncated")
    with wire.Conn(broker.host, broker.port) as conn:
        conn.send_raw(wire.i32(1000) + (header + b"\x00" * 20)[:20])
    assert_still_serving(broker, stored)


def test_oversized_frame(broker, stored):
    """A size prefix of 200 MiB (Kafka's socket.request.max.bytes is 100 MiB): the broker closes
    the connection without reading or allocating the announced size."""
    hwm_before = vm_hwm_kib(broker)
    with wire.Conn(broker.host, broker.port) as conn:
        send_ignoring_reset(conn, wire.i32(200 * 1024 * 1024) + b"\x00\x12\x00\x00\x00\x00\x00\x01" + b"\x00" * 56)
        assert conn.wait_closed(CLOSE_TIMEOUT) == b""
    hwm_after = vm_hwm_kib(broker)
    if hwm_before is not None and hwm_after is not None:
        assert hwm_after - hwm_before < 100 * 1024, f"peak RSS grew by {hwm_after - hwm_before} KiB"
    assert_still_serving(broker, stored)


def test_negative_size(broker, stored):
    """A negative size prefix: the broker closes the connection."""
    with wire.Conn(broker.host, broker.port) as conn:
        send_ignoring_reset(conn, wire.i32(-5) + b"\x00" * 32)
        assert conn.wait_closed(CLOSE_TIMEOUT) == b""
    assert_still_serving(broker, stored)


@pytest.mark.parametrize("api_key", [9999, -1, 32767])
def test_unknown_api_key(broker, stored, api_key):
    """A well-formed header with an API key Kafka does not have: closed or answered."""
    cid = 4242
    frame = wire.i16(api_key) + wire.i16(0) + wire.i32(cid) + wire.string("compat") + b"\x00\x00\x00\x00"
    with wire.Conn(broker.host, broker.port) as conn:
        send_ignoring_reset(conn, wire.i32(len(frame)) + frame)
        expect_close_or_answer(conn, cid)
    assert_still_serving(broker, stored)


def test_api_versions_unsupported_version(broker, stored):
    """KIP-511: ApiVersions at a version the broker does not know is answered in the v0 format
    with UNSUPPORTED_VERSION (35) and one entry, ApiVersions' own supported range, so the client
    can retry at a version both know; the connection stays usable for that retry."""
    with wire.Conn(broker.host, broker.port) as conn:
        cid = 9001
        body = wire.compact_string("runnel-compat") + wire.compact_string("1.0") + wire.uvarint(0)
        header = wire.i16(wire.API_API_VERSIONS) + wire.i16(127) + wire.i32(cid) + wire.string("compat") + wire.uvarint(0)
        conn.send_raw(wire.i32(len(header) + len(body)) + header + body)
        r = wire.Reader(conn.recv_frame())
        assert r.i32() == cid
        assert r.i16() == wire.ERR_UNSUPPORTED_VERSION
        entries = [(r.i16(), r.i16(), r.i16()) for _ in range(r.i32())]
        assert r.remaining() == 0, f"{r.remaining()} bytes after the v0 body: {r.data[r.pos:].hex()}"
        assert len(entries) == 1 and entries[0][0] == wire.API_API_VERSIONS and entries[0][1] == 0, entries
        assert entries[0][2] >= 3, entries
        # The retry a client makes, on the same connection.
        error, keys, _ = wire.api_versions(conn, entries[0][2] if entries[0][2] <= 3 else 3)
        assert error == wire.ERR_NONE and keys[wire.API_API_VERSIONS] == (0, entries[0][2])
    assert_still_serving(broker, stored)


def test_unsupported_version_of_other_api(broker, stored):
    """Metadata at version 127: closed or answered (Kafka closes the connection)."""
    cid = 5150
    frame = wire.i16(wire.API_METADATA) + wire.i16(127) + wire.i32(cid) + wire.string("compat") + wire.uvarint(0) + b"\x01\x00"
    with wire.Conn(broker.host, broker.port) as conn:
        send_ignoring_reset(conn, wire.i32(len(frame)) + frame)
        expect_close_or_answer(conn, cid)
    assert_still_serving(broker, stored)


def test_raw_produce_valid_batch(broker, stored):
    """A hand-encoded record batch v2 (null key, binary headers, timestamp deltas) is accepted
    and read back by librdkafka exactly as encoded: the control for the corrupt-CRC test."""
    topic = unique("raw-produce")
    create_topic(broker, topic, 1)
    recs = [
        wire.Rec(b"key-0", b"value-0", [("h", b"\x00\x01"), ("h", b"")]),
        wire.Rec(None, b"no key", [], 5),
        wire.Rec(b"tomb", None, [("x", b"y")], 9),
    ]
    with wire.Conn(broker.host, broker.port) as conn:
        assert wire.produce_v3(conn, topic, 0, wire.record_batch(recs, BASE_TS), acks=-1) == (topic, 0, wire.ERR_NONE, 0)
    got = consume_exactly(broker, topic, [0], 3)
    assert [(m.offset(), m.key(), m.value(), m.headers(), m.timestamp()[1]) for m in got] == [
        (0, b"key-0", b"value-0", [("h", b"\x00\x01"), ("h", b"")], BASE_TS),
        (1, None, b"no key", None, BASE_TS + 5),
        (2, b"tomb", None, [("x", b"y")], BASE_TS + 9),
    ]
    assert_still_serving(broker, stored)


def test_produce_corrupt_crc(broker, stored):
    """A Produce whose record batch fails its CRC-32C gets CORRUPT_MESSAGE (2) for that
    partition; nothing is appended, the connection stays usable, and the next good batch
    lands at the offset the bad one would have taken."""
    topic, _ = stored
    c = consumer(broker)
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=OP_TIMEOUT, cached=False)
    finally:
        c.close()
    good = wire.record_batch([wire.Rec(b"crc", b"checked")], BASE_TS + 100)
    bad = bytearray(good)
    bad[-3] ^= 0xFF  # a byte of the record body, covered by the CRC
    with wire.Conn(broker.host, broker.port) as conn:
        assert wire.produce_v3(conn, topic, 0, bytes(bad), acks=1) == (topic, 0, wire.ERR_CORRUPT_MESSAGE, -1)
        # Stored data is unchanged, then a good batch on the same connection takes the next offset.
        assert_still_serving(broker, stored)
        assert wire.produce_v3(conn, topic, 0, good, acks=1) == (topic, 0, wire.ERR_NONE, high)
    got = consume_exactly(broker, topic, [0], high - low + 1)
    assert (got[-1].offset(), got[-1].key(), got[-1].value()) == (high, b"crc", b"checked")
    # Keep the module's snapshot true for the tests after this one.
    stored[1].append(as_tuple(got[-1]))
    stored[1].sort(key=lambda t: (t[1], t[2]))
