"""A minimal Kafka wire-protocol toolkit for tests that must send exact bytes.

Only what the compatibility suite needs: request framing, a handful of requests
(ApiVersions, Metadata, Produce) in fixed versions, record batch v2 encoding with
CRC-32C, and Kafka's murmur2 partitioner. Written from the protocol spec
(https://kafka.apache.org/protocol) so it is independent of any client library.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# ---------------------------------------------------------------- primitives

API_PRODUCE = 0
API_METADATA = 3
API_API_VERSIONS = 18

ERR_NONE = 0
ERR_CORRUPT_MESSAGE = 2
ERR_UNKNOWN_TOPIC_OR_PARTITION = 3
ERR_UNSUPPORTED_VERSION = 35


def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag varint, as record fields use."""
    return uvarint((v << 1) ^ (v >> 63))


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


class Reader:
    """Sequential reader over a response body; raises on underflow."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"underflow: need {n} bytes at {self.pos} of {len(self.data)}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def i8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self) -> int:
        shift = 0
        v = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7

    def string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def tagged_fields(self) -> dict[int, bytes]:
        tags = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            tags[tag] = self.take(self.uvarint())
        return tags

    def remaining(self) -> int:
        return len(self.data) - self.pos


# ---------------------------------------------------------------- CRC-32C and murmur2

def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of record batch v2."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's org.apache.kafka.common.utils.Utils.murmur2, as a signed 32-bit int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    mask = 0xFFFFFFFF
    h = (seed ^ length) & mask
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (data[i4] & 0xFF) + ((data[i4 + 1] & 0xFF) << 8) + ((data[i4 + 2] & 0xFF) << 16) + ((data[i4 + 3] & 0xFF) << 24)
        k = (k * m) & mask
        k ^= k >> r  # Java's >>> on a 32-bit int
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    rest = length % 4
    base = length & ~3
    if rest == 3:
        h ^= (data[base + 2] & 0xFF) << 16
    if rest >= 2:
        h ^= (data[base + 1] & 0xFF) << 8
    if rest >= 1:
        h ^= data[base] & 0xFF
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2_partition(key: bytes, num_partitions: int) -> int:
    """The partition Kafka's Java DefaultPartitioner picks for a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


# ---------------------------------------------------------------- record batches

@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_delta: int = 0


def record_batch(records: list[Rec], base_timestamp: int, base_offset: int = 0,
                 producer_id: int = -1, producer_epoch: int = -1, base_sequence: int = -1) -> bytes:
    """An uncompressed record batch v2 (magic 2) with a correct CRC-32C."""
    body = bytearray()
    for i, rec in enumerate(records):
        r = bytearray()
        r += i8(0)  # attributes
        r += varint(rec.timestamp_delta)
        r += varint(i)  # offset delta
        r += varint(-1) if rec.key is None else varint(len(rec.key)) + rec.key
        r += varint(-1) if rec.value is None else varint(len(rec.value)) + rec.value
        r += varint(len(rec.headers))
        for hk, hv in rec.headers:
            kb = hk.encode()
            r += varint(len(kb)) + kb
            r += varint(-1) if hv is None else varint(len(hv)) + hv
        body += varint(len(r)) + r
    max_ts = base_timestamp + max((r.timestamp_delta for r in records), default=0)
    after_crc = (
        i16(0)  # attributes: no compression, CreateTime, not transactional
        + i32(len(records) - 1)  # last offset delta
        + i64(base_timestamp)
        + i64(max_ts)
        + i64(producer_id)
        + i16(producer_epoch)
        + i32(base_sequence)
        + i32(len(records))
        + bytes(body)
    )
    # baseOffset, batchLength, partitionLeaderEpoch, magic, crc, then the CRC'd part.
    batch_length = 4 + 1 + 4 + len(after_crc)
    return i64(base_offset) + i32(batch_length) + i32(-1) + i8(2) + struct.pack(">I", crc32c(after_crc)) + after_crc


# ---------------------------------------------------------------- connections

class Closed(Exception):
    """The broker closed the connection."""


