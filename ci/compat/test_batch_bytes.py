"""librdkafka's record batches are stored and served byte for byte as it sent them.

A proxy sits between confluent-kafka and a broker of this test's own (advertising the
proxy's address, so every connection goes through it) and keeps each record batch of
every Produce request. The test then fetches the partition with a raw Fetch and compares:
only the base offset and the partition leader epoch (the two fields outside the CRC,
which a broker stamps) may differ. Runs against Runnel only: it starts `runnel server`.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from confluent_kafka import Producer

from conftest import HOST, OP_TIMEOUT, REPO, STARTUP_TIMEOUT, STOP_TIMEOUT, free_port, port_answers, wait_until
from kafka_wire import Conn, Reader, i8, i16, i32, i64, string

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("RUNNEL_COMPAT_BROKER_CMD")), reason="starts its own runnel server"
)

API_PRODUCE = 0
API_FETCH = 1


def _uvarint(r: Reader) -> int:
    return r.uvarint()


def produce_batches(frame: bytes) -> list[tuple[str, int, bytes]]:
    """(topic, partition, record bytes) of a Produce request frame, any version 3-12."""
    r = Reader(frame)
    api_key, version = r.i16(), r.i16()
    if api_key != API_PRODUCE:
        return []
    r.i32()  # correlation id
    r.string()  # client id
    flexible = version >= 9
    if flexible:
        r.tagged_fields()
        n = _uvarint(r)
        if n:
            r.take(n - 1)  # transactional id
    else:
        r.string()
    r.i16()  # acks
    r.i32()  # timeout
    out = []
    topics = _uvarint(r) - 1 if flexible else r.i32()
    for _ in range(topics):
        name = r.compact_string() if flexible else r.string()
        partitions = _uvarint(r) - 1 if flexible else r.i32()
        for _ in range(partitions):
            index = r.i32()
            if flexible:
                size = _uvarint(r) - 1
            else:
                size = r.i32()
            records = r.take(size) if size > 0 else b""
            if flexible:
                r.tagged_fields()
            out.append((name, index, records))
        if flexible:
            r.tagged_fields()
    return out


class CapturingProxy:
    """Forwards TCP connections to `upstream`, recording the Produce requests it sees."""

    def __init__(self, listen_port: int, upstream_port: int):
        self.upstream_port = upstream_port
        self.sent: list[tuple[str, int, bytes]] = []
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((HOST, listen_port))
        self.server.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.upstream_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        buf = b""
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
                if not record:
                    continue
                buf += data
                while len(buf) >= 4:
                    (size,) = struct.unpack(">i", buf[:4])
                    if len(buf) < 4 + size:
                        break
                    frame, buf = buf[4 : 4 + size], buf[4 + size :]
                    with self.lock:
                        self.sent.extend(produce_batches(frame))
        except OSError:
            pass
        finally:
            for s in (dst, src):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


def split_batches(data: bytes) -> list[bytes]:
    batches = []
    pos = 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">i", data[pos + 8 : pos + 12])
        end = pos + 12 + length
        if end > len(data):
            break
        batches.append(data[pos:end])
        pos = end
    return batches


def fetch_all(conn: Conn, topic: str, partition: int) -> list[bytes]:
    """Every batch of the partition, by raw Fetch v4 requests from offset 0."""
    batches: list[bytes] = []
    offset = 0
    while True:
        body = (
            i32(-1) + i32(0) + i32(0) + i32(8 << 20) + i8(0)
            + i32(1) + string(topic)
            + i32(1) + i32(partition) + i64(offset) + i32(8 << 20)
        )
        r = conn.request(API_FETCH, 4, body)
        r.i32()  # throttle
        assert r.i32() == 1
        r.string()
        assert r.i32() == 1
        index, error, high_watermark = r.i32(), r.i16(), r.i64()
        assert (index, error) == (partition, 0), f"fetch error {error}"
        r.i64()  # last stable offset
        aborted = r.i32()
        for _ in range(max(aborted, 0)):
            r.i64(), r.i64()
        size = r.i32()
        got = split_batches(r.take(size) if size > 0 else b"")
        for b in got:
            (base,) = struct.unpack(">q", b[:8])
            (delta,) = struct.unpack(">i", b[23:27])
            if base + delta >= offset:
                batches.append(b)
                offset = base + delta + 1
        if offset >= high_watermark or not got:
            return batches


@pytest.fixture
def proxied_broker():
    runnel = os.environ.get("RUNNEL_BIN", str(REPO / "target" / "release" / "runnel"))
    broker_port, proxy_port = free_port(), free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="runnel-batch-bytes-"))
    config = data_dir / "server.properties"
    config.write_text(
        f"listeners=PLAINTEXT://{HOST}:{broker_port}\n"
        f"advertised.listeners=PLAINTEXT://{HOST}:{proxy_port}\n"
        f"log.dirs={data_dir / 'data'}\n"
    )
    log = open(data_dir / "broker.log", "wb")
    proc = subprocess.Popen([runnel, "server", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: port_answers(HOST, broker_port), STARTUP_TIMEOUT, "the proxied broker to listen")
        proxy = CapturingProxy(proxy_port, broker_port)
        yield proxy, broker_port, proxy_port
        proxy.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_librdkafka_batches_are_stored_byte_for_byte(proxied_broker, compression):
    """Every batch confluent-kafka sent comes back from Fetch with identical bytes, except
    base offset and leader epoch; offsets run on without gaps from 0."""
    proxy, broker_port, proxy_port = proxied_broker
    topic = f"bytes-{compression}"
    p = Producer({
        "bootstrap.servers": f"{HOST}:{proxy_port}",
        "compression.type": compression,
        "enable.idempotence": True,
        "linger.ms": 20,
        "batch.num.messages": 50,
    })
    for i in range(400):
        key = None if i % 5 == 0 else b"key-%d" % (i % 13)
        value = None if i % 17 == 0 else (b"value %d " % i) * (1 + i % 9)
        p.produce(topic, key=key, value=value, partition=0, timestamp=1_700_000_000_000 + i,
                  headers=[("n", str(i).encode())] if i % 3 == 0 else None)
        if i % 100 == 99:
            p.flush(OP_TIMEOUT)
    assert p.flush(OP_TIMEOUT) == 0
    with proxy.lock:
        sent = [records for (t, part, records) in proxy.sent if t == topic and part == 0]
    # A retried batch goes through the proxy twice; the broker keeps one (idempotence).
    sent_batches, seen = [], set()
    for b in (b for records in sent for b in split_batches(records)):
        if b[43:57] not in seen:
            seen.add(b[43:57])
            sent_batches.append(b)
    assert len(sent_batches) >= 8, f"only {len(sent_batches)} batches were produced"
    codec = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[compression]
    # librdkafka sends a batch uncompressed when compressing does not make it smaller.
    codecs = [struct.unpack(">h", b[21:23])[0] & 7 for b in sent_batches]
    assert codec in codecs and set(codecs) <= {0, codec}, codecs
    with Conn(HOST, broker_port) as conn:
        stored = fetch_all(conn, topic, 0)
    assert len(stored) == len(sent_batches)
    next_offset = 0
    for i, (s, got) in enumerate(zip(sent_batches, stored)):
        (base,) = struct.unpack(">q", got[:8])
        assert base == next_offset, f"batch {i}: base offset {base}, expected {next_offset}"
        assert got[8:12] == s[8:12], f"batch {i}: length differs"
        assert got[16:] == s[16:], f"batch {i}: bytes differ after the stamped prefix"
        (delta,) = struct.unpack(">i", s[23:27])
        next_offset = base + delta + 1
    assert next_offset == 400
