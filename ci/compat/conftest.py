"""Fixtures of the Kafka compatibility suite: the broker process and client helpers.

The session-scoped `broker` fixture owns one broker process for the whole run, so a
test can stop and start it again on the same data dir and port (the restart test).

Environment:
  RUNNEL_BIN                 the runnel binary (default: target/release/runnel)
  RUNNEL_COMPAT_BROKER_CMD   command template for another broker, with {host}, {port}
                             and {data_dir} filled in; for example Tansu:
                             '/path/tansu broker --listener-url tcp://{host}:{port}
                              --advertised-listener-url tcp://{host}:{port}
                              --storage-engine memory://tansu/'
  RUNNEL_COMPAT_PORT         port to listen on (default: a free one)
  RUNNEL_COMPAT_DATA_DIR     data dir (default: a new temporary dir)
  RUNNEL_COMPAT_LOG          where the broker's output goes (default: <data dir>.log)
  RUNNEL_COMPAT_STOP_SIGNAL  INT (default) or TERM: how the broker is asked to stop
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

# Generous: two cores are shared with compilers and other test suites.
STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
OP_TIMEOUT = 60.0


def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
    """Poll `condition` until it returns a truthy value; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - reported below if it never succeeds
            last_error = e
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


class Broker:
    """One broker process that tests can stop and start again on the same data dir and port."""

    def __init__(self, template: str, host: str, port: int, data_dir: Path, log_path: Path, stop_signal: int):
        self.template = template
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def command(self) -> list[str]:
        return shlex.split(self.template.format(host=self.host, port=self.port, data_dir=self.data_dir))

    def start(self) -> None:
        assert self.proc is None, "broker already running"
        assert not port_answers(self.host, self.port), f"something already listens on {self.bootstrap}"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== compat: start #{self.starts}: {shlex.join(self.command)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.data_dir)

        def up():
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(f"broker exited with code {code} while starting; see {self.log_path}")
            return port_answers(self.host, self.port)

        try:
            wait_until(up, STARTUP_TIMEOUT, f"the broker to listen on {self.bootstrap}")
        except AssertionError as e:
            proc, self.proc = self.proc, None
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise AssertionError(str(e)) from None

    def stop(self, sig: int | None = None) -> int:
        """Ask the broker to stop with `sig` and wait for it; returns its exit code.

        Raises if it has not exited within STOP_TIMEOUT (it is then killed)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig or self.stop_signal)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"broker did not exit within {STOP_TIMEOUT}s of signal {sig or self.stop_signal}; killed it")
        with open(self.log_path, "ab") as log:
            log.write(f"=== compat: broker exited with code {code}\n".encode())
        wait_until(lambda: not port_answers(self.host, self.port), STOP_TIMEOUT, f"{self.bootstrap} to be released")
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _broker_template() -> str:
    custom = os.environ.get("RUNNEL_COMPAT_BROKER_CMD")
    if custom:
        return custom
    runnel = os.environ.get("RUNNEL_BIN", str(REPO / "target" / "release" / "runnel"))
    return f"{shlex.quote(runnel)} server --data-dir {{data_dir}} --listen {{host}}:{{port}}"


@pytest.fixture(scope="session")
def broker():
    """The broker under test, started once per session (restarted by the restart test)."""
    port = int(os.environ.get("RUNNEL_COMPAT_PORT") or free_port())
    data_dir = Path(os.environ.get("RUNNEL_COMPAT_DATA_DIR") or tempfile.mkdtemp(prefix="runnel-compat-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(os.environ.get("RUNNEL_COMPAT_LOG") or f"{data_dir}.log")
    sig = getattr(signal, "SIG" + os.environ.get("RUNNEL_COMPAT_STOP_SIGNAL", "INT").upper().removeprefix("SIG"))
    b = Broker(_broker_template(), HOST, port, data_dir, log_path, sig)
    print(f"\ncompat: broker {b.command} on {b.bootstrap}, log {log_path}")
    b.start()
    yield b
    if b.proc is not None:
        b.stop()


@pytest.fixture(autouse=True)
def broker_must_survive(request, broker):
    """Every test ends with the broker process still running (a crash fails the test that caused it)."""
    yield
    if broker.proc is not None and broker.proc.poll() is not None:
        code = broker.proc.returncode
        broker.proc = None
        pytest.fail(f"the broker exited with code {code} during this test; see {broker.log_path}")
    if broker.proc is None:
        # A test that stopped the broker and failed before starting it again: restart for the others.
        broker.start()


# ---------------------------------------------------------------- confluent-kafka helpers

def unique(prefix: str) -> str:
    """A topic name no other test uses (the broker may outlive one run when pointed elsewhere)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin_client(broker: Broker, **extra) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap, **extra})