class Conn:
    """One TCP connection speaking Kafka frames (int32 size prefix)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise Closed(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        (size,) = struct.unpack(">i", self.recv_exact(4))
        if size < 0 or size > 64 * 1024 * 1024:
            raise ValueError(f"response frame size {size} is not sane")
        return self.recv_exact(size)

    def wait_closed(self, timeout: float) -> bytes:
        """Read until the broker closes the connection; returns whatever arrived first.

        Raises TimeoutError if the connection is still open after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        got = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"broker kept the connection open for {timeout}s (received {len(got)} bytes)")
            self.sock.settimeout(min(left, 1.0))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return bytes(got)
            if not chunk:
                return bytes(got)
            got += chunk

    def wait_closed_or_frame(self, timeout: float) -> bytes | None:
        """Wait for either the broker closing the connection (returns None) or one whole
        response frame (returns its payload). Raises TimeoutError if neither happens."""
        deadline = time.monotonic() + timeout
        got = bytearray()
        while True:
            if len(got) >= 4:
                (size,) = struct.unpack(">i", got[:4])
                if 0 <= size <= len(got) - 4:
                    return bytes(got[4 : 4 + size])
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"broker neither answered nor closed the connection within {timeout}s "
                                   f"(received {len(got)} bytes)")
            self.sock.settimeout(min(left, 1.0))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            got += chunk

    def request(self, api_key: int, api_version: int, body: bytes, flexible: bool = False,
                client_id: str | None = "runnel-compat", response_header_flexible: bool | None = None) -> Reader:
        """Send one request and return a reader positioned after the response header."""
        self.correlation_id += 1
        cid = self.correlation_id
        header = i16(api_key) + i16(api_version) + i32(cid) + string(client_id)
        if flexible:
            header += uvarint(0)  # no tagged fields
        frame = header + body
        self.sock.settimeout(self.timeout)
        self.send_raw(i32(len(frame)) + frame)
        resp = Reader(self.recv_frame())
        got = resp.i32()
        if got != cid:
            raise AssertionError(f"correlation id {got} in response, expected {cid}")
        if response_header_flexible is None:
            # ApiVersions responses always use header v0, whatever the request version.
            response_header_flexible = flexible and api_key != API_API_VERSIONS
        if response_header_flexible:
            resp.tagged_fields()
        return resp


# ---------------------------------------------------------------- requests

def api_versions(conn: Conn, version: int = 0) -> tuple[int, dict[int, tuple[int, int]], Reader]:
    """ApiVersions v0..v3; returns (error_code, {api_key: (min, max)}, reader after the keys)."""
    if version >= 3:
        body = compact_string("runnel-compat") + compact_string("1.0") + uvarint(0)
        r = conn.request(API_API_VERSIONS, version, body, flexible=True)
    else:
        r = conn.request(API_API_VERSIONS, version, b"")
    error = r.i16()
    keys = {}
    n = r.uvarint() - 1 if version >= 3 else r.i32()
    for _ in range(max(n, 0)):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        if version >= 3:
            r.tagged_fields()
        keys[k] = (lo, hi)
    return error, keys, r


def metadata_v4(conn: Conn, topics: list[str] | None, allow_auto_create: bool) -> dict:
    """Metadata v4; returns {'brokers': [...], 'topics': {name: (error, [(partition, error, leader)])}}."""
    if topics is None:
        body = i32(-1)
    else:
        body = i32(len(topics)) + b"".join(string(t) for t in topics)
    body += i8(1 if allow_auto_create else 0)
    r = conn.request(API_METADATA, 4, body)
    r.i32()  # throttle
    brokers = []
    for _ in range(r.i32()):
        brokers.append((r.i32(), r.string(), r.i32(), r.string()))
    r.string()  # cluster id
    r.i32()  # controller id
    out = {}
    for _ in range(r.i32()):
        err = r.i16()
        name = r.string()
        r.i8()  # is_internal
        parts = []
        for _ in range(r.i32()):
            perr, idx, leader = r.i16(), r.i32(), r.i32()
            for _ in range(r.i32()):  # replicas
                r.i32()
            for _ in range(r.i32()):  # isr
                r.i32()
            parts.append((idx, perr, leader))
        out[name] = (err, parts)
    return {"brokers": brokers, "topics": out}


def produce_v3(conn: Conn, topic: str, partition: int, records: bytes, acks: int = 1,
               timeout_ms: int = 30000) -> tuple[str, int, int, int]:
    """Produce v3 of one batch to one partition; returns (topic, partition, error, base_offset)."""
    body = (
        string(None)  # transactional id
        + i16(acks)
        + i32(timeout_ms)
        + i32(1) + string(topic)
        + i32(1) + i32(partition) + nbytes(records)
    )
    r = conn.request(API_PRODUCE, 3, body)
    topics = r.i32()
    assert topics == 1, f"produce response has {topics} topics"
    name = r.string()
    parts = r.i32()
    assert parts == 1, f"produce response has {parts} partitions"
    idx, err, base = r.i32(), r.i16(), r.i64()
    r.i64()  # log append time
    r.i32()  # throttle
    return name, idx, err, base