def topic_ready(admin: AdminClient, topic: str, partitions: int) -> bool:
    md = admin.list_topics(topic=topic, timeout=10)
    t = md.topics.get(topic)
    return (
        t is not None
        and t.error is None
        and len(t.partitions) == partitions
        and all(p.leader >= 0 and p.error is None for p in t.partitions.values())
    )


def create_topic(broker: Broker, topic: str, partitions: int = 1, config: dict | None = None) -> None:
    """Create a topic with confluent's AdminClient and wait until metadata shows every partition led."""
    admin = admin_client(broker)
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
                                  operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    futures[topic].result(timeout=OP_TIMEOUT)
    wait_until(lambda: topic_ready(admin, topic, partitions), OP_TIMEOUT, f"topic {topic} with {partitions} partitions in metadata")


def producer(broker: Broker, **config) -> Producer:
    base = {
        "bootstrap.servers": broker.bootstrap,
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "message.timeout.ms": int(OP_TIMEOUT * 1000),
        "allow.auto.create.topics": False,
    }
    base.update({k.replace("_", "."): v for k, v in config.items()})
    return Producer(base)


def produce_all(p: Producer, messages: list[dict]) -> list:
    """Produce each message (dict of Producer.produce kwargs), flush, and return the delivered Messages in order.

    Raises if any delivery failed."""
    delivered: list = [None] * len(messages)
    errors = []

    def callback(i):
        def on_delivery(err, msg):
            if err is not None:
                errors.append((i, err))
            delivered[i] = msg
        return on_delivery

    for i, m in enumerate(messages):
        p.produce(on_delivery=callback(i), **m)
        p.poll(0)
    remaining = p.flush(OP_TIMEOUT)
    assert remaining == 0, f"{remaining} messages still undelivered after {OP_TIMEOUT}s"
    if errors:
        raise AssertionError(f"delivery failed: {errors}")
    return delivered


def consumer(broker: Broker, **config) -> Consumer:
    base = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": unique("compat-assign"),  # required by the client; only assign() is used
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }
    base.update(config)
    return Consumer(base)


def consume_exactly(broker: Broker, topic: str, partitions: list[int], count: int, start_offset: int | None = None,
                    timeout: float = OP_TIMEOUT) -> list:
    """Assign `partitions` of `topic` from the beginning and read until `count` messages arrived.

    Then keeps polling briefly to catch any unexpected extra message. Returns them sorted by
    (partition, offset)."""
    from confluent_kafka import OFFSET_BEGINNING

    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING if start_offset is None else start_offset) for p in partitions])
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            got.append(m)
        assert len(got) >= count, f"read {len(got)} of {count} messages from {topic} within {timeout}s"
        # A short extra poll: more messages than were produced is a failure too.
        extra_deadline = time.monotonic() + 1.0
        while time.monotonic() < extra_deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                got.append(m)
        return sorted(got, key=lambda m: (m.partition(), m.offset()))
    finally:
        c.close()


def as_tuple(m) -> tuple:
    """Everything a consumer sees of a message, for byte-for-byte comparison."""
    return (m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.headers(), m.timestamp())


def error_code(exc: BaseException) -> int:
    """The Kafka error code carried by a confluent-kafka exception."""
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return err.code()
    raise AssertionError(f"not a KafkaError: {exc!r}")
